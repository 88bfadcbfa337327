"""The rl loaders (policy=DIR, the reward model) say what a folder is when it is not the
model they need: an rl run folder (use DIR/policy), an unfinished run (its latest
checkpoint's policy, or rerun to resume), a checkpoint, a reward model given as a policy,
a policy given as a reward model. JprefsErrors, exit 2 from the CLI."""

from __future__ import annotations

import pytest

from jprefs.cli import main
from jprefs.config import load_config
from jprefs.errors import JprefsError
from jprefs.rl.policies import load_policy
from jprefs.rl.runwriter import RunWriter
from jprefs.rl.config import RLConfig
from jprefs.rl.rewards import make_reward
from jprefs.rl.runner import run

torch = pytest.importorskip("torch")

SFT = dict(algo="sft", reward_type="none", sft_steps=4, sft_batch_size=8, sft_max_texts=40, save_every=2,
           tiny_n_embd=16, tiny_n_layer=1, tiny_n_head=2, tiny_vocab_size=300, max_new_tokens=4,
           eval_samples=1, torch_threads=1, seed=0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished SFT run and one killed after its step-2 checkpoint."""
    d = tmp_path_factory.mktemp("runs")
    cfg = load_config(RLConfig, dict(SFT))
    run(cfg, d / "done")
    log = RunWriter.log

    def dying(self, step, metrics):
        log(self, step, metrics)
        if step == 2:
            raise KeyboardInterrupt("simulated kill")

    RunWriter.log = dying
    try:
        with pytest.raises(KeyboardInterrupt):
            run(cfg, d / "killed")
    finally:
        RunWriter.log = log
    return d


def _err(fn, *a, **k) -> str:
    with pytest.raises(JprefsError) as e:
        fn(*a, **k)
    return str(e.value)


def test_a_finished_rl_run_folder_points_to_its_policy(runs, capsys):
    out = runs / "done"
    msg = _err(load_policy, str(out))
    assert f"{out} is a `jprefs rl` run folder (algo sft); its policy is {out / 'policy'}" in msg
    assert f"fix: pass {out / 'policy'}" in msg
    model, tok = load_policy(str(out / "policy"), device=torch.device("cpu"))        # the policy loads
    assert model.config.n_layer == 1
    msg = _err(make_reward, "rm", str(out))
    assert f"is a `jprefs rl` run folder (algo sft), not a reward model; its policy (a causal LM) is " \
           f"{out / 'policy'}" in msg
    # the CLI: exit 2, no traceback
    assert main(["rl", "algo=ppo", "reward_type=callable", "reward_model=tests.rl.conftest:count_a",
                 f"policy={out}", "-o", str(runs / "ppo")]) == 2
    err = capsys.readouterr().err
    assert "is a `jprefs rl` run folder" in err and "Traceback" not in err


def test_an_unfinished_rl_run_points_to_its_latest_checkpoint(runs):
    out = runs / "killed"
    msg = _err(load_policy, str(out))
    assert f"{out} is a `jprefs rl` run that did not finish (algo sft): it has no final policy yet" in msg
    assert f"rerun the same `jprefs rl ... -o {out}` command to resume it" in msg
    assert f"use its latest checkpoint's policy: {out / 'checkpoint-2' / 'policy'}" in msg
    msg = _err(load_policy, str(out / "checkpoint-2"))
    assert f"is a checkpoint of a `jprefs rl` run, not a model folder; its policy is {out / 'checkpoint-2/policy'}" \
           in msg
    load_policy(str(out / "checkpoint-2" / "policy"), device=torch.device("cpu"))


def test_a_reward_model_as_the_policy_and_a_policy_as_the_reward(runs, tmp_path):
    from jprefs.classifiers.reward_model import RewardConfig, RewardModel
    from tests.classifiers.conftest import make_model, make_tokenizer

    rm = tmp_path / "rm"
    RewardModel(make_model(), make_tokenizer(), RewardConfig(objective="binary")).save_pretrained(rm)
    msg = _err(load_policy, str(rm))
    assert f"{rm} is a jprefs reward model, not a policy" in msg and f"reward_model={rm}" in msg
    pol = runs / "done" / "policy"
    for kind in ("rm", "classifier"):
        assert "holds a causal LM (GPT2LMHeadModel), not a sequence classifier" in _err(make_reward, kind, str(pol))


def test_a_saved_policy_generates_with_its_cache_and_is_written_whole(tmp_path, monkeypatch):
    """save_policy: a trainer's use_cache=False (set while training) does not reach the saved config (a
    pulled policy's generate then recomputed every position at every step), the live model keeps its
    setting, and a save that fails half way leaves the previous policy, not a half-written one."""
    import json

    import torch

    from tests.rl.conftest import char_tokenizer, tiny_gpt2

    tok = char_tokenizer()
    model = tiny_gpt2(tok)
    model.config.use_cache = False
    w = RunWriter(tmp_path / "run")
    d = w.save_policy(model, tok)
    assert json.loads((d / "config.json").read_text(encoding="utf-8"))["use_cache"] is True
    assert model.config.use_cache is False
    assert sorted(p.name for p in d.parent.iterdir() if p.name.startswith(".")) == []
    before = (d / "model.safetensors").read_bytes()

    def broken(self, path, **kw):
        (path / "model.safetensors").parent.mkdir(parents=True, exist_ok=True)
        (path / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(type(model), "save_pretrained", broken)
    with pytest.raises(KeyboardInterrupt):
        w.save_policy(model, tok)
    assert (d / "model.safetensors").read_bytes() == before
    load_policy(str(d), device=torch.device("cpu"))
