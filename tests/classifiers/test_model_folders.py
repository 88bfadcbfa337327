"""Loading a folder that is not a finished reward model (`jprefs score`, `RewardModel`, the rl
reward loaders) says what the folder is and what to do, as a JprefsError (exit 2, no
traceback), instead of a transformers or safetensors traceback. One test per kind of folder."""

from __future__ import annotations

import json

import pytest

from jprefs.cli import main
from jprefs.errors import JprefsError

from .conftest import make_backbone_dir, make_model, make_tokenizer, write_pairs

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy")
    return {"backbone": make_backbone_dir(d / "bb"), "pairs": write_pairs(d / "pairs.jsonl", n=16)}


def _cfg(toy, out, **kw):
    from jprefs.classifiers.config import TrainRMConfig
    from jprefs.config import load_config

    base = dict(data=toy["pairs"], backbone=toy["backbone"], objective="pairwise", epochs=2, batch_size=8,
                max_length=32, eval_fraction=0, plots=False, output_dir=str(out))
    return load_config(TrainRMConfig, None, {**base, **kw})


def _killed_train_rm(toy, out, monkeypatch, where="_save_checkpoint"):
    """A train-rm run into ``out`` killed right after its epoch-1 checkpoint (or, with
    ``where="build_items"``, before any checkpoint)."""
    import jprefs.classifiers.train as train_mod

    original = getattr(train_mod, where)

    def dying(*a, **k):
        if where == "_save_checkpoint":
            original(*a, **k)
        raise KeyboardInterrupt("simulated kill")

    with monkeypatch.context() as m:
        m.setattr(train_mod, where, dying)
        with pytest.raises(KeyboardInterrupt):
            train_mod.train_reward_model(_cfg(toy, out), log=lambda *a, **k: None)


def _load_error(path, **kw) -> str:
    from jprefs.classifiers.reward_model import RewardModel

    with pytest.raises(JprefsError) as e:
        RewardModel.from_pretrained(path, device="cpu", **kw)
    return str(e.value)


def _saved_rm(path):
    from jprefs.classifiers.reward_model import RewardConfig, RewardModel

    RewardModel(make_model(num_labels=1), make_tokenizer(), RewardConfig(objective="pairwise",
                                                                         chosen_index=0)).save_pretrained(path)
    return path


def test_an_unfinished_train_rm_run_says_so_and_its_command_resumes_it(toy, tmp_path, monkeypatch, capsys):
    out = tmp_path / "rm"
    _killed_train_rm(toy, out, monkeypatch)
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"prompt": "猫は好き?", "response": "良いです。"}, ensure_ascii=False) + "\n",
                   encoding="utf-8")
    capsys.readouterr()
    assert main(["score", str(out), str(inp), "-o", str(tmp_path / "s.jsonl")]) == 2
    err = capsys.readouterr().err
    assert f"{out}: this train-rm run did not finish (last checkpoint: epoch 1 of 2)" in err, err
    assert f"rerun the same `jprefs train-rm ... -o {out}` command to resume it" in err and "Traceback" not in err
    from jprefs.rl.rewards import make_reward

    with pytest.raises(JprefsError, match="did not finish"):               # the rl reward loader
        make_reward("rm", str(out))
    # the checkpoint folder itself
    msg = _load_error(out / "checkpoint")
    assert f"{out / 'checkpoint'} is a train-rm checkpoint (after epoch 1 of 2), not a model" in msg
    # the command the message gives resumes the run, and the model then loads
    assert main(["train-rm", str(out / "config.yaml"), "-o", str(out)]) == 0
    assert "resuming from" in capsys.readouterr().err
    from jprefs.classifiers.reward_model import RewardModel

    assert RewardModel.from_pretrained(out, device="cpu").config.objective == "pairwise"


def test_a_train_rm_run_killed_before_its_first_checkpoint(toy, tmp_path, monkeypatch):
    out = tmp_path / "rm"
    _killed_train_rm(toy, out, monkeypatch, where="build_items")
    msg = _load_error(out)
    assert "this train-rm run did not finish (killed before its first checkpoint)" in msg
    assert f"command to train it; its resolved config gives that command: jprefs train-rm {out / 'config.yaml'} " \
           f"-o {out}" in msg


def test_a_train_rm_run_still_writing_names_its_pid(toy, tmp_path, monkeypatch):
    from tests.gated import lock_holder

    out = tmp_path / "rm"
    _killed_train_rm(toy, out, monkeypatch)
    holder = lock_holder(out, "jprefs train-rm")
    try:
        msg = _load_error(out)
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert f"is being written by a `jprefs train-rm` run (pid {holder.pid}" in msg and "wait for that run" in msg


def test_empty_and_unrelated_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    msg = _load_error(tmp_path / "empty")
    assert "is not a jprefs model folder: expected config.json + model.safetensors; it is empty" in msg
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    assert "it holds a.txt" in _load_error(tmp_path / "notes")
    _saved_rm(tmp_path / "outer" / "rm")                                    # one level too high
    assert f"fix: pass {tmp_path / 'outer' / 'rm'}, which has config.json" in _load_error(tmp_path / "outer")
    assert f"fix: pass {tmp_path / 'outer' / 'rm'}" in _load_error(tmp_path / "outer" / "rm" / "model.safetensors")


def test_a_truncated_safetensors_file(tmp_path, capsys):
    d = _saved_rm(tmp_path / "rm")
    f = d / "model.safetensors"
    size = f.stat().st_size
    with open(f, "r+b") as fh:
        fh.truncate(size // 2)
    msg = _load_error(d)
    assert f"{f} is truncated or corrupt ({size // 2} bytes; its header describes {size} bytes)" in msg
    assert "re-save or retrain" in msg
    f.write_bytes(b"\x05\x00")                                              # not even a header
    assert "shorter than a safetensors header" in _load_error(d)
    good = _saved_rm(tmp_path / "rm2") / "model.safetensors"                 # whole, but a bad dtype inside
    raw = good.read_bytes()
    good.write_bytes(raw.replace(b'"F32"', b'"Q32"', 1))
    assert "its safetensors weights are truncated or corrupt" in _load_error(good.parent)
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"response": "良いです。"}\n', encoding="utf-8")
    assert main(["score", str(d), str(inp), "-o", str(tmp_path / "s.jsonl")]) == 2
    assert "is truncated or corrupt" in capsys.readouterr().err


def test_a_folder_with_only_pytorch_model_bin(tmp_path):
    d = _saved_rm(tmp_path / "rm")
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(b"not loaded")
    msg = _load_error(d)
    assert "has pytorch_model.bin but no model.safetensors: jprefs loads safetensors only" in msg
    assert "AutoModelForSequenceClassification as M; M.from_pretrained" in msg


def test_a_translate_output_and_a_causal_lm(tmp_path):
    d = tmp_path / "ja"
    (d / "cache").mkdir(parents=True)
    (d / "pairs.jsonl").write_text("")
    (d / "config.yaml").write_text("input: x.jsonl\noutput: ja\nengine: openai\ntemplate: builtin:en-ja\n")
    msg = _load_error(d)
    assert "is a `jprefs translate` output (preference data), not a model" in msg
    assert f"jprefs train-rm --data {d / 'pairs.jsonl'} -o RM_DIR" in msg
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_embd=8, n_layer=1, n_head=2, vocab_size=50, n_positions=16)).save_pretrained(
        tmp_path / "lm")
    assert "holds a causal LM (GPT2LMHeadModel), not a sequence classifier" in _load_error(tmp_path / "lm")
