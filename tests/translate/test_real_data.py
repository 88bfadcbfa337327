"""The pipeline on real hh-rlhf rows (skipped when ../shared/data is absent)."""

from jprefs.config import load_config
from jprefs.data.io import load_pairs
from jprefs.translate.config import TranslateConfig
from jprefs.translate.pipeline import load_input, run_translate
from tests.conftest import shared_file
from tests.translate.fake_server import decode


def test_hh_rlhf_rows_round_trip(server, tmp_path):
    hh = shared_file("hh-rlhf/harmless-base-test.jsonl.gz")
    cfg = load_config(TranslateConfig, None, {"input": str(hh), "source": "hh-rlhf", "limit": 80, "engine": "openai",
                                              "model": "fake-mt", "base_url": server.base_url,
                                              "output": str(tmp_path / "out"), "pack_units": 4})
    s = run_translate(cfg)
    src = load_input(cfg).pairs
    assert s["rows_in"] == 80 == s["records"] + s["input_rejects"]
    assert s["unit_occurrences"] > s["distinct_units"] and s["dedup_ratio"] < 0.7
    assert s["source_chars_sent"] == sum(len(u) for u in _units(cfg))
    out = {p.id: p for p in load_pairs(tmp_path / "out" / "pairs.jsonl")}
    assert s["pairs_out"] + s["quality_rejects"] == len(src)
    for p in src:
        if p.id in out:
            q = out[p.id]
            assert [m.role for m in q.prompt] == [m.role for m in p.prompt]
            assert decode(q.chosen) == p.chosen and decode(q.prompt[-1].content) == p.prompt[-1].content
            assert q.license == "mit" and q.source == "Anthropic/hh-rlhf"


def _units(cfg):
    from jprefs.translate.pipeline import make_plan

    return make_plan(load_input(cfg).pairs, cfg.max_unit_tokens).units
