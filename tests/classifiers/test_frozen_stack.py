"""Frozen reward stacks (`train-rm stack=[probe,relevance,features] stack_reward=false`): nothing fine-tuned,
the weights fit on the training pairs with the probe's column out of fold, the held-out split only read.
Checked against an independent recomputation of every column; the saved folder scores exactly
``columns @ w - offset``; the features part carries a preference that length does not; the CLI tools
(score, eval rm --all-heads, the rl reward) read the folder; bad settings and files are clear errors."""

from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import pytest

from jprefs.classifiers import stack as S
from jprefs.classifiers.config import TrainRMConfig
from jprefs.config import load_config
from jprefs.errors import ConfigError, JprefsError

from .conftest import QUESTIONS, make_backbone_dir, score_and_eval_stack, trained_stack, write_pairs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUIET = dict(log=lambda *a, **k: None)
PROMPTS = ["今日の天気は?", "猫は好き?", "今日の天気は?", "山は?"]
RESPONSES = ["良いです。", "悪いです。。。", "良い天気です。", "嫌い。\n嫌い。"]
PARTS = ["probe", "relevance", "features"]


def _cfg(bb, data, out, **kw):
    base = dict(data=data, backbone=bb, objective="pairwise", max_length=48, max_prompt_length=16,
                eval_fraction=0.3, stack=PARTS, stack_reward=False, stack_folds=3, output_dir=str(out), plots=False)
    base.update(kw)
    cfg = load_config(TrainRMConfig, None, base)
    cfg.validate()
    return cfg


def write_finished_or_cut(path, n: int = 64, seed: int = 0):
    """Pairs where the better answer is the finished, polite one and the worse one stops mid-sentence;
    the worse one is the longer in half of the pairs (longer-wins scores about 0.5)."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            q = QUESTIONS[(i // 2) % len(QUESTIONS)] + "何" * (i // (2 * len(QUESTIONS)))    # both kinds per prompt
            good = rng.choice(["良いです。", "好きです。", "良い天気です。"])
            cut = "悪い" + "雨" * rng.randint(0, 1) if i % 2 else "良い天気で雨が" + "雨" * rng.randint(8, 12)
            f.write(json.dumps({"prompt": [{"role": "user", "content": q}], "chosen": good, "rejected": cut,
                                "source": "toy", "license": "cc0-1.0"}, ensure_ascii=False) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_stack(tmp_path_factory.mktemp("frozen"), _cfg)


def _columns(bb, pairs, probe, k, fit: bool):
    """Every column recomputed from the parts' own modules: chosen and rejected ``(n, 15)``; ``fit``: the
    probe's column out of fold (``k`` folds by prompt, as the weights were fit), else the saved probe's."""
    from jprefs.classifiers.data import group_key
    from jprefs.classifiers.probe import Embedder, fit_probe_arrays, grouped_folds
    from jprefs.classifiers.relevance import Relevance
    from jprefs.classifiers.textfeatures import feature_matrix

    n = len(pairs)
    prompts, texts = [p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs]
    e = Embedder(bb, pooling="cls", max_length=48, max_prompt_length=16).embed(prompts, texts)
    lens = np.array([len(t) for t in texts])
    if fit:
        g = [group_key(p) for p in pairs]
        fold, pr = grouped_folds(g, k, 0), np.zeros(2 * n)
        for f in range(k):
            te = fold == f
            q = fit_probe_arrays(e[:n][~te], e[n:][~te], lens[:n][~te], lens[n:][~te],
                                 [x for x, t in zip(g, te) if not t], seed=0)
            pr[:n][te], pr[n:][te] = q.score(e[:n][te], lens[:n][te]), q.score(e[n:][te], lens[n:][te])
    else:
        pr = probe.score(e, lens)
    rel = Relevance(bb, max_length=48).score(prompts, texts)
    x = np.concatenate([pr[:, None], rel[:, None], feature_matrix(prompts, texts)], axis=1)
    return x[:n], x[n:]


def test_the_weights_are_the_fit_on_the_training_pairs_with_the_probe_out_of_fold(trained):
    from jprefs.classifiers.data import load_rm_data
    from jprefs.classifiers.reward_model import RewardModel
    from jprefs.classifiers.train import _load_split

    out, m, cfg = trained["out"], trained["metrics"], trained["cfg"]
    st = RewardModel.from_pretrained(out, device="cpu")
    assert isinstance(st, S.RewardStack) and st.frozen and st.names == PARTS and st.heads == ["stack"]
    assert not (out / "reward").exists() and len(st.columns) == 15 and st.columns[2] == "features.log_chars"
    train, ev, _ = _load_split(cfg, lambda *a: None)
    pairs = train.pairs()
    xc, xr = _columns(trained["bb"], pairs, st.probe, 3, fit=True)
    w = S.stack_weights(xc - xr, l2=1.0)
    np.testing.assert_allclose(st.weight_vector(), w, rtol=1e-4, atol=1e-6)
    assert S.weights_from_vector(st.names, w)["features"]["ends_clean"] == pytest.approx(w[9])
    # centred on the training answers as the saved stack scores them
    sc, sr = _columns(trained["bb"], pairs, st.probe, 3, fit=False)
    np.testing.assert_allclose(st.offset, np.concatenate([sc, sr]).mean(0) @ w, rtol=1e-4, atol=1e-6)
    assert m["fit"]["on"].startswith(f"training pairs ({len(pairs)};") and m["data"]["train_pairs"] == len(pairs)
    # the held-out split is read with those weights, never fit on: its figure is the plain reading
    held = load_rm_data(out / "eval_split.jsonl").pairs()
    assert len(held) == len(ev.records) == m["eval"]["pairs"] > 0
    hc, hr = _columns(trained["bb"], held, st.probe, 3, fit=False)
    won = np.where(hc @ w > hr @ w, 1.0, np.where(hc @ w == hr @ w, 0.5, 0.0))
    assert m["eval"]["pairwise_accuracy"] == pytest.approx(won.mean(), abs=1e-6)
    assert set(m["eval_by_file"]) == {"pairs.jsonl", "second.jsonl"}
    assert set(m["eval"]["components"]) == set(PARTS) and m["test"]["pairs"] == 16
    assert "nothing fit on it" in st.length_sensitivity["measured_on"]
    card = (out / "README.md").read_text()
    assert "Frozen reward stack" in card and "nothing was fit or chosen" in card and "second.jsonl" in card


def test_the_saved_stack_scores_its_columns_times_its_weights(trained, tmp_path):
    from types import SimpleNamespace

    from jprefs.classifiers.reward_model import RewardModel

    st = RewardModel.from_pretrained(trained["out"], device="cpu")
    pairs = [SimpleNamespace(prompt=p, chosen=r, rejected=r) for p, r in zip(PROMPTS, RESPONSES)]
    x, _ = _columns(trained["bb"], pairs, st.probe, 3, fit=False)
    np.testing.assert_allclose(st.matrix(st.components(PROMPTS, RESPONSES)), x, rtol=1e-5, atol=1e-6)
    # readable weights: the arithmetic of the stack and of each part alone
    from jprefs.classifiers.textfeatures import FEATURES

    st.weights = {"probe": 0.5, "relevance": -2.0, "features": {f: 0.1 * i for i, f in enumerate(FEATURES)}}
    st.offset = 0.25
    fw = 0.1 * np.arange(len(FEATURES))
    want = 0.5 * x[:, 0] - 2.0 * x[:, 1] + x[:, 2:] @ fw - 0.25
    np.testing.assert_allclose(st.score(PROMPTS, RESPONSES), want, rtol=1e-5, atol=1e-5)
    by = st.score_heads(PROMPTS, RESPONSES, ["stack", "probe", "relevance", "features"])
    np.testing.assert_allclose(by["stack"], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(by["features"], x[:, 2:] @ fw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(by["relevance"], x[:, 1], rtol=1e-5, atol=1e-6)
    assert st.as_reward_func()(prompts=PROMPTS, completions=RESPONSES) == pytest.approx(want.tolist(), rel=1e-4,
                                                                                         abs=1e-5)
    for head in ("quality", "reward"):
        with pytest.raises(ConfigError, match="not one of this reward stack's heads"):
            st.score(PROMPTS, RESPONSES, head=head)
    with pytest.raises(JprefsError, match="no logits of its own: use score\\(\\)$"):
        st.logits(PROMPTS, RESPONSES)
    assert st.config.objective == "stack" and st.config.base_model == trained["bb"] and "frozen" in repr(st)
    st.save_pretrained(tmp_path / "copy")
    np.testing.assert_allclose(RewardModel.from_pretrained(tmp_path / "copy").score(PROMPTS, RESPONSES), want,
                               rtol=1e-5, atol=1e-5)
    assert not (tmp_path / "copy" / "reward").exists()


def test_rerun_and_damaged_files(trained, tmp_path):
    import shutil

    from jprefs.classifiers.reward_model import RewardModel

    out, cfg = trained["out"], trained["cfg"]
    assert S.train_stack(cfg, **QUIET) == trained["metrics"]                  # the same run: nothing refit
    with pytest.raises(ConfigError, match="another config: stack: "):
        S.train_stack(dataclasses.replace(cfg, stack=["features"]), **QUIET)
    shutil.copytree(out, tmp_path / "copy")
    f = tmp_path / "copy" / "jprefs_stack.json"
    spec = json.loads(f.read_text())
    # a run stopped between the stack file's two writes (no config yet) is fit again, not refused
    f.write_text(json.dumps({k: v for k, v in spec.items() if k != "config"}))
    again = S.train_stack(dataclasses.replace(cfg, output_dir=str(tmp_path / "copy")), **QUIET)
    saved = json.loads(f.read_text())["config"]
    # refit in this process, where the frozen-layer memo is warm from the first fit: the same weights to float
    # noise (1e-8; exact when the test file runs after others that filled the memo the same way)
    flat = lambda w: [x for v in w.values() for x in (v.values() if isinstance(v, dict) else [v])]  # noqa: E731
    assert flat(again["weights"]) == pytest.approx(flat(trained["metrics"]["weights"]), rel=1e-6, abs=1e-9)
    assert saved["output_dir"] == str(tmp_path / "copy")
    assert {k: v for k, v in saved.items() if k != "output_dir"} == \
        {k: v for k, v in spec["config"].items() if k != "output_dir"}
    w = spec["weights"]
    for bad, msg in (({**spec, "weights": {**w, "features": {"log_chars": 1.0}}}, "fit on the features"),
                     ({**spec, "weights": {**w, "relevance": "inf"}}, "non-finite"),
                     ({**spec, "offset": "nan"}, "non-finite offset"),
                     ({**spec, "weights": {"features": w["features"]}, "probe": None}, None)):
        f.write_text(json.dumps(bad))
        if msg is None:        # a stack of the features alone loads (no backbone part needs the probe)
            st = RewardModel.from_pretrained(tmp_path / "copy")
            assert st.names == ["features"] and len(st.score(PROMPTS, RESPONSES)) == 4
            continue
        with pytest.raises(JprefsError, match=msg):
            RewardModel.from_pretrained(tmp_path / "copy")


def test_the_features_part_learns_what_length_cannot(tmp_path):
    """On pairs where the worse answer stops mid-sentence and is the longer one half the time, longer-wins
    is chance and the frozen stack reads the held-out split right, shorter-chosen pairs included."""
    bb = make_backbone_dir(tmp_path / "bb")
    data = write_finished_or_cut(tmp_path / "p.jsonl", n=80)
    m = S.train_stack(_cfg(bb, data, tmp_path / "out", stack=["probe", "features"], eval_fraction=0.4), **QUIET)
    ev = m["eval"]
    assert 0.3 <= ev["length_baseline_accuracy"] <= 0.7
    assert ev["pairwise_accuracy"] >= 0.9 and ev["length_controlled_accuracy"] >= 0.9
    assert m["weights"]["features"]["ends_clean"] > 0


def test_no_held_out_split_trains_on_every_pair(tmp_path):
    bb = make_backbone_dir(tmp_path / "bb")
    m = S.train_stack(_cfg(bb, write_pairs(tmp_path / "p.jsonl", n=24), tmp_path / "out", eval_fraction=0.0,
                           stack=["relevance", "features"]), **QUIET)
    assert "eval" not in m and m["data"]["train_pairs"] == 24 and "in-sample" in m["length_sensitivity"]["measured_on"]
    assert "no held-out split" in (tmp_path / "out" / "README.md").read_text()


@pytest.mark.parametrize("over, msg", [
    ({"stack": []}, "needs its parts"),
    ({"stack_head": "quality"}, "'stack_head' sets up the fine-tuned"),
    ({"ensemble_seeds": [1, 2]}, "'ensemble_seeds' sets up"),
    ({"debias": "odin"}, "'debias' sets up"),
    ({"stack": ["features", "bm25"]}, "config key 'stack'"),
])
def test_bad_frozen_settings_are_config_errors(tmp_path, over, msg):
    with pytest.raises(ConfigError, match=msg):
        _cfg("bb", "x.jsonl", tmp_path, **over)


def test_a_frozen_stack_needs_two_training_prompts(tmp_path):
    bb = make_backbone_dir(tmp_path / "bb")
    p = tmp_path / "one.jsonl"
    p.write_text("".join(json.dumps({"prompt": "同じ質問?", "chosen": f"良いです{'。' * i}", "rejected": "悪い"},
                                    ensure_ascii=False) + "\n" for i in range(1, 5)), encoding="utf-8")
    with pytest.raises(ConfigError, match="at least 2 prompts"):
        S.train_stack(_cfg(bb, str(p), tmp_path / "out", eval_fraction=0.0), **QUIET)


def test_the_cli_trains_and_every_tool_reads_a_frozen_stack(trained, tmp_path, capsys):
    """`jprefs train-rm ... stack_reward=false`, `jprefs score`, `jprefs eval rm --all-heads` (the stack and
    each part) and the rl reward loader on a frozen stack folder."""
    from jprefs.cli import main
    from jprefs.rl.rewards import length_warning, make_reward

    d = tmp_path / "cli"
    rc = main(["train-rm", f"data={write_pairs(tmp_path / 'p.jsonl', n=30)}", f"backbone={trained['bb']}",
               "objective=pairwise", "stack=[relevance,features]", "stack_reward=false", "max_length=48",
               "eval_fraction=0.3", "plots=false", "-o", str(d)])
    assert rc == 0, capsys.readouterr().err
    assert "eval: " in capsys.readouterr().out and (d / "jprefs_stack.json").is_file()
    out, data = trained["out"], trained["test"]
    st, pairs, want, m, got = score_and_eval_stack(out, data, "frozen", tmp_path, capsys)
    n = len(pairs)
    assert set(m["results"]) == {"frozen", "frozen:probe", "frozen:relevance", "frozen:features"}
    assert "a frozen stack of probe, relevance, features" in (tmp_path / "ev" / "report.md").read_text()
    np.testing.assert_allclose([r["r_rejected"] for r in got if r["model"] == "frozen"], want[n:], rtol=1e-5,
                               atol=1e-6)
    fn = make_reward("rm", str(out))
    assert fn(PROMPTS, RESPONSES) == pytest.approx(st.score(PROMPTS, RESPONSES).tolist(), rel=1e-4, abs=1e-5)
    length_warning(st, str(out))            # reads the stack's own length figures without a reward model
    from jprefs.publish.model import find_kind

    assert find_kind(out) == "stack"        # pushable (tests/hub/test_push_roundtrip.py round-trips one)


def test_features_in_a_fine_tuned_stack_are_fit_on_the_held_out_split(tmp_path):
    """stack=[features] over a fine-tuned reward: 14 columns (reward + 13 features) fit on the held-out
    split as the other parts are, the fold weights named per column."""
    from jprefs.classifiers.data import load_rm_data
    from jprefs.classifiers.reward_model import RewardModel

    bb = make_backbone_dir(tmp_path / "bb")
    cfg = _cfg(bb, write_pairs(tmp_path / "p.jsonl", n=40), tmp_path / "out", stack=["features"], stack_reward=True,
               epochs=1, batch_size=8, train_layers=1, eval_fraction=0.4, lr=3e-3, warmup_ratio=0.0)
    m = S.train_stack(cfg, **QUIET)
    st = RewardModel.from_pretrained(tmp_path / "out", device="cpu")
    assert st.names == ["reward", "features"] and len(st.columns) == 14 and len(m["fold_weights"]) == 14
    pairs = load_rm_data(tmp_path / "out" / "reward" / "eval_split.jsonl").pairs()
    n = len(pairs)
    x = st.matrix(st.components([p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs]))
    np.testing.assert_allclose(st.weight_vector(), S.stack_weights(x[:n] - x[n:]), rtol=1e-3, atol=1e-6)
    assert set(m["eval"]["components"]) == {"reward", "features"}
    # the features' own figure in the cross-fitted table is out of fold too: each pair scored with the 13
    # feature weights of the fold fit without it (the full fit's weights saw its label)
    from jprefs.classifiers.probe import grouped_folds
    from jprefs.data.schema import prompt_key

    fold = grouped_folds([prompt_key(p.prompt) for p in pairs], m["eval"]["cross_fitted_folds"], 0)
    fw = np.array([m["fold_weights"][c] for c in st.columns[1:]]).T[fold]          # (n, 13)
    fc, fr = (x[:n, 1:] * fw).sum(1), (x[n:, 1:] * fw).sum(1)
    want = float(np.mean(np.where(fc > fr, 1.0, np.where(fc == fr, 0.5, 0.0))))
    assert m["eval"]["components"]["features"]["pairwise_accuracy"] == pytest.approx(want, abs=1e-9)
