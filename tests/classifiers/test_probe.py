"""The probe baseline (jprefs.classifiers.probe): the fit on constructed embeddings (length decides /
one embedding direction decides), its stated objective, grouped folds, determinism, JSON round trip,
and the Embedder against a hand-computed pooling of a tiny BERT built from a config."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jprefs.classifiers import probe as P

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _toy(seed: int, n: int = 80, h: int = 6, *, decided_by: str, n_prompts: int = 16, p_shorter: float = 0.75):
    """``n`` pairs over ``n_prompts`` prompts with noise embeddings ``(n, h)``.

    ``length``: the chosen response is always the longer one (the embeddings are pure noise).
    ``embedding``: dimension 0 is +1 for the chosen and -1 for the rejected response (plus noise) and
    the chosen response is the SHORTER one in ``p_shorter`` of the pairs: length points the wrong way.
    """
    rng = np.random.default_rng(seed)
    ec, er = rng.normal(size=(n, h)), rng.normal(size=(n, h))
    short, long_ = rng.integers(20, 60, size=n), rng.integers(120, 400, size=n)
    if decided_by == "length":
        lc, lr = long_, short
    else:
        ec[:, 0] += 1.5
        er[:, 0] -= 1.5
        flip = rng.random(n) < p_shorter
        lc, lr = np.where(flip, short, long_), np.where(flip, long_, short)
    groups = [f"q{i % n_prompts}" for i in range(n)]
    return ec, er, lc, lr, groups


def _accuracy(probe, ec, er, lc, lr, mask=None):
    won = probe.score(ec, lc) > probe.score(er, lr)
    return float(won[mask].mean() if mask is not None else won.mean())


def test_length_decides_positive_length_weight_and_full_accuracy():
    ec, er, lc, lr, g = _toy(0, decided_by="length")
    probe = P.fit_probe_arrays(ec, er, lc, lr, g, seed=0)
    assert probe.length_weight > 0
    assert probe.cv_accuracy >= 0.95 and probe.folds == 5 and probe.n_train_prompts == 16
    test = _toy(1, decided_by="length")                      # fresh pairs from the same design
    assert _accuracy(probe, *test[:4]) >= 0.97
    # the length weight carries the decision: the noise dimensions get small weights
    assert probe.length_weight * np.log(120 / 60) > 3 * max(abs(w) for w in probe.weights)


def test_embedding_decides_probe_follows_it_on_chosen_shorter_pairs():
    ec, er, lc, lr, g = _toy(2, decided_by="embedding")
    probe = P.fit_probe_arrays(ec, er, lc, lr, g, seed=0)
    w = np.abs(probe.weights)
    assert int(np.argmax(w)) == 0 and probe.weights[0] > 0     # the deciding direction, the right sign
    assert probe.length_weight < 0                              # length points the wrong way in this design
    tec, ter, tlc, tlr, _ = _toy(3, decided_by="embedding")
    shorter = tlc < tlr
    assert shorter.sum() > 40
    assert _accuracy(probe, tec, ter, tlc, tlr, shorter) >= 0.9
    assert _accuracy(probe, tec, ter, tlc, tlr) >= 0.9
    # longer-wins on the same pairs is below chance by construction
    assert float(np.mean(tlc > tlr)) < 0.4


def test_fit_satisfies_the_stated_objective():
    """w minimises mean_i log(1 + exp(-x_i.w)) + l2/2 (|w_emb|^2 + LENGTH_PENALTY w_len^2): gradient 0."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(50, 4)) + np.array([0.3, 0.0, -0.2, 0.5])
    for l2 in (0.01, 1.0):
        w = P._fit_logistic(x, l2)
        pen = np.array([1.0, 1.0, 1.0, P.LENGTH_PENALTY])
        sig = 1.0 / (1.0 + np.exp(x @ w))                        # sigmoid(-x.w)
        grad = -(x * sig[:, None]).mean(axis=0) + l2 * pen * w
        assert np.abs(grad).max() < 1e-9, (l2, grad)
    # both orientations with labels 1/0 = the symmetric no-intercept model: flipping every pair flips w
    assert P._fit_logistic(-x, 1.0) == pytest.approx(-P._fit_logistic(x, 1.0), abs=1e-6)


def test_newton_fit_is_sklearns_optimum_on_correlated_nearly_separable_columns():
    """The Newton solver against an independent one (sklearn's lbfgs, the solver it replaced) where that
    is hardest: 60 strongly correlated columns, a tiny penalty, pairs a linear rule nearly separates,
    per-column penalties as the stack gives them. Same weights, gradient zero to 1e-9."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    base = rng.normal(size=(300, 8))
    x = base @ rng.normal(size=(8, 60)) + 0.05 * rng.normal(size=(300, 60))    # rank ~8 plus noise
    x *= np.sign(x @ rng.normal(size=60) + 0.3 * rng.normal(size=300))[:, None]
    pen = rng.uniform(0.05, 2.0, size=60)
    for l2 in (1e-3, 0.1):
        w = P._fit_logistic(x, l2, penalties=pen)
        sig = 1.0 / (1.0 + np.exp(x @ w))
        grad = -(x * sig[:, None]).mean(axis=0) + l2 * pen * w
        assert np.abs(grad).max() < 1e-9, (l2, np.abs(grad).max())
        c = 1.0 / np.sqrt(pen)
        xx = np.concatenate([x * c, -x * c])
        ref = LogisticRegression(C=1.0 / (l2 * 2 * len(x)), fit_intercept=False, solver="lbfgs", max_iter=20000,
                                 tol=1e-10).fit(xx, np.r_[np.ones(len(x)), np.zeros(len(x))]).coef_[0] * c
        assert np.abs(w - ref).max() < 1e-4 * max(1.0, np.abs(ref).max()), (l2, np.abs(w - ref).max())


def test_logistic_fit_refuses_empty_or_non_finite_features():
    with pytest.raises(ValueError, match="no pairs"):
        P._fit_logistic(np.zeros((0, 3)), 1.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        P._fit_logistic(np.array([[1.0, np.inf, 0.0]]), 1.0)


def test_score_is_the_formula_by_hand():
    probe = P.LengthProbe(weights=[2.0, -1.0], length_weight=0.5, mean=[1.0, 0.0], scale=[2.0, 4.0], l2=1.0,
                          backbone="x", pooling="mean", input_prefix="", max_length=64, max_prompt_length=16,
                          cv_accuracy=0.6)
    s = probe.score([[3.0, 4.0], [1.0, 0.0]], [np.e ** 2, 0])
    # (3-1)/2*2 + 4/4*(-1) + 0.5*2 = 2;  0 + 0 + 0.5*log(max(0, 1)) = 0
    assert s.tolist() == pytest.approx([2.0, 0.0])
    with pytest.raises(ValueError, match="expects"):
        probe.score([[1.0, 2.0, 3.0]], [5])


def test_grouped_folds_never_split_a_prompt_and_are_balanced():
    groups = [f"p{i % 13}" for i in range(100)] + ["big"] * 20
    for seed in range(4):
        fold = P.grouped_folds(groups, 5, seed)
        by_group: dict[str, set] = {}
        for gk, f in zip(groups, fold):
            by_group.setdefault(gk, set()).add(int(f))
        assert all(len(v) == 1 for v in by_group.values())       # one prompt, one fold
        sizes = np.bincount(fold, minlength=5)
        assert sorted(set(fold.tolist())) == [0, 1, 2, 3, 4] and sizes.max() - sizes.min() <= 8
    assert P.grouped_folds(groups, 5, 0).tolist() == P.grouped_folds(groups, 5, 0).tolist()
    assert P.grouped_folds(groups, 5, 0).tolist() != P.grouped_folds(groups, 5, 1).tolist()


def test_cv_uses_grouped_folds_and_the_fit_is_deterministic(monkeypatch):
    ec, er, lc, lr, g = _toy(4, decided_by="embedding")
    seen = []
    real = P.grouped_folds

    def spy(groups, folds, seed=0):
        fold = real(groups, folds, seed)
        for gk in set(groups):
            assert len({int(f) for gg, f in zip(groups, fold) if gg == gk}) == 1
        seen.append((folds, seed))
        return fold

    monkeypatch.setattr(P, "grouped_folds", spy)
    a = P.fit_probe_arrays(ec, er, lc, lr, g, seed=7, l2_grid=[0.01, 1.0, 100.0])
    b = P.fit_probe_arrays(ec, er, lc, lr, g, seed=7, l2_grid=[0.01, 1.0, 100.0])
    assert seen == [(5, 7), (5, 7)]
    assert json.dumps(a.to_dict()) == json.dumps(b.to_dict())                # same seed, same probe
    assert [r["l2"] for r in a.cv] == [0.01, 1.0, 100.0]
    best = min(a.cv, key=lambda r: r["log_loss"])
    assert a.l2 == best["l2"] and a.cv_accuracy == best["accuracy"]
    # fewer prompts than folds: one fold per prompt; one prompt: no CV, NaN accuracy (None in JSON)
    few = P.fit_probe_arrays(ec[:6], er[:6], lc[:6], lr[:6], ["a", "b", "c"] * 2, l2_grid=[1.0])
    assert few.folds == 3
    one = P.fit_probe_arrays(ec[:6], er[:6], lc[:6], lr[:6], ["a"] * 6, l2_grid=[0.1, 1.0])
    assert one.folds == 0 and one.l2 == 1.0 and one.to_dict()["cv_accuracy"] is None


def test_json_round_trip_is_strict_json():
    ec, er, lc, lr, g = _toy(6, decided_by="length")
    probe = P.fit_probe_arrays(ec, er, lc, lr, g, meta={"backbone": "tiny", "pooling": "cls", "input_prefix": "q: ",
                                                        "max_length": 64, "max_prompt_length": 8})
    text = json.dumps(probe.to_dict(), allow_nan=False)
    back = P.LengthProbe.from_dict(json.loads(text))
    assert back == probe and back.pooling == "cls" and back.max_length == 64
    assert back.score(ec, lc).tolist() == pytest.approx(probe.score(ec, lc).tolist())
    with pytest.raises(Exception, match="not a length probe"):
        P.LengthProbe.from_dict({"format": "something/1"})


def test_module_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys, jprefs.classifiers.probe; print(sorted(m for m in ('torch', 'transformers', 'numpy', "
            "'sklearn') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"


# ------------------------------------------------------------------ the Embedder on a tiny BERT


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    import torch

    from .conftest import make_backbone_dir

    torch.set_num_threads(1)
    return make_backbone_dir(tmp_path_factory.mktemp("probe") / "tiny-bert", seed=3)


PROMPTS = ["今日の天気は?", "猫は好き?", "日本の首都は?", "今日の天気は?", None]
RESPONSES = ["良いです。", "好きです好きです好きです。", "東京", "良いです。", "明るい日の良い猫です"]


def _reference(path, pooling, prefix="", max_length=64, max_prompt_length=16):
    """Hand-computed pooling of AutoModel(...)(...).last_hidden_state over ONE padded batch of all inputs."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from jprefs.classifiers.inputs import collate, encode_pairs

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    enc = encode_pairs(tok, PROMPTS, RESPONSES, max_length=max_length, max_prompt_length=max_prompt_length,
                       prefix=prefix)
    batch = collate(enc, list(range(len(enc))), tok.pad_token_id)
    assert len(set(enc.lengths)) > 2                                  # really padded
    with torch.no_grad():
        h = model(**batch).last_hidden_state                         # (B, T, H)
    if pooling == "cls":
        return h[:, 0].numpy()
    m = batch["attention_mask"].unsqueeze(-1).float()                 # (B, T, 1)
    return ((h * m).sum(1) / m.sum(1)).numpy()


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_embedder_equals_hand_computed_pooling(backbone, pooling):
    emb = P.Embedder(backbone, pooling=pooling, max_length=64, max_prompt_length=16, device="cpu", batch_size=2)
    got = emb.embed(PROMPTS, RESPONSES)
    assert got.shape == (5, 32) and got.dtype == np.float32
    ref = _reference(backbone, pooling)
    np.testing.assert_allclose(got, ref, atol=2e-5, rtol=1e-4)
    assert np.array_equal(got[0], got[3])                             # a repeated input: embedded once, same row
    # one at a time (no padding at all) gives the same vectors
    alone = np.concatenate([emb.embed([p], [r]) for p, r in zip(PROMPTS, RESPONSES)])
    np.testing.assert_allclose(alone, got, atol=2e-5, rtol=1e-4)


def test_embedder_uses_the_prefix_and_truncation_of_a_reward_model(backbone):
    emb = P.Embedder(backbone, input_prefix="質問", max_length=20, max_prompt_length=4, device="cpu")
    ref = _reference(backbone, "mean", prefix="質問", max_length=20, max_prompt_length=4)
    np.testing.assert_allclose(emb.embed(PROMPTS, RESPONSES), ref, atol=2e-5, rtol=1e-4)
    assert not np.allclose(ref, _reference(backbone, "mean"))          # the settings matter
    with pytest.raises(Exception, match="pooling"):
        P.Embedder(backbone, pooling="max")


def test_fit_probe_and_pair_scores_end_to_end_on_the_tiny_backbone(backbone):
    from jprefs.data.schema import PreferencePair

    emb = P.Embedder(backbone, max_length=64, max_prompt_length=16, device="cpu")
    pairs = [PreferencePair.create(f"質問{i % 6}", "良" * (3 + i % 5) + "です", "悪" * (12 + i % 4) + "です")
             for i in range(24)]
    probe = P.fit_probe(pairs, emb, seed=0, l2_grid=[0.1, 1.0])
    assert probe.backbone == backbone and probe.n_train_pairs == 24 and probe.n_train_prompts == 6
    sc, sr = P.probe_pair_scores(probe, pairs, emb)
    ec, er = P.embed_pairs(pairs, emb)
    assert sc.tolist() == pytest.approx(probe.score(ec, [len(p.chosen) for p in pairs]).tolist())
    assert sr.tolist() == pytest.approx(probe.score(er, [len(p.rejected) for p in pairs]).tolist())
    assert float(np.mean(sc > sr)) >= 0.9          # 良 vs 悪 is in the embeddings; length points the wrong way
