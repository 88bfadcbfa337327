"""`jprefs rl` holds its output folder's lock: a second run into the folder is refused (exit 2,
naming the folder and the running pid) and touches nothing; a SIGKILLed run's lock and temp
files do not block the next run. The second run here is a real concurrent `jprefs rl`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from jprefs.cli import main
from tests.gated import lock_holder, wait_reached

pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[2]
SFT = [str(REPO / "rl/recipes/sft-tiny-cpu.yaml"), "tiny_n_embd=16", "tiny_n_layer=1", "tiny_n_head=2",
       "tiny_vocab_size=300", "sft_max_texts=40", "sft_batch_size=8", "sft_steps=4", "max_new_tokens=4",
       "torch_threads=1"]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", JPREFS_NO_PROGRESS="1",
                PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


def _files(out: Path) -> dict:
    return {str(p.relative_to(out)): (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}


def test_two_concurrent_runs_into_one_folder_one_succeeds_one_is_refused(tmp_path, capsys):
    out, gate = tmp_path / "sft", tmp_path / "gate"
    # run A: the real CLI in another process, held at its policy set-up (inside its lock)
    a = subprocess.Popen([sys.executable, "-m", "tests.gated", str(gate), "jprefs.rl.prepare:prepare_policy",
                          "rl", *SFT, "-o", str(out)], cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        wait_reached(gate, a)
        before = _files(out)
        capsys.readouterr()
        assert main(["rl", *SFT, "-o", str(out)]) == 2                  # run B, while A runs
        err = capsys.readouterr().err
        assert f"another `jprefs rl` (pid {a.pid}, started " in err and f"writing to {out}" in err, err
        assert "-o NEW_DIR" in err and "Traceback" not in err
        assert _files(out) == before                                     # B wrote nothing
        gate.touch()
        stdout, stderr = a.communicate(timeout=240)
    finally:
        if a.poll() is None:
            a.kill()
    assert a.returncode == 0, stderr[-3000:]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3]                    # each step once
    assert (out / "done.json").exists() and not (out / ".jprefs.lock").exists()


def test_a_sigkilled_runs_lock_and_temp_files_do_not_block_the_next_run(tmp_path, capsys):
    out = tmp_path / "sft"
    holder = lock_holder(out, "jprefs rl")
    holder.send_signal(signal.SIGKILL)
    holder.wait(30)
    (out / ".checkpoint-2.tmp" / "policy").mkdir(parents=True)          # a checkpoint being written
    (out / f".metrics.jsonl.tmp-{holder.pid}").write_text("{", encoding="utf-8")
    capsys.readouterr()
    assert main(["rl", *SFT, "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"left locked by pid {holder.pid}" in err and "taking over" in err
    assert f"removed 2 temporary file(s) left by an interrupted run in {out}" in err
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name or p.name == ".jprefs.lock"]
