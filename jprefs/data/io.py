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
import functools
import gzip
import io
import itertools
import json
import math
import os
import re
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from jprefs.data.schema import (LONE_SURROGATE, BinaryExample, PreferencePair, Record, SchemaError,
                                expand_pairs, record_from_dict)
from jprefs.errors import DataError

TABLE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".csv", ".tsv", ".csv.gz", ".tsv.gz")


@dataclass
class Row:
    """One raw input row. ``locator`` is the 1-based line number (``unit="line"``: JSONL, CSV, TSV)
    or the 0-based row index (``unit="index"``: JSON, Parquet, Hub)."""

    locator: int
    data: Any = None
    error: str | None = None   # a parse error; ``data`` then holds the raw text
    reason: str | None = None  # short tag for the rejects file
    unit: str = "line"

    def where(self) -> dict[str, int]:
        """``{"line": N}`` or ``{"index": N}``: the locator as a rejects entry writes it."""
        return {self.unit: self.locator}


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


def json_dict_or_empty(path: str | os.PathLike) -> dict:
    """The JSON object in ``path``, or ``{}`` when the file is missing, unreadable or not an object (for
    optional descriptive files, e.g. a model folder's jprefs_reward.json read to fingerprint it)."""
    try:
        v = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return v if isinstance(v, dict) else {}


def file_sha256(path: str | os.PathLike, block: int = 1 << 24) -> str:
    """The SHA-256 hex digest of a file, read in blocks (weights and data files can be gigabytes)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Pretty strict JSON (a NaN/Infinity becomes ``null``: summaries report a missing figure as null)."""
    try:
        text = json.dumps(obj, ensure_ascii=False, indent=2, allow_nan=False)
    except ValueError:
        text = json.dumps(_nulls_for_non_finite(obj), ensure_ascii=False, indent=2, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def _nulls_for_non_finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _nulls_for_non_finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_nulls_for_non_finite(x) for x in v]
    return v


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
        """One strict JSON line (no NaN/Infinity, valid UTF-8); a value that is not raises DataError."""
        try:
            self._f.write(json_line(obj) + "\n")
        except RowProblem as e:
            raise DataError(f"cannot write a row of {self.path}: {e} [{e.reason}]",
                            fix="this row should have been rejected on input; please report it") from e

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


def write_parquet(path: str | os.PathLike, rows: Iterable[dict], schema=None, batch_rows: int = 4096) -> int:
    """Write rows as Parquet atomically, ``batch_rows`` at a time (bounded memory). ``schema``: an
    Arrow schema (see :func:`jprefs.data.export.parquet_schema`); without one it is inferred from
    the first batch and later batches must match it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(p)
    writer = None
    n = 0
    try:
        it = iter(rows)
        while True:
            batch = list(itertools.islice(it, batch_rows))
            table = pa.Table.from_pylist(batch, schema=schema)
            if writer is None:  # also for an empty input: the file still gets its schema
                schema = table.schema
                writer = pq.ParquetWriter(tmp, schema)
            if batch:
                writer.write_table(table)
            n += len(batch)
            if len(batch) < batch_rows:
                break
        writer.close()
        writer = None
        os.replace(tmp, p)
    finally:
        if writer is not None:
            writer.close()
        if tmp.exists():
            tmp.unlink()
    return n


def write_rows(path: str | os.PathLike, rows: Iterable[dict], fmt: str | None = None) -> int:
    """JSONL or Parquet by suffix, streamed; ``fmt`` (an export format) fixes the Parquet schema."""
    p = str(path)
    if p.endswith(".parquet"):
        if fmt is None:
            return write_parquet(path, rows)
        from jprefs.data.export import parquet_row, parquet_schema

        return write_parquet(path, (parquet_row(r) for r in rows), schema=parquet_schema(fmt))
    if p.endswith(".jsonl") or p.endswith(".jsonl.gz"):
        return write_jsonl(path, rows)
    raise DataError(f"unsupported output suffix for {path}", fix="use .jsonl, .jsonl.gz or .parquet")


# ---------------------------------------------------------------- reading
#
# The reading boundary. Every reader below turns a file into ``Row`` objects and never raises
# for a bad row: a row that cannot be decoded or parsed comes back with ``error`` and ``reason``
# (the caller writes it to its rejects file). A file that cannot be read at all (missing, a
# directory, a corrupt gzip stream, an unreadable Parquet footer) raises one DataError naming the
# file, the line reached and the fix.

MAX_LINE_BYTES = 64 << 20   # one JSONL/CSV line; longer ones are rejected (line_too_long), not loaded
MAX_DEPTH = 100             # nesting of arrays/objects in one row; deeper rows are rejected
# The unmapped input columns a converted record keeps in ``meta.extra`` (provenance: question ids, model
# names, judges): at most this many characters of JSON per row, so that a bulky column (an image, an
# embedding, every candidate answer) cannot swell each record, nor the K(K-1)/2 pairs of a rank list
# that all copy it. A column that does not fit is dropped by name (``meta.extra_dropped``), not the row.
MAX_EXTRA_CHARS = 10_000
_PREVIEW = 300              # characters of a rejected line kept when the line itself is too big to keep

# Lone surrogates can only enter through \\uD8xx-\\uDFxx escapes (strict UTF-8 decoding never yields
# them); valid pairs are joined by json.loads, so any surrogate left in a parsed string is lone.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = LONE_SURROGATE


class RowProblem(ValueError):
    """A value that no strict JSON/UTF-8 writer can take (``reason`` is the rejects tag)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def check_value(obj: Any, *, max_depth: int = MAX_DEPTH, finite: bool = False, strings: bool = True) -> None:
    """Raise :class:`RowProblem` if ``obj`` nests deeper than ``max_depth``, holds a lone surrogate
    (``strings``) or, with ``finite``, a NaN/Infinity. Iterative, so any depth is safe to check.

    >>> check_value({"a": [1, 2.5, "x"]}, finite=True)
    >>> check_value({"a": float("nan")}, finite=True)
    Traceback (most recent call last):
    ...
    jprefs.data.io.RowProblem: non-finite number nan at 'a'
    """
    stack: list[tuple[Any, str, int]] = [(obj, "", 0)]
    while stack:
        v, path, depth = stack.pop()
        if isinstance(v, str):
            if strings and not v.isascii() and _SURROGATE.search(v):
                raise RowProblem("unencodable_text", f"text at '{path or '.'}' holds a lone surrogate "
                                                     f"({_SURROGATE.search(v).group()!a}), which UTF-8 cannot encode")
        elif isinstance(v, float):
            if finite and not math.isfinite(v):
                raise RowProblem("non_finite_number", f"non-finite number {v} at '{path or '.'}'")
        elif isinstance(v, (dict, list, tuple)):
            if depth >= max_depth:
                raise RowProblem("too_deeply_nested", f"the row nests more than {max_depth} levels of arrays/objects")
            items = v.items() if isinstance(v, dict) else enumerate(v)
            for k, x in items:
                if isinstance(k, str) and strings and not k.isascii() and _SURROGATE.search(k):
                    raise RowProblem("unencodable_text", f"a key at '{path or '.'}' holds a lone surrogate")
                stack.append((x, f"{path}.{k}" if path else str(k), depth + 1))


def json_line(obj: Any) -> str:
    """``obj`` as one line of strict JSON (no NaN/Infinity, encodable as UTF-8), or :class:`RowProblem`.

    >>> json_line({"日本": 1})
    '{"日本": 1}'
    """
    try:
        s = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    except ValueError as e:  # NaN / Infinity (allow_nan=False) or a circular reference
        check_value(obj, finite=True)
        raise RowProblem("non_finite_number", str(e)) from e
    except RecursionError as e:
        raise RowProblem("too_deeply_nested", "the row nests too deeply to write") from e
    except TypeError as e:
        raise RowProblem("not_json", f"a value is not JSON-serialisable: {e}") from e
    if not s.isascii() and _SURROGATE.search(s):
        check_value(obj)
        raise RowProblem("unencodable_text", "a text holds a lone surrogate, which UTF-8 cannot encode")
    return s


def safe_raw(raw: Any) -> Any:
    """A copy of a rejected row that a strict JSON writer accepts: non-finite numbers become the
    strings ``"NaN"``/``"Infinity"``, lone surrogates ``\\udXXX`` text, bytes their escaped text.
    The rejects file must be writable for exactly the rows that were not."""
    if isinstance(raw, (bytes, bytearray)):
        return raw.decode("utf-8", "backslashreplace")
    try:
        json_line(raw)
        return raw
    except RowProblem:
        pass

    def fix(v: Any, depth: int) -> Any:
        if isinstance(v, str):
            return v.encode("utf-8", "backslashreplace").decode("utf-8") if _SURROGATE.search(v) else v
        if isinstance(v, float):
            return v if math.isfinite(v) else "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
        if depth > MAX_DEPTH:
            return "..."
        if isinstance(v, dict):
            return {fix(str(k), depth): fix(x, depth + 1) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [fix(x, depth + 1) for x in v]
        if v is None or isinstance(v, (bool, int)):
            return v
        return repr(v)

    return fix(raw, 0)


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


def _read_error(p: Path, e: BaseException, line: int) -> DataError:
    what = "gzip stream" if p.name.endswith(".gz") else "file"
    where = f" after line {line}" if line else ""
    fix = ("the file is truncated or corrupt, so nothing was written: download or copy it again "
           "(`gzip -t FILE` checks a .gz)")
    return DataError(f"cannot read the {what}{where}: {type(e).__name__}: {e}", path=str(p), fix=fix)


def iter_raw_lines(path: str | os.PathLike, max_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes, int]]:
    """Yield ``(line_no, raw_bytes, length)`` per physical line, ``raw`` without its ending. A line
    longer than ``max_bytes`` is yielded as its first bytes with ``length > max_bytes`` and never
    held whole in memory. A read failure (corrupt gzip, I/O error) raises :class:`DataError`."""
    p = check_input(path)
    i = 0
    limit = max_bytes + 1
    try:
        with _open_binary(p) as f:
            for raw in iter(functools.partial(f.readline, limit), b""):
                i += 1
                if len(raw) == limit and raw[-1:] != b"\n":
                    head, n = raw[:_PREVIEW * 4], len(raw)
                    while True:  # skip the rest of the line in bounded chunks
                        chunk = f.readline(1 << 20)
                        n += len(chunk)
                        if not chunk or chunk.endswith(b"\n"):
                            break
                    yield i, head, n
                    continue
                raw = raw.rstrip(b"\r\n")
                yield i, raw, len(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise _read_error(p, e, i) from e


def iter_text_lines(path: str | os.PathLike) -> Iterator[tuple[int, str | None, str | None]]:
    """Yield ``(line_no, text, error)``; invalid UTF-8 or an over-long line gives ``text=None`` and an error."""
    for i, raw, n in iter_raw_lines(path):
        if n > MAX_LINE_BYTES:
            yield i, None, f"line of {n:,} bytes is longer than the limit ({MAX_LINE_BYTES:,} bytes)"
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            yield i, None, (f"invalid UTF-8 at byte {e.start} of the line "
                            f"({raw[max(0, e.start - 8):e.start + 8]!r})")
            continue
        if i == 1 and text.startswith("\ufeff"):
            text = text[1:]
        yield i, text, None


def _nonblank_lines(path: str | os.PathLike) -> Iterator[tuple[int, str | None, Row | None]]:
    """``(line_no, text, None)`` per non-blank line, or ``(line_no, None, error_row)`` for a bad one."""
    for i, text, err in iter_text_lines(path):
        if err:
            reason = "line_too_long" if err.startswith("line of") else "invalid_utf8"
            yield i, None, Row(i, None, err, reason)
        elif text.strip():
            yield i, text, None


def parse_json_row(locator: int, text: str, unit: str = "line") -> Row:
    """One JSON object from one line of text, as a :class:`Row` (an error row when unusable)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        return Row(locator, text, f"malformed JSON ({e.msg} at column {e.colno})", "malformed_json", unit)
    except RecursionError:
        return Row(locator, text[:_PREVIEW], "the row nests too deeply to parse", "too_deeply_nested", unit)
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        return Row(locator, text[:_PREVIEW], f"unreadable JSON value: {e}", "bad_number", unit)
    if not isinstance(obj, dict):
        return Row(locator, text, f"expected a JSON object, got {type(obj).__name__}", "not_an_object", unit)
    # A cheap screen first: only a row that could hold a lone surrogate is walked. Nesting needs no
    # screen here: past ~1000 levels json.loads raises RecursionError (above), and the free-form
    # values that travel on (canonical ``meta``, rows ``jprefs score`` writes back) are walked with
    # :func:`check_value`, which enforces MAX_DEPTH, where they are used.
    if _SURROGATE_ESCAPE.search(text):
        try:
            check_value(obj)
        except RowProblem as e:
            return Row(locator, text, str(e), e.reason, unit)
    return Row(locator, obj, unit=unit)


def iter_jsonl(path: str | os.PathLike) -> Iterator[Row]:
    """Yield one :class:`Row` per non-blank line; parse errors come back as rows with ``error``."""
    for i, text, bad in _nonblank_lines(path):
        yield bad if bad is not None else parse_json_row(i, text)


def _iter_json_file(p: Path, field: str | None) -> Iterator[Row]:
    """A ``.json`` file: a list of objects, or an object whose list is named by ``field``.
    The file is parsed whole (JSON has no row boundaries); use JSONL for files that do not fit."""
    try:
        with _open_binary(p) as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise _read_error(p, e, 0) from e
    try:
        text = raw.decode("utf-8-sig")
        obj = json.loads(text)
    except UnicodeDecodeError as e:
        raise DataError(f"invalid UTF-8 at byte {e.start}", path=str(p),
                        fix="re-save the file as UTF-8") from e
    except json.JSONDecodeError as e:
        if text.lstrip().startswith("{") and "\n" in text.strip():
            yield from iter_jsonl(p)  # JSON lines saved with a .json suffix
            return
        raise DataError(f"malformed JSON ({e.msg} at line {e.lineno}, column {e.colno})", path=str(p),
                        fix="fix the file, or save one object per line as .jsonl") from e
    except (RecursionError, ValueError) as e:
        raise DataError(f"unreadable JSON ({type(e).__name__}: {e})", path=str(p),
                        fix="the file nests too deeply or holds a number too large to read") from e
    if isinstance(obj, dict):
        if field is None:
            lists = [k for k, v in obj.items() if isinstance(v, list)]
            raise DataError(f"the top level is an object (keys {sorted(obj)[:8]}), not a list of rows",
                            path=str(p), fix=(f"name the field that holds the rows with --field "
                                              f"({', '.join(lists[:5])})" if lists else
                                              "give a list of objects, or one object per line as .jsonl"))
        if not isinstance(obj.get(field), list):
            raise DataError(f"--field {field!r}: the top-level object has no list named {field!r} "
                            f"(keys {sorted(obj)[:8]})", path=str(p), fix="pass the name of the field that holds the rows")
        obj = obj[field]
    elif field is not None:
        raise DataError(f"--field {field!r} given, but the top level is a {type(obj).__name__}, not an object",
                        path=str(p), fix="drop --field for a top-level list")
    if not isinstance(obj, list):
        kind = {str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(type(obj), "null")
        raise DataError(f"the top level is {kind} ({json.dumps(obj)[:40]}), not a list of rows",
                        path=str(p), fix="give a list of objects, or one object per line as .jsonl")
    for i, r in enumerate(obj):
        if not isinstance(r, dict):
            yield Row(i, safe_raw(r), f"expected a JSON object, got {type(r).__name__}", "not_an_object", "index")
            continue
        try:
            check_value(r)
        except RowProblem as e:
            yield Row(i, safe_raw(r), str(e), e.reason, "index")
            continue
        yield Row(i, r, unit="index")


def _iter_parquet(p: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(p)
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError for anything unreadable
        raise DataError(f"cannot read Parquet file: {e}", path=str(p),
                        fix="check that the file is a complete Parquet file (copy it again if truncated)") from e
    i = 0
    try:
        for batch in pf.iter_batches(batch_size=1024):  # bounded memory: one batch at a time
            for r in batch.to_pylist():
                yield Row(i, r, unit="index")
                i += 1
    except Exception as e:
        raise DataError(f"cannot read Parquet file after row {i}: {e}", path=str(p),
                        fix="the file is truncated or corrupt: copy it again") from e


def _csv_lines(p: Path, first: list[int]) -> Iterator[str]:
    """Physical lines with their endings for the csv module. Invalid UTF-8 is kept as surrogate
    escapes so that the record holding it can be rejected with its line number."""
    for i, raw, n in iter_raw_lines(p):
        if n > MAX_LINE_BYTES:
            raw = raw[:_PREVIEW]
        text = raw.decode("utf-8", "surrogateescape")
        if i == 1 and text.startswith("\ufeff"):
            text = text[1:]
        first[0] = i
        yield text + "\n"


def _iter_delimited(p: Path, delim: str, header: bool, columns: list[str] | None, *,
                    quoting: bool = True) -> Iterator[Row]:
    """CSV/TSV through the csv module: quoted fields (with delimiters, quotes, newlines) are real
    fields, a record spanning lines is one row located at its first line, a duplicate header is
    refused, and malformed quoting rejects that record."""
    kind = "TSV" if delim == "\t" else "CSV"
    csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_BYTES))
    last = [0]                     # the physical line most recently handed to the reader
    lines = _csv_lines(p, last)
    reader = csv.reader(lines, delimiter=delim, strict=True) if quoting else \
        csv.reader(lines, delimiter=delim, quoting=csv.QUOTE_NONE)
    cols = columns
    start = 1
    while True:
        start = last[0] + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            span = f"lines {start}-{last[0]}" if last[0] > start else f"line {start}"
            hint = " (an unclosed quote runs to the end of the file)" if "end of data" in str(e) else ""
            yield Row(start, None, f"malformed {kind} record at {span}: {e}{hint}", "malformed_line")
            continue
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue  # a blank line is not a row
        bad = next((f for f in fields if not f.isascii() and _SURROGATE.search(f)), None)
        if bad is not None:
            yield Row(start, bad.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")[:_PREVIEW],
                      "invalid UTF-8 in the record", "invalid_utf8")
            continue
        if cols is None and header:
            names = [c.strip() for c in fields]
            while names and names[-1] == "":
                names.pop()
            seen: dict[str, int] = {}
            for j, c in enumerate(names, start=1):
                if c in seen:
                    label = f"'{c}'" if c else "an empty name"
                    raise DataError(f"the header has {label} twice (columns {seen[c]} and {j})", path=str(p), line=start,
                                    fix="give every column its own name: a second column of the same name would "
                                        "silently replace the first")
                seen[c] = j
            cols = names
            continue
        if cols is None:
            yield Row(start, {"fields": fields})
            continue
        if len(fields) != len(cols):
            while len(fields) > len(cols) and fields[-1] == "":
                fields = fields[:-1]  # trailing empty fields (a trailing tab) are harmless
            if len(fields) != len(cols):
                yield Row(start, delim.join(fields)[:_PREVIEW * 10],
                          f"expected {len(cols)} columns {cols}, got {len(fields)}", "wrong_column_count")
                continue
        yield Row(start, dict(zip(cols, fields)))


def iter_table(path: str | os.PathLike, *, delimiter: str | None = None, header: bool = True,
               columns: list[str] | None = None, field: str | None = None, quoting: bool = True) -> Iterator[Row]:
    """Rows of a JSONL/JSON/Parquet/CSV/TSV file as dicts. Lines are 1-based (``unit="line"``);
    JSON and Parquet rows are 0-based indices (``unit="index"``). ``field``: for a ``.json`` file whose
    top level is an object, the name of the list that holds the rows. ``quoting=False``: a delimited
    file is plain (one record per line, a ``"`` is text), as a rank-list TSV is documented; with
    CSV quoting a stray ``"`` at a field's start joined the next lines into one record."""
    p = check_input(path)
    name = p.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        yield from iter_jsonl(p)
    elif name.endswith((".json", ".json.gz")):
        yield from _iter_json_file(p, field)
    elif name.endswith(".parquet"):
        yield from _iter_parquet(p)
    elif name.endswith((".csv", ".tsv", ".csv.gz", ".tsv.gz", ".txt")):
        delim = delimiter or ("\t" if ".tsv" in name or name.endswith(".txt") else ",")
        yield from _iter_delimited(p, delim, header, columns, quoting=quoting)
    else:
        raise DataError(f"unsupported file type: {p.name}",
                        fix=f"use one of {', '.join(TABLE_SUFFIXES)} (or a Hub dataset id)")


def iter_records(path: str | os.PathLike) -> Iterator[tuple[Row, Record | None]]:
    """Canonical records with their rows; a bad row gives ``(row_with_error, None)``. A table file
    (Parquet, CSV, TSV) is one clear error naming the conversion, not "line 1: invalid UTF-8"."""
    name = str(path).lower()
    if name.endswith((".parquet", ".csv", ".tsv", ".csv.gz", ".tsv.gz")):
        raise DataError("this command reads canonical JSONL, not a table file", path=str(path),
                        fix=f"convert it first: jprefs data convert {path} --source jprefs -o PAIRS.jsonl")
    for row in iter_jsonl(path):
        if row.error:
            yield row, None
            continue
        try:
            yield row, record_from_dict(row.data)
        except SchemaError as e:
            yield Row(row.locator, row.data, str(e), e.reason, row.unit), None
        except Exception as e:  # noqa: BLE001 - the boundary: a surprise in one row never aborts the file
            yield Row(row.locator, row.data, f"{type(e).__name__}: {e}", "invalid_record", row.unit), None


def row_error(path, row: Row, fix: str) -> DataError:
    return DataError(f"{row.error or 'bad row'} [{row.reason or 'invalid_record'}]", path=str(path),
                     line=row.locator if row.unit == "line" else None, fix=fix)


def stream_records(path: str | os.PathLike, *, fix: str = "fix or remove the row, or re-create the file with "
                                                          "`jprefs data convert`") -> Iterator[Record]:
    """Canonical records one at a time; the first bad row raises :class:`DataError` naming file and line."""
    for row, rec in iter_records(path):
        if rec is None:
            raise row_error(path, row, fix)
        yield rec


def read_records(path: str | os.PathLike) -> list[Record]:
    """All canonical records of a file; the first bad row raises :class:`DataError`."""
    return list(stream_records(path))


def load_pairs(path: str | os.PathLike) -> list[PreferencePair]:
    """Preference pairs of a canonical JSONL file (rank lists expanded).

    >>> pairs = load_pairs("pairs.jsonl")  # doctest: +SKIP
    """
    return list(expand_pairs(stream_records(path)))


def load_binary(path: str | os.PathLike) -> list[BinaryExample]:
    """Binary examples of a JSONL file (``prompt``/``response``/``label`` or ``text``/``label``)."""
    out = []
    for row in iter_jsonl(path):
        if row.error:
            raise row_error(path, row, "fix or remove the row")
        try:
            out.append(BinaryExample.from_dict(row.data))
        except SchemaError as e:
            raise DataError(f"{e} [{e.reason}]", path=str(path), line=row.locator) from e
    return out


def reject_entry(row: Row, reason: str | None = None, error: str | None = None, **extra: Any) -> dict:
    """The rejects-file entry of ``row``: its locator, reason, error and raw data (made writable)."""
    return {**row.where(), "reason": reason or row.reason or "bad_row", "error": error or row.error or "",
            "raw": safe_raw(row.data), **extra}


class RejectsWriter:
    """Collects rejected rows as ``{line, reason, error, raw}`` and writes them atomically."""

    def __init__(self, path: str | os.PathLike | None, source_path: str | None = None):
        self.path = Path(path) if path else None
        self.source_path = source_path
        self.rows: list[dict] = []
        self.by_reason: dict[str, int] = {}

    def add(self, locator: int | str, reason: str, error: str, raw: Any, unit: str | None = None) -> None:
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        entry = {unit or ("line" if isinstance(locator, int) else "index"): locator, "reason": reason, "error": error,
                 "raw": safe_raw(raw)}
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
