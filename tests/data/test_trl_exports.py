"""jprefs exports trained with trl's own trainers, and what those trainers tokenise, decoded.

Each test exports a few canonical pairs (one single-turn, one multi-turn prompt) with
``jprefs data export``, loads the file with ``datasets.load_dataset`` as a trl user would,
trains 2 steps on a tiny Llama (hidden 16, 2 layers) with a character tokenizer built
offline, and decodes the token ids the trainer produced: the processed ``train_dataset``
(what every batch is cut from) and the first collated batch. The assertions:

- the decoded sequence is exactly ``<s>`` + prompt + answer + ``</s>`` (standard formats)
  or the chat template's rendering (conversational formats): the turn boundary
  ``アシスタント:\\n`` sits between prompt and answer, nothing runs together;
- one BOS and one EOS per sequence (no doubled special tokens), no unknown characters;
- DPO/KTO: the prompt/completion split falls exactly at the end of the prompt (the
  tokenised prompt is a prefix of prompt + answer, so trl cuts nothing off).

GRPO and RLOO generate from the prompt column: the test records the prompt ids the trainer
tokenised and the prompts/completions handed to ``RewardModel.as_reward_func``.

The character tokenizer cannot merge across the cue, so a last test builds DPO's split with a
byte-level BPE trained here: jprefs' newline cue stays in the prompt, a space cue would not.
"""

from __future__ import annotations

import copy
import json

import pytest

trl = pytest.importorskip("trl", reason="trl is not installed: pip install -e '.[dev]' (trl>=1.16)")
torch = pytest.importorskip("torch")
datasets = pytest.importorskip("datasets")

from jprefs.cli import main  # noqa: E402

from tests.classifiers.conftest import CHARS, make_model, make_tokenizer  # noqa: E402

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """trl's trainers set accelerate's process-wide AcceleratorState; later tests in this process
    (train-rm builds its own Accelerator) must not inherit it."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
ROLE_TOKENS = ["<|user|>", "<|assistant|>", "<|system|>"]
# A Llama-like template: BOS once at the start, each turn behind its role token, EOS after it.
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{{ '<|' + m['role'] + '|>' + m['content'] + eos_token }}"
                 "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}")

RAW = [
    {"prompt": "日本の首都は?", "chosen": "東京です。", "rejected": "大阪です。", "license": "mit"},
    {"prompt": [{"role": "user", "content": "猫は好き?"}, {"role": "assistant", "content": "はい、好きです。"},
                {"role": "user", "content": "犬は?"}], "chosen": "犬も好きです。", "rejected": "嫌いです。",
     "license": "mit"},
    {"prompt": "今日の天気は?", "chosen": "雨です。", "rejected": "わかりません。", "license": "mit"},
    {"prompt": "山は好き?", "chosen": "好きです。", "rejected": "嫌いです。", "license": "mit"},
]
# The trl (standard) prompts jprefs must write for RAW, in order.
PROMPTS = ["ユーザー: 日本の首都は?\n\nアシスタント:\n",
           "ユーザー: 猫は好き?\n\nアシスタント: はい、好きです。\n\nユーザー: 犬は?\n\nアシスタント:\n",
           "ユーザー: 今日の天気は?\n\nアシスタント:\n",
           "ユーザー: 山は好き?\n\nアシスタント:\n"]


def causal_tokenizer():
    """One token per character (newline included), BOS added by the tokenizer call like Llama's."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, BOS, EOS, UNK] + ROLE_TOKENS
    vocab = {t: i for i, t in enumerate(specials)}
    for c in CHARS + "\n":
        vocab.setdefault(c, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), "isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A $B",
                                                       special_tokens=[(BOS, vocab[BOS])])
    t = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK)
    t.chat_template = CHAT_TEMPLATE
    return t


def tiny_llama(tok, *, classifier=False, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      num_labels=1)
    return (LlamaForSequenceClassification if classifier else LlamaForCausalLM)(cfg)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    d = tmp_path_factory.mktemp("pairs")
    raw = d / "raw.jsonl"
    raw.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RAW), encoding="utf-8")
    out = d / "pairs.jsonl"
    assert main(["data", "convert", str(raw), "--source", "jprefs", "-o", str(out)]) == 0
    return out


def export(pairs, tmp_path, fmt, suffix=".jsonl"):
    out = tmp_path / f"{fmt}{suffix}"
    assert main(["data", "export", str(pairs), "--format", fmt, "-o", str(out)]) == 0
    return datasets.load_dataset("parquet" if suffix == ".parquet" else "json", data_files=str(out),
                                 split="train", cache_dir=str(tmp_path / "hf"))


def common_args(tmp_path):
    # CPU, no logging integrations, no saving: two optimiser steps and nothing else.
    return dict(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-3,
                report_to="none", save_strategy="no", logging_steps=1, use_cpu=True, dataloader_num_workers=0,
                seed=0, disable_tqdm=True)


def decode(tok, ids):
    return tok.decode([i for i in ids if i != tok.pad_token_id], skip_special_tokens=False)


def assert_clean(tok, ids, n_eos=1):
    """One BOS, first; ``n_eos`` EOS (one per turn of the chat template), the last token; no EOS
    doubled; no unknown characters."""
    ids = [i for i in ids if i != tok.pad_token_id]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1, decode(tok, ids)
    assert ids[-1] == tok.eos_token_id and ids.count(tok.eos_token_id) == n_eos, decode(tok, ids)
    assert [tok.eos_token_id] * 2 not in [ids[k:k + 2] for k in range(len(ids) - 1)], decode(tok, ids)
    assert tok.unk_token_id not in ids, decode(tok, ids)


def chat(messages):
    """What CHAT_TEMPLATE renders for a conversation."""
    return BOS + "".join(f"<|{m['role']}|>{m['content']}{EOS}" for m in messages)


def conv_prompt(row):
    return [m for m in (row["prompt"] if isinstance(row["prompt"], list) else [{"role": "user", "content": row["prompt"]}])]


def first_batch(trainer):
    return next(iter(trainer.get_train_dataloader()))


def trained(trainer):
    trainer.train()
    assert trainer.state.global_step == 2
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses and all(torch.isfinite(torch.tensor(losses)))


# ---------------------------------------------------------------- RewardTrainer


@pytest.mark.parametrize("fmt", ["trl", "trl-conversational"])
def test_reward_trainer(pairs, tmp_path, fmt):
    from trl import RewardConfig, RewardTrainer

    tok = causal_tokenizer()
    ds = export(pairs, tmp_path, fmt, ".parquet" if fmt == "trl" else ".jsonl")
    trainer = RewardTrainer(model=tiny_llama(tok, classifier=True), args=RewardConfig(**common_args(tmp_path)),
                            train_dataset=ds, processing_class=tok)
    processed = trainer.train_dataset
    for i, row in enumerate(RAW):
        for key in ("chosen", "rejected"):
            ids = processed[i][f"{key}_ids"]
            if fmt == "trl":
                # the whole training text: prompt with its cue, then the bare answer, BOS/EOS once each
                assert decode(tok, ids) == BOS + PROMPTS[i] + row[key] + EOS
                assert (PROMPTS[i] + row[key]).count("アシスタント:\n") == 1
            else:
                assert decode(tok, ids) == chat(conv_prompt(row) + [{"role": "assistant", "content": row[key]}])
            assert_clean(tok, ids, n_eos=1 if fmt == "trl" else len(conv_prompt(row)) + 1)
    batch = first_batch(trainer)  # the collator stacks chosen then rejected
    texts = {decode(tok, ids) for ids in batch["input_ids"].tolist()}
    assert texts <= {decode(tok, processed[i][f"{k}_ids"]) for i in range(len(RAW)) for k in ("chosen", "rejected")}
    trained(trainer)


# ---------------------------------------------------------------- DPOTrainer


@pytest.mark.parametrize("fmt", ["trl", "trl-conversational"])
def test_dpo_trainer(pairs, tmp_path, fmt):
    from trl import DPOConfig, DPOTrainer

    tok = causal_tokenizer()
    ds = export(pairs, tmp_path, fmt)
    model = tiny_llama(tok)
    # an in-memory policy has no path trl could load the reference from: pass a frozen copy
    trainer = DPOTrainer(model=model, ref_model=copy.deepcopy(model), train_dataset=ds, processing_class=tok,
                         args=DPOConfig(**common_args(tmp_path), max_length=96))
    processed = trainer.train_dataset
    for i, row in enumerate(RAW):
        p = processed[i]
        if fmt == "trl":
            # the split falls exactly after the cue: the prompt is kept whole, the answer starts cleanly
            assert decode(tok, p["prompt_ids"]) == BOS + PROMPTS[i]
            assert decode(tok, p["chosen_ids"]) == row["chosen"] + EOS
            assert decode(tok, p["rejected_ids"]) == row["rejected"] + EOS
        else:
            assert decode(tok, p["prompt_ids"]) == chat(conv_prompt(row)) + "<|assistant|>"
            assert decode(tok, p["chosen_ids"]) == row["chosen"] + EOS
        n_eos = 1 if fmt == "trl" else len(conv_prompt(row)) + 1
        assert_clean(tok, p["prompt_ids"] + p["chosen_ids"], n_eos)
        assert_clean(tok, p["prompt_ids"] + p["rejected_ids"], n_eos)
    batch = first_batch(trainer)  # prompt + chosen rows, then prompt + rejected rows
    seqs = {decode(tok, ids) for ids in batch["input_ids"].tolist()}
    full = {decode(tok, p["prompt_ids"] + p[k]) for p in processed for k in ("chosen_ids", "rejected_ids")}
    assert seqs <= full and len(seqs) == 4
    trained(trainer)


# ---------------------------------------------------------------- KTOTrainer


@pytest.mark.parametrize("fmt", ["trl-unpaired", "trl-unpaired-conversational"])
def test_kto_trainer(pairs, tmp_path, fmt):
    from trl import KTOConfig, KTOTrainer

    tok = causal_tokenizer()
    ds = export(pairs, tmp_path, fmt, ".parquet")
    assert ds.features["label"].dtype == "bool"
    model = tiny_llama(tok)
    trainer = KTOTrainer(model=model, ref_model=copy.deepcopy(model), train_dataset=ds, processing_class=tok,
                         args=KTOConfig(**common_args(tmp_path), max_length=96))
    processed = trainer.train_dataset
    for i, row in enumerate(RAW):
        for j, (key, label) in enumerate((("chosen", True), ("rejected", False))):
            p = processed[2 * i + j]
            assert p["label"] is label
            if fmt == "trl-unpaired":
                assert decode(tok, p["prompt_ids"]) == BOS + PROMPTS[i]
            else:
                assert decode(tok, p["prompt_ids"]) == chat(conv_prompt(row)) + "<|assistant|>"
            assert decode(tok, p["completion_ids"]) == row[key] + EOS
            assert_clean(tok, p["prompt_ids"] + p["completion_ids"],
                         1 if fmt == "trl-unpaired" else len(conv_prompt(row)) + 1)
    batch = first_batch(trainer)
    assert batch["label"].dtype == torch.bool
    trained(trainer)


# ---------------------------------------------------------------- GRPO / RLOO with RewardModel.as_reward_func


def recording_reward(calls):
    """A jprefs reward model (tiny BERT) as a trl reward function, recording what trl passes it."""
    from jprefs.classifiers.reward_model import RewardConfig, RewardModel

    rm = RewardModel(make_model(2), make_tokenizer(), RewardConfig(objective="binary", chosen_index=1,
                                                                   max_length=64, max_prompt_length=48))
    f = rm.as_reward_func()

    def reward(prompts=None, completions=None, **kwargs):
        calls.append((list(prompts), list(completions)))
        return f(prompts=prompts, completions=completions, **kwargs)

    reward.__name__ = f.__name__
    return reward


def record_prompt_ids(trainer, seen):
    orig = trainer._tokenize_prompts

    def wrapped(prompts):
        out = orig(prompts)
        seen.extend(out[0])
        return out

    trainer._tokenize_prompts = wrapped


@pytest.mark.parametrize("fmt", ["trl", "trl-conversational"])
@pytest.mark.parametrize("algo", ["grpo", "rloo"])
def test_online_trainers_with_reward_func(pairs, tmp_path, fmt, algo):
    if algo == "grpo":
        from trl import GRPOConfig as Config, GRPOTrainer as Trainer
    else:
        from trl import RLOOConfig as Config, RLOOTrainer as Trainer

    tok = causal_tokenizer()
    tok.padding_side = "left"
    ds = export(pairs, tmp_path, fmt).select_columns(["prompt", "id"])
    calls, prompt_ids = [], []
    # the policy as a folder, so that RLOO (beta 0.05 by default) can load its KL reference from it
    tiny_llama(tok).save_pretrained(tmp_path / "policy")
    trainer = Trainer(model=str(tmp_path / "policy"), reward_funcs=recording_reward(calls), train_dataset=ds,
                      processing_class=tok,
                      args=Config(**common_args(tmp_path), num_generations=2, max_completion_length=4))
    record_prompt_ids(trainer, prompt_ids)
    trained(trainer)
    assert calls and prompt_ids
    want = ({BOS + p for p in PROMPTS} if fmt == "trl"
            else {chat(conv_prompt(r)) + "<|assistant|>" for r in RAW})
    for ids in prompt_ids:
        # the policy generates right after the assistant cue, from a prompt with one BOS
        ids = [i for i in ids if i != tok.pad_token_id]
        assert decode(tok, ids) in want
        assert ids.count(tok.bos_token_id) == 1 and tok.unk_token_id not in ids
    for prompts, completions in calls:
        if fmt == "trl":
            assert set(prompts) <= set(PROMPTS) and all(isinstance(c, str) for c in completions)
        else:
            assert all(p[-1]["role"] == "user" for p in prompts)
            assert all(c[0]["role"] == "assistant" for c in completions)


# ---------------------------------------------------------------- the cue's token boundary under BPE


def bpe_tokenizer():
    """A GPT-2-style byte-level BPE trained here on the test texts (spaces merge into the next word)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [p + sep + r[k] for p, r in zip(PROMPTS, RAW) for k in ("chosen", "rejected") for sep in ("", " ")]
    tok.train_from_iterator(corpus * 20, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")


def test_cue_keeps_the_dpo_prompt_split_under_bpe(pairs, tmp_path):
    """With a byte-level BPE the tokenised prompt stays a prefix of prompt + answer, so trl's
    DPO keeps the whole prompt, cue included; a cue ending in a space (the control) would lose
    it, because the space merges into the answer's first token."""
    from trl import DPOConfig, DPOTrainer

    tok = bpe_tokenizer()
    ds = export(pairs, tmp_path, "trl")
    spaced = ds.map(lambda r: {"prompt": r["prompt"][:-1] + " "})  # 'アシスタント: ' instead of 'アシスタント:\n'
    model = tiny_llama(tok)
    splits = {}
    for name, data in (("jprefs", ds), ("space", spaced)):
        trainer = DPOTrainer(model=model, ref_model=copy.deepcopy(model), train_dataset=data, processing_class=tok,
                             args=DPOConfig(**common_args(tmp_path), max_length=96))
        splits[name] = [(tok.decode(p["prompt_ids"]), tok.decode(p["chosen_ids"])) for p in trainer.train_dataset]
    assert splits["jprefs"] == [(PROMPTS[i], r["chosen"] + "<|endoftext|>") for i, r in enumerate(RAW)]
    # control: the space went over to the answer side, the prompt lost its cue's end
    assert all(p.endswith("アシスタント:") and c.startswith(" ") for p, c in splits["space"])
