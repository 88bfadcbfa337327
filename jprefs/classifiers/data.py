"""Training data for reward models: pairs, rank lists and binary examples, with rejects and splits.

Accepted inputs (``data_format=auto`` picks by suffix and first row):

- canonical JSONL of :class:`PreferencePair` / :class:`RankList` (``jprefs data convert``),
  or any source of :mod:`jprefs.data.adapters` via ``data_source``;
- binary JSONL: ``{prompt?, response, label}`` or ``{text, label}``;
- ``text<TAB>label`` TSV with or without a header (e.g. chABSA: no header, a trailing tab).

Bad rows are never dropped silently: each goes to the rejects list with its
file, line and reason, and ``rows_in == len(records) + len(rejects)``.

Example::

    d = load_rm_data("/work/shared/data/chabsa_binary/train.tsv")
    d.kind, len(d.records), len(d.rejects)     # ('binary', 1970, 0)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jprefs.data.schema import BinaryExample, Message, PreferencePair, RankList, SchemaError, prompt_key
from jprefs.errors import DataError


@dataclass
class RMData:
    """Records of one kind: ``binary`` (BinaryExample) or ``records`` (PreferencePair | RankList)."""

    kind: str
    records: list[Any]
    rejects: list[dict] = field(default_factory=list)
    rows_in: int = 0
    path: str = ""
    license: str = ""
    parts: list = field(default_factory=list)   # (file name, RMData) of each file, when several were joined

    def pairs(self) -> list[PreferencePair]:
        """All preference pairs (rank lists expanded into their K(K-1)/2 pairs)."""
        self._need_records("pairs")
        out: list[PreferencePair] = []
        for r in self.records:
            out.extend(r.to_pairs() if isinstance(r, RankList) else [r])
        return out

    def lists(self) -> list[RankList]:
        """Rank lists; a pair is a list of two (best first)."""
        self._need_records("rank lists")
        return [r if isinstance(r, RankList) else
                RankList(id=r.id, prompt=r.prompt, responses=[r.chosen, r.rejected], source=r.source,
                         source_id=r.source_id, license=r.license, meta=r.meta) for r in self.records]

    def binary(self) -> list[BinaryExample]:
        """Binary examples; pairs become (chosen, 1) and (rejected, 0)."""
        if self.kind == "binary":
            return list(self.records)
        return [b for p in self.pairs() for b in p.to_binary()]

    def _need_records(self, what: str) -> None:
        if self.kind != "records":
            raise DataError(f"{self.path}: the {self.kind} examples in this file cannot be used as {what}",
                            fix="use objective=binary for labelled examples, or give preference pairs "
                                "(`jprefs data convert` makes them)")


def _is_table(name: str) -> bool:
    return name.endswith((".tsv", ".csv", ".tsv.gz", ".csv.gz", ".txt"))


def _first_row(path: Path) -> dict | None:
    from jprefs.data.io import iter_jsonl

    for row in iter_jsonl(path):
        if row.error is None:
            return row.data
    return None


def detect_format(path: str | os.PathLike) -> str:
    """``pairs`` | ``binary`` | ``tsv`` from the suffix and the first valid row."""
    p = Path(path)
    name = p.name.lower()
    if _is_table(name):
        return "tsv"
    first = _first_row(p)
    if first is None:
        raise DataError(f"{p}: no valid JSON rows", fix="check the file (it may be empty or not JSONL)")
    if "chosen" in first or "responses" in first:
        return "pairs"
    if "label" in first:
        return "binary"
    raise DataError(f"{p}: cannot tell the data format from the first row (keys {sorted(first)[:8]})",
                    fix="set data_format=pairs|binary|tsv, or data_source=<adapter> (see `jprefs data convert --help`)")


def _reject(rejects: list[dict], path: str, locator: Any, reason: str, error: str, raw: Any) -> None:
    from jprefs.data.io import safe_raw

    rejects.append({"file": path, "line": locator, "reason": reason, "error": error, "raw": safe_raw(raw)})


def _table_rows(p: Path):
    """Rows of a TSV/CSV: headerless ``text<TAB>label`` when the first line ends in a 0/1 label."""
    from jprefs.data.io import iter_table, iter_text_lines

    header = True
    for _, text, err in iter_text_lines(p):
        if err or not text or not text.strip():
            continue
        delim = "\t" if "\t" in text else ","
        fields = [f for f in text.split(delim)]
        while fields and fields[-1] == "":
            fields.pop()
        header = not (len(fields) >= 2 and fields[-1].strip() in ("0", "1"))
        break
    if header:
        return iter_table(p)
    return iter_table(p, header=False, columns=["text", "label"])


def load_rm_data(path: str | os.PathLike, *, data_format: str = "auto", source: str = "", limit: int = 0,
                 license: str = "") -> RMData:
    """Read reward-model data; bad rows become rejects (``rows_in == len(records) + len(rejects)``).

    >>> d = load_rm_data("pairs.jsonl")              # doctest: +SKIP
    """
    from jprefs.data.io import check_input, iter_jsonl, iter_records

    spath = str(path)
    if source:
        from jprefs.data.adapters import convert

        res = convert(spath, source=source, license=license or None, limit=limit or None)
        rejects = [dict(r, file=spath) for r in res.rejects]
        return RMData("records", list(res.records), rejects, res.rows_in, spath, res.license)
    p = check_input(path)
    fmt = detect_format(p) if data_format == "auto" else data_format
    records: list[Any] = []
    rejects: list[dict] = []
    n_in = 0
    if fmt == "pairs":
        for row, rec in iter_records(p):
            if limit and len(records) >= limit:
                break
            n_in += 1
            if rec is None:
                _reject(rejects, spath, row.locator, row.reason or "invalid_record", row.error or "", row.data)
            else:
                records.append(rec)
        kind = "records"
    elif fmt in ("binary", "tsv"):
        rows = iter_jsonl(p) if fmt == "binary" else _table_rows(p)
        for row in rows:
            if limit and len(records) >= limit:
                break
            n_in += 1
            if row.error:
                _reject(rejects, spath, row.locator, row.reason or "bad_row", row.error, row.data)
                continue
            try:
                records.append(BinaryExample.from_dict(row.data))
            except SchemaError as e:
                _reject(rejects, spath, row.locator, e.reason, str(e), row.data)
        kind = "binary"
    else:
        raise DataError(f"unknown data_format {fmt!r}", fix="use auto, pairs, binary or tsv")
    if not records:
        first = rejects[0] if rejects else None
        hint = f" (first reject, line {first['line']}: {first['error']})" if first else ""
        raise DataError(f"{p}: no usable rows out of {n_in}{hint}",
                        fix="check data_format and the file's columns (text<TAB>label, or prompt/chosen/rejected)")
    if license:
        _fill_license(records, license, spath)
    return RMData(kind, records, rejects, n_in, spath, _common_license(records))


def _fill_license(records: list[Any], stated: str, path: str) -> None:
    """The recipe's ``data_license`` for the rows that name none; a row that names ANOTHER licence is an
    error (stating cc0-1.0 over rows that say cc-by-nc-4.0 published a model card without the
    non-commercial terms)."""
    from jprefs.data.schema import UNKNOWN_LICENSE

    other: dict[str, int] = {}
    for r in records:
        lic = getattr(r, "license", "") or UNKNOWN_LICENSE
        if lic == UNKNOWN_LICENSE:
            r.license = stated
        elif lic != stated:
            other[lic] = other.get(lic, 0) + 1
    if other:
        raise DataError(f"data_license={stated}, but rows of this file name another licence: "
                        + ", ".join(f"{k} ({v} rows)" for k, v in sorted(other.items())), path=path,
                        fix="drop data_license (the rows' own licences are recorded), or correct the rows' "
                            "license field if they are wrong")


def _common_license(records: list[Any]) -> str:
    lics = sorted({getattr(r, "license", "") or "unknown" for r in records})
    return lics[0] if len(lics) == 1 else ", ".join(lics)


def group_key(record: Any) -> str:
    """The split key: the prompt conversation, or the text itself for prompt-less examples."""
    prompt = getattr(record, "prompt", None)
    if prompt:
        return prompt_key(prompt)
    return prompt_key([Message("user", record.response)])


def near_duplicate_clusters(texts: list[str], threshold: float, n: int = 5) -> list[int]:
    """A cluster id per text: texts whose character ``n``-gram sets have Jaccard >= ``threshold``
    are joined (transitively, union-find). Candidates come from an inverted index over n-grams;
    n-grams found in more than max(50, 2 %) of the texts ("しました", "前年同期") are not indexed, so
    the work stays near-linear; a pair that shares only such common n-grams is far below any
    useful threshold anyway.

    >>> near_duplicate_clusters(["売上高は増加しました", "売上高は増加しました。", "厳しい状況です"], 0.5)
    [0, 0, 2]
    """
    grams = [{t[i:i + n] for i in range(max(1, len(t) - n + 1))} for t in texts]
    index: dict[str, list[int]] = {}
    for i, g in enumerate(grams):
        for x in g:
            index.setdefault(x, []).append(i)
    common = max(50, int(0.02 * len(texts)))
    parent = list(range(len(texts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, g in enumerate(grams):
        cands: set[int] = set()
        for x in g:
            post = index[x]
            if len(post) <= common:
                cands.update(j for j in post if j > i)
        for j in cands:
            inter = len(g & grams[j])
            if inter and inter / (len(g) + len(grams[j]) - inter) >= threshold:
                a, b = find(i), find(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return [find(i) for i in range(len(texts))]


def split_by_group(data: RMData, fraction: float, seed: int, *, near_duplicates: float = 0.0,
                   sides: dict[str, bool] | None = None) -> tuple[RMData, RMData]:
    """Hold out ``fraction`` of the rows by prompt (by text for prompt-less examples), deterministically.

    With ``near_duplicates > 0`` the groups are widened first: prompts (texts) whose character
    5-gram Jaccard is at least that value fall into one group, so near-copies - the same sentence
    from another year's report, a re-asked question - are not split between train and eval,
    where they would make eval accuracy a memory test.

    ``sides`` (several files split one after another): ``{prompt key: held out?}`` of the files
    split before; a prompt already placed keeps its side here (a prompt in two files was held out of
    one and trained on in the other), and this file's placements are added to it.
    """
    import math
    import random

    own = keys_of = [group_key(r) for r in data.records]       # own: each row's prompt key, kept for `sides`
    if near_duplicates > 0:
        text_of: dict[str, str] = {}                       # group key (a hash) -> the text it stands for
        for k, r in zip(keys_of, data.records):
            if k not in text_of:
                prompt = getattr(r, "prompt", None)
                text_of[k] = "\n".join(m.content for m in prompt) if prompt else r.response
        uniq = sorted(text_of)
        roots = near_duplicate_clusters([text_of[k] for k in uniq], near_duplicates)
        cluster = {k: uniq[c] for k, c in zip(uniq, roots)}   # a cluster's key: its first member's
        keys_of = [cluster[k] for k in keys_of]
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys_of):
        groups.setdefault(k, []).append(i)
    sides = {} if sides is None else sides
    # a group is placed where any of its prompts was placed before (held out wins a conflict)
    members = {k: {own[i] for i in idx} for k, idx in groups.items()}   # a near-duplicate cluster: several
    placed = {k: any(sides[x] for x in m if x in sides) for k, m in members.items() if any(x in sides for x in m)}
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    target = math.ceil(fraction * len(data.records))
    held: set[int] = set()
    for k in keys:
        if placed.get(k):
            held.update(groups[k])
    for k in keys:
        if len(held) >= target:
            break
        if k not in placed:
            held.update(groups[k])
    for k, idx in groups.items():
        for x in members[k]:
            sides[x] = idx[0] in held
    if (len(held) >= len(data.records) or not held) and len(placed) < len(groups):
        raise DataError(f"{data.path}: cannot hold out {fraction:.0%} by prompt: {len(data.records)} rows in "
                        f"{len(groups)} prompt group(s)", fix="give eval_data=FILE or use more data")
    train = [r for i, r in enumerate(data.records) if i not in held]
    ev = [r for i, r in enumerate(data.records) if i in held]
    return (RMData(data.kind, train, data.rejects, data.rows_in, data.path, data.license),
            RMData(data.kind, ev, [], 0, data.path + f" (held out {fraction:.0%} by prompt)", data.license))
