"""``jprefs train-rm report_to=tensorboard``: each epoch's history entry of metrics.json also goes to
TensorBoard (``OUTPUT/tb/``), read back with TensorBoard's own reader; a run killed after a
checkpoint and resumed logs each step once; a missing package is one ConfigError."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("tensorboard")

from jprefs.classifiers.config import TrainRMConfig  # noqa: E402
from jprefs.config import load_config  # noqa: E402
from jprefs.errors import ConfigError  # noqa: E402

from .conftest import make_backbone_dir, write_pairs  # noqa: E402


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy_tb")
    return {"backbone": make_backbone_dir(d / "bb"), "pairs": write_pairs(d / "pairs.jsonl", n=16)}


def _train(toy, out, **kw):
    from jprefs.classifiers.train import train_reward_model

    base = dict(data=toy["pairs"], backbone=toy["backbone"], objective="pairwise", epochs=3, lr=3e-3, batch_size=4,
                max_length=32, eval_fraction=0.25, warmup_ratio=0.0, output_dir=str(out), plots=False,
                report_to="tensorboard")
    base.update(kw)
    return train_reward_model(load_config(TrainRMConfig, None, base), log=lambda *a, **k: None)


def tb_scalars(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def assert_history_equals_tb(history, tb):
    want: dict[str, list] = {}
    for h in history:
        for k, v in h.items():
            if k != "step":
                want.setdefault(k, []).append((h["step"], v))
    assert set(tb) == set(want), sorted(set(tb) ^ set(want))
    for k, pts in want.items():
        assert [s for s, _ in tb[k]] == [s for s, _ in pts], k
        assert [v for _, v in tb[k]] == pytest.approx([v for _, v in pts], rel=1e-6, abs=1e-6), k


def test_train_rm_tensorboard_scalars_equal_the_history(toy, tmp_path):
    m = _train(toy, tmp_path / "rm")
    hist = m["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3] and hist[0]["step"] < hist[1]["step"] < hist[2]["step"]
    tb = tb_scalars(tmp_path / "rm" / "tb")
    assert "losses/train" in tb and "eval/pairwise_accuracy" in tb and "epoch" in tb
    assert_history_equals_tb(hist, tb)


def test_resumed_train_rm_logs_each_step_once(toy, tmp_path, monkeypatch):
    import jprefs.classifiers.train as train_mod

    out = tmp_path / "rm"
    original, calls = train_mod._save_checkpoint, [0]

    def die_before_the_second_checkpoint(*a, **k):
        calls[0] += 1
        if calls[0] == 2:                        # epoch 2 is logged, its checkpoint never written
            raise KeyboardInterrupt
        original(*a, **k)

    with monkeypatch.context() as mp:
        mp.setattr(train_mod, "_save_checkpoint", die_before_the_second_checkpoint)
        with pytest.raises(KeyboardInterrupt):
            _train(toy, out)
    assert [e for _, e in tb_scalars(out / "tb")["epoch"]] == [1, 2]
    m = _train(toy, out, report_to="tensorboard")   # resumes after epoch 1; epoch 2 runs again
    assert [h["epoch"] for h in m["history"]] == [1, 2, 3]
    assert len(list((out / "tb").glob("events.out.tfevents.*"))) == 2
    assert_history_equals_tb(m["history"], tb_scalars(out / "tb"))


def test_missing_package_and_unknown_name_are_config_errors(toy, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        _train(toy, tmp_path / "rm", epochs=1)
    assert not (tmp_path / "rm" / "config.yaml").exists()
    with pytest.raises(ConfigError, match="'tb' is not one of"):
        load_config(TrainRMConfig, None, dict(data="x.jsonl", report_to="tb"))
