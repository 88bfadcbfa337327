"""RewardModel: save/load round trip, the reward rule per head, input order, trl signature, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jprefs.classifiers.reward_model import RewardConfig, RewardModel, logits_to_reward
from jprefs.errors import ConfigError, DataError, JprefsError

from .conftest import make_model, make_tokenizer

PROMPTS = ["日本の首都は?", [{"role": "user", "content": "今日の天気は?"}], None, "好きな動物は?"]
RESPONSES = ["東京です。", "雨です。明日は晴れ。", "円高が進んだ。", "猫が好きです。" * 5]


def _rm(num_labels=2, center=0.0, **kw):
    cfg = RewardConfig(objective="binary" if num_labels == 2 else "pairwise",
                       chosen_index=1 if num_labels == 2 else 0, center=center, max_length=48, max_prompt_length=16, **kw)
    return RewardModel(make_model(num_labels), make_tokenizer(), cfg)


def test_save_load_round_trip_gives_identical_scores(tmp_path):
    rm = _rm(center=0.25)
    before = rm.score(PROMPTS, RESPONSES)
    rm.save_pretrained(tmp_path / "rm")
    assert (tmp_path / "rm" / "model.safetensors").exists()
    assert (tmp_path / "rm" / "jprefs_reward.json").exists()
    back = RewardModel.from_pretrained(tmp_path / "rm", device="cpu")
    after = back.score(PROMPTS, RESPONSES)
    assert after.dtype == np.float32 and after.shape == (4,)
    np.testing.assert_array_equal(before, after)
    assert back.config.center == 0.25 and back.config.objective == "binary"


def test_score_is_logit_difference_minus_center_in_input_order():
    rm = _rm(center=0.5)
    scores = rm.score(PROMPTS, RESPONSES, batch_size=3)
    # reference: one example at a time, straight through the model
    for i, (p, r) in enumerate(zip(PROMPTS, RESPONSES)):
        enc = rm.encode([p], [r])
        ids = torch.tensor(enc.input_ids)
        with torch.no_grad():
            logits = rm.model(input_ids=ids, token_type_ids=torch.tensor(enc.token_type_ids)).logits[0]
        assert scores[i] == pytest.approx(float(logits[1] - logits[0]) - 0.5, abs=1e-5)


def test_scores_do_not_depend_on_batching():
    rm = _rm()
    a = rm.score(PROMPTS * 3, RESPONSES * 3, batch_size=1)
    b = rm.score(PROMPTS * 3, RESPONSES * 3, batch_size=5, max_tokens=64)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_one_logit_head_is_the_reward():
    rm = _rm(num_labels=1)
    s = rm.score(["質問"], ["回答"])
    enc = rm.encode(["質問"], ["回答"])
    with torch.no_grad():
        ref = rm.model(input_ids=torch.tensor(enc.input_ids), token_type_ids=torch.tensor(enc.token_type_ids)).logits
    assert s[0] == pytest.approx(float(ref[0, 0]), abs=1e-6)


def test_logits_to_reward_rules():
    two = torch.tensor([[0.5, 2.0], [1.0, -1.0]])
    assert logits_to_reward(two, 1).tolist() == pytest.approx([1.5, -2.0])
    assert logits_to_reward(two, 0).tolist() == pytest.approx([-1.5, 2.0])
    three = torch.tensor([[1.0, 0.0, 0.0]])
    # log-odds of label 0 against the other two: 1 - log(e^0 + e^0)
    assert logits_to_reward(three, 0).item() == pytest.approx(1.0 - np.log(2.0))


def test_plain_hf_classifier_with_label_by_name(tmp_path):
    model = make_model(3)
    model.config.id2label = {0: "negative", 1: "neutral", 2: "positive"}
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    model.save_pretrained(tmp_path / "clf")
    make_tokenizer().save_pretrained(tmp_path / "clf")
    rm = RewardModel.from_pretrained(tmp_path / "clf", label="positive", device="cpu")
    assert rm.config.chosen_index == 2 and rm.config.objective == "classifier"
    logits = rm.logits(None, ["円高です。"])
    assert rm.score(None, ["円高です。"])[0] == pytest.approx(
        float(logits[0, 2] - np.log(np.exp(logits[0, 0]) + np.exp(logits[0, 1]))), abs=1e-5)
    with pytest.raises(ConfigError, match="positve"):
        RewardModel.from_pretrained(tmp_path / "clf", label="positve", device="cpu")
    with pytest.raises(ConfigError, match="3 labels"):
        RewardModel.from_pretrained(tmp_path / "clf", device="cpu")


def test_reward_func_has_trl_signature_and_handles_conversations():
    rm = _rm()
    f = rm.as_reward_func()
    prompts = [[{"role": "user", "content": "日本の首都は?"}], [{"role": "user", "content": "今日の天気は?"}]]
    completions = [[{"role": "assistant", "content": "東京です。"}], [{"role": "assistant", "content": "雨です。"}]]
    out = f(prompts=prompts, completions=completions, completion_ids=[[1], [2]])
    assert isinstance(out, list) and all(isinstance(x, float) for x in out)
    np.testing.assert_allclose(out, rm.score(prompts, ["東京です。", "雨です。"]), atol=1e-6)


def test_response_only_model_ignores_prompts():
    rm = _rm(input="response")
    np.testing.assert_array_equal(rm.score(["全然違う質問"], ["円高です。"]), rm.score(None, ["円高です。"]))


def test_bad_inputs_give_clear_errors(tmp_path):
    rm = _rm()
    with pytest.raises(DataError, match="2 prompts, 1 responses"):
        rm.score(["a", "b"], ["c"])
    with pytest.raises(DataError, match="wrap a single response"):
        rm.score("a", "c")
    with pytest.raises(DataError, match=r"responses\[1\] must be a string"):
        rm.score(None, ["ok", 3])
    with pytest.raises(DataError, match=r"prompts\[0\]"):
        rm.score([[{"role": "wizard", "content": "x"}]], ["y"])
    with pytest.raises(JprefsError, match="not found"):
        RewardModel.from_pretrained(tmp_path / "missing" / "dir")
    assert rm.score([], []).shape == (0,)


def test_reward_func_reads_the_trl_export_prompt_layout_back():
    """GRPO/RLOO on a `jprefs data export --format trl` set pass the cue-ended prompt string;
    the model must score it as the conversation it was trained on, not the marked-up text."""
    from jprefs.data.schema import render_prompt

    rm = _rm()
    f = rm.as_reward_func()
    convs = [[{"role": "user", "content": "日本の首都は?"}],
             [{"role": "user", "content": "猫は好き?"}, {"role": "assistant", "content": "はい。"},
              {"role": "user", "content": "犬は?"}]]
    responses = ["東京です。", "好きです。"]
    out = f(prompts=[render_prompt(c, cue=True) for c in convs], completions=responses)
    np.testing.assert_allclose(out, rm.score(convs, responses), atol=1e-6)
    assert not np.allclose(rm.score([render_prompt(c, cue=True) for c in convs], responses), out, atol=1e-6)


def test_identical_inputs_are_scored_once_and_copied_back(monkeypatch):
    """A judged set pairs each answer with several others: each distinct (prompt, response) runs through
    the model once, the repeats get its logits, in input order; the same numbers as scoring every row."""
    rm = _rm(center=0.5)
    prompts = PROMPTS + PROMPTS[:2] + [PROMPTS[3], "別の質問?"]
    responses = RESPONSES + RESPONSES[:2] + [RESPONSES[3], RESPONSES[3]]   # 8 rows, 5 distinct inputs
    rows = []
    real = rm.model.forward
    monkeypatch.setattr(rm.model, "forward", lambda *a, **k: rows.append(
        len((k.get("input_ids") if k.get("input_ids") is not None else k["inputs_embeds"]))) or real(*a, **k))
    got = rm.score(prompts, responses, batch_size=3)
    assert sum(rows) == 5
    rm.dedupe_inputs = False
    rows.clear()
    every = rm.score(prompts, responses, batch_size=3)
    assert sum(rows) == 8
    np.testing.assert_allclose(got, every, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got[4:6], got[:2])
    np.testing.assert_array_equal(got[6], got[3])
    assert got[7] != got[3]                     # same response, another prompt: another input
    rm.dedupe_inputs = True
    assert rm.logits(prompts[:4], responses[:4]).shape == (4, 2)   # all distinct: unchanged path


def test_a_decoder_classifier_whose_tokenizer_has_no_pad_scores_the_same_in_any_batch(tmp_path):
    """GPT-2 / Llama reward models: the tokenizer has no pad token, the config names one. Padding with 0
    (read by the head as text) made a row's score depend on what it was batched with."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from jprefs.classifiers.reward_model import RewardModel

    from .conftest import make_tokenizer

    tok = make_tokenizer()
    tok.pad_token = None
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok) + 5, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64, num_labels=1,
                      pad_token_id=len(tok) + 2)
    d = tmp_path / "llama"
    LlamaForSequenceClassification(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    rm = RewardModel.from_pretrained(d, device="cpu")
    prompts, responses = ["猫は好き?", "日本の首都は?何何何何何何"], ["良い", "東京です。東京です。東京"]
    alone = [rm.score([p], [r])[0] for p, r in zip(prompts, responses)]
    np.testing.assert_allclose(rm.score(prompts, responses, batch_size=2), alone, rtol=1e-4, atol=1e-5)


def test_a_bare_backbone_is_refused_not_scored_with_a_random_head(tmp_path, capsys):
    from jprefs.classifiers.reward_model import RewardModel
    from jprefs.cli import main
    from jprefs.errors import JprefsError

    from .conftest import make_backbone_dir, write_pairs

    bb = make_backbone_dir(tmp_path / "bb")
    with pytest.raises(JprefsError, match="no trained reward head"):
        RewardModel.from_pretrained(bb, device="cpu")
    assert main(["score", bb, write_pairs(tmp_path / "p.jsonl", n=4), "-o", str(tmp_path / "s.jsonl")]) == 2
    assert "train-rm --backbone" in capsys.readouterr().err


def test_a_stated_data_license_fills_unknown_rows_and_refuses_rows_that_say_another(tmp_path):
    import json

    from jprefs.classifiers.data import load_rm_data
    from jprefs.errors import DataError

    rows = [{"prompt": "q", "chosen": "a", "rejected": "b"}, {"prompt": "r", "chosen": "c", "rejected": "d",
                                                             "license": "cc-by-nc-4.0"}]
    f = tmp_path / "p.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DataError, match="cc-by-nc-4.0 \\(1 rows\\)"):
        load_rm_data(f, license="cc0-1.0")
    d = load_rm_data(f, license="cc-by-nc-4.0")
    assert [r.license for r in d.records] == ["cc-by-nc-4.0"] * 2 and d.license == "cc-by-nc-4.0"
    assert load_rm_data(f).license == "cc-by-nc-4.0, unknown"


def test_a_cuda_device_on_a_machine_without_one_is_a_config_error():
    import torch

    from jprefs.classifiers.reward_model import check_device
    from jprefs.errors import ConfigError
    from jprefs.rl.device import resolve_device

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ConfigError, match="CUDA device"):
        check_device(f"cuda:{n}")
    with pytest.raises(ConfigError, match="CUDA device"):
        resolve_device(f"cuda:{n}")
    assert check_device("cpu") == "cpu"
