"""Decoding: left padding and masks agree with Hugging Face generate, beta_gen = 0 is the
behaviour-cloned LM, and the PPO KL estimate is unbiased (so never persistently negative)."""

import copy

import pytest

torch = pytest.importorskip("torch")

from jprefs.rl.sampling import filter_logits, sample  # noqa: E402
from jprefs.rl.ilql import ilql_score_fn, make_heads  # noqa: E402
from jprefs.rl.ppo import forward_response  # noqa: E402

PROMPTS = ["abc", "h", "defgabc", ""]


def test_greedy_sample_matches_hf_generate_with_left_padding(model, tok):
    s = sample(model, tok, PROMPTS, max_new_tokens=6, temperature=0)
    for i, p in enumerate(PROMPTS):
        ids = torch.tensor([[tok.bos_token_id] + tok(p, add_special_tokens=False)["input_ids"]])
        ref = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=6,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        gen = [t for t in ref[0, ids.shape[1]:].tolist() if t != tok.pad_token_id]
        n = int(s.response_mask[i].sum())
        assert s.sequences[i, s.prompt_len:s.prompt_len + n].tolist() == gen[:n]
        assert n == len(gen)


def test_response_mask_stops_at_eos(model, tok):
    s = sample(model, tok, PROMPTS * 8, max_new_tokens=10, seed=1)
    eos = tok.eos_token_id
    for seq, m in zip(s.sequences[:, s.prompt_len:], s.response_mask):
        toks = seq.tolist()
        n = int(m.sum())
        assert m[:n].all() and not m[n:].any()                       # a prefix
        if eos in toks:
            assert n == toks.index(eos) + 1                          # EOS included, nothing after
        else:
            assert n == len(toks)


def test_beta_gen_zero_is_the_behaviour_cloned_lm(model, tok):
    heads = make_heads(model.config.n_embd, len(tok), two_qs=True)
    with torch.no_grad():                                            # make the heads matter
        for p in heads.parameters():
            p.normal_(0, 1.0)
    logits = torch.randn(3, len(tok))
    h = torch.randn(3, model.config.n_embd)
    assert torch.equal(ilql_score_fn(heads, 0.0)(logits, h), torch.log_softmax(logits, -1))
    assert not torch.allclose(ilql_score_fn(heads, 2.0)(logits, h), torch.log_softmax(logits, -1))
    # Same seed: ILQL decoding at beta_gen = 0 draws exactly the LM's samples; beta_gen = 4 does not.
    plain = sample(model, tok, PROMPTS * 4, max_new_tokens=8, seed=3)
    bc = sample(model, tok, PROMPTS * 4, max_new_tokens=8, seed=3, score_fn=ilql_score_fn(heads, 0.0))
    steered = sample(model, tok, PROMPTS * 4, max_new_tokens=8, seed=3, score_fn=ilql_score_fn(heads, 4.0))
    assert plain.texts == bc.texts
    assert steered.texts != plain.texts


def test_top_k_top_p_filter():
    s = torch.log_softmax(torch.tensor([[3.0, 2.0, 1.0, 0.0]]), -1)
    assert torch.isinf(filter_logits(s, top_k=2)).tolist() == [[False, False, True, True]]
    p = s.exp()[0]
    kept = torch.isfinite(filter_logits(s, top_p=float(p[0] + 0.01)))[0].tolist()
    assert kept == [True, True, False, False]


def test_kl_estimate_is_unbiased_and_not_negative(model, tok):
    torch.manual_seed(0)
    ref = copy.deepcopy(model)
    s0 = sample(model, tok, PROMPTS * 4, max_new_tokens=8, seed=5)
    with torch.no_grad():
        _, lp, _ = forward_response(model, None, s0.sequences, s0.attention_mask, s0.prompt_len, need_values=False)
        _, lr, _ = forward_response(ref, None, s0.sequences, s0.attention_mask, s0.prompt_len, need_values=False)
    assert torch.equal(lp, lr)                                       # identical models: KL exactly 0
    with torch.no_grad():                                            # move the policy away from the reference
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    s = sample(model, tok, PROMPTS * 48, max_new_tokens=8, seed=6)
    m = s.response_mask.float()
    with torch.no_grad():
        logits, lp, _ = forward_response(model, None, s.sequences, s.attention_mask, s.prompt_len,
                                         need_values=False)
        ref_logits, lr, _ = forward_response(ref, None, s.sequences, s.attention_mask, s.prompt_len,
                                             need_values=False)
    est = ((lp - lr) * m).sum(1)                                     # the PPO per-sequence estimate
    # analytic KL(pi || ref) of each next-token distribution along the same trajectories (always >= 0)
    logp, logq = torch.log_softmax(logits, -1), torch.log_softmax(ref_logits, -1)
    exact = ((logp.exp() * (logp - logq)).sum(-1) * m).sum(1)
    assert (exact >= 0).all()
    assert est.mean() > 0
    se = est.std() / len(est) ** 0.5
    assert abs(est.mean() - exact.mean()) < 4 * se + 0.02
