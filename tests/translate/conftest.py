"""Fixtures for the translate tests: the prompt template, a local OpenAI-compatible
server with a reversible fake translator, and small preference sets written to disk."""

from __future__ import annotations

import pytest

from jprefs.data.io import write_jsonl
from jprefs.data.schema import Message, PreferencePair
from jprefs.translate.prompts import load_template
from tests.translate.fake_server import FakeServer

TEMPLATE = "builtin:en-ja"


@pytest.fixture
def template():
    return load_template(TEMPLATE)


@pytest.fixture
def server(template):
    with FakeServer(template) as s:
        yield s


def make_pairs(n: int = 12) -> list[PreferencePair]:
    """Multi-turn pairs with shared prompts, shared first turns, code, URLs and long texts."""
    pairs = []
    for i in range(n):
        first = f"Hi, I need help with topic number {i % 3}."  # shared across rows
        prompt = [Message("user", first),
                  Message("assistant", "Sure, what exactly would you like to know?"),
                  Message("user", f"How do I do thing {i}? The docs at https://example.com/doc/{i} did not help.")]
        chosen = (f"Here is how to do thing {i}.\n\n```python\nprint('thing {i}')\n```\n\n"
                  f"Run `python main.py` afterwards. " + " ".join(f"Sentence {j} explains step {j} carefully."
                                                                  for j in range(12 if i % 4 == 0 else 2)))
        rejected = "I do not know, try searching the web." if i % 2 else f"Maybe ask someone else about thing {i}."
        pairs.append(PreferencePair.create(prompt, chosen, rejected, source="hh-rlhf", source_id=str(i), license="mit"))
    return pairs


@pytest.fixture
def pairs_file(tmp_path):
    p = tmp_path / "pairs.jsonl"
    write_jsonl(p, make_pairs())
    return p


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory):
    """A 2-layer, hidden-16 Llama with a byte-level tokenizer and a ChatML template, built offline.

    Its output is gibberish; tests use it for mechanics (order, batching, resume), not quality."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="<|im_end|>", pad_token="<pad>",
                                  additional_special_tokens=["<|im_start|>"])
    tok.chat_template = CHATML
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg)
    path = tmp_path_factory.mktemp("tiny-lm")
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return str(path)
