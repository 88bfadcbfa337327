"""Plots of reward-model evaluations (matplotlib, Agg backend, PNG files); shared with train-rm.

- :func:`plot_reliability`: reliability diagram with the count of each bin;
- :func:`plot_rewards`: overlaid histograms of chosen and rejected rewards;
- :func:`plot_reward_vs_length`: reward against response length, chosen and rejected;
- :func:`plot_leaderboard`: accuracy per model with 95% intervals beside the longer-wins line.

matplotlib is imported inside each function, so importing this module stays light.

Example::

    plot_leaderboard([("rm-a", 0.71, (0.66, 0.76))], "out/leaderboard.png", longer_wins=0.68)
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, *, dpi: int = 120, **kw) -> None:
    """Lay out, write (PNG) and close a figure: the last step of every plot here."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi, **kw)
    plt.close(fig)


def plot_reliability(bins: list[dict], path: str | Path, *, title: str = "", xlabel: str = "predicted probability",
                     ylabel: str = "observed frequency"):
    """Reliability diagram over ``bins`` (their range sets the x axis): observed frequency per bin against
    the diagonal, with each bin's count written above its bar (``n=…``)."""
    plt = pyplot()
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
    save_figure(fig, path)


def plot_rewards(chosen, rejected, path: str | Path, *, title: str = "", labels=("chosen", "rejected")):
    """Overlaid histograms of the rewards of chosen/positive and rejected/negative responses."""
    import numpy as np

    plt = pyplot()
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
    save_figure(fig, path)


def plot_reward_vs_length(r_chosen, r_rejected, len_chosen, len_rejected, path: str | Path, *, title: str = "",
                          xlabel: str = "response length (characters)"):
    """Scatter of reward against length, chosen and rejected responses in two colours (log x axis when
    the lengths span more than a factor of 20)."""
    import numpy as np

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(len_chosen, r_chosen, s=8, alpha=0.5, color="tab:blue", label=f"chosen (n={len(r_chosen)})")
    ax.scatter(len_rejected, r_rejected, s=8, alpha=0.5, color="tab:red", label=f"rejected (n={len(r_rejected)})")
    lens = np.concatenate([np.asarray(len_chosen, float), np.asarray(len_rejected, float)])
    if len(lens) and lens.min() > 0 and lens.max() / lens.min() > 20:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("reward")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_leaderboard(rows: Sequence[tuple[str, float, Sequence[float]]], path: str | Path, *, longer_wins: float | None,
                     title: str = "", extra: Sequence[tuple[str, Sequence[float | None]]] = (),
                     probe: float | None = None):
    """Horizontal bars of accuracy per model (``rows``: label, accuracy, (low, high)) with 95% interval
    whiskers, the longer-wins baseline as a dashed line and chance (0.5) as a dotted one. ``extra``:
    more per-model figures drawn as markers (e.g. ``("length-controlled", [0.41, 0.55])``). ``probe``:
    the probe baseline's accuracy, a dash-dot line."""
    plt = pyplot()
    labels = [r[0] for r in rows]
    ys = list(range(len(rows)))[::-1]                 # the best model on top (rows come sorted)
    fig, ax = plt.subplots(figsize=(7, 2.2 + 0.45 * len(rows)))
    accs = [r[1] for r in rows]
    err = [[max(0.0, a - r[2][0]) for a, r in zip(accs, rows)], [max(0.0, r[2][1] - a) for a, r in zip(accs, rows)]]
    ax.barh(ys, accs, height=0.6, xerr=err, color="tab:blue", alpha=0.7, capsize=3,
            label="pairwise accuracy (95% CI)")
    for (name, vals), marker in zip(extra, "os^vD"):
        pts = [(v, y) for v, y in zip(vals, ys) if v is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker, color="black", ms=5, label=name, ls="none")
    if longer_wins is not None:
        ax.axvline(longer_wins, color="tab:red", ls="--", lw=1.2, label=f"longer wins ({longer_wins:.3f})")
    if probe is not None:
        ax.axvline(probe, color="tab:green", ls="-.", lw=1.2, label=f"probe ({probe:.3f})")
    ax.axvline(0.5, color="grey", ls=":", lw=1, label="chance")
    ax.set_yticks(ys)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18 - 0.6 / (2 + len(rows))), ncol=3)
    save_figure(fig, path, bbox_inches="tight")
