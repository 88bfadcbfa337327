"""Property-based tests (hypothesis) of the reading boundary: for ANY input, every data command
exits 0 or 2 (never a traceback), ``rows_in == rows_out + rows_rejected`` with ``rows_in`` the
number of rows really in the file, and every output line is strict UTF-8 JSON."""

import contextlib
import csv
import io
import json
import math
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from jprefs.cli import main  # noqa: E402
from jprefs.data.export import FORMATS  # noqa: E402

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    derandomize=True)  # derandomized: CI sees the same examples on every run

# Text that includes what real dumps hold: Japanese, control characters, NUL, lone surrogates.
_char = st.one_of(st.characters(), st.sampled_from("日本語のテキスト\n\t\r \x00\"\\,"),
                  st.integers(0xD800, 0xDFFF).map(chr))
TEXT = st.text(_char, max_size=12)
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.integers(),
                   st.floats(allow_nan=True, allow_infinity=True), TEXT)
JSONV = st.recursive(SCALAR, lambda c: st.lists(c, max_size=3) | st.dictionaries(TEXT, c, max_size=3), max_leaves=8)


def _turns(draw):
    roles = draw(st.lists(st.sampled_from(["Human", "Assistant", "System", "Bogus"]), min_size=0, max_size=4))
    return "".join(f"\n\n{r}: {draw(TEXT)}" for r in roles) if draw(st.booleans()) else draw(TEXT)


def field(draw, plausible):
    """Mostly the plausible value, sometimes anything at all."""
    return draw(st.one_of(plausible, JSONV)) if draw(st.integers(0, 3)) == 0 else draw(plausible)


MSG = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "x"]), "content": TEXT})


@st.composite
def row_for(draw, source):
    """A row in roughly ``source``'s schema, with any field possibly wrong or missing."""
    if source == "hh-rlhf":
        prefix = "".join(f"\n\nHuman: {draw(TEXT)}\n\nAssistant: {draw(TEXT)}" for _ in range(draw(st.integers(0, 2))))
        q = draw(TEXT)
        d = {"chosen": field(draw, st.just(f"{prefix}\n\nHuman: {q}\n\nAssistant: {draw(TEXT)}")),
             "rejected": field(draw, st.just(f"{prefix}\n\nHuman: {q}\n\nAssistant: {draw(TEXT)}"))}
        if draw(st.booleans()):
            d["chosen"] = _turns(draw)
    elif source == "webgpt":
        d = {"question": field(draw, st.fixed_dictionaries({"full_text": TEXT})), "answer_0": field(draw, TEXT),
             "answer_1": field(draw, TEXT), "score_0": field(draw, st.floats(allow_nan=True, allow_infinity=True)),
             "score_1": field(draw, st.floats(-1, 1))}
    elif source == "summarize":
        d = {"info": field(draw, st.fixed_dictionaries({"post": TEXT, "title": TEXT, "subreddit": TEXT})),
             "summaries": field(draw, st.lists(st.fixed_dictionaries({"text": TEXT, "policy": TEXT}), max_size=3)),
             "choice": field(draw, st.integers(-1, 2))}
    elif source == "jprefs":
        d = {"prompt": field(draw, st.one_of(TEXT, st.lists(MSG, max_size=3))), "chosen": field(draw, TEXT),
             "rejected": field(draw, TEXT), "license": field(draw, TEXT), "meta": field(draw, st.dictionaries(TEXT, JSONV)),
             "chosen_score": field(draw, st.floats(allow_nan=True)), "id": field(draw, TEXT)}
        if draw(st.integers(0, 4)) == 0:
            d = {"prompt": d["prompt"], "responses": field(draw, st.lists(TEXT, max_size=4)),
                 "scores": field(draw, st.lists(st.floats(allow_nan=True), max_size=4))}
    else:  # gptj-pairwise and jsonl (default field names)
        d = {"prompt": field(draw, TEXT), "chosen": field(draw, st.one_of(TEXT, st.lists(MSG, max_size=2))),
             "rejected": field(draw, TEXT), "margin": field(draw, st.one_of(st.floats(allow_nan=True), TEXT))}
    for k in draw(st.lists(st.sampled_from(sorted(d)), max_size=2)):
        d.pop(k, None)
    return d


@st.composite
def jsonl_bytes(draw, source):
    """A JSONL file: rows of ``source``, some lines damaged; returns (bytes, non-blank line count)."""
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        obj = draw(row_for(source)) if draw(st.integers(0, 5)) else draw(JSONV)
        line = json.dumps(obj, ensure_ascii=draw(st.booleans()), allow_nan=True).encode("utf-8", "surrogatepass")
        damage = draw(st.integers(0, 9))
        if damage == 0:
            line = line[: draw(st.integers(0, len(line)))]
        elif damage == 1:
            i = draw(st.integers(0, len(line)))
            line = line[:i] + draw(st.binary(min_size=1, max_size=3)) + line[i:]
        line = line.replace(b"\n", b" ").replace(b"\r", b" ")
        lines.append(line)
    n = sum(1 for ln in lines if ln.strip(b" \t\x0b\x0c\x1c\x1d\x1e\x1f\x85") and _decodes_nonblank(ln))
    return b"\n".join(lines) + (b"\n" if draw(st.booleans()) else b""), n


def _decodes_nonblank(line: bytes) -> bool:
    try:
        return bool(line.decode("utf-8").strip())
    except UnicodeDecodeError:
        return True  # an undecodable line is a row (rejected as invalid_utf8)


def strict_rows(path: Path):
    def no_constants(c):
        raise AssertionError(f"{c} written to {path}")

    return [json.loads(line, parse_constant=no_constants)
            for line in path.read_bytes().decode("utf-8").splitlines() if line.strip()]


def run_cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def check_convert(path: Path, source: str, n_rows: int | None, *extra):
    out = path.parent / "out.jsonl"
    code, stdout, stderr = run_cli("data", "convert", path, "--source", source, "-o", out, "--json", *extra)
    assert code in (0, 2), stderr
    assert "Traceback" not in stderr
    if code == 2 and not out.exists():
        assert "error:" in stderr
        return None
    summary = json.loads(stdout[stdout.index("{"):])
    kept, rejects = strict_rows(out), strict_rows(path.parent / "out.rejects.jsonl")
    assert summary["rows_in"] == summary["rows_out"] + summary["rows_rejected"] == len(kept) + len(rejects)
    if n_rows is not None:
        assert summary["rows_in"] == n_rows
    assert (code == 2) == (summary["rows_out"] == 0)
    for r in kept:
        assert r["prompt"] and r["prompt"][-1]["role"] == "user"
        for k in ("chosen_score", "rejected_score", "margin"):
            assert k not in r or math.isfinite(r[k])
    return kept


@pytest.mark.parametrize("source", ["hh-rlhf", "webgpt", "gptj-pairwise", "summarize", "jsonl", "jprefs"])
@SETTINGS
@given(data=st.data())
def test_convert_jsonl_any_input(source, data):
    content, n = data.draw(jsonl_bytes(source))
    gz = data.draw(st.booleans())
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / ("in.jsonl.gz" if gz else "in.jsonl")
        if gz:
            import gzip

            p.write_bytes(gzip.compress(content))
        else:
            p.write_bytes(content)
        check_convert(p, source, n)


@SETTINGS
@given(rows=st.lists(st.lists(TEXT.filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)),
                              min_size=1, max_size=4), max_size=6),
       delim=st.sampled_from([",", "\t"]))
def test_convert_csv_any_fields(rows, delim):
    """Fields written by a real CSV writer come back as the same records, one row per record."""
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delim, lineterminator="\n")
    w.writerow(["prompt", "chosen", "rejected"])
    w.writerows(rows)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / ("in.tsv" if delim == "\t" else "in.csv")
        p.write_text(buf.getvalue(), encoding="utf-8")
        blank = sum(1 for r in rows if len(r) == 1 and not r[0].strip())
        kept = check_convert(p, "jsonl", len(rows) - blank)
        if kept is not None:
            good = [r for r in rows if len(r) == 3]
            assert len(kept) <= len(good)


@SETTINGS
@given(content=st.binary(max_size=200), suffix=st.sampled_from([".jsonl", ".json", ".csv", ".tsv", ".jsonl.gz",
                                                                 ".parquet"]),
       source=st.sampled_from(["hh-rlhf", "jsonl", "jprefs", "ranklist"]))
def test_convert_any_bytes(content, suffix, source):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"in{suffix}"
        p.write_bytes(content)
        check_convert(p, source, None)


@SETTINGS
@given(doc=JSONV, field_name=st.one_of(st.none(), TEXT))
def test_convert_any_json_document(doc, field_name):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "in.json"
        p.write_bytes(json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass"))
        extra = ("--field", field_name) if field_name and not field_name.startswith("-") else ()
        n = len(doc) if isinstance(doc, list) else None
        check_convert(p, "jsonl", n, *extra)


@SETTINGS
@given(data=st.data())
def test_canonical_readers_any_input(data):
    """stats, export, split and merge on any canonical-looking file: 0 or 2, and strict outputs."""
    content, _ = data.draw(jsonl_bytes("jprefs"))
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        p = d / "in.jsonl"
        p.write_bytes(content)
        for argv in (("data", "stats", p, "--no-morphemes", "--json"),
                     ("data", "export", p, "--format", data.draw(st.sampled_from(FORMATS)),
                      "-o", d / f"e{data.draw(st.sampled_from(['.jsonl', '.parquet']))}"),
                     ("data", "split", p, "--test-size", "0.5", "-o", d / "s"),
                     ("data", "merge", p, p, "-o", d / "m.jsonl")):
            code, _, stderr = run_cli(*argv)
            assert code in (0, 2) and "Traceback" not in stderr, (argv, stderr)
        for f in [d / "e.jsonl", d / "s" / "train.jsonl", d / "s" / "test.jsonl", d / "m.jsonl", d / "m.rejects.jsonl"]:
            if f.exists():
                strict_rows(f)
        if (d / "m.jsonl").exists():  # the second copy is all duplicates
            assert len(strict_rows(d / "m.rejects.jsonl")) == len(strict_rows(d / "m.jsonl"))


@SETTINGS
@given(data=st.data())
def test_rm_data_reader_any_input(data):
    """train-rm --data and score read through load_rm_data: a DataError or rows that add up."""
    from jprefs.classifiers.data import load_rm_data
    from jprefs.errors import DataError

    kind = data.draw(st.sampled_from(["pairs", "binary", "tsv"]))
    if kind == "pairs":
        content, _ = data.draw(jsonl_bytes("jprefs"))
    elif kind == "binary":
        rows = data.draw(st.lists(st.fixed_dictionaries({"text": JSONV, "label": st.one_of(st.sampled_from([0, 1]),
                                                                                               JSONV)}), max_size=5))
        content = "\n".join(json.dumps(r, allow_nan=True) for r in rows).encode("utf-8", "surrogatepass")
    else:
        content = data.draw(st.binary(max_size=120)) + b"\n" + "日本語\t1\n".encode()
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / ("in.tsv" if kind == "tsv" else "in.jsonl")
        p.write_bytes(content)
        try:
            rm = load_rm_data(p)
        except DataError:
            return
        assert rm.rows_in == len(rm.records) + len(rm.rejects)
        from jprefs.data.io import json_line

        for r in rm.rejects:
            json_line(r)
        for rec in rm.records:
            json_line(rec.to_dict())
