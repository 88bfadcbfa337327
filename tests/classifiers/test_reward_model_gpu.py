"""GPU checks (skipped without CUDA): bf16 scoring on the GPU agrees with fp32 on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jprefs.classifiers.reward_model import RewardConfig, RewardModel

from .conftest import make_model, make_tokenizer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_gpu_bf16_scores_match_cpu_fp32(tmp_path):
    RewardModel(make_model(2), make_tokenizer(), RewardConfig(objective="binary", max_length=48)).save_pretrained(
        tmp_path / "rm")
    prompts, responses = ["日本の首都は?"] * 8, ["東京です。", "大阪です。", "良い", "悪い", "猫", "犬", "山", "海"]
    cpu = RewardModel.from_pretrained(tmp_path / "rm", device="cpu").score(prompts, responses)
    gpu = RewardModel.from_pretrained(tmp_path / "rm", device="cuda")          # default dtype on GPU: bf16
    assert next(gpu.model.parameters()).dtype in (torch.bfloat16, torch.float32)
    np.testing.assert_allclose(gpu.score(prompts, responses), cpu, atol=5e-2)
