"""Length-debiased Japanese reward models: every variant trained and compared on the same splits (issue #13).

Protocol (choices on dev, the test split read once at the end):
  1. ``split``: ja_mt_bench (863 pairs, 77 questions) and rakuda (945 pairs, 40 questions) are each
     split BY QUESTION (prompt) into test (25% of the pairs), dev (20% of the rest) and train, with
     fixed seeds; written to WORK/{set}-{part}.jsonl. The two sets have disjoint questions.
  2. ``train NAME``: one variant (VARIANTS below) = the base recipe + its overrides, trained on both
     sets' train parts (``data`` + ``extra_data``) with both dev parts as ``eval_data``.
  3. ``dev``: every trained variant scored on each dev part (accuracy, interval, longer-wins,
     chosen-shorter accuracy, reward-length Spearman), with the probe baseline (frozen e5 + log
     length ratio, fit on the train parts) beside it; WORK/dev.json. The recommended variant is
     chosen here by the rule in ``choose``.
  4. ``test``: the same figures on the test parts, for every variant (reported, not used to choose).

    python bench/rm_debias.py split
    python bench/rm_debias.py train bt            # one variant (~5-15 min on 2 cores)
    python bench/rm_debias.py dev
    python bench/rm_debias.py test
    python bench/rm_debias.py recipe; python bench/rm_debias.py recipe-ens   # the recipe as users run it
    python bench/rm_debias.py third CHECKOUT   # a third judged set (ku-nlp/ja-vicuna-qa-benchmark), read once
    python bench/rm_debias.py transfer         # leave one judged set out: train on two, score the third
    python bench/rm_debias.py plot transfer    # -> RESULTS/transfer.png
    python bench/rm_debias.py graded CHECKOUT  # train on shaberi's graded answers to OTHER questions, score all three
    python bench/rm_debias.py heuristics CHECKOUT   # question-free answer features fit on those grades, score all three
    python bench/rm_debias.py plot graded      # -> RESULTS/graded.png
    python bench/rm_debias.py frozen-loso      # frozen parts only, each judged set held out in turn
    python bench/rm_debias.py plot frozen-loso # -> RESULTS/frozen-loso.png
    python bench/rm_debias.py frozen-nested    # the same choice made from the two training sets alone
    python bench/rm_debias.py frozen-recipe CHECKOUT   # the frozen stack as a recipe; a fourth judged set, read once
    python bench/rm_debias.py plot frozen-recipe       # -> RESULTS/frozen-recipe.png
    python bench/rm_debias.py fifth CHECKOUT   # new models' answers to Japanese MT-Bench (shisa's FastChat fork), read once
    python bench/rm_debias.py ninth CHECKOUT   # those grades as training pairs of the frozen stack, chosen by grouped CV
    python bench/rm_debias.py ninth-fine-tuned CHECKOUT   # and a sample of them in the fine-tuned recipe's training
    python bench/rm_debias.py plot ninth       # -> RESULTS/ninth.png

WORK defaults to bench/results/rm-debias/work (models are not committed; the JSON summaries are).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SETS = {"ja_mt_bench": SHARED / "ja_mt_bench" / "ja_mt_bench_turn1_pairs.jsonl",
        "rakuda": SHARED / "rakuda" / "rakuda_gpt4_pairs.jsonl"}
HH = SHARED / "hh-rlhf" / "harmless-base-test.jsonl.gz"
RESULTS = ROOT / "bench" / "results" / "rm-debias"
BLENDS = (0.1, 0.25, 0.5, 0.75)
WORK = Path(__import__("os").environ.get("RM_DEBIAS_WORK", RESULTS / "work"))
RECIPE = ROOT / "classifiers" / "recipes" / "e5-small-ja-debiased.yaml"

# Every variant is the recipe plus these overrides (the recipe itself is the chosen one, "odin-bal" etc.)
BASE = {"debias": "none", "length_balance": False, "counterfactual": "none", "odin_length_blend": 0.0,
        "stack": [], "stack_head": ""}         # the variants are single reward models (stacks: stack_run)
VARIANTS = {
    "bt": {},
    "bt-balanced": {"length_balance": True},
    "bt-cf-filler": {"counterfactual": "filler"},
    "bt-cf-repeat": {"counterfactual": "repeat"},
    "corr": {"debias": "correlation", "debias_weight": 1.0},
    "odin": {"debias": "odin"},
    "odin-balanced": {"debias": "odin", "length_balance": True},
    "bt-256": {"max_length": 256, "max_prompt_length": 64},
    "bt-hh-en": {"extra_data": "HH"},     # cross-lingual: + English hh-rlhf harmless pairs
    # seed spread / seed ensembles of the CV-chosen recipe (ODIN, default reward quality + 0.1 x length,
    # which also picks the epoch; the recipe's seed is 42)
    "odin-s42": {"debias": "odin", "odin_length_blend": 0.1, "seed": 42},
    "odin-s43": {"debias": "odin", "odin_length_blend": 0.1, "seed": 43},
    "odin-s44": {"debias": "odin", "odin_length_blend": 0.1, "seed": 44},
}


def split() -> None:
    from jprefs.classifiers.data import load_rm_data, split_by_group
    from jprefs.data.io import write_jsonl

    WORK.mkdir(parents=True, exist_ok=True)
    info = {}
    for name, path in SETS.items():
        d = load_rm_data(path)
        rest, test = split_by_group(d, 0.25, seed=0)
        train, dev = split_by_group(rest, 0.20, seed=1)
        for part, data in (("train", train), ("dev", dev), ("test", test)):
            write_jsonl(WORK / f"{name}-{part}.jsonl", data.records)
        info[name] = {part: len(x.records) for part, x in (("train", train), ("dev", dev), ("test", test))}
    rows = [r for name in SETS for r in _read(WORK / f"{name}-dev.jsonl")]
    write_jsonl(WORK / "dev.jsonl", rows)
    (WORK / "split.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info))


def _read(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(x) for x in f if x.strip()]


def train(name: str, *, data: Path | None = None, extra: Path | None = None, eval_data: Path | None = None,
          out: Path | None = None) -> dict:
    """Variant NAME trained on ``data`` (ja_mt_bench) + ``extra`` (rakuda), evaluated on ``eval_data``;
    by default the train parts, the joined dev parts and WORK/models/NAME."""
    from jprefs.classifiers.config import TrainRMConfig
    from jprefs.classifiers.train import train_reward_model
    from jprefs.config import load_config

    out = out or WORK / "models" / name
    over = {**BASE, **VARIANTS[name]}
    extras = [str(extra or WORK / "rakuda-train.jsonl")]
    if over.pop("extra_data", None) == "HH":
        extras.append(str(WORK / "hh-en.jsonl"))
        _hh_pairs(WORK / "hh-en.jsonl")
    over.update(data=str(data or WORK / "ja_mt_bench-train.jsonl"), extra_data=extras,
                eval_data=str(eval_data or WORK / "dev.jsonl"), output_dir=str(out))
    cfg = load_config(TrainRMConfig, str(RECIPE), over)
    t0 = time.time()
    m = train_reward_model(cfg, keep_layer_cache=True)
    (out / "wall.json").write_text(json.dumps({"seconds": time.time() - t0}) + "\n")
    return m


def _hh_pairs(out: Path, n: int = 600) -> None:
    """The first ``n`` English hh-rlhf harmless pairs as canonical records (cross-lingual variant)."""
    from jprefs.data.adapters import convert
    from jprefs.data.io import write_jsonl

    if not out.exists():
        write_jsonl(out, convert(str(HH), source="hh-rlhf", limit=n).records)


def _rewards(rm, pairs) -> dict:
    """Every reward of ``rm`` on ``pairs``: name -> (2N,) array, chosen then rejected (a two-head model's
    heads and its quality + b * length blends: how much of the length head to let back in)."""
    from jprefs.classifiers.evaluate import pair_logits

    heads = rm.heads or [None]
    logits = pair_logits(rm, pairs)
    rewards = {(h or "reward"): rm.rewards_from_logits(logits, head=h) for h in heads}
    if rm.heads:
        for b in BLENDS:
            rewards[f"blend-{b:g}"] = rewards["quality"] + b * rewards["length"]
    return rewards


def _metrics(r, pairs) -> dict:
    """The bench's figures of reward ``r`` ((2N,), chosen then rejected) on ``pairs``."""
    from jprefs.data.schema import prompt_key
    from jprefs.eval.metrics import accuracy_metrics, correlation

    n = len(pairs)
    lc, lr = [len(p.chosen) for p in pairs], [len(p.rejected) for p in pairs]
    m = accuracy_metrics(r[:n], r[n:], lc, lr, [prompt_key(p.prompt) for p in pairs], seed=0)
    return {"accuracy": m["pairwise_accuracy"], "ci95": m["ci95"],
            "longer_wins": m["length_baseline_accuracy"],
            "minus_longer": m["accuracy_minus_length_baseline"],
            "minus_longer_ci95": m["accuracy_minus_length_baseline_ci95"],
            "chosen_shorter": m["length_controlled_accuracy"], "chosen_shorter_n": m["length_controlled_n"],
            "spearman_length": correlation(r, lc + lr)["spearman"], "pairs": n}


# Grouped cross-validation over train + dev (the second selection, after the dev split proved too small
# to rank the variants): the three debiasing families, each trained FOLDS times.
CV_VARIANTS = ("bt-balanced", "corr", "odin")
# the third round: the recipe's ODIN with three seeds on the same folds (seed spread, seed ensembles; `cv-seeds`)
SEED_VARIANTS = ("odin-s42", "odin-s43", "odin-s44")
FOLDS = 3


def _cv_parts():
    """Per set: the train + dev records and their fold (grouped by question, seed 0)."""
    from jprefs.classifiers.data import load_rm_data
    from jprefs.classifiers.probe import grouped_folds
    from jprefs.data.schema import prompt_key

    out = {}
    for s in SETS:
        recs = [r for part in ("train", "dev") for r in load_rm_data(WORK / f"{s}-{part}.jsonl").records]
        out[s] = (recs, grouped_folds([prompt_key(r.prompt) for r in recs], FOLDS, seed=0))
    return out


def cv(variants=CV_VARIANTS, out_name: str = "cv.json") -> dict:
    """Train every CV variant on FOLDS-1 folds of both sets, score the held-out fold; pool the out-of-fold
    rewards over the folds and report each set's figures beside longer-wins and the probe fit on the same
    training folds. WORK/cv/...; finished folds are kept, so a killed run resumes. Writes RESULTS/cv.json."""
    import numpy as np

    from jprefs.classifiers.data import RMData
    from jprefs.classifiers.reward_model import RewardModel
    from jprefs.data.io import write_jsonl

    parts = _cv_parts()
    root = WORK / "cv"
    root.mkdir(parents=True, exist_ok=True)
    oof: dict = {}
    for f in range(FOLDS):
        paths = {}
        for s, (recs, fold) in parts.items():
            for tag, keep in (("train", fold != f), ("held", fold == f)):
                paths[s, tag] = root / f"fold{f}-{s}-{tag}.jsonl"
                write_jsonl(paths[s, tag], [r for r, k in zip(recs, keep) if k])
        write_jsonl(root / f"fold{f}-held.jsonl",
                    [r for s in SETS for r, k in zip(parts[s][0], parts[s][1] == f) if k])
        for name in variants:
            d = root / f"fold{f}" / name
            scores = d / "oof.json"
            if not scores.exists():
                if not (d / "done.json").exists():
                    train(name, data=paths["ja_mt_bench", "train"], extra=paths["rakuda", "train"],
                          eval_data=root / f"fold{f}-held.jsonl", out=d)
                rm = RewardModel.from_pretrained(d, device="cpu")
                rm.frozen_layer_cache = _train_layers(d)
                res = {s: {k: v.tolist() for k, v in
                           _rewards(rm, RMData("records", [r for r, k in zip(parts[s][0], parts[s][1] == f) if k])
                                    .pairs()).items()} for s in SETS}
                scores.write_text(json.dumps(res) + "\n")
            res = json.loads(scores.read_text())
            for s in SETS:
                for h, r in res[s].items():
                    oof.setdefault(name, {}).setdefault(s, {}).setdefault(h, {})[f] = np.asarray(r)
    out = {"folds": FOLDS, "variants": list(variants), "rule": choose.__doc__}
    for name, per_set in oof.items():
        out[name] = {s: {h: _metrics(_pool(parts[s], per_f), RMData("records", _ordered(parts[s])).pairs())
                         for h, per_f in heads.items()} for s, heads in per_set.items()}
    out["_probe"] = _cv_probe(parts)
    out["recommended"] = choose({k: v for k, v in out.items() if k in variants})
    (RESULTS / out_name).write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    return out


def _ordered(part):
    """A set's train + dev records in fold order (fold 0's, then fold 1's, ...): the order of _pool."""
    recs, fold = part
    return [r for f in range(FOLDS) for r, k in zip(recs, fold == f) if k]


def _pool(part, per_fold: dict):
    """The out-of-fold rewards of one set in _ordered's order, (2N,): all chosen, then all rejected."""
    import numpy as np

    ch = [np.asarray(per_fold[f])[: len(per_fold[f]) // 2] for f in range(FOLDS)]
    rj = [np.asarray(per_fold[f])[len(per_fold[f]) // 2:] for f in range(FOLDS)]
    return np.concatenate(ch + rj)


def _cv_probe_scores(parts) -> dict:
    """The probe baseline (frozen e5 + log length) fit on each fold's training folds of both sets and
    scored on the held-out fold: set -> fold -> (2n,) scores, chosen then rejected."""
    import numpy as np

    from jprefs.classifiers.data import RMData
    from jprefs.classifiers.probe import fit_probe_arrays
    from jprefs.data.schema import prompt_key

    E = {}
    for s in SETS:           # train + dev embeddings (cached by ``probe``), in the records' order
        z = [np.load(WORK / f"probe-emb-{s}-{part}.npz") for part in ("train", "dev")]
        E[s] = np.concatenate([x["c"] for x in z]), np.concatenate([x["r"] for x in z])
    pairs = {s: RMData("records", parts[s][0]).pairs() for s in SETS}
    per = {s: {} for s in SETS}
    for f in range(FOLDS):
        tr = {s: parts[s][1] != f for s in SETS}
        sel = lambda s, m: [p for p, k in zip(pairs[s], m) if k]    # noqa: E731
        trp = [p for s in SETS for p in sel(s, tr[s])]
        pr = fit_probe_arrays(np.concatenate([E[s][0][tr[s]] for s in SETS]),
                              np.concatenate([E[s][1][tr[s]] for s in SETS]),
                              [len(p.chosen) for p in trp], [len(p.rejected) for p in trp],
                              [prompt_key(p.prompt) for p in trp], seed=0)
        for s in SETS:
            te = ~tr[s]
            ps = sel(s, te)
            per[s][f] = np.concatenate([pr.score(E[s][0][te], [len(p.chosen) for p in ps]),
                                        pr.score(E[s][1][te], [len(p.rejected) for p in ps])])
    return per


def _cv_metrics(parts, per_set: dict) -> dict:
    """The bench's figures per set of out-of-fold scores ``set -> fold -> (2n,)``."""
    from jprefs.classifiers.data import RMData

    return {s: _metrics(_pool(parts[s], per_set[s]), RMData("records", _ordered(parts[s])).pairs()) for s in SETS}


def _cv_probe(parts) -> dict:
    """The probe's out-of-fold figures per set (:func:`_cv_probe_scores`)."""
    return _cv_metrics(parts, _cv_probe_scores(parts))


def _cv_oof(variants) -> dict:
    """The saved out-of-fold rewards of the CV runs: "variant/reward" -> set -> fold -> (2n,)."""
    import numpy as np

    out: dict = {}
    for f in range(FOLDS):
        for v in variants:
            res = json.loads((WORK / "cv" / f"fold{f}" / v / "oof.json").read_text())
            for s in SETS:
                for h, r in res[s].items():
                    out.setdefault(f"{v}/{h}", {}).setdefault(s, {})[f] = np.asarray(r)
    return out


def _cv_done(variants) -> list:
    """Those of ``variants`` whose out-of-fold rewards exist for every fold."""
    return [v for v in variants if all((WORK / "cv" / f"fold{f}" / v / "oof.json").exists() for f in range(FOLDS))]


def _seed_mean(comp: dict, seeds, head: str) -> dict:
    """The seed ensemble's out-of-fold reward (the members' mean, as :class:`RewardEnsemble` scores)."""
    import numpy as np

    return {s: {f: np.mean([comp[f"{v}/{head}"][s][f] for v in seeds], axis=0) for f in range(FOLDS)} for s in SETS}


def _floor(m: dict, lw: dict, pb: dict) -> bool:
    """Issue #13's floor on out-of-fold figures: above longer-wins and the probe, chosen-shorter >= 0.35,
    on every set."""
    return all(m[s]["accuracy"] > max(lw[s], pb[s]["accuracy"]) and (m[s]["chosen_shorter"] or 0) >= 0.35
               for s in SETS)


def cv_ensemble() -> dict:
    """The third round (rule fixed before the seed runs' figures existed): the recipe's objective (ODIN,
    default reward quality + 0.1 x length) trained with three seeds (42, 43, 44) on the CV folds. Reports
    each reward's spread over the seeds (mean, min, max of out-of-fold accuracy and chosen-shorter
    accuracy per set) and the figures of the three-seed ensemble (the members' mean reward, what
    :class:`RewardEnsemble` scores); the rule of :func:`choose` then picks among the single-seed and the
    ensemble rewards, and ``meets_floor`` says whether the pick clears issue #13's floor out of fold.
    RESULTS/cv-ensemble.json."""
    import numpy as np

    parts = _cv_parts()
    seeds = SEED_VARIANTS
    comp = _cv_oof(seeds)
    heads = [k.split("/", 1)[1] for k in comp if k.startswith(f"{seeds[0]}/")]

    def by_set(per_head: dict) -> dict:          # head -> set -> figures  =>  set -> head -> figures
        return {s: {h: m[s] for h, m in per_head.items()} for s in SETS}

    single = {v: by_set({h: _cv_metrics(parts, comp[f"{v}/{h}"]) for h in heads}) for v in seeds}
    ens = by_set({h: _cv_metrics(parts, _seed_mean(comp, seeds, h)) for h in heads})
    spread = {s: {h: {k: {"mean": float(np.mean(x)), "min": float(np.min(x)), "max": float(np.max(x))}
                      for k, x in (("accuracy", [single[v][s][h]["accuracy"] for v in seeds]),
                                   ("chosen_shorter", [single[v][s][h]["chosen_shorter"] for v in seeds]))}
                  for h in heads} for s in SETS}
    pb = _cv_probe(parts)
    lw = {s: pb[s]["longer_wins"] for s in SETS}
    cands = {**single, "odin-x3": ens}
    pick = choose(cands)
    v, h = pick.split("/", 1)
    out = {"seeds": [VARIANTS[v]["seed"] for v in seeds], "single": single, "ensemble": ens, "spread": spread, "_probe": pb,
           "rule": choose.__doc__, "recommended": pick, "meets_floor": _floor({s: cands[v][s][h] for s in SETS}, lw, pb)}
    (RESULTS / "cv-ensemble.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    return out


# What the stacking exploration combines with the probe (rewards of the CV runs), and with what weights
STACK_REWARDS = ("bt-balanced/reward", "corr/reward", "odin/quality", "odin/blend-0.1", "odin/full",
                 "odin-s42/quality", "odin-s42/blend-0.1", "odin-s42/full",
                 "odin-x3/quality", "odin-x3/blend-0.1", "odin-x3/full")
STACK_WEIGHTS = (0.5, 1.0, 2.0)


def cv_stack() -> dict:
    """An exploration, designed AFTER the CV figures were read (so it chose nothing): the probe's score
    plus ``w`` times a fine-tuned reward, each standardised per fold by its spread over the held-out
    responses of both sets (no labels used), out of fold. Does a fine-tuned reward add to what the frozen
    embeddings and the length already give? RESULTS/cv-stack.json."""
    import numpy as np

    parts = _cv_parts()
    have = _cv_done(CV_VARIANTS + SEED_VARIANTS[:1])
    seeds = _cv_done(SEED_VARIANTS)
    comp = _cv_oof(have)
    comp["probe"] = _cv_probe_scores(parts)
    if len(seeds) > 1:            # the seed round's ensemble (cv-ensemble): the members' mean reward
        comp.update(_cv_oof(seeds))
        for h in ("quality", "blend-0.1", "full"):
            comp[f"odin-x3/{h}"] = _seed_mean(comp, seeds, h)

    def z(name):                  # fold -> set -> standardised scores (both sets' held-out responses)
        out = {}
        for f in range(FOLDS):
            x = np.concatenate([comp[name][s][f] for s in SETS])
            out[f] = {s: (comp[name][s][f] - x.mean()) / x.std() for s in SETS}
        return out

    pb = _cv_metrics(parts, comp["probe"])
    lw = {s: pb[s]["longer_wins"] for s in SETS}
    out = {"_probe": pb, "variants": have, "seed_ensemble": seeds, "stacks": {}}
    zp = z("probe")
    for r in (r for r in STACK_REWARDS if r in comp):
        zr = z(r)
        for w in STACK_WEIGHTS:
            per = {s: {f: zp[f][s] + w * zr[f][s] for f in range(FOLDS)} for s in SETS}
            m = _cv_metrics(parts, per)
            out["stacks"][f"probe + {w:g} x {r}"] = {**m, "meets_floor": _floor(m, lw, pb)}
    (RESULTS / "cv-stack.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    return out


# The fourth round (issue #13): e5's own retrieval similarity of the answer to the question
# (jprefs.classifiers.relevance), a zero-shot signal learned from far more data than the judged pairs,
# alone and stacked with the length, the probe and the fine-tuned rewards.
REL_PENALTIES = (1.0, 0.1, 0.01)       # the relevance weight's L2 penalty relative to an embedding weight's
REL_REWARDS = ("odin-s42/blend-0.1", "odin-s42/quality", "odin-s42/full",
               "odin-x3/blend-0.1", "odin-x3/quality", "odin-x3/full")


def relevance() -> dict:
    """The relevance of every response of the train + dev (CV) records and of the test parts, cached in
    WORK/relevance-{set}-{part}.npz (c, r: (n,) each, in the records' order)."""
    import numpy as np

    from jprefs.classifiers.data import load_rm_data
    from jprefs.classifiers.relevance import Relevance

    rel, out = None, {}
    for s in SETS:
        for part in ("train", "dev", "test"):
            f = WORK / f"relevance-{s}-{part}.npz"
            if not f.exists():
                rel = rel or Relevance("e5-small-offline", max_length=512)
                c, r = rel.pair_scores(load_rm_data(WORK / f"{s}-{part}.jsonl").pairs(),
                                       desc=f"relevance ({s}-{part})")
                np.savez(f, c=c, r=r)
            z = np.load(f)
            out[s, part] = z["c"], z["r"]
    return out


def _logistic(d, pen=None, l2: float = 1.0):
    """Weights of the no-intercept symmetric logistic model on difference features ``d`` (n, D), mean
    log-loss + l2/2 sum(pen * w^2) on RMS-standardised columns (``pen`` defaults to 1 per column), in the
    raw units of ``d``: the stack's own fit (:func:`jprefs.classifiers.stack.stack_weights`)."""
    from jprefs.classifiers.stack import stack_weights

    return stack_weights(d, l2, penalties=pen)


def _probe_rel_fit(e, rel, ln, groups, folds: int = 5):
    """The probe with the relevance as one more feature: per-response features [embedding, relevance,
    log length] as (chosen, rejected) arrays; the L2 strength and the relevance penalty chosen together
    by grouped CV on these (training) pairs by held-out log-loss, as the probe chooses its L2."""
    import numpy as np

    from jprefs.classifiers.probe import L2_GRID, LENGTH_PENALTY, grouped_folds

    xc = np.concatenate([e[0], rel[0][:, None], ln[0][:, None]], axis=1)
    xr = np.concatenate([e[1], rel[1][:, None], ln[1][:, None]], axis=1)
    d = xc - xr
    fold = grouped_folds(groups, folds, 0)
    best = None
    for rp in REL_PENALTIES:
        pen = np.ones(d.shape[1])
        pen[-2], pen[-1] = rp, LENGTH_PENALTY
        for l2 in L2_GRID:
            loss = 0.0
            for f in range(folds):
                w = _logistic(d[fold != f], pen, l2)
                loss += float(np.logaddexp(0, -(d[fold == f] @ w)).sum())
            if best is None or loss < best[0]:
                best = (loss, rp, l2, pen)
    return _logistic(d, best[3], best[2]), {"relevance_penalty": best[1], "l2": best[2]}


def _cross_fit(feat: dict, fold: dict, names) -> dict:
    """A cross-fitted stack: for each fold f, the weights of :func:`_logistic` on the difference features
    ``names`` of the pairs of every other fold (all sets pooled), applied to fold f's responses. ``feat``:
    set -> name -> (chosen (n,), rejected (n,)) in record order; ``fold``: set -> (n,) fold ids. Returns
    set -> fold -> (2m,) scores, chosen then rejected (the layout of :func:`_cv_metrics`)."""
    import numpy as np

    sets = list(feat)
    out = {s: {} for s in sets}
    for f in sorted({int(x) for s in sets for x in fold[s]}):
        d = np.concatenate([np.stack([feat[s][k][0] - feat[s][k][1] for k in names], 1)[fold[s] != f]
                            for s in sets])
        w = _logistic(d)
        for s in sets:
            te = fold[s] == f
            out[s][f] = np.concatenate([np.stack([feat[s][k][i][te] for k in names], 1) @ w for i in (0, 1)])
    return out


def cv_relevance() -> dict:
    """The fourth round, its rule written before any stack of relevance with a fine-tuned reward was
    scored (relevance alone, length + relevance and probe + relevance HAD been scored in an exploration
    of the same folds). Out of fold on the CV folds; every weight is fit on the training folds only
    (cross-fitted: a stack's weights for fold f are fit on the other folds' out-of-fold scores, both
    sets pooled). Candidates: relevance alone; length + relevance; the probe + relevance (its L2 and the
    relevance penalty chosen by grouped CV inside the training folds); each fine-tuned reward of
    REL_REWARDS + relevance, with and without log length; the probe + each reward + relevance. Rule:
    among the candidates that meet issue #13's floor (``_floor``), the highest mean accuracy over the two
    sets; none: ``recommended`` is None. RESULTS/cv-relevance.json."""
    import numpy as np

    from jprefs.classifiers.data import RMData
    from jprefs.classifiers.probe import log_length
    from jprefs.data.schema import prompt_key

    parts = _cv_parts()
    R = relevance()
    pairs = {s: RMData("records", parts[s][0]).pairs() for s in SETS}
    fold = {s: parts[s][1] for s in SETS}

    # per set: record-order (chosen, rejected) arrays of each feature
    feat = {s: {"relevance": tuple(np.concatenate([R[s, p][k] for p in ("train", "dev")]) for k in (0, 1)),
                "length": (log_length([len(p.chosen) for p in pairs[s]]),
                           log_length([len(p.rejected) for p in pairs[s]]))} for s in SETS}

    def to_fold(s, c, r):
        return {f: np.concatenate([c[fold[s] == f], r[fold[s] == f]]) for f in range(FOLDS)}

    def from_fold(s, per):         # fold -> (2m,) back to record-order (chosen, rejected)
        c, r = np.zeros(len(pairs[s])), np.zeros(len(pairs[s]))
        for f in range(FOLDS):
            m = int((fold[s] == f).sum())
            c[fold[s] == f], r[fold[s] == f] = per[f][:m], per[f][m:]
        return c, r

    have = _cv_done(SEED_VARIANTS)
    comp = _cv_oof(have) if have else {}
    if len(have) == len(SEED_VARIANTS):
        for h in ("quality", "blend-0.1", "full"):
            comp[f"odin-x3/{h}"] = _seed_mean(comp, have, h)
    comp["probe"] = _cv_probe_scores(parts)
    for name in comp:
        for s in SETS:
            feat[s][name] = from_fold(s, comp[name][s])

    def stack(names):
        return _cross_fit(feat, fold, names)

    cands = {"relevance": {s: to_fold(s, *feat[s]["relevance"]) for s in SETS},
             "length + relevance": stack(["length", "relevance"])}
    # the probe + relevance, refit per fold on the training folds of both sets
    E = {}
    for s in SETS:
        z = [np.load(WORK / f"probe-emb-{s}-{part}.npz") for part in ("train", "dev")]
        E[s] = np.concatenate([x["c"] for x in z]), np.concatenate([x["r"] for x in z])
    pr, chosen_pen = {s: {} for s in SETS}, {}
    for f in range(FOLDS):
        tr = {s: fold[s] != f for s in SETS}
        cat = lambda k, i: np.concatenate([feat[s][k][i][tr[s]] for s in SETS])   # noqa: E731
        e = tuple(np.concatenate([E[s][i][tr[s]] for s in SETS]) for i in (0, 1))
        groups = [prompt_key(p.prompt) for s in SETS for p, t in zip(pairs[s], tr[s]) if t]
        w, chosen_pen[f] = _probe_rel_fit(e, (cat("relevance", 0), cat("relevance", 1)),
                                          (cat("length", 0), cat("length", 1)), groups)
        for s in SETS:
            te = ~tr[s]
            x = [np.concatenate([E[s][i][te], feat[s]["relevance"][i][te][:, None],
                                 feat[s]["length"][i][te][:, None]], axis=1) @ w for i in (0, 1)]
            pr[s][f] = np.concatenate(x)
    cands["probe + relevance"] = pr
    for r in (r for r in REL_REWARDS if r in comp):
        cands[f"{r} + relevance"] = stack([r, "relevance"])
        cands[f"{r} + relevance + length"] = stack([r, "relevance", "length"])
        cands[f"probe + {r} + relevance"] = stack(["probe", r, "relevance"])
        cands[f"probe + {r}"] = stack(["probe", r])          # the same stack without relevance
    pb = _cv_metrics(parts, comp["probe"])
    lw = {s: pb[s]["longer_wins"] for s in SETS}
    out = {"_probe": pb, "seed_runs": have, "probe_relevance_choice": chosen_pen, "candidates": {}}
    for k, per in cands.items():
        m = _cv_metrics(parts, per)
        out["candidates"][k] = {**m, "meets_floor": _floor(m, lw, pb)}
    ok = [k for k, v in out["candidates"].items() if v["meets_floor"]]
    out["rule"] = cv_relevance.__doc__
    out["recommended"] = max(ok, key=lambda k: np.mean([out["candidates"][k][s]["accuracy"] for s in SETS])) \
        if ok else None
    (RESULTS / "cv-relevance.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    return out


def test_relevance() -> dict:
    """The confirmation read of the fourth round's pick on the test parts (this stack never saw them; other
    variants' test figures HAD been read in the first round). Written before the read: the components are
    trained on the train parts only (the ODIN seed-42 model ``train odin-s42``, dev choosing its epoch;
    the probe; relevance needs no training); the stack's three weights are fit on the dev parts (both
    sets pooled: the held-out split, as a recipe would fit them). Reported beside longer-wins and the
    probe on the same test pairs, with issue #13's floor. RESULTS/test-relevance.json."""
    import numpy as np

    from jprefs.classifiers.data import load_rm_data
    from jprefs.classifiers.probe import fit_probe_arrays, log_length
    from jprefs.classifiers.reward_model import RewardModel
    from jprefs.data.schema import prompt_key

    d = WORK / "models" / "odin-s42"
    rm = RewardModel.from_pretrained(d, device="cpu")
    rm.frozen_layer_cache = _train_layers(d)
    R = relevance()
    pairs = {(s, p): load_rm_data(WORK / f"{s}-{p}.jsonl").pairs() for s in SETS for p in ("train", "dev", "test")}
    E = {k: tuple(np.load(WORK / f"probe-emb-{k[0]}-{k[1]}.npz")[x] for x in ("c", "r")) for k in pairs}
    tr = [p for s in SETS for p in pairs[s, "train"]]
    pr = fit_probe_arrays(np.concatenate([E[s, "train"][0] for s in SETS]),
                          np.concatenate([E[s, "train"][1] for s in SETS]),
                          [len(p.chosen) for p in tr], [len(p.rejected) for p in tr],
                          [prompt_key(p.prompt) for p in tr], seed=0)
    feat = {}
    for (s, part), ps in pairs.items():
        if part == "train":
            continue
        lens = ([len(p.chosen) for p in ps], [len(p.rejected) for p in ps])
        q = _rewards(rm, ps)
        n = len(ps)
        feat[s, part] = {"probe": tuple(pr.score(E[s, part][i], lens[i]) for i in (0, 1)),
                         "relevance": R[s, part], "length": tuple(log_length(x) for x in lens),
                         **{f"odin-s42/{h}": (q[h][:n], q[h][n:]) for h in ("quality", "blend-0.1", "full")}}
    names = ["probe", "odin-s42/quality", "relevance"]
    w_dev = _logistic(np.concatenate([np.stack([feat[s, "dev"][k][0] - feat[s, "dev"][k][1] for k in names], 1)
                                      for s in SETS]))
    cvr = json.loads((RESULTS / "cv-relevance.json").read_text()) if (RESULTS / "cv-relevance.json").exists() else {}
    out = {"names": names, "weights_dev": w_dev.tolist(), "rule": test_relevance.__doc__, "test": {}}

    def figures(label, score):          # score(s) -> (chosen, rejected) on the test part
        out["test"][label] = {s: _metrics(np.concatenate(score(s)), pairs[s, "test"]) for s in SETS}

    for k in ("probe", "relevance", "odin-s42/quality", "odin-s42/blend-0.1", "odin-s42/full"):
        figures(k, lambda s, k=k: feat[s, "test"][k])
    figures("stack (weights fit on dev)",
            lambda s: tuple(np.stack([feat[s, "test"][k][i] for k in names], 1) @ w_dev for i in (0, 1)))
    lw = {s: out["test"]["probe"][s]["longer_wins"] for s in SETS}
    for v in out["test"].values():
        v["meets_floor"] = _floor(v, lw, out["test"]["probe"])
    out["cv_pick"] = cvr.get("recommended")
    (RESULTS / "test-relevance.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    return out


def stack_run() -> dict:
    """The recipe as it stands (its stack included: the seed-42 ODIN model's quality head + the probe +
    relevance, ``jprefs train-rm ... stack=[probe,relevance]``) trained on the train parts with the joined
    dev parts held out: the fourth round's test-read setup through the library instead of the bench.
    Its test figures per set come from the stack as a user loads it (``RewardModel.from_pretrained``);
    they should reproduce test-relevance.json's stack (same components, weights fit on the same dev
    pairs): a check of the product, not a new selection. RESULTS/stack.json."""
    import numpy as np

    from jprefs.classifiers.config import TrainRMConfig
    from jprefs.classifiers.data import load_rm_data
    from jprefs.classifiers.reward_model import RewardModel
    from jprefs.classifiers.stack import train_stack
    from jprefs.config import load_config

    out = WORK / "models" / "stack-s42"
    over = {k: v for k, v in {**BASE, **VARIANTS["odin-s42"]}.items() if k not in ("stack", "stack_head")}
    over.update(data=str(WORK / "ja_mt_bench-train.jsonl"), extra_data=[str(WORK / "rakuda-train.jsonl")],
                eval_data=str(WORK / "dev.jsonl"), output_dir=str(out))
    cfg = load_config(TrainRMConfig, str(RECIPE), over)
    t0 = time.time()
    m = train_stack(cfg)
    wall = time.time() - t0
    st = RewardModel.from_pretrained(out, device="cpu")
    bench = json.loads((RESULTS / "test-relevance.json").read_text()) if (RESULTS / "test-relevance.json").exists() \
        else {}
    res = {"weights": m["weights"], "offset": m["offset"], "held_out_cross_fitted": m["eval"],
           "bench_weights_dev": dict(zip(bench.get("names", []), bench.get("weights_dev", []))),
           "wall_seconds_this_call": wall, "test": {}}
    for s in SETS:
        pairs = load_rm_data(WORK / f"{s}-test.jsonl").pairs()
        r = st.score([p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs])
        got = _metrics(np.asarray(r, np.float64), pairs)
        res["test"][s] = {"stack": got, "bench_stack": bench.get("test", {}).get("stack (weights fit on dev)",
                                                                                  {}).get(s)}
    (RESULTS / "stack.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    return res


def _train_layers(d: Path) -> int:
    import yaml

    trained = yaml.safe_load((d / "config.yaml").read_text(encoding="utf-8"))
    if trained.get("train_layers") and trained.get("cache_frozen_layers", True):
        return int(trained["train_layers"])        # lower layers = the frozen backbone's
    return 0


def _figures(rm, path: Path) -> dict:
    """The bench's figures of every reward of ``rm`` on the pairs of ``path``."""
    from jprefs.classifiers.data import load_rm_data

    pairs = load_rm_data(path).pairs()
    return {h: _metrics(r, pairs) for h, r in _rewards(rm, pairs).items()}


def evaluate(part: str) -> dict:
    from jprefs.classifiers.reward_model import RewardModel

    res = {}
    for name in VARIANTS:
        d = WORK / "models" / name
        if not (d / "done.json").exists():
            continue
        rm = RewardModel.from_pretrained(d, device="cpu")
        rm.frozen_layer_cache = _train_layers(d)
        res[name] = {s: _figures(rm, WORK / f"{s}-{part}.jsonl") for s in SETS}
        res[name]["wall_seconds"] = json.loads((d / "wall.json").read_text())["seconds"]
    res["_probe"] = _probe(part)
    (RESULTS / f"{part}.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    return res


def _embeddings(emb, name: str, pairs):
    """Frozen-backbone embeddings of a file's chosen and rejected responses, cached in WORK (npz)."""
    import numpy as np

    from jprefs.classifiers.probe import embed_pairs

    f = WORK / f"probe-emb-{name}.npz"
    if f.exists():
        z = np.load(f)
        if len(z["c"]) == len(pairs):
            return z["c"], z["r"]
    c, r = embed_pairs(pairs, emb, desc=f"probe embed ({name})")
    np.savez(f, c=c, r=r)
    return c, r


def probe() -> dict:
    """The probe baseline (frozen e5 + log length, fit on both train parts), and the same probe fit with
    600 English hh-rlhf pairs added (the cross-lingual question, asked of the probe), on dev and test."""
    import numpy as np
    import yaml

    from jprefs.classifiers.data import load_rm_data
    from jprefs.classifiers.probe import Embedder, fit_probe_arrays
    from jprefs.data.schema import prompt_key
    from jprefs.eval.metrics import accuracy_metrics

    rcp = yaml.safe_load(RECIPE.read_text())
    emb = Embedder(rcp["backbone"], pooling=rcp["pooling"], input_prefix=rcp["input_prefix"],
                   max_length=rcp["max_length"], max_prompt_length=rcp["max_prompt_length"])
    # the lower layers' states the variants' scoring left in the memo (same frozen backbone layers)
    emb.frozen_layer_cache = int(rcp.get("train_layers") or 0)
    files = {f"{s}-{part}": load_rm_data(WORK / f"{s}-{part}.jsonl").pairs()
             for s in SETS for part in ("train", "dev", "test")}
    _hh_pairs(WORK / "hh-en.jsonl")
    files["hh-en"] = load_rm_data(WORK / "hh-en.jsonl").pairs()
    E = {k: _embeddings(emb, k, v) for k, v in files.items()}
    out = {}
    for label, train_files in (("probe", [f"{s}-train" for s in SETS]),
                               ("probe+hh-en", [f"{s}-train" for s in SETS] + ["hh-en"])):
        ec = np.concatenate([E[k][0] for k in train_files])
        er = np.concatenate([E[k][1] for k in train_files])
        pairs = [p for k in train_files for p in files[k]]
        pr = fit_probe_arrays(ec, er, [len(p.chosen) for p in pairs], [len(p.rejected) for p in pairs],
                              [prompt_key(p.prompt) for p in pairs], seed=0)
        res = {"l2": pr.l2, "cv_accuracy": pr.cv_accuracy, "length_weight": pr.length_weight,
               "train_pairs": len(pairs)}
        for part in ("dev", "test"):
            for s in SETS:
                k = f"{s}-{part}"
                ps = files[k]
                sc, sr = pr.score(E[k][0], [len(p.chosen) for p in ps]), pr.score(E[k][1], [len(p.rejected) for p in ps])
                m = accuracy_metrics(sc, sr, [len(p.chosen) for p in ps], [len(p.rejected) for p in ps],
                                     [prompt_key(p.prompt) for p in ps], seed=0)
                res.setdefault(part, {})[s] = {"accuracy": m["pairwise_accuracy"], "ci95": m["ci95"],
                                               "chosen_shorter": m["length_controlled_accuracy"],
                                               "longer_wins": m["length_baseline_accuracy"]}
        out[label] = res
    (RESULTS / "probe.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def _probe(part: str) -> dict | None:
    f = RESULTS / "probe.json"
    if not f.exists():
        return None
    return {k: {"dev_or_test": v[part], "l2": v["l2"], "length_weight": v["length_weight"]}
            for k, v in json.loads(f.read_text()).items()}


def choose(dev: dict) -> str:
    """The recommended (variant, reward): every reward of every variant is a candidate (a one-head model's
    reward; a two-head model's quality, length, full and blend-b heads); among those whose mean dev
    accuracy on the pairs where the chosen answer is the shorter one is at least 0.35, the highest mean dev
    accuracy over the two sets; if none reaches 0.35, the highest mean accuracy. Returned as VARIANT/REWARD."""
    def mean(name, head, key):
        return sum(dev[name][s][head][key] for s in SETS) / len(SETS)

    cands = [(n, h) for n in dev if not n.startswith("_") and isinstance(dev[n], dict) and "rakuda" in dev[n]
             for h in dev[n]["ja_mt_bench"]]
    ok = [c for c in cands if mean(*c, "chosen_shorter") >= 0.35] or cands
    best = max(ok, key=lambda c: (mean(*c, "accuracy"), mean(*c, "chosen_shorter")))
    return "/".join(best)


def recipe_check() -> dict:
    """The recommended recipe as a user runs it, end to end and timed: `jprefs train-rm RECIPE -o
    WORK/recipe` (both full files, each split by question, 20% held out), then `jprefs eval rm` on each
    file's held-out pairs with the probe fit on the recipe's own training pairs. A stacked recipe
    (``stack:`` in the recipe) is read from its own cross-fitted held-out figures (its weights were fit
    on that split, so `eval rm` of the stack there would be in-sample); `eval rm` then scores its reward
    model alone (every head) beside longer-wins and the probe. RESULTS/recipe.json."""
    import subprocess

    from jprefs.classifiers.data import load_rm_data
    from jprefs.data.io import write_jsonl

    out = WORK / "recipe"
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "jprefs.cli", "train-rm", str(RECIPE), "-o", str(out)], check=True,
                   cwd=ROOT)
    wall = time.time() - t0
    stacked = (out / "jprefs_stack.json").exists()
    model = out / "reward" if stacked else out
    held = {r.id for r in load_rm_data(model / "eval_split.jsonl").records}
    data = []
    train = []
    for s, path in SETS.items():
        recs = load_rm_data(path).records
        write_jsonl(WORK / f"recipe-held-{s}.jsonl", [r for r in recs if r.id in held])
        data += ["--data", str(WORK / f"recipe-held-{s}.jsonl")]
        train += [r for r in recs if r.id not in held]
    write_jsonl(WORK / "recipe-train.jsonl", train)
    ev = WORK / "recipe-eval"
    subprocess.run([sys.executable, "-m", "jprefs.cli", "eval", "rm", "--model", str(model), *data,
                    *(["--all-heads"] if stacked else []), "--probe-train", str(WORK / "recipe-train.jsonl"),
                    "-o", str(ev)], check=True, cwd=ROOT)
    m = json.loads((ev / "metrics.json").read_text(encoding="utf-8"))
    res = {"wall_seconds": wall, "train_pairs": len(train), "held_out_pairs": len(held), "eval_metrics": m}
    if stacked:
        sm = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        res["stack"] = {k: sm[k] for k in ("weights", "offset", "eval", "eval_by_file", "length_sensitivity")
                        if k in sm}
    (RESULTS / "recipe.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    return res


def _cell(v) -> str:
    return f"{v['accuracy']:.3f} [{v['ci95'][0]:.2f}, {v['ci95'][1]:.2f}]"


def _lc(v) -> str:
    return "n/a" if v["chosen_shorter"] is None else f"{v['chosen_shorter']:.2f}"


# the header of every table of this bench: per set, accuracy, chosen-shorter accuracy, Spearman with length
_HEADER = ["| variant / reward | " + " | ".join(f"{s} acc [95% CI] | {s} chosen shorter | {s} Spearman(len)"
                                             for s in SETS) + " |",
           "|---|" + "---|---|---|" * len(SETS)]


def cv_table() -> str:
    """The markdown table of the grouped cross-validation (RESULTS/cv.json): out-of-fold figures of every
    reward of every CV variant beside longer-wins and the probe fit on the same folds."""
    res = json.loads((RESULTS / "cv.json").read_text(encoding="utf-8"))
    pr = res["_probe"]

    lines = [*_HEADER,
             "| longer wins | " + " | ".join(f"{pr[s]['longer_wins']:.3f} | 0 | 1" for s in SETS) + " |",
             "| probe (frozen e5 + log length) | " + " | ".join(f"{_cell(pr[s])} | {_lc(pr[s])} | "
                                                              f"{pr[s]['spearman_length']:.2f}" for s in SETS) + " |"]
    for name in res["variants"]:
        for head in res[name]["ja_mt_bench"]:
            v = res[name]
            mark = " **(chosen)**" if f"{name}/{head}" == res["recommended"] else ""
            lines.append(f"| {name} / {head}{mark} | " + " | ".join(
                f"{_cell(v[s][head])} | {_lc(v[s][head])} | {v[s][head]['spearman_length']:.2f}" for s in SETS) + " |")
    return "\n".join(lines)


def table(part: str) -> str:
    """The markdown table of PART (dev or test): every variant and reward beside both baselines."""
    res = json.loads((RESULTS / f"{part}.json").read_text(encoding="utf-8"))
    pr = res.get("_probe") or {}

    lines = [*_HEADER]
    first = next(v for k, v in res.items() if not k.startswith("_"))
    lines.append("| longer wins | " + " | ".join(f"{next(iter(first[s].values()))['longer_wins']:.3f} | 0 | 1"
                                              for s in SETS) + " |")
    for name in ("probe", "probe+hh-en"):
        if name in pr:
            lines.append(f"| {name} (frozen e5 + log length) | " + " | ".join(
                f"{_cell(pr[name]['dev_or_test'][s])} | {_lc(pr[name]['dev_or_test'][s])} | -" for s in SETS) + " |")
    for name, v in res.items():
        if name.startswith("_"):
            continue
        for head in v["ja_mt_bench"]:
            lines.append(f"| {name} / {head} | " + " | ".join(
                f"{_cell(v[s][head])} | {_lc(v[s][head])} | {v[s][head]['spearman_length']:.2f}" for s in SETS) + " |")
    return "\n".join(lines)


def plot(part: str) -> Path:
    """Accuracy against chosen-shorter accuracy for every (variant, reward), one panel per set, with
    longer-wins (a point at chosen-shorter 0) and the probe; the 0.35 floor dashed."""
    from jprefs.eval.plots import pyplot, save_figure

    plt = pyplot()
    res = json.loads((RESULTS / f"{part}.json").read_text(encoding="utf-8"))
    if part == "cv":                 # cv.json: variants listed, the probe's figures per set
        res = {**{k: res[k] for k in res["variants"]},
               "_probe": {"probe": {"dev_or_test": res["_probe"]}}}
    elif part in ("cv-relevance", "test-relevance"):     # the fourth round: name -> set -> figures
        cands = dict(res["candidates"] if part == "cv-relevance" else res["test"])
        pb = res["_probe"] if part == "cv-relevance" else cands.pop("probe")
        res = {**{k: {s: {"reward": v[s]} for s in SETS} for k, v in cands.items()},
               "_probe": {"probe": {"dev_or_test": pb}}}
    fig, axes = plt.subplots(1, len(SETS), figsize=(12, 5))
    for ax, s in zip(axes, SETS):
        for name, v in res.items():
            if name.startswith("_"):
                continue
            for head, x in v[s].items():
                if x["chosen_shorter"] is None:
                    continue
                ax.scatter(x["chosen_shorter"], x["accuracy"], s=25)
                ax.annotate(f"{name}/{head}" if head != "reward" else name, (x["chosen_shorter"], x["accuracy"]),
                            fontsize=7, xytext=(3, 3), textcoords="offset points")
        first = next(v for k, v in res.items() if not k.startswith("_"))
        lw = next(iter(first[s].values()))["longer_wins"]
        ax.axhline(lw, color="k", ls="--", lw=1, label=f"longer wins {lw:.3f}")
        pr = (res.get("_probe") or {}).get("probe")
        if pr:
            ax.axhline(pr["dev_or_test"][s]["accuracy"], color="gray", ls="-.", lw=1,
                       label=f"probe {pr['dev_or_test'][s]['accuracy']:.3f}")
        ax.axvline(0.35, color="r", ls=":", lw=1, label="chosen-shorter floor 0.35")
        ax.set_xlabel("accuracy where the chosen answer is the shorter one")
        ax.set_ylabel("pairwise accuracy")
        ax.set_title(f"{s} ({part})")
        ax.legend(fontsize=7, loc="lower left")
    save_figure(fig, RESULTS / f"{part}.png")
    return RESULTS / f"{part}.png"


def plot_seeds() -> Path:
    """The seed round (cv-ensemble.json): per set, each ODIN reward's mean over the three seeds with
    bars from the lowest to the highest seed (accuracy and chosen-shorter accuracy), the three-seed
    ensemble as a star, longer-wins, the probe and the 0.35 floor. RESULTS/cv-ensemble.png."""
    from jprefs.eval.plots import pyplot, save_figure

    plt = pyplot()
    res = json.loads((RESULTS / "cv-ensemble.json").read_text(encoding="utf-8"))
    fig, axes = plt.subplots(1, len(SETS), figsize=(12, 5))
    for ax, s in zip(axes, SETS):
        for i, (h, sp) in enumerate(res["spread"][s].items()):
            a, c = sp["accuracy"], sp["chosen_shorter"]
            col = f"C{i % 10}"
            ax.errorbar(c["mean"], a["mean"], xerr=[[c["mean"] - c["min"]], [c["max"] - c["mean"]]],
                        yerr=[[a["mean"] - a["min"]], [a["max"] - a["mean"]]], fmt="o", color=col, ms=4,
                        capsize=2, label=f"odin/{h} (3 seeds)")
            e = res["ensemble"][s][h]
            ax.scatter(e["chosen_shorter"], e["accuracy"], marker="*", s=90, color=col)
        pb = res["_probe"][s]
        ax.axhline(pb["longer_wins"], color="k", ls="--", lw=1, label=f"longer wins {pb['longer_wins']:.3f}")
        ax.axhline(pb["accuracy"], color="gray", ls="-.", lw=1, label=f"probe {pb['accuracy']:.3f}")
        ax.axvline(0.35, color="r", ls=":", lw=1, label="chosen-shorter floor 0.35")
        ax.set_xlabel("accuracy where the chosen answer is the shorter one")
        ax.set_ylabel("pairwise accuracy (out of fold)")
        ax.set_title(f"{s}: seed spread (bars), 3-seed ensemble (stars)")
        ax.legend(fontsize=6, loc="lower left")
    save_figure(fig, RESULTS / "cv-ensemble.png")
    return RESULTS / "cv-ensemble.png"


def recipe_ensemble_check(seeds=(42, 43, 44)) -> dict:
    """The recipe's stack over a seed ensemble (``ensemble_seeds``), as a user runs it: `jprefs train-rm
    RECIPE 'ensemble_seeds=[...]' -o WORK/recipe-ens` (a rerun of a finished run does nothing), then its
    cross-fitted held-out figures beside the one-seed recipe's (RESULTS/recipe.json, same split: the split
    seed is the recipe's seed). Measured after the one-seed recipe's figures were read: it chooses nothing.
    RESULTS/recipe-ens.json."""
    import subprocess

    out = WORK / "recipe-ens"
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "jprefs.cli", "train-rm", str(RECIPE), f"ensemble_seeds={list(seeds)}",
                    "-o", str(out)], check=True, cwd=ROOT)
    sm = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    ens = json.loads((out / "reward" / "metrics.json").read_text(encoding="utf-8"))
    one = json.loads((RESULTS / "recipe.json").read_text(encoding="utf-8")).get("stack", {})
    keys = ("pairs", "pairwise_accuracy", "pairwise_accuracy_ci95", "length_baseline_accuracy",
            "length_controlled_accuracy", "length_controlled_pairs", "accuracy_minus_length_baseline_ci95",
            "components")
    res = {"seeds": list(seeds), "wall_seconds_this_call": time.time() - t0,
           "weights": sm["weights"], "offset": sm["offset"],
           "reward_epoch_selected_on_eval": sm.get("reward_epoch_selected_on_eval"),
           "eval_by_file": {f: {k: v.get(k) for k in keys} for f, v in sm["eval_by_file"].items()},
           "one_seed_recipe_eval_by_file": {f: {k: v.get(k) for k in keys}
                                            for f, v in one.get("eval_by_file", {}).items()},
           "ensemble_reward_held_out": {k: ens.get(k) for k in ("eval", "members")}}
    (RESULTS / "recipe-ens.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    return res


# The third judged set (2026-12-03): GPT-4 pairwise verdicts of the Japanese Vicuna-QA benchmark
# (github.com/ku-nlp/ja-vicuna-qa-benchmark, Apache-2.0; 80 questions, 6 models each against
# text-davinci-003, both answer orders judged), outside ../shared: pass a checkout.
THIRD_JUDGMENTS = "data/jp_bench/model_judgment/pairwise/gpt-4"


def _eval_part(x: dict) -> dict:
    """An `eval rm` result entry in the bench's figure names (as :func:`_metrics` gives them)."""
    return {"accuracy": x["pairwise_accuracy"], "ci95": x["ci95"], "longer_wins": x["length_baseline_accuracy"],
            "minus_longer": x["accuracy_minus_length_baseline"],
            "minus_longer_ci95": x["accuracy_minus_length_baseline_ci95"],
            "chosen_shorter": x["length_controlled_accuracy"], "chosen_shorter_n": x["length_controlled_n"],
            "spearman_length": x["reward_length_corr"]["spearman"], "pairs": x["n_pairs"]}


def third(checkout: Path) -> dict:
    """The confirmation read on a third Japanese judged set that chose nothing (issue #13).

    Rule, fixed in this docstring and committed before any figure of this set existed:
      - data: every ``pairwise:*.jsonl`` of ``THIRD_JUDGMENTS`` in the checkout, converted by
        `jprefs data convert --source fastchat-pairwise --license apache-2.0` semantics (a pair only
        when both answer orders give the same winner; ties, inconsistent verdicts rejected and counted);
        no prompt may be shared with ja_mt_bench or Rakuda (asserted);
      - read: the recommended recipe as trained by ``recipe`` (WORK/recipe: the stack, and its ODIN
        model's heads through --all-heads), and for context only the three-seed stack of ``recipe-ens``
        and zero-shot relevance alone; baselines on the same pairs: longer-wins and the probe fit on
        the recipe's own training pairs (WORK/recipe-train.jsonl), as in ``recipe``;
      - verdict (``confirms``): the recipe's stack is above longer-wins AND above the probe in pairwise
        accuracy AND right on at least 0.35 of the pairs whose chosen answer is the shorter one (issue
        #13's floor); ``goal``: also above longer-wins by more than the interval's half-width and >= 0.5
        chosen-shorter. Read once; nothing read here changes the recipe.
    RESULTS/third.json."""
    import subprocess

    from jprefs.classifiers.data import load_rm_data
    from jprefs.data.adapters import Conversion, convert_to_files
    from jprefs.data.schema import prompt_key

    files = sorted((checkout / THIRD_JUDGMENTS).glob("pairwise:*.jsonl"))
    if not files:
        raise SystemExit(f"no judgment files under {checkout / THIRD_JUDGMENTS}: pass a checkout of "
                         "github.com/ku-nlp/ja-vicuna-qa-benchmark")
    raw = WORK / "third-judgments.jsonl"
    raw.write_text("".join(f.read_text(encoding="utf-8") for f in files), encoding="utf-8")
    pairs_path = WORK / "third-ja-vicuna-qa.jsonl"
    conv = Conversion(raw, "fastchat-pairwise", license="apache-2.0")
    summary = convert_to_files(conv, pairs_path, WORK / "third-ja-vicuna-qa.rejects.jsonl")
    recs = load_rm_data(pairs_path).records
    seen = {prompt_key(r.prompt) for path in SETS.values() for r in load_rm_data(path).records}
    shared = sum(prompt_key(r.prompt) in seen for r in recs)
    assert shared == 0, f"{shared} pairs of the third set share a prompt with the training sets"
    ev = WORK / "third-eval"
    subprocess.run([sys.executable, "-m", "jprefs.cli", "eval", "rm", "--model", f"recipe={WORK / 'recipe'}",
                    "--model", f"recipe-ens={WORK / 'recipe-ens'}", "--all-heads",
                    "--data", f"ja_vicuna_qa={pairs_path}", "--probe-train", str(WORK / "recipe-train.jsonl"),
                    "-o", str(ev)], check=True, cwd=ROOT)
    m = json.loads((ev / "metrics.json").read_text(encoding="utf-8"))
    rel = _eval_part(m["results"]["recipe:relevance"]["ja_vicuna_qa"])     # the stack's part, scored alone
    d = m["data"]["ja_vicuna_qa"]
    pb = d["probe_baseline"]
    st = m["results"]["recipe"]["ja_vicuna_qa"]
    lw = d["length_baseline_accuracy"]
    half = (st["ci95"][1] - st["ci95"][0]) / 2
    confirms = bool(st["pairwise_accuracy"] > lw and st["pairwise_accuracy"] > pb["accuracy"]
                    and st["length_controlled_accuracy"] >= 0.35)
    goal = bool(confirms and st["pairwise_accuracy"] - lw > half and st["length_controlled_accuracy"] >= 0.5)
    keys = ("n_pairs", "n_prompts", "pairwise_accuracy", "ci95", "accuracy_minus_length_baseline",
            "accuracy_minus_length_baseline_ci95", "length_controlled_accuracy", "length_controlled_ci95",
            "length_controlled_n", "reward_length_corr", "reward_per_100_chars")
    res = {"rule": third.__doc__, "source": "github.com/ku-nlp/ja-vicuna-qa-benchmark " + THIRD_JUDGMENTS,
           "files": [f.name for f in files], "convert": summary, "pairs": len(recs),
           "prompts": len({prompt_key(x.prompt) for x in recs}), "longer_wins": lw,
           "probe": {k: pb.get(k) for k in ("accuracy", "ci95", "length_controlled_accuracy",
                                            "length_controlled_n")},
           "probe_paired": {k: v for k, v in pb.get("models", {}).items()},
           "models": {lab: {k: v["ja_vicuna_qa"].get(k) for k in keys} for lab, v in m["results"].items()},
           "relevance": rel, "confirms": confirms, "goal": goal}
    (RESULTS / "third.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    return res


def transfer() -> dict:
    """Leave one judged set out (after ``third``; an evaluation that chooses nothing, the recipe as
    committed): the recipe trained on two of the three Japanese judged sets (ja_mt_bench, Rakuda,
    Vicuna-QA; its own 20 % held out by question picks the epoch and fits the stack's weights) and
    scored on EVERY pair of the third, a question set and judge prompt it never saw, beside longer-wins,
    the probe fit on the same training pairs, and zero-shot relevance. The Vicuna-QA row is ``third``'s
    (the recipe as a user trains it). This is the situation of a user whose prompts come from elsewhere.
    RESULTS/transfer.json."""
    import subprocess

    from jprefs.classifiers.data import load_rm_data
    from jprefs.data.io import write_jsonl

    sets = {**SETS, "ja_vicuna_qa": WORK / "third-ja-vicuna-qa.jsonl"}
    if not sets["ja_vicuna_qa"].exists():
        raise SystemExit("run `python bench/rm_debias.py third CHECKOUT` first (it converts the Vicuna-QA verdicts)")
    res = {}
    keys = ("n_pairs", "n_prompts", "pairwise_accuracy", "ci95", "accuracy_minus_length_baseline",
            "accuracy_minus_length_baseline_ci95", "length_controlled_accuracy", "length_controlled_n",
            "reward_length_corr")
    for held in ("ja_mt_bench", "rakuda"):
        a, b = [s for s in sets if s != held]
        out = WORK / f"transfer-no-{held}"
        t0 = time.time()
        subprocess.run([sys.executable, "-m", "jprefs.cli", "train-rm", str(RECIPE), f"data={sets[a]}",
                        f"extra_data=[{sets[b]}]", f"dataset_name={a} + {b} (GPT-4 verdicts)",
                        "data_license=apache-2.0", "-o", str(out)], check=True, cwd=ROOT)
        wall = time.time() - t0
        held_ids = {r.id for r in load_rm_data(out / "reward" / "eval_split.jsonl").records}
        train = [r for s in (a, b) for r in load_rm_data(sets[s]).records if r.id not in held_ids]
        write_jsonl(WORK / f"transfer-no-{held}-train.jsonl", train)
        ev = WORK / f"transfer-no-{held}-eval"
        subprocess.run([sys.executable, "-m", "jprefs.cli", "eval", "rm", "--model", f"recipe={out}", "--all-heads",
                        "--data", f"{held}={sets[held]}", "--probe-train", str(WORK / f"transfer-no-{held}-train.jsonl"),
                        "-o", str(ev)], check=True, cwd=ROOT)
        m = json.loads((ev / "metrics.json").read_text(encoding="utf-8"))
        d = m["data"][held]
        sm = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        res[held] = {"trained_on": [a, b], "train_pairs": len(train), "train_wall_seconds": wall,
                     "weights": sm.get("weights"), "longer_wins": d["length_baseline_accuracy"],
                     "probe": {k: d["probe_baseline"].get(k) for k in ("accuracy", "ci95", "length_controlled_accuracy",
                                                                       "length_controlled_n")},
                     "probe_paired": d["probe_baseline"].get("models", {}),
                     "relevance": _eval_part(m["results"]["recipe:relevance"][held]),
                     "models": {lab: {k: v[held].get(k) for k in keys} for lab, v in m["results"].items()}}
        (RESULTS / "transfer.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    t = json.loads((RESULTS / "third.json").read_text(encoding="utf-8"))
    res["ja_vicuna_qa"] = {"trained_on": ["ja_mt_bench", "rakuda"], "from": "third.json",
                           "longer_wins": t["longer_wins"], "probe": t["probe"], "relevance": t["relevance"],
                           "models": {k: v for k, v in t["models"].items() if not k.startswith("recipe-ens")}}
    (RESULTS / "transfer.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    return res


GRADED_JUDGE = "data/judgements/judge_gpt-4.1-2025-04-14"
GRADED_SETS = {"elyza_tasks_100": ("elyza__ELYZA-tasks-100", 2.0),     # 1-5 grades, margin >= 30 % of the range
               "tengu_bench": ("lightblue__tengu_bench", 3.0)}          # 0-10 grades
# the questions' own licences (shaberi's code and files are Apache-2.0; the answers are many models' outputs):
# ELYZA-tasks-100 is CC BY-SA 4.0, Tengu-Bench's card (lightblue/tengu_bench) states none
GRADED_LICENSES = {"elyza_tasks_100": "cc-by-sa-4.0", "tengu_bench": "unknown"}
GRADED_MAX_PAIRS = 8                # per question: 4 chosen-longer + 4 chosen-shorter with --length-balance


def _graded_rows(checkout: Path, folder: str, name: str) -> tuple[list[dict], dict]:
    """One rm-pairs row per question: every model's answer and its grade (null where the judge gave
    none), in model-file order, as `jprefs data group DIR/*.json --map prompt=Question,response=ModelAnswer,
    score=score` writes it; ids by position (``{name}-000``: the seeded pair draws of the recorded runs
    depend on them), the question set's licence and ``meta.benchmark``. The counts of what was read."""
    import tempfile

    from jprefs.data.group import group_to_files
    from jprefs.data.io import iter_jsonl

    files = sorted((checkout / GRADED_JUDGE / folder).glob("*.json"))
    if not files:
        raise SystemExit(f"no judgment files under {checkout / GRADED_JUDGE / folder}: pass a checkout of "
                         "github.com/shisa-ai/shaberi")
    with tempfile.TemporaryDirectory() as tmp:
        g = group_to_files(files, Path(tmp) / "graded.jsonl", {"prompt": "Question", "response": "ModelAnswer",
                                                                "score": "score"})
        rows = [r.data for r in iter_jsonl(Path(tmp) / "graded.jsonl")]
    if g["answers_rejected"]:      # the recorded runs used every answer row
        raise SystemExit(f"{folder}: {g['answers_rejected']} answer rows rejected ({g['rejects_by_reason']})")
    for i, r in enumerate(rows):
        r.update(id=f"{name}-{i:03d}", prompt=r["prompt"][0]["content"], license=GRADED_LICENSES[name],
                 source=f"github.com/shisa-ai/shaberi {GRADED_JUDGE}/{folder}",
                 meta={"benchmark": name, "models": r["meta"]["models"]})
    return rows, {"files": g["files"], "answers": g["answers_in"], "ungraded": g["ungraded"], "not_text": 0,
                  "questions": g["prompts_out"]}


def _graded_pairs(checkout: Path, tag: str, *rm_pairs_args: str, seen: set | None = None) -> list:
    """Per graded set: its rows (WORK/{tag}-{set}-graded.jsonl) and their pairs by `jprefs data rm-pairs
    --scores scores --pairs all --min-margin M --seed 0 ARGS` (WORK/{tag}-{set}-pairs.jsonl); ``seen``:
    evaluation prompts none may equal (asserted). Returns ``[(set, pairs file, read counts, rm-pairs summary)]``."""
    import subprocess

    from jprefs.data.io import write_jsonl
    from jprefs.data.schema import as_messages, prompt_key

    out = []
    for name, (folder, margin) in GRADED_SETS.items():
        rows, counts = _graded_rows(checkout, folder, name)
        if seen is not None:
            shared = sum(prompt_key(as_messages(r["prompt"])) in seen for r in rows)
            assert shared == 0, f"{shared} {name} questions are prompts of an evaluation set"
        write_jsonl(WORK / f"{tag}-{name}-graded.jsonl", rows)
        pairs = WORK / f"{tag}-{name}-pairs.jsonl"
        subprocess.run([sys.executable, "-m", "jprefs.cli", "data", "rm-pairs", str(WORK / f"{tag}-{name}-graded.jsonl"),
                        "--scores", "scores", "--pairs", "all", "--min-margin", str(margin), "--seed", "0",
                        *rm_pairs_args, "-o", str(pairs)], check=True, cwd=ROOT)
        out.append((name, pairs, counts, json.loads((WORK / f"{tag}-{name}-pairs.summary.json").read_text(encoding="utf-8"))))
    return out


def graded(checkout: Path, *, tag: str = "graded") -> dict:
    """A recipe trained on OTHER questions, graded by a judge, scored on all three Japanese judged sets
    (issue #13: the levers left were more, more varied judged pairs; the quality head had learnt the
    judged benchmarks' questions).

    Rule, fixed in this docstring and committed before any model was trained on these pairs:
      - training data: shaberi's GPT-4.1 single-answer grades (github.com/shisa-ai/shaberi, Apache-2.0,
        ``GRADED_JUDGE``) of ~169 models' answers to ELYZA-tasks-100 (100 questions, grades 1-5) and
        Tengu-Bench (120 questions, 0-10); shaberi's ja-mt-bench and Rakuda folders are NOT read (their
        questions are those of the evaluation sets) and no training prompt may equal a prompt of
        ja_mt_bench, Rakuda or Vicuna-QA (asserted). The judge (GPT-4.1, the newest with the most models;
        shaberi's README calls the GPT-4/4-Turbo judges inadequate) was chosen before reading anything;
      - pairs: `jprefs data rm-pairs --scores scores --pairs all --min-margin M --length-balance
        --max-pairs 8 --seed 0`, M = 30 % of the grade range rounded up (2 on 1-5, 3 on 0-10): per
        question, up to 4 pairs with the longer answer chosen and as many with the shorter, so that on
        the training pairs longer-wins is 0.5 by construction (drawn without ``--length-balance`` the
        same pairs choose the longer answer 0.505 / 0.515 of the time: this judge, given a reference
        answer and criteria, hardly rewards length, so no unbalanced variant is trained);
      - model: the recipe as committed (classifiers/recipes/e5-small-ja-debiased.yaml: ODIN + stack
        with probe and relevance), data = these pairs; its own 20 % held out by question picks the epoch
        and fits the stack's weights (no evaluation set is seen in training or selection);
      - read: every pair of ja_mt_bench (863), Rakuda (945) and Vicuna-QA (426, converted by ``third``)
        with `jprefs eval rm --all-heads`, beside longer-wins and the probe fit on the same training
        pairs; verdict per set (``floor``): the stack above longer-wins AND above the probe AND
        chosen-shorter >= 0.35; ``confirms`` when it holds on all three sets. Read once.
    RESULTS/{tag}.json."""
    import subprocess

    from jprefs.classifiers.data import load_rm_data
    from jprefs.data.io import write_jsonl
    from jprefs.data.schema import prompt_key

    evals = {**SETS, "ja_vicuna_qa": WORK / "third-ja-vicuna-qa.jsonl"}
    if not evals["ja_vicuna_qa"].exists():
        raise SystemExit("run `python bench/rm_debias.py third CHECKOUT` first (it converts the Vicuna-QA verdicts)")
    seen = {prompt_key(r.prompt) for p in evals.values() for r in load_rm_data(p).records}
    WORK.mkdir(parents=True, exist_ok=True)
    res: dict = {"rule": graded.__doc__, "source": f"github.com/shisa-ai/shaberi {GRADED_JUDGE}", "sets": {},
                 "licenses": {"shaberi": "apache-2.0", **GRADED_LICENSES}}
    pair_files = []
    for name, out, counts, s in _graded_pairs(checkout, tag, "--max-pairs", str(GRADED_MAX_PAIRS), "--length-balance",
                                              seen=seen):
        res["sets"][name] = {"read": counts, "rm_pairs": {k: s[k] for k in (
            "rows_in", "rows_paired", "rows_rejected", "pairs_out", "rejects_by_reason", "pairs_dropped",
            "responses", "responses_scored", "responses_unscored", "responses_duplicate", "responses_invalid",
            "length")}}
        pair_files.append(out)
    model = WORK / tag
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "jprefs.cli", "train-rm", str(RECIPE), f"data={pair_files[0]}",
                    f"extra_data=[{pair_files[1]}]", "dataset_name=shaberi GPT-4.1 grades: ELYZA-tasks-100 + "
                    "Tengu-Bench (length-balanced pairs)", "-o", str(model)], check=True, cwd=ROOT)
    res["train_wall_seconds"] = time.time() - t0
    held = {r.id for r in load_rm_data(model / "reward" / "eval_split.jsonl").records}
    train_recs = [r for p in pair_files for r in load_rm_data(p).records if r.id not in held]
    write_jsonl(WORK / f"{tag}-train.jsonl", train_recs)
    res["train_pairs"], res["held_out_pairs"] = len(train_recs), len(held)
    ev = WORK / f"{tag}-eval"
    subprocess.run([sys.executable, "-m", "jprefs.cli", "eval", "rm", "--model", f"{tag}={model}", "--all-heads",
                    *[x for k, p in evals.items() for x in ("--data", f"{k}={p}")],
                    "--probe-train", str(WORK / f"{tag}-train.jsonl"), "-o", str(ev)], check=True, cwd=ROOT)
    m = json.loads((ev / "metrics.json").read_text(encoding="utf-8"))
    keys = ("n_pairs", "n_prompts", "pairwise_accuracy", "ci95", "accuracy_minus_length_baseline",
            "accuracy_minus_length_baseline_ci95", "length_controlled_accuracy", "length_controlled_n",
            "reward_length_corr", "reward_per_100_chars")
    sm = json.loads((model / "metrics.json").read_text(encoding="utf-8"))
    res["stack_weights"] = sm.get("weights")
    res["eval"] = {}
    for k in evals:
        d = m["data"][k]
        st = m["results"][tag][k]
        pb = d["probe_baseline"]
        lw = d["length_baseline_accuracy"]
        floor = bool(st["pairwise_accuracy"] > lw and st["pairwise_accuracy"] > pb["accuracy"]
                     and st["length_controlled_accuracy"] >= 0.35)
        res["eval"][k] = {"longer_wins": lw, "probe": {x: pb.get(x) for x in ("accuracy", "ci95",
                                                                             "length_controlled_accuracy",
                                                                             "length_controlled_n")},
                          "probe_paired": pb.get("models", {}),
                          "models": {lab: {x: v[k].get(x) for x in keys} for lab, v in m["results"].items()},
                          "floor": floor}
    res["confirms"] = all(v["floor"] for v in res["eval"].values())
    (RESULTS / f"{tag}.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    return res


HEUR_MAX_PAIRS = 200                # per question: the features cost microseconds, so take many pairs
HEUR_L2 = (0.1, 1.0, 10.0)


def _feature_pairs(recs, memo: dict):
    """``(X_chosen, X_rejected, groups, len_chosen, len_rejected)`` of canonical pairs; features memoised
    by (prompt, response)."""
    import numpy as np

    from jprefs.classifiers.textfeatures import answer_features
    from jprefs.data.schema import prompt_key

    def feats(r, text):
        k = (prompt_key(r.prompt), text)
        if k not in memo:
            memo[k] = answer_features([m.to_dict() for m in r.prompt], text)
        return memo[k]

    xc = np.array([feats(r, r.chosen) for r in recs], dtype=np.float64)
    xr = np.array([feats(r, r.rejected) for r in recs], dtype=np.float64)
    return (xc, xr, [prompt_key(r.prompt) for r in recs], np.array([len(r.chosen) for r in recs]),
            np.array([len(r.rejected) for r in recs]))


def heuristics(checkout: Path) -> dict:
    """Question-free surface features of the answer (jprefs.classifiers.textfeatures: script mix, loops,
    cut-off endings, politeness, refusals, prompt coverage ...), fit as a pairwise logistic model on
    tens of thousands of graded answers, scored on the three Japanese judged sets (issue #13).

    Rule, fixed in this docstring and committed before any fit of these features was scored on
    ja_mt_bench, Rakuda or Vicuna-QA:
      - training pairs: shaberi's GPT-4.1 grades of ELYZA-tasks-100 and Tengu-Bench as in ``graded``
        (same files, same margins M), but `rm-pairs --scores scores --pairs all --min-margin M
        --max-pairs 200 --seed 0` without length balance (``log_chars`` is a feature: the fit learns
        the judge's own weight on length, and this judge's pairs choose the longer answer ~0.5 of the time);
      - model: no-intercept symmetric logistic regression on chosen-minus-rejected feature differences
        (jprefs.classifiers.stack.stack_weights, RMS-standardised columns, L2);
      - selection, on shaberi alone: grouped 5-fold cross-validation by question over candidates
        {log length alone, all FEATURES} x L2 in HEUR_L2; the most accurate out of fold among those
        with out-of-fold chosen-shorter accuracy >= 0.35 (else the highest chosen-shorter); refit on
        every shaberi pair;
      - read once: every pair of ja_mt_bench, Rakuda and Vicuna-QA, beside longer-wins and the probe fit
        on shaberi pairs (``graded``'s, from RESULTS/graded.json); verdict per set (``floor``): above both
        and chosen-shorter >= 0.35; ``confirms`` on all three. For context (chooses nothing): the same
        features fit on two of the judged sets and scored on the third (as ``transfer``), and fit on
        shaberi + the two.
    RESULTS/heuristics.json."""
    import numpy as np

    from jprefs.classifiers.data import load_rm_data
    from jprefs.classifiers.probe import grouped_folds
    from jprefs.classifiers.stack import stack_weights
    from jprefs.classifiers.textfeatures import FEATURES
    from jprefs.eval.metrics import accuracy_metrics

    evals = {**SETS, "ja_vicuna_qa": WORK / "third-ja-vicuna-qa.jsonl"}
    if not evals["ja_vicuna_qa"].exists():
        raise SystemExit("run `python bench/rm_debias.py third CHECKOUT` first (it converts the Vicuna-QA verdicts)")
    WORK.mkdir(parents=True, exist_ok=True)
    res: dict = {"rule": heuristics.__doc__, "features": list(FEATURES), "sets": {}}
    recs = []
    for name, out, counts, s in _graded_pairs(checkout, "heur", "--max-pairs", str(HEUR_MAX_PAIRS)):
        res["sets"][name] = {"read": counts, "pairs": s["pairs_out"], "questions": s["rows_paired"],
                             "chosen_longer_share": s["length"]["chosen_longer_share"]}
        recs += load_rm_data(out).records
    memo: dict = {}
    t0 = time.time()
    xc, xr, groups, lc, lr = _feature_pairs(recs, memo)
    res["feature_seconds"], res["train_pairs"], res["distinct_answers"] = time.time() - t0, len(recs), len(memo)
    cols = {"length": [FEATURES.index("log_chars")], "all": list(range(len(FEATURES)))}
    fold = grouped_folds(groups, 5, 0)
    cv = {}
    for cname, idx in cols.items():
        for l2 in HEUR_L2:
            sc, sr = np.zeros(len(recs)), np.zeros(len(recs))
            for f in range(5):
                te = fold == f
                w = stack_weights(xc[~te][:, idx] - xr[~te][:, idx], l2=l2)
                sc[te], sr[te] = xc[te][:, idx] @ w, xr[te][:, idx] @ w
            m = accuracy_metrics(sc, sr, lc, lr, groups, n_boot=0)
            cv[f"{cname}/l2={l2:g}"] = {"accuracy": m["pairwise_accuracy"], "longer_wins": m["length_baseline_accuracy"],
                                        "chosen_shorter": m["length_controlled_accuracy"]}
    ok = [k for k, v in cv.items() if v["chosen_shorter"] >= 0.35]
    chosen = max(ok, key=lambda k: cv[k]["accuracy"]) if ok else max(cv, key=lambda k: cv[k]["chosen_shorter"])
    cname, l2 = chosen.split("/l2=")
    idx, l2 = cols[cname], float(l2)
    w = stack_weights(xc[:, idx] - xr[:, idx], l2=l2)
    res.update(cv=cv, chosen=chosen, weights=dict(zip([FEATURES[i] for i in idx], w.tolist())))
    graded_res = RESULTS / "graded.json"
    probe = json.loads(graded_res.read_text(encoding="utf-8"))["eval"] if graded_res.exists() else {}
    tr = json.loads((RESULTS / "transfer.json").read_text(encoding="utf-8"))
    ev_feats = {k: _feature_pairs(load_rm_data(p).records, memo) for k, p in evals.items()}

    def read(fc, fr, g, a, b, weights, ix):
        m = accuracy_metrics(fc[:, ix] @ weights, fr[:, ix] @ weights, a, b, g)
        return {k: m[k] for k in ("n_pairs", "n_prompts", "pairwise_accuracy", "ci95", "length_baseline_accuracy",
                                  "accuracy_minus_length_baseline", "accuracy_minus_length_baseline_ci95",
                                  "length_controlled_accuracy", "length_controlled_ci95", "length_controlled_n")}

    res["eval"], res["context"] = {}, {}
    for k, (fc, fr, g, a, b) in ev_feats.items():
        x = read(fc, fr, g, a, b, w, idx)
        pb = probe.get(k, {}).get("probe", {}).get("accuracy")
        x["probe_shaberi"] = pb
        x["floor"] = bool(x["pairwise_accuracy"] > x["length_baseline_accuracy"] and pb is not None
                          and x["pairwise_accuracy"] > pb and x["length_controlled_accuracy"] >= 0.35)
        res["eval"][k] = x
        others = [o for o in ev_feats if o != k]
        oc = np.concatenate([ev_feats[o][0] for o in others])
        orr = np.concatenate([ev_feats[o][1] for o in others])
        ctx = {}
        for lab, (dc, dr) in {"two_sets": (oc, orr),
                              "shaberi_plus_two": (np.concatenate([xc, oc]), np.concatenate([xr, orr]))}.items():
            wk = stack_weights(dc[:, idx] - dr[:, idx], l2=l2)
            ctx[lab] = read(fc, fr, g, a, b, wk, idx)
        ctx["probe_two_sets"] = tr.get(k, {}).get("probe", {}).get("accuracy")
        ctx["recipe_two_sets"] = tr.get(k, {}).get("models", {}).get("recipe", {}).get("pairwise_accuracy")
        res["context"][k] = ctx
    res["confirms"] = all(v["floor"] for v in res["eval"].values())
    (RESULTS / "heuristics.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    return res


FROZEN_CANDIDATES = {
    "probe": ("probe",),
    "features": ("features",),
    "stack: probe + relevance": ("probe", "relevance"),
    "stack: probe + features": ("probe", "features"),
    "stack: probe + relevance + features": ("probe", "relevance", "features"),
    "stack: relevance + features": ("relevance", "features"),
}


def frozen_loso() -> dict:
    """Frozen parts only, chosen by leaving one judged set out (after ``heuristics``; issue #13).

    ``transfer`` showed that the recipe's fine-tuned quality head does not carry to another benchmark,
    and ``heuristics`` that question-free surface features fit on two GPT-4-judged sets read above the
    recipe on the third. This asks which combination of parts that need no fine-tuning does best when the
    evaluation set's questions, judge prompt and models were never seen.

    Rule, fixed in this docstring and committed before it ran:
      - data: every pair of ja_mt_bench, Rakuda and Vicuna-QA (``third``'s conversion); for each held-out
        set, everything is fit on the other two sets' pairs only;
      - parts: ``probe`` (frozen e5-small + log length, jprefs.classifiers.probe.fit_probe_arrays with
        its own grouped-CV L2, inputs as the recipe: ``query: `` prefix, 512 tokens, prompt cut to 128);
        ``relevance`` (zero-shot e5 question-answer cosine); ``features`` (jprefs.classifiers.textfeatures,
        13 columns, log length among them);
      - candidates FROZEN_CANDIDATES: each part alone (probe; features through stack_weights) and the
        stacks, a no-intercept logistic model (stack_weights, L2 1.0, the library's default) over the
        parts, where the probe's column is its out-of-fold score (grouped 5 folds by prompt within the
        training pairs, as the library's stack cross-fits) and the held-out set is scored with the probe
        refit on all training pairs;
      - choice: the highest mean accuracy over the three held-out sets among the candidates whose
        chosen-shorter accuracy is >= 0.35 on every held-out set (else the highest mean); ``floor`` per
        set: above longer-wins and above the probe, chosen-shorter >= 0.35. The choice is made on these
        same three readings (there is no fourth GPT-4-judged Japanese set; shaberi's judge disagrees with
        them, ``heuristics``), so the chosen figures are optimistic by the choice among six.
    RESULTS/frozen-loso.json."""
    import numpy as np

    sets = {**SETS, "ja_vicuna_qa": WORK / "third-ja-vicuna-qa.jsonl"}
    t0 = time.time()
    data = _frozen_data(sets)
    res: dict = {"rule": frozen_loso.__doc__, "embed_seconds": time.time() - t0, "held_out": {}}
    for held in sets:
        tr = [k for k in sets if k != held]
        out, n_tr, l2 = _frozen_fit_score(data, tr, held)
        res["held_out"][held] = {"trained_on": tr, "train_pairs": n_tr, "probe_l2": l2, "candidates": out}
    names = list(FROZEN_CANDIDATES)
    mean = {n: float(np.mean([res["held_out"][k]["candidates"][n]["pairwise_accuracy"] for k in sets])) for n in names}
    ok = [n for n in names if all(res["held_out"][k]["candidates"][n]["length_controlled_accuracy"] >= 0.35 for k in sets)]
    chosen = max(ok or names, key=lambda n: mean[n])
    floor = {k: _frozen_floor(res["held_out"][k]["candidates"], chosen) for k in sets}
    res.update(mean_accuracy=mean, eligible=ok, chosen=chosen, floor=floor, meets_floor_everywhere=all(floor.values()))
    (RESULTS / "frozen-loso.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    return res


def _frozen_floor(cands: dict, name: str) -> bool:
    x, pb = cands[name], cands["probe"]["pairwise_accuracy"]
    return bool(x["pairwise_accuracy"] > x["length_baseline_accuracy"] and x["pairwise_accuracy"] > pb
                and x["length_controlled_accuracy"] >= 0.35)


def _frozen_models():
    """The frozen parts' e5 models, set as the recipe's inputs (``query: `` prefix, 512 tokens, the prompt
    cut to 128): ``(Embedder, Relevance)``."""
    from jprefs.classifiers.probe import Embedder
    from jprefs.classifiers.relevance import Relevance

    return (Embedder("e5-small-offline", pooling="mean", input_prefix="query: ", max_length=512, max_prompt_length=128),
            Relevance("e5-small-offline", max_length=512))


def _frozen_data(sets: dict) -> dict:
    """Per judged set: the probe's embeddings, relevance and surface features of every chosen and rejected
    answer, lengths and prompt groups (``frozen_loso``'s parts, computed once)."""
    import numpy as np

    from jprefs.classifiers.data import load_rm_data
    from jprefs.classifiers.textfeatures import feature_matrix
    from jprefs.data.schema import prompt_key

    emb, rel = _frozen_models()
    data = {}
    for k, p in sets.items():
        recs = load_rm_data(p).records
        n = len(recs)
        prompts = [r.prompt for r in recs] * 2
        texts = [r.chosen for r in recs] + [r.rejected for r in recs]
        e = emb.embed(prompts, texts, desc=f"embed {k}")
        rv = rel.score(prompts, texts, desc=f"relevance {k}")
        f = feature_matrix(prompts, texts)
        data[k] = {"ec": e[:n], "er": e[n:], "rc": rv[:n], "rr": rv[n:], "fc": f[:n], "fr": f[n:],
                   "lc": np.array([len(r.chosen) for r in recs]), "lr": np.array([len(r.rejected) for r in recs]),
                   "g": [prompt_key(r.prompt) for r in recs]}
    return data


def _frozen_fit_score(data: dict, tr: list, held: str) -> tuple[dict, int, float]:
    """Every FROZEN_CANDIDATES entry fit on the sets ``tr`` and scored on every pair of ``held``: the
    probe's stack column out of fold (grouped 5 folds by prompt within ``tr``), the held-out set scored
    with the probe refit on all of ``tr``. Returns (figures by candidate, training pairs, probe L2)."""
    import numpy as np

    from jprefs.classifiers.probe import fit_probe_arrays, out_of_fold_scores
    from jprefs.classifiers.stack import stack_weights

    def cat(field):
        return np.concatenate([data[k][field] for k in tr])

    g_tr = sum((data[k]["g"] for k in tr), [])
    ec, er, lc, lr = cat("ec"), cat("er"), cat("lc"), cat("lr")
    n_tr = len(g_tr)
    oof_c, oof_r = out_of_fold_scores(ec, er, lc, lr, g_tr, 5, seed=0)     # as train-rm's frozen stack
    pr = fit_probe_arrays(ec, er, lc, lr, g_tr, seed=0)
    h = data[held]
    cols_tr = {"probe": (oof_c[:, None], oof_r[:, None]), "relevance": (cat("rc")[:, None], cat("rr")[:, None]),
               "features": (cat("fc"), cat("fr"))}
    cols_te = {"probe": (pr.score(h["ec"], h["lc"])[:, None], pr.score(h["er"], h["lr"])[:, None]),
               "relevance": (h["rc"][:, None], h["rr"][:, None]), "features": (h["fc"], h["fr"])}
    out = {}
    for name, parts in FROZEN_CANDIDATES.items():
        if parts == ("probe",):
            sc, sr, w = cols_te["probe"][0][:, 0], cols_te["probe"][1][:, 0], None
        else:
            xc = np.concatenate([cols_tr[p][0] for p in parts], axis=1)
            xr = np.concatenate([cols_tr[p][1] for p in parts], axis=1)
            w = stack_weights(xc - xr, l2=1.0)
            sc = np.concatenate([cols_te[p][0] for p in parts], axis=1) @ w
            sr = np.concatenate([cols_te[p][1] for p in parts], axis=1) @ w
        out[name] = _keep(sc, sr, h)
        if w is not None and len(w) <= 16:
            out[name]["weights"] = w.tolist()
    return out, n_tr, pr.l2


def frozen_nested() -> dict:
    """The LOSO choice of ``frozen_loso`` without its optimism (after ``frozen-loso``; issue #13).

    ``frozen_loso`` chose among six candidates on the same three held-out readings it reports. Here the
    choice is made again for each held-out set from its two training sets alone, and only then read.

    Rule, fixed in this docstring and committed before it ran: for each held-out set H with training sets
    A and B, every candidate is fit on A and scored on B, and fit on B and scored on A (as
    ``_frozen_fit_score``); the inner choice is the highest mean of those two accuracies among the
    candidates whose chosen-shorter accuracy is >= 0.35 in both directions (else the highest mean);
    the reported figure for H is that candidate's from ``_frozen_fit_score(A + B -> H)``, which must equal
    ``frozen-loso.json`` (asserted: the refactor changed nothing). ``floor`` per set as ``frozen_loso``.
    This is what a user who picks the parts by leaving one of their own judged sets out would get on a
    new benchmark. RESULTS/frozen-nested.json."""
    import numpy as np

    sets = {**SETS, "ja_vicuna_qa": WORK / "third-ja-vicuna-qa.jsonl"}
    before = json.loads((RESULTS / "frozen-loso.json").read_text(encoding="utf-8"))
    data = _frozen_data(sets)
    res: dict = {"rule": frozen_nested.__doc__, "held_out": {}}
    names = list(FROZEN_CANDIDATES)
    for held in sets:
        a, b = [k for k in sets if k != held]
        outer, _, _ = _frozen_fit_score(data, [a, b], held)
        diff = max(abs(outer[n]["pairwise_accuracy"] - before["held_out"][held]["candidates"][n]["pairwise_accuracy"])
                   for n in names)
        assert diff < 1e-9, f"{held}: the outer figures differ from frozen-loso.json by {diff}"
        ab, _, _ = _frozen_fit_score(data, [a], b)
        ba, _, _ = _frozen_fit_score(data, [b], a)
        inner = {n: {"mean": float(np.mean([ab[n]["pairwise_accuracy"], ba[n]["pairwise_accuracy"]])),
                     f"{a}->{b}": [ab[n]["pairwise_accuracy"], ab[n]["length_controlled_accuracy"]],
                     f"{b}->{a}": [ba[n]["pairwise_accuracy"], ba[n]["length_controlled_accuracy"]]} for n in names}
        ok = [n for n in names if min(ab[n]["length_controlled_accuracy"], ba[n]["length_controlled_accuracy"]) >= 0.35]
        chosen = max(ok or names, key=lambda n: inner[n]["mean"])
        res["held_out"][held] = {"inner": inner, "eligible": ok, "chosen": chosen, "figures": outer[chosen],
                                 "floor": _frozen_floor(outer, chosen),
                                 "probe": outer["probe"]["pairwise_accuracy"]}
    res["mean_accuracy"] = float(np.mean([v["figures"]["pairwise_accuracy"] for v in res["held_out"].values()]))
    res["meets_floor_everywhere"] = all(v["floor"] for v in res["held_out"].values())
    (RESULTS / "frozen-nested.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    return res

FROZEN_RECIPE = ROOT / "classifiers" / "recipes" / "e5-small-ja-frozen-stack.yaml"
FOURTH = "review_gpt-4.jsonl"       # github.com/oshizo/japanese-llm-roleplay-benchmark (MIT)


def frozen_recipe(checkout: Path) -> dict:
    """The frozen stack as a train-rm recipe, read three ways (after ``frozen-nested``; issue #13).

    Rule, fixed in this docstring and committed before any figure of it existed:
      - recipe: classifiers/recipes/e5-small-ja-frozen-stack.yaml, parts fixed in advance (probe +
        relevance + features, the frozen-loso pick; not re-chosen on anything below);
      - (a) as users run it: `jprefs train-rm RECIPE -o WORK/frozen-recipe`, timed; its held-out 20% of
        each file (the split of the fine-tuned recipe, seed 42: asserted the same pairs as
        WORK/recipe/reward/eval_split.jsonl) read once, beside the fine-tuned recipe's cross-fitted
        figures on those pairs (RESULTS/recipe.json) and the stack's probe part (the probe baseline: the
        same probe fit on the same training pairs). The parts were chosen on readings that included
        these pairs, so (a) is not a clean test of the choice;
      - (b) the bench's split: the recipe trained on the train + dev parts of both sets
        (`data`/`extra_data`, eval_fraction 0), then `jprefs eval rm --all-heads` on each test part with
        the probe fit on the same train + dev pairs; beside the fine-tuned recipe's stack on the same
        test parts (RESULTS/stack.json). Same caveat as (a);
      - (c) the confirmation, a GPT-4-judged Japanese set nothing in this project has read:
        oshizo/japanese-llm-roleplay-benchmark ``review_gpt-4.jsonl`` (MIT; GPT-4 through ChatGPT, one
        pairwise verdict per row on a character's next line in 10 role-play situations, 11 models);
        prompt = the character sheet + the situation the judge was shown; chosen = the winner's line;
        a row whose winner is neither model, or whose two lines are equal, is rejected and counted; no
        prompt shared with the three judged sets (asserted). Read once with `jprefs eval rm`: the
        frozen recipe of (a), the fine-tuned recipe (WORK/recipe) and, as baselines, longer-wins and the
        probe fit on the recipe's own training pairs (WORK/recipe-train.jsonl);
      - verdict per reading (``floor``): the frozen stack above longer-wins AND above the probe AND >= 0.35
        on the chosen-shorter pairs; ``goal``: also above longer-wins by more than the interval's
        half-width and >= 0.5 chosen-shorter;
      - recommendation (``recommend_frozen``), fixed now: the frozen recipe replaces the fine-tuned one as
        the recommended recipe if it meets the floor on (c), or if its accuracy on (c) and on both test
        parts of (b) is at least the fine-tuned recipe's. Nothing read here changes the recipe.
    RESULTS/frozen-recipe.json."""
    import subprocess

    from jprefs.classifiers.data import load_rm_data
    from jprefs.data.adapters import Conversion, convert_to_files
    from jprefs.data.io import iter_jsonl, write_jsonl
    from jprefs.data.schema import prompt_key

    res: dict = {"rule": frozen_recipe.__doc__}

    def run(*args):
        subprocess.run([sys.executable, "-m", "jprefs.cli", *map(str, args)], check=True, cwd=ROOT)

    # ---- (a) the recipe as users run it
    out = WORK / "frozen-recipe"
    t0 = time.time()
    run("train-rm", FROZEN_RECIPE, "-o", out)
    wall = time.time() - t0
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    held = sorted(r.id for r in load_rm_data(out / "eval_split.jsonl").records)
    assert held == sorted(r.id for r in load_rm_data(WORK / "recipe" / "reward" / "eval_split.jsonl").records), \
        "the frozen recipe's held-out split differs from the fine-tuned recipe's"
    ft = json.loads((RESULTS / "recipe.json").read_text(encoding="utf-8"))["stack"]["eval_by_file"]
    a = {}
    for f, x in m["eval_by_file"].items():
        pb = x["components"]["probe"]["pairwise_accuracy"]
        a[f] = {"frozen": _stack_cells(x), "fine_tuned_cross_fitted": _stack_cells(ft[f]), "probe": pb,
                "longer_wins": x["length_baseline_accuracy"], **_floor_goal(x, x["length_baseline_accuracy"], pb)}
    # train-rm's own timing of the fit (a rerun into the same folder does nothing and takes ~0 s)
    res["a_recipe"] = {"wall_seconds": wall, "train_seconds": m["seconds"], "weights": m["weights"], "offset": m["offset"], "data": m["data"],
                       "train_fit_check": _stack_cells(m["train"]), "held_out": a}
    # ---- (b) the bench's split
    parts = {k: [WORK / f"{k}-train.jsonl", WORK / f"{k}-dev.jsonl"] for k in SETS}
    if not all(p.exists() for v in parts.values() for p in v):
        split()
    trdev = {}
    for k, (tr, dv) in parts.items():
        trdev[k] = WORK / f"frozen-{k}-train-dev.jsonl"
        write_jsonl(trdev[k], [*_read(tr), *_read(dv)])
    write_jsonl(WORK / "frozen-train-dev.jsonl", [r for k in SETS for r in _read(trdev[k])])
    bench_out = WORK / "frozen-bench"
    run("train-rm", FROZEN_RECIPE, f"data={trdev['ja_mt_bench']}", f"extra_data=[{trdev['rakuda']}]",
        "eval_fraction=0", "-o", bench_out)
    ev = WORK / "frozen-bench-eval"
    if not (ev / "metrics.json").exists():     # a rerun of the bench reuses this deterministic reading
        run("eval", "rm", "--model", f"frozen={bench_out}", "--all-heads",
            *[x for k in SETS for x in ("--data", f"{k}={WORK / f'{k}-test.jsonl'}")],
            "--probe-train", WORK / "frozen-train-dev.jsonl", "--no-plots", "-o", ev)
    em = json.loads((ev / "metrics.json").read_text(encoding="utf-8"))
    ft_test = json.loads((RESULTS / "stack.json").read_text(encoding="utf-8"))["test"]
    b = {}
    for k in SETS:
        x, d = em["results"]["frozen"][k], em["data"][k]
        lw, pb = d["length_baseline_accuracy"], d["probe_baseline"]["accuracy"]
        b[k] = {"frozen": _eval_cells(x), "fine_tuned": ft_test[k]["stack"], "longer_wins": lw, "probe": pb,
                "parts": {h: em["results"][f"frozen:{h}"][k]["pairwise_accuracy"] for h in ("probe", "relevance",
                                                                                         "features")},
                **_floor_goal(x, lw, pb)}
    res["b_bench_split"] = b
    # ---- (c) the unread judged set
    src = checkout / FOURTH
    if not src.exists():
        raise SystemExit(f"no {FOURTH} in {checkout}: pass a checkout of github.com/oshizo/japanese-llm-roleplay-benchmark")
    rows, dropped = [], {"winner_not_a_or_b": 0, "same_lines": 0}
    for row in iter_jsonl(src):
        if row.error:
            raise SystemExit(f"{src} line {row.locator}: {row.error}")
        r = row.data
        a_, b_ = r["model_id_A"], r["model_id_B"]
        if r["winner"] not in (a_, b_):
            dropped["winner_not_a_or_b"] += 1
            continue
        win = r["winner"] == a_
        ch, rj = (r["response_A"], r["response_B"]) if win else (r["response_B"], r["response_A"])
        if ch.strip() == rj.strip():
            dropped["same_lines"] += 1
            continue
        prompt = (r["character"] + "\n\n" + r["context"]).replace("\r\n", "\n")
        rows.append({"prompt": prompt, "chosen": ch, "rejected": rj, "situation": r["situation_id"],
                     "models": [r["winner"], b_ if win else a_], "reviewer": r["reviewer_id"]})
    raw = WORK / "fourth-roleplay-rows.jsonl"
    write_jsonl(raw, rows)
    pairs_path = WORK / "fourth-roleplay.jsonl"
    conv = Conversion(raw, "jsonl", mapping="prompt=prompt,chosen=chosen,rejected=rejected", license="mit")
    summary = convert_to_files(conv, pairs_path, WORK / "fourth-roleplay.rejects.jsonl")
    recs = load_rm_data(pairs_path).records
    seen = {prompt_key(r.prompt) for path in [*SETS.values(), WORK / "third-ja-vicuna-qa.jsonl"]
            for r in load_rm_data(path).records}
    assert not any(prompt_key(r.prompt) in seen for r in recs), "the fourth set shares a prompt with the others"
    ev4 = WORK / "fourth-eval"
    if not (ev4 / "metrics.json").exists():    # read once; a rerun of the bench reuses that reading
        run("eval", "rm", "--model", f"frozen={out}", "--model", f"recipe={WORK / 'recipe'}", "--all-heads",
            "--data", f"roleplay={pairs_path}", "--probe-train", WORK / "recipe-train.jsonl", "-o", ev4)
    m4 = json.loads((ev4 / "metrics.json").read_text(encoding="utf-8"))
    d4 = m4["data"]["roleplay"]
    lw, pb = d4["length_baseline_accuracy"], d4["probe_baseline"]["accuracy"]
    x = m4["results"]["frozen"]["roleplay"]
    c = {"pairs": len(recs), "prompts": len({prompt_key(r.prompt) for r in recs}), "dropped": dropped,
         "convert": summary, "longer_wins": lw, "probe": {k: d4["probe_baseline"].get(k) for k in
                                                         ("accuracy", "ci95", "length_controlled_accuracy")},
         "models": {lab: _eval_cells(v["roleplay"]) for lab, v in m4["results"].items()}, **_floor_goal(x, lw, pb)}
    res["c_fourth"] = c
    fine4 = m4["results"]["recipe"]["roleplay"]["pairwise_accuracy"]
    res["recommend_frozen"] = bool(c["floor"] or (x["pairwise_accuracy"] >= fine4 and all(
        b[k]["frozen"]["accuracy"] >= b[k]["fine_tuned"]["accuracy"] for k in SETS)))
    (RESULTS / "frozen-recipe.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    return res


FIFTH = "fastchat/llm_judge/data/japanese_mt_bench"     # github.com/AUGMXNT/FastChat (shisa's fork, Apache-2.0)


def _fifth_questions(checkout: Path) -> tuple[dict, dict]:
    """``(shared, fork)``: question_id -> the shared ja_mt_bench set's prompt key, and the fork's prompt key
    (its question.jsonl, turn 1, as jprefs.data.fastchat reads it) -> question_id. The fork rewords some
    questions, so ids join the two."""
    from jprefs.data.fastchat import FastChatAnswers
    from jprefs.data.io import iter_jsonl
    from jprefs.data.schema import as_messages, prompt_key

    shared = {str(r.data["question_id"]): prompt_key(as_messages(r.data["prompt"])) for r in iter_jsonl(SETS["ja_mt_bench"])
              if not r.error}
    fork = {prompt_key(as_messages(q)): i for i, q in FastChatAnswers(checkout / FIFTH).questions.items()}
    return shared, fork


def _fifth_shared_keys(checkout: Path, recs) -> list[str]:
    """Per fifth-set pair: the shared set's prompt key of its question (its own prompt key where the shared
    set lacks the question), so a pair joins the shared pairs of its question in every split."""
    from jprefs.data.schema import prompt_key

    shared, fork = _fifth_questions(checkout)
    out = []
    for r in recs:
        k = prompt_key(r.prompt)
        out.append(shared.get(fork[k], k))       # every pair's prompt is one of the fork's questions
    return out


def fifth(checkout: Path) -> dict:
    """New models' answers to Japanese MT-Bench, judged by GPT-4 (after ``frozen-recipe``; issue #13).

    Rule, fixed in this docstring and committed before any figure of it existed:
      - data: shisa's FastChat fork (``FIFTH`` in the checkout), the per-model single-answer judgments
        ``model_judgment/gpt-4_single/`` (models none of which is among the 7 of the shared ja_mt_bench
        set), read with `jprefs data group --fastchat DIR --judge gpt-4_single/` and paired as the shared
        set was built: `jprefs data rm-pairs --scores scores --pairs all` (every two answers to one
        question with different scores, chosen = the higher);
      - split: ``unseen``, the pairs of the questions (by question_id) held out from both recipes'
        training (their shared 20% split of ja_mt_bench), the reading that counts; ``seen``, the pairs of
        the other questions (new answers to questions the recipes trained on), context only;
      - read once with `jprefs eval rm`: the frozen recipe (WORK/frozen-recipe) and the fine-tuned recipe
        (WORK/recipe) with their parts and heads (--all-heads), longer-wins and the probe fit on the
        recipes' own training pairs (WORK/recipe-train.jsonl);
      - verdict (``floor``) per recipe on ``unseen``: above longer-wins AND above the probe AND >= 0.35
        chosen-shorter; ``goal`` as before. Nothing read here changes a recipe.
    RESULTS/fifth.json."""
    import subprocess

    from jprefs.classifiers.data import load_rm_data
    from jprefs.data.group import FASTCHAT_MAPPING, FastChatJoin, group_to_files
    from jprefs.data.io import write_jsonl
    from jprefs.data.schema import prompt_key

    d = checkout / FIFTH
    join = FastChatJoin(d, "gpt-4_single/")
    graded = WORK / "fifth-graded.jsonl"
    gs = group_to_files(join.inputs, graded, FASTCHAT_MAPPING, license="apache-2.0",
                        source="AUGMXNT/FastChat japanese_mt_bench (gpt-4_single/)", join=join)
    pairs_path = WORK / "fifth-pairs.jsonl"
    subprocess.run([sys.executable, "-m", "jprefs.cli", "data", "rm-pairs", str(graded), "--scores", "scores",
                    "--pairs", "all", "-o", str(pairs_path)], check=True, cwd=ROOT)
    # the question ids both recipes held out: their held-out prompts, looked up in the shared file's rows
    held_keys = {prompt_key(r.prompt) for r in load_rm_data(WORK / "recipe" / "reward" / "eval_split.jsonl").records}
    shared, fork = _fifth_questions(checkout)
    held_ids = {i for i, k in shared.items() if k in held_keys}
    trained_ids = set(shared) - held_ids
    unseen_keys = {k for k, i in fork.items() if i in held_ids}
    recs = load_rm_data(pairs_path).records
    unseen = [r for r in recs if prompt_key(r.prompt) in unseen_keys]
    seen = [r for r in recs if prompt_key(r.prompt) not in unseen_keys]
    write_jsonl(WORK / "fifth-unseen.jsonl", unseen)
    write_jsonl(WORK / "fifth-seen.jsonl", seen)
    ev = WORK / "fifth-eval"
    if not (ev / "metrics.json").exists():      # read once; a rerun of the bench reuses that reading
        subprocess.run([sys.executable, "-m", "jprefs.cli", "eval", "rm", "--model", f"frozen={WORK / 'frozen-recipe'}",
                        "--model", f"recipe={WORK / 'recipe'}", "--all-heads",
                        "--data", f"unseen={WORK / 'fifth-unseen.jsonl'}", "--data", f"seen={WORK / 'fifth-seen.jsonl'}",
                        "--probe-train", str(WORK / "recipe-train.jsonl"), "--no-plots", "-o", str(ev)],
                       check=True, cwd=ROOT)
    m = json.loads((ev / "metrics.json").read_text(encoding="utf-8"))
    res: dict = {"rule": fifth.__doc__, "group": {k: v for k, v in gs.items() if k not in ("inputs",)},
                 "pairs": len(recs), "held_out_question_ids": sorted(held_ids, key=int),
                 "unseen_questions_found": len(unseen_keys), "trained_question_ids": len(trained_ids), "readings": {}}
    for part in ("unseen", "seen"):
        dd = m["data"][part]
        lw, pb = dd["length_baseline_accuracy"], dd["probe_baseline"]["accuracy"]
        r = {"pairs": dd.get("n_pairs", len(unseen if part == "unseen" else seen)), "longer_wins": lw,
             "probe": {k: dd["probe_baseline"].get(k) for k in ("accuracy", "ci95", "length_controlled_accuracy")},
             "models": {lab: _eval_cells(v[part]) for lab, v in m["results"].items()}}
        for lab in ("frozen", "recipe"):
            fg = _floor_goal(m["results"][lab][part], lw, pb)
            r[f"{lab}_floor"], r[f"{lab}_goal"] = fg["floor"], fg["goal"]
        res["readings"][part] = r
    (RESULTS / "fifth.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    return res


NINTH_CANDIDATES = ("base", "fifth-equal", "fifth-all")


def ninth(checkout: Path) -> dict:
    """Same judge, more answers: the fifth set's GPT-4 grades of 24 other models as TRAINING pairs for the
    frozen stack (after ``fifth``; issue #13).

    ``fifth`` read the frozen recipe on 12,391 pairs of the same judge's grades of other models' answers to
    Japanese MT-Bench; nothing trained on them. The seventh round found that more judged data helps only
    from the same kind of judge: this is ten times the shared ja_mt_bench set, from that judge.

    Rule, fixed in this docstring and committed before any figure of it existed:
      - data: the bench split (``split``) of ja_mt_bench and Rakuda; the fifth set's pairs
        (WORK/fifth-pairs.jsonl, ``fifth``'s conversion, CHECKOUT's question.jsonl for the ids) split by
        question id: the pairs of the questions of the ja_mt_bench TEST part are ``fifth-test`` (read
        only), all others ``fifth-train``. Questions are matched by question_id (the fork rewords some),
        and a fifth pair is grouped with the shared set's pairs of its question (their prompt) in every
        fold below, inner and outer; a question the shared set lacks is its own group;
      - parts fixed: the frozen recipe's (probe + relevance + features; stack_weights with L2 1.0 over
        the probe's column out of fold, 5 inner folds by group, seed 0, as train-rm's frozen stack);
        candidates NINTH_CANDIDATES differ only in their training pairs: ``base``, the bench pairs alone;
        ``fifth-equal``, + a random sample (seed 0) of the fifth-train pairs as many as the bench's train
        + dev pairs; ``fifth-all``, + every fifth-train pair;
      - choice: grouped 3-fold CV over the bench's train + dev parts (``_cv_parts``' folds): each fold's
        candidate is fit on the other two folds of both sets plus its fifth-train pairs whose question
        is not in the held fold, and scores the held fold's bench pairs; figures pooled per set. The
        pick: the highest mean out-of-fold accuracy over the two sets among the candidates whose
        out-of-fold chosen-shorter accuracy is >= 0.35 on both, else the highest mean accuracy. Written
        to the result before any reading below is computed;
      - read once, every candidate fit on all its training pairs: both test parts, ``fifth-test``, the
        Japanese Vicuna-QA set (``third``) and role-play (``frozen-recipe``'s fourth set), with
        longer-wins and each candidate's own probe part (the probe on the same training pairs, the
        issue's baseline); ``base`` must reproduce train-rm's frozen stack on the bench split
        (its weights fit on train + dev to 1e-5 before the CV, its test figures to one pair; ``checks``);
      - floor / goal per reading as ``_floor_goal``; recommendation, fixed now: if the pick is not
        ``base`` and meets the floor on both test parts, the frozen recipe documents the fifth set as its
        extra data; it replaces the fine-tuned recipe as the recommended one only if it also reads at
        least the fine-tuned recipe's accuracy on Vicuna-QA (third.json) and role-play
        (frozen-recipe.json). Nothing read here after the pick changes it.
    RESULTS/ninth.json."""
    import numpy as np

    from jprefs.classifiers.data import load_rm_data
    from jprefs.data.schema import prompt_key

    res: dict = {"rule": ninth.__doc__}
    tests = {s: load_rm_data(WORK / f"{s}-test.jsonl").records for s in SETS}
    test_keys = {prompt_key(r.prompt) for r in tests["ja_mt_bench"]}
    fifth_recs = load_rm_data(WORK / "fifth-pairs.jsonl").records
    fifth_group = _fifth_shared_keys(checkout, fifth_recs)
    shared_keys = set(_fifth_questions(checkout)[0].values())
    is_test = np.array([g in test_keys for g in fifth_group])
    # ---- every pair's frozen columns, computed once per distinct (prompt, answer)
    cv_parts = _cv_parts()
    sets = {"bench": [r for s in SETS for r in cv_parts[s][0]], "fifth": fifth_recs,
            **{f"{s}-test": tests[s] for s in SETS},
            "ja_vicuna_qa": load_rm_data(WORK / "third-ja-vicuna-qa.jsonl").records,
            "roleplay": load_rm_data(WORK / "fourth-roleplay.jsonl").records}
    t0 = time.time()
    cols = _frozen_columns(sets, WORK / "ninth-columns.npz")
    res["columns_seconds"] = time.time() - t0
    bench_set = np.array([s for s in SETS for _ in cv_parts[s][0]])
    bench_fold = np.concatenate([cv_parts[s][1] for s in SETS])
    for k, recs in sets.items():
        cols[k]["g"] = fifth_group if k == "fifth" else [prompt_key(r.prompt) for r in recs]
    key_fold = {g: int(f) for g, f in zip(cols["bench"]["g"], bench_fold)}
    fifth_fold = np.array([key_fold.get(g, -1) for g in fifth_group])     # -1: not in the bench's train + dev
    pool = np.flatnonzero(~is_test)
    rng = np.random.default_rng(0)
    equal = np.sort(rng.choice(pool, size=min(len(pool), len(sets["bench"])), replace=False))
    extra = {"base": np.array([], int), "fifth-equal": equal, "fifth-all": pool}
    res["data"] = {"fifth_pairs": len(fifth_recs), "fifth_train": int(len(pool)), "fifth_test": int(is_test.sum()),
                   "fifth_questions": len(set(fifth_group)), "fifth_questions_in_shared": len(set(fifth_group) & shared_keys),
                   "bench_train_dev": len(sets["bench"]), "fifth_equal": int(len(equal))}
    # a check on training pairs only: base fit on all train + dev = train-rm's frozen stack on them
    base_fit = _frozen_stack_fit(cols, np.arange(len(bench_set)), extra["base"])
    lib = json.loads((WORK / "frozen-bench" / "metrics.json").read_text(encoding="utf-8"))["weights"]
    lib_w = [lib["probe"], lib["relevance"], *lib["features"].values()]
    diff = float(np.max(np.abs(np.array(base_fit.weights["weights"]) - lib_w)))
    checks = {"base weights = train-rm's frozen stack (WORK/frozen-bench)": {"max_abs_difference": diff, "ok": diff < 1e-5}}
    # ---- the choice: grouped 3-fold CV over the bench's train + dev parts
    cv = {c: {} for c in NINTH_CANDIDATES}
    for c in NINTH_CANDIDATES:
        sc, sr = np.zeros(len(bench_set)), np.zeros(len(bench_set))
        for f in range(FOLDS):
            tr_b = np.flatnonzero(bench_fold != f)
            tr_f = extra[c][fifth_fold[extra[c]] != f]
            fit = _frozen_stack_fit(cols, tr_b, tr_f)
            te = np.flatnonzero(bench_fold == f)
            sc[te], sr[te], _ = fit(_take(cols["bench"], te))
        for s in SETS:
            m = bench_set == s
            x = _take(cols["bench"], np.flatnonzero(m))
            cv[c][s] = _keep(sc[m], sr[m], x)
    mean = {c: float(np.mean([cv[c][s]["pairwise_accuracy"] for s in SETS])) for c in NINTH_CANDIDATES}
    ok = [c for c in NINTH_CANDIDATES if all(cv[c][s]["length_controlled_accuracy"] >= 0.35 for s in SETS)]
    pick = max(ok or NINTH_CANDIDATES, key=lambda c: mean[c])
    res["cv"] = {"figures": cv, "mean_accuracy": mean, "eligible": ok, "pick": pick}
    (RESULTS / "ninth.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")   # the pick, before any reading
    # ---- the readings, once
    frozen_b = json.loads((RESULTS / "frozen-recipe.json").read_text(encoding="utf-8"))["b_bench_split"]
    fine = {"ja_mt_bench-test": frozen_b["ja_mt_bench"]["fine_tuned"]["accuracy"],
            "rakuda-test": frozen_b["rakuda"]["fine_tuned"]["accuracy"], **_fine_tuned_elsewhere()}
    readings = {k: {} for k in ("ja_mt_bench-test", "rakuda-test", "fifth-test", "ja_vicuna_qa", "roleplay")}
    weights = {}
    for c in NINTH_CANDIDATES:
        fit = base_fit if c == "base" else _frozen_stack_fit(cols, np.arange(len(bench_set)), extra[c])
        for k in readings:
            x = cols[k] if k != "fifth-test" else _take(cols["fifth"], np.flatnonzero(is_test))
            sc, sr, (pc, pr_) = fit(x)
            st, pb = _keep(sc, sr, x), _keep(pc, pr_, x)
            readings[k][c] = {"stack": st, "probe": pb, **_floor_goal(st, st["length_baseline_accuracy"], pb["pairwise_accuracy"])}
        weights[c] = fit.weights
    res["weights"] = weights
    # base = train-rm's frozen stack trained on the bench's train + dev parts (frozen-recipe (b))
    for s in SETS:      # one pair's worth of slack: the library embeds pair by pair, this each answer once
        diff = abs(readings[f"{s}-test"]["base"]["stack"]["pairwise_accuracy"] - frozen_b[s]["frozen"]["accuracy"])
        checks[f"base = train-rm's frozen stack on the {s} test part"] = {"difference": diff, "ok": diff <= 1 / 228}
    res["checks"] = checks
    res["readings"] = readings
    res["fine_tuned_recipe"] = fine
    res["floor_both_tests"] = bool(all(readings[f"{s}-test"][pick]["floor"] for s in SETS))
    res["fifth_as_recipe_data"] = bool(pick != "base" and res["floor_both_tests"])
    res["recommend"] = bool(res["fifth_as_recipe_data"] and all(
        readings[k][pick]["stack"]["pairwise_accuracy"] >= fine[k] for k in ("ja_vicuna_qa", "roleplay")))
    (RESULTS / "ninth.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    bad = [k for k, v in checks.items() if not v["ok"]]
    if bad:
        raise SystemExit(f"ninth: checks failed (RESULTS/ninth.json): {bad}")
    return res


def ninth_fine_tuned(checkout: Path) -> dict:
    """The recommended (fine-tuned) recipe with the fifth set's grades as extra training pairs (after
    ``ninth``; issue #13). The recipe fails the floor on the Rakuda test part (stack.json: 0.727 against
    longer-wins 0.752); this asks whether the same judge's grades of 24 other models move it.

    Rule, fixed in this docstring and committed before any figure of it existed:
      - one candidate, nothing chosen: the recipe as ``stack_run`` trains it (e5-small-ja-debiased.yaml's
        ODIN model, seed 42, its quality head stacked with the probe and relevance; trained on both sets'
        train parts, the joined dev parts held out to pick the epoch and fit the stack's weights) with
        one more ``extra_data`` file: a random sample (seed 0) of the fifth set's pairs (``ninth``'s
        conversion) on the questions of the ja_mt_bench TRAIN part only (none of its dev or test
        questions; matched by question id), as many as the two train parts' pairs;
      - read once with `jprefs eval rm --all-heads` on both test parts, Vicuna-QA and role-play, longer-wins
        and the probe baseline fit on the same training pairs (train parts + the sample); beside
        stack.json's test figures of the recipe without the sample (same split, seed, settings);
      - floor / goal per test part as ``_floor_goal``; recommendation, fixed now: if it meets the floor on
        both test parts, the recipe documents the fifth set as extra data, and says so as the recommended
        recipe only if it also reads at least the recipe's accuracy on Vicuna-QA (third.json) and
        role-play (frozen-recipe.json). RESULTS/ninth-fine-tuned.json."""
    import subprocess

    import numpy as np

    from jprefs.classifiers.config import TrainRMConfig
    from jprefs.classifiers.data import load_rm_data
    from jprefs.classifiers.stack import train_stack
    from jprefs.config import load_config
    from jprefs.data.io import write_jsonl
    from jprefs.data.schema import prompt_key

    train_keys = {prompt_key(r.prompt) for r in load_rm_data(WORK / "ja_mt_bench-train.jsonl").records}
    fifth_recs = load_rm_data(WORK / "fifth-pairs.jsonl").records
    pool = [i for i, g in enumerate(_fifth_shared_keys(checkout, fifth_recs)) if g in train_keys]
    n_train = sum(len(load_rm_data(WORK / f"{s}-train.jsonl").records) for s in SETS)
    pick = np.sort(np.random.default_rng(0).choice(pool, size=min(len(pool), n_train), replace=False))
    sample = [fifth_recs[i] for i in pick]
    extra = WORK / "ninth-ft-fifth-train.jsonl"
    write_jsonl(extra, sample)
    probe_train = WORK / "ninth-ft-train.jsonl"
    write_jsonl(probe_train, [*_read(WORK / "ja_mt_bench-train.jsonl"), *_read(WORK / "rakuda-train.jsonl"), *_read(extra)])
    out = WORK / "models" / "ninth-ft"
    over = {k: v for k, v in {**BASE, **VARIANTS["odin-s42"]}.items() if k not in ("stack", "stack_head")}
    over.update(data=str(WORK / "ja_mt_bench-train.jsonl"), extra_data=[str(WORK / "rakuda-train.jsonl"), str(extra)],
                eval_data=str(WORK / "dev.jsonl"), output_dir=str(out))
    cfg = load_config(TrainRMConfig, str(RECIPE), over)
    t0 = time.time()
    m = train_stack(cfg)
    wall = time.time() - t0
    ev = WORK / "ninth-ft-eval"
    data = {**{s: WORK / f"{s}-test.jsonl" for s in SETS}, "ja_vicuna_qa": WORK / "third-ja-vicuna-qa.jsonl",
            "roleplay": WORK / "fourth-roleplay.jsonl"}
    if not (ev / "metrics.json").exists():      # read once; a rerun of the bench reuses that reading
        subprocess.run([sys.executable, "-m", "jprefs.cli", "eval", "rm", "--model", f"ninth-ft={out}", "--all-heads",
                        *[x for k, p in data.items() for x in ("--data", f"{k}={p}")],
                        "--probe-train", str(probe_train), "--no-plots", "-o", str(ev)], check=True, cwd=ROOT)
    em = json.loads((ev / "metrics.json").read_text(encoding="utf-8"))
    before = json.loads((RESULTS / "stack.json").read_text(encoding="utf-8"))["test"]
    fine = _fine_tuned_elsewhere()
    res: dict = {"rule": ninth_fine_tuned.__doc__, "fifth_pool": len(pool), "fifth_sample": len(sample),
                 "train_pairs": m.get("data"), "weights": m["weights"], "wall_seconds": wall, "readings": {}}
    for k in data:
        x, d = em["results"]["ninth-ft"][k], em["data"][k]
        lw, pb = d["length_baseline_accuracy"], d["probe_baseline"]["accuracy"]
        res["readings"][k] = {"stack": _eval_cells(x), "longer_wins": lw, "probe": pb,
                              "heads": {h.split(":", 1)[1]: em["results"][h][k]["pairwise_accuracy"]
                                        for h in em["results"] if h.startswith("ninth-ft:")},
                              "without_fifth": before[k]["stack"] if k in before else {"accuracy": fine[k]},
                              **_floor_goal(x, lw, pb)}
    r = res["readings"]
    res["floor_both_tests"] = bool(all(r[s]["floor"] for s in SETS))
    res["recommend"] = bool(res["floor_both_tests"] and all(r[k]["stack"]["accuracy"] >= fine[k] for k in fine))
    (RESULTS / "ninth-fine-tuned.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    return res


def _fine_tuned_elsewhere() -> dict:
    """The recommended (fine-tuned) recipe's accuracy on the two sets it never trained on: Vicuna-QA
    (third.json) and role-play (frozen-recipe.json)."""
    third = json.loads((RESULTS / "third.json").read_text(encoding="utf-8"))
    fourth = json.loads((RESULTS / "frozen-recipe.json").read_text(encoding="utf-8"))["c_fourth"]
    return {"ja_vicuna_qa": third["models"]["recipe"]["pairwise_accuracy"], "roleplay": fourth["models"]["recipe"]["accuracy"]}


_KEEP = ("n_pairs", "pairwise_accuracy", "ci95", "length_baseline_accuracy", "accuracy_minus_length_baseline",
         "accuracy_minus_length_baseline_ci95", "length_controlled_accuracy", "length_controlled_n")


def _keep(sc, sr, x: dict) -> dict:
    """The bench's figures of scores ``sc``/``sr`` on the pairs ``x`` (a _frozen_columns entry)."""
    from jprefs.eval.metrics import accuracy_metrics

    m = accuracy_metrics(sc, sr, x["lc"], x["lr"], x["g"])
    return {k: m[k] for k in _KEEP}


def _take(x: dict, idx) -> dict:
    """Rows ``idx`` of a _frozen_columns entry."""
    return {k: ([v[i] for i in idx] if isinstance(v, list) else v[idx]) for k, v in x.items()}


def _frozen_stack_fit(cols: dict, bench_idx, fifth_idx):
    """The frozen recipe's stack (probe + relevance + features) fit on the bench rows ``bench_idx`` and the
    fifth-set rows ``fifth_idx`` of ``cols``: the probe's column out of fold (5 folds by group, seed 0),
    stack_weights L2 1.0, as train-rm's frozen stack. Returns ``score(x) -> (s_chosen, s_rejected,
    (probe_chosen, probe_rejected))`` with ``.weights``."""
    import numpy as np

    from jprefs.classifiers.probe import fit_probe_arrays, out_of_fold_scores
    from jprefs.classifiers.stack import stack_weights

    tr = [_take(cols["bench"], bench_idx), _take(cols["fifth"], fifth_idx)]
    cat = {k: (sum((t[k] for t in tr), []) if k == "g" else np.concatenate([t[k] for t in tr])) for k in tr[0]}
    oc, orr = out_of_fold_scores(cat["ec"], cat["er"], cat["lc"], cat["lr"], cat["g"], 5, seed=0)
    pr = fit_probe_arrays(cat["ec"], cat["er"], cat["lc"], cat["lr"], cat["g"], seed=0)
    xc = np.concatenate([oc[:, None], cat["rc"][:, None], cat["fc"]], axis=1)
    xr = np.concatenate([orr[:, None], cat["rr"][:, None], cat["fr"]], axis=1)
    w = stack_weights(xc - xr, l2=1.0)

    def score(x):
        pc, pq = pr.score(x["ec"], x["lc"]), pr.score(x["er"], x["lr"])
        c = np.concatenate([pc[:, None], x["rc"][:, None], x["fc"]], axis=1) @ w
        r = np.concatenate([pq[:, None], x["rr"][:, None], x["fr"]], axis=1) @ w
        return c, r, (pc, pq)

    score.weights = {"weights": w.tolist(), "probe_l2": pr.l2, "train_pairs": len(cat["g"])}
    return score


def _frozen_columns(sets: dict, cache: Path) -> dict:
    """:func:`_frozen_data`'s columns of every pair of ``sets`` (name -> records), each distinct (prompt,
    answer) embedded once; cached in ``cache`` (npz, keyed by the sets' pair ids)."""
    import hashlib

    import numpy as np

    from jprefs.classifiers.textfeatures import feature_matrix
    from jprefs.data.schema import prompt_key

    sig = hashlib.sha256(json.dumps({k: [r.id for r in v] for k, v in sets.items()}).encode()).hexdigest()
    names = ("ec", "er", "rc", "rr", "fc", "fr", "lc", "lr")
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        if str(z["sig"]) == sig:
            return {k: {n: z[f"{k}/{n}"] for n in names} for k in sets}
    index, prompts, texts = {}, [], []
    for recs in sets.values():
        for r in recs:
            for t in (r.chosen, r.rejected):
                key = (prompt_key(r.prompt), t)
                if key not in index:
                    index[key] = len(texts)
                    prompts.append(r.prompt)
                    texts.append(t)
    emb, rel = _frozen_models()
    e = emb.embed(prompts, texts, desc=f"embed {len(texts)} answers")
    rv = rel.score(prompts, texts, desc=f"relevance {len(texts)} answers")
    f = feature_matrix(prompts, texts)
    out, flat = {}, {"sig": np.array(sig)}
    for k, recs in sets.items():
        ic = np.array([index[(prompt_key(r.prompt), r.chosen)] for r in recs], int)
        ir = np.array([index[(prompt_key(r.prompt), r.rejected)] for r in recs], int)
        out[k] = {"ec": e[ic], "er": e[ir], "rc": rv[ic], "rr": rv[ir], "fc": f[ic], "fr": f[ir],
                  "lc": np.array([len(r.chosen) for r in recs]), "lr": np.array([len(r.rejected) for r in recs])}
        flat.update({f"{k}/{n}": v for n, v in out[k].items()})
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, **flat)
    tmp.replace(cache)
    return out


def _floor_goal(x: dict, lw: float, pb: float) -> dict:
    """Issue #13's floor on one reading (``x``: a train-rm stack's or `eval rm`'s figures): above
    longer-wins ``lw`` and the probe ``pb``, chosen-shorter >= 0.35; ``goal``: also above longer-wins by
    more than the interval's half-width and >= 0.5 chosen-shorter."""
    acc, cs = x["pairwise_accuracy"], x["length_controlled_accuracy"]
    ci = x.get("ci95") or x.get("pairwise_accuracy_ci95")
    half = (ci[1] - ci[0]) / 2 if ci and ci[0] is not None else float("nan")
    ok = bool(acc > lw and acc > pb and cs is not None and cs >= 0.35)
    return {"floor": ok, "goal": bool(ok and acc - lw > half and cs >= 0.5)}


def _stack_cells(x: dict) -> dict:
    """A train-rm stack's figures (jprefs.classifiers.stack._figures) as the bench's cells."""
    return {"accuracy": x["pairwise_accuracy"], "ci95": x.get("pairwise_accuracy_ci95"),
            "longer_wins": x["length_baseline_accuracy"], "chosen_shorter": x["length_controlled_accuracy"],
            "chosen_shorter_n": x.get("length_controlled_pairs"),
            "spearman_length": x["reward_length_corr"]["spearman"], "pairs": x["pairs"]}


def _eval_cells(x: dict) -> dict:
    """`jprefs eval rm` figures of one model on one set as the bench's cells."""
    return {"accuracy": x["pairwise_accuracy"], "ci95": x["ci95"], "minus_longer": x["accuracy_minus_length_baseline"],
            "minus_longer_ci95": x["accuracy_minus_length_baseline_ci95"],
            "chosen_shorter": x["length_controlled_accuracy"], "chosen_shorter_n": x["length_controlled_n"],
            "spearman_length": x["reward_length_corr"]["spearman"], "pairs": x["n_pairs"]}


def _finish_axis(ax, longer_wins: float, title: str, ylabel: str, legend_loc: str = "best") -> None:
    """The longer-wins line, the 0.35 chosen-shorter floor, labels and legend of one accuracy-against-
    chosen-shorter panel (the transfer, graded and frozen-loso plots)."""
    ax.axhline(longer_wins, color="k", ls="--", lw=1, label=f"longer wins {longer_wins:.3f}")
    ax.axvline(0.35, color="r", ls=":", lw=1, label="chosen-shorter floor 0.35")
    ax.set_xlabel("accuracy where the chosen answer is the shorter one")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc=legend_loc)


def plot_transfer() -> Path:
    """``transfer`` as a picture: per held-out set (trained on the other two), the stack, its parts and the
    baselines, accuracy against chosen-shorter accuracy, with the stack's 95 % interval; the 0.35
    floor. RESULTS/transfer.png."""
    from jprefs.eval.plots import pyplot, save_figure

    plt = pyplot()
    res = json.loads((RESULTS / "transfer.json").read_text(encoding="utf-8"))
    fig, axes = plt.subplots(1, len(res), figsize=(15, 5))
    for ax, (held, v) in zip(axes, res.items()):
        m = v["models"]
        pts = {"stack": m["recipe"], "quality head": m["recipe:quality"], "ODIN full": m["recipe:full"],
               "ODIN blend-0.1": m["recipe:blend"]}
        for i, (name, x) in enumerate(pts.items()):
            lo, hi = x["ci95"]
            a = x["pairwise_accuracy"]
            ax.errorbar(x["length_controlled_accuracy"], a, yerr=[[a - lo], [hi - a]] if name == "stack" else None,
                        fmt="o" if name == "stack" else "s", ms=7 if name == "stack" else 5, color=f"C{i}",
                        capsize=3, label=f"{name} {a:.3f}")
        rel = v["relevance"]
        ax.scatter(rel["chosen_shorter"], rel["accuracy"], marker="^", color="C5", label=f"relevance {rel['accuracy']:.3f}")
        pb = v["probe"]
        ax.scatter(pb["length_controlled_accuracy"], pb["accuracy"], marker="D", color="gray",
                   label=f"probe {pb['accuracy']:.3f}")
        _finish_axis(ax, v["longer_wins"], f"{held}, trained on {' + '.join(v['trained_on'])}",
                     "pairwise accuracy (every pair of the held-out set)", "lower left")
    save_figure(fig, RESULTS / "transfer.png")
    return RESULTS / "transfer.png"


def plot_graded() -> Path:
    """``graded`` and ``heuristics`` as a picture: per judged set (every pair), accuracy against
    chosen-shorter accuracy of what was fit on shaberi's graded answers to other questions (the recipe's
    stack and its quality head; the surface features), with the baselines and, for comparison, the
    recipe and the features fit on the two other judged sets; the 0.35 floor. RESULTS/graded.png."""
    from jprefs.eval.plots import pyplot, save_figure

    plt = pyplot()
    g = json.loads((RESULTS / "graded.json").read_text(encoding="utf-8"))
    h = json.loads((RESULTS / "heuristics.json").read_text(encoding="utf-8"))
    tr = json.loads((RESULTS / "transfer.json").read_text(encoding="utf-8"))
    fig, axes = plt.subplots(1, len(g["eval"]), figsize=(15, 5))
    for ax, (k, v) in zip(axes, g["eval"].items()):
        m = v["models"]
        pts = {"stack, shaberi": m["graded"], "quality head, shaberi": m["graded:quality"],
               "surface features, shaberi": h["eval"][k], "surface features, two sets": h["context"][k]["two_sets"],
               "recipe stack, two sets": tr[k]["models"]["recipe"]}
        for i, (name, x) in enumerate(pts.items()):
            lo, hi = x["ci95"]
            a = x["pairwise_accuracy"]
            ax.errorbar(x["length_controlled_accuracy"], a, yerr=[[a - lo], [hi - a]], fmt="o", ms=6, color=f"C{i}",
                        capsize=3, label=f"{name} {a:.3f}")
        pb = v["probe"]
        ax.scatter(pb["length_controlled_accuracy"], pb["accuracy"], marker="D", color="gray",
                   label=f"probe, shaberi {pb['accuracy']:.3f}")
        _finish_axis(ax, v["longer_wins"], k, "pairwise accuracy (every pair)")
    save_figure(fig, RESULTS / "graded.png")
    return RESULTS / "graded.png"


def plot_frozen_recipe() -> Path:
    """``frozen-recipe`` as a picture: one panel per reading ((a) the recipe's held-out 20% of each file,
    (b) the bench's test parts, (c) the unread role-play set), accuracy against chosen-shorter accuracy
    of the frozen recipe (with its 95 % interval) and the fine-tuned recipe; longer-wins, the probe
    and the 0.35 floor as lines. RESULTS/frozen-recipe.png."""
    from jprefs.eval.plots import pyplot, save_figure

    plt = pyplot()
    r = json.loads((RESULTS / "frozen-recipe.json").read_text(encoding="utf-8"))
    panels = [(f"(a) {k}: the recipe's held-out 20%", v["frozen"], v["fine_tuned_cross_fitted"], v["longer_wins"],
               v["probe"]) for k, v in r["a_recipe"]["held_out"].items()]
    panels += [(f"(b) {k}: bench test part", v["frozen"], v["fine_tuned"], v["longer_wins"], v["probe"])
               for k, v in r["b_bench_split"].items()]
    c = r["c_fourth"]
    panels.append(("(c) role-play (unread), GPT-4 verdicts", c["models"]["frozen"], c["models"]["recipe"],
                   c["longer_wins"], c["probe"]["accuracy"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6))
    for ax, (title, fr, ft, lw, pb) in zip(axes, panels):
        lo, hi = fr["ci95"]
        a = fr["accuracy"]
        ax.errorbar(fr["chosen_shorter"], a, yerr=[[a - lo], [hi - a]], fmt="o", ms=8, color="C0", capsize=3,
                    label=f"frozen recipe {a:.3f}")
        ax.scatter(ft["chosen_shorter"], ft["accuracy"], marker="s", color="C1",
                   label=f"fine-tuned recipe {ft['accuracy']:.3f}")
        ax.axhline(pb, color="gray", ls="-.", lw=1, label=f"probe {pb:.3f}")
        _finish_axis(ax, lw, title, "pairwise accuracy")
    save_figure(fig, RESULTS / "frozen-recipe.png")
    return RESULTS / "frozen-recipe.png"


def plot_ninth() -> Path:
    """``ninth`` (and ``ninth-fine-tuned`` where it ran) as a picture: one panel per reading (the grouped-CV
    figures that chose, then the five readings), accuracy against chosen-shorter accuracy of each
    candidate (with its 95 % interval) and, hollow, its own probe; longer-wins and the 0.35 floor as
    lines. RESULTS/ninth.png."""
    from jprefs.eval.plots import pyplot, save_figure

    plt = pyplot()
    r = json.loads((RESULTS / "ninth.json").read_text(encoding="utf-8"))
    ft_path = RESULTS / "ninth-fine-tuned.json"
    ft = json.loads(ft_path.read_text(encoding="utf-8"))["readings"] if ft_path.exists() else {}
    panels = [(f"choice: grouped CV, {s} train + dev", {c: {"stack": v[s]} for c, v in r["cv"]["figures"].items()}, None)
              for s in SETS]
    panels += [(f"read once: {k}", v, ft.get(k.removesuffix("-test"))) for k, v in r["readings"].items()]
    fig, axes = plt.subplots(2, 4, figsize=(17, 9))
    for ax, (title, cands, fine) in zip(axes.flat, panels):
        for i, (c, x) in enumerate(cands.items()):
            st = x["stack"]
            a, (lo, hi) = st["pairwise_accuracy"], st["ci95"]
            ax.errorbar(st["length_controlled_accuracy"], a, yerr=[[a - lo], [hi - a]], fmt="o", ms=7, color=f"C{i}",
                        capsize=3, label=f"{c}{' (pick)' if c == r['cv']['pick'] else ''} {a:.3f}")
            if "probe" in x:
                pb = x["probe"]
                ax.scatter(pb["length_controlled_accuracy"], pb["pairwise_accuracy"], facecolors="none",
                           edgecolors=f"C{i}", s=50, label=f"its probe {pb['pairwise_accuracy']:.3f}")
        if fine:
            s = fine["stack"]
            ax.scatter(s["chosen_shorter"], s["accuracy"], marker="s", color="C3",
                       label=f"fine-tuned + fifth sample {s['accuracy']:.3f}")
        lw = next(iter(cands.values()))["stack"]["length_baseline_accuracy"]
        _finish_axis(ax, lw, title, "pairwise accuracy")
    axes.flat[-1].axis("off")
    save_figure(fig, RESULTS / "ninth.png")
    return RESULTS / "ninth.png"


def plot_frozen_loso() -> Path:
    """``frozen-loso`` as a picture: per held-out set, accuracy against chosen-shorter accuracy of every
    frozen candidate (fit on the two other sets), the fine-tuned recipe's stack trained the same way
    (``transfer``) and longer-wins; the 0.35 floor. RESULTS/frozen-loso.png."""
    from jprefs.eval.plots import pyplot, save_figure

    plt = pyplot()
    r = json.loads((RESULTS / "frozen-loso.json").read_text(encoding="utf-8"))
    tr = json.loads((RESULTS / "transfer.json").read_text(encoding="utf-8"))
    fig, axes = plt.subplots(1, len(r["held_out"]), figsize=(15, 5))
    for ax, (k, v) in zip(axes, r["held_out"].items()):
        pts = {**v["candidates"], "recipe (fine-tuned) stack": tr[k]["models"]["recipe"]}
        for i, (name, x) in enumerate(pts.items()):
            lo, hi = x["ci95"]
            a = x["pairwise_accuracy"]
            big = name == r["chosen"]
            ax.errorbar(x["length_controlled_accuracy"], a, yerr=[[a - lo], [hi - a]] if big else None,
                        fmt="o" if big else "s", ms=8 if big else 5, color=f"C{i}", capsize=3,
                        label=f"{name} {a:.3f}" + (" (chosen)" if big else ""))
        _finish_axis(ax, v["candidates"]["probe"]["length_baseline_accuracy"],
                     f"{k}, fit on {' + '.join(v['trained_on'])}", "pairwise accuracy (every pair of the held-out set)")
    save_figure(fig, RESULTS / "frozen-loso.png")
    return RESULTS / "frozen-loso.png"


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "split":
        split()
    elif cmd == "train":
        for v in sys.argv[2:]:
            train(v)
    elif cmd in ("dev", "test"):
        r = evaluate(cmd)
        if cmd == "dev":
            print("recommended:", choose(r))
    elif cmd == "plot":
        print({"transfer": plot_transfer, "graded": plot_graded, "frozen-loso": plot_frozen_loso,
               "frozen-recipe": plot_frozen_recipe, "ninth": plot_ninth}.get(sys.argv[2], lambda: plot(sys.argv[2]))())
    elif cmd == "table":
        print(cv_table() if sys.argv[2] == "cv" else table(sys.argv[2]))
    elif cmd == "recipe":
        r = recipe_check()
        print(json.dumps({k: v for k, v in r.items() if k != "eval_metrics"}))
    elif cmd == "recipe-ens":     # the recipe's stack over a 3-seed ensemble (after `recipe`)
        r = recipe_ensemble_check()
        for f, v in r["eval_by_file"].items():
            o = r["one_seed_recipe_eval_by_file"].get(f, {})
            print(f, f"ensemble stack {v['pairwise_accuracy']:.3f} cs {v['length_controlled_accuracy']:.2f}",
                  f"one seed {o.get('pairwise_accuracy', float('nan')):.3f}")
    elif cmd == "third":          # the confirmation read on the Japanese Vicuna-QA judgments (after recipe, recipe-ens)
        r = third(Path(sys.argv[2]))
        print(f"longer-wins {r['longer_wins']:.3f}  probe {r['probe']['accuracy']:.3f}  "
              f"relevance {r['relevance']['accuracy']:.3f}")
        for lab, v in r["models"].items():
            print(f"{lab:24s} {v['pairwise_accuracy']:.3f} {v['ci95']}  cs {v['length_controlled_accuracy']:.2f}")
        print("confirms:", r["confirms"], "goal:", r["goal"])
    elif cmd == "transfer":       # leave one judged set out: train on two, score the third (after third)
        for held, v in transfer().items():
            print(f"{held}: longer-wins {v['longer_wins']:.3f} probe {v['probe']['accuracy']:.3f} "
                  f"relevance {v['relevance']['accuracy']:.3f}")
            for lab, x in v["models"].items():
                print(f"  {lab:16s} {x['pairwise_accuracy']:.3f}  cs {x['length_controlled_accuracy']:.2f}")
    elif cmd == "graded":         # train on shaberi's graded ELYZA/Tengu answers, score all three sets (after third)
        r = graded(Path(sys.argv[2]))
        for k, v in r["eval"].items():
            print(f"{k}: longer-wins {v['longer_wins']:.3f} probe {v['probe']['accuracy']:.3f} floor {v['floor']}")
            for lab, x in v["models"].items():
                print(f"  {lab:22s} {x['pairwise_accuracy']:.3f} {x['ci95']}  cs {x['length_controlled_accuracy']:.2f}")
        print("confirms:", r["confirms"])
    elif cmd == "heuristics":     # question-free answer features fit on shaberi's grades (after graded)
        r = heuristics(Path(sys.argv[2]))
        print("chosen on shaberi CV:", r["chosen"], {k: round(v["accuracy"], 3) for k, v in r["cv"].items()})
        for k, v in r["eval"].items():
            c = r["context"][k]
            print(f"{k}: {v['pairwise_accuracy']:.3f} {v['ci95']} lw {v['length_baseline_accuracy']:.3f} probe "
                  f"{v['probe_shaberi']} cs {v['length_controlled_accuracy']:.2f} floor {v['floor']} | two sets "
                  f"{c['two_sets']['pairwise_accuracy']:.3f} shaberi+two {c['shaberi_plus_two']['pairwise_accuracy']:.3f}")
        print("confirms:", r["confirms"])
    elif cmd == "frozen-loso":    # frozen parts only (probe, relevance, surface features), leave one set out
        r = frozen_loso()
        for k, v in r["held_out"].items():
            print(k, "  ".join(f"{n}: {x['pairwise_accuracy']:.3f}/{x['length_controlled_accuracy']:.2f}"
                               for n, x in v["candidates"].items()), "lw", round(v["candidates"]["probe"]["length_baseline_accuracy"], 3))
        print("chosen:", r["chosen"], "floor:", r["floor"])
    elif cmd == "frozen-recipe":  # the frozen stack as a train-rm recipe, and a fourth judged set (after frozen-nested)
        r = frozen_recipe(Path(sys.argv[2]))
        print(json.dumps({k: v for k, v in r.items() if k != "rule"}, indent=1, ensure_ascii=False)[:6000])
    elif cmd == "fifth":          # new models' answers to Japanese MT-Bench, GPT-4 single grades (after frozen-recipe)
        r = fifth(Path(sys.argv[2]))
        for part, v in r["readings"].items():
            print(f"{part}: {v['pairs']} pairs, longer-wins {v['longer_wins']:.3f} probe {v['probe']['accuracy']:.3f}")
            for lab, x in v["models"].items():
                print(f"  {lab:18s} {x['accuracy']:.3f} cs {x['chosen_shorter']:.2f}")
            print("  floor: frozen", v["frozen_floor"], "recipe", v["recipe_floor"])
    elif cmd == "ninth":          # the fifth set's grades as training pairs of the frozen stack (after fifth)
        r = ninth(Path(sys.argv[2]))
        print("pick (grouped CV):", r["cv"]["pick"], {c: round(v, 3) for c, v in r["cv"]["mean_accuracy"].items()})
        for k, v in r["readings"].items():
            print(k, "  ".join(f"{c}: {x['stack']['pairwise_accuracy']:.3f}/{x['stack']['length_controlled_accuracy']:.2f}"
                               f" (probe {x['probe']['pairwise_accuracy']:.3f}, floor {x['floor']})" for c, x in v.items()))
        print("floor on both tests:", r["floor_both_tests"], "recommend:", r["recommend"])
    elif cmd == "ninth-fine-tuned":   # the fine-tuned recipe with a sample of the fifth set's grades (after ninth)
        r = ninth_fine_tuned(Path(sys.argv[2]))
        for k, v in r["readings"].items():
            x = v["stack"]
            print(f"{k}: {x['accuracy']:.3f} cs {x['chosen_shorter']:.2f} lw {v['longer_wins']:.3f} probe {v['probe']:.3f}",
                  f"without fifth {v['without_fifth']['accuracy']:.3f} floor {v['floor']}")
        print("floor on both tests:", r["floor_both_tests"], "recommend:", r["recommend"])
    elif cmd == "frozen-nested":  # the LOSO choice made from the two training sets alone (after frozen-loso)
        r = frozen_nested()
        for k, v in r["held_out"].items():
            x = v["figures"]
            print(k, "chosen:", v["chosen"], f"{x['pairwise_accuracy']:.3f} cs {x['length_controlled_accuracy']:.2f}",
                  "lw", round(x["length_baseline_accuracy"], 3), "floor", v["floor"])
    elif cmd == "cv":
        r = cv()
        print("recommended (grouped CV):", r["recommended"])
    elif cmd == "cv-seeds":      # ODIN with seeds 42, 43, 44 on the CV folds (the analysis: cv-ensemble)
        cv(SEED_VARIANTS, "cv-seeds.json")
    elif cmd == "cv-repro":      # retrain one CV variant (fresh process, new machine); compare with cv.json
        name = sys.argv[2] if len(sys.argv) > 2 else "bt-balanced"
        before = json.loads((RESULTS / "cv.json").read_text())[name]
        again = cv((name,), "cv-repro.json")[name]
        diff = max(abs(before[s][h][k] - again[s][h][k]) for s in SETS for h in before[s]
                   for k in ("accuracy", "chosen_shorter", "spearman_length"))
        r = json.loads((RESULTS / "cv-repro.json").read_text())
        r["reproduces"] = {"variant": name, "cv.json": before, "max_abs_difference": diff}
        (RESULTS / "cv-repro.json").write_text(json.dumps(r, indent=2, ensure_ascii=False) + "\n")
        print(name, "max |difference| against cv.json:", diff)
    elif cmd == "cv-ensemble":
        r = cv_ensemble()
        print("recommended (seed round):", r["recommended"], "meets the floor:", r["meets_floor"])
        print(plot_seeds())
    elif cmd == "cv-stack":
        print(json.dumps({k: v["meets_floor"] for k, v in cv_stack()["stacks"].items()}, indent=1))
    elif cmd == "probe":
        print(json.dumps(probe(), indent=1))
    elif cmd == "relevance":
        relevance()
    elif cmd == "stack":          # the library's stack on the test-read setup (after test-relevance)
        r = stack_run()
        print("weights:", r["weights"], "bench (dev):", r["bench_weights_dev"])
        for s, v in r["test"].items():
            b = v["bench_stack"] or {}
            print(s, f"stack {v['stack']['accuracy']:.3f} cs {v['stack']['chosen_shorter']:.2f}",
                  f"bench {b.get('accuracy', float('nan')):.3f} cs {b.get('chosen_shorter', float('nan')):.2f}")
    elif cmd == "test-relevance":
        r = test_relevance()
        print("stack weights (dev):", dict(zip(r["names"], r["weights_dev"])))
        for k, v in r["test"].items():
            print(f"{k:32s}", "  ".join(f"{s} {v[s]['accuracy']:.3f} cs {v[s]['chosen_shorter']:.2f}" for s in SETS),
                  "FLOOR" if v["meets_floor"] else "")
    elif cmd == "cv-relevance":
        r = cv_relevance()
        for k, v in r["candidates"].items():
            print(f"{k:45s}", "  ".join(f"{s} {v[s]['accuracy']:.3f} cs {v[s]['chosen_shorter']:.2f}" for s in SETS),
                  "FLOOR" if v["meets_floor"] else "")
        print("recommended:", r["recommended"])
    elif cmd == "all":            # one process: the frozen-layer memo serves every variant and split
        for v in sys.argv[2:] or list(VARIANTS):
            if not (WORK / "models" / v / "done.json").exists():
                train(v)
        dev = evaluate("dev")
        best = choose(dev)          # from the dev figures alone, before any test figure exists
        (RESULTS / "chosen.json").write_text(json.dumps({"recommended": best, "rule": choose.__doc__}) + "\n")
        print("recommended:", best)
        test = evaluate("test")
        probe()                     # the probe baseline, fit on the train parts, beside both
        for part, res in (("dev", dev), ("test", test)):
            res["_probe"] = _probe(part)
            (RESULTS / f"{part}.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    else:
        raise SystemExit(__doc__)
