"""Which logit a plain two-label classifier is scored by when the caller names no label, and that a
jprefs reward model refuses ``label`` / ``--label`` (its reward is fixed by training).

A model whose ``id2label`` says ``{0: "positive", 1: "negative"}`` was scored by label 1, the
negative class, without a word; generic ``LABEL_0`` / ``LABEL_1`` keep label 1 (chosen = 1)."""

from __future__ import annotations

import json

import pytest

from jprefs.errors import ConfigError

from .conftest import make_model, make_tokenizer


def _clf(path, names):
    model = make_model(2)
    if names is not None:
        model.config.id2label = dict(enumerate(names))
        model.config.label2id = {n: i for i, n in enumerate(names)}
    model.save_pretrained(path)
    make_tokenizer().save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("names, want", [
    (["positive", "negative"], 0), (["chosen", "rejected"], 0), (["good", "bad"], 0),
    (["negative", "positive"], 1), (["rejected", "chosen"], 1), (["Bad", "GOOD"], 1), (["ＮＯ", "ｙｅｓ"], 1),
    (["LABEL_0", "LABEL_1"], 1), (None, 1),
])
def test_the_default_label_is_read_from_the_label_names(tmp_path, names, want):
    from jprefs.classifiers.reward_model import RewardModel

    rm = RewardModel.from_pretrained(_clf(tmp_path / "clf", names), device="cpu")
    assert rm.config.chosen_index == want
    logits = rm.logits(None, ["良いです", "悪いです"])
    assert rm.score(None, ["良いです", "悪いです"]).tolist() == pytest.approx(
        (logits[:, want] - logits[:, 1 - want]).tolist(), abs=1e-6)
    if names is not None:
        assert f"chosen_index={want} ({names[want]})" in repr(rm)


@pytest.mark.parametrize("names", [["toxic", "non-toxic"], ["positive", "good"]])
def test_named_labels_without_one_good_name_are_an_error_naming_them_and_the_flag(tmp_path, names):
    from jprefs.classifiers.reward_model import RewardModel

    path = _clf(tmp_path / "clf", names)
    with pytest.raises(ConfigError) as e:
        RewardModel.from_pretrained(path, device="cpu")
    assert all(n in str(e.value) for n in names) and "--label NAME" in str(e.value)
    assert "reward_label=NAME" in str(e.value)
    # naming the label (either of them) is what the error says to do
    assert RewardModel.from_pretrained(path, device="cpu", label=names[1]).config.chosen_index == 1


def test_an_explicit_label_wins_over_the_names(tmp_path):
    from jprefs.classifiers.reward_model import RewardModel

    path = _clf(tmp_path / "clf", ["positive", "negative"])
    assert RewardModel.from_pretrained(path, device="cpu", label="negative").config.chosen_index == 1
    assert RewardModel.from_pretrained(path, device="cpu", label=1).config.chosen_index == 1


def test_a_catalogue_entry_still_says_which_label(tmp_path):
    """A catalogued plain classifier keeps its entry's chosen index, whatever its label names."""
    from jprefs.classifiers.catalogue import load_catalogue
    from jprefs.classifiers.reward_model import RewardModel

    entry = next(e for e in load_catalogue() if e.supported and e.num_labels == 2 and e.chosen_index == 1)
    path = _clf(tmp_path / "m", ["positive", "negative"])       # names that, alone, would pick 0
    rm = RewardModel.from_pretrained(path, device="cpu", catalogue_id=entry.id)
    assert rm.config.chosen_index == 1


def _jprefs_rm(path):
    from jprefs.classifiers.reward_model import RewardConfig, RewardModel

    RewardModel(make_model(2), make_tokenizer(), RewardConfig(objective="binary", chosen_index=1, center=0.3,
                                                              labels=["rejected", "chosen"])).save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("label", ["0", 0, "rejected", 1])
def test_a_jprefs_reward_model_refuses_a_label(tmp_path, label):
    """`label=0` turned a binary jprefs model's reward around but kept the centre measured for label 1."""
    from jprefs.classifiers.reward_model import RewardModel

    path = _jprefs_rm(tmp_path / "rm")
    with pytest.raises(ConfigError, match=r"jprefs reward model.*does not apply\n  fix: drop label / --label"):
        RewardModel.from_pretrained(path, device="cpu", label=label)
    assert RewardModel.from_pretrained(path, device="cpu").config.chosen_index == 1


@pytest.mark.parametrize("marker, what", [("jprefs_ensemble.json", "ensemble"), ("jprefs_stack.json", "stack")])
def test_an_ensemble_or_stack_refuses_a_label_it_used_to_drop(tmp_path, marker, what):
    from jprefs.classifiers.reward_model import RewardModel

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / marker).write_text(json.dumps({}), encoding="utf-8")
    with pytest.raises(ConfigError, match=f"jprefs reward {what}.*does not apply"):
        RewardModel.from_pretrained(tmp_path / "m", device="cpu", label="positive")


def test_jprefs_score_refuses_label_for_a_jprefs_model_and_picks_it_for_a_named_classifier(tmp_path, capsys):
    from jprefs.cli import main

    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"response": "良いです"}, ensure_ascii=False) + "\n", encoding="utf-8")
    rm = _jprefs_rm(tmp_path / "rm")
    out = tmp_path / "out.jsonl"
    assert main(["score", rm, str(inp), "-o", str(out), "--label", "0", "--device", "cpu"]) != 0
    assert "--label" in capsys.readouterr().err and not out.exists()

    from jprefs.classifiers.reward_model import RewardModel

    clf = _clf(tmp_path / "clf", ["good", "bad"])
    assert main(["score", clf, str(inp), "-o", str(out), "--device", "cpu"]) == 0
    logits = RewardModel.from_pretrained(clf, device="cpu", label=0).logits(None, ["良いです"])
    got = json.loads(out.read_text(encoding="utf-8"))["reward"]
    assert got == pytest.approx(float(logits[0, 0] - logits[0, 1]), abs=1e-5)
