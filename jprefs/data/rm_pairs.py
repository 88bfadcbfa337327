"""``jprefs data rm-pairs``: K candidate responses per prompt -> preference pairs labelled by a reward model
or by the scores the rows already carry (a judge's single-answer grades).

The second half of the RM-labelled DPO loop (candidates -> rm-pairs -> dpo): ``jprefs label
candidates`` samples K responses per prompt from the policy, this scores them with a reward source
and writes canonical :class:`~jprefs.data.schema.PreferencePair` rows that ``jprefs rl`` (``algo:
dpo``), ``jprefs data export`` and every other ``jprefs data`` command read.

**Reward sources** are given exactly as ``jprefs eval policy --reward`` takes them
(:func:`jprefs.eval.policy.parse_reward_spec`, built by :func:`jprefs.rl.rewards.make_reward`, the
loader ``jprefs rl`` uses): a jprefs reward model folder, a transformers classifier (``--reward-label``
or ``classifier:PATH@LABEL``), or ``module:function``; ``[NAME=]`` names one. Several ``--reward``
are summed, each times its ``--reward-weight`` (one per ``--reward`` in order, default 1 each: the
``reward_weights`` of ``jprefs rl``'s GRPO/RLOO). The reward sees the prompt rendered as ``jprefs
eval policy`` gives it (:func:`jprefs.data.schema.render_prompt`) and the response
(``--reward-input pair``), or the response alone (``response``), or one text (``concat``).

**Input rows**: ``label candidates`` output, or any row with ``prompt`` (a string or messages) and
``responses`` (a list of strings), e.g. canonical rank lists (their order is ignored: the reward
decides).

**Given scores** (``--scores FIELD`` instead of ``--reward``): the row's own ``FIELD``, a list as long
as ``responses`` of finite numbers or null, is the score: the single-answer grades of an LLM judge
(MT-Bench single mode, ELYZA-tasks-100, Tengu-Bench, shaberi) or of people, one row per prompt with
every model's answer. A null score leaves its response out (counted, ``responses_unscored``); a
non-number, a non-finite number or a list of another length rejects the row (``bad_scores``).

Per row:

- empty responses and duplicates (equal after NFKC and whitespace folding: a pair of them is no
  preference) are not scored, and counted; the first of each duplicate group is the one scored;
  so is a response whose text cannot be written as canonical JSONL (a NUL character, a lone
  surrogate): ``responses_invalid`` in the summary, ``meta.rm_pairs.invalid`` = {index: reason};
- the scores are the weighted sum over the sources; ranks order them best first, ties broken by
  the lower index (so the chosen of a tie at the top, and the rejected of a tie at the bottom, is
  the response that came first);
- ``--pairs best-worst`` (default): one pair, the best against the worst; ``best-vs-rest``: the best
  against each other response; ``all``: every pair ``(i, j)`` with ``score_i > score_j``. A pair
  needs ``margin = chosen_score - rejected_score > 0`` (ties are no preference) and
  ``margin >= --min-margin``; pairs failing that are dropped and counted (``pairs_dropped`` in the
  summary, over every scored row, those that end up rejected included);
- ``--length-balance``: of the pairs left, as many whose chosen response is the longer (in
  characters) as whose chosen is the shorter, ``min`` of the two counts each, drawn at random
  (``--seed`` and the row's id), equal-length pairs dropped: on the pairs written, "the longer answer
  wins" is right exactly half the time, so a reward model trained on them cannot profit from length
  (issue #13); a row without a pair on each side is rejected (``no_length_balanced_pair``);
- ``--max-pairs N``: at most ``N`` pairs per row (with ``--length-balance``, ``N // 2`` a side),
  drawn the same way; the dropped pairs are counted (``length_balance``, ``over_max_pairs``);
- a row that gives no pair goes to the rejects file with its reason: ``fewer_than_2_responses``
  (fewer than two non-empty responses), ``identical_responses`` (all non-empty responses the
  same), ``tied_scores`` (every scored response got the same score), ``below_min_margin``, or a
  malformed row (``malformed_json``, ``missing_field``, ``bad_responses``, ``bad_prompt`` ...).
  ``rows_in == rows_paired + rows_rejected`` always.

**Output** ``OUT.jsonl``: canonical pairs with ``chosen_score``, ``rejected_score``, ``margin``,
``source: "rm-pairs"``, ``source_id`` = the input row's id, its licence, its ``meta`` (without
``candidates``) and ``meta.rm_pairs``::

    {"reward": [{"label", "kind", "spec", "weight"}], "reward_input", "pairs", "min_margin",
     "scores": [K: the summed score, null for an empty or duplicate response],
     "ranks": [K: 0 = best, null where not scored], "chosen_index", "rejected_index",
     "n_empty", "n_duplicates", ("duplicate_of": [K: index of the response it repeats, or null]),
     ("scores_by_reward": {label: [K]} with several rewards), "input_source",
     ("candidates": the row's meta.candidates: policy, digest, sampling, seeds ...)}

With ``--scores``, ``reward`` is ``[{"label": FIELD, "kind": "given", ...}]`` and ``reward_input`` null.

A **wide** row (more than ``WIDE_ROW`` = 16 responses, e.g. 169 models graded on one question) would
copy its K-long lists into each of its pairs; there ``scores``, ``ranks``, ``duplicate_of``,
``scores_by_reward`` and ``invalid`` are left out of ``meta.rm_pairs`` (which gains ``n_responses``,
``chosen_rank`` and ``rejected_rank``), and every list in the row's ``meta`` with one entry per response
(``models``, ``files`` from ``jprefs data group``) becomes ``[chosen's, rejected's]``.

``OUT.rejects.jsonl``: ``{line | index, reason, error, raw}`` per rejected row (scored rows also
``scores``). ``OUT.summary.json``: counts, reasons, score and margin statistics, the share of pairs
whose chosen response is the longer one (reward models often measure length; a DPO policy trained
on pairs that mostly prefer the longer answer learns to write longer), licences, throughput, and
the command and status of the ``label candidates`` run when its ``CANDS.jsonl.meta.json`` is beside
the input (a run that is not complete is warned about).
Writes are atomic; the same input and reward give the same files.

Examples::

    jprefs label candidates --model runs/sft --prompts builtin:ja-instructions -k 4 -o cands.jsonl
    jprefs data rm-pairs cands.jsonl --reward out/rm -o pairs.jsonl
    jprefs rl rl/recipes/dpo-tiny-cpu.yaml data=pairs.jsonl policy=runs/sft/policy -o runs/dpo

    # judge grades (one row per question: every model's answer and its 1-10 score) -> length-balanced pairs
    jprefs data rm-pairs graded.jsonl --scores scores --pairs all --min-margin 3 --length-balance \\
        --max-pairs 8 -o pairs.jsonl
"""

from __future__ import annotations

import math
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from jprefs.config import arg_float
from jprefs.data.adapters import _brief
from jprefs.data.schema import finite_float
from jprefs.errors import ConfigError, DataError
from jprefs.runlock import holds_output

COMMAND = "jprefs data rm-pairs"
SOURCE = "rm-pairs"
PAIRINGS = ("best-worst", "best-vs-rest", "all")
REWARD_INPUTS = ("pair", "response", "concat")
# the length warning: this share of pairs (or more) with the longer response chosen, over at least this many pairs
LONGER_WARN_SHARE, LONGER_WARN_MIN_PAIRS = 0.75, 20
# a row with more responses than this is "wide" (a judge's grades of many models' answers): its pairs carry
# the chosen and rejected entries of the row's per-response lists, not the whole lists
WIDE_ROW = 16


# ====================================================================== the pairing rule

def rank_order(scores: Sequence[float]) -> list[int]:
    """Indices of ``scores`` best first; ties broken by the lower index.

    >>> rank_order([1.0, 3.0, 1.0, 3.0])
    [1, 3, 0, 2]
    """
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def choose_pairs(scores: Sequence[float], pairing: str = "best-worst",
                 min_margin: float = 0.0) -> tuple[list[tuple[int, int]], dict[str, int]]:
    """``(chosen, rejected)`` index pairs into ``scores`` by the ``pairing`` rule, and the counts of
    candidate pairs dropped (``tied``: margin 0; ``below_min_margin``: 0 < margin < ``min_margin``).

    The best is the highest score (lowest index among ties), the worst the lowest score (lowest
    index among ties). ``all`` lists pairs by the chosen's rank, then the rejected's.

    >>> choose_pairs([0.5, 2.0, -1.0, 2.0])
    ([(1, 2)], {'tied': 0, 'below_min_margin': 0})
    >>> choose_pairs([0.5, 2.0, -1.0, 2.0], "best-vs-rest", min_margin=2.0)
    ([(1, 2)], {'tied': 1, 'below_min_margin': 1})
    >>> choose_pairs([0.5, 2.0, -1.0], "all")
    ([(1, 0), (1, 2), (0, 2)], {'tied': 0, 'below_min_margin': 0})
    """
    if pairing not in PAIRINGS:
        raise ConfigError(f"--pairs {pairing!r} is not one of {', '.join(PAIRINGS)}")
    order = rank_order(scores)
    best = order[0]
    worst = min(i for i in range(len(scores)) if scores[i] == scores[order[-1]])
    if pairing == "best-worst":
        candidates = [(best, worst)] if best != worst else [(best, order[-1])]
    elif pairing == "best-vs-rest":
        candidates = [(best, j) for j in order[1:]]
    else:
        candidates = [(order[a], order[b]) for a in range(len(order)) for b in range(a + 1, len(order))]
    kept, dropped = [], {"tied": 0, "below_min_margin": 0}
    for c, r in candidates:
        m = scores[c] - scores[r]
        if m <= 0:
            dropped["tied"] += 1
        elif m < min_margin:
            dropped["below_min_margin"] += 1
        else:
            kept.append((c, r))
    return kept, dropped


# ====================================================================== rows

class RowReject(Exception):
    """A row that gives no pair: ``reason`` is the rejects tag, ``extra`` goes into its entry."""

    def __init__(self, reason: str, message: str, dropped: dict | None = None, **extra: Any):
        super().__init__(message)
        self.reason, self.extra, self.dropped = reason, extra, dropped or {}


@dataclass
class CandidateRow:
    """One input row, checked: its prompt, the responses, which of them are scored."""

    locator: int
    unit: str
    raw: dict
    id: str
    prompt: list                   # [Message]
    prompt_text: str
    responses: list[str]
    scored: list[int]              # indices of the distinct non-empty responses, first of each duplicate group
    duplicate_of: list[int | None]
    n_empty: int
    license: str
    source: str
    meta: dict
    scores_by_reward: dict[str, list[float]] = field(default_factory=dict)
    given: list[float | None] | None = None    # --scores: the row's own score of each response
    invalid: dict[int, str] = field(default_factory=dict)   # index -> why its text is unusable (NUL ...)
    n_unscored: int = 0                        # non-empty responses whose given score is null


def _given_scores(d: dict, name: str, n: int) -> list[float | None]:
    """The row's ``name`` field as scores of its ``n`` responses (null: not scored)."""
    v = d.get(name)
    if v is None:
        raise RowReject("missing_field", f"missing field '{name}' (--scores {name}: one score per response)")
    if not isinstance(v, list) or len(v) != n:
        what = f"a list of {len(v)}" if isinstance(v, list) else f"a {type(v).__name__}"
        raise RowReject("bad_scores", f"'{name}' must be a list of {n} scores (one per response), got {what}")
    out: list[float | None] = []
    for i, x in enumerate(v):
        if x is None:
            out.append(None)
        elif isinstance(x, bool) or not isinstance(x, (int, float)) or finite_float(x) is None:
            raise RowReject("bad_scores", f"{name}[{i}] is {_brief(x)}: a score must be a finite number (or null "
                                          "for an unscored response)")
        else:
            out.append(float(x))
    return out


def read_row(row, scores_field: str | None = None) -> CandidateRow:
    """A :class:`jprefs.data.io.Row` -> :class:`CandidateRow` (empties and duplicates marked), or
    :class:`RowReject` with the reason for a malformed row; :func:`check_pairable` checks the count.
    ``scores_field``: read each response's score from that field (``--scores``); responses whose
    score is null are left out like empty ones."""
    from jprefs.data.schema import (UNKNOWN_LICENSE, SchemaError, _check_meta, _check_prompt, _check_text, _meta_from,
                                    _opt_str, as_messages, content_hash, normalize_text, render_prompt)

    if row.error:
        raise RowReject(row.reason or "bad_row", row.error)
    d = row.data
    if not isinstance(d, dict):
        raise RowReject("not_an_object", f"expected a JSON object, got {type(d).__name__}")
    missing = [k for k in ("prompt", "responses") if k not in d]
    if missing:
        raise RowReject("missing_field", f"missing field(s) {missing}; a row needs 'prompt' and 'responses' (the "
                                         f"output of `jprefs label candidates`, or a rank list)")
    try:
        prompt = as_messages(d["prompt"])
        _check_prompt(prompt)
        meta = _check_meta(_meta_from(d))      # a NaN in meta: a reject here, not a failed write later
        rid = _opt_str(d.get("id"))
        lic = d.get("license") or UNKNOWN_LICENSE
        src = d.get("source") or "unknown"
        if not isinstance(lic, str) or not isinstance(src, str):
            raise SchemaError("'license' and 'source' must be strings", reason="bad_provenance")
    except SchemaError as e:
        raise RowReject(e.reason if e.reason != "invalid_record" else "bad_prompt", str(e)) from None
    responses = d["responses"]
    if not isinstance(responses, list):
        raise RowReject("bad_responses", f"'responses' must be a list of strings, got {type(responses).__name__}")
    for i, r in enumerate(responses):
        if not isinstance(r, str):
            raise RowReject("bad_responses", f"responses[{i}] is a {type(r).__name__}, not a string")
    invalid: dict[int, str] = {}
    for i, r in enumerate(responses):
        try:
            _check_text(f"responses[{i}]", r, allow_empty=True)
        except SchemaError as e:             # one bad text (a NUL, a lone surrogate) costs that response, not the row
            invalid[i] = e.reason.split("[")[0]
    given = _given_scores(d, scores_field, len(responses)) if scores_field else None
    first: dict[str, int] = {}
    scored, dup_of, n_empty, n_unscored = [], [None] * len(responses), 0, 0
    for i, r in enumerate(responses):
        if i in invalid:
            continue
        if not r.strip():
            n_empty += 1
            continue
        if given is not None and given[i] is None:
            n_unscored += 1
            continue
        key = normalize_text(r)
        if key in first:
            dup_of[i] = first[key]
        else:
            first[key] = i
            scored.append(i)
    if not rid:
        rid = content_hash([m.to_dict() for m in prompt], responses)[:16]
    return CandidateRow(row.locator, row.unit, d, rid, prompt, render_prompt(prompt), responses, scored, dup_of,
                        n_empty, lic, src, meta, given=given, invalid=invalid, n_unscored=n_unscored)


def check_pairable(cr: CandidateRow) -> None:
    """:class:`RowReject` for a row with fewer than two distinct non-empty responses."""
    n = len(cr.responses) - cr.n_empty - len(cr.invalid) - cr.n_unscored
    if n < 2:
        what = "non-empty scored" if cr.given is not None else "non-empty"
        raise RowReject("fewer_than_2_responses", f"{n} {what} response(s) of {len(cr.responses)}: a pair "
                                                  "needs two")
    if len(cr.scored) < 2:
        raise RowReject("identical_responses", f"all {n} non-empty responses are the same text (after NFKC and "
                                               "whitespace folding)")


# ====================================================================== rewards

@dataclass
class Reward:
    """One reward source: its :class:`jprefs.eval.policy.RewardSpec`, weight and function (None: the
    scores the rows carry, :func:`given_scores`)."""

    spec: Any
    weight: float
    fn: Callable | None

    def describe(self) -> dict:
        return {"label": self.spec.label, "kind": self.spec.kind, "spec": self.spec.target, "weight": self.weight}


def load_rewards(specs: Sequence[str], weights: Sequence[float] = (), *, reward_label: str = "1",
                 reward_input: str = "pair", batch_size: int = 32, device: str = "auto",
                 trust_remote_code: bool = False) -> list[Reward]:
    """``--reward`` specs (and their ``--reward-weight``) -> reward functions, through
    :func:`jprefs.eval.policy.parse_reward_spec` / :func:`~jprefs.eval.policy.make_reward_fn`.

    >>> [r.describe() for r in load_rewards(["jprefs.rl.rewards:lexicon_sentiment"])]
    [{'label': 'lexicon_sentiment', 'kind': 'callable', 'spec': 'jprefs.rl.rewards:lexicon_sentiment', 'weight': 1.0}]
    """
    from jprefs.eval.policy import make_reward_fn, parse_reward_spec

    if not specs:
        raise ConfigError("no --reward given\n  fix: --scores FIELD (the scores the rows carry), or --reward out/rm (a reward model folder), a classifier folder, "
                          "or a module:function such as jprefs.rl.rewards:lexicon_sentiment")
    if weights and len(weights) != len(specs):
        raise ConfigError(f"{len(weights)} --reward-weight for {len(specs)} --reward\n  fix: one weight per "
                          "--reward, in the same order (or none: 1 each)")
    ws = [float(w) for w in weights] or [1.0] * len(specs)
    if any(not math.isfinite(w) for w in ws):
        raise ConfigError(f"--reward-weight {ws}: weights must be finite numbers")
    if reward_input not in REWARD_INPUTS:
        raise ConfigError(f"--reward-input {reward_input!r} is not one of {', '.join(REWARD_INPUTS)}")
    parsed = [parse_reward_spec(s, reward_label) for s in specs]
    labels = [p.label for p in parsed]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ConfigError(f"two rewards are labelled {dup[0]!r}\n  fix: name them, e.g. --reward a={specs[0]}")
    dev = None
    if any(p.kind != "callable" for p in parsed):
        from jprefs.rl.device import resolve_device

        dev = resolve_device(device)
    return [Reward(p, w, make_reward_fn(p, device=dev, batch_size=batch_size, reward_input=reward_input,
                                        trust_remote_code=trust_remote_code)) for p, w in zip(parsed, ws)]


@dataclass
class _GivenSpec:
    label: str
    kind: str = "given"

    @property
    def target(self) -> str:
        return self.label


def given_scores(field_name: str) -> Reward:
    """The ``--scores FIELD`` source: each row's own scores, read by :func:`read_row`."""
    if not field_name or not isinstance(field_name, str):
        raise ConfigError("--scores needs the name of the field that holds one score per response")
    return Reward(_GivenSpec(field_name), 1.0, None)


def score_rows(rows: list[CandidateRow], rewards: list[Reward], batch_size: int) -> int:
    """Score the scored responses of ``rows`` with every reward (``batch_size`` texts a call), into
    ``row.scores_by_reward``; returns the number of texts scored (per reward)."""
    jobs = [(row, i) for row in rows for i in row.scored]
    for rw in rewards:
        if rw.fn is None:                                # given scores: nothing to compute
            for row in rows:
                row.scores_by_reward[rw.spec.label] = [row.given[i] for i in row.scored]
            continue
        vals: list[float] = []
        for s in range(0, len(jobs), batch_size):
            chunk = jobs[s:s + batch_size]
            got = rw.fn([r.prompt_text for r, _ in chunk], [r.responses[i] for r, i in chunk])
            for (r, i), v in zip(chunk, got):
                v = float(v)
                if not math.isfinite(v):
                    raise DataError(f"reward {rw.spec.label!r} returned {v} for response {i} of row {r.id!r}",
                                    fix="check the reward model / function (it must return finite numbers)")
                vals.append(v)
        it = iter(vals)
        for row in rows:
            row.scores_by_reward[rw.spec.label] = [next(it) for _ in row.scored]
    return len(jobs)


# ====================================================================== one row -> pairs

def thin_pairs(picks: list[tuple[int, int]], lengths: Sequence[int], *, length_balance: bool = False,
               max_pairs: int | None = None, rng: random.Random | None = None) -> tuple[list[tuple[int, int]], dict]:
    """``--length-balance`` and ``--max-pairs`` over ``(chosen, rejected)`` index pairs; ``lengths``
    by index. Kept pairs stay in their order; the counts of those dropped by each rule.

    >>> thin_pairs([(0, 1), (0, 2), (1, 2), (3, 1)], [5, 3, 1, 2], length_balance=True, rng=random.Random(0))[1]
    {'length_balance': 2, 'over_max_pairs': 0}
    """
    rng = rng or random.Random(0)
    dropped = {"length_balance": 0, "over_max_pairs": 0}
    if length_balance:
        longer = [p for p in picks if lengths[p[0]] > lengths[p[1]]]
        shorter = [p for p in picks if lengths[p[0]] < lengths[p[1]]]
        k = min(len(longer), len(shorter))
        if max_pairs is not None:
            k = min(k, max_pairs // 2)
        keep = set(rng.sample(longer, k)) | set(rng.sample(shorter, k))
        dropped["length_balance"] = len(picks) - len(keep)
        return [p for p in picks if p in keep], dropped
    if max_pairs is not None and len(picks) > max_pairs:
        keep = set(rng.sample(picks, max_pairs))
        dropped["over_max_pairs"] = len(picks) - max_pairs
        picks = [p for p in picks if p in keep]
    return picks, dropped


def row_pairs(row: CandidateRow, rewards: list[Reward], pairing: str, min_margin: float,
              reward_input: str | None, *, length_balance: bool = False, max_pairs: int | None = None,
              seed: int = 0) -> tuple[list, dict[str, int], list[float]]:
    """The pairs of one scored row, the dropped-pair counts and the summed scores of ``row.scored``;
    :class:`RowReject` when no pair is left."""
    from jprefs.data.schema import PreferencePair

    n = len(row.scored)
    total = [sum(rw.weight * row.scores_by_reward[rw.spec.label][k] for rw in rewards) for k in range(n)]
    picks, dropped = choose_pairs(total, pairing, min_margin)
    n_kept = len(picks)
    picks, thinned = thin_pairs(picks, [len(row.responses[i]) for i in row.scored], length_balance=length_balance,
                                max_pairs=max_pairs, rng=random.Random(f"{seed}:{row.id}"))
    dropped.update(thinned)
    full: list[float | None] = [None] * len(row.responses)
    ranks: list[int | None] = [None] * len(row.responses)
    for k, i in enumerate(row.scored):
        full[i] = total[k]
    for r, k in enumerate(rank_order(total)):
        ranks[row.scored[k]] = r
    if not picks:
        spread = max(total) - min(total)
        reason = "tied_scores" if spread == 0 else "below_min_margin"
        msg = (f"all {n} scored responses got the same score {total[0]:g}: no preference" if spread == 0 else
               f"no pair reaches --min-margin {min_margin:g} (largest margin {spread:g})")
        if n_kept:
            reason = "no_length_balanced_pair"
            msg = (f"--length-balance: of {n_kept} pair(s), none has the shorter response chosen, or none the "
                   "longer (equal lengths do not count)")
        raise RowReject(reason, msg, dropped=dropped, scores=full)
    meta = {k: v for k, v in row.meta.items() if k != "candidates"}
    K = len(row.responses)
    # a wide row (a judge's grades of many models' answers) keeps its K-long lists out of every pair
    wide = K > WIDE_ROW
    info: dict[str, Any] = {"reward": [rw.describe() for rw in rewards], "reward_input": reward_input,
                            "pairs": pairing, "min_margin": min_margin}
    if not wide:
        info.update(scores=full, ranks=ranks)
    if length_balance or max_pairs is not None:
        info.update(length_balance=length_balance, max_pairs=max_pairs, seed=seed)
    n_dup = sum(x is not None for x in row.duplicate_of)
    info.update(n_empty=row.n_empty, n_duplicates=n_dup)
    if not wide:
        if row.invalid:
            info["invalid"] = {str(i): why for i, why in sorted(row.invalid.items())}
        if n_dup:
            info["duplicate_of"] = row.duplicate_of
        if len(rewards) > 1:
            by = {}
            for rw in rewards:
                v: list[float | None] = [None] * K
                for k, i in enumerate(row.scored):
                    v[i] = row.scores_by_reward[rw.spec.label][k]
                by[rw.spec.label] = v
            info["scores_by_reward"] = by
    info["input_source"] = row.source
    if "candidates" in row.meta:
        info["candidates"] = row.meta["candidates"]
    if wide:
        info["n_responses"] = K
        aligned = [k for k, v in meta.items() if isinstance(v, list) and len(v) == K]
    out = []
    for c, r in picks:
        ci, ri = row.scored[c], row.scored[r]
        m = dict(meta)
        if wide:
            for k in aligned:            # per-response lists (models ...): the chosen's and the rejected's entries
                m[k] = [meta[k][ci], meta[k][ri]]
            extra = {"chosen_rank": ranks[ci], "rejected_rank": ranks[ri]}
        else:
            extra = {}
        m["rm_pairs"] = {**info, "chosen_index": ci, "rejected_index": ri, **extra}
        out.append(PreferencePair.create(
            row.prompt, row.responses[ci], row.responses[ri], id=f"{row.id}-{ci}-{ri}", source=SOURCE,
            source_id=row.id, license=row.license, meta=m, chosen_score=total[c], rejected_score=total[r],
            margin=total[c] - total[r]))
    return out, dropped, total


# ====================================================================== the files

def summary_path_for(out: str | Path) -> Path:
    """``OUT.jsonl`` -> ``OUT.summary.json`` (beside ``OUT.rejects.jsonl``)."""
    from jprefs.data.io import rejects_path_for

    rej = rejects_path_for(out)
    return rej.with_name(rej.name[: -len(".rejects.jsonl")] + ".summary.json")


def candidates_run(input_path: str | Path) -> dict | None:
    """``command``, ``status`` and ``counts`` of the ``label candidates`` summary beside the input
    (``CANDS.jsonl.meta.json``), or None when there is none (or it is unreadable)."""
    import json

    from jprefs.label.candidates import meta_path

    try:
        meta = json.loads(meta_path(Path(input_path)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict):
        return None
    return {k: meta.get(k) for k in ("command", "status", "counts")}


def _count_lines(path: str | Path) -> int | None:
    """Non-blank lines of a plain ``.jsonl`` file (the progress bar's total; None for other files)."""
    p = Path(path)
    if not (p.name.endswith(".jsonl") and p.is_file()):
        return None
    with open(p, "rb") as f:
        return sum(1 for line in f if line.strip())


def _stats(xs: list[float]) -> dict:
    if not xs:
        return {"n": 0, "mean": None, "std": None, "min": None, "median": None, "max": None}
    return {"n": len(xs), "mean": statistics.fmean(xs), "std": statistics.pstdev(xs) if len(xs) > 1 else 0.0,
            "min": min(xs), "median": statistics.median(xs), "max": max(xs)}


def rm_pairs_to_files(input_path: str | Path, output: str | Path, rewards: list[Reward], *,
                      pairing: str = "best-worst", min_margin: float = 0.0, batch_size: int = 32,
                      reward_input: str = "pair", show_progress: bool = True, length_balance: bool = False,
                      max_pairs: int | None = None, seed: int = 0) -> dict:
    """Score every row of ``input_path`` and write ``output``, its rejects and its summary
    (see the module docstring); returns the summary. ``rewards`` may be ``[given_scores(FIELD)]``."""
    from jprefs.data.io import AtomicWriter, atomic_write_json, iter_table, reject_entry, rejects_path_for
    from jprefs.progress import progress

    if pairing not in PAIRINGS:
        raise ConfigError(f"--pairs {pairing!r} is not one of {', '.join(PAIRINGS)}")
    if not math.isfinite(min_margin) or min_margin < 0:
        raise ConfigError(f"--min-margin {min_margin!r}: give a finite number >= 0 (pairs need a positive margin)")
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: give at least 1")
    if max_pairs is not None and (isinstance(max_pairs, bool) or not isinstance(max_pairs, int)
                                  or max_pairs < (2 if length_balance else 1)):
        raise ConfigError(f"--max-pairs {max_pairs!r}: give a whole number >= {2 if length_balance else 1} "
                          f"(with --length-balance it is split evenly between the two sides)")
    given = [rw for rw in rewards if rw.fn is None]
    if given and len(rewards) > 1:
        raise ConfigError("--scores and --reward together: give one (the row's own scores, or a reward to compute)")
    scores_field = given[0].spec.label if given else None
    if scores_field:
        reward_input = None
    out = Path(output)
    if not out.name.endswith((".jsonl", ".jsonl.gz")):
        raise ConfigError(f"-o {output}: the pairs are canonical JSONL\n  fix: give a name ending in .jsonl or .jsonl.gz")
    rej_path, sum_path = rejects_path_for(out), summary_path_for(out)
    t0 = time.time()
    c = {"rows_in": 0, "rows_paired": 0, "rows_rejected": 0, "pairs_out": 0, "responses": 0, "responses_scored": 0,
         "responses_empty": 0, "responses_duplicate": 0, "responses_unscored": 0, "responses_invalid": 0}
    reasons: dict[str, int] = {}
    dropped = {"tied": 0, "below_min_margin": 0, "length_balance": 0, "over_max_pairs": 0}
    licences: dict[str, int] = {}
    all_scores: list[float] = []
    margins: list[float] = []
    len_c: list[int] = []
    len_r: list[int] = []
    score_s = [0.0]

    with AtomicWriter(out) as fo, AtomicWriter(rej_path) as fr, \
            progress(total=_count_lines(input_path), desc="rm-pairs", unit="prompt", disable=not show_progress) as bar:

        def flush(buf):
            """Score the rows of ``buf`` that can pair, then write every row's pairs or reject in input order."""
            ok = [cr for _, cr, bad in buf if bad is None]
            if ok:
                t = time.time()
                score_rows(ok, rewards, batch_size)
                score_s[0] += time.time() - t
            for row, cr, bad in buf:
                if bad is None:
                    try:
                        pairs, drop, total = row_pairs(cr, rewards, pairing, min_margin, reward_input,
                                                       length_balance=length_balance, max_pairs=max_pairs, seed=seed)
                    except RowReject as e:
                        bad = e
                    else:
                        all_scores.extend(total)
                        for k in dropped:
                            dropped[k] += drop[k]
                        c["rows_paired"] += 1
                        for p in pairs:
                            fo.write_json(p.to_dict())
                            c["pairs_out"] += 1
                            margins.append(p.margin)
                            len_c.append(len(p.chosen))
                            len_r.append(len(p.rejected))
                            licences[p.license] = licences.get(p.license, 0) + 1
                if bad is not None:
                    for k, v in bad.dropped.items():
                        dropped[k] += v
                    all_scores.extend(x for x in bad.extra.get("scores", []) if x is not None)
                    reasons[bad.reason] = reasons.get(bad.reason, 0) + 1
                    c["rows_rejected"] += 1
                    fr.write_json(reject_entry(row, bad.reason, str(bad), **bad.extra))
            bar.update(len(buf))

        buf: list = []
        n_texts = 0
        for row in iter_table(input_path):
            c["rows_in"] += 1
            cr, bad = None, None
            try:
                cr = read_row(row, scores_field)
                c["responses"] += len(cr.responses)
                c["responses_empty"] += cr.n_empty
                c["responses_unscored"] += cr.n_unscored
                c["responses_invalid"] += len(cr.invalid)
                c["responses_duplicate"] += sum(x is not None for x in cr.duplicate_of)
                check_pairable(cr)
                c["responses_scored"] += len(cr.scored)
                n_texts += len(cr.scored)
            except RowReject as e:
                bad = e
            buf.append((row, cr, bad))
            if n_texts >= batch_size:
                flush(buf)
                buf, n_texts = [], 0
        flush(buf)

    secs = time.time() - t0
    n_pairs = c["pairs_out"]
    longer = sum(a > b for a, b in zip(len_c, len_r))
    shorter = sum(a < b for a, b in zip(len_c, len_r))
    length = {"chosen_longer_share": longer / n_pairs if n_pairs else None,
              "chosen_shorter_share": shorter / n_pairs if n_pairs else None,
              "equal_length_share": (n_pairs - longer - shorter) / n_pairs if n_pairs else None,
              "chosen_mean_chars": statistics.fmean(len_c) if len_c else None,
              "rejected_mean_chars": statistics.fmean(len_r) if len_r else None}
    warnings = []
    if n_pairs >= LONGER_WARN_MIN_PAIRS and longer / n_pairs >= LONGER_WARN_SHARE:
        warnings.append(f"the reward chose the longer response in {longer / n_pairs:.0%} of {n_pairs} pairs: it may "
                        "be measuring length, and a DPO policy trained on these pairs learns to write longer; "
                        "check the reward model's length figures (`jprefs eval rm`) or use a length-debiased one")
    run_info = candidates_run(input_path)
    if run_info and run_info.get("status") not in (None, "complete"):
        warnings.append(f"{input_path} is from a `jprefs label candidates` run whose status is "
                        f"{run_info['status']!r}: some prompts have no candidates yet (run its command again to "
                        "finish it)")
    summary = {
        "command": COMMAND, "input": str(input_path), "output": str(out), "rejects": str(rej_path),
        "reward": [rw.describe() for rw in rewards], "reward_input": reward_input, "pairs": pairing,
        "min_margin": min_margin, "batch_size": batch_size, "scores_field": scores_field,
        "length_balance": length_balance, "max_pairs": max_pairs, "seed": seed,
        **c, "rejects_by_reason": dict(sorted(reasons.items())), "pairs_dropped": dropped,
        "scores": _stats(all_scores), "margin": _stats(margins), "length": length,
        "licenses": dict(sorted(licences.items())), "warnings": warnings, "candidates_run": run_info,
        "throughput": {"seconds": round(secs, 3), "scoring_s": round(score_s[0], 3),
                       "responses_per_s": round(c["responses_scored"] / max(score_s[0], 1e-9), 1),
                       "prompts_per_s": round(c["rows_in"] / max(secs, 1e-9), 1)},
    }
    atomic_write_json(sum_path, summary)
    return summary


def summary_line(s: dict) -> str:
    """The one-line stderr summary."""
    why = ", ".join(f"{k} {v}" for k, v in s["rejects_by_reason"].items())
    m = s["margin"]["mean"]
    share = s["length"]["chosen_longer_share"]
    t = s["throughput"]
    return (f"{COMMAND}: {s['rows_in']} prompts = {s['rows_paired']} paired ({s['pairs_out']} pairs, {s['pairs']}) "
            f"+ {s['rows_rejected']} rejected{f' ({why})' if why else ''}; {s['responses_scored']} responses "
            f"scored in {t['scoring_s']:.1f} s ({t['responses_per_s']:g}/s); mean margin "
            f"{'-' if m is None else f'{m:.3g}'}, chosen longer {'-' if share is None else f'{share:.0%}'} "
            f"-> {s['output']} (+ {Path(s['rejects']).name}, {summary_path_for(s['output']).name})")


# ====================================================================== CLI

def configure(p) -> None:
    """The options of ``jprefs data rm-pairs`` (registered by :mod:`jprefs.data.cli`)."""
    a = p.add_argument
    a("input", metavar="CANDS.jsonl", help="`jprefs label candidates` output, or rows with 'prompt' and 'responses' "
                                          "(.jsonl[.gz], .json, .parquet)")
    a("--reward", action="append", default=[], metavar="SPEC",
      help="reward source, as `jprefs eval policy --reward` takes it: [NAME=][rm:|classifier:|callable:]SPEC "
           "(a reward model folder, a classifier folder, module:function); repeat to sum several")
    a("--scores", metavar="FIELD", help="instead of --reward: the row's own scores, FIELD = a list with one number "
                                        "(or null) per response, e.g. a judge's single-answer grades")
    a("--reward-weight", action="append", type=arg_float(), default=[], metavar="W",
      help="weight of each --reward, in order (default 1 each)")
    a("--reward-label", default="1", help="label whose logit margin a classifier reward uses (default 1)")
    a("--reward-input", default="pair", choices=REWARD_INPUTS,
      help="what the reward scores: (prompt, response) (default), the response alone, or prompt+response as one text")
    a("--pairs", default="best-worst", choices=PAIRINGS,
      help="best-worst: one pair per prompt (default); best-vs-rest: K-1; all: every ordered pair")
    a("--min-margin", type=arg_float(">= 0"), default=0.0, help="drop pairs whose score margin is below this (default 0; "
                                                    "tied scores are always dropped)")
    a("--length-balance", action="store_true",
      help="keep as many pairs whose chosen response is the longer as the shorter (longer-wins = 0.5 on them)")
    a("--max-pairs", type=int, default=None, metavar="N", help="at most N pairs per prompt, drawn at random (--seed)")
    a("--seed", type=int, default=0, help="seed of --length-balance / --max-pairs draws (default 0)")
    a("--batch-size", type=int, default=32, help="responses per reward call (default 32)")
    a("--device", default="auto", help="auto, cpu, cuda ... (reward models only)")
    a("--trust-remote-code", action="store_true", help="allow model code from the reward model folder")
    a("-o", "--output", required=True, metavar="PAIRS.jsonl",
      help="canonical pairs (+ PAIRS.rejects.jsonl, PAIRS.summary.json)")
    a("--json", action="store_true", help="print the summary as JSON")


@holds_output("jprefs data rm-pairs", folder=False)
def run(args) -> int:
    import json

    from jprefs.data.io import eprint

    if args.scores and (args.reward or args.reward_weight):
        raise ConfigError("--scores and --reward together\n  fix: --scores FIELD uses the scores the rows carry; "
                          "--reward SPEC computes them; give one")
    if args.scores:
        rewards = [given_scores(args.scores)]
    else:
        rewards = load_rewards(args.reward, args.reward_weight, reward_label=args.reward_label,
                               reward_input=args.reward_input, batch_size=args.batch_size, device=args.device,
                               trust_remote_code=args.trust_remote_code)
    s = rm_pairs_to_files(args.input, args.output, rewards, pairing=args.pairs, min_margin=args.min_margin,
                          batch_size=args.batch_size, reward_input=args.reward_input,
                          length_balance=args.length_balance, max_pairs=args.max_pairs, seed=args.seed)
    if args.json:
        print(json.dumps(s, ensure_ascii=False, indent=2))
    for w in s["warnings"]:
        eprint(f"{COMMAND}: WARNING: {w}")
    eprint(summary_line(s))
    if s["pairs_out"] == 0:
        why = ", ".join(f"{k} {v}" for k, v in s["rejects_by_reason"].items()) or "the input has no rows"
        raise DataError(f"no pairs from {s['rows_in']} rows ({why})", path=str(args.input),
                        fix=f"see {s['rejects']} for each row's reason; lower --min-margin, or sample more varied "
                            "candidates (-k, --temperature)")
    return 0
