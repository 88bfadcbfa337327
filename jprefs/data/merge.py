"""Merge canonical files with de-duplication by normalised content.

Two pairs are duplicates when their prompts, chosen and rejected texts are equal
after NFKC normalisation and whitespace collapsing. A pair whose reverse
(chosen and rejected swapped) was already kept contradicts it: both are real
annotations, so neither is silently dropped: the later one goes to the rejects
file with reason ``contradicts`` and the count is reported.

>>> result = merge_records([("a.jsonl", recs_a), ("b.jsonl", recs_b)])   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from jprefs.data.provenance import license_counts
from jprefs.data.schema import RankList, Record, content_hash, normalize_text, prompt_key


def _key(rec: Record) -> str:
    if isinstance(rec, RankList):
        return content_hash("R", prompt_key(rec.prompt), [normalize_text(r) for r in rec.responses])
    return content_hash("P", prompt_key(rec.prompt), normalize_text(rec.chosen), normalize_text(rec.rejected))


def _reverse_key(rec: Record) -> str | None:
    if isinstance(rec, RankList):
        return None
    return content_hash("P", prompt_key(rec.prompt), normalize_text(rec.rejected), normalize_text(rec.chosen))


@dataclass
class MergeResult:
    records: list[Record]
    rejects: list[dict] = field(default_factory=list)
    rows_in: int = 0
    per_input: dict[str, int] = field(default_factory=dict)

    @property
    def licenses(self) -> dict[str, int]:
        return license_counts(self.records)

    def summary(self) -> dict:
        reasons: dict[str, int] = {}
        for r in self.rejects:
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
        return {"rows_in": self.rows_in, "rows_out": len(self.records), "rows_rejected": len(self.rejects),
                "rejects_by_reason": reasons, "per_input": self.per_input, "licenses": self.licenses}


def merge_records(inputs: Iterable[tuple[str, list[tuple[int, Record]]]]) -> MergeResult:
    """``inputs``: ``(file name, [(line, record), ...])`` in priority order (first wins)."""
    seen: dict[str, tuple[str, int]] = {}
    res = MergeResult(records=[])
    for name, recs in inputs:
        res.per_input[name] = len(recs)
        for line, rec in recs:
            res.rows_in += 1
            k = _key(rec)
            if k in seen:
                f, ln = seen[k]
                res.rejects.append({"file": name, "line": line, "reason": "duplicate",
                                    "error": f"same content as {f} line {ln}", "raw": rec.to_dict()})
                continue
            rk = _reverse_key(rec)
            if rk is not None and rk in seen:
                f, ln = seen[rk]
                res.rejects.append({"file": name, "line": line, "reason": "contradicts",
                                    "error": f"chosen/rejected swapped relative to {f} line {ln}", "raw": rec.to_dict()})
                continue
            seen[k] = (name, line)
            res.records.append(rec)
    return res
