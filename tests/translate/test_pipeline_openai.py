"""The real pipeline end to end against the local OpenAI-compatible test server."""

import json

import pytest
import yaml

from jprefs.config import load_config
from jprefs.data.io import load_binary, load_pairs, write_jsonl
from jprefs.data.schema import PreferencePair
from jprefs.translate.config import TranslateConfig
from jprefs.translate.pipeline import MissingUnits, make_plan, merge_shards, run_translate
from tests.translate.conftest import make_pairs
from tests.translate.fake_server import decode


def cfg_for(server, pairs_file, out, **kw):
    return load_config(TranslateConfig, None, {"input": str(pairs_file), "output": str(out), "engine": "openai",
                                               "model": "fake-mt", "base_url": server.base_url, "backoff": 0.01,
                                               "chunk_size": 4, **kw})


def read(path):
    return [json.loads(x) for x in open(path, encoding="utf-8")]


def test_end_to_end_reassembles_rows_exactly(server, pairs_file, tmp_path):
    s = run_translate(cfg_for(server, pairs_file, tmp_path / "out"))
    src = make_pairs()
    out = load_pairs(tmp_path / "out" / "pairs.jsonl")
    assert s["pairs_in"] == len(src) == s["pairs_out"] and s["quality_rejects"] == 0
    for a, b in zip(src, out):
        assert b.id == a.id and b.source_id == a.source_id and b.license == "mit"
        assert [m.role for m in b.prompt] == [m.role for m in a.prompt]
        # the fake translator is reversible: decoding gives back the source, so every piece
        # (units, literals, code blocks, URLs, inline code) is in the right place
        assert [decode(m.content) for m in b.prompt] == [m.content for m in a.prompt]
        assert decode(b.chosen) == a.chosen and decode(b.rejected) == a.rejected
        assert "```python\nprint('thing" in b.chosen and "`python main.py`" in b.chosen
        t = b.meta["translation"]
        assert t["model"] == "fake-mt" and t["source_row_id"] == a.source_id and len(t["template_hash"]) == 16
        assert t["sampling"]["temperature"] == 0.0 and t["quality"]["chosen"]["ja_ratio"] == 1.0
    binary = load_binary(tmp_path / "out" / "binary.jsonl")
    assert len(binary) == 2 * len(out) and [b.label for b in binary[:2]] == [1, 0]


def test_each_distinct_unit_is_sent_once_and_rerun_sends_nothing(server, pairs_file, tmp_path):
    cfg = cfg_for(server, pairs_file, tmp_path / "out")
    s1 = run_translate(cfg)
    plan = make_plan(make_pairs(), cfg.max_unit_tokens)
    assert s1["units_translated_now"] == len(plan.units) == server.completions
    assert s1["unit_occurrences"] > s1["distinct_units"]   # shared turns and prompts de-duplicated
    assert s1["source_chars_sent"] < s1["naive_chars"]
    before = (tmp_path / "out" / "pairs.jsonl").read_bytes()
    s2 = run_translate(cfg)
    assert server.completions == len(plan.units)            # nothing sent the second time
    assert s2["units_translated_now"] == 0 and s2["cache_hits"] == s2["distinct_units"]
    assert (tmp_path / "out" / "pairs.jsonl").read_bytes() == before


def test_cache_key_includes_model_template_and_sampling(server, pairs_file, tmp_path):
    cache = str(tmp_path / "shared-cache")
    run_translate(cfg_for(server, pairs_file, tmp_path / "a", cache_dir=cache))
    n = server.completions
    run_translate(cfg_for(server, pairs_file, tmp_path / "b", cache_dir=cache))
    assert server.completions == n                          # same setup, other folder: all cached
    run_translate(cfg_for(server, pairs_file, tmp_path / "c", cache_dir=cache, temperature=0.7))
    assert server.completions == 2 * n                      # other sampling: translated again


def test_quality_rejects_add_up(server, tmp_path):
    good = make_pairs(4)
    bad = [
        PreferencePair.create("Tell me a long story about TRUNCATE_ME a dragon and a knight in a castle.",
                              "Once upon a time there was a dragon.", "No.", license="mit", source_id="t"),
        PreferencePair.create("Please explain how photosynthesis works in green plants.",
                              "REFUSE_ME Plants use sunlight to make sugar from water and carbon dioxide.", "No idea.",
                              license="mit", source_id="r"),
        PreferencePair.create("What is the capital of France and why is it famous?",
                              "ECHO_ME Paris is the capital, famous for art, food and the Eiffel Tower.", "Lyon.",
                              license="mit", source_id="e"),
        PreferencePair.create("Say hi", "PREAMBLE_ME hello", "bye", license="mit", source_id="p"),
    ]
    f = tmp_path / "in.jsonl"
    write_jsonl(f, good[:2] + bad + good[2:])
    with open(f, "a", encoding="utf-8") as fh:
        fh.write("{not json\n")
        fh.write(json.dumps({"prompt": "x", "chosen": "same", "rejected": "same"}) + "\n")
    s = run_translate(cfg_for(server, f, tmp_path / "out", pack_units=4))
    rej = read(tmp_path / "out" / "rejects.jsonl")
    assert s["rows_in"] == 10 and s["input_rejects"] == 2 and s["pairs_in"] == 8
    assert s["pairs_out"] == 5 and s["quality_rejects"] == 3
    assert s["pairs_out"] + s["quality_rejects"] + s["input_rejects"] == s["rows_in"] == 5 + len(rej)
    by = {r.get("raw", {}).get("source_id") if isinstance(r.get("raw"), dict) else None: r for r in rej}
    assert by["t"]["reason"] == "truncated" and by["r"]["reason"] == "refusal"
    assert set(by["e"]["reasons"]) >= {"low_japanese_ratio", "leftover_english"}
    assert {r["reason"] for r in rej if r["stage"] == "input"} == {"malformed_json", "identical_responses"}
    assert s["rejects_by_reason"] == {"identical_responses": 1, "leftover_english": 1, "malformed_json": 1,
                                      "refusal": 1, "truncated": 1}
    kept = {p.source_id: p for p in load_pairs(tmp_path / "out" / "pairs.jsonl")}
    assert decode(kept["p"].chosen) == "PREAMBLE_ME hello"   # 翻訳：「...」 cleaned up


def test_flags_not_in_reject_on_are_recorded_only(server, tmp_path):
    p = PreferencePair.create("What is the capital of France and why is it famous?",
                              "ECHO_ME Paris is the capital, famous for art, food and the Eiffel Tower.", "Lyon.",
                              license="mit")
    f = tmp_path / "in.jsonl"
    write_jsonl(f, [p])
    s = run_translate(cfg_for(server, f, tmp_path / "out", reject_on=["truncated"]))
    assert s["pairs_out"] == 1 and s["flags"]["low_japanese_ratio"] == 1
    [out] = load_pairs(tmp_path / "out" / "pairs.jsonl")
    assert "low_japanese_ratio" in out.meta["translation"]["flags"]["chosen"]


def test_packing_cuts_requests_and_falls_back_when_the_format_breaks(server, pairs_file, tmp_path):
    s1 = run_translate(cfg_for(server, pairs_file, tmp_path / "single"))
    s8 = run_translate(cfg_for(server, pairs_file, tmp_path / "packed", pack_units=8, cache_dir=str(tmp_path / "c8")))
    assert s8["requests_sent"] < s1["requests_sent"] / 3
    assert s8["template_overhead_chars_sent"] < s1["template_overhead_chars_sent"] / 2
    assert (tmp_path / "single/pairs.jsonl").read_bytes() != b""
    a = [p.to_dict() for p in load_pairs(tmp_path / "single/pairs.jsonl")]
    b = [p.to_dict() for p in load_pairs(tmp_path / "packed/pairs.jsonl")]
    assert [(x["prompt"], x["chosen"], x["rejected"]) for x in a] == [(x["prompt"], x["chosen"], x["rejected"]) for x in b]
    server.translator.break_packs = True
    sb = run_translate(cfg_for(server, pairs_file, tmp_path / "broken", pack_units=8, cache_dir=str(tmp_path / "cb")))
    assert sb["pack_fallbacks"] > 0 and sb["pairs_out"] == s1["pairs_out"]
    # a unit of a failed pack retried alone is translated once (it was counted for the pack and the retry)
    assert sb["units_translated_now"] == sb["distinct_units"] == s1["units_translated_now"]
    c = [p.to_dict() for p in load_pairs(tmp_path / "broken/pairs.jsonl")]
    assert [x["chosen"] for x in c] == [x["chosen"] for x in a]


def test_retries_inside_a_job(server, pairs_file, tmp_path):
    server.fail_next(429, 3, retry_after=0)
    server.fail_next(500, 2)
    s = run_translate(cfg_for(server, pairs_file, tmp_path / "out", concurrency=2))
    assert s["engine_retries"] == 5 and s["pairs_out"] == s["pairs_in"]


def test_shards_then_merge_equal_a_single_run(server, pairs_file, tmp_path):
    run_translate(cfg_for(server, pairs_file, tmp_path / "single"))
    n_single = server.completions
    for i in range(3):
        s = run_translate(cfg_for(server, pairs_file, tmp_path / f"shard{i}", shard=f"{i}/3"))
        assert s["shard"] == f"{i}/3" and not (tmp_path / f"shard{i}" / "pairs.jsonl").exists()
    assert server.completions == 2 * n_single              # each unit translated by exactly one shard
    cfg = cfg_for(server, pairs_file, tmp_path / "merged")
    with pytest.raises(MissingUnits):
        merge_shards([str(tmp_path / "shard0"), str(tmp_path / "shard1")], cfg)
    cfg = cfg_for(server, pairs_file, tmp_path / "merged2")
    merge_shards([str(tmp_path / f"shard{i}") for i in range(3)], cfg)
    for name in ("pairs.jsonl", "binary.jsonl", "rejects.jsonl"):
        assert (tmp_path / "merged2" / name).read_bytes() == (tmp_path / "single" / name).read_bytes()
    assert server.completions == 2 * n_single


def test_dataset_card_front_matter_and_unknown_licence(server, tmp_path):
    pairs = make_pairs(3)
    pairs[1].license = "unknown"
    f = tmp_path / "in.jsonl"
    write_jsonl(f, pairs)
    run_translate(cfg_for(server, f, tmp_path / "out"), command="jprefs translate in.jsonl -o out")
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(card.split("---")[1])
    assert front["language"] == ["ja"] and front["size_categories"] == ["n<1K"]
    assert front["source_datasets"] == ["Anthropic/hh-rlhf"] and sorted(front["license"]) == ["mit", "unknown"]
    assert {"text-generation", "text-classification"} <= set(front["task_categories"])
    assert "WARNING: the licence of 1 of 3 source pairs is unknown" in card
    assert "jprefs translate in.jsonl -o out" in card and "fake-mt" in card
    cfg_text = (tmp_path / "out" / "config.yaml").read_text()
    assert "api_key_env: OPENAI_API_KEY" in cfg_text
    # the Hub's own card parser reads the metadata (validation against the Hub needs the network)
    from huggingface_hub import DatasetCard

    data = DatasetCard(card).data
    assert data.language == ["ja"] and data.source_datasets == ["Anthropic/hh-rlhf"]
    assert [c["data_files"] for c in data.configs][:2] == ["pairs.jsonl", "binary.jsonl"]


def test_rank_lists_expand_and_each_response_is_translated_once(server, tmp_path):
    from jprefs.data.schema import RankList

    rl = RankList.create("Which answer is best for a beginner?",
                         ["Start with the official tutorial.", "Read the source code.", "Give up now."],
                         license="mit", source="example")
    f = tmp_path / "in.jsonl"
    write_jsonl(f, [rl])
    s = run_translate(cfg_for(server, f, tmp_path / "out"))
    assert s["rows_in"] == s["records"] == 1 and s["pairs_in"] == s["pairs_out"] == 3
    assert s["distinct_units"] == 4 and server.completions == 4   # prompt + 3 responses, not 3 x 3 fields
    out = load_pairs(tmp_path / "out" / "pairs.jsonl")
    assert [(decode(p.chosen), decode(p.rejected)) for p in out] == [
        (rl.responses[0], rl.responses[1]), (rl.responses[0], rl.responses[2]), (rl.responses[1], rl.responses[2])]
    assert out[0].meta["group"] == rl.id


def test_server_down_mid_job_keeps_finished_chunks_and_rerun_completes(server, pairs_file, tmp_path):
    from jprefs.translate.engines import EngineError

    run_translate(cfg_for(server, pairs_file, tmp_path / "clean", chunk_size=2, concurrency=1))
    server.fail_next(500, 100, after=4)  # 2 chunks of 2 requests succeed, then the server is "down"
    cfg = cfg_for(server, pairs_file, tmp_path / "out", chunk_size=2, concurrency=1, max_retries=1)
    with pytest.raises(EngineError, match="rerun the same command"):
        run_translate(cfg)
    assert len(list((tmp_path / "out" / "cache").glob("chunk-*.jsonl"))) == 2
    assert not (tmp_path / "out" / "pairs.jsonl").exists()
    server._faults.clear()
    s = run_translate(cfg)
    assert s["cache_hits"] == 4 and s["units_translated_now"] == s["distinct_units"] - 4
    for name in ("pairs.jsonl", "binary.jsonl", "rejects.jsonl"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes()


def test_fewshot_template_end_to_end(tmp_path, pairs_file):
    from jprefs.translate.prompts import load_template
    from tests.translate.fake_server import FakeServer

    t = load_template("builtin:en-ja-fewshot")
    with FakeServer(t) as srv:
        s = run_translate(cfg_for(srv, pairs_file, tmp_path / "out", template="builtin:en-ja-fewshot",
                                  pack_units=4))
    assert s["pairs_out"] == s["pairs_in"] and s["pack_fallbacks"] == 0
    out = load_pairs(tmp_path / "out" / "pairs.jsonl")
    assert [decode(p.chosen) for p in out] == [p.chosen for p in make_pairs()]
    assert out[0].meta["translation"]["template"] == "en-ja-fewshot"


def test_api_key_is_sent_but_never_written(server, pairs_file, tmp_path, monkeypatch, capsys):
    secret = "sk-test-DO-NOT-LEAK-42"
    monkeypatch.setenv("JPREFS_TEST_KEY", secret)
    seen = []  # Authorization headers the server received
    import http.server

    handle = http.server.BaseHTTPRequestHandler.parse_request

    def parse_request(self):
        ok = handle(self)
        seen.append(self.headers.get("Authorization"))
        return ok

    monkeypatch.setattr(http.server.BaseHTTPRequestHandler, "parse_request", parse_request)
    run_translate(cfg_for(server, pairs_file, tmp_path / "out", api_key_env="JPREFS_TEST_KEY"))
    assert seen and set(seen) == {f"Bearer {secret}"}
    for f in (tmp_path / "out").rglob("*"):
        if f.is_file():
            assert secret not in f.read_text(encoding="utf-8", errors="replace"), f
    captured = capsys.readouterr()
    assert secret not in captured.out + captured.err


# ---------------------------------------------------------------- units without translation

def cached_texts(folder):
    return [json.loads(x)["t"] for p in sorted(folder.glob("chunk-*.jsonl")) for x in open(p, encoding="utf-8")]


@pytest.mark.parametrize("content,pack", [(None, 1), ("", 4), (" \n", 1)])
def test_empty_completions_are_failed_units_and_a_rerun_retranslates_exactly_them(server, pairs_file, tmp_path,
                                                                                  content, pack):
    from jprefs.translate.pipeline import UnitsFailed

    run_translate(cfg_for(server, pairs_file, tmp_path / "clean", pack_units=pack))
    server.sent.clear()
    server.translator.empty_on, server.translator.empty_content = "topic number 1", content
    cfg = cfg_for(server, pairs_file, tmp_path / "out", pack_units=pack, max_retries=2)
    with pytest.raises(UnitsFailed, match=r"(?s)1 units got no translation \(empty completions from the server\); "
                                          r"4 rows are in rejects.jsonl.*rerun the same command") as e:
        run_translate(cfg)
    s = e.value.summary
    assert s["units_failed"] == 1 and s["rows_untranslated"] == 4 and s["quality_rejects"] == 0
    assert s["pairs_out"] == 8 and json.loads((tmp_path / "out" / "summary.json").read_text()) == s
    rej = read(tmp_path / "out" / "rejects.jsonl")
    assert [r["reason"] for r in rej] == ["no_translation"] * 4 and {r["index"] for r in rej} == {1, 4, 7, 10}
    assert all(r["fields"] == ["prompt.0"] and r["stage"] == "translate" for r in rej)
    kept = load_pairs(tmp_path / "out" / "pairs.jsonl")
    assert [int(p.source_id) % 3 for p in kept] == [0, 2] * 4        # no row of the failed unit written
    assert "WARNING: 1 translation units got no translation" in (tmp_path / "out" / "README.md").read_text()
    texts = cached_texts(tmp_path / "out" / "cache")
    assert len(texts) == s["distinct_units"] - 1 and all(t.strip() for t in texts)   # nothing empty cached
    # the failed unit was a failed attempt each time: retried (for a pack: alone, after the pack)
    assert sum("topic number 1" in m for m in server.sent) == (3 if pack == 1 else 4)
    # rerun against a healthy server: exactly that unit is sent, and the output is a clean run's
    server.translator.empty_on = None
    server.sent.clear()
    s2 = run_translate(cfg)
    assert len(server.sent) == 1 and "topic number 1" in server.sent[0]
    assert s2["units_failed"] == 0 and s2["units_translated_now"] == 1 and s2["rejects_by_reason"] == {}
    for name in ("pairs.jsonl", "binary.jsonl", "rejects.jsonl"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes()


def test_a_shard_with_failed_units_reports_them_and_merge_refuses_the_gap(server, pairs_file, tmp_path):
    from jprefs.translate.pipeline import UnitsFailed

    server.translator.empty_on = "topic number 1"
    failed = 0
    for i in range(2):
        try:
            run_translate(cfg_for(server, pairs_file, tmp_path / f"s{i}", shard=f"{i}/2", max_retries=0))
        except UnitsFailed as e:
            failed += e.summary["units_failed"]
            assert "rows are in rejects" not in str(e)   # a shard writes no rows
    assert failed == 1
    with pytest.raises(MissingUnits, match="rerun the missing shard"):
        merge_shards([str(tmp_path / "s0"), str(tmp_path / "s1")], cfg_for(server, pairs_file, tmp_path / "m"))


def test_old_cache_with_empty_entries_is_retranslated(server, pairs_file, tmp_path):
    """A cache written before this fix holds "" for empty completions as if finished."""
    run_translate(cfg_for(server, pairs_file, tmp_path / "clean"))
    cfg = cfg_for(server, pairs_file, tmp_path / "out")
    run_translate(cfg)
    chunk = sorted((tmp_path / "out" / "cache").glob("chunk-*.jsonl"))[0]
    lines = [json.loads(x) for x in open(chunk, encoding="utf-8")]
    lines[0]["t"], lines[1]["t"] = "", None
    chunk.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in lines), encoding="utf-8")
    server.sent.clear()
    s = run_translate(cfg)
    assert len(server.sent) == 2 and s["cache_hits"] == s["distinct_units"] - 2
    assert s["rejects_by_reason"] == {}
    assert (tmp_path / "out" / "pairs.jsonl").read_bytes() == (tmp_path / "clean" / "pairs.jsonl").read_bytes()


def test_cache_never_stores_an_empty_translation(tmp_path):
    from jprefs.translate.cache import Cache

    c = Cache(tmp_path / "c")
    c.add([("k1", "訳", "stop"), ("k2", "", "stop"), ("k3", "  \n", "stop")])
    assert "k1" in c and "k2" not in c and "k3" not in c
    assert c.add([("k4", "", "stop")]) is None and not list((tmp_path / "c").glob("*k4*"))
    again = Cache(tmp_path / "c")
    assert set(again.data) == {"k1"} and again.skipped == 0


class _EmptyForSomeEngine:
    """A local engine (transformers/vLLM stand-in) that generates nothing for units with 'topic number 1'."""

    name, model, revision = "transformers", "tiny", None

    def __init__(self):
        from tests.translate.fake_server import encode

        self.encode, self.calls = encode, 0

    def generate(self, convs, sampling):
        from jprefs.translate.engines import Generation

        self.calls += len(convs)
        texts = [c[-1]["content"] for c in convs]
        return [Generation(text="" if "topic number 1" in t else self.encode(t.rsplit("\n", 1)[-1]))
                for t in texts]

    def close(self):
        pass


def test_local_engine_empty_generation_is_not_cached_and_reported(pairs_file, tmp_path):
    from jprefs.translate.pipeline import UnitsFailed

    cfg = load_config(TranslateConfig, None, {"input": str(pairs_file), "output": str(tmp_path / "out"),
                                              "engine": "transformers", "model": "tiny", "reject_on": []})
    with pytest.raises(UnitsFailed, match=r"(?s)1 units got no translation \(the model generated no text\).*greedy"):
        run_translate(cfg, engine_factory=_EmptyForSomeEngine)
    assert all(t.strip() for t in cached_texts(tmp_path / "out" / "cache"))
    rej = read(tmp_path / "out" / "rejects.jsonl")
    assert {r["reason"] for r in rej} == {"no_translation"} and len(rej) == 4   # even with reject_on=[]
    eng = _EmptyForSomeEngine()
    with pytest.raises(UnitsFailed):
        run_translate(cfg, engine_factory=lambda: eng)
    assert eng.calls == 1   # a rerun asks again for the failed unit only


@pytest.mark.parametrize("pack", [1, 4])
def test_an_answer_cut_by_a_content_filter_is_rejected_as_truncated(server, tmp_path, pack):
    p = PreferencePair.create("Explain FILTER_ME how a lock works, with every detail of the pins.",
                              "A pin tumbler lock has spring-loaded pins of different lengths.", "No.",
                              license="mit", source_id="f")
    f = tmp_path / "in.jsonl"
    write_jsonl(f, make_pairs(2) + [p])
    s = run_translate(cfg_for(server, f, tmp_path / "out", pack_units=pack))
    assert s["pairs_out"] == 2 and s["rejects_by_reason"] == {"truncated": 1}
    [r] = read(tmp_path / "out" / "rejects.jsonl")
    assert r["id"] == p.id and "prompt.0: truncated" in r["error"]


def test_canonical_parquet_input_is_read_and_an_input_with_no_usable_row_is_an_error(tmp_path):
    """Canonical Parquet (what `jprefs data export --format jsonl -o X.parquet` writes) was read as JSONL:
    every row a reject, and the run "succeeded" with an empty dataset."""
    import json

    from jprefs.cli import main
    from jprefs.errors import DataError
    from jprefs.translate.config import TranslateConfig
    from jprefs.translate.pipeline import load_input

    src = tmp_path / "p.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"Question {i}?", "chosen": f"Good {i}.", "rejected": f"Bad {i}.",
                                       "license": "mit"}) + "\n" for i in range(5)), encoding="utf-8")
    assert main(["data", "export", str(src), "--format", "jsonl", "-o", str(tmp_path / "p.parquet")]) == 0
    got = load_input(TranslateConfig(input=str(tmp_path / "p.parquet"), source="jprefs"))
    assert len(got.pairs) == 5 and not got.rejects and got.pairs[0].license == "mit"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no pair here"}\n{"text": "nor here"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="no usable record among 2 rows"):
        load_input(TranslateConfig(input=str(bad), source="jprefs"))


def test_a_run_killed_while_writing_its_files_leaves_no_summary_of_the_run_before(server, pairs_file, tmp_path,
                                                                                 monkeypatch):
    import jprefs.data.export as export

    out = tmp_path / "out"
    run_translate(cfg_for(server, pairs_file, out))
    assert (out / "summary.json").is_file()

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "write_trl_files", killed)
    with pytest.raises(KeyboardInterrupt):
        run_translate(cfg_for(server, pairs_file, out, limit=2))
    assert (out / "pairs.jsonl").is_file() and not (out / "summary.json").exists() and not (out / "README.md").exists()
    monkeypatch.undo()
    s = run_translate(cfg_for(server, pairs_file, out, limit=2))       # the rerun completes the set
    assert (out / "summary.json").is_file() and s["pairs_in"] == 2
