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


def _fastchat(tmp_path, judge_rows, *, per_model: bool):
    """A FastChat llm_judge benchmark folder: two questions, answers of models a and b (and a malformed
    answer line), the judgments as one file or one file per model."""
    d = tmp_path / "japanese_mt_bench"
    (d / "model_answer").mkdir(parents=True)
    (d / "model_judgment").mkdir()
    _w(d / "question.jsonl", [{"question_id": 1, "category": "stem", "turns": ["水の沸点は?", "では標高3000mでは?"]},
                              {"question_id": 2, "turns": ["猫の鳴き声は?"]}, "{broken"])
    for m, ans in (("a", ["100度です。", "ニャーです。"]), ("b", ["知りません", "ワン"])):
        _w(d / "model_answer" / f"{m}.jsonl",
           [{"question_id": q, "model_id": m, "choices": [{"index": 0, "turns": [t, "二回目"]}]}
            for q, t in zip((1, 2), ans)] + ([{"question_id": 9, "model_id": m, "choices": []}] if m == "b" else []))
    if per_model:
        (d / "model_judgment" / "gpt-4_single").mkdir()
        for m in ("a", "b"):
            _w(d / "model_judgment" / "gpt-4_single" / f"{m}__1turn.jsonl", [r for r in judge_rows if r["model"] == m])
    else:
        _w(d / "model_judgment" / "gpt-4_single.jsonl", judge_rows)
    return d


JUDGED = [{"question_id": 1, "model": "a", "score": 9, "turn": 1, "judge": ["gpt-4", "single-v1"]},
          {"question_id": 1, "model": "b", "score": 2, "turn": 1},
          {"question_id": 2, "model": "a", "score": 8, "turn": 1},
          {"question_id": 2, "model": "b", "score": "x", "turn": 1},       # bad_score (not counted as judged)
          {"question_id": 2, "model": "b", "score": -1, "turn": 1},        # the judge's verdict unparsed: ungraded
          {"question_id": 1, "model": "a", "score": 3, "turn": 1},         # duplicate_judgment (first kept)
          {"question_id": 1, "model": "a", "score": 7, "turn": 2},         # turn_not_1
          {"question_id": 5, "model": "a", "score": 7, "turn": 1},         # unknown_question
          {"question_id": 2, "model": "c", "score": 7, "turn": 1}]         # no_answer


def test_fastchat_single_judgments_joined_with_their_answers(tmp_path, capsys):
    for per_model in (False, True):
        rows = JUDGED if not per_model else [r for r in JUDGED if r["model"] in ("a", "b")]
        d = _fastchat(tmp_path / str(per_model), rows, per_model=per_model)
        out = tmp_path / f"fc-{per_model}.jsonl"
        assert main(["data", "group", "--fastchat", str(d), "--license", "apache-2.0", "-o", str(out), "--json"]) == 0
        s = json.loads(capsys.readouterr().out)
        assert s["answers_in"] == len(rows) == s["answers_grouped"] + s["answers_rejected"]
        assert s["answers_grouped"] == 4 and s["ungraded"] == 1 and s["prompts_out"] == 2
        want = {"duplicate_judgment": 1, "turn_not_1": 1, "unknown_question": 1, "bad_score": 1}
        if not per_model:
            want["no_answer"] = 1
        assert s["rejects_by_reason"] == want
        assert [x.rsplit("/", 1)[1] for x in s["reference_rows_rejected"]] == ["question.jsonl:3", "b.jsonl:3"]
        g = _jsonl(out)
        assert g[0]["prompt"] == [{"role": "user", "content": "水の沸点は?"}]
        assert g[0]["responses"] == ["100度です。", "知りません"] and g[0]["scores"] == [9.0, 2.0]
        assert g[0]["meta"]["models"] == ["a", "b"] and g[1]["scores"] == [8.0, None]
        assert g[0]["license"] == "apache-2.0" and "japanese_mt_bench" in g[0]["source"]
        # then pairs, as the judged sets were built: chosen = the higher score of one question
        p = tmp_path / f"p-{per_model}.jsonl"
        assert main(["data", "rm-pairs", str(out), "--scores", "scores", "--pairs", "all", "-o", str(p)]) == 0
        assert [(x["chosen"], x["rejected"]) for x in _jsonl(p)] == [("100度です。", "知りません")]
    capsys.readouterr()
    assert main(["data", "group", "--fastchat", str(d), "--judge", "gpt-4_pair", "-o", str(tmp_path / "z.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "no judgments gpt-4_pair.jsonl or gpt-4_pair/" in err and "gpt-4_single" in err and "Traceback" not in err
    # both the file and the folder of one judge: say which
    _w(d / "model_judgment" / "gpt-4_single.jsonl", JUDGED[:2])
    assert main(["data", "group", "--fastchat", str(d), "-o", str(tmp_path / "z.jsonl")]) == 2
    assert "--judge gpt-4_single.jsonl for the file or --judge gpt-4_single/" in capsys.readouterr().err
    for judge, n in (("gpt-4_single.jsonl", 2), ("gpt-4_single/", len(rows))):
        assert main(["data", "group", "--fastchat", str(d), "--judge", judge, "-o", str(tmp_path / "z.jsonl"),
                     "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["answers_in"] == n
    assert main(["data", "group", "--fastchat", str(tmp_path), "-o", str(tmp_path / "z.jsonl")]) == 2
    assert "not a FastChat llm_judge data folder" in capsys.readouterr().err
    assert main(["data", "group", "x.jsonl", "--fastchat", str(d), "-o", str(tmp_path / "z.jsonl")]) == 2
    assert "--fastchat reads its own files" in capsys.readouterr().err
    assert main(["data", "group", "-o", str(tmp_path / "z.jsonl")]) == 2
    assert "give the answer FILEs" in capsys.readouterr().err
