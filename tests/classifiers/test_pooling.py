"""pooling=mean and input_prefix: masked mean over real tokens, saved and reapplied on load, in training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from jprefs.classifiers.inputs import encode_pairs
from jprefs.classifiers.pooling import apply_pooling, is_mean_pooled
from jprefs.classifiers.reward_model import RewardConfig, RewardModel
from jprefs.errors import ConfigError

from .conftest import make_model, make_tokenizer

PROMPTS = ["日本の首都は?", None, "好きな動物は?"]
RESPONSES = ["東京です。", "円高が進んだ。", "猫が好きです。" * 5]


def _rm(**kw):
    cfg = RewardConfig(objective="binary", input="pair", pooling="mean", max_length=48, max_prompt_length=16, **kw)
    return RewardModel(make_model(2), make_tokenizer(), cfg)


def test_mean_pooling_is_the_masked_mean_of_the_last_hidden_states():
    rm = _rm()
    assert is_mean_pooled(rm.model)
    enc = rm.encode(["日本の首都は?"], ["東京です。"])
    ids, types = torch.tensor(enc.input_ids), torch.tensor(enc.token_type_ids)
    with torch.no_grad():
        h = rm.model.bert(input_ids=ids, token_type_ids=types).last_hidden_state      # (1, T, H)
        ref = rm.model.classifier(h.mean(dim=1))[0]
    assert rm.score(["日本の首都は?"], ["東京です。"])[0] == pytest.approx(float(ref[1] - ref[0]), abs=1e-5)
    # and it is not what the default [CLS] pooler gives
    cls = RewardModel(make_model(2), make_tokenizer(), RewardConfig(objective="binary", max_length=48))
    assert not is_mean_pooled(cls.model)
    assert abs(cls.score(["日本の首都は?"], ["東京です。"])[0] - rm.score(["日本の首都は?"], ["東京です。"])[0]) > 1e-4


def test_mean_pooling_ignores_padding():
    rm = _rm()
    alone = np.array([rm.score([p], [r])[0] for p, r in zip(PROMPTS, RESPONSES)])     # no padding at all
    batched = rm.score(PROMPTS, RESPONSES, batch_size=8)                               # padded to the longest
    np.testing.assert_allclose(alone, batched, atol=1e-5)
    # a padded batch through the model directly (mask given) agrees too
    from jprefs.classifiers.inputs import collate

    enc = rm.encode(PROMPTS, RESPONSES)
    with torch.no_grad():
        logits = rm.model(**collate(enc, [0, 1, 2], rm.tokenizer.pad_token_id)).logits
    np.testing.assert_allclose((logits[:, 1] - logits[:, 0]).numpy(), alone, atol=1e-5)


def test_a_copy_of_a_mean_pooled_model_still_ignores_padding():
    import copy

    rm = _rm()
    alone = np.array([rm.score([p], [r])[0] for p, r in zip(PROMPTS, RESPONSES)])
    twin = RewardModel(copy.deepcopy(rm.model), rm.tokenizer, rm.config)        # e.g. a PPO reference
    np.testing.assert_allclose(twin.score(PROMPTS, RESPONSES, batch_size=8), alone, atol=1e-5)
    np.testing.assert_allclose(rm.score(PROMPTS, RESPONSES, batch_size=8), alone, atol=1e-5)


def test_save_load_round_trip_keeps_pooling_and_prefix(tmp_path):
    rm = _rm(center=0.1, input_prefix="query: ")
    before = rm.score(PROMPTS, RESPONSES)
    rm.save_pretrained(tmp_path / "rm")
    saved = json.loads((tmp_path / "rm" / "jprefs_reward.json").read_text())
    assert saved["pooling"] == "mean" and saved["input_prefix"] == "query: "
    back = RewardModel.from_pretrained(tmp_path / "rm", device="cpu")
    assert is_mean_pooled(back.model) and back.config.input_prefix == "query: "
    np.testing.assert_array_equal(before, back.score(PROMPTS, RESPONSES))


def test_apply_pooling_is_idempotent_and_checks_its_input():
    model = make_model(2)
    apply_pooling(model, "mean")
    pooler = model.bert.pooler
    apply_pooling(model, "mean")
    assert model.bert.pooler is pooler
    with pytest.raises(ConfigError, match="pooling"):
        apply_pooling(make_model(2), "max")
    with pytest.raises(ConfigError, match="no pooler|has none"):
        apply_pooling(torch.nn.Linear(2, 2), "mean")


def test_input_prefix_goes_before_the_first_segment():
    tok = make_tokenizer()
    a = encode_pairs(tok, ["質問", None], ["回答", "円高"], max_length=32, prefix="q:")
    b = encode_pairs(tok, ["q:質問", None], ["回答", "q:円高"], max_length=32)
    assert a.input_ids == b.input_ids
    assert encode_pairs(tok, [None], ["円高"], max_length=32).input_ids != a.input_ids[1:]


def test_training_with_mean_pooling_and_prefix_saves_both(tmp_path):
    from jprefs.classifiers.config import TrainRMConfig
    from jprefs.classifiers.train import train_reward_model
    from jprefs.config import load_config

    from .conftest import make_backbone_dir, write_pairs

    bb = make_backbone_dir(tmp_path / "bb")
    data = write_pairs(tmp_path / "pairs.jsonl")
    out = tmp_path / "out"
    cfg = load_config(TrainRMConfig, None, dict(
        data=data, backbone=bb, objective="pairwise", epochs=2, lr=3e-3, batch_size=8, max_length=48,
        eval_fraction=0.25, warmup_ratio=0.0, output_dir=str(out), plots=False, pooling="mean",
        input_prefix="q:", train_layers=1))
    m = train_reward_model(cfg, log=lambda *a, **k: None)
    saved = json.loads((out / "jprefs_reward.json").read_text())
    assert saved["pooling"] == "mean" and saved["input_prefix"] == "q:"
    rm = RewardModel.from_pretrained(out, device="cpu")
    from jprefs.classifiers.data import load_rm_data, split_by_group
    from jprefs.classifiers.evaluate import evaluate_pairs

    _, held = split_by_group(load_rm_data(data), 0.25, 42)
    assert evaluate_pairs(rm, held.pairs())[0]["pairwise_accuracy"] == pytest.approx(m["eval"]["pairwise_accuracy"])
    # what train-rm wrote is refused by plain transformers, and its card does not advertise transformers
    import yaml
    from transformers import AutoModelForSequenceClassification

    with pytest.raises(ValueError, match="jprefs-mean-pooled"):
        AutoModelForSequenceClassification.from_pretrained(out)
    front = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert front["library_name"] == "jprefs" and "pipeline_tag" not in front
    with pytest.raises(ConfigError, match="pooling"):
        load_config(TrainRMConfig, None, {"pooling": "max"}).validate()


def test_lora_with_mean_pooling_trains_and_reloads(tmp_path):
    pytest.importorskip("peft")
    from jprefs.classifiers.config import TrainRMConfig
    from jprefs.classifiers.train import train_reward_model
    from jprefs.config import load_config

    from .conftest import make_backbone_dir, write_pairs

    out = tmp_path / "lora"
    cfg = load_config(TrainRMConfig, None, dict(
        data=write_pairs(tmp_path / "pairs.jsonl"), backbone=make_backbone_dir(tmp_path / "bb"), objective="pairwise",
        epochs=1, lr=3e-3, batch_size=8, max_length=48, eval_fraction=0.25, output_dir=str(out), plots=False,
        pooling="mean", lora=True, lora_r=4, lora_alpha=8, lora_target_modules=["query", "value"]))
    m = train_reward_model(cfg, log=lambda *a, **k: None)
    rm = RewardModel.from_pretrained(out, device="cpu")
    assert is_mean_pooled(rm.model) and np.isfinite(m["eval"]["pairwise_accuracy"])


class _Records(list):
    def write(self, msg):                 # a stream for logging.StreamHandler
        self.append(msg)

    def flush(self):
        pass


def _load_warnings(path) -> str:
    import logging

    from transformers.utils import logging as hf_logging

    stream = _Records()
    handler = logging.StreamHandler(stream)
    root = hf_logging.get_logger("transformers")
    root.addHandler(handler)
    try:
        RewardModel.from_pretrained(path, device="cpu")
    finally:
        root.removeHandler(handler)
    return "".join(stream)


def test_loading_a_mean_pooled_model_reports_no_missing_pooler_but_other_missing_keys(tmp_path):
    from safetensors.torch import load_file, save_file

    rm = _rm()
    rm.save_pretrained(tmp_path / "rm")
    # the [CLS] pooler is saved as NaN (a plain BertForSequenceClassification load scores NaN, test_interop.py)
    pooler = {k: v for k, v in load_file(tmp_path / "rm" / "model.safetensors").items() if "pooler" in k}
    assert sorted(pooler) == ["bert.pooler.dense.bias", "bert.pooler.dense.weight"]
    assert all(torch.isnan(v).all() for v in pooler.values())
    assert "LOAD REPORT" not in _load_warnings(tmp_path / "rm")
    # a genuinely missing weight is still reported, and a missing head is refused (it would score at random)
    weights = load_file(tmp_path / "rm" / "model.safetensors")
    del weights["bert.encoder.layer.0.output.dense.bias"]
    save_file(weights, tmp_path / "rm" / "model.safetensors", metadata={"format": "pt"})
    text = _load_warnings(tmp_path / "rm")
    assert "LOAD REPORT" in text and "output.dense.bias" in text and "pooler" not in text
    del weights["classifier.weight"]
    save_file(weights, tmp_path / "rm" / "model.safetensors", metadata={"format": "pt"})
    from jprefs.errors import JprefsError

    with pytest.raises(JprefsError, match="no trained reward head.*classifier.weight"):
        RewardModel.from_pretrained(tmp_path / "rm", device="cpu")


def test_cls_pooling_on_a_backbone_without_a_pooler_warns_and_mean_does_not(tmp_path):
    """e5 ships no [CLS] pooler: pooling=cls would read [CLS] through a random layer, said at load."""
    import warnings

    from transformers import BertConfig, BertModel

    from jprefs.classifiers.backbones import load_classifier

    from .conftest import make_backbone_dir

    tok = make_tokenizer()
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64, pad_token_id=tok.pad_token_id)
    nopool = tmp_path / "no-pooler"
    BertModel(cfg, add_pooling_layer=False).save_pretrained(nopool)
    tok.save_pretrained(nopool)
    with pytest.warns(UserWarning, match=r"(?s)no trained \[CLS\] pooler .*pooler\.dense.*fix: pooling=mean"):
        load_classifier(str(nopool), 1, pooling="cls")
    with_pooler = make_backbone_dir(tmp_path / "with-pooler")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*no trained \\[CLS\\] pooler.*")
        load_classifier(str(nopool), 1, pooling="mean")
        load_classifier(with_pooler, 1, pooling="cls")


def test_every_e5_recipe_pools_by_mean():
    """The recipes on e5 (which ships no pooler) use mean pooling and e5's input prefix."""
    from pathlib import Path

    import yaml

    recipes = sorted((Path(__file__).resolve().parents[2] / "classifiers" / "recipes").glob("*.yaml"))
    e5 = [r for r in recipes if "e5" in str(yaml.safe_load(r.read_text(encoding="utf-8")).get("backbone", ""))]
    assert len(e5) >= 4
    for r in e5:
        cfg = yaml.safe_load(r.read_text(encoding="utf-8"))
        assert cfg.get("pooling") == "mean" and cfg.get("input_prefix") == "query: ", r.name
