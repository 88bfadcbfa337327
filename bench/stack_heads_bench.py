"""Scoring a reward stack's every head and part: one pass (`score_heads`) against one score call per
head (what `jprefs eval rm --all-heads` did before), same process, same pairs, interleaved.

A stack folder (default: the recipe's, from `python bench/rm_debias.py recipe`), the first N
ja_mt_bench pairs (both answers scored); the per-head way scores the stack, each head of its reward
model, and the components for the probe and relevance alone; both give the same numbers (checked).

    python bench/stack_heads_bench.py --pairs 64 --reps 2      # -> bench/results/stack-heads.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ja_mt_bench" / "ja_mt_bench_turn1_pairs.jsonl"
STACK = ROOT / "bench" / "results" / "rm-debias" / "work" / "recipe"


def main() -> None:
    import numpy as np

    from jprefs.classifiers.data import load_rm_data
    from jprefs.classifiers.reward_model import RewardModel

    ap = argparse.ArgumentParser()
    ap.add_argument("--stack", default=str(STACK))
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "stack-heads.json"))
    args = ap.parse_args()
    st = RewardModel.from_pretrained(args.stack, device="cpu")
    pairs = load_rm_data(DATA).pairs()[: args.pairs]
    prompts = [p.prompt for p in pairs] * 2
    responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    names = [*st.heads, *[c for c in st.names if c != "reward"]]

    def per_head():
        out = {h: st.score(prompts, responses, head=h) for h in st.heads}
        comps = st.components(prompts, responses)
        out.update({c: comps[c] for c in names if c not in out})
        return out

    def one_pass():
        return st.score_heads(prompts, responses, names)

    st.score(prompts[:2], responses[:2])               # warm-up (tokenizer, backbone load)
    times: dict[str, list[float]] = {"per_head": [], "score_heads": []}
    results = {}
    for _ in range(args.reps):
        for name, fn in (("per_head", per_head), ("score_heads", one_pass)):
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    diff = max(float(np.max(np.abs(np.asarray(results["per_head"][h]) - np.asarray(results["score_heads"][h]))))
               for h in names)
    res = {"stack": str(args.stack), "pairs": len(pairs), "responses": len(responses), "names": names,
           "seconds": times, "ratio_per_rep": [a / b for a, b in zip(times["per_head"], times["score_heads"])],
           "max_abs_difference": diff}
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
