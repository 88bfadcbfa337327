"""The frozen-layer cache against recomputing the frozen layers, same run, same pairs (issue #13).

Trains e5-small (train_layers=2, 512 tokens) on the first N ja_mt_bench pairs for E epochs, with
``cache_frozen_layers`` on and off, interleaved, and reports the wall-clock time of each run and
their ratio; the cached run's time includes building its cache once (the memo is cleared first).

    python bench/layercache_bench.py --pairs 96 --epochs 2 --reps 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ja_mt_bench" / "ja_mt_bench_turn1_pairs.jsonl"


def run(cached: bool, args) -> float:
    from jprefs.classifiers.config import TrainRMConfig
    from jprefs.classifiers.layercache import clear_memo
    from jprefs.classifiers.train import train_reward_model
    from jprefs.config import load_config

    clear_memo()
    with tempfile.TemporaryDirectory() as d:
        cfg = load_config(TrainRMConfig, None, dict(
            data=str(DATA), limit=args.pairs, eval_fraction=0, objective="pairwise", backbone="e5-small-offline",
            pooling="mean", input_prefix="query: ", max_length=512, max_prompt_length=128, train_layers=2,
            epochs=args.epochs, batch_size=16, lr=1e-4, center_samples=16, plots=False, output_dir=d,
            cache_frozen_layers=cached))
        t0 = time.perf_counter()
        train_reward_model(cfg, log=lambda *a, **k: None)
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=96)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    rows = []
    for rep in range(args.reps):
        plain, cached = run(False, args), run(True, args)
        rows.append({"rep": rep, "recompute_s": plain, "cached_s": cached, "speedup": plain / cached})
        print(json.dumps(rows[-1]))
    print(json.dumps({"pairs": args.pairs, "epochs": args.epochs, "median_speedup":
                      sorted(r["speedup"] for r in rows)[len(rows) // 2]}))


if __name__ == "__main__":
    main()
