"""Data-parallel `jprefs rl` for real: 2 CPU processes on gloo, launched with torchrun or
`accelerate launch`, through the real CLI with tiny recipes.

Each test checks that the run finishes, that every file is written once (each step logged
once, one summary), that both processes end with the same weights (each process's digest
in summary["data_parallel"], equal to the digest of the saved files), and that the metrics
are those of all processes together. Skipped without torch.distributed + gloo.
One launch takes ~8-12 s on 2 busy cores (two Python processes import torch).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.distributed import free_port, needs_gloo

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")

REPO = Path(__file__).resolve().parents[2]
pytestmark = needs_gloo()

TINY = ["tiny_n_embd=16", "tiny_n_layer=1", "tiny_n_head=2", "tiny_vocab_size=300", "sft_max_texts=40",
        "sft_batch_size=8", "max_new_tokens=4", "eval_samples=1", "torch_threads=1", "device=cpu"]
PPO = [str(REPO / "rl/recipes/ppo-tiny-cpu.yaml"), *TINY, "sft_steps=4", "total_steps=5", "batch_size=4",
       "minibatch_size=2", "ppo_epochs=1", "eval_every=2", "save_every=2", "target_kl=0.05", "kl_horizon=16",
       "scale_reward=whiten", "reward_model=tests.rl.conftest:rank_reward"]


def _launch(out: Path, args: list[str], *, launcher: str = "torchrun", env: dict | None = None):
    """``jprefs rl ARGS -o OUT`` on 2 CPU processes; returns the CompletedProcess."""
    port = str(free_port())
    if launcher == "torchrun":
        pre = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    else:   # accelerate's --cpu runs one process; --multi_gpu goes through torchrun (gloo without GPUs)
        pre = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", port]
    e = dict(os.environ, OMP_NUM_THREADS="1", JPREFS_NO_PROGRESS="1", CUDA_VISIBLE_DEVICES="",
             PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **(env or {}))
    return subprocess.run([*pre, "-m", "jprefs.cli", "rl", *args, "-o", str(out)], cwd=REPO, env=e,
                          capture_output=True, text=True, timeout=300)


def _ok(r):
    if r.returncode != 0:
        err = "\n".join(x for x in r.stderr.splitlines() if "Warning" not in x and x.strip())
        pytest.fail(f"exit status {r.returncode}\n{r.stdout[-1500:]}\n{err[-8000:]}")


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


def _saved_policy_digest(out: Path) -> str:
    from jprefs.rl.policies import load_policy
    from jprefs.rl.dist import weights_digest

    model, _ = load_policy(str(out / "policy"), device=torch.device("cpu"))
    return weights_digest([model])


def _saved_heads_digest(module, path: Path) -> str:
    from safetensors.torch import load_file

    from jprefs.rl.dist import weights_digest

    module.load_state_dict(load_file(str(path)))
    return weights_digest([module])


def _check_in_sync(out: Path, **heads) -> dict:
    """Both processes' digests agree with each other and with the saved files."""
    dp = _summary(out)["data_parallel"]
    assert dp["processes"] == 2 and dp["in_sync"] is True, dp
    d0, d1 = dp["policy_digests"]
    assert d0 == d1 == _saved_policy_digest(out)
    for key, (module, file) in heads.items():
        h0, h1 = dp[key]
        assert h0 == h1 == _saved_heads_digest(module, out / file), key
    return dp


def test_weights_digest_tells_models_apart():
    from jprefs.rl.dist import weights_digest

    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert weights_digest([a]) == weights_digest([b])
    with torch.no_grad():
        b.bias[0] += 1e-6
    assert weights_digest([a]) != weights_digest([b])


def test_share_gives_each_process_its_own_slice_of_the_common_block():
    from jprefs.rl.dist import Dist

    block = list(range(8))
    ranks = []
    for r in range(2):
        d = Dist()
        d.rank, d.world = r, 2
        ranks.append(d.share(block, 4))
    assert ranks == [[0, 1, 2, 3], [4, 5, 6, 7]]          # disjoint, together the whole block
    assert Dist().share(block, 8) == block                 # one process: unchanged


def test_sft_on_two_processes(tmp_path):
    out = tmp_path / "sft"
    r = _launch(out, [str(REPO / "rl/recipes/sft-tiny-cpu.yaml"), *TINY, "sft_steps=6", "save_every=2"])
    _ok(r)
    assert r.stdout.count('"algo": "sft"') == 1                      # one summary printed, by the main process
    rows = _rows(out / "metrics.jsonl")
    assert [x["step"] for x in rows] == list(range(6))               # each step once, not once per process
    assert all(math.isfinite(x["sft/loss"]) for x in rows) and rows[-1]["sft/loss"] < rows[0]["sft/loss"]
    from jprefs.rl.texts import load_prompts

    n_eval = len(load_prompts("builtin:ja-tiny-eval"))
    assert len(_rows(out / "samples.jsonl")) == n_eval                # eval samples written once
    assert (out / "checkpoint-4/resume/state.json").exists() and (out / "done.json").exists()
    _check_in_sync(out)


def test_ilql_on_two_processes(tmp_path):
    from jprefs.rl.ilql import make_heads

    out = tmp_path / "ilql"
    r = _launch(out, [str(REPO / "rl/recipes/ilql-tiny-cpu.yaml"), *TINY, "sft_steps=4", "total_steps=6",
                      "batch_size=4", "eval_every=3", "save_every=2", "beta_gen_sweep=0,1"])
    _ok(r)
    rows = _rows(out / "metrics.jsonl")
    assert [x["step"] for x in rows] == list(range(1, 7))
    for key in ("losses/total", "losses/q", "losses/v", "losses/cql", "losses/awac", "values/v_mean"):
        assert all(math.isfinite(x[key]) for x in rows), key
    assert [x["step"] for x in rows if "eval/reward" in x] == [3, 6]
    assert len(_rows(out / "sft_metrics.jsonl")) == 4
    meta = json.loads((out / "ilql_heads.json").read_text(encoding="utf-8"))
    vocab = len(json.loads((out / "policy/tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"])
    # the heads' digests cover the Polyak-synced target heads too
    _check_in_sync(out, heads_digests=(make_heads(meta["hidden"], vocab, meta["two_qs"]), "ilql_heads.safetensors"))


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ppo") / "full"
    r = _launch(out, PPO, launcher="accelerate")
    _ok(r)
    return out, r


def test_ppo_on_two_processes_gathers_scores_and_kl(ppo_run):
    from jprefs.rl.ppo import make_value_head

    out, r = ppo_run
    assert r.stdout.count('"algo": "ppo"') == 1
    rows = _rows(out / "metrics.jsonl")
    assert [x["step"] for x in rows] == list(range(6))
    train = rows[1:]
    # rank_reward: process 0's 4 rollouts score 0, process 1's score 1 -> the mean over both is 0.5
    assert all(x["objective/score"] == pytest.approx(0.5) for x in train)
    assert all(x["objective/score_std"] == pytest.approx(math.sqrt(2 / 7)) for x in train)   # std of 0,0,0,0,1,1,1,1
    # evaluation runs on the main process (RANK 0) only
    assert [x["step"] for x in rows if "eval/reward" in x] == [0, 2, 4, 5]
    assert all(x["eval/reward"] == 0.0 for x in rows if "eval/reward" in x)
    # the KL controller steps on the logged (global) KL with n = 2 processes x 4 rollouts
    for a, b in zip(train, train[1:]):
        e = min(max(a["objective/kl"] / 0.05 - 1, -0.2), 0.2)
        assert b["objective/kl_coef"] == pytest.approx(a["objective/kl_coef"] * (1 + e * 8 / 16), rel=1e-6)
    dp = _check_in_sync(out, value_head_digests=(make_value_head(16), "value_head.safetensors"))
    assert dp["kl_coef"][0] == dp["kl_coef"][1]                        # both processes hold the same coefficient
    assert all(x["objective/kl"] > -0.5 for x in train)


def test_ppo_two_processes_crash_resume_then_finished(ppo_run, tmp_path):
    full, _ = ppo_run
    out = tmp_path / "crash"
    # process 1 dies at its 4th rollout (step 4): checkpoint-2 is complete by then (the main process
    # wrote it before joining step 3's collectives); the launcher stops process 0
    r = _launch(out, PPO, env={"JPREFS_TEST_CRASH_CALL": "4"})
    assert r.returncode != 0
    assert (out / "checkpoint-2/resume/state.json").exists() and not (out / "done.json").exists()
    r = _launch(out, PPO)
    _ok(r)
    assert r.stderr.count("resuming from step 2") == 1                   # said once, by the main process
    a, b = _rows(full / "metrics.jsonl"), _rows(out / "metrics.jsonl")
    assert [x["step"] for x in b] == list(range(6))
    for key in ("objective/kl", "objective/kl_coef", "losses/total"):
        assert [x.get(key) for x in b] == pytest.approx([x.get(key) for x in a], abs=1e-5), key
    assert _summary(out)["data_parallel"]["policy_digests"] == _summary(full)["data_parallel"]["policy_digests"]
    # a rerun of the finished run: one message, no file touched
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file()}
    r = _launch(out, PPO)
    _ok(r)
    assert r.stderr.count(f"run in {out} already finished at step 5") == 1
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file()} == before


def test_a_busy_folder_stops_both_processes_with_the_error(tmp_path):
    from tests.gated import lock_holder

    out = tmp_path / "sft"
    holder = lock_holder(out, "jprefs rl")                 # another run holds the folder
    try:
        r = _launch(out, [str(REPO / "rl/recipes/sft-tiny-cpu.yaml"), *TINY, "sft_steps=2"])
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert r.returncode != 0
    # the main process is refused and the other one stops with the same error (no hang in a collective)
    assert r.stderr.count(f"another `jprefs rl` (pid {holder.pid}, started ") == 2, r.stderr[-3000:]
    assert "jprefs rl: error:" in r.stderr and "jprefs rl (process 1): error:" in r.stderr
    assert not (out / "metrics.jsonl").exists() and not (out / "config.yaml").exists()
