"""``report_to``: every step of metrics.jsonl also goes to the trackers named (jprefs/trackers.py).

- PPO with ``report_to=tensorboard``: the event files under ``OUT/tb/`` hold, for every metric,
  the same (step, value) series as metrics.jsonl (read back with TensorBoard's own reader);
- a run killed after a checkpoint and rerun appends: each step once, values of the resumed run;
- trl's algos get ``report_to`` in their TrainingArguments and write ``OUT/tb/`` too;
- a missing tracker package, or an unknown name, is one ConfigError naming the fix, before
  the run writes anything; wandb defaults to offline.
"""

from __future__ import annotations

import json
import sys
import types

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tensorboard")

from jprefs.config import load_config  # noqa: E402
from jprefs.errors import ConfigError  # noqa: E402
from jprefs.rl.config import RLConfig  # noqa: E402
from jprefs.rl.ppo import train_ppo  # noqa: E402
from jprefs.rl.runwriter import RunWriter  # noqa: E402

from .conftest import count_a, tiny_gpt2  # noqa: E402

PPO = dict(algo="ppo", reward_type="callable", reward_model="tests.rl.conftest:count_a", total_steps=5,
           batch_size=4, minibatch_size=2, ppo_epochs=1, max_new_tokens=4, save_every=2, eval_every=2,
           eval_samples=1, seed=0, report_to="tensorboard")


def _ppo(tok, out, **kw):
    cfg = load_config(RLConfig, dict(PPO, **kw))
    return train_ppo(cfg, out, model=tiny_gpt2(tok), tok=tok, reward_fn=count_a, prompts=["", "b", "cd"])


def _rows(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def tb_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] as TensorBoard shows them (orphaned steps of a resumed run purged)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def jsonl_series(rows) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list] = {}
    for r in rows:
        for k, v in r.items():
            if k != "step" and v is not None:
                out.setdefault(k, []).append((r["step"], v))
    return out


def assert_same_series(tb, want):
    assert set(tb) == set(want), (sorted(set(tb) ^ set(want)))
    for k, pts in want.items():
        assert [s for s, _ in tb[k]] == [s for s, _ in pts], k
        assert [v for _, v in tb[k]] == pytest.approx([v for _, v in pts], rel=1e-6, abs=1e-6), k


def test_ppo_tensorboard_scalars_equal_metrics_jsonl(tmp_path, tok):
    out = tmp_path / "run"
    _ppo(tok, out, save_every=0)
    rows = _rows(out)
    assert [r["step"] for r in rows] == list(range(6))
    tb = tb_scalars(out / "tb")
    assert "objective/score" in tb and "eval/length" in tb and "time/elapsed_s" in tb
    assert_same_series(tb, jsonl_series(rows))
    assert len(list((out / "tb").glob("events.out.tfevents.*"))) == 1


def test_resumed_run_appends_each_step_once(tmp_path, monkeypatch, tok):
    out = tmp_path / "run"
    log = RunWriter.log

    def dying_log(self, s, metrics):
        log(self, s, metrics)
        if s == 3:                              # past checkpoint-2: step 3 is logged, then lost
            raise KeyboardInterrupt("simulated crash")

    with monkeypatch.context() as m:
        m.setattr(RunWriter, "log", dying_log)
        with pytest.raises(KeyboardInterrupt):
            _ppo(tok, out)
    first = tb_scalars(out / "tb")
    assert [s for s, _ in first["objective/score"]] == [1, 2, 3]
    _ppo(tok, out)                              # the same command resumes from checkpoint-2
    rows = _rows(out)
    assert [r["step"] for r in rows] == list(range(6))
    assert len(list((out / "tb").glob("events.out.tfevents.*"))) == 2      # appended, not rewritten
    tb = tb_scalars(out / "tb")
    assert_same_series(tb, jsonl_series(rows))  # steps 0..5 once each; step 3 is the resumed run's
    # the killed run's step 3 had another wall-clock time than the resumed one; TensorBoard shows the latter
    t3 = dict(tb["time/elapsed_s"])[3]
    assert t3 == pytest.approx(rows[3]["time/elapsed_s"], abs=1e-3)


def test_missing_tracker_package_is_one_config_error_before_anything_is_written(tmp_path, monkeypatch, tok):
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "tensorboard", None)             # as if not installed
        with pytest.raises(ConfigError, match=r"pip install tensorboard"):
            _ppo(tok, tmp_path / "tb_run")
    assert not (tmp_path / "tb_run").exists()
    for name in ("wandb", "trackio"):
        monkeypatch.setitem(sys.modules, name, None)
        with pytest.raises(ConfigError, match=rf"report_to={name} needs the {name} package.*\n.*pip install {name}"):
            _ppo(tok, tmp_path / name, report_to=f"tensorboard,{name}")
        assert not (tmp_path / name).exists()


def test_trl_args_get_report_to_and_a_missing_package_fails_there_too(tmp_path, monkeypatch):
    pytest.importorskip("trl")
    from jprefs.rl.trl_algos import trl_args

    base = dict(algo="dpo", data="builtin:ja-tiny-pairs", total_steps=1, batch_size=2)
    assert trl_args(load_config(RLConfig, base), tmp_path, use_cpu=True).report_to == []
    args = trl_args(load_config(RLConfig, dict(base, report_to="tensorboard")), tmp_path, use_cpu=True)
    assert args.report_to == ["tensorboard"]
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        trl_args(load_config(RLConfig, dict(base, report_to="tensorboard")), tmp_path, use_cpu=True)


def test_unknown_tracker_and_duplicates(tmp_path):
    from jprefs.trackers import parse_report_to

    with pytest.raises(ConfigError, match="'tensorbord' is not one of"):
        load_config(RLConfig, dict(PPO, report_to="tensorbord"))
    assert parse_report_to(" TensorBoard, wandb,tensorboard ") == ["tensorboard", "wandb"]
    assert parse_report_to("") == parse_report_to("none") == []


def test_wandb_defaults_to_offline_unless_the_user_set_a_mode(monkeypatch):
    from jprefs.trackers import check_installed

    monkeypatch.setitem(sys.modules, "wandb", types.ModuleType("wandb"))   # stands in for the package
    monkeypatch.delenv("WANDB_MODE", raising=False)
    check_installed("wandb")
    import os

    assert os.environ["WANDB_MODE"] == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    check_installed("wandb")
    assert os.environ["WANDB_MODE"] == "online"


def test_trl_dpo_run_writes_trl_logs_under_tb(tmp_path, tok):
    pytest.importorskip("trl")
    from jprefs.rl.runner import run

    model = tiny_gpt2(tok)
    model.save_pretrained(tmp_path / "policy", safe_serialization=True)
    tok.save_pretrained(tmp_path / "policy")
    with open(tmp_path / "pairs.jsonl", "w", encoding="utf-8") as f:
        for i, p in enumerate(["ab", "cd", "ef", "gh"]):
            f.write(json.dumps({"id": f"p{i}", "prompt": [{"role": "user", "content": p}],
                                "chosen": "aaba", "rejected": "hhgh"}) + "\n")
    (tmp_path / "prompts.txt").write_text("ab\ncd\n", encoding="utf-8")
    cfg = load_config(RLConfig, dict(algo="dpo", policy=str(tmp_path / "policy"), data=str(tmp_path / "pairs.jsonl"),
                                     eval_prompts=str(tmp_path / "prompts.txt"), total_steps=2, batch_size=2,
                                     eval_every=2, eval_samples=1, max_new_tokens=4, max_length=32, trl_beta=0.1,
                                     reward_type="callable", reward_model="tests.rl.conftest:count_a",
                                     torch_threads=1, report_to="tensorboard"))
    out = tmp_path / "run"
    run(cfg, out)
    assert not (out / "runs").exists()                  # not transformers' default OUT/runs/DATE_HOST
    tb = tb_scalars(out / "tb")
    rows = [r for r in _rows(out) if r["step"] > 0]
    assert [r["step"] for r in rows] == [1, 2]
    # transformers' TensorBoardCallback names trl's logs train/KEY; same values as metrics.jsonl
    for key in ("loss", "rewards/margins", "rewards/accuracies"):
        assert [s for s, _ in tb[f"train/{key}"]] == [1, 2], key
        assert [v for _, v in tb[f"train/{key}"]] == pytest.approx([r[key] for r in rows], rel=1e-6), key
