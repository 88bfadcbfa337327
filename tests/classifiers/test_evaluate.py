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
    assert front["license"] == "cc-by-4.0" and front["language"] == ["ja"]
    assert front["base_model"] == "intfloat/multilingual-e5-small" and front["datasets"] == ["chABSA"]
    names = [m["type"] for m in front["model-index"][0]["results"][0]["metrics"]]
    assert "accuracy" in names and "majority_baseline_accuracy" not in names
    assert "| test | accuracy | 0.9000 |" in text and "## Limitations" in text


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
