"""The transformers engine with a tiny model built from a config (CPU): mechanics, not quality."""

import json

from jprefs.config import load_config
from jprefs.data.io import load_pairs, write_jsonl
from jprefs.translate.config import TranslateConfig
from jprefs.translate.engines import Sampling, get_engine
from jprefs.translate.pipeline import engine_kwargs, run_translate
from tests.translate.conftest import make_pairs


def test_batched_generation_equals_one_by_one(tiny_lm, template):
    texts = ["Hi.", "A much longer sentence that needs more tokens than the first one.", "Medium text here."]
    convs = [template.messages([t]) for t in texts]
    s = Sampling(max_tokens=6)
    batched = get_engine("transformers", model=tiny_lm, device="cpu", batch_size=3).generate(convs, s)
    single = get_engine("transformers", model=tiny_lm, device="cpu", batch_size=1).generate(convs, s)
    # left padding + attention mask: a batch gives the same greedy tokens as one-by-one, in input order
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.prompt_tokens for g in batched] == [g.prompt_tokens for g in single]
    assert batched[0].prompt_tokens < batched[2].prompt_tokens < batched[1].prompt_tokens
    assert all(g.finish_reason in ("stop", "length") and g.completion_tokens <= 6 for g in batched)
    assert any(g.finish_reason == "length" for g in batched)  # 6 tokens of gibberish rarely hit EOS


def test_pipeline_end_to_end_with_tiny_model(tiny_lm, tmp_path):
    pairs = make_pairs(4)
    f = tmp_path / "in.jsonl"
    write_jsonl(f, pairs)
    # reject_on=[] keeps the gibberish rows so that the reassembly can be inspected
    cfg = load_config(TranslateConfig, None, {"input": str(f), "output": str(tmp_path / "out"), "engine": "transformers",
                                              "model": tiny_lm, "device": "cpu", "max_tokens": 4, "batch_size": 8,
                                              "reject_on": [], "chunk_size": 8})
    calls = []

    def factory():
        calls.append(1)
        return get_engine(cfg.engine, **engine_kwargs(cfg))

    s = run_translate(cfg, engine_factory=factory)
    assert s["units_translated_now"] == s["distinct_units"] and s["engine_tokens_in"] > 0
    assert s["engine_tokens_out"] <= 4 * s["requests_sent"]
    out = load_pairs(tmp_path / "out" / "pairs.jsonl")
    assert s["pairs_out"] == len(out) == len(pairs)
    for a, b in zip(pairs, out):
        assert b.id == a.id and [m.role for m in b.prompt] == [m.role for m in a.prompt]
        assert "\n\n```python\nprint('thing" in b.chosen  # literal code block copied byte for byte
        # gibberish drops the ⟦1⟧ placeholder of `python main.py`: flagged, never silently wrong
        assert "placeholder_lost" in b.meta["translation"]["flags"]["chosen"] or "`python main.py`" in b.chosen
    # identical source texts get identical translations (one unit, translated once)
    assert len({p.prompt[1].content for p in out}) == 1
    assert s["flags"].get("truncated", 0) > 0  # 4 new tokens of gibberish: flagged as truncated
    # strict settings: the same cache, every row rejected, counts add up; the engine is not even built
    cfg.reject_on = TranslateConfig().reject_on
    cfg.output = str(tmp_path / "strict")
    cfg.cache_dir = str(tmp_path / "out" / "cache")
    s2 = run_translate(cfg, engine_factory=factory)
    assert len(calls) == 1 and s2["units_translated_now"] == 0
    rejects = [json.loads(x) for x in open(tmp_path / "strict" / "rejects.jsonl", encoding="utf-8")]
    assert s2["pairs_out"] + len(rejects) == len(pairs) and s2["quality_rejects"] == len(rejects) > 0


def test_partial_cache_resume_matches_full_run(tiny_lm, tmp_path):
    import shutil

    write_jsonl(tmp_path / "in.jsonl", make_pairs(3))
    base = {"input": str(tmp_path / "in.jsonl"), "engine": "transformers", "model": tiny_lm, "device": "cpu",
            "max_tokens": 3, "batch_size": 4, "chunk_size": 4}
    full = run_translate(load_config(TranslateConfig, None, {**base, "output": str(tmp_path / "full")}))
    chunks = sorted((tmp_path / "full" / "cache").glob("chunk-*.jsonl"))
    assert len(chunks) >= 3
    # a run that died after its first two checkpoints
    (tmp_path / "resumed" / "cache").mkdir(parents=True)
    for c in chunks[:2]:
        shutil.copy(c, tmp_path / "resumed" / "cache" / c.name)
    done = sum(1 for c in chunks[:2] for _ in open(c))
    res = run_translate(load_config(TranslateConfig, None, {**base, "output": str(tmp_path / "resumed")}))
    assert res["cache_hits"] == done and res["units_translated_now"] == full["distinct_units"] - done
    for name in ("pairs.jsonl", "binary.jsonl", "rejects.jsonl"):
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "full" / name).read_bytes()
