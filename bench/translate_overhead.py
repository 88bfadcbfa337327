"""Benchmark: pipeline overhead per unit against raw engine calls on the same local server.

Baseline ("raw"): the same chat requests (one per distinct unit, same messages, same
concurrency) posted directly with httpx from a thread pool, nothing else.
Candidate ("pipeline"): `run_translate` end to end with an empty cache: adapter, plan,
de-duplication, the openai engine with retries, checkpoints, clean-up, checks,
reassembly, outputs and card. Both hit the same fake server, running in its own
process; runs are interleaved (raw, pipeline, raw, pipeline, ...) and medians reported.

    python bench/translate_overhead.py [--rows 300] [--repeats 3] [--delay 0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from translate_server import HH, server_process  # noqa: E402

os.environ.setdefault("JPREFS_NO_PROGRESS", "1")
TEMPLATE = "builtin:en-ja"


def raw_calls(url: str, convs: list, concurrency: int) -> float:
    import httpx

    body = {"model": "fake-mt", "temperature": 0.0, "top_p": 1.0, "max_tokens": 2048, "seed": 0}
    t0 = time.perf_counter()
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as c, \
            ThreadPoolExecutor(concurrency) as pool:
        outs = list(pool.map(lambda m: c.post(f"{url}/chat/completions", json={**body, "messages": m}).json(), convs))
    assert len(outs) == len(convs)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--delay", type=float, default=0.0, help="server seconds per request (0 = worst case for overhead)")
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    from jprefs.config import load_config
    from jprefs.translate.config import TranslateConfig
    from jprefs.translate.pipeline import load_input, make_plan, run_translate
    from jprefs.translate.prompts import load_template

    def cfg(url, out):
        return load_config(TranslateConfig, None, {
            "input": str(HH), "source": "hh-rlhf", "engine": "openai", "model": "fake-mt", "base_url": url,
            "output": out, "concurrency": args.concurrency, "chunk_size": 256, "limit": args.rows,
            "template": TEMPLATE})

    raw_t, pipe_t = [], []
    with server_process(TEMPLATE, args.delay) as url, tempfile.TemporaryDirectory() as tmp:
        c0 = cfg(url, f"{tmp}/plan")
        plan = make_plan(load_input(c0).pairs, c0.max_unit_tokens)
        template = load_template(TEMPLATE)
        convs = [template.messages([u]) for u in plan.units]
        raw_calls(url, convs[:50], args.concurrency)  # warm up both sides
        for r in range(args.repeats):
            raw_t.append(raw_calls(url, convs, args.concurrency))
            t0 = time.perf_counter()
            s = run_translate(cfg(url, f"{tmp}/run{r}"))  # fresh folder: empty cache
            pipe_t.append(time.perf_counter() - t0)
            assert s["units_translated_now"] == len(convs)
    n = len(convs)
    raw, pipe = statistics.median(raw_t), statistics.median(pipe_t)
    print(f"rows {args.rows}, distinct units (= requests) {n}, concurrency {args.concurrency}, "
          f"server delay {args.delay}s, repeats {args.repeats} (interleaved)")
    print(f"raw httpx calls : median {raw:.2f}s  ({1e3 * raw / n:.2f} ms/unit)  runs {[round(x, 2) for x in raw_t]}")
    print(f"jprefs pipeline : median {pipe:.2f}s  ({1e3 * pipe / n:.2f} ms/unit)  runs {[round(x, 2) for x in pipe_t]}")
    print(f"pipeline / raw = {pipe / raw:.3f}; overhead {1e3 * (pipe - raw) / n:.2f} ms/unit")


if __name__ == "__main__":
    main()
