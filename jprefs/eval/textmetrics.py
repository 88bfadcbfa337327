"""Text metrics of generated answers, owned by ``jprefs eval``; ``jprefs rl`` imports them.

- :func:`distinct_n`: distinct / all character n-grams over a set of texts (what the rl
  summaries report; Japanese has no spaces, so characters are the cheap unit).

Example::

    distinct_n(["今日は晴れ", "今日は雨"], 2)      # character bigrams: 5 distinct of 7
"""

from __future__ import annotations

from typing import Sequence


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct n-grams / all n-grams over characters of all texts (Japanese has no spaces)."""
    grams, total = set(), 0
    for t in texts:
        for i in range(len(t) - n + 1):
            grams.add(t[i:i + n])
            total += 1
    return len(grams) / total if total else 0.0
