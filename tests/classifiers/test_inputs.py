"""Input encoding: sentence pairs, left-truncated prompts, right-truncated responses, batching."""

from __future__ import annotations

from jprefs.classifiers.inputs import encode_pairs, length_batches, model_max_length
from jprefs.data.schema import Message

from .conftest import make_tokenizer


def _tokens(tok, ids):
    return tok.convert_ids_to_tokens(ids)


def test_pair_matches_tokenizer_call_when_nothing_is_cut():
    tok = make_tokenizer()
    enc = encode_pairs(tok, ["日本の首都は?"], ["東京です。"], max_length=64)
    ref = tok("日本の首都は?", "東京です。")
    assert enc.input_ids[0] == ref["input_ids"]
    assert enc.token_type_ids[0] == ref["token_type_ids"]
    assert enc.truncated == [False]


def test_truncation_keeps_the_end_of_long_prompts_and_the_start_of_responses():
    tok = make_tokenizer()
    prompt = "あ" * 30 + "いうえお"        # the end (いうえお) must survive
    response = "かきくけこ" + "さ" * 40      # the start (かきくけこ) must survive
    enc = encode_pairs(tok, [prompt], [response], max_length=20, max_prompt_length=6)
    toks = _tokens(tok, enc.input_ids[0])
    assert len(toks) == 20 and enc.truncated == [True]
    assert toks[:8] == ["[CLS]", "あ", "あ", "い", "う", "え", "お", "[SEP]"]
    assert toks[8:13] == ["か", "き", "く", "け", "こ"]
    assert toks[-1] == "[SEP]"


def test_short_prompt_leaves_its_budget_to_the_response():
    tok = make_tokenizer()
    enc = encode_pairs(tok, ["質問"], ["回" * 50], max_length=20, max_prompt_length=10)
    toks = _tokens(tok, enc.input_ids[0])
    assert len(toks) == 20 and toks.count("回") == 20 - 3 - 2


def test_multi_turn_prompts_get_role_markers_and_keep_the_last_turn():
    tok = make_tokenizer()
    conv = [Message("user", "山" * 40), Message("assistant", "川です"), Message("user", "海は?")]
    enc = encode_pairs(tok, [conv], ["青い"], max_length=40, max_prompt_length=12)
    text = "".join(t for t in _tokens(tok, enc.input_ids[0]) if not t.startswith("["))
    # "ユーザー: 海は?" is the end of the rendered conversation: it must be there in full
    assert "ユーザー:海は?" in text and text.endswith("青い")


def test_prompt_less_text_is_a_single_sequence():
    tok = make_tokenizer()
    enc = encode_pairs(tok, None, ["円高です。"], max_length=64)
    assert enc.input_ids[0] == tok("円高です。")["input_ids"]


def test_length_batches_respect_size_and_token_budget():
    lengths = [10, 3, 7, 8, 2, 9]
    batches = length_batches(lengths, batch_size=2)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert batches[0] == [0, 5] and all(len(b) <= 2 for b in batches)
    budget = length_batches(lengths, batch_size=10, max_tokens=20)
    assert all(len(b) * max(lengths[i] for i in b) <= 20 for b in budget)


def test_max_length_is_capped_at_the_position_limit():
    from transformers import BertConfig, XLMRobertaConfig

    assert model_max_length(BertConfig(max_position_embeddings=512), 4096) == 512
    assert model_max_length(XLMRobertaConfig(max_position_embeddings=514, pad_token_id=1), 8192) == 512
    assert model_max_length(BertConfig(max_position_embeddings=512), 128) == 128


def test_repeated_prompts_and_rows_encode_as_each_row_alone():
    # encode_pairs tokenizes each distinct row and each distinct prompt once: the result must be what
    # each row gives on its own, with its own (unshared) id lists, truncation flags included
    tok = make_tokenizer()
    long_p = "あ" * 30 + "いうえお"
    prompts = [long_p, "質問", long_p, None, "質問", long_p, None, "質問"]
    responses = ["か" * 40, "回答", "き", "回答", "回答", "か" * 40, "回答", "く" * 3]
    enc = encode_pairs(tok, prompts, responses, max_length=20, max_prompt_length=6)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        one = encode_pairs(tok, [p], [r], max_length=20, max_prompt_length=6)
        assert enc.input_ids[i] == one.input_ids[0], i
        assert enc.token_type_ids[i] == one.token_type_ids[0], i
        assert enc.truncated[i] == one.truncated[0], i
    assert enc.truncated[:3] == [True, False, True]
    enc.input_ids[5].append(-1)                  # row 5 repeats row 0: editing one leaves the other
    assert enc.input_ids[0][-1] != -1


def test_a_prompt_cap_as_long_as_the_input_leaves_the_response_half():
    """max_prompt_length 256 (the default) under max_length 32: a long prompt took 28 of 29 text tokens,
    so every answer was scored by its first token."""
    tok = make_tokenizer()
    enc = encode_pairs(tok, ["あ" * 70] * 2, ["良い答えです", "悪い答えです"], max_length=32, max_prompt_length=256)
    for ids in enc.input_ids:
        toks = _tokens(tok, ids)
        assert len(toks) <= 32 and toks.count("あ") == (32 - 3) // 2
    assert _tokens(tok, enc.input_ids[0])[-7:-1] == list("良い答えです")
    # a cap below max_length is kept as given
    assert _tokens(tok, encode_pairs(tok, ["あ" * 70], ["x"], max_length=32, max_prompt_length=20).input_ids[0]
                   ).count("あ") == 20
