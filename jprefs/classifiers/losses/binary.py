"""Binary objective (the seed classifiers): (prompt, response) -> chosen (1) / rejected (0).

Inputs:
    logits: ``(B, 2)`` float, the classifier's two logits per example.
    labels: ``(B,)`` long, 1 = chosen/positive, 0 = rejected/negative.
Returns the mean cross-entropy (a scalar). The reward at scoring time is
``logits[:, 1] - logits[:, 0]``, the log-odds of "chosen".

Example::

    binary_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))   # log 2 = 0.6931
"""

from __future__ import annotations


def binary_loss(logits, labels):
    """Mean cross-entropy of ``(B, 2)`` logits against ``(B,)`` 0/1 labels."""
    import torch.nn.functional as F

    if logits.ndim != 2 or logits.shape[-1] != 2:
        raise ValueError(f"binary_loss expects (B, 2) logits, got shape {tuple(logits.shape)}")
    return F.cross_entropy(logits.float(), labels.long())
