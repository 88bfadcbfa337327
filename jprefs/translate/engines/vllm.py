"""vLLM offline batch inference: ``LLM.chat`` with ``SamplingParams``.

Thin on purpose: it follows vLLM's documented offline API and does nothing else.
It cannot run in CI (no GPU; vLLM pins its own torch), so the unit test checks
only the calls it makes, against a stand-in ``vllm`` module.

GPU example (one node, 2 GPUs)::

    jprefs translate translate/recipes/calm3-22b-vllm.yaml input=pairs.jsonl \\
        output=out/ tensor_parallel_size=2
"""

from __future__ import annotations

from typing import Any

from jprefs.errors import require
from jprefs.translate.engines import Generation, Sampling


class VLLMEngine:
    """``vllm.LLM`` wrapper. Prefix caching is on: the shared system/instruction
    prefix of every request is computed once per batch, not once per request."""

    name = "vllm"

    def __init__(self, model: str, revision: str | None = None, tensor_parallel_size: int = 1,
                 max_model_len: int | None = None, gpu_memory_utilization: float = 0.9,
                 dtype: str = "auto", seed: int = 0, enable_prefix_caching: bool = True,
                 **_: Any):
        vllm = require("vllm", "vllm", "the vllm translation engine")
        self.model = model
        self.revision = revision
        self._vllm = vllm
        kw: dict[str, Any] = dict(model=model, revision=revision, tensor_parallel_size=tensor_parallel_size,
                                  gpu_memory_utilization=gpu_memory_utilization, dtype=dtype, seed=seed,
                                  trust_remote_code=False, enable_prefix_caching=enable_prefix_caching)
        if max_model_len:
            kw["max_model_len"] = max_model_len
        from jprefs.hub import hub_model

        with hub_model(model, revision):  # a Hub id offline and not cached: one line naming it
            self.llm = vllm.LLM(**kw)

    def generate(self, conversations: list[list[dict[str, str]]], sampling: Sampling) -> list[Generation]:
        """One ``LLM.chat`` call for the whole batch; vLLM returns outputs in input order."""
        if not conversations:
            return []
        params = self._vllm.SamplingParams(temperature=sampling.temperature, top_p=sampling.top_p,
                                           max_tokens=sampling.max_tokens, seed=sampling.seed,
                                           stop=list(sampling.stop) or None)
        outs = self.llm.chat(conversations, sampling_params=params, use_tqdm=True)
        gens = []
        for o in outs:
            c = o.outputs[0]
            gens.append(Generation(text=c.text, finish_reason=c.finish_reason or "stop",
                                   prompt_tokens=len(o.prompt_token_ids or []),
                                   completion_tokens=len(c.token_ids or [])))
        return gens

    def close(self) -> None:
        self.llm = None
