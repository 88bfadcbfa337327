"""Reward-model evaluation: pairwise accuracy beside the length baseline, pointwise metrics, calibration, plots.

- Pairs (any objective): accuracy of ``r(chosen) > r(rejected)`` (ties count 1/2)
  and the *length baseline* on the same pairs (the longer response wins; equal
  lengths count 1/2), the mean reward margin, and the correlation of the reward
  with response length (a reward that mostly measures length is a bad reward).
- Binary examples: accuracy, F1, ROC-AUC of ``P(chosen) = softmax(logits)[chosen]``.
- Calibration: expected calibration error (10 equal-width bins) and a
  reliability diagram with the count of each bin. Pairs: each pair counted once,
  at the confidence of the model's predicted winner ``max(p, 1 - p)`` with
  ``p = sigmoid(r_c - r_r)``, against how often that winner is the chosen
  response (the usual confidence diagram; bins from 0.5 to 1). Counting both
  orientations of every pair, as jprefs once did, mirrored this diagram onto
  [0, 0.5] and doubled every count; the ECE is the same number either way.
  Two-logit models are plotted pointwise: ``P(chosen label)`` of each response.

The pairwise figures, the ECE and the plots are computed by :mod:`jprefs.eval.metrics` and
:mod:`jprefs.eval.plots`, the same code ``jprefs eval rm`` runs; this module scores the
responses and picks what train-rm's ``metrics.json`` reports.

Example::

    metrics, arrays = evaluate_pairs(rm, pairs)
    metrics["pairwise_accuracy"], metrics["length_baseline_accuracy"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# One implementation of each metric and plot, shared with `jprefs eval rm` (light modules: numpy and
# matplotlib are imported inside their functions). Re-exported here for train-rm's callers.
from jprefs.eval.metrics import correlation as _corr
from jprefs.eval.metrics import expected_calibration_error, sigmoid as _sigmoid  # noqa: F401
from jprefs.eval.plots import plot_reliability, plot_rewards  # noqa: F401


def evaluate_pairs(rm, pairs: list, *, batch_size: int = 64, show_progress: bool = False,
                   intervals: bool = True, seed: int = 0, head: str | None = None,
                   logits=None) -> tuple[dict, dict]:
    """Pairwise metrics of a :class:`RewardModel` on preference pairs; returns (metrics, arrays for plots).

    The figures come from :func:`jprefs.eval.metrics.pairwise_metrics` (the implementation
    ``jprefs eval rm`` uses); lengths are characters. ``intervals``: add the 95% interval of the
    accuracy, resampled by prompt (``pairwise_accuracy_ci95``; off for the per-epoch evaluations).
    ``head``: which reward of a multi-head model; ``logits``: the ``(2N, C)`` logits of the chosen then
    the rejected responses, when the caller has them already (no second forward pass).
    """
    n = len(pairs)
    prompts = [p.prompt for p in pairs] * 2
    responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    if logits is None:
        kw = {"head": head} if head else {}       # duck-typed scorers without heads stay usable
        r = rm.score(prompts, responses, batch_size=batch_size, show_progress=show_progress, **kw)
    else:
        r = rm.rewards_from_logits(logits, head=head)
    return pair_figures(r[:n], r[n:], pairs, intervals=intervals, seed=seed)


def pair_figures(rc, rr, pairs: list, *, intervals: bool = True, seed: int = 0) -> tuple[dict, dict]:
    """:func:`evaluate_pairs` on rewards already computed: ``rc`` / ``rr`` ``(n,)`` of the chosen and the
    rejected responses of ``pairs`` (what a stack's out-of-fold scores are scored with)."""
    from jprefs.data.schema import prompt_key
    from jprefs.eval.metrics import pairwise_metrics, wins
    from jprefs.eval.stats import bootstrap_ci

    n = len(pairs)
    groups = [prompt_key(p.prompt) for p in pairs]
    m = pairwise_metrics(rc, rr, [len(p.chosen) for p in pairs], [len(p.rejected) for p in pairs], groups=groups,
                         n_boot=0)
    metrics = {
        "pairs": n,
        "pairwise_accuracy": m["pairwise_accuracy"],
        "pairwise_accuracy_ci95": list(bootstrap_ci(wins(rc, rr), groups, seed=seed)[1]) if intervals and n else None,
        "length_baseline_accuracy": m["length_baseline_accuracy"],
        # accuracy on the pairs whose chosen response is the shorter one (a length detector scores 0)
        "length_controlled_accuracy": m["length_controlled_accuracy"],
        "length_controlled_pairs": m["length_controlled_n"],
        "mean_reward_chosen": m["mean_reward_chosen"],
        "mean_reward_rejected": m["mean_reward_rejected"],
        "mean_margin": m["mean_margin"],
        "pair_ece": m["pair_ece"],
        "reward_length_corr": m["reward_length_corr"],
        "reward_per_100_chars": m["reward_per_100_chars"],
    }
    arrays = {"chosen": rc, "rejected": rr, "calibration_bins": m["reliability_bins"],
              "calibration_title": "confidence of the predicted winner (one point per pair)",
              "calibration_ylabel": "fraction where it is the chosen response"}
    return metrics, arrays


def evaluate_binary(rm, examples: list, *, batch_size: int = 64, show_progress: bool = False) -> tuple[dict, dict]:
    """Pointwise metrics (accuracy, F1, ROC-AUC, ECE) of a two-logit model on labelled examples."""
    import numpy as np
    import torch
    from sklearn.metrics import f1_score, roc_auc_score

    prompts = [e.prompt for e in examples]
    responses = [e.response for e in examples]
    y = np.array([e.label for e in examples])
    logits = rm.logits(prompts, responses, batch_size=batch_size, show_progress=show_progress)
    from jprefs.classifiers.reward_model import logits_to_reward

    raw = logits_to_reward(torch.from_numpy(logits), rm.config.chosen_index).numpy()
    r = raw - np.float32(rm.config.center)
    # P(chosen): sigmoid of the log-odds (= softmax over two logits); one-logit heads are not probabilities
    p = _sigmoid(raw)
    pred = (p > 0.5).astype(int)
    ece, bins = expected_calibration_error(p, y)
    metrics = {
        "examples": len(examples),
        "accuracy": float((pred == y).mean()),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, raw)) if len(set(y.tolist())) == 2 else float("nan"),
        "ece": ece,
        "positive_rate": float(y.mean()),
        "majority_baseline_accuracy": float(max(y.mean(), 1 - y.mean())),
        "reward_length_corr": _corr(r, [len(t) for t in responses]),
    }
    arrays = {"chosen": r[y == 1], "rejected": r[y == 0], "calibration_bins": bins,
              "calibration_title": "predicted P(label 1) (one point per example)",
              "calibration_ylabel": "fraction labelled 1"}
    return metrics, arrays


def length_stats(m: dict) -> dict:
    """The length figures of one head's pairwise metrics, as ``RewardConfig.length_stats`` keeps them."""
    return {"per_100_chars": m["reward_per_100_chars"], "length_controlled_accuracy": m["length_controlled_accuracy"],
            "length_controlled_pairs": m["length_controlled_pairs"],
            "spearman_length": m["reward_length_corr"]["spearman"], "pairwise_accuracy": m["pairwise_accuracy"],
            "length_baseline_accuracy": m["length_baseline_accuracy"], "pairs": m["pairs"]}


def pair_logits(rm, pairs: list, *, batch_size: int = 64):
    """``(2N, C)`` logits of the chosen then the rejected responses of ``pairs`` (the layout
    :func:`evaluate_pairs` takes as ``logits``)."""
    return rm.logits([p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs],
                     batch_size=batch_size)


def evaluate_heads(rm, pairs: list, *, batch_size: int = 64, logits=None) -> dict:
    """Pairwise metrics of every head of a multi-head model (``rm.heads``), one dict per head, from one
    forward pass (or from ``logits`` of :func:`pair_logits`)."""
    if logits is None:
        logits = pair_logits(rm, pairs, batch_size=batch_size)
    return {h: evaluate_pairs(rm, pairs, head=h, logits=logits)[0] for h in rm.heads}


def evaluate_and_plot(rm, data: Any, out_dir: str | Path, *, name: str, batch_size: int = 64,
                      plots: bool = True, label_names=("rejected", "chosen"), intervals: bool = True) -> dict:
    """Evaluate ``data`` (:class:`~jprefs.classifiers.data.RMData`); write ``NAME_reliability.png`` and
    ``NAME_rewards.png``. Pairs get pairwise metrics (plus pointwise ones for two-logit models).

    >>> evaluate_and_plot(rm, test, "out/", name="test")["pairwise_accuracy"]     # doctest: +SKIP
    """
    out = Path(out_dir)
    metrics: dict[str, Any] = {}
    to_plot = None
    if data.kind == "records":
        pm, parr = evaluate_pairs(rm, data.pairs(), batch_size=batch_size, intervals=intervals)
        metrics.update(pm)
        to_plot = (parr, ("chosen", "rejected"))
    ece_key = "pair_ece"
    if data.kind == "binary" or (rm.model.config.num_labels == 2 and not getattr(rm.config, "heads", None)):
        bm, barr = evaluate_binary(rm, data.binary(), batch_size=batch_size)
        prefix = "pointwise_" if data.kind == "records" else ""
        metrics.update({prefix + k: v for k, v in bm.items()})
        # a two-logit model's probability is pointwise (P(chosen) of one response): calibrate that
        ece_key = prefix + "ece"
        if data.kind == "binary":
            to_plot = (barr, (f"label 1 ({label_names[1]})", f"label 0 ({label_names[0]})"))
        else:
            to_plot = ({**to_plot[0], **{k: barr[k] for k in barr if k.startswith("calibration")}}, to_plot[1])
    if to_plot is not None:
        # the diagram's numbers, counts included, whether or not it is drawn
        arr = to_plot[0]
        metrics["reliability"] = {"of": arr["calibration_title"], "ece_key": ece_key,
                                  "bins": [b for b in arr["calibration_bins"] if b["n"]]}
    if plots and to_plot is not None:
        arr, labels = to_plot
        out.mkdir(parents=True, exist_ok=True)
        rel, dist = out / f"{name}_reliability.png", out / f"{name}_rewards.png"
        n = sum(b["n"] for b in arr["calibration_bins"])
        plot_reliability(arr["calibration_bins"], rel, xlabel=arr["calibration_title"],
                         ylabel=arr["calibration_ylabel"],
                         title=f"{name}: reliability ({ece_key} {metrics[ece_key]:.3f}, n={n})")
        plot_rewards(arr["chosen"], arr["rejected"], dist, labels=labels, title=f"{name}: reward distribution")
        metrics["plots"] = [rel.name, dist.name]
    return metrics
