"""GPU check (skipped without CUDA): a short PPO run on the GPU raises the reward."""

import json

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_ppo_on_gpu_raises_reward(tmp_path, tok):
    from jprefs.config import load_config
    from jprefs.rl.config import RLConfig
    from jprefs.rl.ppo import train_ppo

    from .conftest import count_a, tiny_gpt2

    cfg = load_config(RLConfig, dict(algo="ppo", reward_type="callable", reward_model="tests.rl.conftest:count_a",
                                     total_steps=14, batch_size=32, minibatch_size=16, lr=3e-3, max_new_tokens=8,
                                     init_kl_coef=0.01, eval_every=100, device="cuda",
                                     eval_prompts="builtin:ja-tiny-eval", eval_samples=1))
    train_ppo(cfg, tmp_path / "gpu", model=tiny_gpt2(tok), tok=tok, reward_fn=count_a, prompts=["", "b"])
    rows = [json.loads(line) for line in open(tmp_path / "gpu" / "metrics.jsonl")]
    scores = [r["objective/score"] for r in rows if "objective/score" in r]
    assert sum(scores[-3:]) / 3 > sum(scores[:3]) / 3 + 0.5
