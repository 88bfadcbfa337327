"""ODIN (Chen et al. 2024, "ODIN: Disentangled Reward Mitigates Hacking in RLHF"): a quality head and a
length head on one encoder; the quality head is trained to be uncorrelated with length.

The model has two outputs per response, ``r_q`` (quality, logit 0) and ``r_l`` (length, logit 1).
Training ranks the pairs by their sum and shapes the heads:

    loss = BT(r_q + r_l)                                    ranking on the full reward
         + length_weight * ( |rho(r_q, L)| - rho(r_l, L) )  quality: no length; length: all of it
         + orth_weight   * |w_q . w_l|                      the two heads read different directions

with ``rho`` the Pearson correlation over the batch's responses, ``L = log(1 + characters)`` and
``w_q``, ``w_l`` the rows of the final linear layer. At RL time only ``r_q`` is used: length is
what a policy can inflate for free, and the length head soaks it up during training so the
quality head does not have to. (The paper uses the signed ``-rho(r_l, L)``; it also removes the
classifier dropout, which jprefs leaves as the backbone sets it.)

Inputs:
    rq_chosen, rq_rejected, rl_chosen, rl_rejected: ``(B,)`` head outputs of the pairs.
    len_chosen, len_rejected: ``(B,)`` response lengths (characters).
    head_weight: ``(2, H)`` the final linear layer's weight (row 0 quality, row 1 length), or None.
Returns ``(loss, parts)``: the scalar loss and a dict of its detached parts for logging.

Example::

    loss, parts = odin_loss(rq_c, rq_r, rl_c, rl_r, len_c, len_r, head_weight, length_weight=1.0, orth_weight=1.0)
"""

from __future__ import annotations

from jprefs.classifiers.losses.correlation import log_length, pearson
from jprefs.classifiers.losses.pairwise import bradley_terry_loss

QUALITY, LENGTH = 0, 1         # logit indices of the two heads
HEADS = ("quality", "length")


def odin_loss(rq_chosen, rq_rejected, rl_chosen, rl_rejected, len_chosen, len_rejected, head_weight=None, *,
              length_weight: float = 1.0, orth_weight: float = 1.0, margin=None, weights=None):
    """The ODIN loss (see the module docstring) and its parts."""
    import torch

    rank = bradley_terry_loss(rq_chosen + rl_chosen, rq_rejected + rl_rejected, margin, weights=weights)
    L = log_length(torch.cat([len_chosen, len_rejected]))
    rho_q = pearson(torch.cat([rq_chosen, rq_rejected]), L)
    rho_l = pearson(torch.cat([rl_chosen, rl_rejected]), L)
    length = rho_q.abs() - rho_l
    orth = (head_weight[QUALITY] * head_weight[LENGTH]).sum().abs() if head_weight is not None else rank * 0.0
    loss = rank + length_weight * length + orth_weight * orth
    parts = {"rank": float(rank.detach()), "rho_quality": float(rho_q.detach()),
             "rho_length": float(rho_l.detach()), "orth": float(orth.detach())}
    return loss, parts
