"""The MT-bench-style pairwise judgment adapters (``fastchat-pairwise``, ``mt-bench-human``): every
verdict shape FastChat's llm_judge and the lmsys Hub release write, each kept or rejected with its reason."""

import json

import pytest

from jprefs.data.adapters import convert, get_adapter
from jprefs.errors import DataError
from tests.data.fixtures import write_jsonl


def _fc(g1, g2, **kw):
    row = {"question_id": 7, "model_1": "m-a", "model_2": "m-b", "question": "時間管理のコツは？",
           "answer_1": "予定を書き出す。", "answer_2": "がんばる。", "g1_winner": g1, "g2_winner": g2,
           "judge_model": "gpt-4", "judge_prompt": "pair"}
    row.update(kw)
    return row


FASTCHAT_ROWS = [
    _fc("model_1", "model_1"),                                   # 0 kept: answer_1 wins both orders
    _fc("model_2", "model_2", question=["質問？", "続き？"]),      # 1 kept: answer_2 wins; question as turns
    _fc("model_1", "model_2"),                                   # 2 inconsistent
    _fc("tie", "tie"),                                           # 3 tie
    _fc("tie", "model_1"),                                       # 4 a tie in one game: a tie
    _fc("error", "model_1"),                                     # 5 judge error
    {k: v for k, v in _fc("model_1", "model_1").items() if k not in ("answer_1", "answer_2")},   # 6 FastChat's own
    _fc("model_1", "model_1", turn=2),                           # 7 turn 2 on plain strings
    _fc(1, "model_1"),                                           # 8 bad winner type
    _fc("model_1", "model_1", answer_2="予定を書き出す。"),          # 9 identical answers
    _fc("model_1", "model_1", answer_1="   "),                   # 10 empty answer
    {k: v for k, v in _fc("x", "x").items() if k not in ("g1_winner", "g2_winner")} | {"winner": "model_2"},  # 11 one game
]


def test_fastchat_pairwise_each_case(tmp_path):
    res = convert(write_jsonl(tmp_path / "j.jsonl", FASTCHAT_ROWS), "fastchat-pairwise")
    assert res.rows_in == res.rows_out + len(res.rejects) == len(FASTCHAT_ROWS)
    got = {r["line"] - 1: r["reason"] for r in res.rejects}
    assert got == {2: "inconsistent_verdict", 3: "tie", 4: "tie", 5: "judge_error", 6: "no_inline_answers",
                   7: "multi_turn_inline", 8: "bad_winner", 9: "identical_responses", 10: "empty_answer_1"}
    a, b, c = res.records
    assert a.prompt[0].content == "時間管理のコツは？"
    assert (a.chosen, a.rejected) == ("予定を書き出す。", "がんばる。")
    assert a.meta == {"turn": 1, "question_id": "7", "models": ["m-a", "m-b"], "judge": "gpt-4"}
    assert (b.chosen, b.rejected) == ("がんばる。", "予定を書き出す。") and b.meta["models"] == ["m-b", "m-a"]
    assert b.prompt[0].content == "質問？"
    assert c.chosen == "がんばる。"                                 # the single-game `winner` layout
    assert {r.license for r in res.records} == {"unknown"}        # a format, not a data set: --license sets it
    assert res.records[0].source == "j.jsonl"
    # the message names the fix for FastChat's own files
    (no_ans,) = [r for r in res.rejects if r["reason"] == "no_inline_answers"]
    assert "model_answer/" in no_ans["error"] and "--answers DATA_DIR" in no_ans["error"]


def _conv(q1, a1, q2=None, a2=None):
    c = [{"role": "user", "content": q1}, {"role": "assistant", "content": a1}]
    if q2 is not None:
        c += [{"role": "user", "content": q2}, {"role": "assistant", "content": a2}]
    return c


HUB_ROWS = [
    {"question_id": 81, "model_a": "gpt-4", "model_b": "llama-13b", "winner": "model_b", "judge": "expert_3",
     "conversation_a": _conv("Q1", "A-good", "Q2", "A2"), "conversation_b": _conv("Q1", "B-good", "Q2", "B2"),
     "turn": 1},                                                                           # 0 kept, b wins
    {"question_id": 81, "model_a": "gpt-4", "model_b": "llama-13b", "winner": "model_a", "judge": "gpt4_pair",
     "conversation_a": _conv("Q1", "A", "Q2", "A2"), "conversation_b": _conv("Q1", "B", "Q2", "B2"),
     "turn": 2},                                                                           # 1 different turn 1
    {"question_id": 82, "model_a": "x", "model_b": "y", "winner": "model_a", "judge": "author_0",
     "conversation_a": _conv("Q1", "same", "Q2", "X2"), "conversation_b": _conv("Q1", "same", "Q2", "Y2"),
     "turn": 2},                                                                           # 2 kept, 3-message prompt
    {"question_id": 83, "model_a": "x", "model_b": "y", "winner": "tie (bothbad)", "judge": "author_0",
     "conversation_a": _conv("Q", "a"), "conversation_b": _conv("Q", "b"), "turn": 1},   # 3 tie
    {"question_id": 84, "model_a": "x", "model_b": "y", "winner": "model_a", "judge": "author_0",
     "conversation_a": _conv("Q", "a"), "conversation_b": _conv("Q", "b"), "turn": 2},   # 4 no turn 2
    {"question_id": 85, "model_a": "x", "model_b": "y", "winner": "model_a", "judge": "author_0",
     "conversation_a": "not a list", "conversation_b": _conv("Q", "b"), "turn": 1},      # 5 bad conversation
    {"question_id": 86, "model_a": "x", "model_b": "y", "winner": "model_a", "judge": "author_0",
     "conversation_a": _conv("Q", "a"), "conversation_b": _conv("Q", "b"), "turn": 0},   # 6 bad turn
    {"question_id": 87, "model_a": "x", "model_b": "y", "winner": "inconsistent", "judge": "gpt4_pair",
     "conversation_a": _conv("Q", "a"), "conversation_b": _conv("Q", "b"), "turn": 1},   # 7 inconsistent
]


def test_mt_bench_hub_layout_each_case(tmp_path):
    res = convert(write_jsonl(tmp_path / "h.jsonl", HUB_ROWS), "lmsys/mt_bench_human_judgments")
    assert res.rows_in == res.rows_out + len(res.rejects) == len(HUB_ROWS)
    got = {r["line"] - 1: r["reason"] for r in res.rejects}
    assert got == {1: "no_shared_prompt", 3: "tie", 4: "missing_turn", 5: "bad_conversation_a", 6: "bad_turn",
                   7: "inconsistent_verdict"}
    a, b = res.records
    assert [m.content for m in a.prompt] == ["Q1"] and (a.chosen, a.rejected) == ("B-good", "A-good")
    assert a.meta["models"] == ["llama-13b", "gpt-4"] and a.meta["judge"] == "expert_3"
    assert [m.role for m in b.prompt] == ["user", "assistant", "user"] and b.chosen == "X2" and b.rejected == "Y2"
    assert b.meta["turn"] == 2
    # the Hub release is a data set: its licence and id are the provenance, whatever the file is called
    assert {(r.license, r.source) for r in res.records} == {("cc-by-4.0", "lmsys/mt_bench_human_judgments")}


def test_judgment_aliases_and_strict(tmp_path):
    assert get_adapter("fastchat").name == get_adapter("mt-bench").name == "fastchat-pairwise"
    assert get_adapter("mt-bench-human").hub_id == "lmsys/mt_bench_human_judgments"
    path = write_jsonl(tmp_path / "j.jsonl", FASTCHAT_ROWS)
    with pytest.raises(DataError) as e:
        convert(path, "fastchat-pairwise", strict=True)
    assert "j.jsonl, line 3" in str(e.value) and "other order" in str(e.value)


def test_cli_convert_judgments_then_train_rm_reads_them(tmp_path):
    """`jprefs data convert --source fastchat-pairwise --license` -> a canonical file that train-rm's
    reader loads, the licence recorded per row, the rejects file and the counts adding up."""
    from jprefs.classifiers.data import load_rm_data
    from jprefs.cli import main

    src = write_jsonl(tmp_path / "judgments.jsonl", FASTCHAT_ROWS)
    out = tmp_path / "pairs.jsonl"
    assert main(["data", "convert", str(src), "--source", "fastchat-pairwise", "--license", "apache-2.0",
                 "-o", str(out), "--json"]) == 0
    recs = load_rm_data(out).records
    assert len(recs) == 3 and {r.license for r in recs} == {"apache-2.0"}
    rejects = [json.loads(line) for line in (tmp_path / "pairs.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(recs) + len(rejects) == len(FASTCHAT_ROWS)


def test_mt_bench_human_from_the_hub_reads_its_human_split(tmp_path, monkeypatch):
    """The Hub id goes through `datasets.load_dataset` with the data set's own default split (it has
    no "train"); an explicit split wins. Offline, a local file stands in for the download."""
    import datasets

    data = write_jsonl(tmp_path / "h.jsonl", HUB_ROWS[:1])
    calls = []
    real_load = datasets.load_dataset

    def fake_load(path, name=None, split=None, revision=None, **kw):
        calls.append((path, split))
        return real_load("json", data_files=str(data), split="train")

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    res = convert("lmsys/mt_bench_human_judgments", "mt-bench-human")
    res2 = convert("lmsys/mt_bench_human_judgments", "mt-bench-human", split="gpt4_pair")
    assert calls == [("lmsys/mt_bench_human_judgments", "human"), ("lmsys/mt_bench_human_judgments", "gpt4_pair")]
    assert res.rows_out == res2.rows_out == 1 and res.records[0].license == "cc-by-4.0"


def test_fastchat_own_pair_files_joined_with_answers(tmp_path, capsys):
    """FastChat's own ``model_judgment/gpt-4_pair.jsonl`` names the answers by id: ``--answers DATA_DIR``
    fills in the question and both answers (turn 1); an unknown question or a model without an answer is
    rejected with its reason, a turn-2 verdict too; the counts add up; without --answers the rows say how."""
    from jprefs.cli import main

    d = tmp_path / "japanese_mt_bench"
    (d / "model_answer").mkdir(parents=True)
    write_jsonl(d / "question.jsonl", [{"question_id": 7, "turns": ["時間管理のコツは？", "続けて"]}])
    for m, a in (("m-a", "予定を書き出す。"), ("m-b", "がんばる。")):
        write_jsonl(d / "model_answer" / f"{m}.jsonl",
                    [{"question_id": 7, "model_id": m, "choices": [{"index": 0, "turns": [a, "二"]}]}])
    own = [{k: v for k, v in _fc(*w).items() if k not in ("answer_1", "answer_2", "question")}
           for w in (("model_1", "model_1"), ("model_2", "model_2"), ("model_1", "model_2"))]
    own += [{**own[0], "question_id": 8}, {**own[0], "model_2": "m-z"}, {**own[0], "turn": 2}]
    src = write_jsonl(tmp_path / "gpt-4_pair.jsonl", own)
    out = tmp_path / "pairs.jsonl"
    assert main(["data", "convert", str(src), "--source", "fastchat-pairwise", "--answers", str(d), "--license",
                 "apache-2.0", "-o", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["rows_in"] == 6 == s["rows_out"] + s["rows_rejected"] and s["rows_out"] == 2
    assert s["rejects_by_reason"] == {"inconsistent_verdict": 1, "unknown_question": 1, "no_answer": 1,
                                      "multi_turn_inline": 1}
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["chosen"], r["rejected"]) for r in rows] == [("予定を書き出す。", "がんばる。"), ("がんばる。", "予定を書き出す。")]
    assert rows[0]["prompt"] == [{"role": "user", "content": "時間管理のコツは？"}]
    assert main(["data", "convert", str(src), "--source", "fastchat-pairwise", "-o", str(out)]) == 2
    assert "--answers DATA_DIR" in (tmp_path / "pairs.rejects.jsonl").read_text(encoding="utf-8")
    capsys.readouterr()
    assert main(["data", "convert", str(src), "--source", "jsonl", "--answers", str(d), "-o", str(out)]) == 2
    assert "--answers joins FastChat judgments" in capsys.readouterr().err
    assert main(["data", "convert", str(src), "--source", "fastchat", "--answers", str(tmp_path), "-o", str(out)]) == 2
    assert "not a FastChat llm_judge data folder" in capsys.readouterr().err
