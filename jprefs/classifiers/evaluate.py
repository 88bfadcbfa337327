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

Example::

    metrics, arrays = evaluate_pairs(rm, pairs)
    metrics["pairwise_accuracy"], metrics["length_baseline_accuracy"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def expected_calibration_error(probs, labels, n_bins: int = 10) -> tuple[float, list[dict]]:
    """ECE = sum_b |B_b|/N * |mean(label in b) - mean(prob in b)| over equal-width bins; also the bins.

    >>> round(expected_calibration_error([0.9, 0.9, 0.1, 0.1], [1, 0, 0, 0])[0], 3)
    0.25
    """
    import numpy as np

    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    edges = np.linspace(0, 1, n_bins + 1)
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


def _corr(a, b) -> dict[str, float]:
    import numpy as np
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return {"pearson": float("nan"), "spearman": float("nan")}
    return {"pearson": float(np.corrcoef(a, b)[0, 1]), "spearman": float(spearmanr(a, b).statistic)}


def _sigmoid(x):
    import numpy as np

    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def evaluate_pairs(rm, pairs: list, *, batch_size: int = 64, show_progress: bool = False) -> tuple[dict, dict]:
    """Pairwise metrics of a :class:`RewardModel` on preference pairs; returns (metrics, arrays for plots)."""
    import numpy as np

    n = len(pairs)
    prompts = [p.prompt for p in pairs] * 2
    responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    r = rm.score(prompts, responses, batch_size=batch_size, show_progress=show_progress)
    rc, rr = r[:n], r[n:]
    wins = np.where(rc > rr, 1.0, np.where(rc == rr, 0.5, 0.0))
    lc = np.array([len(p.chosen) for p in pairs])
    lr = np.array([len(p.rejected) for p in pairs])
    length_wins = np.where(lc > lr, 1.0, np.where(lc == lr, 0.5, 0.0))
    pc = _sigmoid(rc - rr)                                   # (n,) P(chosen wins)
    # one point per pair: the predicted winner's probability, and whether it is the chosen one (a tie: 1/2)
    conf = np.maximum(pc, 1 - pc)
    right = np.where(pc > 0.5, 1.0, np.where(pc == 0.5, 0.5, 0.0))
    ece, bins = expected_calibration_error(conf, right)
    bins = bins[len(bins) // 2:]                             # confidence >= 0.5: the lower bins are empty
    metrics = {
        "pairs": n,
        "pairwise_accuracy": float(wins.mean()),
        "length_baseline_accuracy": float(length_wins.mean()),
        "mean_reward_chosen": float(rc.mean()),
        "mean_reward_rejected": float(rr.mean()),
        "mean_margin": float((rc - rr).mean()),
        "pair_ece": ece,
        "reward_length_corr": _corr(r, np.concatenate([lc, lr])),
    }
    arrays = {"chosen": rc, "rejected": rr, "calibration_bins": bins,
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


def plot_reliability(bins: list[dict], path: str | Path, *, title: str = "", xlabel: str = "predicted probability",
                     ylabel: str = "observed frequency"):
    """Reliability diagram over ``bins`` (their range sets the x axis): observed frequency per bin against
    the diagonal, with each bin's count written above its bar (``n=…``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = bins[0]["lo"], bins[-1]["hi"]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([lo, hi], [lo, hi], "--", color="grey", lw=1, label="perfect calibration")
    full = [b for b in bins if b["n"]]
    xs = [(b["lo"] + b["hi"]) / 2 for b in full]
    accs = [b["acc"] for b in full]
    ax.bar(xs, accs, width=(hi - lo) / len(bins) * 0.9, alpha=0.7, edgecolor="black", label="observed frequency")
    ax.plot(xs, [b["conf"] for b in full], "o", color="tab:red", ms=3, label="mean predicted (bin)")
    for x, a, b in zip(xs, accs, full):
        ax.text(x, min(a + 0.02, 0.97), f"n={b['n']}", ha="center", fontsize=7)
    ax.set_xlim(lo, hi)
    ax.set_ylim(0, 1)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_rewards(chosen, rejected, path: str | Path, *, title: str = "", labels=("chosen", "rejected")):
    """Overlaid histograms of the rewards of chosen/positive and rejected/negative responses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    allr = np.concatenate([np.asarray(chosen), np.asarray(rejected)])
    edges = np.linspace(float(allr.min()), float(allr.max()) + 1e-6, 41) if len(allr) else 10
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(chosen, bins=edges, alpha=0.6, label=f"{labels[0]} (n={len(chosen)})", color="tab:blue")
    ax.hist(rejected, bins=edges, alpha=0.6, label=f"{labels[1]} (n={len(rejected)})", color="tab:red")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("reward (centred)")
    ax.set_ylabel("count")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def evaluate_and_plot(rm, data: Any, out_dir: str | Path, *, name: str, batch_size: int = 64,
                      plots: bool = True, label_names=("rejected", "chosen")) -> dict:
    """Evaluate ``data`` (:class:`~jprefs.classifiers.data.RMData`); write ``NAME_reliability.png`` and
    ``NAME_rewards.png``. Pairs get pairwise metrics (plus pointwise ones for two-logit models).

    >>> evaluate_and_plot(rm, test, "out/", name="test")["pairwise_accuracy"]     # doctest: +SKIP
    """
    out = Path(out_dir)
    metrics: dict[str, Any] = {}
    to_plot = None
    if data.kind == "records":
        pm, parr = evaluate_pairs(rm, data.pairs(), batch_size=batch_size)
        metrics.update(pm)
        to_plot = (parr, ("chosen", "rejected"))
    ece_key = "pair_ece"
    if data.kind == "binary" or rm.model.config.num_labels == 2:
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
