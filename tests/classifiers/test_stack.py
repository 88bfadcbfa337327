"""Reward stacks (jprefs.classifiers.stack, `train-rm stack=[probe,relevance]`): the weight fit meets its
stated objective; cross-fitting never reads the scored fold's labels; end to end on a tiny BERT, the
saved stack scores exactly sum(w * component) - offset with each component recomputed on its own, the
weights are the fit on the held-out split, and the files, reruns and errors behave."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jprefs.classifiers import stack as S
from jprefs.classifiers.config import TrainRMConfig
from jprefs.config import load_config
from jprefs.errors import ConfigError, JprefsError

from .conftest import make_backbone_dir, score_and_eval_stack, trained_stack, write_pairs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUIET = dict(log=lambda *a, **k: None)


def test_stack_weights_are_the_stated_minimum():
    rng = np.random.default_rng(0)
    d = rng.normal(size=(300, 3)) * [1.0, 5.0, 0.2] + [0.4, 0.0, 0.05]
    sd = np.sqrt(np.mean(d ** 2, axis=0))
    for pen in (np.ones(3), np.array([1.0, 0.1, 0.01])):       # the default and per-column penalties
        w = S.stack_weights(d, l2=0.5, penalties=None if pen[2] == 1 else pen)

        def objective(v):    # mean log-loss + l2/2 sum(pen (v sd)^2) (the standardised columns' weights)
            return np.logaddexp(0, -(d @ v)).mean() + 0.5 / 2 * np.sum(pen * (v * sd) ** 2)

        base = objective(w)
        for i in range(3):
            for eps in (1e-3, -1e-3):
                v = w.copy()
                v[i] += eps / sd[i]
                assert objective(v) >= base - 1e-9
        assert w[0] > 0 and abs(w[1]) * sd[1] < abs(w[0]) * sd[0]      # the informative column dominates
    with pytest.raises(ValueError, match="NaN or infinity"):
        S.stack_weights(np.array([[1.0, np.nan]]))


def test_cross_fitting_never_reads_the_labels_of_the_fold_it_scores():
    from jprefs.classifiers.probe import grouped_folds

    rng = np.random.default_rng(1)
    n = 90
    groups = [f"q{i % 15}" for i in range(n)]
    xc, xr = rng.normal(size=(n, 2)) + [0.6, 0.0], rng.normal(size=(n, 2))
    sc, sr, ws = S.cross_fitted(xc, xr, groups, folds=3)
    assert ws.shape == (3, 2) and sc.shape == sr.shape == (n,)
    fold = grouped_folds(groups, 3, 0)
    # flip the labels (swap chosen and rejected) of fold 0's pairs: fold 0 is scored as before
    f0 = (fold == 0)[:, None]
    sc2, sr2, ws2 = S.cross_fitted(np.where(f0, xr, xc), np.where(f0, xc, xr), groups, folds=3)
    np.testing.assert_allclose(sc2[fold == 0], sr[fold == 0])
    np.testing.assert_allclose(sr2[fold == 0], sc[fold == 0])
    np.testing.assert_allclose(ws2[0], ws[0])
    assert not np.allclose(ws2[1], ws[1])                      # the other folds were fit on fold 0's labels
    # each fold's scores are its features times the weights fit without it, less that fit's offset (the mean
    # score of the responses it was fit on), so every fold's rewards are centred alike
    for f in range(3):
        te = fold == f
        w = S.stack_weights(xc[~te] - xr[~te])
        off = np.concatenate([xc[~te], xr[~te]]).mean(0) @ w
        np.testing.assert_allclose(sc[te], xc[te] @ w - off)
    shifted = S.cross_fitted(xc + 5.0, xr + 5.0, groups, folds=3)      # a column far from 0 moves no score
    np.testing.assert_allclose(shifted[0], sc, atol=1e-9)
    with pytest.raises(ConfigError, match="at least 2 prompts"):
        S.cross_fitted(xc, xr, ["one"] * n)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_stack(tmp_path_factory.mktemp("stack"), _cfg)


def _cfg(bb, data, out, **kw):
    base = dict(data=data, backbone=bb, objective="pairwise", epochs=1, lr=3e-3, batch_size=8, max_length=48,
                max_prompt_length=16, eval_fraction=0.4, train_layers=1, debias="odin", stack=["probe", "relevance"],
                stack_head="quality", stack_folds=3, warmup_ratio=0.0, output_dir=str(out), plots=False)
    base.update(kw)
    cfg = load_config(TrainRMConfig, None, base)
    cfg.validate()
    return cfg


PROMPTS = ["今日の天気は?", "猫は好き?", "今日の天気は?", "山は?"]
RESPONSES = ["良いです。", "悪いです。。。", "良い天気です。", "嫌い。"]


def test_a_trained_stack_scores_the_weighted_sum_of_its_components_each_recomputed(trained):
    from jprefs.classifiers.probe import Embedder, LengthProbe
    from jprefs.classifiers.relevance import Relevance
    from jprefs.classifiers.reward_model import RewardModel

    out = trained["out"]
    st = RewardModel.from_pretrained(out, device="cpu")
    assert isinstance(st, S.RewardStack) and st.names == ["reward", "probe", "relevance"]
    assert st.heads == ["stack", "quality", "length", "full"]
    base = RewardModel.from_pretrained(out / "reward", device="cpu")
    reward = base.score(PROMPTS, RESPONSES, head="quality")
    emb = Embedder(trained["bb"], pooling=trained["cfg"].pooling, max_length=48, max_prompt_length=16)
    probe = LengthProbe.from_dict(json.loads((out / "probe.json").read_text()))
    pr = probe.score(emb.embed(PROMPTS, RESPONSES), [len(r) for r in RESPONSES])
    rel = Relevance(trained["bb"], max_length=48).score(PROMPTS, RESPONSES)
    comps = st.components(PROMPTS, RESPONSES)
    np.testing.assert_allclose(comps["reward"], reward, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(comps["probe"], pr, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(comps["relevance"], rel, atol=1e-7)
    # the toy's random backbone gives near-constant relevance, so the fitted weights are extreme; the
    # arithmetic is checked with weights of a readable size
    st.weights, st.offset = {"reward": 2.0, "probe": 0.25, "relevance": -1.5}, 0.3
    want = 2.0 * reward + 0.25 * pr - 1.5 * rel - 0.3
    np.testing.assert_allclose(st.score(PROMPTS, RESPONSES), want, rtol=1e-5, atol=1e-5)
    # the reward model's own heads through the stack; the trl reward function gives the stack
    np.testing.assert_allclose(st.score(PROMPTS, RESPONSES, head="length"), base.score(PROMPTS, RESPONSES,
                                                                                         head="length"), rtol=1e-5)
    assert st.as_reward_func()(prompts=PROMPTS, completions=RESPONSES) == pytest.approx(want.tolist(), rel=1e-4,
                                                                                         abs=1e-5)
    # one string prompt for every response, as RewardModel.score takes
    np.testing.assert_allclose(st.score("猫は好き?", RESPONSES[:2]), st.score(["猫は好き?"] * 2, RESPONSES[:2]))
    with pytest.raises(ConfigError, match="pass the prompts"):
        st.score(None, RESPONSES)
    with pytest.raises(ConfigError, match="not one of this reward stack's heads"):
        st.score(PROMPTS, RESPONSES, head="blend")
    with pytest.raises(JprefsError, match="no logits"):
        st.logits(PROMPTS, RESPONSES)


def test_the_weights_are_the_fit_on_the_held_out_split_and_its_figures_are_cross_fitted(trained):
    from jprefs.classifiers.data import load_rm_data
    from jprefs.classifiers.reward_model import RewardModel
    from jprefs.data.schema import prompt_key

    out, m = trained["out"], trained["metrics"]
    st = RewardModel.from_pretrained(out, device="cpu")
    pairs = load_rm_data(out / "reward" / "eval_split.jsonl").pairs()
    n = len(pairs)
    comps = st.components([p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs])
    x = np.stack([comps[c] for c in st.names], 1)
    w = S.stack_weights(x[:n] - x[n:])
    np.testing.assert_allclose([st.weights[c] for c in st.names], w, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(st.offset, x.mean(0) @ w, rtol=1e-3, atol=1e-6)
    # the reported held-out accuracy is the cross-fitted one
    sc, sr, _ = S.cross_fitted(x[:n], x[n:], [prompt_key(p.prompt) for p in pairs], folds=3)
    won = np.where(sc > sr, 1.0, np.where(sc == sr, 0.5, 0.0))
    assert m["eval"]["pairwise_accuracy"] == pytest.approx(won.mean(), abs=1e-6)
    assert m["eval"]["pairs"] == n == m["data"]["eval"] and m["eval"]["cross_fitted_folds"] == 3
    assert set(m["eval_by_file"]) == {"pairs.jsonl", "second.jsonl"}
    assert sum(v["pairs"] for v in m["eval_by_file"].values()) == n
    for v in m["eval_by_file"].values():
        assert set(v["components"]) == {"reward", "probe", "relevance"}
        assert 0 <= v["length_baseline_accuracy"] <= 1
    assert m["test"]["pairs"] == 16 and "components" in m["test"]
    assert st.length_sensitivity["pairs"] == n and "cross-fitted" in st.length_sensitivity["measured_on"]
    card = (out / "README.md").read_text()
    assert "cross-fitted" in card and "second.jsonl" in card and "RewardStack" in card
    assert m["reward_epoch_selected_on_eval"] is None and "lean optimistic" not in card     # one epoch: no choice


def test_an_epoch_chosen_on_the_held_out_split_is_said_in_the_card():
    chosen = S._epoch_chosen({"selected_by": "pairwise_accuracy", "best_epoch": 1}, 2)
    assert chosen == "epoch 1 of 2 by pairwise_accuracy"
    assert "lean optimistic" in S._epoch_caveat({"reward_epoch_selected_on_eval": chosen})
    assert S._epoch_chosen({"selected_by": "none (one epoch: nothing to choose)", "best_epoch": 1}, 1) is None
    assert S._epoch_chosen({"selected_by": "none (the eval split has 20 rows ...)", "best_epoch": 3}, 3) is None


def test_rerun_resave_and_damaged_files(trained, tmp_path):
    from jprefs.classifiers.reward_model import RewardModel

    out, cfg = trained["out"], trained["cfg"]
    assert S.train_stack(cfg, **QUIET) == trained["metrics"]            # the same run: nothing retrained
    import dataclasses

    with pytest.raises(ConfigError, match="another config: stack: "):
        S.train_stack(dataclasses.replace(cfg, stack=["relevance"]), **QUIET)
    # the same run named another way (a relative -o, plots, scoring batch size): still nothing to do
    import os

    rel = os.path.relpath(out)
    assert S.train_stack(dataclasses.replace(cfg, output_dir=rel, eval_batch_size=3), **QUIET) == trained["metrics"]
    st = RewardModel.from_pretrained(out, device="cpu")
    st.save_pretrained(tmp_path / "copy")
    np.testing.assert_allclose(RewardModel.from_pretrained(tmp_path / "copy").score(PROMPTS, RESPONSES),
                               st.score(PROMPTS, RESPONSES), rtol=1e-5)
    spec = json.loads((tmp_path / "copy" / "jprefs_stack.json").read_text())
    for bad, msg in (({**spec, "format": "x"}, "not a jprefs reward-stack file"),
                     ({**spec, "weights": {"reward": "nan"}}, "non-finite"),
                     ({**spec, "reward": "../elsewhere"}, "outside the stack folder")):
        (tmp_path / "copy" / "jprefs_stack.json").write_text(json.dumps(bad))
        with pytest.raises(JprefsError, match=msg):
            RewardModel.from_pretrained(tmp_path / "copy")


@pytest.mark.parametrize("over, msg", [
    ({"stack": ["probe", "bm25"]}, "config key 'stack'"),
    ({"stack": ["probe", "probe"]}, "each once"),
    ({"objective": "binary", "debias": "none", "stack_head": ""}, "objective=pairwise or listwise"),
    ({"stack": [], "stack_head": "quality"}, "needs stack"),
    ({"stack_folds": 1}, "stack_folds"),
])
def test_bad_stack_settings_are_config_errors(tmp_path, over, msg):
    with pytest.raises(ConfigError, match=msg):
        _cfg("bb", "x.jsonl", tmp_path, **over)


def test_a_stack_over_a_seed_ensemble_takes_the_members_mean_reward(tmp_path):
    from jprefs.classifiers.ensemble import RewardEnsemble
    from jprefs.classifiers.reward_model import RewardModel
    from jprefs.modeldir import check_model_dir

    bb = make_backbone_dir(tmp_path / "bb")
    cfg = _cfg(bb, write_pairs(tmp_path / "p.jsonl", n=40), tmp_path / "out", ensemble_seeds=[1, 2], epochs=2,
               stack=["relevance"])
    m = S.train_stack(cfg, **QUIET)
    out = tmp_path / "out"
    check_model_dir(out)                                   # stack -> reward/ (ensemble) -> seed-N
    st = RewardModel.from_pretrained(out, device="cpu")
    assert isinstance(st.base, RewardEnsemble) and st.base.names == ["seed-1", "seed-2"]
    members = [RewardModel.from_pretrained(out / "reward" / n, device="cpu") for n in ("seed-1", "seed-2")]
    mean = np.mean([x.score(PROMPTS, RESPONSES, head="quality") for x in members], 0)
    np.testing.assert_allclose(st.components(PROMPTS, RESPONSES)["reward"], mean, rtol=1e-5, atol=1e-7)
    # every head of the ensemble and the stack itself in one pass per member, as each alone
    by = st.score_heads(PROMPTS, RESPONSES, st.heads)
    for h in st.heads:
        np.testing.assert_allclose(by[h], st.score(PROMPTS, RESPONSES, head=h), rtol=1e-5, atol=1e-6, err_msg=h)
    np.testing.assert_allclose(by["quality"], mean, rtol=1e-5, atol=1e-7)
    # the held-out split (16 rows) is too small to choose an epoch on: no member chose, and none is said
    assert m["data"]["eval"] == m["eval"]["pairs"] and m["reward_epoch_selected_on_eval"] is None
    card = (out / "README.md").read_text()
    assert "seed ensemble, seeds [1, 2]" in card
    assert S._epochs_chosen({"seed-1": {"selected_by": "pairwise_accuracy", "best_epoch": 2},
                             "seed-2": {"selected_by": "pairwise_accuracy", "best_epoch": 1}}, 2) == \
        "seed-1: epoch 2 of 2 by pairwise_accuracy; seed-2: epoch 1 of 2 by pairwise_accuracy"
    # length figures per head: the stack's own for the stack, the ensemble's (not a member's) for its heads
    own, q = st.length_stats_for(None), st.length_stats_for("quality")
    assert own["per_100_chars"] == st.length_sensitivity["per_100_chars"] and own["measured_on"]
    assert q == st.base.length_stats_for("quality") and q["per_100_chars"] != pytest.approx(own["per_100_chars"])
    assert q["per_100_chars"] != pytest.approx(members[0].length_stats_for("quality")["per_100_chars"], rel=1e-6)
    # the members' frozen-layer setting follows the ensemble's
    st.base.frozen_layer_cache = 1
    assert [x.frozen_layer_cache for x in st.base.members] == [1, 1]


def test_a_stack_needs_a_held_out_split(tmp_path):
    bb = make_backbone_dir(tmp_path / "bb")
    cfg = _cfg(bb, write_pairs(tmp_path / "p.jsonl", n=16), tmp_path / "out", eval_fraction=0.0, debias="none",
               stack_head="", stack=["relevance"])
    with pytest.raises(ConfigError, match="held-out split"):
        S.train_stack(cfg, **QUIET)


def test_the_cli_tools_take_a_stack_folder(trained, tmp_path, capsys):
    """`jprefs score`, `jprefs eval rm` (with --all-heads) and the rl reward loader read a stack folder and
    give the stack's own scores."""
    from jprefs.rl.rewards import make_reward

    out, data = trained["out"], trained["test"]
    st, pairs, want, m, got = score_and_eval_stack(out, data, "stack", tmp_path, capsys)
    n = len(pairs)
    assert set(m["results"]) == {"stack", "stack:quality", "stack:length", "stack:full", "stack:probe",
                                 "stack:relevance"}
    np.testing.assert_allclose([r["r_chosen"] for r in got if r["model"] == "stack"], want[:n], rtol=1e-5, atol=1e-6)
    q = st.score([p.prompt for p in pairs], [p.rejected for p in pairs], head="quality")
    np.testing.assert_allclose([r["r_rejected"] for r in got if r["model"] == "stack:quality"], q, rtol=1e-5,
                               atol=1e-6)
    comps = st.components([p.prompt for p in pairs], [p.rejected for p in pairs])
    for part in ("probe", "relevance"):
        np.testing.assert_allclose([r["r_rejected"] for r in got if r["model"] == f"stack:{part}"], comps[part],
                                   rtol=1e-5, atol=1e-6)
    fn = make_reward("rm", str(out))
    assert fn(PROMPTS, RESPONSES) == pytest.approx(st.score(PROMPTS, RESPONSES).tolist(), rel=1e-4, abs=1e-5)
    with pytest.raises(ConfigError, match="not one of this reward stack's heads"):
        make_reward("rm", str(out), head="blend")
    from jprefs.publish.model import find_kind

    assert find_kind(out) == "stack" and find_kind(out / "reward") == "reward-model"    # both pushable


def test_score_heads_is_one_pass_and_equals_each_score(trained, monkeypatch):
    """`score_heads`: the stack, every head of its reward model and each part alone, equal to scoring each
    separately, with ONE forward pass of the reward model (eval rm --all-heads used to pay one per head)."""
    from jprefs.classifiers.reward_model import RewardModel

    st = RewardModel.from_pretrained(trained["out"], device="cpu")
    names = ["stack", *st.heads[1:], "probe", "relevance"]
    want = {h: st.score(PROMPTS, RESPONSES, head=h) for h in names[:-2]}
    comps = st.components(PROMPTS, RESPONSES)
    calls = []
    real = st.base.logits
    monkeypatch.setattr(st.base, "logits", lambda *a, **k: calls.append(1) or real(*a, **k))
    got = st.score_heads(PROMPTS, RESPONSES, names)
    assert len(calls) == 1 and list(got) == names
    for h in names[:-2]:
        np.testing.assert_allclose(got[h], want[h], rtol=1e-5, atol=1e-6, err_msg=h)
    for part in ("probe", "relevance"):
        np.testing.assert_allclose(got[part], comps[part], rtol=1e-6, atol=1e-7)
    base = st.base.score_heads(PROMPTS, RESPONSES, st.base.heads)
    for h in st.base.heads:
        np.testing.assert_allclose(base[h], st.base.score(PROMPTS, RESPONSES, head=h), rtol=1e-6, atol=1e-7)
    assert all(len(v) == 0 for v in st.score_heads([], [], names).values())
