import gzip

import pytest

from jprefs.data.adapters import SOURCES, convert, get_adapter, parse_mapping
from jprefs.data.schema import PreferencePair, RankList
from jprefs.errors import DataError, JprefsError
from tests.conftest import shared_file
from tests.data.fixtures import (GPTJ_ROWS, HH_EXPECTED_REASONS, HH_ROWS, SUMMARIZE_ROWS, WEBGPT_ROWS,
                                 write_jsonl)


def _accounting(res):
    assert res.rows_in == res.rows_out + len(res.rejects)


def test_hh_rlhf_each_case(tmp_path):
    res = convert(write_jsonl(tmp_path / "hh.jsonl", HH_ROWS), "hh-rlhf")
    _accounting(res)
    got = {r["line"] - 1: r["reason"] for r in res.rejects}
    assert got == HH_EXPECTED_REASONS
    ok = {int(r.source_id) - 1: r for r in res.records}
    assert set(ok) == {0, 1, 6}
    assert ok[0].prompt[0].content == "Hi?" and ok[0].chosen == "Hello! How can I help?" and ok[0].rejected == "Go away."
    assert [m.role for m in ok[1].prompt] == ["user", "assistant", "user"]
    assert ok[1].chosen == "Good D." and ok[1].rejected == "Bad D."
    assert ok[6].prompt[0].content == "First.\n\nSecond?" and len(ok[6].prompt) == 1
    assert res.notes["merged_consecutive_turns"] == 1
    assert all(r.license == "mit" and r.source == "Anthropic/hh-rlhf" for r in res.records)
    # the raw row is kept in the rejects for inspection
    assert all("raw" in r and r["error"] for r in res.rejects)


def test_hh_rlhf_strict_stops_with_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "hh.jsonl", HH_ROWS)
    with pytest.raises(DataError) as e:
        convert(path, "hh-rlhf", strict=True)
    assert "hh.jsonl, line 3" in str(e.value) and "identical" in str(e.value)


def test_webgpt(tmp_path):
    res = convert(write_jsonl(tmp_path / "w.jsonl", WEBGPT_ROWS), "webgpt")
    _accounting(res)
    assert [r["reason"] for r in res.rejects] == ["tie", "empty_answer_0", "non_numeric_score"]
    (p,) = res.records
    assert p.prompt[0].content == "Why?" and p.chosen == "Because B." and p.rejected == "Because A."
    assert (p.chosen_score, p.rejected_score) == (0.5, -0.5)
    assert p.license == "unknown"


def test_gptj(tmp_path):
    res = convert(write_jsonl(tmp_path / "g.jsonl", GPTJ_ROWS), "gptj-pairwise")
    _accounting(res)
    assert [r["reason"] for r in res.rejects] == ["missing_rejected", "identical_responses"]
    assert res.records[0].chosen == "An apple."


def test_summarize(tmp_path):
    res = convert(write_jsonl(tmp_path / "s.jsonl", SUMMARIZE_ROWS), "summarize")
    _accounting(res)
    assert [r["reason"] for r in res.rejects] == ["bad_choice"]
    a, b = res.records
    assert a.prompt[0].content == "SUBREDDIT: r/cats\nTITLE: Cat\nPOST: Long post about my cat."
    assert a.chosen == "Bad." and a.rejected == "Cat post summary."  # choice=1 picks summaries[1]
    assert a.meta["confidence"] == 7 and a.meta["policies"] == ["sup", "ref"]
    assert b.prompt[0].content == "TITLE: News\nPOST: An article." and b.chosen == "Good summary."


def test_generic_mapping_nested_and_formats(tmp_path):
    rows = [{"q": {"text": "質問1"}, "good": "良い", "bad": "悪い", "lic": "cc-by-4.0"},
            {"q": {"text": "質問2"}, "good": ["not", "a", "string"], "bad": "悪い"},
            {"q": {"text": "質問3"}, "good": "良い"}]
    res = convert(write_jsonl(tmp_path / "g.jsonl", rows), "jsonl",
                  mapping="prompt=q.text,chosen=good,rejected=bad,license=lic")
    _accounting(res)
    assert res.records[0].prompt[0].content == "質問1" and res.records[0].license == "cc-by-4.0"
    assert [r["reason"] for r in res.rejects] == ["non_string_chosen", "missing_field"]
    # CSV, TSV and Parquet through the same mapping
    (tmp_path / "g.csv").write_text('question,good,bad\n"質問, 1",良い,悪い\n質問2,x\n', encoding="utf-8")
    res = convert(tmp_path / "g.csv", "jsonl", mapping="prompt=question,chosen=good,rejected=bad", license="mit")
    _accounting(res)
    assert res.records[0].prompt[0].content == "質問, 1" and res.records[0].license == "mit"
    assert res.rejects[0]["reason"] == "wrong_column_count" and res.rejects[0]["line"] == 3
    # a row's own `license` column is kept when --map names only the other fields (it was dropped)
    rows = [{"question": "質問", "good": "良い", "bad": "悪い", "license": "cc-by-sa-4.0"},
            {"question": "質問2", "good": "良い", "bad": "悪い"}]
    res = convert(write_jsonl(tmp_path / "own.jsonl", rows), "jsonl", mapping="prompt=question,chosen=good,rejected=bad",
                  license="mit")
    assert [r.license for r in res.records] == ["cc-by-sa-4.0", "mit"]
    (tmp_path / "g.tsv").write_text("prompt\tchosen\trejected\nq\ta\tb\n", encoding="utf-8")
    assert convert(tmp_path / "g.tsv", "jsonl").records[0].rejected == "b"
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist([{"prompt": "q", "chosen": "a", "rejected": "b"},
                                         {"prompt": "q2", "chosen": "a", "rejected": "a"}]), tmp_path / "g.parquet")
    res = convert(tmp_path / "g.parquet", "jsonl")
    assert res.rows_out == 1 and res.rejects[0]["reason"] == "identical_responses"


def test_generic_trl_conversational_input_and_ranklists(tmp_path):
    rows = [{"prompt": [{"role": "system", "content": "丁寧に"}, {"role": "user", "content": "こんにちは"}],
             "chosen": [{"role": "assistant", "content": "こんにちは！"}],
             "rejected": [{"role": "assistant", "content": "何？"}]},
            {"question": "順位", "answers": ["一番", "二番", "三番"]}]
    res = convert(write_jsonl(tmp_path / "c.jsonl", rows[:1]), "jsonl")
    assert [m.role for m in res.records[0].prompt] == ["system", "user"] and res.records[0].chosen == "こんにちは！"
    res = convert(write_jsonl(tmp_path / "r.jsonl", rows[1:]), "jsonl", mapping="prompt=question,responses=answers")
    assert isinstance(res.records[0], RankList) and len(res.records[0].to_pairs()) == 3
    (tmp_path / "r.tsv").write_text("質問\t最良\t普通\t最悪\t\n質問2\tひとつ\n", encoding="utf-8")
    res = convert(tmp_path / "r.tsv", "ranklist")
    _accounting(res)
    assert res.records[0].responses == ["最良", "普通", "最悪"]
    assert res.rejects[0]["reason"] == "too_few_responses"


def test_bad_input_files(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"prompt": "q", "chosen": "a", "rejected": "b"}\n'
                  b'{"prompt": "q", "chosen": "\xff\xfe", "rejected": "b"}\n'
                  b'{"prompt": "q", "chosen": "a", \n'
                  b'[1, 2]\n'
                  b'\n'
                  b'{"prompt": 12, "chosen": "a", "rejected": "b"}\n')
    res = convert(p, "jsonl")
    _accounting(res)
    assert res.rows_in == 5  # the blank line is not a row
    assert [(r["line"], r["reason"]) for r in res.rejects] == [
        (2, "invalid_utf8"), (3, "malformed_json"), (4, "not_an_object"), (6, "non_string_prompt")]
    with pytest.raises(DataError, match="line 2.*invalid UTF-8"):
        convert(p, "jsonl", strict=True)
    with pytest.raises(DataError, match="not found"):
        convert(tmp_path / "missing.jsonl", "jsonl")
    with pytest.raises(JprefsError, match="unknown source 'hh-rlfh'.*Did you mean 'hh-rlhf'"):
        convert(p, "hh-rlfh")
    with pytest.raises(JprefsError, match="Did you mean 'chosen'"):
        parse_mapping("chosn=good")
    with pytest.raises(DataError, match="unsupported file type"):
        (tmp_path / "x.xml").write_text("<a/>")
        convert(tmp_path / "x.xml", "jsonl")
    gz = tmp_path / "trunc.jsonl.gz"
    gz.write_bytes(gzip.compress(b'{"prompt": "q", "chosen": "a", "rejected": "b"}\n' * 50)[:40])
    with pytest.raises(DataError, match="cannot read"):
        convert(gz, "jsonl")


def test_hub_ids_go_through_load_dataset(tmp_path, monkeypatch):
    """The real Hub path: `datasets.load_dataset(hub_id, config, split=...)`; offline we serve a local file."""
    import datasets

    data = write_jsonl(tmp_path / "s.jsonl", SUMMARIZE_ROWS[:2])
    calls = []
    real_load = datasets.load_dataset

    def fake_load(path, name=None, split=None, revision=None, **kw):
        calls.append((path, name, split))
        return real_load("json", data_files=str(data), split="train")

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    res = convert("openai/summarize_from_feedback", "summarize", split="validation")
    assert calls == [("openai/summarize_from_feedback", "comparisons", "validation")]
    assert res.rows_out == 2 and res.records[0].source == "openai/summarize_from_feedback"

    def failing(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", failing)
    with pytest.raises(DataError, match="(?s)could not load Hub dataset 'Anthropic/hh-rlhf'.*offline"):
        convert("Anthropic/hh-rlhf", "hh-rlhf")


def test_every_source_is_documented():
    for name, a in SOURCES.items():
        assert a.description and get_adapter(name) is a
    assert get_adapter("Anthropic/hh-rlhf").name == "hh-rlhf"


def test_real_hh_rlhf_harmless_base_test():
    path = shared_file("hh-rlhf/harmless-base-test.jsonl.gz")
    res = convert(path, "hh-rlhf")
    assert res.rows_in == 2312
    assert res.rows_in == res.rows_out + len(res.rejects)
    assert res.rows_out > 2250
    assert all(isinstance(r, PreferencePair) and r.prompt[-1].role == "user" for r in res.records)
    multi = [r for r in res.records if len(r.prompt) > 1]
    assert len(multi) > 1000
    # roles alternate after merging consecutive turns
    for r in multi:
        roles = [m.role for m in r.prompt]
        assert all(a != b for a, b in zip(roles, roles[1:]))
    assert set(res.rejects_by_reason) <= {"empty_chosen", "empty_rejected", "diverges_before_final_turn",
                                          "identical_responses", "no_final_assistant_turn"}
    assert {r.license for r in res.records} == {"mit"}


def test_huge_texts_are_rejected_with_reason(tmp_path):
    rows = [{"prompt": "q", "chosen": "あ" * 5000, "rejected": "b"}, {"prompt": "q", "chosen": "a", "rejected": "b"}]
    res = convert(write_jsonl(tmp_path / "h.jsonl", rows), "jsonl", max_chars=1000)
    assert res.rows_out == 1 and res.rejects[0]["reason"] == "text_too_long" and "5,000" in res.rejects[0]["error"]
