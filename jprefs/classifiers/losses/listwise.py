"""Listwise objectives for rank lists (K responses to one prompt, best first).

Inputs (padded groups):
    rewards: ``(G, K)`` float, scalar rewards of each group's responses in rank order (best first).
    mask:    ``(G, K)`` bool, True for real responses; padding sits at the end of a row.
Both return a scalar averaged over groups.

- :func:`plackett_luce_loss`: the negative log-likelihood of the observed ranking
  under Plackett-Luce, ``sum_i [logsumexp(r_i..r_K) - r_i]`` over positions
  ``i < K`` of each group (the last position contributes 0). For K = 2 this is
  exactly the Bradley-Terry loss.
- :func:`all_pairs_loss`: Bradley-Terry over all K(K-1)/2 ordered pairs of a
  group, averaged within the group first so that large groups do not dominate
  (InstructGPT's grouping).

Example::

    plackett_luce_loss(torch.tensor([[2.0, 1.0, 0.0]]), torch.ones(1, 3, dtype=torch.bool))
"""

from __future__ import annotations


def plackett_luce_loss(rewards, mask):
    """Plackett-Luce NLL of best-first rankings, mean over groups."""
    import torch

    r = rewards.float().masked_fill(~mask, float("-inf"))            # (G, K)
    # logsumexp over the suffix r_i..r_K: flip, cumulative logsumexp, flip back
    suffix = torch.logcumsumexp(r.flip(-1), dim=-1).flip(-1)           # (G, K)
    terms = (suffix - r).masked_fill(~mask, 0.0)                       # last real position: lse(r_K) - r_K = 0
    return terms.sum(-1).mean()


def all_pairs_loss(rewards, mask):
    """Mean over groups of the mean Bradley-Terry loss over the group's ordered pairs (i better than j)."""
    import torch
    import torch.nn.functional as F

    r = rewards.float()
    K = r.shape[-1]
    diff = r.unsqueeze(-1) - r.unsqueeze(-2)                           # (G, K, K): r_i - r_j
    upper = torch.triu(torch.ones(K, K, dtype=torch.bool, device=r.device), diagonal=1)   # i < j: i ranked higher
    valid = upper & mask.unsqueeze(-1) & mask.unsqueeze(-2)            # (G, K, K)
    nll = -F.logsigmoid(diff) * valid
    per_group = nll.sum((-1, -2)) / valid.sum((-1, -2)).clamp(min=1)
    return per_group.mean()
