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

Scoring cost: the reward model, the frozen backbone (probe) and two short retrieval passes
(relevance) run per call; about 2-3x one reward model.

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
PARTS = ("probe", "relevance")          # what `stack=[...]` takes; the reward model is always a component
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


def cross_fitted(chosen, rejected, groups: Sequence[Any], folds: int = STACK_FOLDS, seed: int = 0):
    """Out-of-fold stack scores of per-response features ``chosen`` / ``rejected`` ``(n, D)``: the pairs
    are dealt to ``folds`` folds by group (prompt, :func:`grouped_folds`), and each fold is scored with
    :func:`stack_weights` fit on the other folds' pairs only. Returns ``(s_chosen, s_rejected)``
    ``(n,)`` each and the per-fold weights ``(folds, D)``."""
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
        sc[te], sr[te] = xc[te] @ w, xr[te] @ w
        ws.append(w)
    return sc, sr, np.stack(ws)


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
        if unknown or "reward" not in weights:
            raise ConfigError(f"stack weights {sorted(weights)}: need 'reward' and any of {list(PARTS)}")
        if "probe" in weights and probe is None:
            raise ConfigError("a stack with a probe weight needs the fitted probe")
        if (set(weights) & set(PARTS)) and embedder is None:
            raise ConfigError("a stack with probe or relevance needs the frozen backbone (embedder)")
        base._head(reward_head)                     # an unknown head fails here
        self.base, self.weights, self.offset = base, dict(weights), float(offset)
        self.probe, self.embedder, self.reward_head = probe, embedder, reward_head or None
        self.spec = dict(spec or {})
        self._relevance = None

    # the reward model stands for the stack where a caller reads the model's settings
    @property
    def config(self):
        return self.base.config

    @property
    def model(self):
        return self.base.model

    @property
    def tokenizer(self):
        return self.base.tokenizer

    @property
    def names(self) -> list[str]:
        return [k for k in ("reward", *PARTS) if k in self.weights]

    @property
    def heads(self) -> list[str]:
        """``stack`` (the default) and the reward model's own heads (``reward`` for a one-reward model)."""
        return ["stack", *(self.base.heads or ["reward"])]

    @property
    def length_sensitivity(self) -> dict | None:
        """The stack's length figures on the held-out split (cross-fitted; see :meth:`RewardModel.length_sensitivity`)."""
        return self.spec.get("length_stats")

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
        ``reward_head``, centred), ``probe``, ``relevance``. ``base_heads``: also the reward model's own
        heads, from the same forward pass (``{"heads": {head: rewards}}`` in the result)."""
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
        saved = self.base.frozen_layer_cache
        self.base.frozen_layer_cache = k
        own = self.reward_head or "reward"
        try:     # the reward model (one model or a seed ensemble) gives every head from one pass
            by = self.base.score_heads(prompts, responses, list(dict.fromkeys([own, *base_heads])),
                                       batch_size=batch_size, show_progress=show_progress)
            out = {"reward": np.asarray(by[own], dtype=np.float64)}
            if base_heads:
                out["heads"] = {h: by[h] for h in base_heads}
        finally:
            self.base.frozen_layer_cache = saved
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
        return out

    def combine(self, comps: dict):
        """The stack score ``(N,)`` float32 of :meth:`components`' output."""
        import numpy as np

        s = sum(self.weights[k] * np.asarray(comps[k], np.float64) for k in self.names) - self.offset
        return np.asarray(s, dtype=np.float32)

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
        stack's components ``probe`` / ``relevance`` alone (each a reward: higher is better)."""
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
                out[h] = np.asarray(comps[h], dtype=np.float32)
            else:
                out[h] = np.asarray(comps["heads"][h], dtype=np.float32)
        return out

    def logits(self, *a, **k):
        raise JprefsError("a reward stack has no logits of its own: use score(), or .base for the reward model's")

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
        return {**self.spec, "format": STACK_FORMAT, "reward": REWARD_DIR, "reward_head": self.reward_head,
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
        if (out / REWARD_DIR).resolve() != Path(self.base_dir or "").resolve():
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
            weights = {str(k): float(v) for k, v in dict(spec["weights"]).items()}
            if not all(v == v and abs(v) != float("inf") for v in weights.values()):
                raise ValueError(f"non-finite weights {weights}")
            offset = float(spec.get("offset", 0.0))
            sub = str(spec.get("reward") or REWARD_DIR)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise JprefsError(f"{f}: not a jprefs reward-stack file ({e}).\n  fix: {fix}") from e
        base_dir = (p / sub).resolve()
        if p.resolve() not in base_dir.parents:
            raise JprefsError(f"{f}: the reward model {sub!r} is outside the stack folder; it is a sub-folder")
        base = RewardModel.from_pretrained(base_dir, device=device, **kw)
        probe = emb = None
        if set(weights) & set(PARTS):
            e = spec.get("embedder") or {}
            emb = Embedder(str(spec.get("backbone") or ""), pooling=e.get("pooling", "mean"),
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
        st.base_dir = str(base_dir)
        return st

    def __repr__(self) -> str:
        w = ", ".join(f"{k} {v:.3g}" for k, v in self.weights.items())
        return f"RewardStack({w}; {self.base!r})"


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


def train_stack(cfg, *, log=print) -> dict[str, Any]:
    """``train-rm ... stack=[...]``: the reward model into ``OUT/reward``, the probe on the training pairs,
    the stack's weights on the held-out split; figures cross-fitted on the held-out split, and on the
    test file (weights from the whole held-out split) when one is given."""
    import dataclasses

    import numpy as np

    from jprefs.classifiers.layercache import clear_memo
    from jprefs.classifiers.probe import Embedder, fit_probe
    from jprefs.classifiers.reward_model import RewardModel
    from jprefs.classifiers.train import RESUME_IGNORE, _load_split, train_reward_model
    from jprefs.config import config_dict, config_diff
    from jprefs.data.io import atomic_write_json, atomic_write_text
    from jprefs.data.schema import prompt_key
    from jprefs.runlock import run_lock

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    conf = config_dict(cfg)
    with run_lock(out, "jprefs train-rm (stack)", log=log):
        if is_stack(out) and (out / "metrics.json").is_file():
            prev = json.loads((out / STACK_NAME).read_text(encoding="utf-8")).get("config")
            # the keys a train-rm resume ignores (the -o spelling, plots, batch size of scoring) change nothing
            diff = config_diff(prev, cfg, ignore=RESUME_IGNORE) if isinstance(prev, dict) else "(no saved config)"
            if not diff:
                log(f"{out} holds this stack already (same config): nothing to do")
                return json.loads((out / "metrics.json").read_text(encoding="utf-8"))
            raise ConfigError(f"{out} holds a reward stack trained with another config: {diff}\n"
                              f"  fix: pass a new -o folder, or delete this one to retrain")
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
                                  "  fix: set eval_fraction > 0 or eval_data")
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
            weights = {"reward": 1.0, **{p: 1.0 for p in PARTS if p in cfg.stack}}
            st = RewardStack(base, weights, probe=probe, embedder=emb, reward_head=cfg.stack_head or None)
            st.frozen_layer_cache = k
            st.base_dir = str((out / REWARD_DIR).resolve())

            def features(data):
                """Per file: (label, pairs, {component: (chosen (n,), rejected (n,))})."""
                res = []
                for label, pairs in _file_pairs(data):
                    n = len(pairs)
                    comps = st.components([p.prompt for p in pairs] * 2,
                                          [p.chosen for p in pairs] + [p.rejected for p in pairs],
                                          batch_size=cfg.eval_batch_size, show_progress=True)
                    res.append((label, pairs, {c: (v[:n], v[n:]) for c, v in comps.items()}))
                return res

            log("stack: scoring the held-out split with every component")
            held = features(ev)
            names = st.names
            pairs = [p for _, ps, _ in held for p in ps]
            xc = np.concatenate([np.stack([f[c][0] for c in names], 1) for _, _, f in held])
            xr = np.concatenate([np.stack([f[c][1] for c in names], 1) for _, _, f in held])
            w = stack_weights(xc - xr)
            st.weights = {c: float(v) for c, v in zip(names, w)}
            st.offset = float(np.concatenate([xc, xr]).mean(0) @ w)
            groups = [prompt_key(p.prompt) for p in pairs]
            folds = cfg.stack_folds
            oc, orr, fold_w = cross_fitted(xc, xr, groups, folds=folds)
            metrics: dict[str, Any] = {"stack": names, "weights": st.weights, "offset": st.offset,
                                       "reward_head": cfg.stack_head or None,
                                       "fold_weights": {c: fold_w[:, i].tolist() for i, c in enumerate(names)},
                                       "probe": None if probe is None else {"l2": probe.l2,
                                                                           "cv_accuracy": probe.cv_accuracy,
                                                                           "length_weight": probe.length_weight},
                                       "reward_model": {s: rm_metrics.get(s) for s in ("eval", "test")},
                                       # the reward model's epoch, when chosen, was chosen on this same split
                                       "reward_epoch_selected_on_eval": chosen,
                                       "data": data}
            allc = {c: (xc[:, i], xr[:, i]) for i, c in enumerate(names)}
            metrics["eval"] = {**_figures(oc, orr, pairs, allc), "cross_fitted_folds": int(fold_w.shape[0])}
            if len(held) > 1:
                by, at = {}, 0
                for label, ps, f in held:
                    sl = slice(at, at + len(ps))
                    by[label] = _figures(oc[sl], orr[sl], ps, f)
                    at += len(ps)
                metrics["eval_by_file"] = by
            if test is not None and test.records:
                log("stack: scoring the test file")
                tf = features(test)
                by = {}
                for label, ps, f in tf:
                    by[label] = _figures(st.combine({c: f[c][0] for c in names}),
                                         st.combine({c: f[c][1] for c in names}), ps, f)
                if len(tf) == 1:
                    metrics["test"] = next(iter(by.values()))
                else:
                    ps = [p for _, x, _ in tf for p in x]
                    metrics["test"] = _figures(np.concatenate([st.combine({c: f[c][0] for c in names})
                                                               for _, _, f in tf]),
                                               np.concatenate([st.combine({c: f[c][1] for c in names})
                                                               for _, _, f in tf]), ps)
                    metrics["test_by_file"] = by
            from jprefs.classifiers.evaluate import length_stats

            st.spec["length_stats"] = {**length_stats(metrics["eval"]),
                                       "measured_on": f"held-out split, cross-fitted ({len(pairs)} pairs)"}
            st.spec["fit"] = {"l2": 1.0, "on": f"held-out split ({len(pairs)} pairs)", "folds": folds}
            metrics["length_sensitivity"] = st.spec["length_stats"]
            if cfg.plots:
                metrics["plots"] = _plot(oc, orr, pairs, out)
            st.save_pretrained(out)
            spec = json.loads((out / STACK_NAME).read_text(encoding="utf-8"))
            atomic_write_json(out / "metrics.json", metrics)
            atomic_write_text(out / "README.md", _card(cfg, metrics))
            atomic_write_json(out / STACK_NAME, {**spec, "config": conf})     # written last: the run's marker
        finally:
            clear_memo()
        log(f"saved a reward stack ({', '.join(f'{c} {v:.3g}' for c, v in st.weights.items())}) to {out}")
        return metrics


def _plot(sc, sr, pairs, out: Path) -> list[str]:
    """Reliability and reward-distribution plots of the cross-fitted held-out stack scores."""
    from jprefs.classifiers.evaluate import pair_figures
    from jprefs.eval.plots import plot_reliability, plot_rewards

    m, arr = pair_figures(sc, sr, pairs, intervals=False)
    rel, dist = out / "eval_reliability.png", out / "eval_rewards.png"
    plot_reliability(arr["calibration_bins"], rel, xlabel=arr["calibration_title"], ylabel=arr["calibration_ylabel"],
                     title=f"stack, held-out (cross-fitted): reliability (pair_ece {m['pair_ece']:.3f}, n={len(pairs)})")
    plot_rewards(sc, sr, dist, labels=("chosen", "rejected"), title="stack, held-out (cross-fitted): rewards")
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

    rows = []
    for split in ("eval", "test"):
        per = metrics.get(f"{split}_by_file") or ({"all": metrics[split]} if split in metrics else {})
        for label, m in per.items():
            comp = m.get("components", {})
            rows.append(f"| {split}{' (cross-fitted)' if split == 'eval' else ''} | {label} | {m['pairs']} "
                        f"| {cell(m['pairwise_accuracy'], m.get('pairwise_accuracy_ci95'))} "
                        f"| {cell(m['length_baseline_accuracy'])} "
                        f"| {cell(comp.get('probe', {}).get('pairwise_accuracy'))} "
                        f"| {cell(comp.get('reward', {}).get('pairwise_accuracy'))} "
                        f"| {cell(comp.get('relevance', {}).get('pairwise_accuracy'))} "
                        f"| {cell(m['length_controlled_accuracy'])} "
                        f"| {cell(m['reward_length_corr']['spearman'])} |")
    ls = metrics["length_sensitivity"]
    w = ", ".join(f"{k} {v:.4g}" for k, v in metrics["weights"].items())
    head = metrics.get("reward_head") or "its default reward"
    seeds = list(cfg.ensemble_seeds)
    ens = f" (a seed ensemble, seeds {seeds}: its members' mean reward)" if seeds else ""
    from jprefs.classifiers.ensemble import folder_card_front

    return folder_card_front("length-debiased") + f"""

# Reward stack: fine-tuned reward + {' + '.join(metrics['stack'][1:]) or 'nothing else'}

A jprefs `train-rm` reward stack (`stack={list(cfg.stack)}`): the reward model in `reward/`{ens} (`{cfg.backbone}`,
objective {cfg.objective}{', debias ' + cfg.debias if cfg.debias != 'none' else ''}; its {head} enters the stack;
its own card is `reward/README.md`){', the frozen-embedding probe (`probe.json`, fit on the training pairs)' if 'probe' in metrics['stack'] else ''}{' and the zero-shot e5 relevance of the answer to its question' if 'relevance' in metrics['stack'] else ''}.
The stack is `sum_k w_k x_k - offset` with weights fit by a logistic model on the held-out split's
pair differences: {w}.

```python
from jprefs import RewardModel
stack = RewardModel.from_pretrained("{cfg.output_dir}")       # RewardStack
stack.score(prompts, responses)            # the stack; stack.components(...) gives each signal
```

Held-out figures are **cross-fitted** ({metrics['eval']['cross_fitted_folds']} folds by prompt: no pair is scored with weights fit
on its own labels){_epoch_caveat(metrics)}; test figures use the weights fit on the whole held-out split. Probe, reward and
relevance columns are each component alone on the same pairs; "longer wins" picks the longer answer.

| split | file | pairs | stack accuracy [95% CI] | longer wins | probe | reward | relevance | chosen shorter | Spearman(reward, length) |
|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Length sensitivity (held-out, cross-fitted): {ls['per_100_chars']:.4f} reward per 100 characters,
accuracy where the chosen answer is the shorter one {cell(ls['length_controlled_accuracy'])}
({ls['length_controlled_pairs']} pairs), Spearman with length {ls['spearman_length']:.3f}.
Scoring runs the reward model, the frozen backbone and two retrieval passes: about 2-3x the cost of
the reward model alone. For a reward that ignores length entirely use `score(head="quality")` (ODIN).
"""
