"""Pairwise objective (Bradley-Terry, InstructGPT): one scalar reward per (prompt, response).

Inputs:
    r_chosen:   ``(B,)`` rewards of the preferred responses.
    r_rejected: ``(B,)`` rewards of the dispreferred responses to the same prompts.
    margin:     ``(B,)``, a float, or None: how much better chosen must be (Llama-2 style).
    weights:    ``(B,)`` or None: per-pair weights (``length_balance``: pairs whose chosen answer
                is the shorter one weigh as much in total as those where it is the longer one).
Returns ``sum(w * -log sigmoid(r_chosen - r_rejected - margin)) / sum(w)`` (the mean without weights).

Example::

    bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.0]))   # -log sigmoid(1) = 0.3133
"""

from __future__ import annotations


def bradley_terry_loss(r_chosen, r_rejected, margin=None, weights=None):
    """``-log sigmoid(r_c - r_r - margin)`` averaged over the batch (weighted by ``weights``)."""
    import torch.nn.functional as F

    if r_chosen.shape != r_rejected.shape:
        raise ValueError(f"r_chosen {tuple(r_chosen.shape)} and r_rejected {tuple(r_rejected.shape)} differ in shape")
    diff = r_chosen.float() - r_rejected.float()                     # (B,)
    if margin is not None:
        diff = diff - margin
    nll = -F.logsigmoid(diff)
    if weights is None:
        return nll.mean()
    w = weights.float()
    return (w * nll).sum() / w.sum().clamp(min=1e-12)
