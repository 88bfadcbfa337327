"""Inputs whose meaning the data layer used to change without a word: a mapping overridden by another
column, a pair read as a rank list, blank licences counted as known, --license ignored, a stray quote
joining lines, a rank list's middle answer labelled both ways, a mapping ignored. Each is now kept as
meant, or refused with its reason; the counts add up."""

import json

import pytest

from jprefs.cli import main
from tests.data.fixtures import write_jsonl


def run(*argv):
    return main([str(a) for a in argv])


def read_jsonl(p):
    return [json.loads(x) for x in open(p, encoding="utf-8") if x.strip()]


def test_a_mapped_pair_is_a_pair_even_beside_a_responses_column(tmp_path):
    src = write_jsonl(tmp_path / "j.jsonl", [{"question": "日本の首都は?", "good": "東京です", "bad": "大阪です",
                                              "responses": ["x", "y", "z"]}])
    out = tmp_path / "o.jsonl"
    assert run("data", "convert", src, "--source", "jsonl", "--map", "prompt=question,chosen=good,rejected=bad",
               "--license", "mit", "-o", out) == 0
    (rec,) = read_jsonl(out)
    assert (rec["chosen"], rec["rejected"]) == ("東京です", "大阪です") and "responses" not in rec


def test_a_canonical_row_with_a_pair_and_a_rank_list_is_refused_as_ambiguous(tmp_path, capsys):
    rows = [{"prompt": "日本の首都は?", "chosen": "東京", "rejected": "大阪", "responses": ["大阪", "東京", "京都"],
             "license": "mit"},
            {"prompt": "二", "chosen": "良い", "rejected": "悪い", "license": "mit"}]
    src = write_jsonl(tmp_path / "k.jsonl", rows)
    out = tmp_path / "c.jsonl"
    assert run("data", "convert", src, "--source", "jprefs", "-o", out) == 0
    assert len(read_jsonl(out)) == 1
    (rej,) = read_jsonl(tmp_path / "c.rejects.jsonl")
    assert rej["reason"] == "ambiguous_record" and rej["line"] == 1


@pytest.mark.parametrize("blank", ["", " ", "\t"])
def test_a_blank_licence_is_an_unknown_one(tmp_path, capsys, blank):
    src = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b", "license": blank}])
    assert run("data", "merge", src, "-o", tmp_path / "m.jsonl", "--require-license") == 2
    assert "unknown" in capsys.readouterr().err.lower()
    assert run("data", "export", src, "--format", "trl", "-o", tmp_path / "t.jsonl", "--require-license") == 2
    assert run("data", "merge", src, "-o", tmp_path / "m2.jsonl") == 0
    assert read_jsonl(tmp_path / "m2.jsonl")[0]["license"] == "unknown"


def test_license_fills_canonical_rows_that_name_none_and_keeps_their_own(tmp_path):
    src = write_jsonl(tmp_path / "i.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"},
                                             {"prompt": "r", "chosen": "c", "rejected": "d", "license": "cc0-1.0"}])
    out = tmp_path / "o.jsonl"
    assert run("data", "convert", src, "--source", "jprefs", "--license", "mit", "--require-license", "-o", out) == 0
    assert [r["license"] for r in read_jsonl(out)] == ["mit", "cc0-1.0"]


def test_a_score_too_large_for_a_float_rejects_its_row_not_the_run(tmp_path):
    big = int("9" * 400)
    a = write_jsonl(tmp_path / "modelA.jsonl", [{"Question": "q1", "ModelAnswer": "x", "score": big},
                                                 {"Question": "q2", "ModelAnswer": "y", "score": 5}])
    b = write_jsonl(tmp_path / "modelB.jsonl", [{"Question": "q1", "ModelAnswer": "z", "score": 3},
                                                 {"Question": "q2", "ModelAnswer": "w", "score": 2}])
    out = tmp_path / "g.jsonl"
    assert run("data", "group", a, b, "--map", "prompt=Question,response=ModelAnswer,score=score", "-o", out) == 0
    rej = read_jsonl(tmp_path / "g.rejects.jsonl")
    assert [r["reason"] for r in rej] == ["bad_score"] and "characters" in rej[0]["error"]
    rm = write_jsonl(tmp_path / "rm.jsonl", [{"prompt": "p", "responses": ["a", "b"], "scores": [big, 1]},
                                              {"prompt": "p2", "responses": ["c", "d"], "scores": [2, 1]}])
    assert run("data", "rm-pairs", rm, "--scores", "scores", "-o", tmp_path / "r.jsonl") == 0
    assert len(read_jsonl(tmp_path / "r.jsonl")) == 1
    assert [r["reason"] for r in read_jsonl(tmp_path / "r.rejects.jsonl")] == ["bad_scores"]


def test_a_rank_list_tsv_is_plain_text_a_quote_does_not_join_lines(tmp_path):
    f = tmp_path / "q.tsv"
    f.write_text('"引用で始まる質問\t良い\t悪い\n普通の質問"\t良い答え\t悪い答え\n三番目\tA\tB\n', encoding="utf-8")
    out = tmp_path / "o.jsonl"
    assert run("data", "convert", f, "--source", "ranklist", "--license", "mit", "-o", out) == 0
    recs = read_jsonl(out)
    assert [r["prompt"][-1]["content"] for r in recs] == ['"引用で始まる質問', '普通の質問"', "三番目"]


def test_map_id_reaches_rank_lists_and_a_map_a_fixed_adapter_ignores_is_refused(tmp_path, capsys):
    src = write_jsonl(tmp_path / "l.jsonl", [{"q": "質問", "resps": ["一", "二"], "qid": "Q-42"}])
    out = tmp_path / "o.jsonl"
    assert run("data", "convert", src, "--source", "jsonl", "--map", "prompt=q,responses=resps,id=qid",
               "--license", "mit", "-o", out) == 0
    assert read_jsonl(out)[0]["source_id"] == "Q-42"
    g = write_jsonl(tmp_path / "g.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "c", "instruction": "d"}])
    assert run("data", "convert", g, "--source", "gptj-pairwise", "--map", "prompt=instruction",
               "-o", tmp_path / "g_out.jsonl") == 2
    assert "would ignore the mapping" in capsys.readouterr().err


def test_an_empty_optional_score_cell_is_no_score(tmp_path):
    f = tmp_path / "e.csv"
    f.write_text("q,good,bad,cs\n質問1,良い,悪い,3\n質問2,良い2,悪い2,\n", encoding="utf-8")
    out = tmp_path / "o.jsonl"
    assert run("data", "convert", f, "--source", "jsonl", "--map", "prompt=q,chosen=good,rejected=bad,chosen_score=cs",
               "--license", "mit", "-o", out) == 0
    recs = read_jsonl(out)
    assert [r.get("chosen_score") for r in recs] == [3.0, None]


def test_demo_json_is_json_and_a_missing_file_with_a_slash_is_not_a_hub_id(tmp_path, capsys):
    capsys.readouterr()
    assert run("data", "demo", "-o", tmp_path / "d", "--json") == 0
    assert "convert" in json.loads(capsys.readouterr().out)
    assert run("data", "convert", "sub/missing.jsonl", "--source", "hh-rlhf", "-o", tmp_path / "m.jsonl") == 2
    assert "input file not found: sub/missing.jsonl" in capsys.readouterr().err


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_a_rank_lists_expanded_pairs_label_each_answer_once_as_the_rank_list_does(k):
    """jprefs translate translates a rank list as its pairs and wrote binary / trl-unpaired rows per pair:
    with three answers the middle one was both chosen and rejected."""
    from jprefs.data.export import binary_examples
    from jprefs.data.schema import RankList

    rl = RankList.create("質問", [f"答え{i}" for i in range(k)], license="mit")
    from_pairs = [(b.response, b.label, b.id) for b in binary_examples(rl.to_pairs())]
    assert from_pairs == [(b.response, b.label, b.id) for b in rl.to_binary()]
    assert len({r for r, _, _ in from_pairs}) == len(from_pairs) == 2 * (k // 2)


def test_a_table_file_given_to_a_jsonl_command_is_one_clear_error(tmp_path, capsys):
    src = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b", "license": "mit"}])
    assert run("data", "export", src, "--format", "jsonl", "-o", tmp_path / "p.parquet") == 0
    capsys.readouterr()
    for cmd in (["split", tmp_path / "p.parquet", "-o", tmp_path / "s"],
                ["merge", tmp_path / "p.parquet", "-o", tmp_path / "m.jsonl"],
                ["stats", tmp_path / "p.parquet"]):
        assert run("data", *cmd) == 2
        err = capsys.readouterr().err
        assert "reads canonical JSONL, not a table file" in err and "--source jprefs" in err, cmd
