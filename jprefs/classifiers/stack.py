"""Stacked rewards: a fine-tuned reward model, the frozen-embedding probe and zero-shot relevance,
weighted by a logistic model fit on the held-out split.

No single reward we train on Japanese judged pairs both beats longer-wins and is right where the
better answer is the shorter one; three signals with different failure modes together do
(BENCHMARKS.md, "Fourth round"): the fine-tuned reward (for the ODIN recipe its length-free quality
head), the probe (frozen embeddings + log length: :mod:`jprefs.classifiers.probe`, which carries the
length the judges do reward) and the e5 retrieval relevance of the answer to its question
(:mod:`jprefs.classifiers.relevance`, nearly length-free and trained on far more data). Per response::

    stack(p, x) = w_reward * reward(p, x) + w_probe * probe(p, x) + w_rel * relevance(p, x) - offset

``w`` is the no-intercept symmetric logistic model ``P(chosen > rejected) = sigmoid(stack_c - stack_r)``
on the held-out pairs' score differences (L2 1 on RMS-standardised columns: the probe's own fit,
:func:`jprefs.classifiers.probe._fit_logistic`). The reward model and the probe are fit on the
training split only, so the held-out split is new to both when the weights are fit on it; ``offset``
centres the stack on the held-out responses. Because the weights are fit on the held-out split, its
reported figures are *cross-fitted*: each of ``stack_folds`` folds of held-out prompts is scored with
weights fit on the other folds (:func:`cross_fitted`), never with weights that saw its labels.

``jprefs train-rm RECIPE stack=[probe,relevance] -o OUT`` trains the reward model into ``OUT/reward/``
(a complete train-rm run: resumable, its own card and metrics), fits the probe on the training pairs
(``OUT/probe.json``), then writes ``OUT/jprefs_stack.json`` (weights, offset, figures), ``OUT/metrics.json``
and a card. ``RewardModel.from_pretrained(OUT)`` returns a :class:`RewardStack`: ``score`` is the stack;
``score(head=...)`` also gives the reward model's own heads; ``components`` gives each signal apart.

A third part, ``features``, adds the 13 question-free surface features of
:mod:`jprefs.classifiers.textfeatures` (length, script, loops, truncation, politeness, refusals, prompt
coverage), one weight each.

**Frozen stacks** (``stack_reward=false``): the parts alone, nothing fine-tuned, no ``reward/`` folder.
The weights are then fit on the *training* pairs, with the probe's column out of fold (``stack_folds``
folds by prompt: each pair's probe score comes from a probe fit without its question), so the held-out
split and the test file are plain readings. Fit on two GPT-4-judged Japanese sets and read on a third,
probe + relevance + features beat the fine-tuned stack on every held-out set (BENCHMARKS.md, seventh
round): a fine-tuned reward learns its few hundred training questions, frozen parts cannot.
``jprefs train-rm classifiers/recipes/e5-small-ja-frozen-stack.yaml -o OUT`` trains one in minutes.

Scoring cost: the reward model, the frozen backbone (probe) and two short retrieval passes
(relevance) run per call; about 2-3x one reward model (a frozen stack: the frozen passes alone).

Example::

    stack = RewardModel.from_pretrained("out/ja-rm")          # a folder with jprefs_stack.json
    stack.score(prompts, responses), stack.components(prompts, responses)["relevance"]
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from jprefs.errors import ConfigError, JprefsError

STACK_NAME = "jprefs_stack.json"
STACK_FORMAT = "jprefs-stack/1"
PARTS = ("probe", "relevance", "features")   # what `stack=[...]` takes; the reward model too unless stack_reward=false
REWARD_DIR = "reward"
PROBE_NAME = "probe.json"
STACK_FOLDS = 5


def is_stack(path: str | os.PathLike) -> bool:
    return (Path(path) / STACK_NAME).is_file()


def stack_weights(d, l2: float = 1.0, penalties=None):
    """Weights ``(D,)`` of the no-intercept symmetric logistic model on pair differences ``d`` ``(n, D)``
    (chosen minus rejected): mean log-loss + ``l2``/2 sum(penalties * w^2) on RMS-standardised columns
    (``penalties`` 1 per column by default), returned in the raw units of ``d`` (so ``x @ w`` scores
    raw per-response features ``x``)."""
    import numpy as np

    from jprefs.classifiers.probe import _fit_logistic, _standardise

    d = np.asarray(d, dtype=np.float64)
    if d.ndim != 2 or not len(d):
        raise ValueError(f"stack_weights needs (n, D) differences with n >= 1, got shape {d.shape}")
    if not np.isfinite(d).all():
        raise ValueError("stack features contain NaN or infinity")
    sd = _standardise(d)
    pen = np.ones(d.shape[1]) if penalties is None else np.asarray(penalties, dtype=np.float64)
    return _fit_logistic(d / sd, l2, penalties=pen) / sd


def cross_fitted(chosen, rejected, groups: Sequence[Any], folds: int = STACK_FOLDS, seed: int = 0, *,
                 return_folds: bool = False):
    """Out-of-fold stack scores of per-response features ``chosen`` / ``rejected`` ``(n, D)``: the pairs
    are dealt to ``folds`` folds by group (prompt, :func:`grouped_folds`), and each fold is scored with
    :func:`stack_weights` fit on the other folds' pairs only, less that fit's offset (the mean score of
    the responses it was fit on, as ``RewardStack.offset`` is for the full fit: without it each fold's
    rewards sat at another level, which left the pairs' order alone but bent the pooled per-100-characters
    slope and Spearman with length). Returns ``(s_chosen, s_rejected)`` ``(n,)`` each and the per-fold
    weights ``(folds, D)``; ``return_folds``: also each pair's fold ``(n,)``."""
    import numpy as np

    from jprefs.classifiers.probe import grouped_folds

    xc, xr = np.asarray(chosen, np.float64), np.asarray(rejected, np.float64)
    k = min(int(folds), len({str(g) for g in groups}))
    if k < 2:
        raise ConfigError(f"cross-fitting the stack needs held-out pairs of at least 2 prompts, got {k}\n"
                          f"  fix: hold out more prompts (eval_fraction, eval_data)")
    fold = grouped_folds(groups, k, seed)
    sc, sr, ws = np.zeros(len(xc)), np.zeros(len(xc)), []
    for f in range(k):
        te = fold == f
        w = stack_weights(xc[~te] - xr[~te])
        off = np.concatenate([xc[~te], xr[~te]]).mean(0) @ w
        sc[te], sr[te] = xc[te] @ w - off, xr[te] @ w - off
        ws.append(w)
    return (sc, sr, np.stack(ws), fold) if return_folds else (sc, sr, np.stack(ws))


def column_matrix(comps: dict, names: Sequence[str]):
    """The ``(N, D)`` float64 matrix of the parts ``names`` of a components dict (each ``(N,)``, or
    ``(N, k)`` for ``features``), side by side in ``names``' order."""
    import numpy as np

    cols = [np.asarray(comps[k], np.float64) for k in names]
    return np.concatenate([c[:, None] if c.ndim == 1 else c for c in cols], axis=1)


def weights_from_vector(names: Sequence[str], w) -> dict:
    """The inverse of :meth:`RewardStack.weight_vector`: ``w`` ``(D,)`` -> ``{part: weight}`` with the
    ``features`` weights as ``{feature: weight}``."""
    from jprefs.classifiers.textfeatures import FEATURES

    out, at = {}, 0
    for k in names:
        if k == "features":
            out[k] = {f: float(x) for f, x in zip(FEATURES, w[at:at + len(FEATURES)])}
            at += len(FEATURES)
        else:
            out[k] = float(w[at])
            at += 1
    if at != len(w):
        raise ValueError(f"{len(w)} weights for the columns of {list(names)} ({at})")
    return out


class RewardStack:
    """A reward model stacked with the probe and/or relevance (see the module docstring).

    ``weights``: component name -> weight (``reward`` always, ``probe`` and ``relevance`` as trained);
    ``offset``: subtracted from every stack score. ``embedder``: the frozen backbone
    (:class:`jprefs.classifiers.probe.Embedder`) the probe and relevance share.
    """

    # >0: the reward model's lower N layers are the backbone's own (train_layers=N, frozen embeddings),
    # so the probe reuses their states through the frozen-layer memo. Training sets it; scoring leaves
    # it 0 (the memo keeps every sequence it sees: right for a fixed training set, a leak in RL).
    frozen_layer_cache: int = 0

    def __init__(self, base, weights: dict[str, float], *, offset: float = 0.0, probe=None, embedder=None,
                 reward_head: str | None = None, spec: dict | None = None):
        unknown = [k for k in weights if k not in ("reward", *PARTS)]
        if unknown or ("reward" in weights) != (base is not None) or not (set(weights) & {"reward", *PARTS}):
            raise ConfigError(f"stack weights {sorted(weights)}: need 'reward' (when there is a reward model, "
                              f"and only then) and any of {list(PARTS)}")
        if "features" in weights:
            from jprefs.classifiers.textfeatures import FEATURES

            fw = weights["features"]
            if not isinstance(fw, dict) or sorted(fw) != sorted(FEATURES):
                raise ConfigError(f"stack weights: 'features' must map each of {list(FEATURES)} to a weight, got "
                                  f"{sorted(fw) if isinstance(fw, dict) else type(fw).__name__}")
        if "probe" in weights and probe is None:
            raise ConfigError("a stack with a probe weight needs the fitted probe")
        if (set(weights) & set(PARTS)) and embedder is None:
            raise ConfigError("a stack with probe or relevance needs the frozen backbone (embedder)")
        if base is not None:
            base._head(reward_head)                 # an unknown head fails here
        elif reward_head:
            raise ConfigError("a frozen stack (no reward model) has no reward head to choose")
        self.base, self.weights, self.offset = base, dict(weights), float(offset)
        self.probe, self.embedder, self.reward_head = probe, embedder, reward_head or None
        self.spec = dict(spec or {})
        self._relevance = None

    # the reward model stands for the stack where a caller reads the model's settings; a frozen stack
    # (no reward model) describes its inputs with a RewardConfig of the frozen backbone
    @property
    def config(self):
        if self.base is not None:
            return self.base.config
        from jprefs.classifiers.reward_model import RewardConfig

        e = self.embedder
        return RewardConfig(objective="stack", input="pair", chosen_index=0, center=self.offset,
                            max_length=e.max_length, max_prompt_length=e.max_prompt_length, pooling=e.pooling,
                            input_prefix=e.input_prefix, base_model=e.backbone,
                            length_stats={"stack": self.length_sensitivity} if self.length_sensitivity else {})

    @property
    def model(self):
        return self.base.model if self.base is not None else self.embedder.model

    @property
    def tokenizer(self):
        return self.base.tokenizer if self.base is not None else self.embedder.tokenizer

    @property
    def frozen(self) -> bool:
        """True for a stack of frozen parts only (``stack_reward=false``): no fine-tuned reward model."""
        return self.base is None

    @property
    def names(self) -> list[str]:
        return [k for k in ("reward", *PARTS) if k in self.weights]

    @property
    def columns(self) -> list[str]:
        """The stack's columns in :meth:`combine`'s order: each part, ``features`` as ``features.NAME`` each."""
        from jprefs.classifiers.textfeatures import FEATURES

        return [c for k in self.names for c in ([f"features.{f}" for f in FEATURES] if k == "features" else [k])]

    def _part_weights(self, name: str) -> list[float]:
        """The weights of one part's columns (13 for ``features``, in FEATURES order)."""
        from jprefs.classifiers.textfeatures import FEATURES

        w = self.weights[name]
        return [w[f] for f in FEATURES] if name == "features" else [w]

    def weight_vector(self):
        """The weights ``(D,)`` float64 of :attr:`columns`."""
        import numpy as np

        return np.array([x for k in self.names for x in self._part_weights(k)], np.float64)

    @property
    def heads(self) -> list[str]:
        """``stack`` (the default) and the reward model's own heads (``reward`` for a one-reward model);
        a frozen stack has ``stack`` alone."""
        return ["stack", *(self.base.heads or ["reward"])] if self.base is not None else ["stack"]

    @property
    def length_sensitivity(self) -> dict | None:
        """The stack's length figures on the held-out split (cross-fitted; see :meth:`RewardModel.length_sensitivity`)."""
        return self.spec.get("length_stats")

    def length_stats_for(self, head: str | None = None) -> dict | None:
        """The length figures of ``head``: the stack's own for None / ``stack``, else the reward model's
        for its head (measured on the reward model's held-out split); None if not measured."""
        h = self._check_head(head)
        if h is None:
            ls = self.length_sensitivity
            return {"measured_on": "held-out pairs", **ls} if ls else None
        return self.base.length_stats_for(None if h == "reward" else h)

    def _check_head(self, head: str | None) -> str | None:
        """None for the stack itself, else one of the reward model's heads; unknown heads raise."""
        if head in (None, "", "stack"):
            return None
        if head not in self.heads:
            raise ConfigError(f"head {head!r} is not one of this reward stack's heads {self.heads}")
        return head

    _head = _check_head          # the name RewardModel's callers (jprefs rl) check a head with

    @property
    def relevance(self):
        if self._relevance is None and "relevance" in self.weights:
            from jprefs.classifiers.relevance import Relevance

            self._relevance = Relevance(embedder=self.embedder, max_length=self.spec.get("relevance_max_length", 512))
        return self._relevance

    def components(self, prompts: Sequence[Any] | str | None, responses: Sequence[str], batch_size: int = 32,
                   show_progress: bool = False, base_heads: Sequence[str] = ()) -> dict:
        """Each component's per-response score ``(N,)`` float64: ``reward`` (the reward model's
        ``reward_head``, centred), ``probe``, ``relevance``; ``features`` is ``(N, 13)``
        (:data:`jprefs.classifiers.textfeatures.FEATURES` in order). ``base_heads``: also the reward
        model's own heads, from the same forward pass (``{"heads": {head: rewards}}`` in the result)."""
        import numpy as np

        responses = list(responses)
        if isinstance(prompts, str):
            prompts = [prompts] * len(responses)
        if prompts is None:
            raise ConfigError("a reward stack scores answers to questions: pass the prompts (relevance and the "
                              "probe read them)")
        prompts = list(prompts)
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
        k = self.frozen_layer_cache
        out: dict = {}
        if self.base is not None:
            saved = self.base.frozen_layer_cache
            self.base.frozen_layer_cache = k
            own = self.reward_head or "reward"
            try:     # the reward model (one model or a seed ensemble) gives every head from one pass
                by = self.base.score_heads(prompts, responses, list(dict.fromkeys([own, *base_heads])),
                                           batch_size=batch_size, show_progress=show_progress)
                out["reward"] = np.asarray(by[own], dtype=np.float64)
                if base_heads:
                    out["heads"] = {h: by[h] for h in base_heads}
            finally:
                self.base.frozen_layer_cache = saved
        elif base_heads:
            raise ConfigError(f"heads {list(base_heads)}: a frozen stack has no reward model's heads")
        if "probe" in self.weights:
            e = self.embedder
            saved = e.frozen_layer_cache
            e.frozen_layer_cache = k
            try:
                emb = e.embed(prompts, responses, desc="stack probe")
            finally:
                e.frozen_layer_cache = saved
            out["probe"] = self.probe.score(emb, [len(r) for r in responses])
        if "relevance" in self.weights:
            out["relevance"] = self.relevance.score(prompts, responses, desc="stack relevance")
        if "features" in self.weights:
            from jprefs.classifiers.textfeatures import feature_matrix

            out["features"] = feature_matrix(prompts, responses)
        return out

    def matrix(self, comps: dict):
        """:meth:`components`' output as the ``(N, D)`` float64 matrix of :attr:`columns`."""
        return column_matrix(comps, self.names)

    def combine(self, comps: dict):
        """The stack score ``(N,)`` float32 of :meth:`components`' output."""
        import numpy as np

        return np.asarray(self.matrix(comps) @ self.weight_vector() - self.offset, dtype=np.float32)

    def part_score(self, name: str, comps: dict):
        """One part alone as a reward ``(N,)`` float64 (higher is better): the component itself, and for
        ``features`` their weighted sum (the features' share of the stack)."""
        import numpy as np

        if name == "features":
            return np.asarray(comps["features"], np.float64) @ np.array(self._part_weights("features"))
        return np.asarray(comps[name], np.float64)

    def score(self, prompts: Sequence[Any] | str | None, responses: Sequence[str], batch_size: int = 32,
              max_tokens: int | None = None, show_progress: bool = False, head: str | None = None):
        """The stack's rewards (float32, input order); ``head``: one of the reward model's own heads instead."""
        name = self._check_head(head)
        if name is not None:
            return self.base.score(prompts, responses, batch_size=batch_size, max_tokens=max_tokens,
                                   show_progress=show_progress, head=None if name == "reward" else name)
        import numpy as np

        if not len(responses):
            return np.zeros(0, dtype=np.float32)
        return self.combine(self.components(prompts, responses, batch_size=batch_size, show_progress=show_progress))

    def score_heads(self, prompts, responses, heads: Sequence[str], batch_size: int = 32,
                    show_progress: bool = False) -> dict:
        """``{name: rewards}`` for several names at the cost of one stack score: ``stack`` (the stack),
        the reward model's own heads (one forward pass of the reward model for all of them) and the
        stack's parts ``probe`` / ``relevance`` / ``features`` alone (:meth:`part_score`)."""
        import numpy as np

        parts = [h for h in heads if h in self.names and h != "reward"]
        base = [self._check_head(h) for h in heads if h not in parts and h not in (None, "", "stack")]
        responses = list(responses)
        if not responses:
            return {h: np.zeros(0, dtype=np.float32) for h in heads}
        comps = self.components(prompts, responses, batch_size=batch_size, show_progress=show_progress,
                                base_heads=base)
        out = {}
        for h in heads:
            if h in (None, "", "stack"):
                out[h] = self.combine(comps)
            elif h in parts:
                out[h] = np.asarray(self.part_score(h, comps), dtype=np.float32)
            else:
                out[h] = np.asarray(comps["heads"][h], dtype=np.float32)
        return out

    def logits(self, *a, **k):
        raise JprefsError("a reward stack has no logits of its own: use score()"
                          + (", or .base for the reward model's" if self.base is not None else ""))

    def as_reward_func(self, batch_size: int = 32, use_prompt: bool | None = None,
                       head: str | None = None) -> Callable[..., list[float]]:
        """A trl reward function giving the stack's reward (see :meth:`RewardModel.as_reward_func`)."""
        from jprefs.classifiers.inputs import completion_to_text
        from jprefs.data.schema import parse_cue_prompt

        name = self._check_head(head)
        if name is not None:
            return self.base.as_reward_func(batch_size=batch_size, use_prompt=use_prompt,
                                            head=None if name == "reward" else name)
        if use_prompt is False:
            raise ConfigError("a reward stack needs the prompts (use_prompt=False drops them)")

        def reward_func(prompts=None, completions=None, **kwargs) -> list[float]:
            if completions is None or prompts is None:
                raise JprefsError("the stack's reward function needs prompts and completions")
            responses = [completion_to_text(c) for c in completions]
            ps = [[m.to_dict() for m in msgs] if (msgs := parse_cue_prompt(p)) is not None else p for p in prompts]
            return [float(x) for x in self.score(ps, responses, batch_size=batch_size)]

        reward_func.__name__ = "jprefs_stack_reward"
        return reward_func

    # ------------------------------------------------------------ files

    def stack_file(self) -> dict:
        return {**self.spec, "format": STACK_FORMAT, "reward": REWARD_DIR if self.base is not None else None,
                "reward_head": self.reward_head,
                "weights": dict(self.weights), "offset": self.offset,
                "probe": PROBE_NAME if self.probe is not None else None,
                "backbone": self.embedder.backbone if self.embedder is not None else None,
                "embedder": None if self.embedder is None else {
                    "pooling": self.embedder.pooling, "input_prefix": self.embedder.input_prefix,
                    "max_length": self.embedder.max_length, "max_prompt_length": self.embedder.max_prompt_length}}

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """The reward model into ``path/reward``, the probe and the stack file beside it."""
        from jprefs.data.io import atomic_write_json

        out = Path(path)
        if self.base is not None and (out / REWARD_DIR).resolve() != Path(self.base_dir or "").resolve():
            self.base.save_pretrained(out / REWARD_DIR)
        if self.probe is not None:
            atomic_write_json(out / PROBE_NAME, self.probe.to_dict())
        atomic_write_json(out / STACK_NAME, self.stack_file())
        return out

    base_dir: str | None = None     # where the reward model was loaded from (save skips rewriting it there)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | None = None, **kw) -> "RewardStack":
        from jprefs.classifiers.probe import Embedder, LengthProbe
        from jprefs.classifiers.reward_model import RewardModel

        p = Path(path)
        f = p / STACK_NAME
        fix = f"re-run the train-rm command with stack=[...] that wrote {p}"
        try:
            spec = json.loads(f.read_text(encoding="utf-8"))
            if spec.get("format") != STACK_FORMAT:
                raise ValueError(f"format {spec.get('format')!r}, expected {STACK_FORMAT!r}")
            weights = {str(k): ({str(a): float(b) for a, b in dict(v).items()} if k == "features" else float(v))
                       for k, v in dict(spec["weights"]).items()}
            flat = [x for v in weights.values() for x in (v.values() if isinstance(v, dict) else [v])]
            if not all(v == v and abs(v) != float("inf") for v in flat):
                raise ValueError(f"non-finite weights {weights}")
            offset = float(spec.get("offset", 0.0))
            if offset != offset or abs(offset) == float("inf"):
                raise ValueError(f"non-finite offset {offset}")
            sub = str(spec.get("reward") or REWARD_DIR)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise JprefsError(f"{f}: not a jprefs reward-stack file ({e}).\n  fix: {fix}") from e
        if "features" in weights:
            from jprefs.classifiers.textfeatures import FEATURES

            if sorted(weights["features"]) != sorted(FEATURES):
                raise JprefsError(f"{f}: the stack was fit on the features {sorted(weights['features'])}; this jprefs "
                                  f"computes {sorted(FEATURES)}.\n  fix: {fix} with this jprefs version")
        base = base_dir = None
        if "reward" in weights:
            base_dir = (p / sub).resolve()
            if p.resolve() not in base_dir.parents:
                raise JprefsError(f"{f}: the reward model {sub!r} is outside the stack folder; it is a sub-folder")
            base = RewardModel.from_pretrained(base_dir, device=device, **kw)
        probe = emb = None
        if set(weights) & set(PARTS):
            e = spec.get("embedder") or {}
            backbone = str(spec.get("backbone") or "")
            if spec.get("backbone_dir"):      # a local backbone that `jprefs push` put in the repo, beside the stack
                bdir = (p / str(spec["backbone_dir"])).resolve()
                if p.resolve() not in bdir.parents:
                    raise JprefsError(f"{f}: the backbone folder {spec['backbone_dir']!r} is outside the stack folder")
                backbone = str(bdir)
            emb = Embedder(backbone, pooling=e.get("pooling", "mean"),
                           input_prefix=e.get("input_prefix", ""), max_length=int(e.get("max_length", 512)),
                           max_prompt_length=int(e.get("max_prompt_length", 128)), device=device)
        if "probe" in weights:
            pf = p / str(spec.get("probe") or PROBE_NAME)
            try:
                probe = LengthProbe.from_dict(json.loads(pf.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError) as e:
                raise JprefsError(f"{pf}: cannot read the stack's probe ({e}).\n  fix: {fix}") from e
            if len(probe.weights) != emb.hidden_size:
                raise JprefsError(f"{pf}: the probe has {len(probe.weights)} weights; the backbone "
                                  f"{emb.backbone!r} gives {emb.hidden_size} dimensions.\n  fix: {fix}")
        st = cls(base, weights, offset=offset, probe=probe, embedder=emb, reward_head=spec.get("reward_head"),
                 spec={k: v for k, v in spec.items() if k in ("length_stats", "relevance_max_length", "fit")})
        st.base_dir = str(base_dir) if base_dir is not None else None
        return st

    def __repr__(self) -> str:
        w = _weights_text(self.weights)
        return f"RewardStack({w}; {self.base!r})" if self.base is not None else \
            f"RewardStack({w}; frozen {self.embedder.backbone})"


# ------------------------------------------------------------------ training


def _shared_layers(cfg) -> int:
    """The lower layers the reward model shares with its backbone (see :attr:`RewardStack.frozen_layer_cache`)."""
    return int(cfg.train_layers) if cfg.train_layers and cfg.freeze_embeddings and not cfg.lora \
        and cfg.cache_frozen_layers else 0


def _file_pairs(data) -> list:
    """``[(label, pairs)]``: each training file's pairs (one entry ``(None, pairs)`` for one file)."""
    parts = data.parts if len(data.parts) > 1 else [(None, data)]
    return [(label, part.pairs()) for label, part in parts]


def _figures(sc, sr, pairs, comps=None) -> dict:
    """The stack's pairwise figures (``pair_figures`` plus the paired interval of accuracy minus
    longer-wins) and, with ``comps`` (name -> (chosen, rejected)), each component's alone."""
    from jprefs.classifiers.evaluate import pair_figures
    from jprefs.data.schema import prompt_key
    from jprefs.eval.metrics import accuracy_metrics

    m = pair_figures(sc, sr, pairs)[0]
    lens = [len(p.chosen) for p in pairs], [len(p.rejected) for p in pairs]
    a = accuracy_metrics(sc, sr, *lens, [prompt_key(p.prompt) for p in pairs])
    m["accuracy_minus_length_baseline"] = a["accuracy_minus_length_baseline"]
    m["accuracy_minus_length_baseline_ci95"] = a["accuracy_minus_length_baseline_ci95"]
    if comps:
        m["components"] = {}
        for k, (c, r) in comps.items():
            x = pair_figures(c, r, pairs, intervals=False)[0]
            m["components"][k] = {key: x[key] for key in ("pairwise_accuracy", "length_controlled_accuracy",
                                                           "reward_length_corr")}
    return m


def _done_before(out: Path, cfg, log) -> dict | None:
    """The saved metrics when ``out`` holds this stack already (same config); None when it holds no
    finished stack; a stack trained with another config raises."""
    from jprefs.classifiers.train import RESUME_IGNORE
    from jprefs.config import config_diff

    if not (is_stack(out) and (out / "metrics.json").is_file()):
        return None
    prev = json.loads((out / STACK_NAME).read_text(encoding="utf-8")).get("config")
    if prev is None:        # the stack file is written twice, its config last: a run stopped in between
        log(f"{out} holds an unfinished stack (no config in {STACK_NAME}): fitting it again")
        return None
    # the keys a train-rm resume ignores (the -o spelling, plots, batch size of scoring) change nothing
    diff = config_diff(prev, cfg, ignore=RESUME_IGNORE) if isinstance(prev, dict) else "(a config that is not a mapping)"
    if not diff:
        log(f"{out} holds this stack already (same config): nothing to do")
        return json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    raise ConfigError(f"{out} holds a reward stack trained with another config: {diff}\n"
                      f"  fix: pass a new -o folder, or delete this one to retrain")


def _score_files(st: RewardStack, data, batch_size: int) -> list:
    """Per file of ``data``: ``(label, pairs, {part: (chosen, rejected)})`` of every component of ``st``."""
    res = []
    for label, pairs in _file_pairs(data):
        n = len(pairs)
        comps = st.components([p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs],
                              batch_size=batch_size, show_progress=True)
        res.append((label, pairs, {c: (v[:n], v[n:]) for c, v in comps.items()}))
    return res


def _joined(scored: list) -> tuple[list, dict]:
    """All files of :func:`_score_files`' output as one: ``(pairs, {part: (chosen, rejected)})``."""
    import numpy as np

    pairs = [p for _, ps, _ in scored for p in ps]
    names = scored[0][2].keys()
    return pairs, {c: tuple(np.concatenate([f[c][i] for _, _, f in scored]) for i in (0, 1)) for c in names}


def _alone(st: RewardStack, comps: dict) -> dict:
    """Each part of ``comps`` (``{part: (chosen, rejected)}``) alone as a reward (:meth:`RewardStack.part_score`)."""
    return {c: (st.part_score(c, {c: comps[c][0]}), st.part_score(c, {c: comps[c][1]})) for c in st.names}


def _read(st: RewardStack, scored: list, key: str, metrics: dict) -> tuple:
    """The stack's figures with its fitted weights on scored files: ``metrics[key]`` (all files) and
    ``metrics[key + "_by_file"]`` (each file) when there are several. Returns the joined files'
    ``(pairs, s_chosen, s_rejected)``."""
    def stack_scores(comps):
        return tuple(st.combine({c: comps[c][i] for c in st.names}) for i in (0, 1))

    pairs, comps = _joined(scored)
    sc, sr = stack_scores(comps)
    metrics[key] = _figures(sc, sr, pairs, _alone(st, comps))
    if len(scored) > 1:
        metrics[f"{key}_by_file"] = {label: _figures(*stack_scores(f), ps, _alone(st, f)) for label, ps, f in scored}
    return pairs, sc, sr


def _finish(st: RewardStack, cfg, out: Path, metrics: dict, figures: dict, sc, sr, pairs, measured_on: str,
            title: str) -> None:
    """Length figures (from ``figures``, the stack's figures on ``pairs``), plots of ``sc`` / ``sr``, the
    stack folder, metrics, card and (last: the run's marker) the stack file."""
    from jprefs.classifiers.evaluate import length_stats
    from jprefs.config import config_dict
    from jprefs.data.io import atomic_write_json, atomic_write_text

    st.spec["length_stats"] = {**length_stats(figures), "measured_on": measured_on}
    metrics["length_sensitivity"] = st.spec["length_stats"]
    if cfg.plots:
        metrics["plots"] = _plot(sc, sr, pairs, out, title)
    st.save_pretrained(out)
    spec = json.loads((out / STACK_NAME).read_text(encoding="utf-8"))
    atomic_write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "README.md", _card(cfg, metrics))
    atomic_write_json(out / STACK_NAME, {**spec, "config": config_dict(cfg)})     # written last: the run's marker


def train_stack(cfg, *, log=print) -> dict[str, Any]:
    """``train-rm ... stack=[...]``: the reward model into ``OUT/reward``, the probe on the training pairs,
    the stack's weights on the held-out split; figures cross-fitted on the held-out split, and on the
    test file (weights from the whole held-out split) when one is given. ``stack_reward=false``:
    :func:`train_frozen_stack`."""
    if not cfg.stack_reward:
        return train_frozen_stack(cfg, log=log)
    import dataclasses

    import numpy as np

    from jprefs.classifiers.layercache import clear_memo
    from jprefs.classifiers.probe import Embedder, fit_probe
    from jprefs.classifiers.reward_model import RewardModel
    from jprefs.classifiers.textfeatures import FEATURES
    from jprefs.classifiers.train import _load_split, train_reward_model
    from jprefs.data.schema import prompt_key
    from jprefs.runlock import run_lock

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with run_lock(out, "jprefs train-rm (stack)", log=log):
        done = _done_before(out, cfg, log)
        if done is not None:
            return done
        rcfg = dataclasses.replace(cfg, stack=[], stack_head="", output_dir=str(out / REWARD_DIR))
        try:
            if rcfg.ensemble_seeds:         # a seed ensemble as the stack's reward (its mean reward)
                from jprefs.classifiers.ensemble import train_ensemble

                rm_metrics = train_ensemble(rcfg, log=log, keep_layer_cache=True)
            else:
                rm_metrics = train_reward_model(rcfg, log=log, keep_layer_cache=True)
            train, ev, test = _load_split(rcfg, lambda m: None)     # the split the reward model trained on
            if not ev.records:
                raise ConfigError("stack=[...] fits its weights on the held-out split, and this run has none\n"
                                  "  fix: set eval_fraction > 0 or eval_data, or stack_reward=false (a frozen "
                                  "stack fits its weights on the training pairs)")
            k = _shared_layers(cfg)
            base = RewardModel.from_pretrained(out / REWARD_DIR)
            if rcfg.ensemble_seeds:         # each member's own metrics (its epoch choice, its data counts)
                members = {n: json.loads((out / REWARD_DIR / n / "metrics.json").read_text(encoding="utf-8"))
                           for n in base.names}
                chosen = _epochs_chosen(members, cfg.epochs)
                data = next(iter(members.values())).get("data")
            else:
                chosen, data = _epoch_chosen(rm_metrics, cfg.epochs), rm_metrics.get("data")
            emb = Embedder(cfg.backbone, pooling=cfg.pooling, input_prefix=cfg.input_prefix,
                           max_length=cfg.max_length, max_prompt_length=cfg.max_prompt_length)
            emb.frozen_layer_cache = k
            probe = None
            if "probe" in cfg.stack:
                log("stack: fitting the probe on the training pairs")
                probe = fit_probe(train.pairs(), emb, seed=0)     # fold seed 0, as the probe baseline
            names = ["reward", *(p for p in PARTS if p in cfg.stack)]
            st = RewardStack(base, _unit_weights(names), probe=probe, embedder=emb, reward_head=cfg.stack_head or None)
            st.frozen_layer_cache = k
            st.base_dir = str((out / REWARD_DIR).resolve())

            log("stack: scoring the held-out split with every component")
            held = _score_files(st, ev, cfg.eval_batch_size)
            pairs, comps = _joined(held)
            xc = column_matrix({c: comps[c][0] for c in names}, names)
            xr = column_matrix({c: comps[c][1] for c in names}, names)
            w = stack_weights(xc - xr)
            st.weights = weights_from_vector(names, w)
            st.offset = float(np.concatenate([xc, xr]).mean(0) @ w)
            groups = [prompt_key(p.prompt) for p in pairs]
            folds = cfg.stack_folds
            oc, orr, fold_w, fold = cross_fitted(xc, xr, groups, folds=folds, return_folds=True)
            # each part alone on the held-out split; `features` are a weighted sum, and their weights were fit
            # on this split: out of fold too (with the full fit's weights, noise features read 0.62, not 0.5)
            alone = _alone(st, comps)
            if "features" in names:
                at = st.columns.index(f"features.{FEATURES[0]}")
                fw = fold_w[fold][:, at:at + len(FEATURES)]                  # (n, 13) each pair's fold weights
                alone["features"] = tuple((np.asarray(comps["features"][i], np.float64) * fw).sum(1) for i in (0, 1))
            metrics: dict[str, Any] = {"stack": names, "frozen": False, "weights": st.weights, "offset": st.offset,
                                       "reward_head": cfg.stack_head or None,
                                       "fold_weights": {c: fold_w[:, i].tolist() for i, c in enumerate(st.columns)},
                                       "probe": _probe_info(probe),
                                       "reward_model": {s: rm_metrics.get(s) for s in ("eval", "test")},
                                       # the reward model's epoch, when chosen, was chosen on this same split
                                       "reward_epoch_selected_on_eval": chosen,
                                       "data": data}
            metrics["eval"] = {**_figures(oc, orr, pairs, alone), "cross_fitted_folds": int(fold_w.shape[0])}
            if len(held) > 1:
                by, at = {}, 0
                for label, ps, f in held:
                    sl = slice(at, at + len(ps))
                    by[label] = _figures(oc[sl], orr[sl], ps, {c: (a[sl], b[sl]) for c, (a, b) in alone.items()})
                    at += len(ps)
                metrics["eval_by_file"] = by
            if test is not None and test.records:
                log("stack: scoring the test file")
                _read(st, _score_files(st, test, cfg.eval_batch_size), "test", metrics)
            st.spec["fit"] = {"l2": 1.0, "on": f"held-out split ({len(pairs)} pairs)", "folds": folds}
            _finish(st, cfg, out, metrics, metrics["eval"], oc, orr, pairs,
                    f"held-out split, cross-fitted ({len(pairs)} pairs)", "stack, held-out (cross-fitted)")
        finally:
            clear_memo()
        log(f"saved a reward stack ({_weights_text(st.weights)}) to {out}")
        return metrics


def _unit_weights(names) -> dict:
    from jprefs.classifiers.textfeatures import FEATURES

    return {k: (dict.fromkeys(FEATURES, 1.0) if k == "features" else 1.0) for k in names}


def _weights_text(weights: dict) -> str:
    return ", ".join(f"{k} {v:.3g}" if not isinstance(v, dict) else f"{k} ({len(v)} weights)"
                     for k, v in weights.items())


def _probe_info(probe) -> dict | None:
    return None if probe is None else {"l2": probe.l2, "cv_accuracy": probe.cv_accuracy,
                                       "length_weight": probe.length_weight}


def train_frozen_stack(cfg, *, log=print) -> dict[str, Any]:
    """``train-rm ... stack=[...] stack_reward=false``: a stack of frozen parts, nothing fine-tuned.

    The probe is fit on the training pairs; the stack's weights on the same training pairs, with the
    probe's column *out of fold* (``stack_folds`` folds by prompt: each pair's probe score comes from
    a probe fit without its prompt, so the weights see the probe as it scores new questions).
    Relevance and the surface features are fit on nothing. The held-out split and the test file are
    then read with those weights: a clean figure (nothing was chosen or fit on them), and with
    ``eval_fraction=0`` every pair trains. The fine-tuning keys (epochs, lr, debias, ...) are unused.
    Minutes on CPU: one pass of the frozen backbone over the answers, two short retrieval passes."""
    import time

    import numpy as np

    from jprefs.classifiers.data import group_key
    from jprefs.classifiers.probe import Embedder, embedder_meta, fit_probe_arrays, out_of_fold_scores
    from jprefs.classifiers.textfeatures import feature_matrix
    from jprefs.classifiers.train import _load_split, _source_licenses, _write_split_files
    from jprefs.runlock import run_lock

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with run_lock(out, "jprefs train-rm (frozen stack)", log=log):
        done = _done_before(out, cfg, log)
        if done is not None:
            return done
        train, ev, test = _load_split(cfg, log)
        rejects = _write_split_files(cfg, out, train, ev, test)
        pairs = train.pairs()
        n = len(pairs)
        groups = [group_key(p) for p in pairs]
        k = min(int(cfg.stack_folds), len(set(groups)))
        if k < 2:
            raise ConfigError(f"a frozen stack fits its weights on training pairs of at least 2 prompts, got "
                              f"{len(set(groups))}\n  fix: give more training prompts")
        emb = Embedder(cfg.backbone, pooling=cfg.pooling, input_prefix=cfg.input_prefix, max_length=cfg.max_length,
                       max_prompt_length=cfg.max_prompt_length)
        prompts = [p.prompt for p in pairs] * 2
        texts = [p.chosen for p in pairs] + [p.rejected for p in pairs]
        lc, lr = np.array([len(p.chosen) for p in pairs]), np.array([len(p.rejected) for p in pairs])
        names = [p for p in PARTS if p in cfg.stack]
        fit_cols, score_cols, probe = {}, {}, None
        if "probe" in names:
            log(f"frozen stack: fitting the probe on {n} training pairs, its stack column out of fold ({k} folds "
                "by prompt)")
            e = emb.embed(prompts, texts, desc="probe embed (train)")
            ec, er = e[:n], e[n:]
            probe = fit_probe_arrays(ec, er, lc, lr, groups, seed=0, meta=embedder_meta(emb))
            fit_cols["probe"] = out_of_fold_scores(ec, er, lc, lr, groups, k, seed=0)
            score_cols["probe"] = (probe.score(ec, lc), probe.score(er, lr))
        st = RewardStack(None, _unit_weights(names), probe=probe, embedder=emb)
        if "relevance" in names:
            v = st.relevance.score(prompts, texts, desc="stack relevance (train)")
            fit_cols["relevance"] = score_cols["relevance"] = (v[:n], v[n:])
        if "features" in names:
            fm = feature_matrix(prompts, texts)
            fit_cols["features"] = score_cols["features"] = (fm[:n], fm[n:])
        xc = column_matrix({c: fit_cols[c][0] for c in names}, names)
        xr = column_matrix({c: fit_cols[c][1] for c in names}, names)
        w = stack_weights(xc - xr, l2=1.0)
        st.weights = weights_from_vector(names, w)
        # centred on the training answers as scoring gives them (the probe fit on every training pair)
        st.offset = float(np.concatenate([column_matrix({c: score_cols[c][i] for c in names}, names)
                                          for i in (0, 1)]).mean(0) @ w)
        sc, sr, on = xc @ w, xr @ w, pairs          # the training pairs, in-sample for the weights
        fit_on = f"training pairs ({n}; the probe's column out of fold, {k} folds by prompt)"
        st.spec["fit"] = {"l2": 1.0, "on": fit_on, "folds": k}
        metrics: dict[str, Any] = {
            "stack": names, "frozen": True, "weights": st.weights, "offset": st.offset, "fit": st.spec["fit"],
            "probe": _probe_info(probe),
            "data": {"train": len(train.records), "train_pairs": n, "train_prompts": len(set(groups)),
                     "eval": len(ev.records), "test": len(test.records) if test else 0, "rows_in": train.rows_in,
                     "rejected": len(rejects), "sources": _source_licenses(train.records, cfg.data_license)},
            # in-sample for the weights (the probe's column out of fold): a fit check, not a figure to quote
            "train": _figures(sc, sr, pairs, _alone(st, fit_cols))}
        measured, split = f"training pairs, in-sample weights ({n} pairs)", "train"
        if ev.records:
            log("frozen stack: reading the held-out split")
            on, sc, sr = _read(st, _score_files(st, ev, cfg.eval_batch_size), "eval", metrics)
            measured, split = f"held-out split ({len(on)} pairs; nothing fit on it)", "eval"
        if test is not None and test.records:
            log("frozen stack: reading the test file")
            _read(st, _score_files(st, test, cfg.eval_batch_size), "test", metrics)
        metrics["seconds"] = round(time.time() - t0, 1)
        _finish(st, cfg, out, metrics, metrics[split], sc, sr, on, measured,
                "frozen stack, held-out" if ev.records else "frozen stack, training pairs (in-sample)")
        log(f"saved a frozen reward stack ({_weights_text(st.weights)}) to {out} in {metrics['seconds']:.0f} s")
        return metrics


def _plot(sc, sr, pairs, out: Path, title: str) -> list[str]:
    """Reliability and reward-distribution plots of the stack's scores on ``pairs`` (``title``: which)."""
    from jprefs.classifiers.evaluate import pair_figures
    from jprefs.eval.plots import plot_reliability, plot_rewards

    m, arr = pair_figures(sc, sr, pairs, intervals=False)
    rel, dist = out / "eval_reliability.png", out / "eval_rewards.png"
    plot_reliability(arr["calibration_bins"], rel, xlabel=arr["calibration_title"], ylabel=arr["calibration_ylabel"],
                     title=f"{title}: reliability (pair_ece {m['pair_ece']:.3f}, n={len(pairs)})")
    plot_rewards(sc, sr, dist, labels=("chosen", "rejected"), title=f"{title}: rewards")
    return [rel.name, dist.name]


def _epoch_chosen(rm_metrics: dict, epochs: int) -> str | None:
    """``"epoch N of M by <metric>"`` when train-rm kept its best epoch by the held-out split, else None."""
    sel = str(rm_metrics.get("selected_by") or "")
    if not sel or sel.startswith("none") or epochs <= 1:
        return None
    return f"epoch {rm_metrics.get('best_epoch')} of {epochs} by {sel}"


def _epochs_chosen(members: dict, epochs: int) -> str | None:
    """:func:`_epoch_chosen` of each member of a seed ensemble (name -> its metrics), None if none chose."""
    each = {n: _epoch_chosen(m, epochs) for n, m in members.items()}
    if not any(each.values()):
        return None
    return "; ".join(f"{n}: {e or 'no choice'}" for n, e in each.items())


def _epoch_caveat(metrics: dict) -> str:
    e = metrics.get("reward_epoch_selected_on_eval")
    return (f". The reward model's epoch ({e}) was chosen on this same split, so these figures lean optimistic; "
            "give `test_data` for a figure nothing chose on") if e else ""


def _card(cfg, metrics: dict) -> str:
    def cell(v, ci=None):
        if v is None:
            return "n/a"
        return f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] is not None else "")

    frozen = bool(metrics.get("frozen"))
    parts = [c for c in metrics["stack"] if c != "reward"]
    cols = ([] if frozen else ["reward"]) + parts
    rows = []
    for split in ("eval", "test"):
        per = metrics.get(f"{split}_by_file") or ({"all": metrics[split]} if split in metrics else {})
        for label, m in per.items():
            comp = m.get("components", {})
            rows.append(f"| {split}{' (cross-fitted)' if split == 'eval' and not frozen else ''} | {label} "
                        f"| {m['pairs']} | {cell(m['pairwise_accuracy'], m.get('pairwise_accuracy_ci95'))} "
                        f"| {cell(m['length_baseline_accuracy'])} | "
                        + " | ".join(cell(comp.get(c, {}).get("pairwise_accuracy")) for c in cols)
                        + f" | {cell(m['length_controlled_accuracy'])} | {cell(m['reward_length_corr']['spearman'])} |")
    if not rows:
        rows.append("| (no held-out split or test file: eval_fraction=0 without test_data) |" + " |" * (6 + len(cols)))
    ls = metrics["length_sensitivity"]
    w = _weights_text({k: v for k, v in metrics["weights"].items() if k != "features"})
    if "features" in metrics["weights"]:
        w += "; features " + ", ".join(f"{f} {v:.3g}" for f, v in metrics["weights"]["features"].items())
    described = {"probe": "the frozen-embedding probe (`probe.json`, fit on the training pairs)",
                 "relevance": "the zero-shot e5 relevance of the answer to its question",
                 "features": "13 question-free surface features of the answer (`jprefs.classifiers.textfeatures`: "
                             "length, script, loops, truncation, politeness, refusals, prompt coverage)"}
    from jprefs.classifiers.ensemble import folder_card_front

    table_head = ("| split | file | pairs | stack accuracy [95% CI] | longer wins | " + " | ".join(cols)
                  + " | chosen shorter | Spearman(reward, length) |\n|" + "---|" * (7 + len(cols)))
    if frozen:
        title = f"# Frozen reward stack: {' + '.join(parts)}"
        what = (f"A jprefs `train-rm` reward stack of frozen parts (`stack={list(cfg.stack)}`, `stack_reward: false`, "
                f"backbone `{cfg.backbone}`): nothing is fine-tuned. Parts: "
                + "; ".join(described[c] for c in parts) + ".")
        fit = (f"The stack is `sum_k w_k x_k - offset` with weights fit by a logistic model on the {metrics['fit']['on']}: "
               f"{w}. Held-out and test figures are read with these weights: nothing was fit or chosen on them.")
        cost = "Scoring runs the frozen backbone once per answer, plus two short retrieval passes for relevance."
    else:
        head = metrics.get("reward_head") or "its default reward"
        seeds = list(cfg.ensemble_seeds)
        ens = f" (a seed ensemble, seeds {seeds}: its members' mean reward)" if seeds else ""
        title = f"# Reward stack: fine-tuned reward + {' + '.join(parts) or 'nothing else'}"
        what = (f"A jprefs `train-rm` reward stack (`stack={list(cfg.stack)}`): the reward model in `reward/`{ens} "
                f"(`{cfg.backbone}`, objective {cfg.objective}{', debias ' + cfg.debias if cfg.debias != 'none' else ''}; "
                f"its {head} enters the stack; its own card is `reward/README.md`)"
                + "".join(f"; {described[c]}" for c in parts) + ".")
        fit = (f"The stack is `sum_k w_k x_k - offset` with weights fit by a logistic model on the held-out split's "
               f"pair differences: {w}. Held-out figures are **cross-fitted** ({metrics['eval']['cross_fitted_folds']} "
               f"folds by prompt: no pair is scored with weights fit on its own labels){_epoch_caveat(metrics)}; test "
               "figures use the weights fit on the whole held-out split.")
        cost = ("Scoring runs the reward model, the frozen backbone and two retrieval passes: about 2-3x the cost of "
                "the reward model alone. For a reward that ignores length entirely use `score(head=\"quality\")` (ODIN).")
    return folder_card_front("length-debiased") + f"""

{title}

{what}

```python
from jprefs import RewardModel
stack = RewardModel.from_pretrained("{cfg.output_dir}")       # RewardStack
stack.score(prompts, responses)            # the stack; stack.components(...) gives each signal
```

{fit} The part columns are each part alone on the same pairs (features: their weighted sum); "longer wins"
picks the longer answer.

{table_head}
{chr(10).join(rows)}

Length sensitivity ({ls['measured_on']}): {ls['per_100_chars']:.4f} reward per 100 characters, accuracy where the
chosen answer is the shorter one {cell(ls['length_controlled_accuracy'])} ({ls['length_controlled_pairs']} pairs),
Spearman with length {ls['spearman_length']:.3f}. {cost}
"""
