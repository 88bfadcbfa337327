"""train-rm with the length-debiasing options on a tiny BERT: ODIN heads end to end, the frozen-layer
cache, counterfactual pairs, several training files held out apart, and the errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jprefs.classifiers.config import TrainRMConfig
from jprefs.config import load_config
from jprefs.errors import ConfigError

from .conftest import make_backbone_dir, write_pairs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy")
    return {"backbone": make_backbone_dir(d / "bb"), "pairs": write_pairs(d / "pairs.jsonl"), "dir": d}


def _cfg(toy, out, **kw):
    base = dict(data=toy["pairs"], backbone=toy["backbone"], objective="pairwise", epochs=3, lr=3e-3, batch_size=8,
                max_length=48, eval_fraction=0.25, freeze_embeddings=False, warmup_ratio=0.0, output_dir=str(out),
                plots=False)
    base.update(kw)
    return load_config(TrainRMConfig, None, base)


def _train(toy, out, **kw):
    from jprefs.classifiers.train import train_reward_model

    return train_reward_model(_cfg(toy, out, **kw), log=lambda *a, **k: None)


def test_odin_trains_two_heads_saves_them_and_scores_with_the_quality_head(toy, tmp_path):
    from jprefs.classifiers.reward_model import RewardModel

    out = tmp_path / "odin"
    m = _train(toy, out, debias="odin")
    rm = RewardModel.from_pretrained(out, device="cpu")
    assert rm.model.config.num_labels == 2 and rm.heads == ["quality", "length", "full"]
    assert rm.config.heads == ["quality", "length"] and rm.config.reward_head == "quality"
    # the default reward is the quality head (logit 0) minus its centring constant; full = the sum
    prompts, responses = ["今日の天気は?"] * 3, ["良いです。", "悪いです。。。", "良い猫。"]
    lg = rm.logits(prompts, responses)
    c = rm.config.head_centers
    np.testing.assert_allclose(rm.score(prompts, responses), lg[:, 0] - c["quality"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rm.score(prompts, responses, head="length"), lg[:, 1] - c["length"], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(rm.score(prompts, responses, head="full"), lg.sum(1) - c["full"], rtol=1e-5,
                               atol=1e-6)
    assert rm.config.center == pytest.approx(c["quality"])
    with pytest.raises(ConfigError, match="not one of this reward model's heads"):
        rm.score(prompts, responses, head="style")
    with pytest.raises(ConfigError, match="not one of this reward model's heads"):
        rm.as_reward_func(head="style")
    assert rm.as_reward_func(head="full")(prompts=prompts, completions=responses) == pytest.approx(
        rm.score(prompts, responses, head="full").tolist(), rel=1e-5)
    # every head evaluated on the held-out pairs; no pointwise (two-class) figures for a two-head model
    assert set(m["eval_heads"]) == {"quality", "length", "full"}
    assert m["eval"]["pairwise_accuracy"] == pytest.approx(m["eval_heads"]["quality"]["pairwise_accuracy"])
    assert not any(k.startswith("pointwise_") for k in m["eval"])
    assert m["eval_heads"]["quality"]["pairwise_accuracy"] >= 0.75     # the toy preference is learnable
    # the length sensitivity is saved with the model and exposed
    saved = json.loads((out / "jprefs_reward.json").read_text())
    assert set(saved["length_stats"]) == {"quality", "length", "full", "measured_on"}
    ls = rm.length_sensitivity
    assert ls == saved["length_stats"]["quality"] and np.isfinite(ls["per_100_chars"])
    assert ls["length_controlled_accuracy"] == m["eval"]["length_controlled_accuracy"]
    card = (out / "README.md").read_text()
    assert "quality" in card and "per 100 characters" in card


def test_a_one_reward_model_has_no_heads_and_its_length_sensitivity_is_saved(toy, tmp_path):
    from jprefs.classifiers.reward_model import RewardModel

    out = tmp_path / "bt"
    m = _train(toy, out, epochs=1)
    rm = RewardModel.from_pretrained(out, device="cpu")
    assert rm.heads == [] and "eval_heads" not in m
    with pytest.raises(ConfigError, match="one reward"):
        rm.score(["a"], ["b"], head="quality")
    ls = rm.length_sensitivity
    assert set(ls) >= {"per_100_chars", "length_controlled_accuracy", "spearman_length"}
    assert ls["spearman_length"] == pytest.approx(m["eval"]["reward_length_corr"]["spearman"])
    # per 100 characters: the least-squares slope, recomputed from the model's scores
    from jprefs.classifiers.data import load_rm_data

    held = load_rm_data(out / "eval_split.jsonl").pairs()
    r = rm.score([p.prompt for p in held] * 2, [p.chosen for p in held] + [p.rejected for p in held])
    lens = [len(p.chosen) for p in held] + [len(p.rejected) for p in held]
    assert ls["per_100_chars"] == pytest.approx(np.polyfit(lens, r, 1)[0] * 100, rel=1e-3, abs=1e-6)


def test_the_frozen_layer_cache_trains_exactly_the_model_that_recomputing_trains(toy, tmp_path):
    """The tiny BERT has no dropout, so cached and recomputed lower layers must give the same weights (up to
    float rounding: the cache is computed in other batches, so with other padding)."""
    from safetensors.torch import load_file

    a, b = tmp_path / "cached", tmp_path / "plain"
    ma = _train(toy, a, train_layers=1, cache_frozen_layers=True, epochs=2)
    mb = _train(toy, b, train_layers=1, cache_frozen_layers=False, epochs=2)
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_allclose(wa[k].numpy(), wb[k].numpy(), rtol=1e-3, atol=2e-4, err_msg=k)
    assert ma["eval"]["pairwise_accuracy"] == pytest.approx(mb["eval"]["pairwise_accuracy"])


def test_cached_lower_layers_plus_top_layers_equal_the_full_model_and_are_memoised():
    import torch

    from jprefs.classifiers import layercache
    from jprefs.classifiers.inputs import Encoded, collate
    from jprefs.classifiers.pooling import apply_pooling
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
                     intermediate_size=32, num_labels=1)
    enc = Encoded([[1, 5, 6, 7, 2], [1, 8, 2], [1, 9, 9, 9, 9, 9, 2]], [[0, 0, 0, 1, 1], [0, 0, 1], [0] * 4 + [1] * 3])
    for pooling in ("cls", "mean"):
        torch.manual_seed(0)
        m = apply_pooling(BertForSequenceClassification(cfg), pooling).eval()
        with torch.no_grad():
            full = m(**collate(enc, [0, 1, 2], 0)).logits
        states = layercache.lower_states(m, enc, 2, 0, show_progress=False)
        x, mask = layercache.pad_states(states, [0, 1, 2])
        with torch.no_grad(), layercache.top_only(m, 2):
            assert len(m.bert.encoder.layer) == 2
            top = m(inputs_embeds=x, attention_mask=mask).logits
        assert len(m.bert.encoder.layer) == 4          # restored
        torch.testing.assert_close(top, full, rtol=1e-5, atol=1e-6)
        # a second call with one new sequence computes only that one; the others are the same tensors
        enc2 = Encoded(enc.input_ids + [[1, 7, 7, 2]], enc.token_type_ids + [[0, 0, 1, 1]])
        again = layercache.lower_states(m, enc2, 2, 0, show_progress=False)
        assert all(again[i] is states[i] for i in range(3)) and again[3].shape == (4, 16)
        # other weights: the memo does not apply
        with torch.no_grad():
            m.bert.embeddings.word_embeddings.weight.add_(1.0)
        other = layercache.lower_states(m, enc, 2, 0, show_progress=False)
        assert not torch.allclose(other[0], states[0])


def test_counterfactual_pairs_are_added_to_training_only(toy, tmp_path):
    from jprefs.classifiers.backbones import load_classifier
    from jprefs.classifiers.data import load_rm_data
    from jprefs.classifiers.train import build_items

    cfg = _cfg(toy, tmp_path / "cf", counterfactual="repeat", counterfactual_fraction=0.5, length_balance=True)
    _, tok = load_classifier(toy["backbone"], 1)
    data = load_rm_data(toy["pairs"])
    items = build_items(data, cfg, tok, 48)
    assert items.counterfactual == 24 and len(items) == 48 + 24
    n = len(items)
    # every counterfactual rejected answer is longer than its chosen one, and its tokens differ
    for i in range(48, n):
        c, r = items.groups[i]
        assert items.lengths[r] > items.lengths[c] and items.enc.input_ids[r] != items.enc.input_ids[c]
    # balanced weights over real + counterfactual pairs: longer-wins (ties 1/2) scores 0.5 on the weighted data
    lc, lr = np.array(items.lengths[:n]), np.array(items.lengths[n:])
    w = np.array(items.weights)
    assert (lc == lr).any() and float((w * ((lc > lr) + 0.5 * (lc == lr))).sum() / w.sum()) == pytest.approx(0.5)
    # a limit that cuts the padded copy back to the original leaves no counterfactual
    short = build_items(data, cfg, tok, 8)
    assert short.counterfactual < items.counterfactual
    m = _train(toy, tmp_path / "cf", counterfactual="repeat", counterfactual_fraction=0.5, epochs=1)
    assert m["data"]["train"] + m["data"]["eval"] == 48            # evaluation never sees them


def test_extra_data_files_are_held_out_apart_and_reported_each(toy, tmp_path):
    second = write_pairs(tmp_path / "second.jsonl", n=40, seed=5)
    m = _train(toy, tmp_path / "two", extra_data=[second], epochs=1)
    assert m["data"]["train"] + m["data"]["eval"] == 88
    by = m["eval_by_file"]
    assert set(by) == {"pairs.jsonl", "second.jsonl"}
    # each file gives 25% of its rows (by prompt) to eval
    assert by["pairs.jsonl"]["all"]["pairs"] == 12 and by["second.jsonl"]["all"]["pairs"] >= 10
    assert by["pairs.jsonl"]["all"]["pairs"] + by["second.jsonl"]["all"]["pairs"] == m["data"]["eval"]


@pytest.mark.parametrize("over, msg", [
    ({"objective": "binary", "debias": "odin"}, "works with objective=pairwise"),
    ({"objective": "listwise", "length_balance": True}, "works with objective=pairwise"),
    ({"debias": "odn"}, "'debias': 'odn' is not one of"),
    ({"counterfactual": "pad"}, "'counterfactual': 'pad' is not one of"),
    ({"debias_weight": -1.0}, "must be >= 0"),
    ({"counterfactual_fraction": 2.0}, "must be in \\[0, 1\\]"),
])
def test_bad_debias_settings_are_config_errors(toy, tmp_path, over, msg):
    with pytest.raises(ConfigError, match=msg):
        _cfg(toy, tmp_path / "x", **over).validate()


def test_scoring_through_the_frozen_layer_memo_gives_the_full_model_scores(toy, tmp_path):
    from jprefs.classifiers.reward_model import RewardModel

    out = tmp_path / "top1"
    _train(toy, out, train_layers=1, epochs=1, debias="odin")
    rm = RewardModel.from_pretrained(out, device="cpu")
    prompts, responses = ["今日の天気は?", "猫は好き?", "山は?"], ["良いです。", "悪いです。。。", "良い猫。"]
    full = rm.logits(prompts, responses)
    rm.frozen_layer_cache = 1
    np.testing.assert_allclose(rm.logits(prompts, responses), full, rtol=1e-4, atol=1e-5)
    assert len(rm.model.bert.encoder.layer) == 2             # the whole model again after scoring


def test_a_run_saved_before_a_config_key_existed_is_not_refused_while_that_key_is_at_its_default(toy, tmp_path):
    from jprefs.classifiers.train import DONE

    out = tmp_path / "old"
    m = _train(toy, out, epochs=1)
    done = json.loads((out / DONE).read_text())
    for k in ("debias", "split_seed", "ensemble_seeds", "counterfactual"):       # keys this release added
        done["config"].pop(k)
    (out / DONE).write_text(json.dumps(done))
    assert _train(toy, out, epochs=1) == m                     # the same run: nothing retrained
    with pytest.raises(ConfigError, match="debias: 'none' -> 'odin'"):
        _train(toy, out, epochs=1, debias="odin")


def test_a_seed_ensemble_trains_members_on_one_split_and_scores_their_mean(toy, tmp_path):
    from jprefs.classifiers.ensemble import RewardEnsemble, train_ensemble
    from jprefs.classifiers.reward_model import RewardModel

    out = tmp_path / "ens"
    cfg = _cfg(toy, out, epochs=1, ensemble_seeds=[1, 2])
    m = train_ensemble(cfg, log=lambda *a, **k: None)
    ens = RewardModel.from_pretrained(out, device="cpu")
    assert isinstance(ens, RewardEnsemble) and ens.names == ["seed-1", "seed-2"]
    # both members were held out on the same prompts
    a, b = ((out / n / "eval_split.jsonl").read_text() for n in ens.names)
    assert a == b
    prompts, responses = ["今日の天気は?"] * 2, ["良いです。", "悪いです。。"]
    each = np.stack([mm.score(prompts, responses) for mm in ens.members])
    np.testing.assert_allclose(ens.score(prompts, responses), each.mean(0), rtol=1e-6)
    np.testing.assert_allclose(ens.score_std(prompts, responses), each.std(0), rtol=1e-5, atol=1e-7)
    assert not np.allclose(each[0], each[1])                  # the seeds differ
    assert ens.as_reward_func()(prompts=prompts, completions=responses) == pytest.approx(
        each.mean(0).tolist(), rel=1e-5)
    mem = m["members"]["eval"]
    assert set(mem["pairwise_accuracy"]) == {"seed-1", "seed-2"} and mem["std"] >= 0
    assert 0 <= m["eval"]["pairwise_accuracy"] <= 1 and "pairs_members_disagree" in m["eval"]
    assert "2 seeds" in (out / "README.md").read_text() and "reward per 100 characters" in (out / "README.md").read_text()
    # the ensemble's length figures are its mean reward's on the shared held-out split, not a member's
    _check_ensemble_length_stats(ens, out, [None])
    # `jprefs score` writes the ensemble's mean and its spread over the members; one model writes no spread
    from jprefs.classifiers.data import load_rm_data
    from jprefs.cli import main

    assert main(["score", str(out), str(toy["pairs"]), "-o", str(tmp_path / "s.jsonl")]) == 0
    rows = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    pairs = load_rm_data(toy["pairs"]).pairs()
    assert len(rows) == len(pairs)
    ps, rej = [p.prompt for p in pairs], [p.rejected for p in pairs]
    np.testing.assert_allclose([r["rejected_reward"] for r in rows], ens.score(ps, rej), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([r["rejected_reward_std"] for r in rows], ens.score_std(ps, rej), rtol=1e-4, atol=1e-6)
    assert all(r["chosen_reward_std"] >= 0 for r in rows)
    assert main(["score", str(out / "seed-1"), str(toy["pairs"]), "-o", str(tmp_path / "s1.jsonl")]) == 0
    one = json.loads((tmp_path / "s1.jsonl").read_text().splitlines()[0])
    assert "chosen_reward" in one and "chosen_reward_std" not in one
    # saved elsewhere and loaded back: the same mean and the same length figures
    ens.save_pretrained(tmp_path / "copy")
    copy = RewardModel.from_pretrained(tmp_path / "copy")
    np.testing.assert_allclose(copy.score(prompts, responses), each.mean(0), rtol=1e-5)
    assert copy.length_sensitivity == ens.length_sensitivity
    # a damaged ensemble file is one clear error
    (out / "jprefs_ensemble.json").write_text('{"format": "x"}')
    from jprefs.errors import JprefsError

    with pytest.raises(JprefsError, match="not a jprefs ensemble file"):
        RewardModel.from_pretrained(out)


def _check_ensemble_length_stats(ens, out, heads):
    """Each head's saved length figures equal the slope and chosen-shorter accuracy recomputed by hand from
    the members' mean reward on the eval split, and differ from the first member's own."""
    from jprefs.classifiers.data import load_rm_data

    pairs = load_rm_data(out / ens.names[0] / "eval_split.jsonl").pairs()
    n = len(pairs)
    ps, rs = [p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs]
    lens = np.array([len(r) for r in rs], float)
    for h in heads:
        mean = np.mean([m.score(ps, rs, head=h) for m in ens.members], axis=0)
        slope = np.polyfit(lens / 100.0, mean, 1)[0]
        shorter = lens[:n] < lens[n:]
        ls = ens.length_stats_for(h)
        assert ls["per_100_chars"] == pytest.approx(slope, rel=1e-3, abs=1e-6), h
        if shorter.any():
            assert ls["length_controlled_accuracy"] == pytest.approx(float((mean[:n] > mean[n:])[shorter].mean())), h
        assert ls["pairs"] == n and "eval split" in ls["measured_on"]
        own = ens.members[0].length_stats_for(h)
        assert own["per_100_chars"] != pytest.approx(ls["per_100_chars"], rel=1e-6), h   # a member's are not these
    assert ens.length_sensitivity == {k: v for k, v in ens.length_stats_for(None).items() if k != "measured_on"}


def test_an_odin_ensemble_keeps_each_heads_length_figures_and_rl_warns_with_them(toy, tmp_path):
    """An ensemble of ODIN models: every head's figures are the ensemble's; the RL length warning reads them;
    a folder written before the ensemble kept them falls back to its metrics.json, never to a member."""
    from jprefs.classifiers.ensemble import ENSEMBLE_NAME, train_ensemble
    from jprefs.classifiers.reward_model import RewardModel
    from jprefs.rl.rewards import length_warning

    out = tmp_path / "ens-odin"
    m = train_ensemble(_cfg(toy, out, epochs=1, ensemble_seeds=[3, 4], debias="odin"), log=lambda *a, **k: None)
    ens = RewardModel.from_pretrained(out, device="cpu")
    assert set(m["eval_heads"]) == {"quality", "length", "full"}
    assert m["eval"]["pairwise_accuracy"] == m["eval_heads"]["quality"]["pairwise_accuracy"]
    _check_ensemble_length_stats(ens, out, [None, "quality", "length", "full"])
    ls = dict(ens.length_stats["length"], length_controlled_accuracy=0.1, per_100_chars=0.5)
    ens.length_stats["length"] = ls
    note = length_warning(ens, str(out), "length")
    assert note and "+0.500 reward per 100" in note and "10%" in note and "quality head" in note
    ens.length_stats["length"] = dict(ls, per_100_chars=-0.5)
    assert length_warning(ens, str(out), "length") is None
    # an ensemble file without the figures (written by an older jprefs): the default head's from metrics.json
    f = out / ENSEMBLE_NAME
    spec = json.loads(f.read_text())
    spec.pop("length_stats")
    f.write_text(json.dumps(spec))
    old = RewardModel.from_pretrained(out, device="cpu")
    assert old.length_sensitivity["per_100_chars"] == pytest.approx(ens.length_stats["quality"]["per_100_chars"])
    assert old.length_stats_for("length") is None                    # not measured there: not a member's either
    (out / "metrics.json").unlink()
    assert RewardModel.from_pretrained(out, device="cpu").length_sensitivity is None


def test_a_reward_model_and_the_probe_embedder_of_its_backbone_share_the_frozen_layer_memo(toy, tmp_path):
    from jprefs.classifiers import layercache
    from jprefs.classifiers.probe import Embedder
    from jprefs.classifiers.reward_model import RewardModel

    out = tmp_path / "top1m"
    _train(toy, out, train_layers=1, epochs=1)
    rm = RewardModel.from_pretrained(out, device="cpu")
    rm.frozen_layer_cache = 1
    prompts, responses = ["今日の天気は?", "猫は好き?"], ["良いです。", "悪いです。。。"]
    layercache.clear_memo()
    rm.score(prompts, responses)
    n = len(layercache._MEMO["states"])
    emb = Embedder(toy["backbone"], max_length=48)
    plain = emb.embed(prompts, responses)
    emb.frozen_layer_cache = 1
    np.testing.assert_allclose(emb.embed(prompts, responses), plain, rtol=1e-4, atol=1e-5)
    assert n == 2 and len(layercache._MEMO["states"]) == n          # the embedder found the reward model's states
    layercache.clear_memo()


def test_odin_length_blend_makes_a_blend_head_the_default_reward(toy, tmp_path):
    from jprefs.classifiers.reward_model import RewardModel

    out = tmp_path / "blend"
    m = _train(toy, out, debias="odin", odin_length_blend=0.5, epochs=1)
    rm = RewardModel.from_pretrained(out, device="cpu")
    assert rm.heads == ["blend", "quality", "length", "full"] and rm.config.reward_head == "blend"
    prompts, responses = ["今日の天気は?"] * 3, ["良いです。", "悪いです。。。", "良い猫。"]
    lg = rm.logits(prompts, responses)
    c = rm.config.head_centers
    np.testing.assert_allclose(rm.score(prompts, responses), lg[:, 0] + 0.5 * lg[:, 1] - c["blend"], rtol=1e-5,
                               atol=1e-6)
    assert set(m["eval_heads"]) == {"blend", "quality", "length", "full"}
    card = (out / "README.md").read_text()
    assert "quality + 0.5 x length" in card
    # the card's plain-transformers formula gives rm.score (it said logits[:, 0] - C, the quality head alone)
    assert f"reward = logits[:, 0] + 0.5 * logits[:, 1] - {c['blend']:.4f}" in card and "loads one label" in card
    with pytest.raises(ConfigError, match="needs debias=odin"):
        _cfg(toy, tmp_path / "x", odin_length_blend=0.5).validate()


def test_odin_trains_with_lora_on_a_bert_backbone(toy, tmp_path):
    """peft wraps BERT's classifier in a ModulesToSaveWrapper, and ODIN's head lookup failed on it."""
    pytest.importorskip("peft")
    from jprefs.classifiers.reward_model import RewardModel

    m = _train(toy, tmp_path / "lora-odin", debias="odin", lora=True, lora_r=4, epochs=1)
    assert set(m["eval_heads"]) == {"quality", "length", "full"}
    assert RewardModel.from_pretrained(tmp_path / "lora-odin", device="cpu").heads[0] == "quality"
