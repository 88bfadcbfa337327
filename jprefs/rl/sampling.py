"""The one decoding loop of jprefs (rl rollouts, rl evaluation, ``jprefs eval policy``).

:func:`sample` decodes left-padded prompts with a KV cache and explicit position ids; ILQL
passes a ``score_fn`` that adds ``beta_gen * (Q - V)``. :func:`forbid_eos` and
:func:`logprobs_from_logits` let a later forward pass reproduce the distribution the
samples were drawn from.

Beside it, :func:`jprefs.rl.processors.sample_generate` decodes through transformers' ``generate``
with logits processors (``sampler: generate`` in rl recipes, the default; ``sampler: native`` picks
this loop; :func:`jprefs.rl.processors.get_sampler`). Both draw the same tokens for the same seed (tests/rl/
test_processors.py). Speed (bench/rollout_sampler_bench.py, batch 32, prompt 16, 32 new tokens,
1 thread, 9 interleaved repetitions, median generate / native): GPT-2 3L-128H PPO 1.06, ILQL 1.02;
6L-512H PPO 1.00, ILQL 1.03, within the noise of this shared 2-core machine, so this loop is not
measurably faster and stays only as the reference ``sampler: native``.

Example::

    out = sample(model, tok, ["今日は"], max_new_tokens=8, seed=0)
    out.texts[0], out.logprobs.shape      # (1, R)
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from jprefs.rl.policies import encode_prompts, position_ids_from_mask


@dataclass
class Samples:
    """Output of :func:`sample`. ``sequences`` = prompt + response ids, left-padded prompt."""

    sequences: Any        # (B, P + R) long
    attention_mask: Any   # (B, P + R) 1 on real tokens (prompt and response up to EOS)
    response_mask: Any    # (B, R) 1 on response tokens up to and including the first EOS
    prompt_len: int       # P
    texts: list[str]      # decoded responses (without EOS / padding)
    logprobs: Any = None  # (B, R) log-prob of each token under the distribution it was drawn from



def filter_logits(scores, top_k: int = 0, top_p: float = 1.0):
    """Set scores outside the top-k / nucleus to -inf. scores: (B, V)."""
    import torch

    if top_k and top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, idx = torch.sort(scores, descending=True, dim=-1)
        probs = torch.softmax(sorted_scores, dim=-1)
        # drop a token when the mass before it already exceeds top_p (the first token always stays)
        drop = (probs.cumsum(-1) - probs) > top_p
        sorted_scores = sorted_scores.masked_fill(drop, float("-inf"))
        scores = torch.full_like(scores, float("-inf")).scatter(-1, idx, sorted_scores)
    return scores



def forbid_eos(logits, eos_id: int, min_new_tokens: int | None = None):
    """EOS logit -> -inf: for ``(B, V)`` logits of one step, or for the first ``min_new_tokens``
    positions of ``(B, R, V)`` response logits (the same rule :func:`sample` applies)."""
    import torch

    m = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    m[eos_id] = True
    if min_new_tokens is not None:
        pos = torch.arange(logits.shape[-2], device=logits.device) < min_new_tokens
        m = pos[:, None] & m[None, :]
    return logits.masked_fill(m, float("-inf"))



def sample(model, tok, prompts: Sequence[str], *, max_new_tokens: int = 24, temperature: float = 1.0,
           top_k: int = 0, top_p: float = 1.0, prompt_max_tokens: int = 64, seed: int | None = None,
           score_fn: Callable | None = None, min_new_tokens: int = 0) -> Samples:
    """Sample responses to ``prompts`` (same order) with a KV cache.

    ``score_fn(logits (B, V), hidden (B, H)) -> scores (B, V)`` replaces the plain
    ``log_softmax(logits)`` (ILQL adds ``beta_gen * (Q - V)`` there). Temperature 0
    is greedy. A sequence stops after its first EOS; later positions are padding.
    ``min_new_tokens``: EOS is forbidden (probability 0) for the first N response tokens,
    so responses cannot end early (N = max_new_tokens gives fixed-length responses).

    >>> s = sample(model, tok, ["今日は"], max_new_tokens=8)   # doctest: +SKIP
    >>> s.texts[0]                                             # doctest: +SKIP
    """
    import torch

    device = next(model.parameters()).device
    gen = torch.Generator(device=device)
    gen.manual_seed(seed if seed is not None else random.randrange(2**31))
    input_ids, mask = encode_prompts(tok, prompts, prompt_max_tokens, device)
    B, P = input_ids.shape
    eos = tok.eos_token_id
    was_training = model.training
    model.eval()
    out_tokens, out_lps = [], []
    done = torch.zeros(B, dtype=torch.bool, device=device)
    attn = mask.clone()
    with torch.no_grad():
        pos = position_ids_from_mask(attn)
        out = model(input_ids=input_ids, attention_mask=attn, position_ids=pos, use_cache=True,
                    output_hidden_states=score_fn is not None)
        for step in range(max_new_tokens):
            logits = out.logits[:, -1, :].float()                               # (B, V)
            if step < min_new_tokens:
                logits = forbid_eos(logits, eos)
            if score_fn is not None:
                scores = score_fn(logits, out.hidden_states[-1][:, -1, :])      # (B, V)
            else:
                scores = torch.log_softmax(logits, dim=-1)
            if temperature == 0:
                nxt = filter_logits(scores, top_k, top_p).argmax(-1)
                lp = torch.zeros(B, device=device)
            else:
                logp_s = torch.log_softmax(filter_logits(scores / temperature, top_k, top_p), dim=-1)
                nxt = torch.multinomial(logp_s.exp(), 1, generator=gen).squeeze(-1)
                lp = logp_s.gather(-1, nxt[:, None]).squeeze(-1)
            nxt = torch.where(done, torch.full_like(nxt, tok.pad_token_id), nxt)
            out_tokens.append(nxt)
            out_lps.append(torch.where(done, torch.zeros_like(lp), lp))
            attn = torch.cat([attn, (~done).long()[:, None]], dim=1)
            done = done | (nxt == eos)
            if bool(done.all()):
                break
            out = model(input_ids=nxt[:, None], attention_mask=attn, cache=out.cache,
                        position_ids=(attn.sum(-1, keepdim=True) - 1), use_cache=True,
                        output_hidden_states=score_fn is not None)
    model.train(was_training)
    resp = torch.stack(out_tokens, dim=1)                                       # (B, R)
    resp_mask = attn[:, P:]
    texts = [tok.decode([t for t, m in zip(r.tolist(), rm.tolist()) if m and t != eos], skip_special_tokens=True)
             for r, rm in zip(resp, resp_mask)]
    return Samples(torch.cat([input_ids, resp], dim=1), attn, resp_mask, P, texts, torch.stack(out_lps, dim=1))



def logprobs_from_logits(logits, tokens):
    """log p(tokens) under logits. logits (B, T, V), tokens (B, T) -> (B, T)."""
    import torch

    return torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
