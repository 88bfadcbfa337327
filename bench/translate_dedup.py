"""Benchmark: characters sent to the engine for hh-rlhf harmless-base test, against the naive
per-field total (the `chosen` and `rejected` transcripts each translated whole, as the seed
scripts did, counted over all input rows). Also the template overhead (instruction text
repeated per request) with and without packing, and a second run (which must send nothing).

The pipeline runs for real (hh-rlhf adapter -> plan -> openai engine -> local fake server ->
checks -> output); the server counts what it receives.

    python bench/translate_dedup.py [--rows N]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from translate_server import HH, server_process  # noqa: E402

os.environ.setdefault("JPREFS_NO_PROGRESS", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=0, help="first N rows only (0 = all)")
    args = ap.parse_args()
    if not HH.exists():
        sys.exit(f"{HH} not found: the benchmark needs ../shared/data")
    from jprefs.config import load_config
    from jprefs.translate.config import TranslateConfig
    from jprefs.translate.pipeline import load_input, run_translate

    # naive baseline: every input row's two transcripts, each sent whole
    naive = rows = 0
    with gzip.open(HH, "rt", encoding="utf-8") as f:
        for line in f:
            if args.rows and rows >= args.rows:
                break
            d = json.loads(line)
            naive += len(d["chosen"]) + len(d["rejected"])
            rows += 1
    template = "builtin:en-ja"
    # reference: per-row de-duplication only (each row's prompt once, chosen and rejected responses),
    # with no segmentation and no sharing across rows
    pairs = load_input(load_config(TranslateConfig, None, {"input": str(HH), "source": "hh-rlhf",
                                                           "limit": args.rows})).pairs
    per_row = sum(sum(len(m.content) for m in p.prompt) + len(p.chosen) + len(p.rejected) for p in pairs)
    results = {}
    with server_process(template) as url, tempfile.TemporaryDirectory() as tmp:
        for pack in (1, 8):
            cfg = load_config(TranslateConfig, None, {
                "input": str(HH), "source": "hh-rlhf", "engine": "openai", "model": "fake-mt", "base_url": url,
                "output": f"{tmp}/p{pack}", "pack_units": pack, "concurrency": 8, "chunk_size": 512,
                "limit": args.rows, "template": template})
            t0 = time.perf_counter()
            s1 = run_translate(cfg)
            t1 = time.perf_counter() - t0
            s2 = run_translate(cfg)  # same command again
            results[pack] = (s1, s2, t1)
    s1, s2, _ = results[1]
    print(f"input rows: {rows}; pairs after the hh-rlhf adapter: {s1['pairs_in']} "
          f"({s1['input_rejects']} rows rejected by the adapter)")
    print(f"naive chars (chosen + rejected transcripts, all rows): {naive}")
    print(f"unit occurrences {s1['unit_occurrences']}, distinct {s1['distinct_units']}")
    print(f"reference, per-row dedup only (prompt once + both responses): {per_row} -> {per_row / naive:.4f}")
    print(f"source chars sent: {s1['source_chars_sent']}  ->  ratio vs naive: {s1['source_chars_sent'] / naive:.4f}")
    for pack, (a, b, t) in results.items():
        print(f"pack_units={pack}: requests {a['requests_sent']}, template overhead chars {a['template_overhead_chars_sent']}"
              f" = {a['template_overhead_chars_sent'] / a['source_chars_sent']:.3f} x source chars; "
              f"pack fallbacks {a['pack_fallbacks']}; run {t:.1f}s")
        print(f"  second run: units sent {b['units_translated_now']}, requests {b['requests_sent']}, "
              f"cache hits {b['cache_hits']}/{b['distinct_units']}; outputs kept {b['pairs_out']}")


if __name__ == "__main__":
    main()
