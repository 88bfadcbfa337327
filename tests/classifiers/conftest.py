"""Tiny models and tokenizers for the classifiers tests (built from configs, never downloaded)."""

from __future__ import annotations

import pytest

# Characters the tiny tokenizer knows; anything else becomes [UNK].
CHARS = ("あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん"
         "がぎぐげござじずぜぞだぢづでどばびぶべぼぱぴぷぺぽっゃゅょー"
         "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲン"
         "日本首都東京大阪円高安良悪好嫌天気今明何質問回答私猫犬山川海空雨雪春夏秋冬年月人"
         "ガギグゲゴザジズゼゾダヂヅデドバビブベボパピプペポッャュョ青赤白黒"
         "。、！？!?.,:0123456789abcdefghijklmnopqrstuvwxyz ")


def make_tokenizer(model_max_length: int = 64):
    """A BERT-style fast tokenizer: one token per character, ``[CLS] a [SEP] b [SEP]`` pairs."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {t: i for i, t in enumerate(specials)}
    for c in CHARS:
        if c != " " and c not in vocab:
            vocab[c] = len(vocab)
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100,
                                     continuing_subword_prefix=""))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Split("", "isolated")])
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=model_max_length,
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])


def make_model(num_labels: int = 2, vocab_size: int = 300, max_positions: int = 64, seed: int = 0):
    """A 2-layer BERT sequence classifier with hidden size 32."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=max_positions, num_labels=num_labels,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(cfg).eval()


@pytest.fixture
def tiny_tokenizer():
    return make_tokenizer()


@pytest.fixture
def tiny_model():
    return make_model()


def make_backbone_dir(path, seed: int = 0):
    """Save a tiny BERT encoder + tokenizer as a backbone directory (what `backbone=PATH` loads)."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    tok = make_tokenizer()
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, pad_token_id=tok.pad_token_id)
    BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


GOOD = ["良いです", "好きです", "良い天気", "明るい日", "良い猫"]
BAD = ["悪いです", "嫌いです", "悪い天気", "暗い雨", "悪い犬"]
QUESTIONS = ["今日の天気は?", "猫は好き?", "日本の首都は?", "何がある?", "明日は?", "山は?", "海は?", "春は?"]


def write_pairs(path, n: int = 48, seed: int = 0):
    """A learnable toy preference set: chosen answers say 良/好, rejected ones 悪/嫌."""
    import json
    import random

    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            q = QUESTIONS[i % len(QUESTIONS)] + "何" * (i // len(QUESTIONS))
            f.write(json.dumps({"prompt": [{"role": "user", "content": q}], "chosen": rng.choice(GOOD) + "。",
                                "rejected": rng.choice(BAD) + "。" * rng.randint(1, 3), "source": "toy",
                                "license": "cc0-1.0"}, ensure_ascii=False) + "\n")
    return str(path)


def train_tiny_rm(d, backbone_license: str = "mit"):
    """A finished 1-epoch pairwise reward model in ``d/out`` on the toy pairs (cc0-1.0), its tiny backbone's
    card stating ``backbone_license``; returns ``d/out``."""
    from pathlib import Path

    from jprefs.classifiers.config import TrainRMConfig
    from jprefs.classifiers.train import train_reward_model
    from jprefs.config import load_config

    bb = make_backbone_dir(Path(d) / "bb")
    (Path(bb) / "README.md").write_text(f"---\nlicense: {backbone_license}\n---\n# tiny backbone\n")
    cfg = load_config(TrainRMConfig, None, dict(data=write_pairs(Path(d) / "pairs.jsonl", n=16), backbone=bb,
                                                objective="pairwise", epochs=1, batch_size=8, max_length=32,
                                                eval_fraction=0.25, plots=False, output_dir=str(Path(d) / "out")))
    train_reward_model(cfg, log=lambda *a, **k: None)
    return Path(d) / "out"


def score_and_eval_stack(out, data, label, tmp_path, capsys):
    """`jprefs score` and `jprefs eval rm --all-heads` on a stack folder ``out`` over the pairs file ``data``:
    checks that `score` gives the stack's own rewards and returns ``(stack, pairs, want, metrics, rows)``
    (``want``: the stack's scores of the chosen then the rejected answers; ``rows``: eval's scores.jsonl)."""
    import json

    import numpy as np

    from jprefs.classifiers.data import load_rm_data
    from jprefs.classifiers.reward_model import RewardModel
    from jprefs.cli import main

    st = RewardModel.from_pretrained(out, device="cpu")
    pairs = load_rm_data(data).pairs()
    n = len(pairs)
    want = st.score([p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs])
    assert main(["score", str(out), data, "-o", str(tmp_path / "s.jsonl")]) == 0, capsys.readouterr().err
    rows = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    np.testing.assert_allclose([r["chosen_reward"] for r in rows], want[:n], rtol=1e-5, atol=1e-6)
    ev = tmp_path / "ev"
    rc = main(["eval", "rm", "--model", f"{label}={out}", "--data", data, "--all-heads", "--no-plots", "-o", str(ev)])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((ev / "metrics.json").read_text())
    got = [json.loads(x) for x in (ev / "scores.jsonl").read_text().splitlines()]
    return st, pairs, want, m, got


def trained_stack(d, make_cfg):
    """A stack trained by ``train_stack`` on the toy pairs of ``d`` (two training files, a test file);
    ``make_cfg(backbone, data, out, **kw)`` builds its config. Returns the fixture dict the stack tests read."""
    from jprefs.classifiers.stack import train_stack

    bb = make_backbone_dir(d / "bb")
    data, extra = write_pairs(d / "pairs.jsonl"), write_pairs(d / "second.jsonl", n=40, seed=5)
    test = write_pairs(d / "test.jsonl", n=16, seed=9)
    cfg = make_cfg(bb, data, d / "out", extra_data=[extra], test_data=test)
    metrics = train_stack(cfg, log=lambda *a, **k: None)
    return {"dir": d, "bb": bb, "data": data, "extra": extra, "test": test, "cfg": cfg, "metrics": metrics,
            "out": d / "out"}
