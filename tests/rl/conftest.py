"""Tiny models for the RL tests: a 10-token character vocabulary and a 2-layer GPT-2.

A tiny vocabulary makes rewards such as "count of the letter a" learnable in a
few dozen steps on a CPU, so the tests can check that training moves the reward.
"""

import pytest

CHARS = "abcdefgh"


def char_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "<pad>": 1, "<unk>": 2, **{c: i + 3 for i, c in enumerate(CHARS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<pad>", unk_token="<unk>", padding_side="left")


def tiny_gpt2(tok, seed=0, n_embd=32, n_layer=2):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=n_embd, n_layer=n_layer, n_head=2,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=tok.bos_token_id,
                     eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return GPT2LMHeadModel(cfg).eval()


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every RL test runs on one torch thread (tests/conftest.py)."""
    yield


@pytest.fixture
def tok():
    return char_tokenizer()


@pytest.fixture
def model(tok):
    return tiny_gpt2(tok)


def count_a(prompts, responses):
    """Programmatic reward for the tests: how many times the letter a occurs."""
    return [float(r.count("a")) for r in responses]


def neg_count_a(prompts, responses):
    return [-x for x in count_a(prompts, responses)]


_CALLS = [0]


def rank_reward(prompts, responses):
    """Every response scores the RANK of its process (0 in one process), so the logged
    objective/score of a data-parallel run must be the mean over processes.
    With JPREFS_TEST_CRASH_CALL=K in the environment, process 1 dies on its K-th call
    (exit status 3, no clean-up), to test resuming a data-parallel run."""
    import os

    _CALLS[0] += 1
    if os.environ.get("RANK") == "1" and _CALLS[0] == int(os.environ.get("JPREFS_TEST_CRASH_CALL", "0")):
        os._exit(3)
    return [float(os.environ.get("RANK", "0"))] * len(responses)


def nan_reward(prompts, responses):
    """A broken reward: NaN for the second response."""
    return [float("nan") if i == 1 else 1.0 for i in range(len(responses))]
