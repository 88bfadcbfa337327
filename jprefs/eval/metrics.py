"""Pairwise reward-model metrics on arrays: the one implementation ``jprefs eval rm`` and train-rm share.

Every function takes plain arrays, one entry per preference pair: the rewards of the chosen and
of the rejected response, their lengths, and a group per pair (the prompt: pairs that share a
prompt are resampled together by the bootstrap, :func:`jprefs.eval.stats.bootstrap_ci`).
Nothing here loads a model or a file.

- **Pairwise accuracy**: the share of pairs with ``r_chosen > r_rejected``; a tie counts 1/2.
- **Length baselines** on the same pairs: *longer wins* (the longer response is predicted to be
  the chosen one; equal lengths count 1/2) and *shorter wins* (``1 - longer wins``).
- **Length-controlled accuracy**: accuracy on the pairs where the chosen response is strictly
  the *shorter* one. The longer-wins baseline is 0 there by construction, so a length detector
  scores 0 and a model that ignores length keeps its overall accuracy. Reported beside it:
  accuracy on the pairs where the chosen response is longer, and on *length-matched* pairs
  (``|len_c - len_r| / max(len_c, len_r) <= tolerance``, default
  :data:`LENGTH_MATCH_TOLERANCE` = 10 %), each with its ``n`` and interval.
- **Reward-length correlation**: Pearson and Spearman of the reward against the length over
  both responses of every pair, and of the margin ``r_c - r_r`` against ``len_c - len_r``.
- **Calibration**: each pair counted once, at the confidence of the predicted winner
  ``max(p, 1 - p)`` with ``p = sigmoid(r_c - r_r)`` (the Bradley-Terry probability that the
  chosen response wins), against how often that winner is the chosen response; expected
  calibration error over equal-width bins and the bins themselves (a reliability diagram).
- **Breakdown** of all of the above (without calibration) by any per-pair key (source, subset).
- **Agreement** of two models: the share of pairs where both pick the same winner.

Lengths are whatever the caller passes; jprefs passes *characters* of the response text
(``len(str)``: Unicode code points; prompt excluded), which for Japanese is close to what a
reader sees and independent of any tokenizer.

Example::

    m = pairwise_metrics(rc, rr, len_c, len_r, groups=prompt_ids, seed=0)
    m["pairwise_accuracy"], m["ci95"], m["length_baseline_accuracy"], m["length_controlled_accuracy"]
"""

from __future__ import annotations

from typing import Any, Sequence

LENGTH_MATCH_TOLERANCE = 0.10    # |len_c - len_r| / max(len_c, len_r) at most this: a length-matched pair
N_CALIBRATION_BINS = 10


def _arr(x):
    import numpy as np

    return np.asarray(x, dtype=np.float64)


def wins(a, b):
    """``1`` where ``a > b``, ``0.5`` where equal, ``0`` otherwise (the per-pair score of a pick).

    >>> wins([2, 1, 0], [1, 1, 1]).tolist()
    [1.0, 0.5, 0.0]
    """
    import numpy as np

    a, b = _arr(a), _arr(b)
    return np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0))


def sigmoid(x):
    import numpy as np

    return 1.0 / (1.0 + np.exp(-_arr(x)))


def relative_length_gap(len_chosen, len_rejected):
    """``|len_c - len_r| / max(len_c, len_r)`` per pair (0 when both are empty).

    >>> relative_length_gap([100, 10], [95, 20]).tolist()
    [0.05, 0.5]
    """
    import numpy as np

    lc, lr = _arr(len_chosen), _arr(len_rejected)
    top = np.maximum(lc, lr)
    return np.where(top > 0, np.abs(lc - lr) / np.where(top > 0, top, 1.0), 0.0)


def length_subsets(len_chosen, len_rejected, tolerance: float = LENGTH_MATCH_TOLERANCE) -> dict[str, Any]:
    """Boolean masks: ``chosen_shorter`` (strictly), ``chosen_longer`` (strictly), ``equal_length``,
    ``length_matched`` (relative gap <= ``tolerance``; equal lengths included)."""
    lc, lr = _arr(len_chosen), _arr(len_rejected)
    return {"chosen_shorter": lc < lr, "chosen_longer": lc > lr, "equal_length": lc == lr,
            "length_matched": relative_length_gap(lc, lr) <= tolerance + 1e-12}


def _rank(x):
    """Ranks 1..n with ties given their average rank (as Spearman's rho needs)."""
    import numpy as np

    x = _arr(x)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    xs = x[order]
    # boundaries of runs of equal values in the sorted order
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(x)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0          # mean of ranks s+1 .. e
    return ranks


def correlation(a, b) -> dict[str, float]:
    """Pearson and Spearman correlation; NaN with fewer than 3 values or a constant input.

    >>> correlation([1, 2, 3, 4], [1, 4, 9, 16])["spearman"]
    1.0
    """
    import numpy as np

    a, b = _arr(a), _arr(b)
    if len(a) != len(b):
        raise ValueError(f"correlation of {len(a)} and {len(b)} values")
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return {"pearson": float("nan"), "spearman": float("nan")}
    return {"pearson": float(np.corrcoef(a, b)[0, 1]), "spearman": float(np.corrcoef(_rank(a), _rank(b))[0, 1])}


def per_100_chars(rewards, lengths) -> float:
    """Length sensitivity: the least-squares slope of reward on length, per 100 characters (NaN if
    the lengths do not vary). A reward that adds 0.5 for every 100 more characters says 0.5.

    >>> round(per_100_chars([0.0, 1.0, 2.0], [100, 200, 300]), 9)
    1.0
    """
    import numpy as np

    r, ln = _arr(rewards), _arr(lengths)
    if len(r) < 2 or ln.std() == 0:
        return float("nan")
    return float(np.polyfit(ln, r, 1)[0] * 100.0)


def expected_calibration_error(probs, labels, n_bins: int = N_CALIBRATION_BINS) -> tuple[float, list[dict]]:
    """ECE = sum_b |B_b|/N * |mean(label in b) - mean(prob in b)| over equal-width bins; also the bins
    (``lo``, ``hi``, ``n``, mean predicted ``conf``, observed ``acc``; ``None`` for an empty bin).

    Bins are ``[lo, hi)`` (the last one ``[lo, 1]``), with edges ``k / n_bins`` computed exactly, so
    that 0.3 falls in ``[0.3, 0.4)`` (``np.linspace`` puts that edge at 0.30000000000000004).
    Off the edges the bins equal scikit-learn's ``calibration_curve(strategy="uniform")`` (tested),
    which is not used because it refuses the 1/2 labels of ties (pairwise calibration scores a tie
    as half right), closes its bins on the right, and returns neither counts nor empty bins, which
    the reliability plots and the ECE need.

    >>> round(expected_calibration_error([0.9, 0.9, 0.1, 0.1], [1, 0, 0, 0])[0], 3)
    0.25
    """
    import numpy as np

    p, y = _arr(probs), _arr(labels)
    edges = np.arange(n_bins + 1) / n_bins
    which = np.clip(np.digitize(p, edges[1:-1], right=False), 0, n_bins - 1)
    ece, bins = 0.0, []
    for b in range(n_bins):
        m = which == b
        if not m.any():
            bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": 0, "conf": None, "acc": None})
            continue
        conf, acc = float(p[m].mean()), float(y[m].mean())
        ece += m.sum() / len(p) * abs(acc - conf)
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(m.sum()), "conf": conf, "acc": acc})
    return float(ece), bins


def pair_calibration(r_chosen, r_rejected, n_bins: int = N_CALIBRATION_BINS) -> tuple[float, list[dict]]:
    """ECE and reliability bins of pairwise predictions, one point per pair.

    The point is the predicted winner's confidence ``max(p, 1 - p)``, ``p = sigmoid(r_c - r_r)``,
    and whether that winner is the chosen response (a tie: 1/2). Only the bins from 0.5 to 1 are
    returned (``n_bins // 2`` of them; the lower ones are empty by construction). Counting both
    orientations of every pair instead mirrors the diagram onto [0, 0.5] and doubles every count;
    the ECE is the same number either way.
    """
    import numpy as np

    pc = sigmoid(_arr(r_chosen) - _arr(r_rejected))          # (n,) P(chosen wins)
    conf = np.maximum(pc, 1 - pc)
    right = np.where(pc > 0.5, 1.0, np.where(pc == 0.5, 0.5, 0.0))
    ece, bins = expected_calibration_error(conf, right, n_bins)
    return ece, bins[len(bins) // 2:]


def _acc(values, groups, mask, *, n_boot: int, seed: int) -> dict[str, Any]:
    """Mean of ``values[mask]`` with its cluster-bootstrap interval (``None`` figures for an empty subset)."""
    import numpy as np

    from jprefs.eval.stats import bootstrap_ci

    idx = np.flatnonzero(mask)
    if not len(idx):
        return {"n": 0, "accuracy": None, "ci95": [None, None]}
    if n_boot == 0:                            # point estimates only
        return {"n": int(len(idx)), "accuracy": float(values[idx].mean()), "ci95": [None, None]}
    g = None if groups is None else [groups[i] for i in idx]
    est, (lo, hi) = bootstrap_ci(values[idx], g, n_boot=n_boot, seed=seed)
    return {"n": int(len(idx)), "accuracy": est, "ci95": [lo, hi]}


def _groups(groups, n: int):
    if groups is None:
        return None
    groups = list(groups)
    if len(groups) != n:
        raise ValueError(f"{len(groups)} groups for {n} pairs")
    return groups


def accuracy_metrics(r_chosen, r_rejected, len_chosen, len_rejected, groups: Sequence[Any] | None = None, *,
                     tolerance: float = LENGTH_MATCH_TOLERANCE, n_boot: int | None = None, seed: int = 0) -> dict:
    """Accuracy, the two length baselines and the length-controlled figures, each with its interval.

    Keys: ``n_pairs``, ``n_prompts``, ``pairwise_accuracy``, ``ci95``, ``length_baseline_accuracy``
    (longer wins) with ``length_baseline_ci95``, ``shorter_baseline_accuracy`` with
    ``shorter_baseline_ci95``, ``accuracy_minus_length_baseline`` with its *paired* interval
    ``accuracy_minus_length_baseline_ci95`` (the model and the longer-wins pick on the same pairs,
    resampled by prompt: above 0 means the model beats the baseline), ``length_controlled_accuracy``
    (chosen shorter) with
    ``length_controlled_ci95`` and ``length_controlled_n``, ``length_matched_accuracy`` with
    ``length_matched_ci95`` and ``length_matched_n``, and ``length_subsets``: for each of
    ``chosen_shorter``, ``chosen_longer``, ``equal_length``, ``length_matched``: ``n``, ``accuracy``,
    ``ci95`` and the longer-wins baseline on that subset (``longer_wins``). An empty subset has
    ``None`` figures. ``n_boot=0``: point estimates only, every interval ``[None, None]`` (the
    bootstrap of :func:`bootstrap_ci` costs ~1 s per 1,000 prompts).
    """
    import numpy as np

    from jprefs.eval.stats import N_BOOT, paired_bootstrap_ci

    n_boot = N_BOOT if n_boot is None else n_boot
    rc, rr, lc, lr = _arr(r_chosen), _arr(r_rejected), _arr(len_chosen), _arr(len_rejected)
    n = len(rc)
    if not (len(rr) == len(lc) == len(lr) == n):
        raise ValueError(f"arrays differ in length: {n}, {len(rr)}, {len(lc)}, {len(lr)}")
    groups = _groups(groups, n)
    if not np.isfinite(rc).all() or not np.isfinite(rr).all():
        raise ValueError("rewards contain NaN or infinity")
    won = wins(rc, rr)                         # (n,) 1 / 0.5 / 0
    longer = wins(lc, lr)                      # the longer-wins pick, scored the same way
    every = np.ones(n, dtype=bool)
    kw = dict(n_boot=n_boot, seed=seed)
    acc, base, short = _acc(won, groups, every, **kw), _acc(longer, groups, every, **kw), \
        _acc(1.0 - longer, groups, every, **kw)
    subsets = {}
    for name, mask in length_subsets(lc, lr, tolerance).items():
        s = _acc(won, groups, mask, **kw)
        s["longer_wins"] = float(longer[mask].mean()) if mask.any() else None
        subsets[name] = s
    cs, lm = subsets["chosen_shorter"], subsets["length_matched"]
    # the model against the longer-wins pick on the same pairs: a paired interval, by prompt
    if n and n_boot:
        d, (dlo, dhi) = paired_bootstrap_ci(won, longer, groups, n_boot=n_boot, seed=seed)
        over = {"accuracy_minus_length_baseline": d, "accuracy_minus_length_baseline_ci95": [dlo, dhi]}
    else:
        over = {"accuracy_minus_length_baseline": float((won - longer).mean()) if n else None,
                "accuracy_minus_length_baseline_ci95": [None, None]}
    return {
        "n_pairs": n,
        "n_prompts": len({str(g) for g in groups}) if groups is not None else n,
        "pairwise_accuracy": acc["accuracy"], "ci95": acc["ci95"],
        "length_baseline_accuracy": base["accuracy"], "length_baseline_ci95": base["ci95"],
        "shorter_baseline_accuracy": short["accuracy"], "shorter_baseline_ci95": short["ci95"],
        **over,
        "length_controlled_accuracy": cs["accuracy"], "length_controlled_ci95": cs["ci95"],
        "length_controlled_n": cs["n"],
        "length_matched_accuracy": lm["accuracy"], "length_matched_ci95": lm["ci95"], "length_matched_n": lm["n"],
        "length_match_tolerance": tolerance,
        "length_subsets": subsets,
    }


def pairwise_metrics(r_chosen, r_rejected, len_chosen, len_rejected, groups: Sequence[Any] | None = None, *,
                     tolerance: float = LENGTH_MATCH_TOLERANCE, n_bins: int = N_CALIBRATION_BINS,
                     n_boot: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Every pairwise figure of one model on one set of pairs (see the module docstring).

    :func:`accuracy_metrics` plus ``mean_reward_chosen``, ``mean_reward_rejected``, ``mean_margin``,
    ``reward_length_corr`` (reward vs length over both responses), ``margin_length_corr``
    (``r_c - r_r`` vs ``len_c - len_r``), ``pair_ece`` and ``reliability_bins`` (0.5 to 1).

    >>> m = pairwise_metrics([2, 0, 1], [1, 1, 1], [8, 2, 5], [2, 8, 5], groups=["a", "b", "c"])
    >>> m["pairwise_accuracy"], m["length_baseline_accuracy"], m["length_controlled_accuracy"]
    (0.5, 0.5, 0.0)
    """
    import numpy as np

    rc, rr, lc, lr = _arr(r_chosen), _arr(r_rejected), _arr(len_chosen), _arr(len_rejected)
    out = accuracy_metrics(rc, rr, lc, lr, groups, tolerance=tolerance, n_boot=n_boot, seed=seed)
    n = len(rc)
    ece, bins = pair_calibration(rc, rr, n_bins) if n else (float("nan"), [])
    out.update({
        "mean_reward_chosen": float(rc.mean()) if n else float("nan"),
        "mean_reward_rejected": float(rr.mean()) if n else float("nan"),
        "mean_margin": float((rc - rr).mean()) if n else float("nan"),
        "reward_length_corr": correlation(np.concatenate([rc, rr]), np.concatenate([lc, lr])),
        "reward_per_100_chars": per_100_chars(np.concatenate([rc, rr]), np.concatenate([lc, lr])),
        "margin_length_corr": correlation(rc - rr, lc - lr),
        "pair_ece": ece,
        "reliability_bins": bins,
    })
    return out


def breakdown(r_chosen, r_rejected, len_chosen, len_rejected, keys: Sequence[Any], groups: Sequence[Any] | None = None,
              *, tolerance: float = LENGTH_MATCH_TOLERANCE, n_boot: int | None = None,
              seed: int = 0) -> dict[str, dict]:
    """:func:`accuracy_metrics` (without the per-subset details) for each value of ``keys`` (one per
    pair: a source, a RewardBench subset, a category), sorted by key.

    >>> b = breakdown([1, 0, 1], [0, 1, 0], [3, 3, 3], [1, 1, 1], keys=["x", "x", "y"])
    >>> b["x"]["pairwise_accuracy"], b["y"]["n_pairs"]
    (0.5, 1)
    """
    import numpy as np

    rc, rr, lc, lr = _arr(r_chosen), _arr(r_rejected), _arr(len_chosen), _arr(len_rejected)
    keys = [str(k) for k in keys]
    if len(keys) != len(rc):
        raise ValueError(f"{len(keys)} keys for {len(rc)} pairs")
    groups = _groups(groups, len(rc))
    out = {}
    for k in sorted(set(keys)):
        idx = np.flatnonzero(np.asarray(keys, dtype=object) == k)
        m = accuracy_metrics(rc[idx], rr[idx], lc[idx], lr[idx], None if groups is None else [groups[i] for i in idx],
                             tolerance=tolerance, n_boot=n_boot, seed=seed)
        m.pop("length_subsets")
        out[k] = m
    return out


def picks(r_chosen, r_rejected):
    """The predicted winner per pair: ``1`` chosen, ``-1`` rejected, ``0`` a tie."""
    import numpy as np

    return np.sign(_arr(r_chosen) - _arr(r_rejected)).astype(int)


def agreement(rc_a, rr_a, rc_b, rr_b, groups: Sequence[Any] | None = None, *, n_boot: int | None = None,
              seed: int = 0) -> dict[str, Any]:
    """The share of pairs where models A and B pick the same winner (a tie is its own pick), with its
    interval, and the paired difference of their accuracies ``acc(A) - acc(B)`` with its interval.

    >>> agreement([1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 1])["agreement"]
    0.6666666666666666
    """
    from jprefs.eval.stats import N_BOOT, bootstrap_ci, paired_bootstrap_ci

    n_boot = N_BOOT if n_boot is None else n_boot
    pa, pb = picks(rc_a, rr_a), picks(rc_b, rr_b)
    if len(pa) != len(pb):
        raise ValueError(f"the two models scored {len(pa)} and {len(pb)} pairs")
    if not len(pa):
        return {"n": 0, "agreement": None, "ci95": [None, None], "accuracy_diff": None,
                "accuracy_diff_ci95": [None, None]}
    groups = _groups(groups, len(pa))
    est, ci = bootstrap_ci((pa == pb).astype(float), groups, n_boot=n_boot, seed=seed)
    d, dci = paired_bootstrap_ci(wins(rc_a, rr_a), wins(rc_b, rr_b), groups, n_boot=n_boot, seed=seed)
    return {"n": int(len(pa)), "agreement": est, "ci95": list(ci), "accuracy_diff": d, "accuracy_diff_ci95": list(dci)}
