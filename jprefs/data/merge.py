"""Merge canonical files with de-duplication by normalised content.

Two pairs are duplicates when their prompts, chosen and rejected texts are equal
after NFKC normalisation and whitespace collapsing. A pair whose reverse
(chosen and rejected swapped) was already kept contradicts it: both are real
annotations, so neither is silently dropped: the later one goes to the rejects
file with reason ``contradicts`` and the count is reported. A rank list states
its K(K-1)/2 pairs: a pair it states is a duplicate of it, a pair (or rank list)
that orders two of its responses the other way contradicts it, and a rank list
all of whose pairs are already kept is a duplicate (one that adds pairs is kept).

>>> result = merge_records([("a.jsonl", recs_a), ("b.jsonl", recs_b)])   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from jprefs.data.provenance import license_counts
from jprefs.data.schema import RankList, Record, normalize_text, prompt_key


def _digest(*parts) -> bytes:
    # 16 bytes per kept record is all de-duplication holds: memory does not grow with the rows' size
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).digest()[:16]


def _pair_key(pk: str, chosen: str, rejected: str) -> bytes:
    return _digest("P", pk, normalize_text(chosen), normalize_text(rejected))


def _key(rec: Record) -> bytes:
    if isinstance(rec, RankList):
        return _digest("R", prompt_key(rec.prompt), [normalize_text(r) for r in rec.responses])
    return _pair_key(prompt_key(rec.prompt), rec.chosen, rec.rejected)


def _reverse_key(rec: Record) -> bytes | None:
    if isinstance(rec, RankList):
        return None
    return _pair_key(prompt_key(rec.prompt), rec.rejected, rec.chosen)


def _implied(rec: RankList) -> tuple[list[bytes], list[bytes]]:
    """The keys of the K(K-1)/2 pairs a rank list states, and of their reverses: a rank list and the pairs
    it expands to (``jprefs translate`` and ``export --format jsonl`` write them) are the same annotations,
    and a pair that swaps two of its responses contradicts it."""
    pk, rs = prompt_key(rec.prompt), rec.responses
    ij = [(i, j) for i in range(len(rs)) for j in range(i + 1, len(rs))]
    return [_pair_key(pk, rs[i], rs[j]) for i, j in ij], [_pair_key(pk, rs[j], rs[i]) for i, j in ij]


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


class Merge:
    """Streaming merge: :meth:`outcomes` yields ``(record, None)`` for a kept record and
    ``(None, reject)`` for a duplicate or a contradiction, in input order; only 16-byte content
    digests are held, so memory grows with the number of distinct records, not their text."""

    def __init__(self):
        self.seen: dict[bytes, tuple[int, int]] = {}   # digest -> (input number, line)
        self.names: list[str] = []
        self.rows_in = 0
        self.per_input: dict[str, int] = {}
        self.rejects_by_reason: Counter = Counter()
        self.licenses: Counter = Counter()
        self.unknown_sources: set[str] = set()

    def outcomes(self, inputs: Iterable[tuple[str, Iterable[tuple[int, Record]]]]
                 ) -> Iterator[tuple[Record | None, dict | None]]:
        """``inputs``: ``(file name, (line, record), ...)`` in priority order (first wins)."""
        for name, recs in inputs:
            self.names.append(name)
            n_file = len(self.names) - 1
            self.per_input[name] = 0
            for line, rec in recs:
                self.rows_in += 1
                self.per_input[name] += 1
                k = _key(rec)
                hit, reason, what = self.seen.get(k), "duplicate", "same content as"
                implied: list[bytes] = []
                if hit is None and isinstance(rec, RankList):
                    implied, reverses = _implied(rec)
                    hit = next((self.seen[r] for r in reverses if r in self.seen), None)
                    reason, what = "contradicts", "a pair of its responses is ordered the other way in"
                    if hit is None and all(x in self.seen for x in implied):
                        # every pair it states is already kept (as pairs, or in a longer rank list)
                        hit, reason, what = self.seen[implied[0]], "duplicate", "all its pairs are already kept, the first from"
                elif hit is None:
                    hit = self.seen.get(_reverse_key(rec))
                    reason, what = "contradicts", "chosen/rejected swapped relative to"
                if hit is not None:
                    self.rejects_by_reason[reason] += 1
                    yield None, {"file": name, "line": line, "reason": reason,
                                 "error": f"{what} {self.names[hit[0]]} line {hit[1]}", "raw": rec.to_dict()}
                    continue
                self.seen[k] = (n_file, line)
                for x in implied:
                    self.seen.setdefault(x, (n_file, line))
                self.licenses[rec.license] += 1
                if rec.license == "unknown":
                    self.unknown_sources.add(rec.source)
                yield rec, None

    def summary(self) -> dict:
        n_rej = sum(self.rejects_by_reason.values())
        return {"rows_in": self.rows_in, "rows_out": self.rows_in - n_rej, "rows_rejected": n_rej,
                "rejects_by_reason": dict(self.rejects_by_reason), "per_input": self.per_input,
                "licenses": dict(self.licenses)}


def merge_records(inputs: Iterable[tuple[str, Iterable[tuple[int, Record]]]]) -> MergeResult:
    """In-memory merge. ``inputs``: ``(file name, [(line, record), ...])`` in priority order (first wins)."""
    m = Merge()
    res = MergeResult(records=[])
    for rec, rej in m.outcomes(inputs):
        if rec is not None:
            res.records.append(rec)
        else:
            res.rejects.append(rej)
    res.rows_in, res.per_input = m.rows_in, m.per_input
    return res
