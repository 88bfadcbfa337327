"""Reading and writing jprefs data files, with row-level errors and atomic writes.

- JSONL (optionally ``.gz``) is the canonical on-disk format: one record per line.
- Every reader reports bad rows with the file and line (invalid UTF-8, malformed
  JSON, non-object lines) instead of skipping them.
- Every writer is atomic: it writes ``NAME.tmp-PID`` and renames it over ``NAME``
  only when complete, so an interrupted job never leaves a half-written file.

Example::

    pairs = load_pairs("pairs.jsonl")          # raises DataError naming file and line
    write_jsonl("out.jsonl", (p.to_dict() for p in pairs))
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from jprefs.data.schema import (BinaryExample, PreferencePair, RankList, Record, SchemaError,
                                expand_pairs, record_from_dict)
from jprefs.errors import DataError

TABLE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".csv", ".tsv", ".csv.gz", ".tsv.gz")


@dataclass
class Row:
    """One raw input row. ``locator`` is the 1-based line number (text files) or row index."""

    locator: int
    data: Any = None
    error: str | None = None   # a parse error; ``data`` then holds the raw text
    reason: str | None = None  # short tag for the rejects file


# ---------------------------------------------------------------- atomic writes

def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(p)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)
    return p


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


class AtomicWriter(contextlib.AbstractContextManager):
    """A text file that appears at ``path`` only when the ``with`` block succeeds.

    >>> with AtomicWriter("/tmp/x.jsonl") as f:   # doctest: +SKIP
    ...     f.write("{}\\n")
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = _tmp_path(self.path)
        raw = open(self.tmp, "wb")
        self._raw = raw
        self._f = gzip.open(raw, "wt", encoding="utf-8") if self.path.name.endswith(".gz") else \
            io.TextIOWrapper(raw, encoding="utf-8", newline="\n")

    def write(self, s: str) -> int:
        return self._f.write(s)

    def write_json(self, obj: Any) -> None:
        self._f.write(json.dumps(obj, ensure_ascii=False) + "\n")

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self._f.flush()
            if self.path.name.endswith(".gz"):
                self._f.close()
            else:
                self._raw.flush()
                os.fsync(self._raw.fileno())
                self._f.close()
            os.replace(self.tmp, self.path)
        else:
            with contextlib.suppress(Exception):
                self._f.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)
        return False


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> int:
    """Write dicts (or records with ``to_dict``) as JSONL atomically; return the count."""
    n = 0
    with AtomicWriter(path) as f:
        for r in rows:
            f.write_json(r.to_dict() if hasattr(r, "to_dict") else r)
            n += 1
    return n


def write_parquet(path: str | os.PathLike, rows: list[dict]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows)
    tmp = _tmp_path(p)
    pq.write_table(table, tmp)
    os.replace(tmp, p)
    return len(rows)


def write_rows(path: str | os.PathLike, rows: list[dict]) -> int:
    """JSONL or Parquet by suffix."""
    p = str(path)
    if p.endswith(".parquet"):
        return write_parquet(path, rows)
    if p.endswith(".jsonl") or p.endswith(".jsonl.gz"):
        return write_jsonl(path, rows)
    raise DataError(f"unsupported output suffix for {path}", fix="use .jsonl, .jsonl.gz or .parquet")


# ---------------------------------------------------------------- reading

def check_input(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise DataError(f"input file not found: {p}", fix="check the path (relative paths are from the current directory)")
    if p.is_dir():
        raise DataError(f"{p} is a directory, expected a file", fix="pass a .jsonl/.parquet/.csv/.tsv file")
    return p


def _open_binary(p: Path):
    if p.name.endswith(".gz"):
        return gzip.open(p, "rb")
    return open(p, "rb")


def iter_text_lines(path: str | os.PathLike) -> Iterator[tuple[int, str | None, str | None]]:
    """Yield ``(line_no, text, error)``; invalid UTF-8 gives ``text=None`` and an error."""
    p = check_input(path)
    try:
        with _open_binary(p) as f:
            for i, raw in enumerate(f, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    yield i, None, (f"invalid UTF-8 at byte {e.start} of the line "
                                    f"({raw[max(0, e.start - 8):e.start + 8]!r})")
                    continue
                if i == 1 and text.startswith("\ufeff"):
                    text = text[1:]
                yield i, text.rstrip("\r\n"), None
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"cannot read {p}: {e}", path=str(p), fix="check that the file is complete and not corrupted") from e


def _nonblank_lines(path: str | os.PathLike) -> Iterator[tuple[int, str | None, Row | None]]:
    """``(line_no, text, None)`` per non-blank line, or ``(line_no, None, error_row)`` for bad UTF-8."""
    for i, text, err in iter_text_lines(path):
        if err:
            yield i, None, Row(i, None, err, "invalid_utf8")
        elif text.strip():
            yield i, text, None


def iter_jsonl(path: str | os.PathLike) -> Iterator[Row]:
    """Yield one :class:`Row` per non-blank line; parse errors come back as rows with ``error``."""
    for i, text, bad in _nonblank_lines(path):
        if bad is not None:
            yield bad
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            yield Row(i, text, f"malformed JSON ({e.msg} at column {e.colno})", "malformed_json")
            continue
        if not isinstance(obj, dict):
            yield Row(i, text, f"expected a JSON object, got {type(obj).__name__}", "not_an_object")
            continue
        yield Row(i, obj)


def iter_table(path: str | os.PathLike, *, delimiter: str | None = None,
               header: bool = True, columns: list[str] | None = None) -> Iterator[Row]:
    """Rows of a JSONL/JSON/Parquet/CSV/TSV file as dicts (1-based line or row numbers)."""
    p = check_input(path)
    name = p.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        yield from iter_jsonl(p)
    elif name.endswith((".json", ".json.gz")):
        try:
            with _open_binary(p) as f:
                obj = json.loads(f.read().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            # maybe it is JSON lines with a .json suffix
            yield from iter_jsonl(p)
            return
        if isinstance(obj, dict):
            obj = next((v for v in obj.values() if isinstance(v, list)), [obj])
        for i, r in enumerate(obj):
            yield Row(i, r) if isinstance(r, dict) else Row(i, r, "expected a JSON object", "not_an_object")
    elif name.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(p)
        except Exception as e:
            raise DataError(f"cannot read Parquet file {p}: {e}", path=str(p)) from e
        for i, r in enumerate(table.to_pylist()):
            yield Row(i, r)
    elif name.endswith((".csv", ".tsv", ".csv.gz", ".tsv.gz", ".txt")):
        delim = delimiter or ("\t" if ".tsv" in name or name.endswith(".txt") else ",")
        cols = columns
        for i, text, bad in _nonblank_lines(p):
            if bad is not None:
                yield bad
                continue
            try:
                fields = next(csv.reader([text], delimiter=delim)) if delim != "\t" else text.split("\t")
            except csv.Error as e:
                yield Row(i, text, f"malformed {('TSV' if delim == chr(9) else 'CSV')} line: {e}", "malformed_line")
                continue
            if cols is None and header:
                cols = [c.strip() for c in fields]
                continue
            if cols is None:
                yield Row(i, {"fields": fields})
                continue
            if len(fields) != len(cols):
                # trailing empty fields (e.g. a trailing tab) are harmless
                while len(fields) > len(cols) and fields[-1] == "":
                    fields = fields[:-1]
                if len(fields) != len(cols):
                    yield Row(i, text, f"expected {len(cols)} columns {cols}, got {len(fields)}", "wrong_column_count")
                    continue
            yield Row(i, dict(zip(cols, fields)))
    else:
        raise DataError(f"unsupported file type: {p.name}",
                        fix=f"use one of {', '.join(TABLE_SUFFIXES)} (or a Hub dataset id)")


def iter_records(path: str | os.PathLike) -> Iterator[tuple[Row, Record | None]]:
    """Canonical records with their rows; a bad row gives ``(row_with_error, None)``."""
    for row in iter_jsonl(path):
        if row.error:
            yield row, None
            continue
        try:
            yield row, record_from_dict(row.data)
        except SchemaError as e:
            yield Row(row.locator, row.data, str(e), e.reason), None


def read_records(path: str | os.PathLike) -> list[Record]:
    """All canonical records of a file; the first bad row raises :class:`DataError`."""
    out = []
    for row, rec in iter_records(path):
        if rec is None:
            raise DataError(row.error or "bad row", path=str(path), line=row.locator,
                            fix="fix or remove the row, or re-create the file with `jprefs data convert`")
        out.append(rec)
    return out


def load_pairs(path: str | os.PathLike) -> list[PreferencePair]:
    """Preference pairs of a canonical JSONL file (rank lists expanded).

    >>> pairs = load_pairs("pairs.jsonl")  # doctest: +SKIP
    """
    return list(expand_pairs(read_records(path)))


def load_binary(path: str | os.PathLike) -> list[BinaryExample]:
    """Binary examples of a JSONL file (``prompt``/``response``/``label`` or ``text``/``label``)."""
    out = []
    for row in iter_jsonl(path):
        if row.error:
            raise DataError(row.error, path=str(path), line=row.locator)
        try:
            out.append(BinaryExample.from_dict(row.data))
        except SchemaError as e:
            raise DataError(str(e), path=str(path), line=row.locator) from e
    return out


class RejectsWriter:
    """Collects rejected rows as ``{line, reason, error, raw}`` and writes them atomically."""

    def __init__(self, path: str | os.PathLike | None, source_path: str | None = None):
        self.path = Path(path) if path else None
        self.source_path = source_path
        self.rows: list[dict] = []
        self.by_reason: dict[str, int] = {}

    def add(self, locator: int | str, reason: str, error: str, raw: Any) -> None:
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        if isinstance(raw, (bytes, bytearray)):
            raw = raw.decode("utf-8", "backslashreplace")
        entry = {"line" if isinstance(locator, int) else "index": locator, "reason": reason, "error": error, "raw": raw}
        if self.source_path:
            entry["file"] = self.source_path
        self.rows.append(entry)

    def __len__(self) -> int:
        return len(self.rows)

    def save(self) -> Path | None:
        if self.path is None:
            return None
        write_jsonl(self.path, self.rows)
        return self.path


def rejects_path_for(out: str | os.PathLike) -> Path:
    """``OUT.jsonl`` -> ``OUT.rejects.jsonl``."""
    p = Path(out)
    name = p.name
    for suf in (".jsonl.gz", ".jsonl", ".parquet", ".json"):
        if name.endswith(suf):
            return p.with_name(name[: -len(suf)] + ".rejects.jsonl")
    return p.with_name(name + ".rejects.jsonl")


def eprint(*a, **k) -> None:
    print(*a, file=sys.stderr, **k)
