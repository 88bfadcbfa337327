"""Policies: the tiny CPU policy (tokenizer trained here + small GPT-2), loading a causal LM,
and the prompt encoding every forward pass shares (left padding, BOS, position ids).

- :func:`build_tiny_policy` trains a byte-level BPE tokenizer on Japanese text and
  builds a small GPT-2 from a config, so that a CPU run needs no download.
- :func:`load_policy` loads any Hugging Face causal LM (safetensors only,
  ``trust_remote_code`` off unless asked for).

Example::

    model, tok = build_tiny_policy(["今日はいい天気だ。"] * 50, vocab_size=300)
    ids, mask = encode_prompts(tok, ["今日は"], max_tokens=64, device=model.device)
"""

from __future__ import annotations

import os
from typing import Sequence

from jprefs.errors import ConfigError
from jprefs.rl.device import resolve_device

BOS = "<|endoftext|>"
PAD = "<pad>"


def train_tokenizer(texts: Sequence[str], vocab_size: int = 3000, kind: str = "char"):
    """A byte-level BPE tokenizer trained on ``texts``, as a ``PreTrainedTokenizerFast``.

    Byte-level BPE never produces unknown tokens. ``kind="char"`` (default) keeps
    merges inside characters: the vocabulary is the ``vocab_size`` most useful
    Japanese characters and rarer ones fall back to bytes. A prompt then always ends
    on a token boundary seen in training (with merges across characters, a prompt
    such as 今日の天気は can end in a token that only ever appeared as part of
    は+とても, which derails tiny models). ``kind="bpe"`` merges across characters.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if kind not in ("char", "bpe"):
        raise ConfigError(f"config key 'tiny_tokenizer': {kind!r} is not one of char, bpe")
    tok = Tokenizer(models.BPE())
    # No whitespace splitting (Japanese has none); "char" isolates every character first.
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.pre_tokenizer = byte_level if kind == "bpe" else pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex("."), "isolated"), byte_level])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=BOS, pad_token=PAD,
                                   unk_token=None, padding_side="left", model_max_length=1024)



def build_tiny_policy(texts: Sequence[str], *, vocab_size: int = 3000, n_embd: int = 128, n_layer: int = 4,
                      n_head: int = 4, n_positions: int = 256, seed: int = 0, tokenizer: str = "char"):
    """A small randomly initialised GPT-2 and a tokenizer trained on ``texts``.

    Dropout is 0: PPO ratios and ILQL targets must not be noisy.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = train_tokenizer(texts, vocab_size, tokenizer)
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tok), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                        n_head=n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        pad_token_id=tok.pad_token_id)
    return GPT2LMHeadModel(config), tok



def _dtype(name: str, device):
    import torch

    if name == "auto":
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise ConfigError(f"config key 'dtype': {name!r} is not one of auto, float32, bfloat16, float16") from None



def load_policy(name_or_path: str, *, device=None, dtype: str = "auto", trust_remote_code: bool = False):
    """A causal LM and its tokenizer (left padding, a pad token) from a directory or Hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or resolve_device()
    if os.path.exists(name_or_path):
        from jprefs.modeldir import check_model_dir

        check_model_dir(name_or_path, want="policy")    # an rl run folder, an unfinished run, a reward model ...
    from jprefs.hub import hub_model

    try:
        with hub_model(name_or_path):  # a Hub id offline and not cached: one line naming it
            tok = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=_dtype(dtype, device),
                                                         use_safetensors=True, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise ConfigError(f"cannot load policy {name_or_path!r}: {e}\n  fix: give a local directory with "
                          "model.safetensors, a reachable Hub id, or policy=tiny") from e
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tok.eos_token is None:
        raise ConfigError(f"tokenizer of {name_or_path!r} has no EOS token; responses could never end")
    return model.to(device), tok



def encode_prompts(tok, prompts: Sequence[str], max_tokens: int, device):
    """Left-padded prompt ids ``(B, P)`` and mask; every prompt starts with BOS when the
    tokenizer has one, so that empty prompts still give the model a state."""
    import torch

    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    ids = [bos + tok(p, add_special_tokens=False)["input_ids"][-max_tokens:] for p in prompts]
    ids = [x if x else [tok.eos_token_id] for x in ids]
    P = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), P), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids), P), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, P - len(x):] = torch.tensor(x)
        mask[i, P - len(x):] = 1
    return input_ids.to(device), mask.to(device)



def position_ids_from_mask(mask):
    """Positions counted over real tokens only, so left padding does not shift them. (B, T)"""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)

