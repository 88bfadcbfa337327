"""GPU check of the transformers engine (skipped without CUDA): same outputs as on CPU."""

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_transformers_engine_on_gpu_matches_cpu(tiny_lm, template):
    from jprefs.translate.engines import Sampling, get_engine

    convs = [template.messages([t]) for t in ("Hi.", "A longer sentence to translate here.", "Medium text.")]
    s = Sampling(max_tokens=6)
    gpu = get_engine("transformers", model=tiny_lm, device="cuda", dtype="float32", batch_size=3).generate(convs, s)
    cpu = get_engine("transformers", model=tiny_lm, device="cpu", dtype="float32", batch_size=3).generate(convs, s)
    assert [g.prompt_tokens for g in gpu] == [g.prompt_tokens for g in cpu]
    assert [g.text for g in gpu] == [g.text for g in cpu]  # tiny fp32 model: greedy tokens agree
