"""Provenance of converted rows: the columns `--source jsonl` does not map are kept in ``meta.extra``
(guarded in size), and every reader of canonical files round-trips them."""

import json

import pytest

from jprefs.cli import main
from jprefs.data.adapters import convert
from jprefs.data.io import MAX_EXTRA_CHARS
from jprefs.data.schema import PreferencePair, RankList, SchemaError, record_from_dict
from tests.conftest import shared_file
from tests.data.fixtures import write_jsonl

# The layout of ../shared/data/ja_mt_bench (written for this test, not copied from it).
MT_ROWS = [
    {"question_id": str(i), "category": "writing", "prompt": f"質問{i}です。", "chosen": f"良い答え{i}",
     "rejected": f"悪い答え{i}", "chosen_model": "model-a", "rejected_model": "model-b", "chosen_score": 8,
     "rejected_score": 3, "judge": "gpt-4 single-answer grading 1-10, turn 1"}
    for i in range(6)
]
MT_EXTRA = ("question_id", "category", "chosen_model", "rejected_model", "judge")


def run(*argv):
    return main([str(a) for a in argv])


def read_jsonl(p):
    return [json.loads(x) for x in open(p, encoding="utf-8") if x.strip()]


def _canonical(rec):
    d = rec.to_dict()
    d.pop("meta")
    return d


def test_generic_keeps_unmapped_columns_and_canonical_fields(tmp_path):
    res = convert(write_jsonl(tmp_path / "mt.jsonl", MT_ROWS), "jsonl")
    assert res.rows_out == len(MT_ROWS) and not res.rejects
    for row, rec in zip(MT_ROWS, res.records):
        assert rec.meta == {"extra": {k: row[k] for k in MT_EXTRA}}
    # the canonical fields (content id, texts, scores, provenance) are those of the rows without the columns
    bare = convert(write_jsonl(tmp_path / "bare.jsonl", [{k: v for k, v in r.items() if k not in MT_EXTRA}
                                                         for r in MT_ROWS]), "jsonl")
    assert [_canonical(r) for r in res.records] == [dict(_canonical(r), source="mt.jsonl") for r in bare.records]
    assert all(r.meta == {} for r in bare.records)
    # the same meta.extra as the canonical reader gives the raw row (train-rm --data reads it that way)
    assert [r.meta for r in res.records] == [PreferencePair.from_dict(row).meta for row in MT_ROWS]


def test_mapped_and_read_columns_are_not_copied(tmp_path):
    rows = [{"q": {"text": "質問", "id": 5}, "good": "はい", "bad": "いいえ", "license": "mit", "note": "n1",
             "margin": 1.5, "id": "row-1"}]
    rec, = convert(write_jsonl(tmp_path / "m.jsonl", rows), "jsonl", mapping="prompt=q.text,chosen=good,rejected=bad").records
    # q is read (in part, through a dotted path), good/bad/license/margin are read: only note and the unmapped id stay
    assert rec.meta == {"extra": {"note": "n1", "id": "row-1"}}
    assert rec.license == "mit" and rec.margin == 1.5 and rec.prompt[0].content == "質問"
    # a mapped id is read too
    rec, = convert(tmp_path / "m.jsonl", "jsonl", mapping="prompt=q.text,chosen=good,rejected=bad,id=id").records
    assert rec.meta == {"extra": {"note": "n1"}} and rec.source_id == "row-1"


def test_rank_lists_keep_their_columns(tmp_path):
    rows = [{"prompt": "猫は?", "responses": ["かわいい", "ふつう", "こわい"], "question_id": "q1", "judge": "human"}]
    rec, = convert(write_jsonl(tmp_path / "r.jsonl", rows), "jsonl").records
    assert isinstance(rec, RankList) and rec.meta == {"extra": {"question_id": "q1", "judge": "human"}}
    assert all(p.meta["extra"] == {"question_id": "q1", "judge": "human"} and p.meta["group"] == rec.id
               for p in rec.to_pairs())
    # the TSV rank list has no other columns
    (tmp_path / "r.tsv").write_text("猫は?\tかわいい\tこわい\n", encoding="utf-8")
    assert convert(tmp_path / "r.tsv", "ranklist").records[0].meta == {}


def test_size_guard_drops_columns_not_rows(tmp_path):
    deep = "[" * 99 + "]" * 99
    lines = [json.dumps(dict(MT_ROWS[0], blob="x" * MAX_EXTRA_CHARS)),
             json.dumps(MT_ROWS[1])[:-1] + ', "nan_col": NaN}',
             json.dumps(MT_ROWS[2])[:-1] + f', "deep": {deep}}}',
             json.dumps(dict(MT_ROWS[3], big=["y" * 4000] * 3))]
    (tmp_path / "g.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = convert(tmp_path / "g.jsonl", "jsonl")
    assert res.rows_out == 4 and not res.rejects            # a bulky or odd column never costs the row
    metas = [r.meta for r in res.records]
    assert [m["extra_dropped"] for m in metas] == [{"blob": "too_large"}, {"nan_col": "non_finite_number"},
                                                   {"deep": "too_deeply_nested"}, {"big": "too_large"}]
    assert all(set(m["extra"]) == set(MT_EXTRA) for m in metas)     # the small columns are still kept
    assert res.notes == {"extra_dropped_too_large": 2, "extra_dropped_non_finite_number": 1,
                         "extra_dropped_too_deeply_nested": 1}
    # a column just under the limit is kept whole
    small = dict(MT_ROWS[0], blob="x" * (MAX_EXTRA_CHARS // 2))
    rec, = convert(write_jsonl(tmp_path / "s.jsonl", [small]), "jsonl").records
    assert rec.meta["extra"]["blob"] == small["blob"] and "extra_dropped" not in rec.meta


def test_parquet_columns_that_are_not_json(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import datetime

    import pyarrow.parquet as pq

    t = pa.table({"prompt": ["質問"], "chosen": ["はい"], "rejected": ["いいえ"], "image": [b"\x89PNG\x00"],
                  "at": [datetime.datetime(2024, 5, 1, 12, 0)], "rank": [3]})
    pq.write_table(t, tmp_path / "p.parquet")
    res = convert(tmp_path / "p.parquet", "jsonl")
    rec, = res.records
    assert rec.meta == {"extra": {"at": "2024-05-01T12:00:00", "rank": 3}, "extra_dropped": {"image": "not_json"}}
    assert res.notes == {"extra_dropped_not_json": 1}


def test_every_reader_round_trips_meta_extra(tmp_path, capsys):
    rows = MT_ROWS + [{"prompt": "猫は?", "responses": ["かわいい", "ふつう", "こわい"], "question_id": "r1"}]
    src = write_jsonl(tmp_path / "mt.jsonl", rows)
    conv = tmp_path / "conv.jsonl"
    assert run("data", "convert", src, "--source", "jsonl", "-o", conv) == 0
    recs = [record_from_dict(d) for d in read_jsonl(conv)]
    by_id = {r.id: r.meta for r in recs}
    assert all(m["extra"]["question_id"] for m in by_id.values())
    # canonical JSONL re-read by the canonical adapter
    assert [r.meta for r in convert(conv, "jprefs").records] == [r.meta for r in recs]
    # export --format jsonl to Parquet (meta as JSON text in a fixed string column), read back
    pq_out = tmp_path / "e.parquet"
    assert run("data", "export", conv, "--format", "jsonl", "-o", pq_out) == 0
    back = convert(pq_out, "jprefs").records
    pairs = [p for r in recs for p in (r.to_pairs() if isinstance(r, RankList) else [r])]
    assert [p.meta for p in back] == [p.meta for p in pairs] and len(back) == len(MT_ROWS) + 3
    import pyarrow.parquet as pq

    assert str(pq.read_schema(pq_out).field("meta").type) == "string"
    # split and merge write the records with their meta
    assert run("data", "split", conv, "--test-size", "0.3", "--seed", "0", "-o", tmp_path / "s") == 0
    split = read_jsonl(tmp_path / "s" / "train.jsonl") + read_jsonl(tmp_path / "s" / "test.jsonl")
    assert {d["id"]: d["meta"] for d in split} == by_id
    assert run("data", "merge", conv, conv, "-o", tmp_path / "m.jsonl") == 0
    assert {d["id"]: d["meta"] for d in read_jsonl(tmp_path / "m.jsonl")} == by_id
    # train-rm's data loading
    from jprefs.classifiers.data import load_rm_data

    data = load_rm_data(conv)
    assert {r.id: r.meta for r in data.records} == by_id and not data.rejects
    capsys.readouterr()


def test_rank_list_from_dict_keeps_unknown_fields_like_pairs():
    r = RankList.from_dict({"prompt": "q", "responses": ["a", "b"], "lang": "ja", "meta": {"k": 1}})
    p = PreferencePair.from_dict({"prompt": "q", "chosen": "a", "rejected": "b", "lang": "ja", "meta": {"k": 1}})
    assert r.meta == p.meta == {"k": 1, "extra": {"lang": "ja"}}
    # reading its own output again changes nothing
    assert RankList.from_dict(r.to_dict()).meta == r.meta
    assert RankList.from_dict(dict(r.to_dict(), rewards=[0.5, 0.1])).meta["extra"] == {"lang": "ja", "rewards": [0.5, 0.1]}
    # an existing meta.extra that is not an object cannot take the fields: a reject, not a crash
    for cls, d in ((RankList, {"prompt": "q", "responses": ["a", "b"]}),
                   (PreferencePair, {"prompt": "q", "chosen": "a", "rejected": "b"})):
        with pytest.raises(SchemaError) as e:
            cls.from_dict(dict(d, lang="ja", meta={"extra": "x"}))
        assert e.value.reason == "bad_meta"


def test_real_ja_mt_bench_keeps_its_provenance(tmp_path):
    path = shared_file("ja_mt_bench/ja_mt_bench_turn1_pairs.jsonl")
    res = convert(path, "jsonl")
    assert res.rows_out >= 800 and not res.notes
    assert all(set(r.meta["extra"]) == set(MT_EXTRA) for r in res.records)
    assert len({r.meta["extra"]["question_id"] for r in res.records}) == 77
