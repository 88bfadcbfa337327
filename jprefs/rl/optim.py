"""Optimizer and LoRA set-up shared by SFT, ILQL and PPO.

Example::

    model = maybe_lora(model, cfg)          # unchanged when cfg.lora_r == 0
    opt = optimizer(model.parameters(), cfg)
"""

from __future__ import annotations


def optimizer(params, cfg, lr: float | None = None):
    import torch

    return torch.optim.AdamW([p for p in params if p.requires_grad], lr=lr if lr is not None else cfg.lr,
                             betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.weight_decay)



def maybe_lora(model, cfg):
    """Wrap ``model`` with a LoRA adapter (peft) when ``cfg.lora_r > 0``."""
    if cfg.lora_r <= 0:
        return model
    from jprefs.errors import require

    peft = require("peft", "peft", "LoRA (lora_r > 0)")
    lcfg = peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
                           target_modules="all-linear")
    return peft.get_peft_model(model, lcfg)

