"""Crash-safe runs: a run killed after a checkpoint and rerun with the same command ends
exactly where an uninterrupted run does (same metrics rows, no step twice, same weights),
and a changed config refuses to resume."""

import json

import pytest

torch = pytest.importorskip("torch")

from jprefs.config import load_config  # noqa: E402
from jprefs.errors import JprefsError  # noqa: E402
from jprefs.rl.runwriter import RunWriter  # noqa: E402
from jprefs.rl.texts import TextRow  # noqa: E402
from jprefs.rl.config import RLConfig  # noqa: E402
from jprefs.rl.ilql import train_ilql  # noqa: E402
from jprefs.rl.ppo import train_ppo  # noqa: E402
from jprefs.rl.runner import run  # noqa: E402

from .conftest import count_a, tiny_gpt2  # noqa: E402

SFT = dict(algo="sft", reward_type="none", sft_steps=6, sft_batch_size=8, sft_max_texts=40, save_every=2,
           tiny_n_embd=16, tiny_n_layer=1, tiny_n_head=2, tiny_vocab_size=300, max_new_tokens=4,
           eval_samples=1, torch_threads=1, seed=0)
ILQL = dict(algo="ilql", reward_type="labels", total_steps=6, batch_size=4, save_every=2, eval_every=3,
            eval_samples=1, max_new_tokens=4, alpha=0.1, steps_for_target_q_sync=1, beta_gen_sweep=[0.0, 1.0],
            reward_model="tests.rl.conftest:count_a", seed=0)
PPO = dict(algo="ppo", reward_type="callable", reward_model="tests.rl.conftest:count_a", total_steps=5,
           batch_size=4, minibatch_size=2, ppo_epochs=1, max_new_tokens=4, save_every=2, eval_every=2,
           eval_samples=1, target_kl=0.05, kl_horizon=16, scale_reward="running", seed=0)
ROWS = [("", "aab", 1.0), ("b", "cd", 0.0), ("", "aaa", 1.0), ("c", "hgf", 0.0), ("", "ab", 1.0), ("d", "ee", 0.0)]


def _crash_after_logging(monkeypatch, step):
    """Make the run die right after it logs ``step`` (past a checkpoint: rows to drop)."""
    log = RunWriter.log

    def dying_log(self, s, metrics):
        log(self, s, metrics)
        if s == step:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(RunWriter, "log", dying_log)


def _rows(out, name="metrics.jsonl"):
    return [json.loads(x) for x in (out / name).read_text(encoding="utf-8").splitlines()]


def _weights(out):
    from safetensors.torch import load_file

    return load_file(str(out / "policy" / "model.safetensors"))


def _same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-6), k


def test_sft_crash_then_rerun_matches_an_uninterrupted_run(tmp_path, monkeypatch, capsys):
    cfg = load_config(RLConfig, dict(SFT))
    run(cfg, tmp_path / "full")
    with monkeypatch.context() as m:
        _crash_after_logging(m, 4)                       # 0-based steps; checkpoint-4 = steps 0..3 done
        with pytest.raises(KeyboardInterrupt):
            run(cfg, tmp_path / "crash")
    assert len(_rows(tmp_path / "crash")) == 5 and (tmp_path / "crash/checkpoint-4/resume/state.json").exists()
    capsys.readouterr()
    run(cfg, tmp_path / "crash")
    assert "resuming from step 4" in capsys.readouterr().err
    rows = _rows(tmp_path / "crash")
    assert [r["step"] for r in rows] == list(range(6))
    assert [r["sft/loss"] for r in rows] == pytest.approx([r["sft/loss"] for r in _rows(tmp_path / "full")])
    assert len(_rows(tmp_path / "crash", "samples.jsonl")) == len(_rows(tmp_path / "full", "samples.jsonl"))
    _same_weights(tmp_path / "full", tmp_path / "crash")


def _ilql(tok, out, **kw):
    cfg = load_config(RLConfig, dict(ILQL, **kw))
    rows = [TextRow(p, t, r) for p, t, r in ROWS]
    return train_ilql(cfg, out, model=tiny_gpt2(tok), tok=tok, rows=rows, eval_reward_fn=count_a)


def test_ilql_crash_then_rerun_matches_an_uninterrupted_run(tmp_path, monkeypatch, tok):
    _ilql(tok, tmp_path / "full")
    with monkeypatch.context() as m:
        _crash_after_logging(m, 5)                       # checkpoint-4 exists; step 5 must be dropped
        with pytest.raises(KeyboardInterrupt):
            _ilql(tok, tmp_path / "crash")
    _ilql(tok, tmp_path / "crash")
    full, crash = _rows(tmp_path / "full"), _rows(tmp_path / "crash")
    assert [r["step"] for r in crash] == [r["step"] for r in full] == list(range(1, 7))
    assert [r["losses/total"] for r in crash] == pytest.approx([r["losses/total"] for r in full])
    assert _rows(tmp_path / "crash", "samples.jsonl") == _rows(tmp_path / "full", "samples.jsonl")
    _same_weights(tmp_path / "full", tmp_path / "crash")


def _ppo(tok, out, **kw):
    cfg = load_config(RLConfig, dict(PPO, **kw))
    return train_ppo(cfg, out, model=tiny_gpt2(tok), tok=tok, reward_fn=count_a, prompts=["", "b", "cd"])


def test_ppo_crash_then_rerun_restores_kl_coef_and_logs_each_step_once(tmp_path, monkeypatch, tok):
    _ppo(tok, tmp_path / "full")
    with monkeypatch.context() as m:
        _crash_after_logging(m, 3)
        with pytest.raises(KeyboardInterrupt):
            _ppo(tok, tmp_path / "crash")
    summary = _ppo(tok, tmp_path / "crash")
    full, crash = _rows(tmp_path / "full"), _rows(tmp_path / "crash")
    assert [r["step"] for r in crash] == [r["step"] for r in full] == list(range(6))
    for key in ("objective/kl_coef", "objective/score", "objective/kl"):
        assert [r.get(key) for r in crash] == pytest.approx([r.get(key) for r in full], abs=1e-5), key
    assert summary["eval_before"] == {k: v for k, v in full[0].items() if k.startswith("eval/")}
    _same_weights(tmp_path / "full", tmp_path / "crash")


def test_changed_config_refuses_to_resume_and_resume_false_starts_over(tmp_path, monkeypatch, tok):
    with monkeypatch.context() as m:
        _crash_after_logging(m, 3)
        with pytest.raises(KeyboardInterrupt):
            _ilql(tok, tmp_path / "run")
    with pytest.raises(JprefsError) as e:
        _ilql(tok, tmp_path / "run", lr=1e-3, save_every=3)            # save_every alone may change
    msg = str(e.value)
    assert "lr: 5e-05 -> 0.001" in msg and "save_every" not in msg
    assert "-o" in msg and "resume=false" in msg
    _ilql(tok, tmp_path / "run", lr=1e-3, resume=False)
    assert [r["step"] for r in _rows(tmp_path / "run")] == list(range(1, 7))
    state = json.loads((tmp_path / "run/checkpoint-4/resume/state.json").read_text(encoding="utf-8"))
    assert state["config"]["lr"] == 1e-3                              # the old run's checkpoints are gone


def _snapshot(out):
    """Every file under ``out`` with its bytes and modification time."""
    return {str(p.relative_to(out)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out.rglob("*"))
            if p.is_file()}


def test_finished_run_writes_done_last_and_a_rerun_changes_nothing(tmp_path, monkeypatch, capsys):
    cfg = load_config(RLConfig, dict(SFT))
    out = tmp_path / "run"
    first = run(cfg, out)
    done = json.loads((out / "done.json").read_text(encoding="utf-8"))
    assert done["step"] == 6 and done["config"]["sft_steps"] == 6
    others = [p for p in out.rglob("*") if p.is_file() and p.name != "done.json"]
    assert (out / "done.json").stat().st_mtime_ns >= max(p.stat().st_mtime_ns for p in others)  # written last
    before = _snapshot(out)
    capsys.readouterr()
    with monkeypatch.context() as m:
        def no_steps(self, *a, **k):
            raise AssertionError("a finished run trained again")

        m.setattr(RunWriter, "log", no_steps)
        again = run(load_config(RLConfig, dict(SFT, save_every=3)), out)    # a cosmetic key may differ
    err = capsys.readouterr().err
    assert f"run in {out} already finished at step 6; use resume=false to start over or a new -o" in err
    assert again == first == json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert _snapshot(out) == before                                      # byte-identical, not rewritten


def test_finished_run_with_another_config_is_refused_and_resume_false_starts_over(tmp_path, tok):
    _ilql(tok, tmp_path / "run")
    with pytest.raises(JprefsError) as e:
        _ilql(tok, tmp_path / "run", total_steps=8)
    msg = str(e.value)
    assert "finished run (step 6)" in msg and "total_steps: 6 -> 8" in msg
    assert "-o" in msg and "resume=false" in msg
    _ilql(tok, tmp_path / "run", total_steps=8, resume=False)
    assert [r["step"] for r in _rows(tmp_path / "run")] == list(range(1, 9))
    assert json.loads((tmp_path / "run/done.json").read_text(encoding="utf-8"))["step"] == 8


def test_crash_after_the_last_checkpoint_before_the_marker_still_resumes(tmp_path, monkeypatch, tok, capsys):
    _ppo(tok, tmp_path / "full")
    with monkeypatch.context() as m:
        def dying_summary(self, obj):                 # every step and the policy done; marker not yet written
            raise KeyboardInterrupt("simulated crash")

        m.setattr(RunWriter, "summary", dying_summary)
        with pytest.raises(KeyboardInterrupt):
            _ppo(tok, tmp_path / "crash")
    assert not (tmp_path / "crash/done.json").exists() and (tmp_path / "crash/policy").exists()
    capsys.readouterr()
    _ppo(tok, tmp_path / "crash")
    assert "resuming from step 4" in capsys.readouterr().err
    full, crash = _rows(tmp_path / "full"), _rows(tmp_path / "crash")
    assert [r["step"] for r in crash] == list(range(6))
    assert [r.get("objective/kl_coef") for r in crash] == pytest.approx([r.get("objective/kl_coef") for r in full])
    _same_weights(tmp_path / "full", tmp_path / "crash")
    assert json.loads((tmp_path / "crash/done.json").read_text(encoding="utf-8"))["step"] == 5
    _ppo(tok, tmp_path / "crash")
    assert "already finished at step 5" in capsys.readouterr().err


def test_checkpoint_loop_state_is_safetensors_and_json_and_round_trips_exactly(tmp_path, monkeypatch):
    import random

    import numpy as np

    from jprefs.rl.checkpoint import _rng_state, _set_rng_state, pack_state, unpack_state

    cfg = load_config(RLConfig, dict(SFT))
    with monkeypatch.context() as m:
        _crash_after_logging(m, 4)
        with pytest.raises(KeyboardInterrupt):
            run(cfg, tmp_path / "run")
    r = tmp_path / "run/checkpoint-4/resume"
    assert sorted(p.name for p in r.iterdir()) == ["model.safetensors", "state.json", "train_state.json",
                                                   "train_state.safetensors"]
    for p in r.iterdir():                              # no pickle: neither a raw one nor torch.save's zip
        assert p.read_bytes()[:2] not in (b"\x80\x02", b"\x80\x04", b"PK"), p
    tree = json.loads((r / "train_state.json").read_text(encoding="utf-8"))
    assert {"optimizer", "scheduler", "rng", "objects"} <= set(tree)

    # exact round trip of what the loops store: optimizer state, python/numpy/torch RNGs, generators
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95))
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    np.random.seed(1)
    np.random.standard_normal()                        # a cached gaussian in the legacy state
    gen = np.random.default_rng(7)
    gen.integers(0, 10, 5)
    py = random.Random(3)
    obj = {"optimizer": opt.state_dict(), "rng": _rng_state(), "data_rng": gen.bit_generator.state,
           "py_rng": py.getstate(), "order": [3, 1, 2]}
    tensors = {}
    back = unpack_state(json.loads(json.dumps(pack_state(obj, tensors))), {k: v.clone() for k, v in tensors.items()})
    st, st2 = obj["optimizer"]["state"], back["optimizer"]["state"]
    assert st.keys() == st2.keys() and back["optimizer"]["param_groups"] == obj["optimizer"]["param_groups"]
    assert all(torch.equal(st[k][n], st2[k][n]) for k in st for n in st[k])
    assert back["data_rng"] == obj["data_rng"] and back["py_rng"] == obj["py_rng"] and back["order"] == [3, 1, 2]
    expected = (random.random(), np.random.standard_normal(), float(torch.rand(1)))
    _set_rng_state(back["rng"])
    assert (random.random(), np.random.standard_normal(), float(torch.rand(1))) == expected
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95))
    opt2.load_state_dict(back["optimizer"])             # an optimizer accepts it as it is


def test_an_old_pickled_checkpoint_is_refused_not_unpickled(tmp_path, monkeypatch):
    cfg = load_config(RLConfig, dict(SFT))
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        _crash_after_logging(m, 4)
        with pytest.raises(KeyboardInterrupt):
            run(cfg, out)
    # turn checkpoint-4 into what jprefs wrote before: state.pt (a pickle), state.json without a format
    r = out / "checkpoint-4/resume"
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"optimizer": Payload()}, r / "state.pt")            # how older versions wrote it
    for name in ("train_state.json", "train_state.safetensors"):
        (r / name).unlink(missing_ok=True)
    state = json.loads((r / "state.json").read_text(encoding="utf-8"))
    state.pop("format", None)
    (r / "state.json").write_text(json.dumps(state), encoding="utf-8")
    with pytest.raises(JprefsError) as e:
        run(cfg, out)
    msg = str(e.value)
    assert f"{out / 'checkpoint-4'} was written by an older jprefs" in msg and "resume/state.pt" in msg
    assert "resume=false" in msg and f"policy={out / 'checkpoint-4' / 'policy'} -o NEW_DIR" in msg
    assert not marker.exists()                           # the pickle was never loaded


def test_changed_data_or_world_size_is_not_the_same_run(tmp_path, monkeypatch):
    """A data file changed under the same config resumed silently (steps trained on two labellings), and a
    finished run of the old file counted as done; a resume on another number of processes changes the batch."""
    data = tmp_path / "texts.txt"
    data.write_text("".join(f"{i}番目のあいうえお文です。\n" for i in range(40)), encoding="utf-8")
    cfg = load_config(RLConfig, dict(SFT, sft_data=str(data)))
    with monkeypatch.context() as m:
        _crash_after_logging(m, 4)
        with pytest.raises(KeyboardInterrupt):
            run(cfg, tmp_path / "run")
    state = json.loads((tmp_path / "run/checkpoint-4/resume/state.json").read_text(encoding="utf-8"))
    assert state["inputs"]["world"] == 1 and state["inputs"]["files"]["sft_data"][0]["file"] == "texts.txt"
    good = data.read_text(encoding="utf-8")
    data.write_text(good.replace("あいうえお", "かきくけこ"), encoding="utf-8")
    with pytest.raises(JprefsError, match="read another version of sft_data"):
        run(cfg, tmp_path / "run")
    data.write_text(good, encoding="utf-8")
    from jprefs.rl.checkpoint import find_resumable

    with pytest.raises(JprefsError, match="on 1 process\\(es\\); this one has 2"):
        find_resumable(tmp_path / "run", cfg, world=2)
    run(cfg, tmp_path / "run")                                        # the same file again: resumes and finishes
    data.write_text(good + "もう一行。\n", encoding="utf-8")
    with pytest.raises(JprefsError, match="finished run .* read another version"):
        run(cfg, tmp_path / "run")


def test_a_fresh_run_removes_the_last_runs_results_before_writing(tmp_path, monkeypatch, tok):
    """resume=false after a finished run, killed at step 3: the old summary.json, policy/ and heads stood beside
    the new run's logs."""
    out = tmp_path / "run"
    _ppo(tok, out)
    assert (out / "summary.json").is_file() and (out / "policy").is_dir()
    with monkeypatch.context() as m:
        _crash_after_logging(m, 1)
        with pytest.raises(KeyboardInterrupt):
            _ppo(tok, out, lr=1e-3, resume=False)
    assert not (out / "summary.json").exists() and not (out / "policy").exists() and not (out / "done.json").exists()
    assert not list(out.glob("value_head.*"))
