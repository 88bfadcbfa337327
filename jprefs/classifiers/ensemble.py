"""Seed ensembles: several reward models of one recipe, their mean as the reward and their spread
as its uncertainty.

``jprefs train-rm RECIPE ensemble_seeds=[1,2,3] -o OUT`` trains one member per seed into
``OUT/seed-N/`` (each a complete train-rm run: resumable on its own, its own card and metrics), then
writes ``OUT/jprefs_ensemble.json``, ``OUT/metrics.json`` (the ensemble's figures on the shared
held-out split, and each member's, with their spread) and a card. The members share the held-out
split (the split is seeded by ``split_seed``, not by the member's seed), so their figures compare.

``RewardModel.from_pretrained(OUT)`` returns a :class:`RewardEnsemble`: ``score`` is the mean of the
members' centred rewards, ``score_std`` their standard deviation per response (how much the seeds
disagree: large where the reward is a guess), ``as_reward_func`` and ``heads`` work as for one model.

Example::

    ens = RewardModel.from_pretrained("out/ens")        # a folder with jprefs_ensemble.json
    ens.score(prompts, responses), ens.score_std(prompts, responses)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from jprefs.errors import JprefsError

ENSEMBLE_NAME = "jprefs_ensemble.json"
ENSEMBLE_FORMAT = "jprefs-ensemble/1"


def is_ensemble(path: str | os.PathLike) -> bool:
    return (Path(path) / ENSEMBLE_NAME).is_file()


class RewardEnsemble:
    """The mean of several :class:`RewardModel` s (one recipe, several seeds)."""

    def __init__(self, members: list, names: list[str] | None = None, length_stats: dict | None = None):
        if not members:
            raise JprefsError("a reward ensemble needs at least one member")
        heads = {tuple(m.heads) for m in members}
        if len(heads) > 1:
            raise JprefsError(f"ensemble members have different heads {sorted(heads)}: train them with one recipe")
        self.members = members
        self.names = names or [f"member-{i}" for i in range(len(members))]
        # the ensemble's OWN length figures (its mean reward on the held-out split, per head), written by
        # train_ensemble; a member's figures are not the ensemble's
        self.length_stats = dict(length_stats or {})

    # the first member stands for the ensemble where a caller reads the model's settings
    @property
    def config(self):
        return self.members[0].config

    @property
    def model(self):
        return self.members[0].model

    @property
    def tokenizer(self):
        return self.members[0].tokenizer

    @property
    def heads(self) -> list[str]:
        return self.members[0].heads

    @property
    def length_sensitivity(self) -> dict | None:
        """The ensemble's length figures for its default reward, measured on the members' shared held-out
        split when it was trained (see :attr:`RewardModel.length_sensitivity`); None if not measured."""
        return self.length_stats.get(self._head(None) or "reward")

    def length_stats_for(self, head: str | None = None) -> dict | None:
        """The length figures of ``head`` (None: the default reward) with where they were measured."""
        from jprefs.classifiers.reward_model import head_stats

        return head_stats(self.length_stats, self._head(head))

    def _head(self, head: str | None) -> str | None:
        return self.members[0]._head(head)

    @property
    def frozen_layer_cache(self) -> int:
        """The members' frozen-layer memo setting (see :attr:`RewardModel.frozen_layer_cache`)."""
        return self.members[0].frozen_layer_cache

    @frozen_layer_cache.setter
    def frozen_layer_cache(self, k: int) -> None:
        for m in self.members:
            m.frozen_layer_cache = k

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kw) -> "RewardEnsemble":
        from jprefs.classifiers.reward_model import RewardModel

        p = Path(path)
        f = p / ENSEMBLE_NAME
        try:
            spec = json.loads(f.read_text(encoding="utf-8"))
            names = list(spec["members"])
            if spec.get("format") != ENSEMBLE_FORMAT or not names or not all(isinstance(n, str) for n in names):
                raise ValueError(f"format {spec.get('format')!r}, members {names!r}")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise JprefsError(f"{f}: not a jprefs ensemble file ({e}).\n  fix: re-run the train-rm command with "
                              f"ensemble_seeds=[...] that wrote {p}") from e
        members = []
        for n in names:
            member = (p / n).resolve()
            if p.resolve() not in member.parents:
                raise JprefsError(f"{f}: member {n!r} is outside the ensemble folder; members are sub-folders")
            members.append(RewardModel.from_pretrained(member, **kw))
        return cls(members, names, _saved_length_stats(p, spec, members))

    def _all(self, prompts, responses, batch_size: int, head: str | None, show_progress: bool):
        import numpy as np

        return np.stack([m.score(prompts, responses, batch_size=batch_size, head=head, show_progress=show_progress)
                         for m in self.members])                        # (M, N)

    def score(self, prompts: Sequence[Any] | str | None, responses: Sequence[str], batch_size: int = 32,
              max_tokens: int | None = None, show_progress: bool = False, head: str | None = None):
        """The mean of the members' rewards (float32, input order)."""
        import numpy as np

        return self._all(prompts, responses, batch_size, head, show_progress).mean(0).astype(np.float32)

    def score_heads(self, prompts, responses, heads, batch_size: int = 32, show_progress: bool = False) -> dict:
        """``{head: the members' mean reward}`` with one forward pass per member for all ``heads``."""
        import numpy as np

        per = [m.score_heads(prompts, responses, heads, batch_size=batch_size, show_progress=show_progress)
               for m in self.members]
        return {h: np.mean([p[h] for p in per], axis=0).astype(np.float32) for h in heads}

    def score_std(self, prompts, responses, batch_size: int = 32, head: str | None = None):
        """The members' standard deviation per response: the ensemble's uncertainty (0 for one member)."""
        import numpy as np

        return self._all(prompts, responses, batch_size, head, False).std(0).astype(np.float32)

    def score_with_std(self, prompts, responses, batch_size: int = 32, head: str | None = None,
                       show_progress: bool = False):
        """``(mean, std)`` of the members' rewards in one pass."""
        import numpy as np

        r = self._all(prompts, responses, batch_size, head, show_progress)
        return r.mean(0).astype(np.float32), r.std(0).astype(np.float32)

    def logits(self, *a, **k):
        raise JprefsError("a reward ensemble has no logits of its own: use score(), or one of .members")

    def as_reward_func(self, batch_size: int = 32, use_prompt: bool | None = None,
                       head: str | None = None) -> Callable[..., list[float]]:
        """A trl reward function giving the ensemble's mean reward (see :meth:`RewardModel.as_reward_func`)."""
        funcs = [m.as_reward_func(batch_size=batch_size, use_prompt=use_prompt, head=head) for m in self.members]

        def reward_func(prompts=None, completions=None, **kwargs) -> list[float]:
            cols = [f(prompts=prompts, completions=completions, **kwargs) for f in funcs]
            return [sum(v) / len(v) for v in zip(*cols)]

        reward_func.__name__ = "jprefs_ensemble_reward"
        return reward_func

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Each member into ``path/NAME`` and the ensemble file beside them."""
        out = Path(path)
        for name, m in zip(self.names, self.members):
            m.save_pretrained(out / name)
        write_ensemble_file(out, self.names, {"length_stats": self.length_stats} if self.length_stats else None)
        return out

    def __repr__(self) -> str:
        return f"RewardEnsemble({len(self.members)} x {self.members[0]!r})"


def _saved_length_stats(folder: Path, spec: dict, members: list) -> dict:
    """The ensemble's length figures: from its ensemble file, or (a folder written before they were kept
    there) from its metrics.json's held-out figures of the default reward; {} when neither has them (a
    member's figures are never taken for the ensemble's)."""
    from jprefs.classifiers.evaluate import length_stats

    ls = spec.get("length_stats")
    if isinstance(ls, dict):
        return ls
    try:
        ev = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))["eval"]
        # eval_metrics' names for what length_stats reads as pair_figures gives it
        stats = length_stats({**ev, "pairs": ev["n_pairs"], "length_controlled_pairs": ev["length_controlled_n"]})
        return {members[0]._head(None) or "reward": stats, "measured_on": f"eval split ({ev['n_pairs']} pairs)"}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def write_ensemble_file(out: Path, names: list[str], extra: dict | None = None) -> None:
    from jprefs.data.io import atomic_write_json

    atomic_write_json(Path(out) / ENSEMBLE_NAME, {"format": ENSEMBLE_FORMAT, "members": list(names),
                                                  **(extra or {})})


def train_ensemble(cfg, *, log=print, keep_layer_cache: bool = False) -> dict[str, Any]:
    """One train-rm run per seed of ``cfg.ensemble_seeds`` into ``OUT/seed-N``, then the ensemble files
    (``keep_layer_cache``: keep the frozen-layer memo after the last member, as in ``train_reward_model``)."""
    import dataclasses

    import numpy as np

    from jprefs.classifiers.evaluate import length_stats
    from jprefs.classifiers.train import train_reward_model
    from jprefs.data.io import atomic_write_json, atomic_write_text
    from jprefs.runlock import run_lock

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(cfg.ensemble_seeds)
    names = [f"seed-{s}" for s in seeds]
    with run_lock(out, "jprefs train-rm (ensemble)", log=log):
        member_metrics = {}
        for s, name in zip(seeds, names):
            log(f"ensemble member {name} ({len(member_metrics) + 1}/{len(seeds)})")
            mcfg = dataclasses.replace(cfg, seed=s, split_seed=cfg.split_seed if cfg.split_seed >= 0 else cfg.seed,
                                       ensemble_seeds=[], output_dir=str(out / name))
            # the members share the frozen-layer memo (train_layers=N: one cache for every seed)
            member_metrics[name] = train_reward_model(mcfg, log=log,
                                                      keep_layer_cache=keep_layer_cache or name != names[-1])
        write_ensemble_file(out, names, {"seeds": seeds})
        ens = RewardEnsemble.from_pretrained(out, device=None)
        metrics: dict[str, Any] = {"ensemble": names, "members": {}}
        ens_stats: dict[str, Any] = {}
        # the members' shared held-out split (each member wrote it), and the test file if one was given
        splits = {"eval": out / names[0] / "eval_split.jsonl", "test": Path(cfg.test_data) if cfg.test_data else None}
        for split, path in splits.items():
            if path is None or not path.is_file():
                continue
            m, heads = _ensemble_figures(ens, path, cfg)
            metrics[split] = m
            if ens.heads:
                metrics[f"{split}_heads"] = heads
            if split == "eval" or not ens_stats:         # measured on the held-out split, as one model's are
                ens_stats = {**{h: length_stats(x) for h, x in heads.items()},
                             "measured_on": f"{split} split ({heads[next(iter(heads))]['pairs']} pairs)"}
            accs = [member_metrics[n].get(split, {}).get("pairwise_accuracy") for n in names]
            accs = [a for a in accs if a is not None]
            metrics["members"][split] = {
                "pairwise_accuracy": dict(zip(names, accs)),
                "mean": float(np.mean(accs)) if accs else None,
                "std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
                "min": float(min(accs)) if accs else None, "max": float(max(accs)) if accs else None}
        if ens_stats:
            ens.length_stats = ens_stats
            metrics["length_sensitivity"] = ens_stats
            write_ensemble_file(out, names, {"seeds": seeds, "length_stats": ens_stats})
        atomic_write_json(out / "metrics.json", metrics)
        atomic_write_text(out / "README.md", _card(cfg, names, metrics))
        log(f"saved a {len(names)}-member ensemble to {out}")
        return metrics


def _ensemble_figures(ens: RewardEnsemble, path: Path, cfg) -> tuple[dict, dict]:
    """Pairwise figures of the ensemble's mean reward (its default head) with its mean per-response spread,
    and ``{head or "reward": figures}`` of every head's mean reward as one model's are reported
    (:func:`jprefs.classifiers.evaluate.pair_figures`); one forward pass per member."""
    import numpy as np

    from jprefs.classifiers.data import load_rm_data
    from jprefs.classifiers.evaluate import pair_figures
    from jprefs.data.schema import prompt_key
    from jprefs.eval.metrics import pairwise_metrics

    data = load_rm_data(path, data_format=cfg.data_format, source=cfg.data_source if path.name != "eval_split.jsonl"
                        else "")
    pairs = data.pairs()
    n = len(pairs)
    keys = ens.heads or ["reward"]
    per = [m.score_heads([p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs],
                         keys, batch_size=cfg.eval_batch_size) for m in ens.members]
    heads = {}
    for h in keys:
        mean = np.mean([x[h] for x in per], axis=0)
        heads[h] = pair_figures(mean[:n], mean[n:], pairs, intervals=False)[0]
    each = np.stack([x[keys[0]] for x in per])                          # (members, 2N), the default reward
    mean = each.mean(0)
    m = pairwise_metrics(mean[:n], mean[n:], [len(p.chosen) for p in pairs], [len(p.rejected) for p in pairs],
                         [prompt_key(p.prompt) for p in pairs])
    m.pop("reliability_bins", None)
    m["mean_member_std"] = float(np.mean(each.std(0)))
    # pairs the members disagree on: some members prefer chosen, some rejected
    votes = (each[:, :n] > each[:, n:]).mean(0)
    m["pairs_members_disagree"] = float(((votes > 0) & (votes < 1)).mean())
    return m, heads


def folder_card_front(tag: str) -> str:
    """The card front matter of a folder of jprefs models (an ensemble, a stack): library, language, tags."""
    return f"---\nlibrary_name: jprefs\nlanguage:\n- ja\ntags:\n- jprefs\n- reward-model\n- {tag}\n---\n"


def _card(cfg, names: list[str], metrics: dict) -> str:
    rows = []
    for split in ("eval", "test"):
        if split in metrics:
            m, mem = metrics[split], metrics["members"][split]
            lo, hi = m["ci95"]
            lc = m["length_controlled_accuracy"]
            rows.append(f"| {split} | {m['pairwise_accuracy']:.4f} [{lo:.4f}, {hi:.4f}] "
                        f"| {mem['mean']:.4f} ± {mem['std']:.4f} (min {mem['min']:.4f}, max {mem['max']:.4f}) "
                        f"| {m['length_baseline_accuracy']:.4f} | {'n/a' if lc is None else f'{lc:.4f}'} "
                        f"| {m['reward_per_100_chars']:+.4f} | {m['reward_length_corr']['spearman']:.3f} "
                        f"| {m['pairs_members_disagree']:.3f} |")
    table = "\n".join(rows)
    return folder_card_front("ensemble") + f"""

# Reward-model ensemble ({len(names)} seeds)

{len(names)} reward models trained by jprefs `train-rm` with one recipe and seeds {', '.join(n[5:] for n in names)}
(`{cfg.backbone}`, objective {cfg.objective}{', debias ' + cfg.debias if cfg.debias != 'none' else ''}); each member
is a complete model folder with its own card (`{names[0]}/README.md`). The reward is the mean of the members'
centred rewards; `score_std` is their spread per response.

```python
from jprefs import RewardModel
ens = RewardModel.from_pretrained("{cfg.output_dir}")     # RewardEnsemble
mean, std = ens.score_with_std(prompts, responses)
```

| split | ensemble accuracy [95% CI] | members: mean ± sd | longer wins | chosen shorter (ensemble) | reward per 100 characters | Spearman with length | pairs the members disagree on |
|---|---|---|---|---|---|---|---|
{table}

*chosen shorter*: accuracy on the pairs whose better answer is the shorter one (longer-wins scores 0
there); the length figures are the ensemble's mean reward's (`RewardModel.from_pretrained(...).length_sensitivity`).

The members share one held-out split (by prompt), so their figures compare; the spread over seeds is
the part of any single model's figure that is luck of the seed.
"""
