"""Inputs that `jprefs data` turned into wrong results without a word: a dotted mapping read as a rank
list, multi-turn answers whose middle turns were dropped, graded answers in file order read as a rank
list (worse answers chosen), scores that contradict the preference, and a rank list merged beside the
pairs it states. Each is now kept as meant or refused with its reason; the counts add up."""

import json

import pytest

from jprefs.cli import main
from jprefs.data.adapters import convert
from jprefs.data.merge import merge_records
from jprefs.data.schema import PreferencePair, RankList, SchemaError
from tests.data.fixtures import write_jsonl


def run(*argv):
    return main([str(a) for a in argv])


def read_jsonl(p):
    return [json.loads(x) for x in open(p, encoding="utf-8") if x.strip()]


def U(c):
    return {"role": "user", "content": c}


def A(c):
    return {"role": "assistant", "content": c}


def test_a_dotted_mapped_pair_beside_a_responses_column_is_a_pair(tmp_path):
    # `responses` holds every candidate in no particular order; read as a rank list its first was "best"
    src = write_jsonl(tmp_path / "j.jsonl", [{"q": "日本の首都は?", "pair": {"good": "東京です", "bad": "大阪です"},
                                              "responses": ["大阪です", "東京です", "京都です"]}])
    res = convert(src, "jsonl", mapping="prompt=q,chosen=pair.good,rejected=pair.bad")
    (rec,) = res.records
    assert isinstance(rec, PreferencePair) and (rec.chosen, rec.rejected) == ("東京です", "大阪です")


def test_conversation_answers_keep_the_whole_conversation_as_the_prompt(tmp_path):
    conv = [U("日本の首都は?"), A("東京です。"), U("人口は?")]
    rows = [{"prompt": "日本の首都は?", "chosen": conv + [A("約1400万人です。")], "rejected": conv + [A("知りません。")]},
            {"chosen": conv + [A("約1400万人です。")], "rejected": conv + [A("知りません。")]},     # implicit prompt
            {"prompt": "日本の首都は?", "chosen": conv + [A("a")], "rejected": [U("日本の首都は?"), A("京都"), U("人口は?"), A("b")]},
            {"prompt": "別の質問", "chosen": conv + [A("a")], "rejected": conv + [A("b")]},
            {"prompt": "日本の首都は?", "chosen": conv + [A("a")], "rejected": "b"},
            {"prompt": "日本の首都は?", "chosen": [A("a")], "rejected": [A("b")]}]                # answers only
    res = convert(write_jsonl(tmp_path / "c.jsonl", rows), "jsonl")
    assert res.rows_in == res.rows_out + len(res.rejects) == 6
    assert [m.to_dict() for m in res.records[0].prompt] == conv and res.records[0].chosen == "約1400万人です。"
    assert [m.to_dict() for m in res.records[1].prompt] == conv
    assert [m.to_dict() for m in res.records[2].prompt] == [U("日本の首都は?")]
    assert [(r["line"], r["reason"]) for r in res.rejects] == [
        (3, "diverges_before_final_turn"), (4, "prompt_mismatch"), (5, "diverges_before_final_turn")]


def test_graded_answers_in_file_order_are_not_read_as_a_rank_list(tmp_path, capsys):
    # `data group` output: responses in file order with their grades; export used to make "bad" chosen
    for name, rows in {"m1.jsonl": [{"Q": "Q1", "A": "悪い答え", "s": 2}, {"Q": "Q2", "A": "同点1", "s": 5}],
                       "m2.jsonl": [{"Q": "Q1", "A": "良い答え", "s": 9}, {"Q": "Q2", "A": "同点2", "s": 5}]}.items():
        write_jsonl(tmp_path / name, rows)
    graded = tmp_path / "graded.jsonl"
    assert run("data", "group", tmp_path / "m1.jsonl", tmp_path / "m2.jsonl", "--map", "prompt=Q,response=A,score=s",
               "-o", graded) == 0
    assert run("data", "export", graded, "--format", "trl", "-o", tmp_path / "trl.jsonl") == 2
    assert "scores_out_of_order" in capsys.readouterr().err and not (tmp_path / "trl.jsonl").exists()
    res = convert(graded, "jprefs")
    assert [r["reason"] for r in res.rejects] == ["scores_out_of_order"] * 2 and not res.records
    assert RankList.create("q", ["a", "b", "c"], scores=[3, 2, 1]).scores == [3.0, 2.0, 1.0]
    with pytest.raises(SchemaError):
        RankList.create("q", ["a", "b"], scores=[1, 1])                   # a tie is no order


def test_scores_that_contradict_the_preference_are_rejected(tmp_path):
    rows = [{"q": "一", "good": "a", "bad": "b", "sg": 1, "sb": 7},       # the score columns mapped the wrong way
            {"q": "二", "good": "a", "bad": "b", "sg": 7, "sb": 1},
            {"q": "三", "good": "a", "bad": "b", "sg": 4, "sb": 4}]
    res = convert(write_jsonl(tmp_path / "s.jsonl", rows), "jsonl",
                  mapping="prompt=q,chosen=good,rejected=bad,chosen_score=sg,rejected_score=sb")
    assert [r["line"] for r in res.rejects] == [1] and res.rejects[0]["reason"] == "scores_contradict_preference"
    assert [r.chosen_score for r in res.records] == [7.0, 4.0]
    res = convert(write_jsonl(tmp_path / "m.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b", "margin": -2}]),
                  "jprefs")
    assert [r["reason"] for r in res.rejects] == ["scores_contradict_preference"]


def test_merge_knows_the_pairs_a_rank_list_states(tmp_path):
    R = lambda *r: RankList.create("q", list(r))           # noqa: E731
    P = lambda c, r: PreferencePair.create("q", c, r)     # noqa: E731
    recs = [R("A", "B", "C"), P("A", "C"), P("C", "A"), R("B", "A"), R("A", "C"), R("A", "B", "C", "D")]
    res = merge_records([("a.jsonl", list(enumerate(recs, start=1)))])
    assert [(r["line"], r["reason"]) for r in res.rejects] == [(2, "duplicate"), (3, "contradicts"),
                                                                (4, "contradicts"), (5, "duplicate")]
    assert len(res.records) == 2 and res.rows_in == len(res.records) + len(res.rejects)
    # a rank list and the file of its expanded pairs (export --format jsonl) are the same annotations
    ranks = write_jsonl(tmp_path / "r.jsonl", [R("A", "B", "C").to_dict()])
    assert run("data", "export", ranks, "--format", "jsonl", "-o", tmp_path / "pairs.jsonl") == 0
    assert run("data", "merge", ranks, tmp_path / "pairs.jsonl", "-o", tmp_path / "m.jsonl") == 0
    assert len(read_jsonl(tmp_path / "m.jsonl")) == 1 and len(read_jsonl(tmp_path / "m.rejects.jsonl")) == 3
