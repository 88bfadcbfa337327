"""Length-correlation penalty: Bradley-Terry plus ``weight * |pearson(r, log length)|`` inside each batch.

Inputs:
    rewards: ``(N,)`` rewards of every response in the batch (chosen and rejected alike).
    lengths: ``(N,)`` their lengths (characters); the penalty uses ``log(1 + length)`` so that one
             very long answer does not decide the correlation.
Returns ``|rho|``, the absolute Pearson correlation over the batch (0 when fewer than 2 responses
or when the lengths do not vary in the batch: there is nothing to decorrelate), with a variance
floor on the rewards (:data:`REWARD_VAR_FLOOR`, see :func:`pearson`).

Used as ``loss = bradley_terry_loss(...) + debias_weight * length_correlation_penalty(r, len)``
(``train-rm debias=correlation``). It pushes the whole reward to be uncorrelated with length,
which also removes the part of the signal that *is* length when longer answers really are better
on average; the ODIN heads (:mod:`jprefs.classifiers.losses.odin`) keep that part in a separate head.

Example::

    length_correlation_penalty(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 100.0, 1000.0]))
    # log(1+L) = 2.398, 4.615, 6.909; var floor 0.01: 0.9999 * sqrt(2/3 / (2/3 + 0.01)) = 0.9925
"""

from __future__ import annotations

EPS = 1e-8
# Variance floor for the reward side of the correlation. A correlation does not depend on the scale
# of the rewards, so its gradient grows as 1/std(reward): at initialisation, when a fresh head's
# outputs vary by 1e-3, it would swamp the ranking loss and throw the head about. With the floor
# the term behaves like a covariance for rewards that barely vary and like the correlation once
# they spread (std >> 0.1, as a trained reward model's do).
REWARD_VAR_FLOOR = 0.01


def pearson(x, y, floor: float = REWARD_VAR_FLOOR):
    """Pearson correlation of two ``(N,)`` tensors (differentiable): ``cov(x, y) / (sqrt(var(x) + floor)
    std(y))``; with ``floor=0`` exactly Pearson's r. 0 when ``y`` is constant or N < 2."""
    x = x.float() - x.float().mean()
    y = y.float() - y.float().mean()
    n = x.numel()
    sy = y.pow(2).sum()
    if n < 2 or float(sy) < EPS:
        return (x * 0.0).sum()          # a zero that keeps the graph
    sx = x.pow(2).sum() + floor * n
    if float(sx.detach()) < EPS:
        return (x * 0.0).sum()
    return (x * y).sum() / (sx * sy).sqrt()


def log_length(lengths):
    """``log(1 + length)`` as float: the length feature of every length-debiasing loss."""
    import torch

    return torch.log1p(lengths.float().clamp(min=0))


def length_correlation_penalty(rewards, lengths):
    """``|pearson(rewards, log(1 + lengths))|`` over the batch."""
    if rewards.shape != lengths.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)} and lengths {tuple(lengths.shape)} differ in shape")
    return pearson(rewards, log_length(lengths)).abs()
