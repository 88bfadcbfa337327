"""Rollout sampling through transformers' ``generate`` and logits processors.

:func:`sample_generate` has the signature and the :class:`~jprefs.rl.sampling.Samples` result of
:func:`jprefs.rl.sampling.sample` (the hand-written KV-cache loop) and decodes with
``model.generate(..., logits_processor=rollout_processors(...))``. The processors apply the
same rules in the same order as ``sample``:

1. ``MinNewTokensLengthLogitsProcessor`` (transformers): EOS logit -> -inf for the first
   ``min_new_tokens`` response tokens;
2. :class:`ScoreFnProcessor` (only with a ``score_fn``): ``score_fn(logits, hidden)``, e.g.
   ILQL's ``log_softmax(logits) + beta * (min_i target_q_i - v)``
   (:func:`jprefs.rl.ilql.ilql_processor`);
3. ``TemperatureLogitsWarper``, ``TopKLogitsWarper``, ``TopPLogitsWarper`` (transformers; only
   when sampling, i.e. ``temperature > 0``).

Hidden states: ``generate`` hands a processor only ``(input_ids, scores)``, never the model's
outputs, and ``output_hidden_states=True`` would only collect every layer of every step for the
returned dict. So :class:`ScoreFnProcessor` reads the last hidden state where it is cheapest and
exact: a forward pre-hook on the model's output embeddings (the LM head) keeps the head's input
at the last position, which is ``hidden_states[-1][:, -1]`` of the same forward (what ``sample``
passes to ``score_fn``). The hook is registered only inside :meth:`ScoreFnProcessor.hook`.

Log-probabilities: ``Samples.logprobs[b, t]`` is the log-probability of the sampled token under
the distribution it was actually drawn from, after the EOS rule, the ``score_fn``, temperature,
top-k and top-p (``log_softmax`` of generate's processed ``scores``), as ``sample`` returns; 0 for
greedy decoding (``temperature=0``) and after the first EOS. With temperature 1 and no top-k/top-p
this is the policy's own log-probability, the one PPO's ratios and KL use.

The model's own ``generation_config`` (a checkpoint's ``top_k=50``, ``repetition_penalty`` ...)
is set aside during the call, so ``generate`` applies exactly these processors and nothing else.
Randomness: the device's default generator is seeded with ``seed`` inside
``torch.random.fork_rng``, so the caller's global RNG state is left as it was.

Example::

    s = sample_generate(model, tok, ["今日は"], max_new_tokens=8, seed=0)
    s.texts[0], s.logprobs.shape          # (1, R)
"""

from __future__ import annotations

import contextlib
import random
from typing import Callable, Sequence

from transformers import LogitsProcessor, LogitsProcessorList

from jprefs.rl.sampling import Samples

__all__ = ["ScoreFnProcessor", "rollout_processors", "sample_generate", "get_sampler"]


class ScoreFnProcessor(LogitsProcessor):
    """``scores -> score_fn(scores (B, V), hidden (B, H))`` with the hidden state of the position
    being decoded, taken by a forward pre-hook on the model's LM head (see :meth:`hook`).

    >>> proc = ScoreFnProcessor(lambda logits, h: logits + h.sum(-1, keepdim=True))   # doctest: +SKIP
    >>> with proc.hook(model):                                                        # doctest: +SKIP
    ...     model.generate(ids, logits_processor=LogitsProcessorList([proc]))
    """

    needs_hidden = True

    def __init__(self, score_fn: Callable):
        self.score_fn = score_fn
        self.hidden = None                      # (B, H): set by the hook on every forward

    @contextlib.contextmanager
    def hook(self, model):
        """Register the pre-hook on ``model.get_output_embeddings()`` for the ``with`` block."""
        head = model.get_output_embeddings()
        if head is None:
            raise ValueError(f"{type(model).__name__} has no output embeddings (LM head) to read hidden states from")

        def keep(_module, args):
            self.hidden = args[0][:, -1, :]     # (B, k, H) -> (B, H); k = 1 with logits_to_keep=1

        handle = head.register_forward_pre_hook(keep)
        try:
            yield self
        finally:
            handle.remove()
            self.hidden = None

    def __call__(self, input_ids, scores):
        if self.needs_hidden and self.hidden is None:
            raise RuntimeError("ScoreFnProcessor has no hidden state: call generate inside `with proc.hook(model):`")
        if self.hidden is not None and self.hidden.shape[0] != scores.shape[0]:
            raise RuntimeError(f"hidden states for {self.hidden.shape[0]} rows, scores for {scores.shape[0]}")
        return self.score_fn(scores, self.hidden)


def rollout_processors(*, prompt_len: int, eos_token_id: int, min_new_tokens: int = 0, score_fn=None,
                       temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                       device="cpu") -> LogitsProcessorList:
    """The processors of :func:`sample`'s rules, in its order (module docstring). ``score_fn`` is a
    ``(logits, hidden) -> scores`` callable or a :class:`ScoreFnProcessor`; ``temperature = 0``
    (greedy) leaves out the warpers (argmax is unchanged by them)."""
    from transformers import (MinNewTokensLengthLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper,
                              TopPLogitsWarper)

    procs = LogitsProcessorList()
    if min_new_tokens > 0:
        procs.append(MinNewTokensLengthLogitsProcessor(prompt_len, min_new_tokens, eos_token_id, device=device))
    if score_fn is not None:
        procs.append(score_fn if isinstance(score_fn, ScoreFnProcessor) else ScoreFnProcessor(score_fn))
    if temperature > 0:
        if temperature != 1.0:
            procs.append(TemperatureLogitsWarper(temperature))
        if top_k:
            procs.append(TopKLogitsWarper(top_k))
        if top_p < 1.0:
            procs.append(TopPLogitsWarper(top_p))
    return procs


def _seeded(device, seed: int):
    """``fork_rng`` over the CPU and ``device`` with their default generators seeded with ``seed``
    (generate draws from them), so the caller's RNG state is the same afterwards."""
    import torch

    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    stack = contextlib.ExitStack()
    stack.enter_context(torch.random.fork_rng(devices=cuda, device_type="cuda"))
    torch.default_generator.manual_seed(seed)
    if cuda:
        torch.cuda.default_generators[cuda[0]].manual_seed(seed)
    return stack


@contextlib.contextmanager
def _own_generation_config(model, tok):
    """The model's generation_config replaced by a bare one for the call (no checkpoint defaults)."""
    from transformers import GenerationConfig

    saved = getattr(model, "generation_config", None)
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id)
    try:
        yield
    finally:
        model.generation_config = saved


def sample_generate(model, tok, prompts: Sequence[str], *, max_new_tokens: int = 24, temperature: float = 1.0,
                    top_k: int = 0, top_p: float = 1.0, prompt_max_tokens: int = 64, seed: int | None = None,
                    score_fn: Callable | None = None, min_new_tokens: int = 0) -> Samples:
    """:func:`jprefs.rl.sampling.sample` through ``model.generate`` and :func:`rollout_processors`:
    same arguments, same :class:`Samples` (left-padded prompt + response, masks up to and including
    the first EOS, logprobs of the sampled distribution, decoded texts).

    >>> s = sample_generate(model, tok, ["今日は"], max_new_tokens=8, seed=0)   # doctest: +SKIP
    """
    import torch
    from transformers import GenerationConfig

    from jprefs.rl.policies import encode_prompts

    device = next(model.parameters()).device
    input_ids, mask = encode_prompts(tok, prompts, prompt_max_tokens, device)
    B, P = input_ids.shape
    eos, pad = tok.eos_token_id, tok.pad_token_id
    proc = None
    if score_fn is not None:
        proc = score_fn if isinstance(score_fn, ScoreFnProcessor) else ScoreFnProcessor(score_fn)
    procs = rollout_processors(prompt_len=P, eos_token_id=eos, min_new_tokens=min_new_tokens, score_fn=proc,
                               temperature=temperature, top_k=top_k, top_p=top_p, device=device)
    do_sample = temperature > 0
    # every value that would add a processor of generate's own is neutral (greedy: generate's warpers
    # are off anyway); the rules are all in procs
    neutral = dict(temperature=1.0, top_k=0, top_p=1.0) if do_sample else {}
    gcfg = GenerationConfig(max_new_tokens=max_new_tokens, min_new_tokens=0, do_sample=do_sample, num_beams=1,
                            use_cache=True, return_dict_in_generate=True, output_scores=do_sample,
                            bos_token_id=tok.bos_token_id, eos_token_id=eos, pad_token_id=pad, **neutral)
    was_training = model.training
    model.eval()
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(_seeded(device, seed if seed is not None else random.randrange(2**31)))
            stack.enter_context(_own_generation_config(model, tok))
            if proc is not None:
                stack.enter_context(proc.hook(model))
            out = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=gcfg,
                                 logits_processor=procs)
    finally:
        model.train(was_training)

    resp = out.sequences[:, P:]                                                  # (B, R)
    R = resp.shape[1]
    is_eos = resp == eos
    # 1 up to and including the first EOS (pad may equal EOS: only the first one counts)
    before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()                   # EOS strictly before t
    resp_mask = (before == 0).long()
    resp = torch.where(resp_mask.bool(), resp, torch.full_like(resp, pad))
    if do_sample and R:
        scores = torch.stack(out.scores, dim=1).float()                          # (B, R, V) processed
        lps = torch.log_softmax(scores, dim=-1).gather(-1, resp.clamp(min=0)[..., None]).squeeze(-1)
        lps = torch.where(resp_mask.bool(), lps, torch.zeros_like(lps))
    else:
        lps = torch.zeros((B, R), device=device)
    attn = torch.cat([mask, resp_mask], dim=1)
    texts = [tok.decode([t for t, m in zip(r.tolist(), rm.tolist()) if m and t != eos], skip_special_tokens=True)
             for r, rm in zip(resp, resp_mask)]
    return Samples(torch.cat([input_ids, resp], dim=1), attn, resp_mask, P, texts, lps)


SAMPLERS = ("native", "generate")


def get_sampler(name: str = "native") -> Callable:
    """The sampler a config's ``sampler`` key names: ``native`` = :func:`jprefs.rl.sampling.sample`,
    ``generate`` = :func:`sample_generate` (transformers' generate + logits
    processors; same arguments, same :class:`Samples`, the same tokens for the same seed)."""
    if name == "native":
        from jprefs.rl.sampling import sample

        return sample
    if name == "generate":
        return sample_generate
    raise ValueError(f"sampler {name!r} is not one of {', '.join(SAMPLERS)}")
