"""Local batched generation with Hugging Face transformers, CPU or GPU.

Prompts are built with the tokenizer's own chat template; batches are left-padded
(decoder-only models continue from the last position, so padding must sit on the
left) and sorted by length so that little compute is spent on padding.

Example::

    eng = TransformersEngine("cyberagent/calm3-22b-chat", device="cuda", dtype="bfloat16")
    eng.generate([[{"role": "user", "content": "Hello"}]], Sampling(max_tokens=32))
"""

from __future__ import annotations

from typing import Any

from jprefs.errors import ConfigError
from jprefs.translate.engines import Generation, Sampling, apply_stop


class TransformersEngine:
    """``AutoModelForCausalLM`` + ``apply_chat_template``; safetensors only, no remote code."""

    name = "transformers"

    def __init__(self, model: str, revision: str | None = None, device: str = "auto", dtype: str = "auto",
                 batch_size: int = 8, seed: int = 0, **_: Any):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model = model
        self.revision = revision
        self.batch_size = max(1, int(batch_size))
        self.seed = seed
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        from jprefs.hub import hub_model

        with hub_model(model, revision):  # a Hub id offline and not cached: one line naming it
            self.tok = AutoTokenizer.from_pretrained(model, revision=revision, trust_remote_code=False)
        if self.tok.chat_template is None:
            raise ConfigError(f"tokenizer of {model} has no chat template; the translate stage renders prompts "
                              "with the model's chat template\n  fix: use a chat/instruct model")
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
        with hub_model(model, revision):
            self.lm = AutoModelForCausalLM.from_pretrained(model, revision=revision, trust_remote_code=False,
                                                           use_safetensors=True, dtype=torch_dtype).to(device)
        self.lm.eval()
        self._torch = torch

    def generate(self, conversations: list[list[dict[str, str]]], sampling: Sampling) -> list[Generation]:
        """Generate for every conversation, ``batch_size`` at a time; results in input order."""
        torch = self._torch
        texts = [self.tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
        ids = [self.tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # similar lengths share a batch
        out: list[Generation | None] = [None] * len(ids)
        # every id that ends a turn: the tokenizer's, and the generation config's (Gemma-2's <end_of_turn>,
        # Llama-3's <|eot_id|>): generate stops on those too, and an answer that ended there is not cut off
        gen_eos = getattr(getattr(self.lm, "generation_config", None), "eos_token_id", None)
        gen_eos = [gen_eos] if isinstance(gen_eos, int) else list(gen_eos or [])
        eos = {self.tok.eos_token_id, self.tok.pad_token_id, *gen_eos} - {None}
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        for b in range(0, len(order), self.batch_size):
            idx = order[b:b + self.batch_size]
            batch = self.tok.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt").to(self.device)
            kw: dict[str, Any] = dict(max_new_tokens=sampling.max_tokens, pad_token_id=self.tok.pad_token_id)
            if sampling.temperature > 0:
                kw.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
            else:
                kw.update(do_sample=False)
            with torch.no_grad():
                gen = self.lm.generate(**batch, **kw)  # (B, T_prompt + T_new)
            new = gen[:, batch["input_ids"].shape[1]:]  # (B, T_new): left padding aligns all prompts
            for row, i in zip(new.tolist(), idx):
                n = len(row)
                while n and row[n - 1] == self.tok.pad_token_id:  # finished rows are right-padded
                    n -= 1
                # generate stops before max_new_tokens only when every row of the batch has ended
                ended = n < len(row) or (n > 0 and row[n - 1] in eos) or len(row) < sampling.max_tokens
                toks = row[:n - 1] if (n and row[n - 1] in eos) else row[:n]
                text, cut = apply_stop(self.tok.decode(toks, skip_special_tokens=True), sampling.stop)
                out[i] = Generation(text=text, finish_reason="stop" if (ended or cut) else "length",
                                    prompt_tokens=len(ids[i]), completion_tokens=len(toks))
        return out  # type: ignore[return-value]

    def close(self) -> None:
        self.lm = None
