"""Training-data side of length debiasing: length-balanced pair weights and counterfactual pairs.

- :func:`length_balance_weights` (``train-rm length_balance=true``): the pairs whose chosen answer
  is the longer one and those where it is the shorter one weigh the same in total, so on the
  weighted training data "the longer answer wins" scores 0.5 and length alone stops paying.
  Weights average 1; pairs of equal length keep weight 1.
- :func:`counterfactual_pairs` (``train-rm counterfactual=repeat|filler``): new pairs built from
  the training pairs' chosen answers, where the *longer* answer is the worse one by construction:
  ``repeat``: the chosen answer followed by itself again (a rambling, repetitive answer);
  ``filler``: the chosen answer followed by the chosen answer of a pair on another prompt (irrelevant
  text; ``repeat`` when a few seeded draws find none, e.g. one prompt only).
  They are training pairs only (never evaluated), marked ``meta["counterfactual"]`` with source
  ``counterfactual``; pairs whose padded version would be cut back to the original by the token
  limit are left out by the caller (:func:`jprefs.classifiers.train.build_items`).

Example::

    length_balance_weights([10, 50, 30], [20, 10, 5])      # 1 shorter-chosen, 2 longer-chosen
    # [1.5, 0.75, 0.75]
"""

from __future__ import annotations

import random
from typing import Sequence

COUNTERFACTUALS = ("none", "repeat", "filler")


def length_balance_weights(len_chosen: Sequence[int], len_rejected: Sequence[int]) -> list[float]:
    """Per-pair weights: chosen-longer and chosen-shorter pairs weigh half each in total (mean 1)."""
    longer = sum(1 for c, r in zip(len_chosen, len_rejected) if c > r)
    shorter = sum(1 for c, r in zip(len_chosen, len_rejected) if c < r)
    if not longer or not shorter:
        return [1.0] * len(len_chosen)
    n = longer + shorter
    w_long, w_short = n / (2 * longer), n / (2 * shorter)
    return [w_long if c > r else w_short if c < r else 1.0 for c, r in zip(len_chosen, len_rejected)]


def counterfactual_pairs(pairs: list, kind: str, fraction: float, seed: int) -> list:
    """``round(fraction * len(pairs))`` new pairs (prompt, chosen, chosen padded) from a seeded sample."""
    from jprefs.data.schema import PreferencePair

    if kind == "none" or fraction <= 0 or not pairs:
        return []
    if kind not in COUNTERFACTUALS:
        raise ValueError(f"counterfactual kind {kind!r} is not one of {COUNTERFACTUALS}")
    rng = random.Random(f"counterfactual:{seed}")
    k = min(len(pairs), max(1, round(fraction * len(pairs))))
    chosen_idx = sorted(rng.sample(range(len(pairs)), k))
    out = []
    for i in chosen_idx:
        p = pairs[i]
        other = _other_prompts_answer(pairs, i, rng) if kind == "filler" else None
        # no answer to another prompt (one prompt only): the repeat is the padded answer
        padded = p.chosen + "\n\n" + (other if other is not None else p.chosen)
        out.append(PreferencePair(id=f"{p.id}~cf-{kind}", prompt=p.prompt, chosen=p.chosen, rejected=padded,
                                  source="counterfactual", license=p.license,
                                  meta={"counterfactual": kind, "of": p.id}))
    return out


def _other_prompts_answer(pairs: list, i: int, rng: random.Random, tries: int = 32) -> str | None:
    """The chosen answer of a pair on ANOTHER prompt, drawn at random (a few seeded draws; None if they
    all hit pair ``i``'s prompt or its own chosen text). Another *pair* was not enough: judged sets and
    expanded rank lists hold many pairs per prompt, so the "irrelevant" text was often an answer to the
    same question, or the chosen answer itself."""
    from jprefs.data.schema import prompt_key

    key, own = prompt_key(pairs[i].prompt), pairs[i].chosen
    for _ in range(tries if len(pairs) > 1 else 0):
        q = pairs[rng.randrange(len(pairs))]
        if q.chosen != own and prompt_key(q.prompt) != key:
            return q.chosen
    return None
