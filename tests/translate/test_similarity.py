"""Optional cross-lingual similarity check, with a tiny sentence-transformers model built offline
(random weights: the values mean nothing, the tests check the mechanics)."""

import pytest

from jprefs.config import load_config
from jprefs.data.io import load_pairs
from jprefs.translate.config import TranslateConfig
from jprefs.translate.pipeline import run_translate

pytest.importorskip("sentence_transformers")


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory):
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    chars = sorted(set("abcdefghijklmnopqrstuvwxyz") | {chr(c) for c in range(0x3041, 0x3097)}
                   | {chr(c) for c in range(0x30A1, 0x30FB)})
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")  # one token per character
    tk.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                  sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=32, max_position_embeddings=1024))
    path = tmp_path_factory.mktemp("tiny-st")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_similarity_is_rowwise_cosine(tiny_st):
    from jprefs.translate.quality import similarity

    a, b = "hello there", "アイウエオ かきくけこ"
    same = similarity(tiny_st, [a, b], [a, b])
    assert same == pytest.approx([1.0, 1.0], abs=1e-5)          # normalised, paired row by row
    crossed = similarity(tiny_st, [a, b], [b, a])
    assert crossed[0] == pytest.approx(crossed[1], abs=1e-5) and crossed[0] < 0.9999


def test_similarity_flag_in_pipeline(tiny_st, server, pairs_file, tmp_path):
    base = {"input": str(pairs_file), "engine": "openai", "model": "fake-mt", "base_url": server.base_url,
            "similarity_model": tiny_st}
    s = run_translate(load_config(TranslateConfig, None, {**base, "output": str(tmp_path / "lo"), "min_similarity": -1.01}))
    assert s["pairs_out"] == s["pairs_in"] and "low_similarity" not in s["flags"]
    [p, *_] = load_pairs(tmp_path / "lo" / "pairs.jsonl")
    assert -1.0 <= p.meta["translation"]["quality"]["chosen"]["similarity"] <= 1.0
    s = run_translate(load_config(TranslateConfig, None, {**base, "output": str(tmp_path / "hi"), "min_similarity": 1.01,
                                                          "cache_dir": str(tmp_path / "lo" / "cache")}))
    assert s["pairs_out"] == 0 and s["rejects_by_reason"] == {"low_similarity": s["pairs_in"]}
