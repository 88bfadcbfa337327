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


def choose_test_groups(sizes: dict[str, int], test_size: float = 0.1, seed: int = 0) -> set[str]:
    """The prompt keys of the test split, from ``prompt key -> rows`` alone (so a file can be split
    in two streaming passes). Keys are sorted, shuffled with ``random.Random(seed)`` and taken whole
    until the test split holds ``test_size`` of the rows (a fraction < 1, or a row count >= 1)."""
    if test_size <= 0:
        raise JprefsError(f"--test-size must be > 0, got {test_size}")
    n = sum(sizes.values())
    target = int(test_size) if test_size >= 1 else math.ceil(test_size * n)
    if n and target >= n:
        raise JprefsError(f"--test-size {test_size} would put all {n} rows in the test split; use a smaller value")
    keys = sorted(sizes)  # sorted first so the shuffle depends only on the seed and the content
    random.Random(seed).shuffle(keys)
    test: set[str] = set()
    got = 0
    for k in keys:
        if got >= target:
            break
        test.add(k)
        got += sizes[k]
    if n and got >= n:
        raise JprefsError(f"all {n} rows share {len(sizes)} prompt(s); a split by prompt needs more distinct prompts")
    return test


def split_by_prompt(records: Sequence[T], test_size: float = 0.1, seed: int = 0) -> tuple[list[T], list[T]]:
    """Split records (anything with a ``.prompt`` message list) so that prompts never leak."""
    keys = [prompt_key(r.prompt) for r in records]  # type: ignore[attr-defined]
    sizes: dict[str, int] = {}
    for k in keys:
        sizes[k] = sizes.get(k, 0) + 1
    test_keys = choose_test_groups(sizes, test_size, seed)
    train = [r for r, k in zip(records, keys) if k not in test_keys]
    test = [r for r, k in zip(records, keys) if k in test_keys]
    return train, test
