"""The fourth round's stacking in bench/rm_debias.py (issue #13): the cross-fitted stack never reads the
labels of the fold it scores (its logistic fit is the library's stack_weights, tested in test_stack)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "rm_debias.py"


@pytest.fixture(scope="module")
def B():
    spec = importlib.util.spec_from_file_location("rm_debias_for_tests", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cross_fit_never_reads_the_scored_folds_labels(B):
    rng = np.random.default_rng(1)
    feat, fold = {}, {}
    for s, n in (("a", 60), ("b", 45)):
        c, r = rng.normal(size=(n, 2)) + [0.5, 0.0], rng.normal(size=(n, 2))
        feat[s] = {"x": (c[:, 0], r[:, 0]), "y": (c[:, 1], r[:, 1])}
        fold[s] = np.arange(n) % 3
    out = B._cross_fit(feat, fold, ["x", "y"])
    # swapping chosen and rejected (flipping the labels) of fold 0 leaves fold 0's scores as they were
    flipped = {s: {k: (np.where(fold[s] == 0, v[1], v[0]), np.where(fold[s] == 0, v[0], v[1]))
                   for k, v in feat[s].items()} for s in feat}
    again = B._cross_fit(flipped, fold, ["x", "y"])
    for s in feat:
        m = int((fold[s] == 0).sum())
        np.testing.assert_allclose(again[s][0], np.r_[out[s][0][m:], out[s][0][:m]])   # same weights
        assert not np.allclose(again[s][1], out[s][1])        # folds 1, 2 were fit on fold 0's labels
        assert out[s][0].shape == (2 * m,)
