"""`jprefs train-rm` holds its output folder's lock: a second run into the folder is refused
(exit 2, naming the folder and the running pid) and writes nothing; the second run here is a
real concurrent `jprefs train-rm` in another process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jprefs.cli import main
from tests.gated import wait_reached

from .conftest import make_backbone_dir, write_pairs

pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[2]


def _files(out: Path) -> dict:
    return {str(p.relative_to(out)): (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}


def test_two_concurrent_runs_into_one_folder_one_succeeds_one_is_refused(tmp_path, capsys):
    out, gate = tmp_path / "rm", tmp_path / "gate"
    args = ["train-rm", "--data", write_pairs(tmp_path / "pairs.jsonl", n=16),
            "--backbone", make_backbone_dir(tmp_path / "bb"), "--objective", "pairwise", "epochs=1",
            "batch_size=8", "max_length=32", "eval_fraction=0", "plots=false", "-o", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", JPREFS_NO_PROGRESS="1", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    # run A, held where it loads its data (inside its lock)
    a = subprocess.Popen([sys.executable, "-m", "tests.gated", str(gate), "jprefs.classifiers.train:_load_split",
                          *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_reached(gate, a)
        before = _files(out)
        capsys.readouterr()
        assert main(args) == 2                                           # run B, while A runs
        err = capsys.readouterr().err
        assert f"another `jprefs train-rm` (pid {a.pid}, started " in err and f"writing to {out}" in err, err
        assert "Traceback" not in err
        assert _files(out) == before                                     # B wrote nothing (not even config.yaml)
        gate.touch()
        stdout, stderr = a.communicate(timeout=240)
    finally:
        if a.poll() is None:
            a.kill()
    assert a.returncode == 0, stderr[-3000:]
    assert (out / "done.json").exists() and (out / "model.safetensors").exists()
    assert not (out / ".jprefs.lock").exists()
