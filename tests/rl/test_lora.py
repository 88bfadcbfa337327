"""PPO with a LoRA adapter (peft): the reference is the adapter-disabled base model."""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from jprefs.config import load_config  # noqa: E402
from jprefs.rl.config import RLConfig  # noqa: E402
from jprefs.rl.ppo import train_ppo  # noqa: E402

from .conftest import count_a, tiny_gpt2  # noqa: E402


def test_ppo_lora_reference_is_base_and_policy_is_merged(tmp_path, tok):
    base = tiny_gpt2(tok)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    cfg = load_config(RLConfig, dict(algo="ppo", reward_type="callable", reward_model="tests.rl.conftest:count_a",
                                     total_steps=3, batch_size=16, minibatch_size=8, ppo_epochs=2, lr=1e-2,
                                     lora_r=4, max_new_tokens=6, eval_every=100,
                                     eval_prompts="builtin:ja-tiny-eval", eval_samples=1))
    train_ppo(cfg, tmp_path / "lora", model=base, tok=tok, reward_fn=count_a, prompts=["", "b"])
    rows = [json.loads(line) for line in open(tmp_path / "lora" / "metrics.jsonl")]
    kls = [r["objective/kl"] for r in rows if "objective/kl" in r]
    assert kls[0] == pytest.approx(0.0, abs=1e-6)        # adapter starts as a no-op (B = 0)
    assert any(abs(k) > 1e-6 for k in kls[1:])           # ...and then moves away from the base
    # the saved policy is a plain (merged) model that differs from the base
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "lora" / "policy", use_safetensors=True)
    diff = sum(float((merged.state_dict()[k] - v).abs().sum()) for k, v in before.items()
               if k in merged.state_dict() and merged.state_dict()[k].shape == v.shape)
    assert diff > 0
    assert not (tmp_path / "lora" / "policy" / "adapter_config.json").exists()
