"""Evaluation metrics against hand-computed values, the score CLI, and the model card front matter."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from jprefs.classifiers.evaluate import evaluate_pairs, expected_calibration_error
from jprefs.data.schema import PreferencePair


class FixedScores:
    """Stands in for a RewardModel: the reward of a response is looked up in a table."""

    def __init__(self, table):
        self.table = table

    def score(self, prompts, responses, batch_size=64, show_progress=False):
        return np.array([self.table[r] for r in responses], dtype=np.float32)


def _pair(c, r):
    return PreferencePair.create("質問", c, r)


def test_pairwise_accuracy_and_length_baseline_hand_computed():
    pairs = [_pair("長い良い回答です", "悪い"), _pair("良い", "長い悪い回答です"), _pair("同じ長さA", "同じ長さB")]
    rm = FixedScores({"長い良い回答です": 2.0, "悪い": 1.0, "良い": 0.0, "長い悪い回答です": 0.5,
                      "同じ長さA": 1.0, "同じ長さB": 1.0})
    m, arrays = evaluate_pairs(rm, pairs)
    assert m["pairwise_accuracy"] == pytest.approx((1 + 0 + 0.5) / 3)       # a tie counts 1/2
    assert m["length_baseline_accuracy"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert m["mean_margin"] == pytest.approx((1.0 - 0.5 + 0.0) / 3)
    assert arrays["chosen"].tolist() == [2.0, 0.0, 1.0]


def test_ece_hand_computed():
    # bin [0.8, 0.9): confidences 0.8, 0.8 -> accuracy 1/2 -> gap 0.3; bin [0.2, 0.3): 0.2, 0.2 -> acc 0 -> 0.2
    ece, bins = expected_calibration_error([0.8, 0.8, 0.2, 0.2], [1, 0, 0, 0])
    assert ece == pytest.approx(0.5 * 0.3 + 0.5 * 0.2)
    assert sum(b["n"] for b in bins) == 4


def test_pair_reliability_counts_each_pair_once_at_the_predicted_winners_confidence():
    # margins r_c - r_r: +1.7346 (p = 0.85, right), -1.7346 (p = 0.15: the winner's confidence 0.85, wrong),
    # +2.9444 (p = 0.95, right), 0 (a tie: confidence 0.5, counted 1/2 right)
    pairs = [_pair("a", "b"), _pair("c", "d"), _pair("e", "f"), _pair("g", "h")]
    rm = FixedScores({"a": 1.7346, "b": 0.0, "c": 0.0, "d": 1.7346, "e": 2.9444, "f": 0.0, "g": 1.0, "h": 1.0})
    m, arrays = evaluate_pairs(rm, pairs)
    bins = arrays["calibration_bins"]
    assert bins[0]["lo"] == 0.5 and bins[-1]["hi"] == 1.0 and len(bins) == 5
    assert sum(b["n"] for b in bins) == 4                    # 4 pairs, 4 points (both orientations gave 8)
    full = {round(b["lo"], 1): (b["n"], round(b["conf"], 3), b["acc"]) for b in bins if b["n"]}
    assert full == {0.5: (1, 0.5, 0.5), 0.8: (2, 0.85, 0.5), 0.9: (1, 0.95, 1.0)}
    assert m["pair_ece"] == pytest.approx((2 * 0.35 + 0.05 + 0.0) / 4, abs=1e-4)
    # the same number as the old two-orientation ECE, whose diagram was this one mirrored with doubled counts
    pc = 1 / (1 + np.exp(-np.array([1.7346, -1.7346, 2.9444, 0.0])))
    both, _ = expected_calibration_error(np.concatenate([pc, 1 - pc]), np.concatenate([np.ones(4), np.zeros(4)]))
    assert m["pair_ece"] == pytest.approx(both)


def test_a_two_logit_model_on_pairs_is_plotted_pointwise_with_bin_counts_in_metrics(tmp_path):
    from jprefs.classifiers.data import RMData
    from jprefs.classifiers.evaluate import evaluate_and_plot
    from jprefs.classifiers.reward_model import RewardConfig, RewardModel

    from .conftest import make_model, make_tokenizer

    pairs = [_pair("良い", "悪い"), _pair("好き", "嫌い"), _pair("良い天気", "雨")]
    data = RMData("records", pairs)
    two = RewardModel(make_model(2), make_tokenizer(), RewardConfig(objective="binary", max_length=32))
    m = evaluate_and_plot(two, data, tmp_path, name="eval")
    rel = m["reliability"]
    assert rel["ece_key"] == "pointwise_ece" and "P(label 1)" in rel["of"]
    assert sum(b["n"] for b in rel["bins"]) == 6              # each response once, chosen = 1, rejected = 0
    assert (tmp_path / "eval_reliability.png").is_file() and m["plots"][0] == "eval_reliability.png"
    one = RewardModel(make_model(1), make_tokenizer(), RewardConfig(objective="pairwise", chosen_index=0,
                                                                    max_length=32))
    m1 = evaluate_and_plot(one, data, tmp_path, name="one", plots=False)
    assert m1["reliability"]["ece_key"] == "pair_ece" and sum(b["n"] for b in m1["reliability"]["bins"]) == 3
    assert all(b["lo"] >= 0.5 for b in m1["reliability"]["bins"])
    json.dumps(m1)                                              # metrics.json-serialisable


def test_score_cli_on_pairs_tsv_and_plain_jsonl(tmp_path):
    from jprefs.classifiers.reward_model import RewardConfig, RewardModel
    from jprefs.cli import main

    from .conftest import make_model, make_tokenizer

    RewardModel(make_model(2), make_tokenizer(), RewardConfig(objective="binary", max_length=48)).save_pretrained(
        tmp_path / "rm")
    pairs = tmp_path / "p.jsonl"
    pairs.write_text("\n".join(json.dumps(_pair(c, r).to_dict(), ensure_ascii=False)
                               for c, r in [("良い", "悪い"), ("好き", "嫌い")]) + "\n{broken\n", encoding="utf-8")
    assert main(["score", str(tmp_path / "rm"), str(pairs), "-o", str(tmp_path / "s.jsonl")]) == 0
    rows = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and {"chosen_reward", "rejected_reward"} <= set(rows[0])
    rejects = (tmp_path / "s.rejects.jsonl").read_text().splitlines()
    assert len(rejects) == 1 and json.loads(rejects[0])["line"] == 3
    tsv = tmp_path / "t.tsv"
    tsv.write_text("良いです。\t1\t\n悪いです。\t0\t\n", encoding="utf-8")
    assert main(["score", str(tmp_path / "rm"), str(tsv), "-o", str(tmp_path / "t.jsonl")]) == 0
    assert [json.loads(x)["label"] for x in (tmp_path / "t.jsonl").read_text().splitlines()] == [1, 0]
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"prompt": "質問", "response": "回答"}\n{"text": "円高"}\n{"x": 1}\n{"response": "  "}\n',
                     encoding="utf-8")
    assert main(["score", str(tmp_path / "rm"), str(plain), "-o", str(tmp_path / "q.jsonl")]) == 0
    got = [json.loads(x) for x in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert len(got) == 2 and all(isinstance(r["reward"], float) for r in got)
    rej = [json.loads(x) for x in (tmp_path / "q.rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rej] == [(3, "no_response"), (4, "empty_response")]   # 4 in = 2 + 2


def test_model_card_has_hub_front_matter():
    from jprefs.classifiers.card import model_card
    from jprefs.classifiers.config import TrainRMConfig

    cfg = TrainRMConfig(data="x.tsv", output_dir="out/chabsa-rm", dataset_name="chABSA", backbone="e5-small-offline")
    metrics = {"best_epoch": 1, "selected_by": "accuracy", "center": 0.1, "data": {"train": 10, "eval": 2},
               "test": {"accuracy": 0.9, "f1": 0.91, "roc_auc": 0.95, "ece": 0.05, "majority_baseline_accuracy": 0.6,
                        "reward_length_corr": {"pearson": 0.1, "spearman": 0.05}}}
    text = model_card(cfg, metrics, license="cc-by-4.0")
    front = yaml.safe_load(text.split("---")[1])
    # the model's licence is the backbone's (e5: MIT) and the data's together, the rule `jprefs push` applies
    assert front["license"] == "other" and front["license_name"] == "cc-by-4.0 AND mit" and front["language"] == ["ja"]
    assert front["base_model"] == "intfloat/multilingual-e5-small" and front["datasets"] == ["chABSA"]
    names = [m["type"] for m in front["model-index"][0]["results"][0]["metrics"]]
    assert "accuracy" in names and "majority_baseline_accuracy" not in names
    assert "| test | accuracy | 0.9000 |" in text and "## Limitations" in text
    # the Hub's own reader takes the model-index: one result per split, each on the data it was measured on
    from huggingface_hub import ModelCard

    two = model_card(TrainRMConfig(data="x.tsv", test_data="t.jsonl", output_dir="o"),
                     {**metrics, "eval": {"accuracy": 0.8}})
    results = ModelCard(two).data.eval_results
    assert {(r.dataset_name, r.metric_type, r.metric_value) for r in results if r.metric_type == "accuracy"} == {
        ("t.jsonl", "accuracy", 0.9), ("x.tsv (held-out split)", "accuracy", 0.8)}


def test_model_card_warns_when_eval_was_split_off_the_training_file():
    from jprefs.classifiers.card import model_card
    from jprefs.classifiers.config import TrainRMConfig

    metrics = {"best_epoch": 1, "selected_by": "accuracy", "center": 0.0, "data": {},
               "eval": {"accuracy": 0.96}, "test": {"accuracy": 0.875}}
    split = model_card(TrainRMConfig(data="x.tsv", output_dir="o", backbone="BAAI/bge-m3"), metrics)
    assert "split off the training file" in split and "eval accuracy 0.9600, test 0.8750" in split
    assert "multilingual-e5-small: MIT" not in split           # the e5 licence note only for e5 backbones
    given = model_card(TrainRMConfig(data="x.tsv", eval_data="dev.tsv", output_dir="o"), metrics)
    assert "split off the training file" not in given
    no_test = model_card(TrainRMConfig(data="x.tsv", output_dir="o"), {**metrics, "test": None})
    assert "Give an independent `test_data`" in no_test


def test_the_cards_licence_takes_a_non_commercial_backbone_into_account(tmp_path):
    """A cc-by-nc-4.0 backbone and cc0-1.0 data: the card said cc0-1.0 (the data's alone)."""
    from jprefs.classifiers.card import model_card
    from jprefs.classifiers.config import TrainRMConfig

    bb = tmp_path / "bb"
    bb.mkdir()
    (bb / "README.md").write_text("---\nlicense: cc-by-nc-4.0\n---\n# a backbone\n", encoding="utf-8")
    text = model_card(TrainRMConfig(data="x.jsonl", output_dir="o", backbone=str(bb)), {"data": {}}, license="cc0-1.0")
    assert yaml.safe_load(text.split("---")[1])["license"] == "cc-by-nc-4.0"
