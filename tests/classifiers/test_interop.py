"""jprefs reward models loaded by plain transformers: the same scores (up to the centring constant) or an error.

A mean-pooled model has no head in transformers that pools its way, so every plain
entry point must refuse it (or, for an explicitly named class, score NaN) rather
than build a random [CLS] pooler; a cls-pooled model is a plain checkpoint whose
logits give jprefs' reward plus the centring constant the card states.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from jprefs.classifiers.reward_model import RewardConfig, RewardModel

from .conftest import make_model, make_tokenizer

PROMPTS = ["今日の天気は?", "猫は好き?", "日本の首都は?"]
RESPONSES = ["良い天気です。", "嫌いです", "東京"]


def _save(path, *, pooling, num_labels, center=0.25, prefix=""):
    tok = make_tokenizer()
    cfg = RewardConfig(objective="binary" if num_labels == 2 else "pairwise", chosen_index=1 if num_labels == 2 else 0,
                       pooling=pooling, center=center, input_prefix=prefix, max_length=48)
    rm = RewardModel(make_model(num_labels, vocab_size=len(tok)), tok, cfg)
    before = rm.score(PROMPTS, RESPONSES)
    rm.save_pretrained(path)
    return before


@pytest.mark.parametrize("num_labels", [1, 2])
def test_a_mean_pooled_model_refuses_plain_transformers_and_jprefs_still_scores_it(tmp_path, num_labels):
    from transformers import AutoModel, AutoModelForSequenceClassification, BertForSequenceClassification, pipeline

    before = _save(tmp_path / "rm", pooling="mean", num_labels=num_labels)
    path = str(tmp_path / "rm")
    # every Auto entry point: AutoModel*, pipeline(), trl's reward_funcs=PATH (AutoModelForSequenceClassification
    # with num_labels=1), sentence-transformers - all go through AutoConfig, which refuses the model type
    for load in (lambda: AutoModelForSequenceClassification.from_pretrained(path),
                 lambda: AutoModelForSequenceClassification.from_pretrained(path, num_labels=1),
                 lambda: AutoModel.from_pretrained(path),
                 lambda: pipeline("text-classification", model=path)):
        with pytest.raises(ValueError, match="jprefs-mean-pooled"):
            load()
    # a class named explicitly only warns about the model type: its [CLS] pooler is NaN, so are its scores
    plain = BertForSequenceClassification.from_pretrained(path).eval()
    tok = make_tokenizer()
    with torch.no_grad():
        logits = plain(**tok(PROMPTS, RESPONSES, padding=True, return_tensors="pt")).logits
    assert torch.isnan(logits).all()
    # jprefs loads it (trust_remote_code stays off) and scores exactly as before saving, on every load
    for _ in range(2):
        back = RewardModel.from_pretrained(path, device="cpu")
        np.testing.assert_array_equal(back.score(PROMPTS, RESPONSES), before)
    # and re-saving keeps the marker
    back.save_pretrained(tmp_path / "again")
    with pytest.raises(ValueError, match="jprefs-mean-pooled"):
        AutoModelForSequenceClassification.from_pretrained(tmp_path / "again")
    np.testing.assert_array_equal(RewardModel.from_pretrained(tmp_path / "again", device="cpu").score(
        PROMPTS, RESPONSES), before)


def test_a_mean_pooled_model_saved_before_the_marker_loads_in_jprefs_with_a_warning_to_resave(tmp_path):
    from safetensors.torch import load_file, save_file

    before = _save(tmp_path / "rm", pooling="mean", num_labels=1)
    # what older jprefs wrote: the real model type, no pooler weights
    cfg_path = tmp_path / "rm" / "config.json"
    d = json.loads(cfg_path.read_text())
    d["model_type"] = d.pop("jprefs_base_model_type")
    del d["jprefs_note"]
    cfg_path.write_text(json.dumps(d))
    w = load_file(tmp_path / "rm" / "model.safetensors")
    save_file({k: v for k, v in w.items() if "pooler" not in k}, tmp_path / "rm" / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.warns(UserWarning, match=r"(?s)random \[CLS\] pooler.*save_pretrained\(NEW_DIR\)"):
        old = RewardModel.from_pretrained(tmp_path / "rm", device="cpu")
    np.testing.assert_array_equal(old.score(PROMPTS, RESPONSES), before)
    old.save_pretrained(tmp_path / "new")          # the fix the warning gives
    from transformers import AutoModelForSequenceClassification

    with pytest.raises(ValueError, match="jprefs-mean-pooled"):
        AutoModelForSequenceClassification.from_pretrained(tmp_path / "new")


@pytest.mark.parametrize("num_labels", [1, 2])
def test_a_cls_pooled_model_under_plain_transformers_gives_the_jprefs_reward_plus_the_centre(tmp_path, num_labels):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    before = _save(tmp_path / "rm", pooling="cls", num_labels=num_labels, center=0.25, prefix="q:")
    path = str(tmp_path / "rm")
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    # jprefs puts input_prefix before the prompt; short string inputs are not truncated
    enc = tok(["q:" + p for p in PROMPTS], RESPONSES, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits                                    # (3, C)
    raw = logits[:, 0] if num_labels == 1 else logits[:, 1] - logits[:, 0]
    np.testing.assert_allclose(raw.numpy() - 0.25, before, atol=1e-5)
    # the pipeline with function_to_apply="none" returns the same raw logit (per label)
    pipe = pipeline("text-classification", model=path, function_to_apply="none", top_k=None)
    out = pipe([{"text": "q:" + p, "text_pair": r} for p, r in zip(PROMPTS, RESPONSES)])
    by_label = [{d["label"]: d["score"] for d in row} for row in out]
    got = [row["LABEL_0"] if num_labels == 1 else row["LABEL_1"] - row["LABEL_0"] for row in by_label]
    np.testing.assert_allclose(np.array(got) - 0.25, before, atol=1e-5)


def test_rl_classifier_reward_refuses_a_mean_pooled_jprefs_model(tmp_path):
    from jprefs.errors import ConfigError
    from jprefs.rl.rewards import classifier_reward

    _save(tmp_path / "rm", pooling="mean", num_labels=2)
    with pytest.raises(ConfigError, match="reward_type=rm"):
        classifier_reward(str(tmp_path / "rm"))


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_the_card_says_which_library_loads_the_model(pooling):
    import yaml

    from jprefs.classifiers.card import model_card
    from jprefs.classifiers.config import TrainRMConfig

    cfg = TrainRMConfig(data="x.jsonl", output_dir="out/rm", objective="pairwise", pooling=pooling,
                        input_prefix="query: ")
    text = model_card(cfg, {"center": 0.1234, "best_epoch": 1, "selected_by": "pairwise_accuracy"})
    front = yaml.safe_load(text.split("---")[1])
    if pooling == "mean":
        # no transformers class runs this head: not advertised as transformers, no widget/inference tag
        assert front["library_name"] == "jprefs" and "pipeline_tag" not in front
        assert "Load it with jprefs only" in text and "model_type: jprefs-mean-pooled" in text
        assert "AutoModelForSequenceClassification.from_pretrained" not in text
    else:
        assert front["library_name"] == "transformers" and front["pipeline_tag"] == "text-classification"
        assert 'tok(["query: " + prompt], [response]' in text
        assert "reward = logits[:, 0] - 0.1234" in text and "C = 0.1234" in text
    assert "RewardModel.from_pretrained" in text
