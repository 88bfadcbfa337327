"""End-to-end train-rm on a tiny BERT built from a config: every objective, saving, centring, CLI, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jprefs.classifiers.config import TrainRMConfig
from jprefs.config import load_config
from jprefs.errors import ConfigError

from .conftest import make_backbone_dir, write_pairs


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy")
    return {"backbone": make_backbone_dir(d / "bb"), "pairs": write_pairs(d / "pairs.jsonl"), "dir": d}


def _train(toy, out, **kw):
    from jprefs.classifiers.train import train_reward_model

    base = dict(data=toy["pairs"], backbone=toy["backbone"], epochs=3, lr=3e-3, batch_size=8, max_length=48,
                eval_fraction=0.25, freeze_embeddings=False, warmup_ratio=0.0, output_dir=str(out), plots=False)
    base.update(kw)
    return train_reward_model(load_config(TrainRMConfig, None, base), log=lambda *a, **k: None)


@pytest.mark.parametrize("objective", ["binary", "pairwise", "listwise"])
def test_each_objective_learns_the_toy_preference_and_saves_a_loadable_model(toy, tmp_path, objective):
    from jprefs.classifiers.data import load_rm_data
    from jprefs.classifiers.reward_model import RewardModel

    out = tmp_path / objective
    m = _train(toy, out, objective=objective)
    ev = m["eval"]
    # chosen answers say 良/好, rejected ones 悪/嫌 and are longer: the length baseline is poor
    assert ev["pairwise_accuracy"] >= 0.75 > ev["length_baseline_accuracy"]
    for f in ("model.safetensors", "jprefs_reward.json", "tokenizer.json", "config.yaml", "metrics.json", "README.md"):
        assert (out / f).exists(), f
    rm = RewardModel.from_pretrained(out, device="cpu")
    assert rm.config.objective == objective and rm.model.config.num_labels == (2 if objective == "binary" else 1)
    # reloading reproduces the saved evaluation
    from jprefs.classifiers.data import split_by_group
    from jprefs.classifiers.evaluate import evaluate_pairs

    train, held = split_by_group(load_rm_data(toy["pairs"]), 0.25, 42)
    assert evaluate_pairs(rm, held.pairs())[0]["pairwise_accuracy"] == pytest.approx(ev["pairwise_accuracy"])
    # centring: the mean reward over the training responses is 0
    pairs = train.pairs()
    r = rm.score([p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs])
    assert abs(float(np.mean(r))) < 1e-4
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["data"]["train"] + saved["data"]["eval"] == 48 and saved["best_epoch"] >= 1
    # a cls-pooled model is a plain transformers checkpoint; the card says so and states the constant
    card = (out / "README.md").read_text()
    assert "library_name: transformers" in card and f"C = {rm.config.center:.4f}" in card


def test_binary_text_data_with_bad_rows_goes_to_rejects(toy, tmp_path):
    tsv = tmp_path / "sent.tsv"
    good = ["良いです。\t1\t", "悪いです。\t0\t"] * 12
    tsv.write_text("\n".join(good[:5] + ["壊れた行\tx\t", "ラベルなし"] + good[5:]) + "\n", encoding="utf-8")
    out = tmp_path / "bin"
    m = _train(toy, out, data=str(tsv), objective="binary", label_names=["negative", "positive"], epochs=1)
    assert m["data"]["rows_in"] == 26 and m["data"]["rejected"] == 2
    assert m["data"]["train"] + m["data"]["eval"] == 24
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    assert {r["line"] for r in rejects} == {6, 7}
    assert "accuracy" in m["eval"] and "roc_auc" in m["eval"]
    cfg = json.loads((out / "jprefs_reward.json").read_text())
    assert cfg["input"] == "response" and cfg["labels"] == ["negative", "positive"]


def test_pairwise_objective_on_labelled_examples_is_a_clear_error(toy, tmp_path):
    from jprefs.errors import DataError

    tsv = tmp_path / "s.tsv"
    tsv.write_text("良い\t1\n悪い\t0\n" * 10, encoding="utf-8")
    with pytest.raises(DataError, match="objective=binary"):
        _train(toy, tmp_path / "x", data=str(tsv), objective="pairwise")


def test_cli_both_forms_and_errors(toy, tmp_path, capsys):
    from jprefs.cli import main

    rc = main(["train-rm", "--data", toy["pairs"], "--backbone", toy["backbone"], "--objective", "pairwise",
               "epochs=1", "max_length=48", "plots=false", "-o", str(tmp_path / "cli")])
    assert rc == 0 and (tmp_path / "cli" / "jprefs_reward.json").exists()
    assert "pairwise_accuracy=" in capsys.readouterr().out
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data: {toy['pairs']}\nbackbone: {toy['backbone']}\nobjective: listwise\nepochs: 1\n"
                      f"max_length: 48\nplots: false\n", encoding="utf-8")
    assert main(["train-rm", str(recipe), "lr=1e-3", "-o", str(tmp_path / "cli2")]) == 0
    assert main(["train-rm", str(recipe), "epoks=2", "-o", str(tmp_path / "e")]) == 2
    assert "Did you mean 'epochs'" in capsys.readouterr().err
    assert main(["train-rm", "--backbone", toy["backbone"], "-o", str(tmp_path / "e")]) == 2
    assert "no training data" in capsys.readouterr().err


def test_eval_fraction_zero_refits_on_every_row_and_keeps_the_last_epoch(toy, tmp_path):
    from jprefs.classifiers.reward_model import RewardModel

    out = tmp_path / "refit"
    m = _train(toy, out, objective="pairwise", eval_fraction=0, test_data=toy["pairs"])
    assert m["data"]["train"] == 48 and m["data"]["eval"] == 0 and m["eval"] == {}
    assert m["best_epoch"] == 3 and m["selected_by"].startswith("none")
    assert len(m["history"]) == 3 and not any(k.startswith("eval/") for h in m["history"] for k in h)
    assert m["test"]["pairwise_accuracy"] >= 0.75          # learnt on the rows it is now scored on
    card = (out / "README.md").read_text()
    assert "trained 3 epoch(s) on every training row" in card and "no eval split (`eval_fraction=0`)" in card
    assert "| eval |" not in card and "| test | pairwise_accuracy |" in card
    rm = RewardModel.from_pretrained(out, device="cpu")
    assert rm.config.objective == "pairwise"


def test_an_eval_split_too_small_to_choose_an_epoch_chooses_none_and_says_so(toy, tmp_path, monkeypatch):
    import jprefs.classifiers.train as train

    out = tmp_path / "small"
    m = _train(toy, out, objective="pairwise")                # 48 pairs, 25% by prompt: 12 eval pairs
    assert m["data"]["eval"] == 12 < train.MIN_SELECTION_ROWS
    assert m["selected_by"].startswith("none (the eval split has 12 rows") and m["best_epoch"] == 3
    assert all("eval/pairwise_accuracy" in h for h in m["history"])     # still reported per epoch
    card = (out / "README.md").read_text()
    assert "trained 3 epoch(s) and kept the last weights, no epoch was selected" in card
    assert "(they chose no epoch)" in card and "best epoch" not in card
    # a split of the minimum size chooses
    monkeypatch.setattr(train, "MIN_SELECTION_ROWS", 12)
    m = _train(toy, tmp_path / "enough", objective="pairwise")
    assert m["selected_by"] == "pairwise_accuracy"
    card = (tmp_path / "enough" / "README.md").read_text()
    assert "(selected by eval pairwise_accuracy)" in card and "and chose the epoch" in card
    # one epoch: nothing to choose, and the card does not claim a selection
    m = _train(toy, tmp_path / "one", objective="pairwise", epochs=1)
    assert m["selected_by"].startswith("none (one epoch") and m["best_epoch"] == 1


def test_every_recipe_loads_and_names_its_data():
    from pathlib import Path

    recipes = sorted((Path(__file__).resolve().parents[2] / "classifiers" / "recipes").glob("*.yaml"))
    assert len(recipes) >= 5
    for p in recipes:
        cfg = load_config(TrainRMConfig, p)
        assert cfg.data and cfg.backbone and cfg.epochs >= 1, p.name


def test_config_validation():
    with pytest.raises(ConfigError, match="objective"):
        load_config(TrainRMConfig, None, ["objective=ranking"])
    with pytest.raises(ConfigError, match="eval_fraction"):
        load_config(TrainRMConfig, None, ["eval_fraction=1.5"])
    with pytest.raises(ConfigError, match="eval_fraction"):
        load_config(TrainRMConfig, None, ["eval_fraction=-0.1"])
    assert load_config(TrainRMConfig, None, ["eval_fraction=0"]).eval_fraction == 0
    # internal errors before (OverflowError, ValueError after training) or a silently dropped row
    for bad in ("max_prompt_length=-5", "center_samples=-1", "eval_limit=-1", "limit=-2"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load_config(TrainRMConfig, None, [bad])
    with pytest.raises(ConfigError, match="lora_r"):
        load_config(TrainRMConfig, None, ["lora=true", "lora_r=0"])
    assert load_config(TrainRMConfig, None, ["lora_r=0"]).lora_r == 0          # unused without lora


def test_train_layers_freezes_the_lower_layers(toy):
    from jprefs.classifiers.backbones import load_classifier
    from jprefs.classifiers.train import _freeze_embeddings, _freeze_lower_layers

    model, _ = load_classifier(toy["backbone"], 1)
    _freeze_embeddings(model)
    _freeze_lower_layers(model, 1)
    trainable = {n.split(".weight")[0].split(".bias")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("bert.embeddings", "bert.encoder.layer.0.")) for n in trainable)
    assert any(n.startswith("bert.encoder.layer.1.") for n in trainable) and "classifier" in trainable
    with pytest.raises(ConfigError, match="between 1 and 2"):
        _freeze_lower_layers(model, 5)


def test_lora_training_saves_a_merged_model_that_loads_without_peft(toy, tmp_path):
    pytest.importorskip("peft")
    from safetensors import safe_open

    from jprefs.classifiers.reward_model import RewardModel

    out = tmp_path / "lora"
    m = _train(toy, out, objective="pairwise", lora=True, lora_r=4, lora_alpha=8, epochs=2,
               lora_target_modules=["query", "value"])
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert not any("lora" in k for k in keys) and any(k.startswith("bert.encoder") for k in keys)
    rm = RewardModel.from_pretrained(out, device="cpu")
    assert rm.model.config.num_labels == 1 and np.isfinite(m["eval"]["pairwise_accuracy"])


def _crash_after_the_first_checkpoint(toy, out, monkeypatch):
    """A 2-epoch pairwise run into ``out`` killed right after its epoch-1 checkpoint."""
    import jprefs.classifiers.train as train_mod

    original = train_mod._save_checkpoint

    def crash_after_checkpoint(*a, **k):
        original(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "_save_checkpoint", crash_after_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        _train(toy, out, objective="pairwise", epochs=2)
    monkeypatch.setattr(train_mod, "_save_checkpoint", original)


def test_interrupted_run_resumes_after_the_last_epoch(toy, tmp_path, monkeypatch):
    full = _train(toy, tmp_path / "full", objective="pairwise", epochs=2)
    _crash_after_the_first_checkpoint(toy, tmp_path / "resumed", monkeypatch)
    assert (tmp_path / "resumed" / "checkpoint" / "progress.json").exists()
    resumed = _train(toy, tmp_path / "resumed", objective="pairwise", epochs=2)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["history"][1]["losses/train"] == pytest.approx(full["history"][1]["losses/train"], rel=1e-4)
    assert resumed["eval"]["mean_margin"] == pytest.approx(full["eval"]["mean_margin"], rel=1e-3, abs=1e-6)
    assert not (tmp_path / "resumed" / "checkpoint").exists()


def test_interrupted_run_with_a_changed_config_is_refused_not_resumed(toy, tmp_path, monkeypatch):
    _crash_after_the_first_checkpoint(toy, tmp_path / "r", monkeypatch)
    with pytest.raises(ConfigError, match=r"(?s)different config \(lr: 0\.003 -> 0\.001\).*resume=false"):
        _train(toy, tmp_path / "r", objective="pairwise", epochs=2, lr=1e-3)
    # cosmetic keys may change; the run then resumes after epoch 1
    m = _train(toy, tmp_path / "r", objective="pairwise", epochs=2, eval_batch_size=7)
    assert [h["epoch"] for h in m["history"]] == [1, 2]


def test_a_finished_run_is_not_trained_again(toy, tmp_path, monkeypatch):
    import jprefs.classifiers.train as train_mod

    out = tmp_path / "done"
    first = _train(toy, out, objective="pairwise", epochs=1)
    marker = json.loads((out / "done.json").read_text())
    assert marker["config"]["lr"] == 0.003 and marker["finished_at"]
    weights = (out / "model.safetensors").read_bytes()

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(train_mod, "build_items", no_training)
    again = _train(toy, out, objective="pairwise", epochs=1)          # same config: returns the saved metrics
    assert again == json.loads((out / "metrics.json").read_text()) and again["eval"]["pairwise_accuracy"] == first["eval"]["pairwise_accuracy"]
    assert (out / "model.safetensors").read_bytes() == weights
    with pytest.raises(ConfigError, match=r"finished reward model trained with a different config \(epochs: 1 -> 2\)"):
        _train(toy, out, objective="pairwise", epochs=2)
    monkeypatch.undo()
    retrained = _train(toy, out, objective="pairwise", epochs=2, resume=False)   # resume=false trains again
    assert [h["epoch"] for h in retrained["history"]] == [1, 2]
    assert json.loads((out / "done.json").read_text())["config"]["epochs"] == 2


@pytest.mark.parametrize("name", ["optimizer.bin", "scheduler.bin", "random_states_0.pkl"])
def test_resume_never_unpickles_code_from_the_checkpoint(toy, tmp_path, monkeypatch, name):
    """train-rm's checkpoint is accelerate's save_state (torch pickles for optimizer, scheduler, RNG):
    resume reads them with the weights_only loader only; a file that would run code is refused by
    name, and not skipped (accelerate alone skips an unreadable RNG file without a word)."""
    import torch

    from jprefs.errors import JprefsError

    out = tmp_path / "r"
    _crash_after_the_first_checkpoint(toy, out, monkeypatch)
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"state": Payload()}, out / "checkpoint" / name)
    with pytest.raises(JprefsError) as e:
        _train(toy, out, objective="pairwise", epochs=2)
    msg = str(e.value)
    assert f"cannot resume from {out / 'checkpoint'}" in msg and "weights_only" in msg and "resume=false" in msg
    assert f"{name} does not load" in msg and "Unsupported global" in msg
    assert not marker.exists()


def test_changed_data_under_the_same_config_is_not_the_finished_run_nor_its_checkpoint(toy, tmp_path, monkeypatch):
    """Replacing the data file and rerunning the same command said "nothing to do" and returned the old model."""
    import shutil

    data = tmp_path / "pairs.jsonl"
    shutil.copy(toy["pairs"], data)
    out = tmp_path / "done"
    _train(toy, out, data=str(data), objective="pairwise", epochs=1)
    fp = json.loads((out / "done.json").read_text())["data_files"]["data"]
    assert fp["bytes"] == data.stat().st_size and fp["file"] == "pairs.jsonl"          # no local path kept
    assert _train(toy, out, data=str(data), objective="pairwise", epochs=1)       # unchanged: reused
    write_pairs(data, n=64, seed=3)
    with pytest.raises(ConfigError, match="another version of .*pairs.jsonl"):
        _train(toy, out, data=str(data), objective="pairwise", epochs=1)
    # a checkpoint of other data is not resumed either
    ck = tmp_path / "ck"
    _crash_after_the_first_checkpoint(toy, ck, monkeypatch)
    prog = json.loads((ck / "checkpoint" / "progress.json").read_text())
    prog["data_files"] = {"data": {"file": "pairs.jsonl", "bytes": 1, "sha256": "0"}}
    (ck / "checkpoint" / "progress.json").write_text(json.dumps(prog))
    with pytest.raises(ConfigError, match="the checkpoint .* another version"):
        _train(toy, ck, objective="pairwise", epochs=2)
