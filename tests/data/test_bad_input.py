"""Regression tests for the bad inputs of issue #10: each gives a clear reject or a clear error
(exit 2, file named), never a traceback, never a row lost or invented, never NaN in the output."""

import gzip
import json

import pytest

from jprefs.cli import main
from tests.data.fixtures import HH_ROWS, H

OK_HH = {"chosen": H(("Human", "Hi?"), ("Assistant", "Hello!")), "rejected": H(("Human", "Hi?"), ("Assistant", "No."))}


def run(*argv):
    return main([str(a) for a in argv])


def strict_lines(path):
    """Every line of ``path`` as strict UTF-8 JSON (no NaN/Infinity)."""
    def no_constants(c):
        raise AssertionError(f"non-finite {c} written to {path}")

    text = path.read_bytes().decode("utf-8")  # strict UTF-8
    return [json.loads(line, parse_constant=no_constants) for line in text.splitlines() if line.strip()]


def convert(tmp_path, name, content, source, *extra):
    src = tmp_path / name
    if isinstance(content, bytes):
        src.write_bytes(content)
    else:
        src.write_text(content, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    code = run("data", "convert", src, "--source", source, "-o", out, "--json", *extra)
    return code, out, tmp_path / "out.rejects.jsonl"


def result(code, out, rej, capsys):
    """(summary, kept rows, rejects) of a convert that ran to the end, with the counts checked."""
    cap = capsys.readouterr()
    summary = json.loads(cap.out[cap.out.index("{"):])
    kept, rejects = strict_lines(out), strict_lines(rej)
    assert summary["rows_in"] == len(kept) + len(rejects) == summary["rows_out"] + summary["rows_rejected"]
    return summary, kept, rejects


def test_lone_surrogate_is_rejected_not_a_crash(tmp_path, capsys):
    lines = [json.dumps(OK_HH), '{"chosen": "\\n\\nHuman: hi\\ud800\\n\\nAssistant: a", '
                                '"rejected": "\\n\\nHuman: hi\\ud800\\n\\nAssistant: b"}']
    code, out, rej = convert(tmp_path, "s.jsonl", "\n".join(lines) + "\n", "hh-rlhf")
    assert code == 0
    _, kept, rejects = result(code, out, rej, capsys)
    assert len(kept) == 1 and [r["reason"] for r in rejects] == ["unencodable_text"] and rejects[0]["line"] == 2


def test_surrogate_in_generic_and_canonical_rows(tmp_path, capsys):
    row = '{"prompt": "hi\\udc00", "chosen": "a", "rejected": "b"}\n'
    for source in ("jsonl", "jprefs", "gptj-pairwise"):
        code, out, rej = convert(tmp_path, "g.jsonl", json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"})
                                 + "\n" + row, source)
        assert code == 0
        _, kept, rejects = result(code, out, rej, capsys)
        assert len(kept) == 1 and rejects[0]["reason"] == "unencodable_text", source


@pytest.mark.parametrize("top", ["3", "null", "true", '"rows"'])
def test_json_file_top_level_scalar_is_a_clear_error(tmp_path, capsys, top):
    code, out, _ = convert(tmp_path, "x.json", top, "jsonl")
    err = capsys.readouterr().err
    assert code == 2 and "x.json" in err and "not a list of rows" in err and "Traceback" not in err
    assert not out.exists()


def test_json_object_needs_an_explicit_field(tmp_path, capsys):
    doc = {"meta": {"n": 1}, "data": [{"prompt": "q", "chosen": "a", "rejected": "b"}], "other": [1, 2]}
    code, out, _ = convert(tmp_path, "x.json", json.dumps(doc), "jsonl")
    err = capsys.readouterr().err
    assert code == 2 and "--field" in err and "data" in err and not out.exists()
    code, out, rej = convert(tmp_path, "x.json", json.dumps(doc), "jsonl", "--field", "data")
    _, kept, rejects = result(code, out, rej, capsys)
    assert code == 0 and len(kept) == 1 and not rejects
    code, _, _ = convert(tmp_path, "x.json", json.dumps(doc), "jsonl", "--field", "meta")
    assert code == 2 and "no list named 'meta'" in capsys.readouterr().err


def test_json_list_rows_are_located_by_index(tmp_path, capsys):
    doc = [{"prompt": "q", "chosen": "a", "rejected": "b"}, 5, {"prompt": "q", "chosen": "a"}]
    code, out, rej = convert(tmp_path, "x.json", json.dumps(doc), "jsonl")
    _, kept, rejects = result(code, out, rej, capsys)
    assert len(kept) == 1 and [(r["index"], r["reason"]) for r in rejects] == [(1, "not_an_object"), (2, "missing_field")]


@pytest.mark.parametrize("meta", [1, "x", [1], True])
def test_meta_must_be_an_object(tmp_path, capsys, meta):
    row = {"prompt": "q", "chosen": "a", "rejected": "b", "meta": meta}
    code, out, rej = convert(tmp_path, "m.jsonl", json.dumps(row) + "\n" + json.dumps(dict(row, meta={})) + "\n",
                             "jprefs")
    _, kept, rejects = result(code, out, rej, capsys)
    assert len(kept) == 1 and [r["reason"] for r in rejects] == ["bad_meta"]
    # the readers of canonical files behind stats/export/split refuse it with the file and line
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(row) + "\n")
    for argv in (("data", "stats", bad), ("data", "export", bad, "--format", "trl", "-o", tmp_path / "e.jsonl")):
        assert run(*argv) == 2
        err = capsys.readouterr().err
        assert "bad.jsonl, line 1" in err and "bad_meta" in err


def test_meta_with_nan_is_rejected(tmp_path, capsys):
    code, out, rej = convert(tmp_path, "m.jsonl", '{"prompt": "q", "chosen": "a", "rejected": "b", "meta": {"x": NaN}}\n'
                                                  '{"prompt": "q", "chosen": "a", "rejected": "c", "extra": Infinity}\n',
                             "jprefs")
    _, kept, rejects = result(code, out, rej, capsys)
    assert kept == [] and [r["reason"] for r in rejects] == ["non_finite_number"] * 2
    assert rejects[0]["raw"]["meta"] == {"x": "NaN"}  # the rejects file stays strict JSON too
    assert code == 2  # nothing kept


def test_deep_nesting_and_huge_integers(tmp_path, capsys):
    deep = '{"prompt": ' + "[" * 100_000 + "]" * 100_000 + ', "chosen": "a", "rejected": "b"}'
    mid = '{"prompt": "q", "chosen": "a", "rejected": "b", "meta": {"x": ' + "[" * 500 + "]" * 500 + "}}"
    big = '{"prompt": "q", "chosen": "a", "rejected": "b", "chosen_score": ' + "9" * 5000 + "}"
    ok = json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"})
    code, out, rej = convert(tmp_path, "d.jsonl", "\n".join([deep, mid, big, ok]) + "\n", "jprefs")
    _, kept, rejects = result(code, out, rej, capsys)
    assert code == 0 and len(kept) == 1
    assert [r["reason"] for r in rejects] == ["too_deeply_nested", "too_deeply_nested", "bad_number"]
    assert len(json.dumps(rejects[0]["raw"])) < 1000  # a preview, not the whole monster


def test_corrupt_gzip_is_a_clear_error(tmp_path, capsys):
    data = bytearray(gzip.compress(("\n".join(json.dumps(OK_HH) for _ in range(200)) + "\n").encode()))
    data[len(data) // 2] ^= 0xFF
    code, out, _ = convert(tmp_path, "c.jsonl.gz", bytes(data), "hh-rlhf")
    err = capsys.readouterr().err
    assert code == 2 and "c.jsonl.gz" in err and "corrupt" in err and "Traceback" not in err
    assert not out.exists()
    code, out, _ = convert(tmp_path, "t.jsonl.gz", bytes(data[: len(data) // 2]), "hh-rlhf")  # truncated
    assert code == 2 and "t.jsonl.gz" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_webgpt_non_finite_score_is_rejected(tmp_path, capsys, bad):
    good = {"question": {"full_text": "Q?"}, "answer_0": "a", "answer_1": "b", "score_0": 1.0, "score_1": 0.0}
    line = json.dumps(good).replace('"score_0": 1.0', f'"score_0": {bad}')
    code, out, rej = convert(tmp_path, "w.jsonl", json.dumps(good) + "\n" + line + "\n", "webgpt")
    _, kept, rejects = result(code, out, rej, capsys)
    assert len(kept) == 1 and [r["reason"] for r in rejects] == ["non_finite_score"]
    assert "NaN" not in out.read_text() and rejects[0]["raw"]["score_1"] == 0.0  # strict JSON, values kept


def test_generic_scores_must_be_finite(tmp_path, capsys):
    rows = [{"q": "x", "g": "a", "b": "b", "s": "nan"}, {"q": "x", "g": "a", "b": "c", "s": "1.5"}]
    code, out, rej = convert(tmp_path, "g.jsonl", "\n".join(map(json.dumps, rows)) + "\n", "jsonl",
                             "--map", "prompt=q,chosen=g,rejected=b,chosen_score=s")
    _, kept, rejects = result(code, out, rej, capsys)
    assert [r["reason"] for r in rejects] == ["non_finite_score"] and kept[0]["chosen_score"] == 1.5


def test_csv_quoted_newlines_are_one_row(tmp_path, capsys):
    text = ('prompt,chosen,rejected\n'
            '"line one\nline two",good,bad\n'
            'q2,"he said ""hi""","a, b"\n'
            'q3,"multi\n\nparagraph",x\n')
    code, out, rej = convert(tmp_path, "q.csv", text, "jsonl")
    _, kept, rejects = result(code, out, rej, capsys)
    assert code == 0 and len(kept) == 3 and rejects == []
    assert kept[0]["prompt"][0]["content"] == "line one\nline two"
    assert kept[1]["chosen"] == 'he said "hi"' and kept[1]["rejected"] == "a, b"
    assert kept[2]["chosen"] == "multi\n\nparagraph"


def test_csv_rejects_are_located_at_the_record_start(tmp_path, capsys):
    text = 'prompt,chosen,rejected\nq1,a,b\n"q2\nstill q2",only-two\nq3,"x"y,z\nq4,c,d\n'
    code, out, rej = convert(tmp_path, "q.csv", text, "jsonl")
    _, kept, rejects = result(code, out, rej, capsys)
    assert len(kept) == 2 and [(r["line"], r["reason"]) for r in rejects] == [(3, "wrong_column_count"),
                                                                               (5, "malformed_line")]


def test_tsv_quoted_fields_are_unquoted(tmp_path, capsys):
    text = 'prompt\tchosen\trejected\n"tab\tinside"\t"quoted"\tplain\n'
    code, out, rej = convert(tmp_path, "q.tsv", text, "jsonl")
    _, kept, _ = result(code, out, rej, capsys)
    assert kept[0]["prompt"][0]["content"] == "tab\tinside" and kept[0]["chosen"] == "quoted"


def test_duplicate_csv_header_is_refused(tmp_path, capsys):
    code, out, _ = convert(tmp_path, "d.csv", "prompt,chosen,chosen,rejected\nq,a,b,c\n", "jsonl")
    err = capsys.readouterr().err
    assert code == 2 and "d.csv, line 1" in err and "'chosen' twice" in err and not out.exists()


def test_invalid_utf8_in_csv_is_a_located_reject(tmp_path, capsys):
    data = b"prompt,chosen,rejected\nq,a,b\nq2,\xff\xfe,c\nq3,d,e\n"
    code, out, rej = convert(tmp_path, "u.csv", data, "jsonl")
    _, kept, rejects = result(code, out, rej, capsys)
    assert len(kept) == 2 and [(r["line"], r["reason"]) for r in rejects] == [(3, "invalid_utf8")]


def test_zero_rows_kept_exits_nonzero_with_reasons(tmp_path, capsys):
    code, out, rej = convert(tmp_path, "z.jsonl", '{"question": "q", "good": "a", "bad": "b"}\n', "jsonl")
    err = capsys.readouterr().err
    assert code == 2 and "no rows were kept out of 1" in err and "missing_field 1" in err and "--map" in err
    assert rej.exists()  # the reasons are there to read


def test_unexpected_adapter_error_is_counted_not_fatal(tmp_path, capsys, monkeypatch):
    from jprefs.data import adapters

    def boom(d, sid, ctx):
        if d.get("prompt") == "boom":
            raise ZeroDivisionError("surprise")
        return adapters._gptj(d, sid, ctx)

    monkeypatch.setitem(adapters.SOURCES, "gptj-pairwise",
                        adapters.Adapter("gptj-pairwise", boom, hub_id="Dahoas/synthetic-instruct-gptj-pairwise"))
    rows = [{"prompt": "boom", "chosen": "a", "rejected": "b"}, {"prompt": "q", "chosen": "a", "rejected": "b"}]
    code, out, rej = convert(tmp_path, "a.jsonl", "\n".join(map(json.dumps, rows)) + "\n", "gptj-pairwise")
    _, kept, rejects = result(code, out, rej, capsys)
    assert len(kept) == 1 and rejects[0]["reason"] == "adapter_error" and "ZeroDivisionError" in rejects[0]["error"]
    code, _, _ = convert(tmp_path, "a.jsonl", "\n".join(map(json.dumps, rows)) + "\n", "gptj-pairwise", "--strict")
    assert code == 2 and "a.jsonl, line 1" in capsys.readouterr().err


def test_over_long_line_is_rejected_without_loading_it(tmp_path, capsys, monkeypatch):
    from jprefs.data import io

    monkeypatch.setattr(io, "MAX_LINE_BYTES", 1000)
    long = json.dumps({"prompt": "q", "chosen": "a" * 5000, "rejected": "b"})
    ok = json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"})
    code, out, rej = convert(tmp_path, "l.jsonl", f"{ok}\n{long}\n{ok}x\n", "jprefs")
    _, kept, rejects = result(code, out, rej, capsys)
    assert len(kept) == 1 and [(r["line"], r["reason"]) for r in rejects] == [(2, "line_too_long"), (3, "malformed_json")]


def test_parquet_rows_are_streamed_and_located(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": f"q{i}", "chosen": "a", "rejected": "a" if i == 2500 else "b"} for i in range(3000)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet", row_group_size=700)
    out = tmp_path / "o.jsonl"
    assert run("data", "convert", tmp_path / "p.parquet", "--source", "jsonl", "-o", out, "--json") == 0
    s = json.loads(capsys.readouterr().out)
    rejects = strict_lines(tmp_path / "o.rejects.jsonl")
    assert s["rows_out"] == 2999 and [(r["index"], r["reason"]) for r in rejects] == [(2500, "identical_responses")]
    (tmp_path / "bad.parquet").write_bytes((tmp_path / "p.parquet").read_bytes()[:500])
    assert run("data", "convert", tmp_path / "bad.parquet", "--source", "jsonl", "-o", out) == 2
    assert "bad.parquet" in capsys.readouterr().err


def test_missing_and_directory_inputs(tmp_path, capsys):
    assert run("data", "convert", tmp_path / "nope.jsonl", "--source", "hh-rlhf", "-o", tmp_path / "o.jsonl") == 2
    assert "not found" in capsys.readouterr().err
    assert run("data", "stats", tmp_path) == 2
    assert "is a directory" in capsys.readouterr().err


def test_hh_fixture_rows_still_add_up(tmp_path, capsys):
    code, out, rej = convert(tmp_path, "hh.jsonl", "\n".join(map(json.dumps, HH_ROWS)) + "\n", "hh-rlhf")
    summary, kept, rejects = result(code, out, rej, capsys)
    assert summary["rows_in"] == len(HH_ROWS)


def test_score_plain_rows_with_nan_or_bad_prompt_are_rejected(tmp_path):
    from jprefs.classifiers.score_cli import _plain_row_problem

    assert _plain_row_problem({"response": "a", "x": float("nan")})[0] == "non_finite_number"
    assert _plain_row_problem({"response": "a", "prompt": 5})[0] == "non_string_prompt"
    assert _plain_row_problem({"response": "a", "prompt": [{"role": "user"}]})[0] == "bad_message"
    assert _plain_row_problem({"text": 3})[0] == "no_response"
    assert _plain_row_problem({"response": "a", "prompt": "q", "meta": {"k": [1]}}) is None


def test_rm_data_reader_rejects_bad_meta_and_non_finite(tmp_path):
    from jprefs.classifiers.data import load_rm_data

    p = tmp_path / "pairs.jsonl"
    p.write_text("\n".join([json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}),
                            json.dumps({"prompt": "q", "chosen": "a", "rejected": "c", "meta": 1}),
                            '{"prompt": "q", "chosen": "a", "rejected": "d", "margin": NaN}']) + "\n")
    d = load_rm_data(p)
    assert len(d.records) == 1 and [r["reason"] for r in d.rejects] == ["bad_meta", "non_finite_score"]
    assert d.rows_in == 3
    b = tmp_path / "bin.jsonl"
    b.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 1, "meta": 2}\n{"text": "c", "label": 1.0}\n')
    d = load_rm_data(b)
    assert len(d.records) == 2 and [r["reason"] for r in d.rejects] == ["bad_meta"]
