"""Reward sources (callable, transformers classifier, jprefs RewardModel) and the data loaders."""

import json

import pytest

torch = pytest.importorskip("torch")

from jprefs.data.io import RejectsWriter  # noqa: E402
from jprefs.errors import ConfigError, DataError  # noqa: E402
from jprefs.eval.textmetrics import distinct_n  # noqa: E402
from jprefs.rl.policies import build_tiny_policy  # noqa: E402
from jprefs.rl.rewards import lexicon_sentiment, make_reward  # noqa: E402
from jprefs.rl.texts import load_prompts, load_text_rows  # noqa: E402


def test_callable_reward_sign_and_inputs():
    fn = make_reward("callable", "tests.rl.conftest:count_a")
    assert fn(["aa", "b"], ["a", "ba"]) == [1.0, 1.0]
    assert make_reward("callable", "tests.rl.conftest:count_a", sign=-1)(["x"], ["aa"]) == [-2.0]
    assert make_reward("callable", "tests.rl.conftest:count_a", reward_input="concat")(["aa", "b"], ["a", "ba"]) == [3.0, 1.0]
    with pytest.raises(ConfigError, match="module:function"):
        make_reward("callable", "no_colon_here")
    with pytest.raises(ConfigError, match="cannot import"):
        make_reward("callable", "tests.rl.conftest:missing_fn")
    with pytest.raises(ValueError, match="2 prompts but 1"):
        fn(["a", "b"], ["c"])


def test_lexicon_sentiment():
    assert lexicon_sentiment(["", "", ""], ["とても楽しかった。", "最悪だった。", "駅から歩いて十分だ。"]) == [1.0, -1.0, 0.0]


@pytest.fixture
def tiny_classifier(tmp_path):
    """A 2-label BERT classifier built from a config, saved like a Hub model."""
    from transformers import BertConfig, BertForSequenceClassification

    from jprefs.rl.policies import train_tokenizer

    tok = train_tokenizer(["良い天気だ。", "悪い天気だ。", "普通の日だ。"] * 5, vocab_size=300)
    tok.padding_side = "right"
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64, num_labels=2, pad_token_id=tok.pad_token_id,
        id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})).eval()
    path = tmp_path / "clf"
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path, model, tok


def test_classifier_reward_is_logit_margin_of_chosen_label(tiny_classifier):
    path, model, tok = tiny_classifier
    texts = ["良い天気だ。", "悪い日だ。", "普通"]
    with torch.no_grad():
        logits = model(**tok(texts, padding=True, return_tensors="pt")).logits
    want_pos = (logits[:, 1] - logits[:, 0]).tolist()
    got = make_reward("classifier", str(path), label="positive")([""] * 3, texts)
    assert got == pytest.approx(want_pos, abs=1e-5)
    got_neg = make_reward("classifier", str(path), label="0")([""] * 3, texts)
    assert got_neg == pytest.approx([-x for x in want_pos], abs=1e-5)
    with pytest.raises(ConfigError, match="not a label"):
        make_reward("classifier", str(path), label="joy")


def test_rm_reward_uses_the_jprefs_reward_model(tiny_classifier):
    pytest.importorskip("jprefs.classifiers.reward_model")
    path, model, tok = tiny_classifier
    from jprefs.classifiers.reward_model import RewardModel

    texts = ["良い天気だ。", "悪い日だ。"]
    want = RewardModel.from_pretrained(str(path), device="cpu").score(None, texts)
    got = make_reward("rm", str(path), reward_input="response")(["p1", "p2"], texts)
    assert got == pytest.approx([float(x) for x in want], abs=1e-5)


def test_load_text_rows_pairs_labels_and_rejects(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "質問", "chosen": "良い答え", "rejected": "悪い答え"}, ensure_ascii=False)
                     + "\n", encoding="utf-8")
    rows = load_text_rows(str(pairs))
    assert [(r.prompt, r.text, r.reward) for r in rows] == [("質問", "良い答え", 1.0), ("質問", "悪い答え", 0.0)]

    labelled = tmp_path / "lab.jsonl"
    labelled.write_text("\n".join([json.dumps({"text": "嬉しい", "joy": 2}, ensure_ascii=False),
                                   json.dumps({"text": "普通", "joy": "n/a"}, ensure_ascii=False),
                                   json.dumps({"body": "x"}), "{broken"]) + "\n", encoding="utf-8")
    rej = RejectsWriter(tmp_path / "rej.jsonl")
    rows = load_text_rows(str(labelled), reward_field="joy", rejects=rej)
    assert [(r.text, r.reward) for r in rows] == [("嬉しい", 2.0)]
    assert len(rows) + len(rej) == 4                                   # counts add up
    assert rej.by_reason == {"bad_reward": 1, "missing_text": 1, "malformed_json": 1}
    with pytest.raises(DataError, match="line 2"):
        load_text_rows(str(labelled), reward_field="joy")              # no rejects writer: first bad row raises

    txt = tmp_path / "t.txt"
    txt.write_text("一行目。\n\n" + "長い文。" * 100 + "\n", encoding="utf-8")
    rows = load_text_rows(str(txt), max_chars=50)
    assert rows[0].text == "一行目。" and all(len(r.text) <= 50 for r in rows) and len(rows) > 3


def test_builtin_data_and_prompts():
    rows = load_text_rows("builtin:ja-tiny", reward_field="reward")
    assert len(rows) == 520 and {r.reward for r in rows} == {0.0, 0.5, 1.0}
    assert len(load_prompts("builtin:ja-tiny")) == 20 and len(load_prompts("builtin:ja-tiny-eval")) == 6
    with pytest.raises(DataError, match="no file matches"):
        load_prompts("/nonexistent/*.txt")


def test_char_tokenizer_roundtrip_and_distinct():
    model, tok = build_tiny_policy(["今日はいい天気だ。", "明日は雨が降る。"] * 10, vocab_size=300, n_embd=16,
                                   n_layer=1, n_head=2)
    ids = tok("今日は雨", add_special_tokens=False)["input_ids"]
    assert len(ids) == 4 and tok.decode(ids) == "今日は雨"                # one token per seen character
    assert tok.decode(tok("未知の字", add_special_tokens=False)["input_ids"]) == "未知の字"   # byte fallback
    assert model.config.vocab_size == len(tok)
    assert distinct_n(["abab"], 2) == pytest.approx(2 / 3) and distinct_n([""], 2) == 0.0


def test_aozora_works_split_into_paragraph_texts():
    from tests.conftest import shared_file

    path = shared_file("aozora/aozora_miyazawa_kenji.jsonl.gz")
    rows = load_text_rows(str(path), max_chars=200)
    assert len(rows) > 1000
    assert all(0 < len(r.text) <= 200 and r.reward is None for r in rows)


def _two_head_rm(tiny_classifier, tmp_path, stats):
    """A jprefs reward model with ODIN's two heads (quality, length), saved like train-rm saves one."""
    from jprefs.classifiers.reward_model import RewardConfig, RewardModel

    path, model, tok = tiny_classifier
    cfg = RewardConfig(objective="pairwise", input="response", chosen_index=0, heads=["quality", "length"],
                       reward_head="quality", center=0.1, head_centers={"quality": 0.1, "length": -0.2, "full": 0.3},
                       labels=["quality", "length"], length_stats=stats)
    out = tmp_path / "odin"
    RewardModel(model, tok, cfg).save_pretrained(out)
    return str(out)


def test_rm_reward_head_picks_a_head_and_a_length_following_reward_is_warned_about(tiny_classifier, tmp_path):
    from jprefs.classifiers.reward_model import RewardModel

    follows = {"per_100_chars": 0.4, "length_controlled_accuracy": 0.2, "spearman_length": 0.8}
    flat = {"per_100_chars": 0.01, "length_controlled_accuracy": 0.55, "spearman_length": 0.05}
    path = _two_head_rm(tiny_classifier, tmp_path, {"quality": flat, "full": follows, "length": follows,
                                                    "measured_on": "eval split (40 pairs)"})
    rm = RewardModel.from_pretrained(path, device="cpu")
    texts = ["良い天気だ。", "悪い日だ。"]
    for head in ("quality", "full", "length"):
        got = make_reward("rm", path, head=head, reward_input="response")(["p", "q"], texts)
        assert got == pytest.approx(rm.score(None, texts, head=head).tolist(), abs=1e-5)
    assert make_reward("rm", path, reward_input="response")(["p", "q"], texts) == pytest.approx(
        rm.score(None, texts, head="quality").tolist(), abs=1e-5)          # the default: the quality head
    with pytest.raises(ConfigError, match="not one of this reward model's heads"):
        make_reward("rm", path, head="tone")
    # the quality head does not follow length: no warning; the full reward does: one, naming the fix
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_reward("rm", path, head="quality")
    with pytest.warns(UserWarning, match=r"follows length: \+0.400 reward per 100 characters, right on 20%.*"
                                         r"reward_head=quality"):
        make_reward("rm", path, head="full")


def test_rl_config_reward_head_reaches_the_reward(tiny_classifier, tmp_path):
    from jprefs.config import load_config
    from jprefs.rl.config import RLConfig
    from jprefs.rl.prepare import reward_for

    path = _two_head_rm(tiny_classifier, tmp_path, {})
    cfg = load_config(RLConfig, None, {"algo": "ppo", "reward_type": "rm", "reward_model": path,
                                       "reward_head": "length", "reward_input": "response"})
    from jprefs.classifiers.reward_model import RewardModel

    rm = RewardModel.from_pretrained(path, device="cpu")
    assert reward_for(cfg, "cpu")(["p"], ["良い天気だ。"]) == pytest.approx(
        rm.score(None, ["良い天気だ。"], head="length").tolist(), abs=1e-5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), None, "x"])
def test_a_non_finite_reward_is_one_clear_error_before_anything_trains_on_it(tmp_path, tok, bad):
    """NaN made every PPO loss NaN and stepped the optimiser on it; inf was clipped to the reward clip without
    a word; ILQL z-scored every return to NaN. Now each is one DataError naming the value and the response."""
    from jprefs.config import load_config
    from jprefs.rl.config import RLConfig
    from jprefs.rl.ilql import train_ilql
    from jprefs.rl.ppo import train_ppo
    from jprefs.rl.texts import TextRow

    from .conftest import tiny_gpt2

    def broken(prompts, responses):
        return [bad if i == 1 else 1.0 for i in range(len(responses))]

    fn = make_reward("callable", "tests.rl.conftest:nan_reward")
    with pytest.raises(DataError, match=r"1 non-finite or non-numeric value\(s\) among 3 \(#1: nan for 'b'"):
        fn(["", "", ""], ["a", "b", "c"])
    cfg = load_config(RLConfig, dict(algo="ppo", reward_type="callable", total_steps=2, batch_size=4,
                                     minibatch_size=2, ppo_epochs=1, max_new_tokens=4, eval_every=100,
                                     eval_samples=1, eval_prompts="builtin:ja-tiny-eval", seed=0))
    model = tiny_gpt2(tok)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(DataError, match="non-finite or non-numeric"):
        train_ppo(cfg, tmp_path / "ppo", model=model, tok=tok, reward_fn=broken, prompts=["", "b"])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())     # nothing stepped
    metrics = tmp_path / "ppo" / "metrics.jsonl"
    assert not metrics.exists() or "objective/score" not in metrics.read_text()
    icfg = load_config(RLConfig, dict(algo="ilql", reward_type="labels", total_steps=2, batch_size=2,
                                      max_new_tokens=4, eval_every=100, eval_samples=1,
                                      eval_prompts="builtin:ja-tiny-eval", seed=0))
    rows = [TextRow("", "ab", 1.0), TextRow("", "cd", 0.0), TextRow("", "ef", 0.5)]
    if bad is not None:                                                  # a row's None reward means "score it"
        with pytest.raises(DataError, match="non-finite or non-numeric"):
            train_ilql(icfg, tmp_path / "ilql-rows", model=tiny_gpt2(tok), tok=tok,
                       rows=[TextRow(r.prompt, r.text, bad if i == 1 else r.reward) for i, r in enumerate(rows)])
    with pytest.raises(DataError, match="non-finite or non-numeric"):     # rows scored by the reward function
        train_ilql(icfg, tmp_path / "ilql-fn", model=tiny_gpt2(tok), tok=tok, reward_fn=broken,
                   rows=[TextRow(r.prompt, r.text, None) for r in rows])


def test_the_eval_reward_of_a_labels_run_carries_the_training_sign():
    """reward_type=labels with reward_sign=-1 minimises the labels; its eval reward (eval/reward, the beta_gen
    sweep) was the un-negated score, so a working run looked as if it got worse."""
    from jprefs.config import load_config
    from jprefs.rl.config import RLConfig
    from jprefs.rl.prepare import eval_reward_for

    for sign in (1.0, -1.0):
        cfg = load_config(RLConfig, dict(algo="ilql", reward_type="labels", reward_sign=sign,
                                         reward_model="jprefs.rl.rewards:lexicon_sentiment"))
        assert eval_reward_for(cfg)([""], ["最高だった。"]) == [sign]
