"""`jprefs train-rm` under `accelerate launch` with 2 CPU processes (gloo): the run finishes,
the batches are sharded over the processes, the main process alone writes the model and one
metrics file, and the model loads and scores.

On a machine without GPUs, `accelerate launch --multi_gpu` starts the processes but a plain
`Accelerator()` only joins them into a gloo process group when told to use the CPU; train-rm
passes `cpu=True` where no GPU exists (before that fix each process trained alone on all the
data and they raced on the output folder). The first test launches with ACCELERATE_USE_CPU=1,
the second without it.

Skipped when torch.distributed or its gloo backend is unavailable. One launch: ~15-25 s on
2 busy cores (two Python processes import torch and transformers).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.distributed import free_port, needs_gloo

from .conftest import make_backbone_dir, write_pairs

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")

REPO = Path(__file__).resolve().parents[2]
pytestmark = needs_gloo()


def _launch(tmp_path, *, use_cpu_env: bool, epochs: int = 3, launcher: str = "accelerate"):
    """``jprefs train-rm`` on 2 CPU processes into ``tmp_path/rm``; returns (CompletedProcess, out).

    ``launcher``: "accelerate" (``accelerate launch --multi_gpu --num_processes 2``), "torchrun"
    (``torchrun --nproc_per_node 2``) or "accelerate-plain" (``accelerate launch --num_processes 2``,
    the form that starts one process without GPUs)."""
    bb = make_backbone_dir(tmp_path / "bb")
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    out = tmp_path / "rm"
    env = dict(os.environ, OMP_NUM_THREADS="1", JPREFS_NO_PROGRESS="1", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.pop("ACCELERATE_USE_CPU", None)
    if use_cpu_env:
        env["ACCELERATE_USE_CPU"] = "1"
    # accelerate's --cpu flag runs one process; --multi_gpu goes through torchrun, and with no GPU
    # the Accelerator sets up a MULTI_CPU process group on gloo.
    if launcher == "torchrun":
        pre = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_port", str(free_port())]
    else:
        pre = [sys.executable, "-m", "accelerate.commands.launch",
               *(["--multi_gpu"] if launcher == "accelerate" else []), "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port())]
    cmd = [*pre, "-m", "jprefs.cli", "train-rm", "--data", pairs, "--backbone", bb, "--objective", "pairwise",
           f"epochs={epochs}", "lr=3e-3", "batch_size=8", "max_length=48", "eval_fraction=0.25",
           "freeze_embeddings=false", "warmup_ratio=0.0", "plots=false", "-o", str(out)]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    return r, out


def test_train_rm_on_two_cpu_processes(tmp_path):
    from jprefs.classifiers.reward_model import RewardModel

    r, out = _launch(tmp_path, use_cpu_env=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # the main process prints the evaluation line once; the other process prints nothing
    assert r.stdout.count("eval: ") == 1, r.stdout
    files = sorted(p.name for p in out.iterdir())
    assert "metrics.json" in files and "model.safetensors" in files, files
    assert not [f for f in files if ".tmp" in f or f == "checkpoint"], files      # no leftovers
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]                # each epoch logged once
    # 36 training pairs in batches of 8 = 5 batches per epoch, sharded: 3 optimizer steps per process
    assert [h["step"] for h in metrics["history"]] == [3, 6, 9], metrics["history"]
    rm = RewardModel.from_pretrained(out, device="cpu")
    scores = rm.score(["猫は好き?"] * 2, ["良いです。", "悪いです。。。"])
    assert np.all(np.isfinite(scores))
    assert metrics["eval"]["pairwise_accuracy"] >= 0.75, metrics["eval"]


def test_train_rm_plain_multi_process_launch_on_cpu_shards_batches(tmp_path):
    r, out = _launch(tmp_path, use_cpu_env=False, epochs=2)
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert [h["step"] for h in metrics["history"]] == [3, 6]


def test_a_busy_folder_stops_both_processes_with_the_error(tmp_path):
    from tests.gated import lock_holder

    holder = lock_holder(tmp_path / "rm", "jprefs train-rm")          # another run holds the folder
    try:
        r, out = _launch(tmp_path, use_cpu_env=True, epochs=1)
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert r.returncode != 0
    # the main process is refused; the other one gets the same error (no hang in a collective)
    assert r.stderr.count(f"another `jprefs train-rm` (pid {holder.pid}, started ") == 2, r.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == []                  # nothing written


def test_train_rm_under_torchrun_on_two_cpu_processes(tmp_path):
    # the README's other working form: torchrun gives WORLD_SIZE=2, the Accelerator joins it on gloo
    r, out = _launch(tmp_path, use_cpu_env=False, epochs=1, launcher="torchrun")
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert [h["step"] for h in metrics["history"]] == [3]                 # 5 batches sharded over 2
    assert "1 process is running" not in r.stderr


def test_accelerate_launch_without_multi_gpu_says_that_one_process_runs(tmp_path):
    # `accelerate launch --num_processes 2` on a machine without GPUs starts one process (and
    # OMP_NUM_THREADS=1); train-rm says so and how to get 2, then trains alone on every batch
    r, out = _launch(tmp_path, use_cpu_env=False, epochs=1, launcher="accelerate-plain")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.count("jprefs train-rm: 1 process is running, although `accelerate launch` was asked "
                          "for 2") == 1, r.stderr[-3000:]
    assert "torchrun --nproc_per_node 2 -m jprefs.cli train-rm" in r.stderr
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert [h["step"] for h in metrics["history"]] == [5]                 # one process: all 5 batches
