"""Intervals and tests for evaluation figures, with the prompt as the unit of resampling.

Pairs (or samples) that share a prompt are not independent: two answers to one question are
judged against the same difficulty. Every interval here is a *cluster* bootstrap: it resamples
groups (prompts) with replacement and recomputes the statistic over all rows of the drawn
groups. With one row per group it is the ordinary bootstrap.

- :func:`bootstrap_ci`: a percentile interval of any statistic of per-row values (default: the
  mean), by group; deterministic for a given ``seed``.
- :func:`paired_bootstrap_ci`: the interval of ``mean(a) - mean(b)`` over the same rows (two
  models on the same pairs, a policy against a baseline on the same prompts).
- :func:`win_tie_loss`: shares of +1 / 0 / -1 outcomes with intervals, the "at least as good"
  share and a two-sided sign test (ties dropped, as the sign test does).
- :func:`sign_test`: exact two-sided binomial p-value of ``wins`` against ``losses``.

Example::

    est, (lo, hi) = bootstrap_ci(correct, groups=prompt_ids)      # accuracy and its 95% interval
    wtl = win_tie_loss(outcomes, groups=prompt_ids)                # {"win": .., "win_ci95": [..], ...}
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

N_BOOT = 2000


def _group_index(groups: Sequence[Any] | None, n: int):
    import numpy as np

    if groups is None:
        return np.arange(n), n
    if len(groups) != n:
        raise ValueError(f"{len(groups)} groups for {n} values")
    _, inv = np.unique(np.asarray([str(g) for g in groups], dtype=object), return_inverse=True)
    return inv, int(inv.max()) + 1 if n else 0


def _cluster_sums(values, inv, k: int):
    """Per-group sum and count of each column of ``values`` (n, c)."""
    import numpy as np

    sums = np.zeros((k, values.shape[1]))
    np.add.at(sums, inv, values)
    counts = np.bincount(inv, minlength=k).astype(float)
    return sums, counts


CHUNK_CELLS = 2_000_000   # resamples x groups held in memory at once (16 MB of float64)


def _boot_means(sums, counts, k: int, n_boot: int, seed: int):
    """Means of ``n_boot`` with-replacement draws of k groups (ratio of drawn sums to drawn counts).

    The multiplicity matrix is built a chunk of resamples at a time, so memory stays bounded
    (a 20,000-prompt set would otherwise need a 2000 x 20,000 matrix per interval); the draws, and
    so the result for a seed, do not depend on the chunk size."""
    import numpy as np

    rng = np.random.default_rng(seed)
    step = max(1, CHUNK_CELLS // max(k, 1))
    out = np.empty(n_boot)
    for start in range(0, n_boot, step):
        m = min(step, n_boot - start)
        draws = rng.integers(0, k, size=(m, k))
        w = np.zeros((m, k))
        np.add.at(w, (np.repeat(np.arange(m), k), draws.ravel()), 1.0)
        out[start:start + m] = (w @ sums) / np.maximum(w @ counts, 1e-12)
    return out


def bootstrap_ci(values: Sequence[float], groups: Sequence[Any] | None = None, *, stat: Callable | None = None,
                 n_boot: int = N_BOOT, level: float = 0.95, seed: int = 0) -> tuple[float, tuple[float, float]]:
    """The statistic of ``values`` and its percentile bootstrap interval, resampling ``groups``.

    ``stat`` (default: the mean) takes the values of the drawn rows; the mean has a fast exact
    path. NaN values are not allowed. Empty input gives ``(nan, (nan, nan))``; fewer than two
    groups (one prompt: nothing to resample) or ``n_boot=0`` give the estimate with a
    ``(nan, nan)`` interval (written as null, shown as the estimate alone), never a zero-width one
    that would read as certainty.

    >>> est, (lo, hi) = bootstrap_ci([1, 0, 1, 1, 0, 1, 1, 1], groups=[0, 0, 1, 1, 2, 2, 3, 3])
    >>> est, lo <= est <= hi
    (0.75, True)
    """
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError("values must be one-dimensional")
    if not len(v):
        return float("nan"), (float("nan"), float("nan"))
    if not np.isfinite(v).all():
        raise ValueError("values contain NaN or infinity")
    inv, k = _group_index(groups, len(v))
    alpha = (1 - level) / 2
    est = float(v.mean()) if stat is None else float(stat(v))
    if k < 2 or n_boot < 1:
        return est, (float("nan"), float("nan"))
    if stat is None:
        sums, counts = _cluster_sums(v[:, None], inv, k)
        boots = _boot_means(sums[:, 0], counts, k, n_boot, seed)
    else:
        rng = np.random.default_rng(seed)
        members = [np.flatnonzero(inv == g) for g in range(k)]
        boots = np.empty(n_boot)
        for b in range(n_boot):
            pick = rng.integers(0, k, size=k)
            boots[b] = stat(v[np.concatenate([members[g] for g in pick])])
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    return est, (float(lo), float(hi))


def paired_bootstrap_ci(a: Sequence[float], b: Sequence[float], groups: Sequence[Any] | None = None, *,
                        n_boot: int = N_BOOT, level: float = 0.95, seed: int = 0):
    """``mean(a) - mean(b)`` over the same rows, with a cluster-bootstrap interval."""
    import numpy as np

    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {len(a)} and {len(b)}")
    return bootstrap_ci(a - b, groups, n_boot=n_boot, level=level, seed=seed)


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided binomial p-value of ``wins`` vs ``losses`` at p = 1/2 (ties excluded).

    >>> round(sign_test(30, 16), 4)
    0.0541
    >>> sign_test(0, 0)
    1.0
    """
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return float(min(1.0, 2 * tail))


def win_tie_loss(outcomes: Sequence[int], groups: Sequence[Any] | None = None, *, n_boot: int = N_BOOT,
                 level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Shares of wins (+1), ties (0) and losses (-1), each with a cluster-bootstrap interval, the
    "at least as good" share (wins + ties) with its interval, and a sign test on wins vs losses.

    >>> r = win_tie_loss([1] * 30 + [0] * 54 + [-1] * 16)
    >>> r["win"], r["tie"], r["loss"], r["at_least_as_good"]
    (0.3, 0.54, 0.16, 0.84)
    """
    import numpy as np

    raw = np.asarray(outcomes)
    bad = {x for x in np.unique(raw).tolist() if x not in (-1, 0, 1)} if raw.size else set()
    if bad or raw.dtype == bool:                # 0.5 or 0.9 cast to int were a tie, silently
        raise ValueError(f"outcomes must be -1, 0 or 1, got {sorted(bad, key=str) if bad else 'booleans'}")
    o = raw.astype(np.int64)
    out: dict[str, Any] = {"n": int(len(o))}
    for name, vals in (("win", o == 1), ("tie", o == 0), ("loss", o == -1), ("at_least_as_good", o >= 0)):
        est, ci = bootstrap_ci(vals.astype(float), groups, n_boot=n_boot, level=level, seed=seed)
        out[name], out[f"{name}_ci95" if level == 0.95 else f"{name}_ci"] = est, list(ci)
    wins, losses = int((o == 1).sum()), int((o == -1).sum())
    out.update({"wins": wins, "ties": int((o == 0).sum()), "losses": losses, "sign_test_p": sign_test(wins, losses)})
    return out
