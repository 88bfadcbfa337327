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


def test_frozen_columns_embed_each_distinct_answer_once_and_map_back(B, tmp_path, monkeypatch):
    """The ninth round's columns: one embedding per distinct (prompt, answer), each pair's chosen and
    rejected rows mapped back to their own answer's, and a second call served from the cache."""
    from types import SimpleNamespace

    import jprefs.classifiers.probe as probe
    import jprefs.classifiers.relevance as relevance
    from jprefs.data.schema import as_messages

    calls = []

    def vec(text):
        return np.array([len(text), sum(map(ord, text)) % 97, text.count("a")], np.float64)

    class FakeEmbedder:
        def __init__(self, *a, **k):
            pass

        def embed(self, prompts, texts, desc=""):
            calls.append(list(texts))
            return np.stack([vec(t) for t in texts])

    class FakeRelevance:
        def __init__(self, *a, **k):
            pass

        def score(self, prompts, texts, desc=""):
            return np.array([vec(t)[1] / 97 for t in texts])

    monkeypatch.setattr(probe, "Embedder", FakeEmbedder)
    monkeypatch.setattr(relevance, "Relevance", FakeRelevance)

    def rec(i, q, c, r):
        return SimpleNamespace(id=f"p{i}", prompt=as_messages(q), chosen=c, rejected=r)

    sets = {"x": [rec(0, "q1", "aa", "b"), rec(1, "q1", "aa", "ccc"), rec(2, "q2", "aa", "b")],
            "y": [rec(3, "q1", "ccc", "b")]}
    out = B._frozen_columns(sets, tmp_path / "cols.npz")
    assert len(calls) == 1 and sorted(calls[0]) == sorted(["aa", "b", "ccc", "aa", "b"])   # (q2, aa) is new
    for k, recs in sets.items():
        for i, r in enumerate(recs):
            np.testing.assert_array_equal(out[k]["ec"][i], vec(r.chosen))
            np.testing.assert_array_equal(out[k]["er"][i], vec(r.rejected))
            assert out[k]["lc"][i] == len(r.chosen) and out[k]["lr"][i] == len(r.rejected)
    again = B._frozen_columns(sets, tmp_path / "cols.npz")
    assert len(calls) == 1                                   # the cache, keyed by the sets' pair ids
    np.testing.assert_array_equal(again["y"]["fr"], out["y"]["fr"])
    sets["y"].append(rec(4, "q3", "dd", "e"))
    B._frozen_columns(sets, tmp_path / "cols.npz")
    assert len(calls) == 2                                   # other pairs: computed again
