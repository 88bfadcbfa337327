"""The probe baseline: a linear model on FROZEN backbone embeddings plus the log length.

A fine-tuned reward model should beat what a linear read-out of the pretrained backbone and the
response length already give. Per response ``x`` of prompt ``p``::

    score(p, x) = w . z(p, x) + a * log(len_chars(x)),      z = (e(p, x) - mean) / scale

``e(p, x)`` is the frozen backbone's embedding of the input a reward model sees (the sentence
pair of :func:`jprefs.classifiers.inputs.encode_pairs`, same ``input_prefix``, ``max_length``,
``max_prompt_length``), pooled as the reward model pools: ``mean`` = masked mean of the last
hidden states (e5), ``cls`` = the ``[CLS]`` hidden state. ``(w, a)`` are fit by L2-regularised
logistic regression on training pairs, ``P(chosen > rejected) = sigmoid(score_c - score_r)``:
features ``[(e_c - e_r) / scale, log len_c - log len_r]``, no intercept (the model is symmetric;
both orientations are fit, ``c - r`` with label 1 and ``r - c`` with label 0). ``scale`` is the
per-dimension RMS of ``e_c - e_r`` over the training pairs (the standardisation of the difference
features; their mean is 0 over both orientations); ``mean`` (the mean training embedding) only
centres the per-response scores and cancels in every difference. The L2 strength is chosen from
a grid by grouped cross-validation on the training pairs (folds by prompt, never eval data),
by held-out log-loss; ``cv_accuracy`` is the held-out accuracy at the chosen strength. The length
weight is penalised :data:`LENGTH_PENALTY` (0.01) times as much as an embedding weight: one strength
tuned for hundreds of noisy embedding dimensions would otherwise shrink the length feature too.

Being linear, it gives a per-response score, so :func:`jprefs.eval.metrics.accuracy_metrics`
applies to it exactly as to a reward model.

Example::

    emb = Embedder("e5-small-offline", input_prefix="query: ")
    probe = fit_probe(train_pairs, emb, seed=0)
    s_c, s_r = probe_pair_scores(probe, eval_pairs, emb)
    accuracy_metrics(s_c, s_r, [len(p.chosen) for p in eval_pairs], [len(p.rejected) for p in eval_pairs])
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

from jprefs.errors import ConfigError, DataError

FORMAT = "jprefs-length-probe/1"
# L2 strengths (objective: mean log-loss + l2/2 * |w|^2 on standardised features), half-decades 1e-3..1e2
L2_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0, 30.0, 100.0)
POOLINGS = ("mean", "cls")
# The length weight's L2 penalty relative to an embedding weight's. One strength for 384 noisy embedding
# dimensions would also shrink the one feature known to matter towards 0 (the probe would then do worse
# than longer-wins by construction); 0.01 leaves it nearly free and still finite on separable data.
LENGTH_PENALTY = 0.01


def log_length(lengths) -> Any:
    """``log(max(len, 1))``: an empty response counts as one character (log 0 is not a feature).

    >>> log_length([1, 0, 100]).round(3).tolist()
    [0.0, 0.0, 4.605]
    """
    import numpy as np

    return np.log(np.maximum(np.asarray(lengths, dtype=np.float64), 1.0))


@dataclass
class LengthProbe:
    """A fitted probe: per-response ``score = w . (e - mean) / scale + length_weight * log(len)``."""

    weights: list[float]               # (H,) on standardised embedding dimensions
    length_weight: float               # per unit of log(characters): > 0 means longer scores higher
    mean: list[float]                  # (H,) mean training embedding (centres the scores; cancels in pairs)
    scale: list[float]                 # (H,) RMS of e_c - e_r over the training pairs
    l2: float                          # chosen L2 strength (mean log-loss + l2/2 |w|^2)
    backbone: str
    pooling: str
    input_prefix: str
    max_length: int
    max_prompt_length: int
    cv_accuracy: float                 # grouped-CV accuracy at the chosen l2 (training data only); NaN: no CV
    cv: list[dict] = field(default_factory=list)     # per l2: held-out accuracy and log-loss
    n_train_pairs: int = 0
    n_train_prompts: int = 0
    folds: int = 0

    def score(self, embeddings, lengths):
        """Per-response scores ``(N,)`` float64 of embeddings ``(N, H)`` and lengths in characters ``(N,)``."""
        import numpy as np

        e = np.asarray(embeddings, dtype=np.float64)
        if e.ndim != 2 or e.shape[1] != len(self.weights):
            raise ValueError(f"embeddings of shape {e.shape}; this probe expects (N, {len(self.weights)})")
        z = (e - np.asarray(self.mean)) / np.asarray(self.scale)          # (N, H)
        return z @ np.asarray(self.weights) + self.length_weight * log_length(lengths)

    def to_dict(self) -> dict:
        """JSON-safe (NaN ``cv_accuracy`` becomes ``None``)."""
        d = {"format": FORMAT, **asdict(self)}
        if d["cv_accuracy"] != d["cv_accuracy"]:
            d["cv_accuracy"] = None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LengthProbe":
        if d.get("format", FORMAT) != FORMAT:
            raise DataError(f"not a length probe: format {d.get('format')!r}, expected {FORMAT!r}")
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if kw.get("cv_accuracy") is None:
            kw["cv_accuracy"] = float("nan")
        return cls(**kw)


class Embedder:
    """The frozen backbone, loaded once: ``embed(prompts, responses) -> (N, H)`` float32.

    Inputs are encoded as a reward model encodes them (:func:`encode_pairs`), run in length-sorted
    batches under ``torch.inference_mode()`` and pooled (``mean``: masked mean of the last hidden
    states; ``cls``: the first token's last hidden state). Identical (prompt, response) inputs are
    embedded once.

    >>> Embedder("e5-small-offline", input_prefix="query: ").embed(["質問"], ["回答"]).shape   # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, backbone: str, *, pooling: str = "mean", input_prefix: str = "", max_length: int = 512,
                 max_prompt_length: int = 128, device: str | None = None, batch_size: int = 32):
        if pooling not in POOLINGS:
            raise ConfigError(f"probe pooling {pooling!r} is not one of {list(POOLINGS)}")
        if batch_size < 1:
            raise ConfigError(f"probe batch_size must be >= 1, got {batch_size}")
        if max_prompt_length < 0 or max_length < 16:
            raise ConfigError(f"probe max_length must be >= 16 and max_prompt_length >= 0, got {max_length}, "
                              f"{max_prompt_length}")
        from transformers import AutoModel, AutoTokenizer

        from jprefs.classifiers.backbones import resolve_backbone
        from jprefs.classifiers.inputs import model_max_length
        from jprefs.classifiers.reward_model import default_device
        from jprefs.errors import JprefsError
        from jprefs.hub import hub_model

        src = resolve_backbone(backbone)
        try:
            with hub_model(src):
                self.tokenizer = AutoTokenizer.from_pretrained(src, trust_remote_code=False)
                try:        # the pooler is unused (and missing from e5): do not build a random one
                    self.model = AutoModel.from_pretrained(src, trust_remote_code=False, use_safetensors=True,
                                                           add_pooling_layer=False)
                except TypeError:
                    self.model = AutoModel.from_pretrained(src, trust_remote_code=False, use_safetensors=True)
        except (OSError, ValueError) as e:
            raise JprefsError(f"cannot load probe backbone {backbone!r} ({src}): {e}\n  fix: --probe-backbone "
                              f"e5-small-offline (offline) or a local transformers model folder") from e
        self.backbone, self.pooling, self.input_prefix = backbone, pooling, input_prefix
        self.max_length = model_max_length(self.model.config, max_length)
        self.max_prompt_length = max_prompt_length
        self.batch_size = batch_size
        self.device = device or default_device()
        self.model.to(self.device).eval()

    # Embed through the frozen-layer memo (jprefs.classifiers.layercache): the states of the lower
    # layers that a train-rm run (or a scoring with RewardModel.frozen_layer_cache) of the same backbone
    # left in this process are reused and only the top N layers run. 0: the whole backbone runs.
    frozen_layer_cache: int = 0

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def embed(self, prompts: Sequence[Any] | None, responses: Sequence[str], *, desc: str = "probe embed"):
        """Embeddings ``(N, H)`` float32, in input order."""
        import numpy as np
        import torch

        from jprefs.classifiers.inputs import _check_lists, collate, encode_pairs, length_batches, prompt_to_text
        from jprefs.classifiers.reward_model import CPU_MAX_TOKENS
        from jprefs.progress import progress

        prompts, responses = _check_lists(prompts, responses)
        texts = [prompt_to_text(p, index=i) for i, p in enumerate(prompts)]
        # identical inputs once: judged sets pair each answer with several others
        first: dict[tuple, int] = {}
        where = [first.setdefault((t, r), len(first)) for t, r in zip(texts, responses)]
        uniq = list(first)
        out = np.zeros((len(uniq), self.hidden_size), dtype=np.float32)
        if uniq:
            enc = encode_pairs(self.tokenizer, [t for t, _ in uniq], [r for _, r in uniq], max_length=self.max_length,
                               max_prompt_length=self.max_prompt_length, prefix=self.input_prefix)
            on_cpu = torch.device(self.device).type == "cpu"
            batches = length_batches(enc.lengths, batch_size=self.batch_size,
                                     max_tokens=CPU_MAX_TOKENS if on_cpu else None)
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
            states, top = None, nullcontext()
            if self.frozen_layer_cache:
                from jprefs.classifiers.layercache import lower_states, pad_states, top_only

                states = lower_states(self.model, enc, self.frozen_layer_cache, pad)
                top = top_only(self.model, self.frozen_layer_cache)
            with progress(total=sum(enc.lengths), desc=desc, unit="tok") as bar, torch.inference_mode(), top:
                for idx in batches:
                    if states is not None:
                        x, mask = pad_states(states, idx)
                        mask = mask.to(self.device)
                        h = self.model(inputs_embeds=x.to(self.device), attention_mask=mask).last_hidden_state
                        out[idx] = self._pooled(h, mask).float().cpu().numpy()
                    else:
                        batch = {k: v.to(self.device) for k, v in collate(enc, idx, pad).items()}
                        mask = batch["attention_mask"]
                        out[idx] = self._pool(batch).float().cpu().numpy()
                    bar.update(int(mask.sum()))
        return out[where] if where else out

    def _pool(self, batch):
        mask = batch["attention_mask"]
        inputs = dict(batch)
        if bool(mask.all()):
            inputs.pop("attention_mask")         # no padding: the unmasked attention path
        h = self.model(**inputs).last_hidden_state                     # (B, T, H)
        return self._pooled(h, mask)

    def _pooled(self, h, mask):
        if self.pooling == "cls":
            return h[:, 0]
        m = mask.unsqueeze(-1).to(h.dtype)                                # (B, T, 1)
        return (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


# ------------------------------------------------------------------ fitting


def grouped_folds(groups: Sequence[Any], folds: int, seed: int = 0):
    """Fold index per item, ``(N,)`` int: whole groups (prompts) are dealt round-robin to ``folds`` folds
    after a seeded shuffle, largest groups first, so no group is in two folds and the folds are balanced.

    >>> grouped_folds(["a", "a", "b", "c"], 2).tolist()
    [0, 0, 1, 1]
    """
    import numpy as np

    keys = [str(g) for g in groups]
    uniq = sorted(set(keys))
    rng = np.random.default_rng(seed)
    order = [uniq[i] for i in rng.permutation(len(uniq))]
    size = {g: 0 for g in uniq}
    for k in keys:
        size[k] += 1
    order.sort(key=lambda g: -size[g])              # stable: ties keep the shuffled order
    load = [0] * folds
    fold_of: dict[str, int] = {}
    for g in order:                                 # each group to the currently smallest fold
        f = min(range(folds), key=lambda i: (load[i], i))
        fold_of[g] = f
        load[f] += size[g]
    return np.array([fold_of[k] for k in keys], dtype=np.int64)


def _standardise(dz):
    """Per-column RMS of the (symmetric) difference features; 1 for a constant-zero column."""
    import numpy as np

    s = np.sqrt(np.mean(np.square(dz), axis=0))
    return np.where(s > 1e-12, s, 1.0)


def _fit_logistic(x, l2: float, length_penalty: float = LENGTH_PENALTY, penalties=None):
    """Weights ``(D,)`` of ``min mean_i log(1 + exp(-x_i . w)) + l2/2 (|w[:-1]|^2 + length_penalty w[-1]^2)``
    on both orientations of ``x`` ``(n, D)`` (``x`` with label 1, ``-x`` with label 0: the no-intercept
    symmetric model; the last column is the length feature). ``penalties`` ``(D,)``: every column's
    relative penalty instead (``l2/2 sum_j penalties[j] w[j]^2``; ``length_penalty`` is then unused)."""
    import numpy as np

    # a column multiplied by c has weight w / c, penalised (w / c)^2: c = 1 / sqrt(its penalty)
    if penalties is None:
        c = np.ones(x.shape[1])
        c[-1] = 1.0 / math.sqrt(length_penalty)
    else:
        c = 1.0 / np.sqrt(np.asarray(penalties, dtype=np.float64))
    return _newton_logistic(np.asarray(x, dtype=np.float64) * c, l2) * c


def _newton_logistic(x, l2: float, max_iter: int = 100):
    """``argmin_w mean_i log(1 + exp(-x_i . w)) + l2/2 |w|^2`` by damped Newton steps (backtracking line search).

    The problem is strictly convex (``l2 > 0``), so this is the same optimum sklearn's lbfgs reaches, to
    its tolerance; with ~400 correlated embedding columns and a small ``l2`` Newton needs 4-7 steps where
    lbfgs needs hundreds (a whole probe fit 12.7-17.3x faster on the judged sets' pairs,
    ``bench/probe_solver_bench.py``).
    Stops when the Newton decrement ``g . H^-1 g / 2`` is below 1e-20 (the objective is then within that
    of its minimum; the gradient ~1e-10).
    """
    import numpy as np

    n, d = x.shape
    if n == 0:
        raise ValueError("no pairs to fit the logistic model on")
    if not np.isfinite(x).all():
        raise ValueError("the logistic model's features hold NaN or infinite values")
    w = np.zeros(d)

    def objective(w):
        return float(np.mean(np.logaddexp(0.0, -(x @ w))) + 0.5 * l2 * (w @ w))

    f = objective(w)
    for _ in range(max_iter):
        p = 0.5 * (1.0 - np.tanh(0.5 * (x @ w)))          # sigma(-x . w), stable for any margin
        g = -(x.T @ p) / n + l2 * w
        h = (x.T * (p * (1.0 - p))) @ x / n
        h[np.diag_indices(d)] += l2
        step = np.linalg.solve(h, g)
        dec = float(g @ step)
        if dec / 2 < 1e-20:
            break
        if dec < 1e-10:              # inside the quadratic region: full steps (the objective's rounding
            w = w - step             # would make a line search's test meaningless here)
            f = objective(w)
            continue
        t = 1.0
        while True:
            w_new = w - t * step
            f_new = objective(w_new)
            if f_new <= f - 0.25 * t * dec:
                break
            t *= 0.5
            if t < 1e-12:                               # no step lowers it: the optimum to rounding
                return w
        w, f = w_new, f_new
    return w


def _pair_features(dc, dl):
    """Standardised difference features ``(n, H + 1)``, and the column scales ``(H + 1,)``."""
    import numpy as np

    x = np.concatenate([dc, dl[:, None]], axis=1)
    s = _standardise(x)
    return x / s, s


def _heldout(x_tr, x_te, l2):
    """Held-out (wins, log-loss) per test pair, with the scaling fit on the training part only."""
    import numpy as np

    s = _standardise(x_tr)
    w = _fit_logistic(x_tr / s, l2)
    m = (x_te / s) @ w                                              # (n_te,) score_c - score_r
    won = np.where(m > 0, 1.0, np.where(m == 0, 0.5, 0.0))
    return won, np.logaddexp(0.0, -m)


def fit_probe(pairs, embedder: Embedder, *, seed: int = 0, l2_grid: Sequence[float] | None = None,
              folds: int = 5) -> LengthProbe:
    """Fit the probe on training ``pairs`` (:class:`PreferencePair`), choosing l2 by grouped CV.

    >>> probe = fit_probe(train_pairs, Embedder("e5-small-offline", input_prefix="query: "))   # doctest: +SKIP
    >>> probe.l2, probe.cv_accuracy, probe.length_weight                                        # doctest: +SKIP
    """
    emb_c, emb_r = embed_pairs(pairs, embedder, desc="probe embed (train)")
    return fit_probe_arrays(emb_c, emb_r, [len(p.chosen) for p in pairs], [len(p.rejected) for p in pairs],
                            _groups(pairs), seed=seed, l2_grid=l2_grid, folds=folds, meta=embedder_meta(embedder))


def embedder_meta(embedder: Embedder) -> dict:
    """The embedder settings a :class:`LengthProbe` records (``fit_probe_arrays``' ``meta``)."""
    return dict(backbone=embedder.backbone, pooling=embedder.pooling, input_prefix=embedder.input_prefix,
                max_length=embedder.max_length, max_prompt_length=embedder.max_prompt_length)


def out_of_fold_scores(emb_chosen, emb_rejected, len_chosen, len_rejected, groups: Sequence[Any], folds: int,
                       seed: int = 0):
    """Each pair's probe scores from a probe fit without its fold (``folds`` folds by group,
    :func:`grouped_folds`; each fold's probe chooses its own L2 by grouped CV on the other folds, as
    :func:`fit_probe_arrays` does): ``(s_chosen, s_rejected)`` ``(n,)`` each, what a stack fit on training
    pairs sees of the probe as it scores new questions."""
    import numpy as np

    ec, er = np.asarray(emb_chosen), np.asarray(emb_rejected)
    lc, lr = np.asarray(len_chosen), np.asarray(len_rejected)
    fold = grouped_folds(groups, folds, seed)
    sc, sr = np.zeros(len(ec)), np.zeros(len(ec))
    for f in range(folds):
        te = fold == f
        pr = fit_probe_arrays(ec[~te], er[~te], lc[~te], lr[~te], [g for g, t in zip(groups, te) if not t], seed=seed)
        sc[te], sr[te] = pr.score(ec[te], lc[te]), pr.score(er[te], lr[te])
    return sc, sr


def _groups(pairs) -> list[str]:
    from jprefs.classifiers.data import group_key

    return [group_key(p) for p in pairs]


def fit_probe_arrays(emb_chosen, emb_rejected, len_chosen, len_rejected, groups: Sequence[Any], *, seed: int = 0,
                     l2_grid: Sequence[float] | None = None, folds: int = 5, meta: dict | None = None) -> LengthProbe:
    """:func:`fit_probe` on embeddings ``(n, H)`` already computed (what the tests drive directly)."""
    import numpy as np

    ec, er = np.asarray(emb_chosen, np.float64), np.asarray(emb_rejected, np.float64)
    n = len(ec)
    if n == 0:
        raise DataError("the probe has no training pairs", fix="pass the reward model's training pairs")
    if er.shape != ec.shape or len(len_chosen) != n or len(len_rejected) != n or len(groups) != n:
        raise ValueError(f"arrays differ: {ec.shape}, {er.shape}, {len(len_chosen)}, {len(len_rejected)}, "
                         f"{len(groups)}")
    grid = sorted(float(x) for x in (l2_grid if l2_grid is not None else L2_GRID))
    if not grid or min(grid) <= 0:
        raise ConfigError(f"l2_grid must hold positive values, got {list(l2_grid or [])}")
    dl = log_length(len_chosen) - log_length(len_rejected)            # (n,)
    x_raw = np.concatenate([ec - er, dl[:, None]], axis=1)             # (n, H + 1) difference features
    n_groups = len({str(g) for g in groups})
    k = min(int(folds), n_groups)
    cv, best = [], None
    if k >= 2:
        fold = grouped_folds(groups, k, seed)
        for l2 in grid:
            won, loss = np.zeros(n), np.zeros(n)
            for f in range(k):
                te = fold == f
                won[te], loss[te] = _heldout(x_raw[~te], x_raw[te], l2)
            cv.append({"l2": l2, "accuracy": float(won.mean()), "log_loss": float(loss.mean())})
        # lowest held-out log-loss; an exact tie goes to the stronger penalty (the simpler model)
        best = min(cv, key=lambda r: (r["log_loss"], -r["l2"]))
        l2, cv_acc = best["l2"], best["accuracy"]
    else:                                        # one prompt: nothing to cross-validate over
        l2, cv_acc = 1.0 if 1.0 in grid else grid[len(grid) // 2], float("nan")
    x, s = _pair_features(x_raw[:, :-1], dl)
    w = _fit_logistic(x, l2)
    h = ec.shape[1]
    mean = np.concatenate([ec, er]).mean(axis=0)
    meta = meta or {}
    return LengthProbe(weights=[float(v) for v in w[:h]], length_weight=float(w[h] / s[h]),
                       mean=[float(v) for v in mean], scale=[float(v) for v in s[:h]], l2=l2,
                       backbone=str(meta.get("backbone", "")), pooling=str(meta.get("pooling", "mean")),
                       input_prefix=str(meta.get("input_prefix", "")), max_length=int(meta.get("max_length", 512)),
                       max_prompt_length=int(meta.get("max_prompt_length", 128)), cv_accuracy=cv_acc, cv=cv,
                       n_train_pairs=n, n_train_prompts=n_groups, folds=k if k >= 2 else 0)


def embed_pairs(pairs, embedder: Embedder, *, desc: str = "probe embed"):
    """Embeddings of the chosen and of the rejected responses, ``(n, H)`` each (one embedding pass)."""
    n = len(pairs)
    e = embedder.embed([p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs],
                       desc=desc)
    return e[:n], e[n:]


def probe_pair_scores(probe: LengthProbe, pairs, embedder: Embedder):
    """Scores of the chosen and of the rejected responses of ``pairs``: ``(s_chosen, s_rejected)``, ``(n,)`` each."""
    if len(probe.weights) != embedder.hidden_size:
        raise ConfigError(f"the probe has {len(probe.weights)} weights; the embedder's backbone "
                          f"{embedder.backbone!r} gives {embedder.hidden_size} dimensions")
    ec, er = embed_pairs(pairs, embedder)
    return (probe.score(ec, [len(p.chosen) for p in pairs]), probe.score(er, [len(p.rejected) for p in pairs]))
