"""Summary statistics of a preference file: counts, lengths, script mix, licences.

Lengths are given in characters and in morphemes (fugashi + unidic-lite), the
unit that matters for Japanese where whitespace does not separate words. The
script mix is the share of hiragana / katakana / kanji / latin / digit / other
characters, which tells at a glance whether a "Japanese" set is really Japanese.

>>> s = compute_stats(load_records("pairs.jsonl"))   # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable

from jprefs.data.provenance import license_counts  # noqa: F401 - re-exported for callers
from jprefs.data.schema import RankList, Record, prompt_key
from jprefs.text import SCRIPTS, count_morphemes, script_counts

FIELDS = ("prompt", "chosen", "rejected")


def _dist(values: Counter) -> dict[str, float]:
    """Distribution of integer lengths held as ``length -> count`` (bounded memory: one entry per
    distinct length, not per row). Quantiles are the sorted list's ``v[round(p * (n - 1))]``."""
    n = sum(values.values())
    if not n:
        return {"n": 0}
    items = sorted(values.items())

    def q(p: float) -> float:
        k = min(n - 1, int(p * (n - 1) + 0.5))
        seen = 0
        for v, c in items:
            seen += c
            if seen > k:
                return float(v)
        return float(items[-1][0])

    mean = math.fsum(v * c for v, c in items) / n
    return {"n": n, "min": float(items[0][0]), "p10": q(0.1), "median": q(0.5), "mean": round(mean, 2),
            "p90": q(0.9), "max": float(items[-1][0])}


class StatsAccumulator:
    """One pass over records; holds counters, never the records (``jprefs data stats`` streams)."""

    def __init__(self, morphemes: bool = True):
        self.morphemes = morphemes
        self.records = self.pairs = self.rank_lists = self.multi_turn = self.chosen_longer = 0
        self.prompts: set[str] = set()
        self.turns: Counter = Counter()
        self.chars = {k: Counter() for k in FIELDS}
        self.morph = {k: Counter() for k in FIELDS}
        self.mix = {k: dict.fromkeys(SCRIPTS, 0) for k in FIELDS}
        self.sources: Counter = Counter()
        self.licenses: Counter = Counter()

    def add(self, rec: Record) -> None:
        self.records += 1
        self.sources[rec.source] += 1
        self.licenses[rec.license or "unknown"] += 1
        if isinstance(rec, RankList):
            self.rank_lists += 1
            pairs = [(rec.responses[i], rec.responses[j]) for i in range(len(rec.responses))
                     for j in range(i + 1, len(rec.responses))]
        else:
            pairs = [(rec.chosen, rec.rejected)]
        prompt = "\n".join(m.content for m in rec.prompt)
        key = prompt_key(rec.prompt)
        for chosen, rejected in pairs:
            self.pairs += 1
            self.prompts.add(key)
            self.turns[len(rec.prompt)] += 1
            self.multi_turn += len(rec.prompt) > 1
            self.chosen_longer += len(chosen) > len(rejected)
            texts = (prompt, chosen, rejected)
            for k, t in zip(FIELDS, texts):
                self.chars[k][len(t)] += 1
                for sc, c in script_counts(t).items():
                    self.mix[k][sc] += c
            if self.morphemes:
                for k, m in zip(FIELDS, count_morphemes(texts)):
                    self.morph[k][m] += 1

    def result(self) -> dict[str, Any]:
        n = self.pairs
        out: dict[str, Any] = {
            "records": self.records, "pairs": n, "rank_lists": self.rank_lists,
            "unique_prompts": len(self.prompts), "prompt_turns": _dist(self.turns),
            "multi_turn_share": round(self.multi_turn / n, 4) if n else 0.0,
            # Share of pairs whose chosen response is longer: the "longer wins" baseline any
            # reward model must beat on this data.
            "chosen_longer_share": round(self.chosen_longer / n, 4) if n else 0.0,
            "chars": {k: _dist(v) for k, v in self.chars.items()},
        }
        if self.morphemes:
            out["morphemes"] = {k: _dist(v) for k, v in self.morph.items()}
        out["script_mix"] = {}
        for k, total in self.mix.items():
            t = sum(total.values())
            out["script_mix"][k] = {sc: round(c / t, 4) if t else 0.0 for sc, c in total.items()}
        out["sources"] = dict(self.sources)
        out["licenses"] = dict(self.licenses)
        return out


def compute_stats(records: Iterable[Record], *, morphemes: bool = True) -> dict[str, Any]:
    """Counts, length distributions (chars, morphemes), script mix, sources and licences, in one
    pass over ``records`` (any iterable: a list, or :func:`jprefs.data.io.stream_records`)."""
    acc = StatsAccumulator(morphemes)
    for r in records:
        acc.add(r)
    return acc.result()


def format_stats(s: dict[str, Any]) -> str:
    """A human-readable report of :func:`compute_stats`."""
    lines = [f"records {s['records']}  pairs {s['pairs']}  rank lists {s['rank_lists']}  "
             f"unique prompts {s['unique_prompts']}  multi-turn {s['multi_turn_share']:.1%}",
             f"chosen longer than rejected: {s['chosen_longer_share']:.1%} (the length baseline's pairwise accuracy)"]
    for unit in ("chars", "morphemes"):
        if unit not in s:
            continue
        lines.append(f"\nlength in {unit}:      min  median    mean     p90      max")
        for k, d in s[unit].items():
            if d.get("n"):
                lines.append(f"  {k:<9} {d['min']:>9.0f} {d['median']:>7.0f} {d['mean']:>7.1f} {d['p90']:>7.0f} {d['max']:>8.0f}")
    lines.append("\nscript mix:   hiragana katakana  kanji  latin  digit  other")
    for k, m in s["script_mix"].items():
        lines.append(f"  {k:<9} " + " ".join(f"{m[x]:>7.1%}" for x in SCRIPTS))
    lines.append("\nsources:  " + ", ".join(f"{k} {v}" for k, v in s["sources"].items()))
    lines.append("licences: " + ", ".join(f"{k} {v}" for k, v in s["licenses"].items()))
    return "\n".join(lines)
