"""``jprefs label candidates`` on tiny policies: rows and seeds against the batch layout worked out by
hand, the same answers as ``jprefs eval policy``, byte-identical reruns, resume after Ctrl-C and after
``kill -9``, refused reruns with other settings, duplicate / empty counts, one writer per file, and
bad input as one clear error through the CLI entry point."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[2]
TEXTS = ["今日はいい天気です。", "この本はとても面白かった。", "新しい部屋は広くて明るい。", "明日は雨が降るらしい。"]
PROMPTS = [{"id": "p1", "prompt": "今日の天気は", "category": "weather",
            "license": "cc-by-4.0"},
           {"id": "p2", "prompt": "この本は", "category": "books"},
           {"id": "p3", "prompt": [{"role": "user", "content": "新しい部屋は"}], "category": "home"},
           {"id": "p4", "prompt": "明日は", "category": "weather"},
           {"id": "p5", "prompt": "駅までは", "category": "travel"}]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tiny save_pretrained causal LM, a tiny `jprefs rl` SFT run folder, and a prompt file."""
    from jprefs.config import load_config
    from jprefs.rl.config import RLConfig
    from jprefs.rl.policies import build_tiny_policy
    from jprefs.rl.runner import run as rl_run

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("cands")
    model, tok = build_tiny_policy(TEXTS * 10, vocab_size=300, n_embd=16, n_layer=1, n_head=2, n_positions=64)
    model.save_pretrained(d / "lm", safe_serialization=True)
    tok.save_pretrained(d / "lm")
    rl_run(load_config(RLConfig, dict(tiny_n_embd=16, tiny_n_layer=1, tiny_n_head=2, tiny_vocab_size=300,
                                      max_new_tokens=4, eval_samples=1, torch_threads=1, seed=0, algo="sft",
                                      reward_type="none", sft_steps=2, sft_data="builtin:ja-tiny",
                                      sft_batch_size=8, sft_max_texts=20)), d / "sft")
    (d / "prompts.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in PROMPTS),
                                     encoding="utf-8")
    return d


def _args(env, out, *extra, model=None):
    from jprefs.label import candidates

    p = argparse.ArgumentParser()
    candidates.configure(p)
    return p.parse_args(["--model", str(model or env / "lm"), "--prompts", str(env / "prompts.jsonl"), "-k", "3",
                         "--max-new-tokens", "5", "--batch-size", "4", "-o", str(out), *extra])


def _run(env, out, *extra, model=None):
    from jprefs.label.candidates import run

    return run(_args(env, out, *extra, model=model))


def _rows(out):
    return [json.loads(x) for x in Path(out).read_text(encoding="utf-8").splitlines()]


def _main(*argv):
    """Through jprefs.cli.main, as the lead's `jprefs label candidates` will run it."""
    from jprefs import cli

    old = dict(cli.COMMANDS)
    cli.COMMANDS["label-candidates"] = ("jprefs.label.candidates", "test entry")
    try:
        return cli.main(["label-candidates", *argv])
    finally:
        cli.COMMANDS.clear()
        cli.COMMANDS.update(old)


# ---------------------------------------------------------------------- rows, seeds, meta

def test_rows_follow_the_schema_and_the_seed_layout(env, tmp_path):
    out = tmp_path / "c.jsonl"
    assert _run(env, out, "--seed", "7") == 0
    rows = _rows(out)
    assert [r["id"] for r in rows] == ["p1", "p2", "p3", "p4", "p5"]
    assert rows[0]["prompt"] == [{"role": "user", "content": "今日の天気は"}]
    assert rows[2]["prompt"] == [{"role": "user", "content": "新しい部屋は"}]
    assert [r["license"] for r in rows] == ["cc-by-4.0"] + ["unknown"] * 4
    assert all(r["source"] == "jprefs-candidates" and len(r["responses"]) == 3 for r in rows)
    assert [r["meta"]["category"] for r in rows] == ["weather", "books", "home", "weather", "travel"]
    c = rows[0]["meta"]["candidates"]
    assert c["model"] == str(env / "lm") and c["k"] == 3 and c["chat_template"] is False
    assert c["sampling"] == {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "max_new_tokens": 5, "min_new_tokens": 0,
                             "seed": 7, "batch_size": 4, "prompt_max_tokens": 256}
    assert c["model_digest"].startswith("sha256-sampled:") and c["model_revision"] is None
    # 15 jobs, prompt-major, 4 a batch: batch b = jobs 4b..4b+3 draws with seed 7 + b
    by_hand = [[7, 7, 7], [7, 8, 8], [8, 8, 9], [9, 9, 9], [10, 10, 10]]
    assert [r["meta"]["candidates"]["seeds"] for r in rows] == by_hand
    for r in rows:
        rc = r["meta"]["candidates"]
        assert rc["n_duplicates"] == 3 - len(set(r["responses"]))
        assert rc["n_empty"] == sum(not t.strip() for t in r["responses"])
        assert all(1 <= n <= 5 for n in rc["n_tokens"])
    meta = json.loads((tmp_path / "c.jsonl.meta.json").read_text(encoding="utf-8"))
    assert meta["status"] == "complete" and meta["settings"]["k"] == 3 and meta["settings"]["n_prompts"] == 5
    assert meta["counts"]["rows"] == 5 and meta["counts"]["responses"] == 15
    assert meta["counts"]["tokens"] == sum(sum(r["meta"]["candidates"]["n_tokens"]) for r in rows)
    assert meta["counts"]["duplicate_responses"] == sum(r["meta"]["candidates"]["n_duplicates"] for r in rows)
    run0 = meta["runs"][0]
    assert run0["rows_written"] == 5 and run0["tokens"] == meta["counts"]["tokens"] and run0["tokens_per_s"] > 0
    assert "--seed 7" in meta["command"] and meta["command"].startswith("jprefs label candidates --model ")
    assert not (tmp_path / ".c.jsonl.lock").exists()                   # the lock is given back


def test_the_same_answers_as_eval_policy(env, tmp_path):
    """One decoding loop: `jprefs eval policy`'s generate() with the same settings draws the same answers."""
    from jprefs.eval.policy import _load, generate, resolve_policy
    from jprefs.eval.prompts import load_eval_prompts

    out = tmp_path / "c.jsonl"
    assert _run(env, out, "--seed", "3") == 0
    args = _args(env, out, "--seed", "3")
    spec = resolve_policy(str(env / "lm"))
    model, tok, fn = _load(spec, args, torch.device("cpu"))
    with torch.no_grad():
        ev, _ = generate(spec, model, tok, fn, load_eval_prompts(args.prompts), args)
    assert [x for r in _rows(out) for x in r["responses"]] == [r["response"] for r in ev]
    assert [x for r in _rows(out) for x in r["meta"]["candidates"]["seeds"]] == [r["seed"] for r in ev]


def test_an_rl_run_folder_is_a_model(env, tmp_path):
    out = tmp_path / "c.jsonl"
    assert _run(env, out, "--limit", "2", model=env / "sft") == 0
    rows = _rows(out)
    assert len(rows) == 2 and rows[0]["meta"]["candidates"]["model"] == str(env / "sft")
    meta = json.loads((tmp_path / "c.jsonl.meta.json").read_text(encoding="utf-8"))
    assert meta["settings"]["model_path"] == str(env / "sft" / "policy")


# ---------------------------------------------------------------------- reproducible, resumable

def test_same_command_same_bytes_and_another_seed_differs(env, tmp_path):
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    for out in (a, b):
        assert _run(env, out) == 0
    assert a.read_bytes() == b.read_bytes()
    assert _run(env, c, "--seed", "1") == 0
    assert [r["responses"] for r in _rows(c)] != [r["responses"] for r in _rows(a)]


def test_ctrl_c_then_the_same_command_gives_the_uninterrupted_file(env, tmp_path, monkeypatch, capsys):
    import jprefs.rl.sampling as sampling

    full = tmp_path / "full.jsonl"
    assert _run(env, full) == 0
    real, calls = sampling.sample, [0]

    def stop_on_third_batch(*a, **k):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    out = tmp_path / "c.jsonl"
    monkeypatch.setattr(sampling, "sample", stop_on_third_batch)
    assert _main(*_argv(env, out)) == 130
    # batches 0-1 = jobs 0-7: prompts p1, p2 whole (jobs 0-5), p3 half-done: two rows on disk
    assert [r["id"] for r in _rows(out)] == ["p1", "p2"]
    assert json.loads((tmp_path / "c.jsonl.meta.json").read_text(encoding="utf-8"))["status"] == "interrupted"
    monkeypatch.setattr(sampling, "sample", real)
    capsys.readouterr()
    assert _main(*_argv(env, out)) == 0
    assert "2 of 5 prompts done" in capsys.readouterr().err
    assert out.read_bytes() == full.read_bytes()
    meta = json.loads((tmp_path / "c.jsonl.meta.json").read_text(encoding="utf-8"))
    assert [r["rows_written"] for r in meta["runs"]] == [2, 3] and meta["counts"]["rows"] == 5
    assert meta["runs"][1]["resumed_after_rows"] == 2


def _argv(env, out, *extra):
    return ["--model", str(env / "lm"), "--prompts", str(env / "prompts.jsonl"), "-k", "3", "--max-new-tokens", "5",
            "--batch-size", "4", "-o", str(out), *extra]


KILLED = """
import sys, time
import torch
torch.set_num_threads(1)
import jprefs.rl.sampling as s
real = s.sample
def slow(*a, **k):
    time.sleep(0.4)
    return real(*a, **k)
s.sample = slow
from jprefs import cli
cli.COMMANDS["label-candidates"] = ("jprefs.label.candidates", "")
sys.exit(cli.main(["label-candidates", *sys.argv[1:]]))
"""


def test_kill_9_mid_run_then_the_same_command_gives_the_uninterrupted_file(env, tmp_path, capsys):
    full = tmp_path / "full.jsonl"
    assert _run(env, full, "--batch-size", "2") == 0
    out = tmp_path / "c.jsonl"
    envv = {**os.environ, "PYTHONPATH": str(REPO), "JPREFS_NO_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", KILLED, *_argv(env, out, "--batch-size", "2")], env=envv,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and not (out.exists() and out.read_bytes().count(b"\n") >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    left = out.read_bytes()
    assert 2 <= left.count(b"\n") < 5 and full.read_bytes().startswith(left)
    with open(out, "ab") as f:                  # and a cut last line, as a kill in the middle of a write leaves
        f.write(full.read_bytes()[len(left):len(left) + 17])
    capsys.readouterr()
    assert _main(*_argv(env, out, "--batch-size", "2")) == 0
    assert "dropping the cut last line (17 bytes)" in capsys.readouterr().err
    assert out.read_bytes() == full.read_bytes()


def test_other_settings_are_refused_and_overwrite_starts_again(env, tmp_path, capsys):
    out = tmp_path / "c.jsonl"
    assert _run(env, out) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert _main(*_argv(env, out)) == 0                                  # complete: nothing to do
    assert "nothing to do" in capsys.readouterr().err and out.read_bytes() == before
    assert _main(*_argv(env, out, "--temperature", "0.5")) == 2
    err = capsys.readouterr().err
    assert "sampling.temperature: 1.0 then, 0.5 now" in err and "--overwrite" in err and "Traceback" not in err
    assert out.read_bytes() == before
    assert _main(*_argv(env, out, "--temperature", "0.5", "--overwrite")) == 0
    fresh = tmp_path / "fresh.jsonl"
    assert _main(*_argv(env, fresh, "--temperature", "0.5")) == 0
    assert out.read_bytes() == fresh.read_bytes() != before
    stranger = tmp_path / "stranger.jsonl"                               # not written by this command
    stranger.write_text('{"id": "p1"}\n', encoding="utf-8")
    assert _main(*_argv(env, stranger)) == 2
    assert "has no stranger.jsonl.meta.json" in capsys.readouterr().err


def test_a_damaged_row_is_named_on_resume(env, tmp_path, capsys):
    out = tmp_path / "c.jsonl"
    assert _run(env, out) == 0
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text(lines[0] + "{not json\n", encoding="utf-8")
    capsys.readouterr()
    assert _main(*_argv(env, out)) == 2
    err = capsys.readouterr().err
    assert f"{out}, line 2: row 2 is not a candidates row" in err and "fix:" in err and "Traceback" not in err


# ---------------------------------------------------------------------- duplicates and empty answers

def test_duplicates_and_empty_responses_are_kept_and_counted(env, tmp_path, capsys):
    # greedy decoding: the K answers of a prompt are one answer K times
    out = tmp_path / "g.jsonl"
    capsys.readouterr()
    assert _main(*_argv(env, out, "--temperature", "0")) == 0
    err = capsys.readouterr().err
    rows = _rows(out)
    assert all(len(r["responses"]) == 3 and len(set(r["responses"])) == 1 for r in rows)
    assert all(r["meta"]["candidates"]["n_duplicates"] == 2 for r in rows)
    meta = json.loads((tmp_path / "g.jsonl.meta.json").read_text(encoding="utf-8"))
    assert meta["counts"]["duplicate_responses"] == 10 and meta["counts"]["prompts_with_duplicates"] == 5
    assert "WARNING: 10 responses repeat an earlier response" in err
    # a model whose every first token is EOS: empty answers, kept in place and counted
    from safetensors.torch import load_file, save_file

    d = tmp_path / "eos"
    import shutil

    shutil.copytree(env / "lm", d)
    w = load_file(str(d / "model.safetensors"))
    eos = json.loads((d / "config.json").read_text(encoding="utf-8"))["eos_token_id"]
    v = torch.zeros_like(w["transformer.wte.weight"][0])
    v[0] = 1000.0                                   # |v| far above every other embedding row
    w["transformer.wte.weight"][eos] = v
    w["transformer.ln_f.weight"].zero_()            # the last hidden state is the bias: v for every input
    w["transformer.ln_f.bias"].copy_(v)
    save_file({k: t.contiguous() for k, t in w.items()}, str(d / "model.safetensors"), metadata={"format": "pt"})
    out = tmp_path / "e.jsonl"
    assert _main("--model", str(d), *_argv(env, out)[2:]) == 0
    err = capsys.readouterr().err
    rows = _rows(out)
    assert all(r["responses"] == ["", "", ""] for r in rows)
    assert all(r["meta"]["candidates"]["n_empty"] == 3 and r["meta"]["candidates"]["n_tokens"] == [1, 1, 1]
               for r in rows)
    meta = json.loads((tmp_path / "e.jsonl.meta.json").read_text(encoding="utf-8"))
    assert meta["counts"]["empty_responses"] == 15 and meta["counts"]["prompts_with_empty"] == 5
    assert "WARNING: 15 responses are empty" in err


# ---------------------------------------------------------------------- one writer, bad input

def test_a_second_writer_of_the_same_file_is_refused(env, tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from jprefs.runlock import RunLock; "
                               "l = RunLock(sys.argv[1], 'jprefs label candidates', lock_name='.c.jsonl.lock')"
                               ".acquire(); print('held', flush=True); time.sleep(60)", str(tmp_path)],
                              env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        capsys.readouterr()
        assert _main(*_argv(env, tmp_path / "c.jsonl", "--limit", "1")) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and f"writing to {tmp_path / 'c.jsonl'}" in err
        assert not (tmp_path / "c.jsonl").exists()
        assert _main(*_argv(env, tmp_path / "other.jsonl", "--limit", "1")) == 0   # a file beside it is free
    finally:
        holder.kill()
        holder.wait()


def test_bad_input_is_one_clear_error(env, tmp_path, capsys):
    def bad(*argv):
        capsys.readouterr()
        assert _main(*argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "fix:" in err, err
        return err

    out = str(tmp_path / "c.jsonl")
    lm, prompts = str(env / "lm"), str(env / "prompts.jsonl")
    err = bad("--model", lm, "--prompts", prompts, "-k", "1", "-o", out)
    assert "--samples-per-prompt=1" in err and "at least 2" in err
    err = bad("--model", lm, "--prompts", str(tmp_path / "nope.jsonl"), "-o", out)
    assert f"prompt file not found: {tmp_path / 'nope.jsonl'}" in err
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "a", "prompt": "x"}\n{"id": "b", "prompt": \n', encoding="utf-8")
    err = bad("--model", lm, "--prompts", str(broken), "-o", out)
    assert f"{broken}, line 2" in err
    err = bad("--model", str(tmp_path / "no-model"), "--prompts", prompts, "-o", out)
    assert f"model not found: {tmp_path / 'no-model'}" in err
    err = bad("--model", "no-such-org/no-such-model", "--prompts", prompts, "-o", out)
    assert "model not found: no-such-org/no-such-model" in err and "Hugging Face cache" in err
    err = bad("--model", lm, "--prompts", prompts, "--temperature", "-1", "-o", out)
    assert "--temperature=-1.0" in err
    assert not list(tmp_path.glob("c.jsonl*"))                           # nothing written by a refused run
