"""The probe's logistic fits: damped Newton (``jprefs.classifiers.probe._newton_logistic``, the solver now)
against sklearn's lbfgs (``tol=1e-8``, the solver before), same process, same features, interleaved.

What is timed is a whole ``fit_probe_arrays``: the L2 grid (11 values) by grouped 5-fold CV and the
final fit, 56 logistic fits, on the frozen e5-small embeddings of each Japanese judged set's pairs (and
of both together). The two must choose the same L2 and give the same CV figures and weights (checked).

    python bench/probe_solver_bench.py --reps 2          # -> bench/results/probe-solver.json
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


def lbfgs_logistic(x, l2: float):
    """The solver before: sklearn's lbfgs on both orientations (the same objective, see _fit_logistic)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    n = len(x)
    clf = LogisticRegression(C=1.0 / (l2 * 2 * n), fit_intercept=False, solver="lbfgs", max_iter=5000, tol=1e-8)
    clf.fit(np.concatenate([x, -x]), np.r_[np.ones(n), np.zeros(n)])
    return clf.coef_[0].astype(np.float64)


def main(argv=None) -> int:
    import numpy as np

    from jprefs.classifiers import probe as P
    from jprefs.classifiers.data import load_rm_data

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "probe-solver.json"))
    args = ap.parse_args(argv)
    present = {k: v for k, v in SETS.items() if v.exists()}
    if not present:
        print(f"no judged sets under {SHARED}: nothing to measure")
        return 0
    emb = P.Embedder("e5-small-offline", input_prefix="query: ", max_length=512)
    data = {}
    for name, path in present.items():
        pairs = load_rm_data(path).pairs()
        ec, er = P.embed_pairs(pairs, emb)
        data[name] = (ec, er, np.array([len(p.chosen) for p in pairs]), np.array([len(p.rejected) for p in pairs]),
                      [f"{name}:{p.prompt_text}" for p in pairs])
    if len(data) == 2:
        data["both"] = tuple(np.concatenate([a, b]) if not isinstance(a, list) else a + b
                             for a, b in zip(*data.values()))
    newton = P._newton_logistic
    res = {"backbone": "e5-small-offline", "fits_per_probe": 11 * 5 + 1, "sets": {}}
    for name, arrays in data.items():
        t = {"lbfgs": [], "newton": []}
        probes = {}
        for _ in range(args.reps):
            for solver in ("lbfgs", "newton"):
                P._newton_logistic = lbfgs_logistic if solver == "lbfgs" else newton
                try:
                    t0 = time.perf_counter()
                    probes[solver] = P.fit_probe_arrays(*arrays, folds=5)
                    t[solver].append(time.perf_counter() - t0)
                finally:
                    P._newton_logistic = newton
        a, b = probes["lbfgs"], probes["newton"]
        ratio = [x / y for x, y in zip(t["lbfgs"], t["newton"])]
        r = res["sets"][name] = {
            "pairs": len(arrays[0]), "median_s": {k: statistics.median(v) for k, v in t.items()},
            "speedup_per_rep": ratio, "median_speedup": statistics.median(ratio),
            "l2": [a.l2, b.l2], "cv_accuracy": [a.cv_accuracy, b.cv_accuracy],
            "max_cv_log_loss_diff": max(abs(x["log_loss"] - y["log_loss"]) for x, y in zip(a.cv, b.cv)),
            "max_weight_diff": float(np.abs(np.array(a.weights) - np.array(b.weights)).max()),
            "length_weight": [a.length_weight, b.length_weight]}
        assert a.l2 == b.l2, f"{name}: the solvers chose different L2 ({a.l2} vs {b.l2})"
        print(f"{name}: {r['pairs']} pairs, lbfgs {r['median_s']['lbfgs']:.1f} s, newton {r['median_s']['newton']:.1f} s"
              f" per probe, {r['median_speedup']:.1f}x (per rep " + ", ".join(f"{x:.1f}" for x in ratio)
              + f"); L2 {b.l2} both, CV accuracy {a.cv_accuracy:.4f} / {b.cv_accuracy:.4f}, max |dw| "
              f"{r['max_weight_diff']:.1e}, max CV log-loss diff {r['max_cv_log_loss_diff']:.1e}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
