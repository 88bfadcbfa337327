"""Deterministic train/test splits by prompt: no prompt appears in two splits.

Prompts are grouped by :func:`prompt_key` (normalised conversation), the groups
are shuffled with ``random.Random(seed)``, and whole groups are assigned to the
test split until it holds ``test_size`` of the rows (``test_size`` may also be an
absolute row count when >= 1).

>>> train, test = split_by_prompt(pairs, test_size=0.1, seed=0)   # doctest: +SKIP
"""

from __future__ import annotations

import math
import random
from typing import Sequence, TypeVar

from jprefs.data.schema import prompt_key
from jprefs.errors import JprefsError

T = TypeVar("T")


def split_by_prompt(records: Sequence[T], test_size: float = 0.1, seed: int = 0) -> tuple[list[T], list[T]]:
    """Split records (anything with a ``.prompt`` message list) so that prompts never leak."""
    if test_size <= 0:
        raise JprefsError(f"--test-size must be > 0, got {test_size}")
    n = len(records)
    target = int(test_size) if test_size >= 1 else math.ceil(test_size * n)
    if n and target >= n:
        raise JprefsError(f"--test-size {test_size} would put all {n} rows in the test split; use a smaller value")
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(prompt_key(r.prompt), []).append(i)  # type: ignore[attr-defined]
    keys = sorted(groups)  # sorted first so the shuffle depends only on the seed and the content
    random.Random(seed).shuffle(keys)
    test_idx: set[int] = set()
    for k in keys:
        if len(test_idx) >= target:
            break
        test_idx.update(groups[k])
    train = [r for i, r in enumerate(records) if i not in test_idx]
    test = [r for i, r in enumerate(records) if i in test_idx]
    if n and not train:
        raise JprefsError(f"all {n} rows share {len(groups)} prompt(s); a split by prompt needs more distinct prompts")
    return train, test
