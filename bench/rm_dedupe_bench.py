"""Scoring each distinct input once (`RewardModel.dedupe_inputs`, the default) against scoring every row,
same process, same pairs, interleaved (what `jprefs eval rm` and `train-rm`'s evaluations pay).

A judged pair set pairs each answer with several others, so the 2N answers of N pairs hold far fewer
distinct (prompt, answer) inputs. The recipe's reward model (`python bench/rm_debias.py recipe`) and its
stack score the first N pairs of each Japanese judged set; both ways give the same numbers (checked).

    python bench/rm_dedupe_bench.py --pairs 128 --reps 2     # -> bench/results/rm-dedupe.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SETS = {"ja_mt_bench": SHARED / "ja_mt_bench" / "ja_mt_bench_turn1_pairs.jsonl",
        "rakuda": SHARED / "rakuda" / "rakuda_gpt4_pairs.jsonl"}
STACK = ROOT / "bench" / "results" / "rm-debias" / "work" / "recipe"


def main() -> None:
    import numpy as np

    from jprefs.classifiers.data import load_rm_data
    from jprefs.classifiers.reward_model import RewardModel

    ap = argparse.ArgumentParser()
    ap.add_argument("--stack", default=str(STACK))
    ap.add_argument("--pairs", type=int, default=128)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "rm-dedupe.json"))
    args = ap.parse_args()
    st = RewardModel.from_pretrained(args.stack, device="cpu")
    rm = st.base
    res = {"stack": str(args.stack), "pairs": args.pairs, "sets": {}}
    for name, path in SETS.items():
        all_pairs = load_rm_data(path).pairs()
        full = {(repr(p.prompt), r) for p in all_pairs for r in (p.chosen, p.rejected)}
        pairs = all_pairs[: args.pairs]
        prompts = [p.prompt for p in pairs] * 2
        responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]
        distinct = len({(repr(p), r) for p, r in zip(prompts, responses)})
        rm.score(prompts[:2], responses[:2])                  # warm-up
        t: dict[str, list[float]] = {"every_row": [], "dedupe": [], "stack_every_row": [], "stack_dedupe": []}
        out = {}
        for _ in range(args.reps):
            for key, dedupe, fn in (("every_row", False, rm.score), ("dedupe", True, rm.score),
                                    ("stack_every_row", False, st.score), ("stack_dedupe", True, st.score)):
                rm.dedupe_inputs = dedupe
                t0 = time.perf_counter()
                out[key] = fn(prompts, responses)
                t[key].append(time.perf_counter() - t0)
        rm.dedupe_inputs = True
        res["sets"][name] = {
            "responses": len(responses), "distinct_inputs": distinct,
            "whole_set": {"responses": 2 * len(all_pairs), "distinct_inputs": len(full)},
            "seconds": t,
            "ratio_rm": [a / b for a, b in zip(t["every_row"], t["dedupe"])],
            "ratio_stack": [a / b for a, b in zip(t["stack_every_row"], t["stack_dedupe"])],
            "max_abs_difference": max(float(np.max(np.abs(out["every_row"] - out["dedupe"]))),
                                      float(np.max(np.abs(out["stack_every_row"] - out["stack_dedupe"]))))}
        print(name, json.dumps(res["sets"][name]), flush=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
