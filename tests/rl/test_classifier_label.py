"""`reward_type=classifier`: which label is the reward when the classifier's labels have names.

``reward_label`` defaults to "1" everywhere (jprefs rl, eval policy, data rm-pairs), and label 1 of
``{0: "positive", 1: "negative"}`` is the negative class: such a run trained the policy towards
negative text without a word. "1" now stands only for generic labels or a good-named label 1."""

import pytest

torch = pytest.importorskip("torch")

from jprefs.errors import ConfigError  # noqa: E402
from jprefs.rl.rewards import make_reward  # noqa: E402

TEXTS = ["良い天気だ。", "悪い日だ。", "普通"]


def _clf(tmp_path, names):
    from transformers import BertConfig, BertForSequenceClassification

    from jprefs.rl.policies import train_tokenizer

    tok = train_tokenizer(TEXTS * 5, vocab_size=300)
    tok.padding_side = "right"          # BERT's absolute positions: left padding changes the logits
    torch.manual_seed(0)
    kw = {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}} if names else {}
    model = BertForSequenceClassification(BertConfig(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64, num_labels=2, pad_token_id=tok.pad_token_id, **kw)).eval()
    path = tmp_path / "clf"
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    with torch.no_grad():
        logits = model(**tok(TEXTS, padding=True, return_tensors="pt")).logits
    return str(path), logits


def _margin(logits, i):
    return (logits[:, i] - logits[:, 1 - i]).tolist()


@pytest.mark.parametrize("names, want", [(["positive", "negative"], 0), (["good", "bad"], 0),
                                         (["chosen", "rejected"], 0), (["negative", "positive"], 1),
                                         (["LABEL_0", "LABEL_1"], 1), (None, 1)])
def test_an_unnamed_reward_label_is_read_from_the_label_names(tmp_path, names, want):
    path, logits = _clf(tmp_path, names)
    assert make_reward("classifier", path)([""] * 3, TEXTS) == pytest.approx(_margin(logits, want), abs=1e-5)
    assert make_reward("classifier", path, label="")([""] * 3, TEXTS) == pytest.approx(_margin(logits, want),
                                                                                       abs=1e-5)


@pytest.mark.parametrize("names", [["positive", "negative"], ["good", "bad"], ["toxic", "non-toxic"]])
def test_the_default_reward_label_1_is_refused_where_label_1_is_not_the_good_one(tmp_path, names):
    path, logits = _clf(tmp_path, names)
    with pytest.raises(ConfigError) as e:
        make_reward("classifier", path, label="1")
    msg = str(e.value)
    assert "reward_label=1" in msg and all(n in msg for n in names) and f"reward_label={names[0]}" in msg
    # naming a label, either of them, is honoured as before; so is an explicit other index
    assert make_reward("classifier", path, label=names[1])([""] * 3, TEXTS) == pytest.approx(_margin(logits, 1),
                                                                                             abs=1e-5)
    assert make_reward("classifier", path, label="0")([""] * 3, TEXTS) == pytest.approx(_margin(logits, 0), abs=1e-5)


def test_the_rl_config_default_cannot_reward_the_negative_class(tmp_path):
    """The path a `jprefs rl reward_type=classifier reward_model=...` run takes, with reward_label unset."""
    from jprefs.config import load_config
    from jprefs.rl.config import RLConfig
    from jprefs.rl.prepare import reward_for

    path, logits = _clf(tmp_path, ["positive", "negative"])
    cfg = load_config(RLConfig, None, {"reward_type": "classifier", "reward_model": path})
    with pytest.raises(ConfigError, match="reward_label=positive"):
        reward_for(cfg, "cpu")
    cfg = load_config(RLConfig, None, {"reward_type": "classifier", "reward_model": path,
                                       "reward_label": "positive"})
    assert reward_for(cfg, "cpu")([""] * 3, TEXTS) == pytest.approx(_margin(logits, 0), abs=1e-5)
    # a conventional classifier keeps the default label 1
    path, logits = _clf(tmp_path / "n", ["negative", "positive"])
    cfg = load_config(RLConfig, None, {"reward_type": "classifier", "reward_model": path})
    assert reward_for(cfg, "cpu")([""] * 3, TEXTS) == pytest.approx(_margin(logits, 1), abs=1e-5)


def test_reward_type_rm_reads_a_named_plain_classifier_the_same_way(tmp_path):
    path, logits = _clf(tmp_path, ["good", "bad"])
    got = make_reward("rm", path, reward_input="response")([""] * 3, TEXTS)
    assert got == pytest.approx(_margin(logits, 0), abs=1e-4)
