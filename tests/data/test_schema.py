import pytest

from jprefs.data.schema import (BinaryExample, Message, PreferencePair, RankList, SchemaError, as_messages,
                                normalize_text, prompt_key, record_from_dict, render_prompt)


def test_pair_roundtrip_and_stable_id():
    p = PreferencePair.create("日本の首都は？", "東京です。", "大阪です。", source="s", source_id="3", license="mit")
    q = PreferencePair.from_dict(p.to_dict())
    assert q == p
    assert p.id == PreferencePair.create("日本の首都は？", "東京です。", "大阪です。").id
    assert p.id != PreferencePair.create("日本の首都は？", "大阪です。", "東京です。").id
    assert p.prompt == [Message("user", "日本の首都は？")]


@pytest.mark.parametrize("kwargs, reason", [
    (dict(prompt="q", chosen="a", rejected="a"), "identical_responses"),
    (dict(prompt="q", chosen="", rejected="b"), "empty_chosen"),
    (dict(prompt="q", chosen="a", rejected="   "), "empty_rejected"),
    (dict(prompt="q", chosen=3, rejected="b"), "non_string_chosen"),
    (dict(prompt="", chosen="a", rejected="b"), "empty_prompt"),
    (dict(prompt=[], chosen="a", rejected="b"), "empty_prompt"),
    (dict(prompt=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}], chosen="a", rejected="b"),
     "prompt_not_ending_with_user"),
    (dict(prompt=[{"role": "bot", "content": "q"}], chosen="a", rejected="b"), "bad_role"),
    (dict(prompt=[{"role": "user"}], chosen="a", rejected="b"), "bad_message"),
    (dict(prompt="q", chosen="a\x00", rejected="b"), "nul_in_chosen"),
])
def test_pair_validation_reasons(kwargs, reason):
    with pytest.raises(SchemaError) as e:
        PreferencePair.create(**kwargs)
    assert e.value.reason == reason


def test_pair_from_dict_missing_fields_and_extras():
    with pytest.raises(SchemaError, match="missing field"):
        PreferencePair.from_dict({"prompt": "q", "chosen": "a"})
    with pytest.raises(SchemaError):
        PreferencePair.from_dict(["not", "a", "dict"])
    p = PreferencePair.from_dict({"prompt": "q", "chosen": "a", "rejected": "b", "lang": "ja", "source_id": 7})
    assert p.meta["extra"] == {"lang": "ja"} and p.source_id == "7"
    with pytest.raises(SchemaError, match="number"):
        PreferencePair.from_dict({"prompt": "q", "chosen": "a", "rejected": "b", "chosen_score": "high"})


def test_ranklist_expands_to_all_pairs():
    r = RankList.create("q", ["best", "mid", "worst", "bad"], source="s", license="mit")
    pairs = r.to_pairs()
    assert len(pairs) == 4 * 3 // 2
    assert {(p.chosen, p.rejected) for p in pairs} == {
        ("best", "mid"), ("best", "worst"), ("best", "bad"), ("mid", "worst"), ("mid", "bad"), ("worst", "bad")}
    assert all(p.meta["group"] == r.id and p.license == "mit" for p in pairs)
    assert len({p.id for p in pairs}) == 6
    assert isinstance(record_from_dict(r.to_dict()), RankList)
    with pytest.raises(SchemaError):
        RankList.create("q", ["only one"])
    with pytest.raises(SchemaError):
        RankList.create("q", ["a", "a"])


def test_binary_examples_from_pair():
    p = PreferencePair.create("q", "good", "bad", license="mit")
    c, r = p.to_binary()
    assert (c.response, c.label, r.response, r.label) == ("good", 1, "bad", 0)
    assert c.pair_id == p.id and c.license == "mit"
    d = c.to_dict()
    assert d["prompt_text"] == "q"
    assert BinaryExample.from_dict({"text": "文", "label": "1"}).label == 1
    with pytest.raises(SchemaError):
        BinaryExample.from_dict({"text": "文", "label": 2})
    with pytest.raises(SchemaError):
        BinaryExample.from_dict({"text": "文", "label": True})


def test_render_prompt_and_keys():
    msgs = as_messages([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                        {"role": "user", "content": "c"}])
    assert render_prompt(msgs) == "ユーザー: a\n\nアシスタント: b\n\nユーザー: c"
    assert render_prompt(msgs, style="hh") == "\n\nHuman: a\n\nAssistant: b\n\nHuman: c"
    assert render_prompt("単一") == "単一"
    # NFKC + whitespace: full-width letters and extra spaces do not make a new prompt
    assert prompt_key(as_messages("ＡＢＣ  d")) == prompt_key(as_messages("ABC d"))
    assert normalize_text("  ｱ  b ") == "ア b"


def test_cue_prompt_round_trips_and_rejects_other_text():
    from jprefs.data.schema import Message, parse_cue_prompt, render_prompt

    convs = [[Message("user", "日本の首都は?")],
             [Message("system", "丁寧に。"), Message("user", "猫は?\n\n二段落目"), Message("assistant", "好き: はい"),
              Message("user", "c")]]
    for msgs in convs:
        text = render_prompt(msgs, cue=True)
        assert text.endswith("\n\nアシスタント:\n") and parse_cue_prompt(text) == msgs
    for other in ("日本の首都は?", "ユーザー: 質問", "ユーザー: 質問\n\nアシスタント: ", "質問\n\nアシスタント:\n",
                  render_prompt(convs[1])):
        assert parse_cue_prompt(other) is None
