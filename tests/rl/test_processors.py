"""jprefs.rl.processors: the logits processors against hand-computed scores, and sample_generate
(transformers generate + processors) against the hand-written sampler token for token."""

import pytest

torch = pytest.importorskip("torch")

from transformers import GenerationConfig, LogitsProcessorList  # noqa: E402

from jprefs.rl.ilql import ilql_processor, ilql_score_fn, make_heads  # noqa: E402
from jprefs.rl.processors import (ScoreFnProcessor, get_sampler, rollout_processors,  # noqa: E402
                                  sample_generate)
from jprefs.rl.sampling import sample  # noqa: E402

PROMPTS = ["abc", "h", "defgabc", ""] * 2          # left padding: prompts of 1 .. 8 tokens


def random_heads(model, tok, seed=0):
    torch.manual_seed(seed)
    heads = make_heads(model.config.n_embd, len(tok), two_qs=True)
    with torch.no_grad():                          # large enough to change what is decoded
        for p in heads.parameters():
            p.normal_(0, 1.0)
    return heads


def test_ilql_processor_is_logsoftmax_plus_beta_advantage(model, tok):
    heads = random_heads(model, tok)
    logits, h = torch.randn(3, len(tok)), torch.randn(3, model.config.n_embd)
    proc = ilql_processor(heads, 0.5)
    proc.hidden = h
    with torch.no_grad():
        q1, q2 = heads.target_q_heads[0](h), heads.target_q_heads[1](h)
        adv = torch.minimum(q1, q2) - heads.v_head(h)          # (3, V) - (3, 1)
        want = logits - torch.logsumexp(logits, -1, keepdim=True) + 0.5 * adv
        assert torch.allclose(proc(None, logits), want, atol=1e-5)
    # beta 0: the LM's log-distribution, with no hidden state needed
    assert torch.allclose(ilql_processor(heads, 0.0)(None, logits), torch.log_softmax(logits, -1))
    with pytest.raises(RuntimeError, match="hook"):
        ilql_processor(heads, 1.0)(None, logits)


def test_rollout_processors_apply_sample_rules_in_order():
    V, eos = 6, 0
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.5, 0.0, -1.0]])
    ids = torch.zeros((1, 4), dtype=torch.long)                # prompt of 4, no new token yet
    procs = rollout_processors(prompt_len=4, eos_token_id=eos, min_new_tokens=2, temperature=0.5, top_k=3)
    assert [type(p).__name__ for p in procs] == ["MinNewTokensLengthLogitsProcessor", "TemperatureLogitsWarper",
                                                 "TopKLogitsWarper"]
    out = procs(ids, logits.clone())
    # EOS forbidden, then / 0.5, then the 3 best of what is left: tokens 1, 2, 3
    want = torch.full((1, V), float("-inf"))
    want[0, 1:4] = torch.tensor([4.0, 2.0, 1.0])
    assert torch.equal(out, want)
    # after min_new_tokens new tokens EOS is allowed again
    out2 = procs(torch.zeros((1, 6), dtype=torch.long), logits.clone())
    assert torch.isfinite(out2[0, eos]) and out2[0, eos] == 6.0
    # top-p keeps the smallest set whose mass reaches p (the first token always)
    p = torch.softmax(logits, -1)[0]
    nucleus = rollout_processors(prompt_len=4, eos_token_id=eos, top_p=float(p[0] + 0.01))(ids, logits.clone())
    assert torch.isfinite(nucleus[0]).tolist() == [True, True, False, False, False, False]
    assert len(rollout_processors(prompt_len=4, eos_token_id=eos, temperature=0, top_k=3)) == 0   # greedy


@pytest.mark.parametrize("kw", [dict(), dict(min_new_tokens=6), dict(ilql=True)], ids=["plain", "min_new", "ilql"])
def test_greedy_generate_equals_hand_written(model, tok, kw):
    kw = dict(kw)
    if kw.pop("ilql", False):
        kw["score_fn"] = ilql_score_fn(random_heads(model, tok), 2.0)
        plain = sample(model, tok, PROMPTS, max_new_tokens=8, temperature=0)
    a = sample(model, tok, PROMPTS, max_new_tokens=8, temperature=0, **kw)
    b = sample_generate(model, tok, PROMPTS, max_new_tokens=8, temperature=0, **kw)
    assert b.prompt_len == a.prompt_len
    assert torch.equal(b.sequences, a.sequences)
    assert torch.equal(b.attention_mask, a.attention_mask) and torch.equal(b.response_mask, a.response_mask)
    assert b.texts == a.texts
    assert torch.equal(b.logprobs, torch.zeros_like(b.logprobs))          # greedy: 0, as sample
    if "score_fn" in kw:
        assert a.texts != plain.texts                                      # the advantage changed the decoding
    if kw.get("min_new_tokens"):
        assert not (b.sequences[:, b.prompt_len:b.prompt_len + 6] == tok.eos_token_id).any()


@pytest.mark.parametrize("kw", [dict(), dict(min_new_tokens=5), dict(temperature=0.7, top_k=4),
                                dict(top_p=0.8), dict(ilql=True)], ids=["plain", "min_new", "topk", "topp", "ilql"])
def test_sampled_generate_draws_what_sample_draws_with_its_logprobs(model, tok, kw):
    kw = dict(kw)
    if kw.pop("ilql", False):
        kw.update(score_fn=ilql_score_fn(random_heads(model, tok), 1.0), top_k=5)
    a = sample(model, tok, PROMPTS * 2, max_new_tokens=10, seed=7, **kw)
    b = sample_generate(model, tok, PROMPTS * 2, max_new_tokens=10, seed=7, **kw)
    # the same seed seeds the same generator type: the very same tokens, and the same sampled distribution
    assert torch.equal(b.sequences, a.sequences) and torch.equal(b.response_mask, a.response_mask)
    assert torch.allclose(b.logprobs, a.logprobs, atol=1e-5)
    m = b.response_mask.bool()
    assert (b.logprobs[m] <= 0).all() and torch.isfinite(b.logprobs).all() and (b.logprobs[~m] == 0).all()
    c = sample_generate(model, tok, PROMPTS * 2, max_new_tokens=10, seed=7, **kw)
    assert torch.equal(c.sequences, b.sequences) and torch.equal(c.logprobs, b.logprobs)   # same seed
    d = sample_generate(model, tok, PROMPTS * 2, max_new_tokens=10, seed=8, **kw)
    assert not torch.equal(d.sequences, b.sequences)


def test_logprobs_equal_a_recomputed_forward_pass(model, tok):
    from jprefs.rl.ppo import forward_response

    for n in (0, 4):
        s = sample_generate(model, tok, PROMPTS * 2, max_new_tokens=10, seed=3, min_new_tokens=n)
        with torch.no_grad():
            _, lp, _ = forward_response(model, None, s.sequences, s.attention_mask, s.prompt_len, need_values=False,
                                        min_new=(n, tok.eos_token_id))
        m = s.response_mask.bool()
        assert (lp[m] - s.logprobs[m]).abs().max() < 1e-5
    # with top-k the sampled distribution is renormalised over the top k: not the model's logprob
    s = sample_generate(model, tok, PROMPTS * 2, max_new_tokens=10, seed=3, top_k=3)
    with torch.no_grad():
        _, lp, _ = forward_response(model, None, s.sequences, s.attention_mask, s.prompt_len, need_values=False)
    m = s.response_mask.bool()
    assert (s.logprobs[m] > lp[m] + 1e-3).all()


def test_hidden_state_hook_reads_the_last_hidden_state(model, tok):
    seen = []
    proc = ScoreFnProcessor(lambda logits, h: (seen.append(h.clone()), torch.log_softmax(logits, -1))[1])
    ids = torch.tensor([[tok.bos_token_id, 3, 4, 5]])
    with proc.hook(model):
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=2, do_sample=False,
                       logits_processor=LogitsProcessorList([proc]), pad_token_id=tok.pad_token_id)
    assert proc.hidden is None and not model.get_output_embeddings()._forward_pre_hooks    # removed
    with torch.no_grad():
        ref = model(ids, output_hidden_states=True).hidden_states[-1][:, -1]
    assert torch.allclose(seen[0], ref, atol=1e-5)


def test_model_generation_config_and_global_rng_are_left_alone(model, tok):
    model.generation_config = GenerationConfig(top_k=2, repetition_penalty=3.0, do_sample=True, temperature=0.3,
                                               min_new_tokens=3)
    for kw in (dict(temperature=0), dict(seed=2)):
        a = sample(model, tok, PROMPTS, max_new_tokens=8, **kw)
        b = sample_generate(model, tok, PROMPTS, max_new_tokens=8, **kw)
        assert torch.equal(a.sequences, b.sequences)
    assert model.generation_config.top_k == 2                              # restored
    torch.manual_seed(123)
    x = torch.rand(3)
    torch.manual_seed(123)
    sample_generate(model, tok, PROMPTS, max_new_tokens=4, seed=5)
    assert torch.equal(torch.rand(3), x)


def test_get_sampler():
    assert get_sampler("native") is sample and get_sampler("generate") is sample_generate
    with pytest.raises(ValueError, match="native, generate"):
        get_sampler("vllm")


def test_ppo_runs_alike_with_either_sampler_and_the_key_is_validated(tmp_path, tok):
    import json

    from jprefs.config import load_config
    from jprefs.errors import ConfigError
    from jprefs.rl.config import RLConfig
    from jprefs.rl.ppo import train_ppo

    from .conftest import count_a, tiny_gpt2

    base = dict(algo="ppo", reward_type="callable", reward_model="tests.rl.conftest:count_a", total_steps=2,
                batch_size=8, minibatch_size=4, ppo_epochs=1, max_new_tokens=6, eval_every=100, eval_samples=1,
                eval_prompts="builtin:ja-tiny-eval", seed=0)
    assert load_config(RLConfig, base).sampler == "generate"
    rows = {}
    for name in ("native", "generate"):
        cfg = load_config(RLConfig, dict(base, sampler=name))
        train_ppo(cfg, tmp_path / name, model=tiny_gpt2(tok), tok=tok, reward_fn=count_a, prompts=["", "b", "cd"])
        rows[name] = [json.loads(x) for x in open(tmp_path / name / "metrics.jsonl", encoding="utf-8")]
    keys = ("objective/score", "objective/kl", "objective/response_tokens", "losses/total")
    for a, b in zip(rows["native"], rows["generate"]):
        for k in keys:
            if k in a:
                assert b[k] == pytest.approx(a[k], abs=1e-5), k
    with pytest.raises(ConfigError, match="sampler"):
        load_config(RLConfig, dict(base, sampler="vllm"))
