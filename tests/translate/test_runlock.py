"""`jprefs translate` holds its output folder's lock: a second run into the folder is refused
(exit 2, naming the folder and the running pid) before it sends a request; shards of one job
may share a folder but a shard twice may not; a SIGKILLed run's lock and temp files do not
block the next run. The second run of the first test is a real concurrent `jprefs translate`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from jprefs.cli import main
from jprefs.runlock import FolderBusyError
from tests.gated import lock_holder, wait_reached

REPO = Path(__file__).resolve().parents[2]


def _args(pairs_file, server, out, *extra):
    return ["translate", str(pairs_file), "--source", "jprefs", "--engine", "openai", "--model", "fake-mt",
            "--base-url", server.base_url, "-o", str(out), "chunk_size=2", *extra]


def test_two_concurrent_runs_into_one_folder_one_succeeds_one_is_refused(server, pairs_file, tmp_path, capsys):
    out, gate = tmp_path / "ja", tmp_path / "gate"
    env = dict(os.environ, JPREFS_NO_PROGRESS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    # run A, held where it reads its input (inside its lock, before any request)
    a = subprocess.Popen([sys.executable, "-m", "tests.gated", str(gate), "jprefs.translate.pipeline:load_input",
                          *_args(pairs_file, server, out)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        wait_reached(gate, a)
        capsys.readouterr()
        assert main(_args(pairs_file, server, out)) == 2                # run B, while A runs
        err = capsys.readouterr().err
        assert f"another `jprefs translate` (pid {a.pid}, started " in err and f"writing to {out}" in err, err
        assert server.requests == 0                                      # B paid for nothing
        gate.touch()
        stdout, stderr = a.communicate(timeout=120)
    finally:
        if a.poll() is None:
            a.kill()
    assert a.returncode == 0, stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert server.completions == summary["requests_sent"] > 0            # every request paid once
    assert not (out / ".jprefs.lock").exists()


def test_shards_share_a_folder_a_shard_twice_or_the_whole_job_is_refused(server, pairs_file, tmp_path, capsys):
    out = tmp_path / "ja"
    holder = lock_holder(out, "jprefs translate", shard="0/2")
    try:
        assert main(_args(pairs_file, server, out, "--shard", "1/2")) == 0
        capsys.readouterr()
        assert main(_args(pairs_file, server, out, "--shard", "0/2")) == 2
        assert f"`jprefs translate --shard 0/2` (pid {holder.pid}," in capsys.readouterr().err
        # another shard count with the same index writes the same config.shard0.yaml / summary.shard0.json
        assert main(_args(pairs_file, server, out, "--shard", "0/3")) == 2
        assert f"(pid {holder.pid}," in capsys.readouterr().err
        assert main(_args(pairs_file, server, out)) == 2
        assert f"(pid {holder.pid}," in capsys.readouterr().err
        from jprefs.config import load_config
        from jprefs.translate.config import TranslateConfig
        from jprefs.translate.pipeline import merge_shards

        cfg = load_config(TranslateConfig, out / "config.shard1.yaml", {"output": str(out)})
        with pytest.raises(FolderBusyError, match=f"pid {holder.pid}"):
            merge_shards([str(out)], cfg)
    finally:
        holder.stdin.close()
        holder.wait(30)


def test_a_sigkilled_runs_lock_and_temp_files_do_not_block_the_next_run(server, pairs_file, tmp_path, capsys):
    out = tmp_path / "ja"
    holder = lock_holder(out, "jprefs translate")
    holder.send_signal(signal.SIGKILL)
    holder.wait(30)
    dead = holder.pid
    (out / "cache").mkdir()
    (out / f".pairs.jsonl.tmp-{dead}").write_text("{", encoding="utf-8")
    (out / "cache" / f".chunk-s0of1-000000-{dead}.jsonl.tmp-{dead}").write_text("{", encoding="utf-8")
    capsys.readouterr()
    assert main(_args(pairs_file, server, out)) == 0
    err = capsys.readouterr().err
    assert f"left locked by pid {dead}" in err
    assert f"jprefs translate: removed 2 temporary file(s) left by an interrupted run in {out}" in err
    leftovers = [p.name for p in out.rglob(".*")]
    assert leftovers == [], leftovers
