"""``jprefs data group``: one graded answer per row (shaberi's layout: one file per model) -> one row per
prompt, the input of ``rm-pairs --scores``; every answer row grouped or rejected with its reason."""

from __future__ import annotations

import json

from jprefs.cli import main


def _w(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def _jsonl(p):
    return [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines()]


def test_shaberi_layout_grouped_then_paired(tmp_path, capsys):
    a = _w(tmp_path / "org__model-a.v1.json", [            # JSON lines under .json, as shaberi writes them
        {"Question": "富士山の高さは?", "ModelAnswer": "3,776メートルです。", "score": "5"},
        {"Question": "日本の首都は?", "ModelAnswer": "東京です。", "score": "4.0"},
        {"Question": "壊れた行", "ModelAnswer": None, "score": "1"},                # bad_response
    ])
    b = _w(tmp_path / "model-b.json", [
        {"Question": "富士山の高さは？", "ModelAnswer": "わかりません。", "score": 1},   # the same prompt after NFKC
        {"Question": "日本の首都は?", "ModelAnswer": "大阪です。", "score": None},      # ungraded
        {"Question": "日本の首都は?", "ModelAnswer": "京都", "score": "high"},          # bad_score
        {"ModelAnswer": "x", "score": 1},                                               # missing_field
        "not json",                                                                     # malformed_json
        {"Question": "q", "ModelAnswer": "x", "score": float("inf")},                  # bad_score (not finite)
    ])
    out = tmp_path / "graded.jsonl"
    assert main(["data", "group", str(a), str(b), "--map", "prompt=Question,response=ModelAnswer,score=score",
                 "--license", "cc-by-sa-4.0", "-o", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["answers_in"], s["answers_grouped"], s["answers_rejected"], s["ungraded"], s["prompts_out"]) == (9, 4, 5, 1, 2)
    assert s["rejects_by_reason"] == {"bad_response": 1, "bad_score": 2, "malformed_json": 1, "missing_field": 1}
    rows = _jsonl(out)
    assert [r["prompt"] for r in rows] == [[{"role": "user", "content": "富士山の高さは?"}],
                                           [{"role": "user", "content": "日本の首都は?"}]]
    assert rows[0]["responses"] == ["3,776メートルです。", "わかりません。"] and rows[0]["scores"] == [5.0, 1.0]
    assert rows[0]["meta"]["models"] == ["org__model-a.v1", "model-b"]      # the file names, suffix cut
    assert rows[0]["meta"]["files"] == [str(a), str(b)]
    assert rows[1]["scores"] == [4.0, None] and rows[0]["license"] == "cc-by-sa-4.0"
    rej = _jsonl(tmp_path / "graded.rejects.jsonl")
    assert [(r["file"].rsplit("/", 1)[1], r["line"], r["reason"]) for r in rej] == [
        ("org__model-a.v1.json", 3, "bad_response"), ("model-b.json", 3, "bad_score"), ("model-b.json", 4, "missing_field"),
        ("model-b.json", 5, "malformed_json"), ("model-b.json", 6, "bad_score")]
    # the same inputs give the same bytes; rm-pairs --scores reads the rows
    again = tmp_path / "again.jsonl"
    assert main(["data", "group", str(a), str(b), "--map", "prompt=Question,response=ModelAnswer,score=score",
                 "--license", "cc-by-sa-4.0", "-o", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()
    assert main(["data", "rm-pairs", str(out), "--scores", "scores", "--pairs", "all", "-o", str(tmp_path / "p.jsonl")]) == 0
    pairs = _jsonl(tmp_path / "p.jsonl")            # the capital row has one graded answer: rejected there
    assert [r["reason"] for r in _jsonl(tmp_path / "p.rejects.jsonl")] == ["fewer_than_2_responses"]
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("3,776メートルです。", "わかりません。")]
    assert pairs[0]["license"] == "cc-by-sa-4.0"


def test_model_field_and_bad_options(tmp_path, capsys):
    f = _w(tmp_path / "all.jsonl", [{"q": {"text": "問"}, "a": "答え", "s": 3, "m": "x"},
                                    {"q": {"text": "問"}, "a": "別の答え", "s": 1, "m": 7}])
    out = tmp_path / "g.jsonl"
    assert main(["data", "group", str(f), "--map", "prompt=q.text,response=a,score=s,model=m", "-o", str(out)]) == 0
    (row,) = _jsonl(out)
    assert row["meta"]["models"] == ["x", "7"] and row["license"] == "unknown"
    capsys.readouterr()
    assert main(["data", "group", str(f), "--map", "prompt=q.text,response=a", "-o", str(out)]) == 2
    assert "--map lacks score" in capsys.readouterr().err
    assert main(["data", "group", str(f), "--map", "prompt=q,respons=a,score=s", "-o", str(out)]) == 2
    assert "Did you mean 'response'" in capsys.readouterr().err
    assert main(["data", "group", str(tmp_path / "none.json"), "--map", "prompt=q,response=a,score=s",
                 "-o", str(tmp_path / "n.jsonl")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["data", "group", str(f), "--map", "prompt=nope,response=a,score=s", "-o", str(tmp_path / "z.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "no answer rows grouped from 2 rows (missing_field 2)" in err and "Traceback" not in err
