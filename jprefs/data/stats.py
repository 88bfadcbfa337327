"""Summary statistics of a preference file: counts, lengths, script mix, licences.

Lengths are given in characters and in morphemes (fugashi + unidic-lite), the
unit that matters for Japanese where whitespace does not separate words. The
script mix is the share of hiragana / katakana / kanji / latin / digit / other
characters, which tells at a glance whether a "Japanese" set is really Japanese.

>>> s = compute_stats(load_records("pairs.jsonl"))   # doctest: +SKIP
"""

from __future__ import annotations

import statistics
from typing import Any, Sequence

from jprefs.data.provenance import license_counts
from jprefs.data.schema import RankList, Record, expand_pairs, prompt_key
from jprefs.text import SCRIPTS, count_morphemes, script_counts


def _dist(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    v = sorted(values)

    def q(p: float) -> float:
        return float(v[min(len(v) - 1, int(p * (len(v) - 1) + 0.5))])

    return {"n": len(v), "min": float(v[0]), "p10": q(0.1), "median": q(0.5), "mean": round(statistics.fmean(v), 2),
            "p90": q(0.9), "max": float(v[-1])}


def _mix(texts: Sequence[str]) -> dict[str, float]:
    total = dict.fromkeys(SCRIPTS, 0)
    for t in texts:
        for k, c in script_counts(t).items():
            total[k] += c
    n = sum(total.values())
    return {k: round(c / n, 4) if n else 0.0 for k, c in total.items()}


def compute_stats(records: Sequence[Record], *, morphemes: bool = True) -> dict[str, Any]:
    """Counts, length distributions (chars, morphemes), script mix, sources and licences."""
    pairs = list(expand_pairs(records))
    n_rank = sum(1 for r in records if isinstance(r, RankList))
    prompts = ["\n".join(m.content for m in p.prompt) for p in pairs]
    fields = {"prompt": prompts, "chosen": [p.chosen for p in pairs], "rejected": [p.rejected for p in pairs]}
    out: dict[str, Any] = {
        "records": len(records), "pairs": len(pairs), "rank_lists": n_rank,
        "unique_prompts": len({prompt_key(p.prompt) for p in pairs}),
        "prompt_turns": _dist([len(p.prompt) for p in pairs]),
        "multi_turn_share": round(sum(len(p.prompt) > 1 for p in pairs) / len(pairs), 4) if pairs else 0.0,
        # Share of pairs whose chosen response is longer: the "longer wins" baseline any
        # reward model must beat on this data.
        "chosen_longer_share": round(sum(len(p.chosen) > len(p.rejected) for p in pairs) / len(pairs), 4) if pairs else 0.0,
        "chars": {k: _dist([len(t) for t in v]) for k, v in fields.items()},
    }
    if morphemes:
        out["morphemes"] = {k: _dist(count_morphemes(v)) for k, v in fields.items()}
    out["script_mix"] = {k: _mix(v) for k, v in fields.items()}
    src: dict[str, int] = {}
    for r in records:
        src[r.source] = src.get(r.source, 0) + 1
    out["sources"] = src
    out["licenses"] = license_counts(records)
    return out


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
