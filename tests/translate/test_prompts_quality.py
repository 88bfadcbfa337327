import pytest

from jprefs.errors import ConfigError
from jprefs.translate.prompts import Template, clean_output, load_template
from jprefs.translate.quality import Thresholds, check_unit, english_run

TH = Thresholds()
SRC = "Could you tell me what the weather will be like in Tokyo tomorrow morning?"
GOOD = "明日の朝、東京の天気はどうなるか教えていただけますか？"


def test_template_renders_system_fewshot_and_user(template):
    t = Template(name="t", system="S", user="U:{text}", few_shot=(("a", "あ"),))
    assert t.messages(["x"]) == [{"role": "system", "content": "S"}, {"role": "user", "content": "U:a"},
                                 {"role": "assistant", "content": "あ"}, {"role": "user", "content": "U:x"}]
    msgs = template.messages(["one", "two {text} {items}"])  # braces in the text are not template fields
    assert '<seg id="2">\ntwo {text} {items}\n</seg>' in msgs[-1]["content"]
    assert template.hash != Template(name="t", system="S2", user=template.user).hash


def test_packed_answer_parsing(template):
    ans = '<seg id="1">\nいち\n</seg>\n<seg id="2">\nに\nさん\n</seg>'
    assert template.parse(ans, 2) == ["いち", "に\nさん"]
    assert template.parse(ans, 3) is None                       # missing item
    assert template.parse(ans.replace('id="2"', 'id="1"'), 2) is None  # wrong ids
    assert template.parse("いち\nに", 2) is None                 # no tags


def test_template_file_errors_are_clear(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("user: no placeholder\n")
    with pytest.raises(ConfigError, match=r"\{text\}"):
        load_template(str(p))
    with pytest.raises(ConfigError, match="not found"):
        load_template(str(tmp_path / "missing.yaml"))
    # wrong shapes were internal errors (KeyError, TypeError, AttributeError)
    for text, msg in (("user: '{text}'\nfew_shot:\n- source: a\n", "few_shot"),
                      ("user: '{text}'\nfew_shot: x\n", "few_shot"),
                      ("user: ['{text}']\n", "'user' must be a string")):
        p.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match=msg):
            load_template(str(p))


@pytest.mark.parametrize("raw,src,want", [
    ("翻訳：こんにちは", "Hello", "こんにちは"),
    ("日本語訳: 「こんにちは」", "Hello", "こんにちは"),
    ("以下が翻訳です：\nこんにちは", "Hello", "こんにちは"),
    ("Here is the translation: こんにちは", "Hello", "こんにちは"),
    ('"こんにちは"', "Hello", "こんにちは"),
    ("「はい」と「いいえ」", "yes and no", "「はい」と「いいえ」"),   # inner quotes: not a wrapper
    ("「こんにちは」", '"Hello"', "「こんにちは」"),                # the source was quoted too
    ("  こんにちは \n", "Hello", "こんにちは"),
])
def test_clean_output(raw, src, want):
    assert clean_output(raw, src) == want


def test_good_translation_has_no_flags():
    assert check_unit(SRC, GOOD, "stop", TH) == []


@pytest.mark.parametrize("tgt,finish,flag", [
    ("", "stop", "empty"),
    (GOOD, "length", "truncated"),
    (SRC, "stop", "low_japanese_ratio"),
    ("明日の朝 could you tell me what the weather will be", "stop", "leftover_english"),
    ("東京。", "stop", "length_ratio"),
    (GOOD + "ですです" * 10, "stop", "repetition"),
    ("申し訳ありませんが、その翻訳はできません。", "stop", "refusal"),
    (GOOD + "<|im_end|>\n<|im_start|>user", "stop", "template_leak"),
    (GOOD + "</s>", "stop", "template_leak"),
    ("[INST] " + GOOD, "stop", "template_leak"),
    (GOOD + "\n### Response: " + GOOD, "stop", "template_leak"),
    ("明日の朝 Yes. I think so. It is fine.", "stop", "leftover_english"),     # short sentences in a row
    ("明日の朝\nwhat is it\nit will be sunny", "stop", "leftover_english"),      # across lines
])
def test_each_flag_fires(tgt, finish, flag):
    assert flag in check_unit(SRC, tgt, finish, TH)


def test_a_source_that_loops_lets_only_its_own_loop_through():
    """A source with a loop of its own ("hahaha...") may be translated with one as long, but a
    decoding loop beyond it is still a loop (any loop passed when the source had one)."""
    src = "That is so funny " + "ha" * 10 + " I cannot stop laughing at the joke you told me yesterday."
    faithful = "それはとても面白い" + "ハ" * 20 + "、昨日のあなたの冗談に笑いが止まりません。"
    assert "repetition" not in check_unit(src, faithful, "stop", TH)
    looped = faithful + "笑いが止まりません。" * 30
    assert "repetition" in check_unit(src, looped, "stop", TH)
    lines = "Line one.\n" * 4 + "And the rest of the message, which is long enough to be checked."
    assert "repetition" not in check_unit(lines, "一行目。\n" * 4 + "そして残りのメッセージ。", "stop", TH)
    assert "repetition" in check_unit(lines, "一行目。\n" * 40 + "そして残りのメッセージ。", "stop", TH)
    # markup the source itself holds is a faithful copy, not a leak
    assert "template_leak" not in check_unit("Use the <|im_end|> token to stop a ChatML model.",
                                             "ChatML モデルを止めるには <|im_end|> トークンを使います。", "stop", TH)


def test_checks_respect_the_source():
    # a refusal in the source may be translated as a refusal
    src = "I'm sorry, but I cannot help you with that request."
    assert "refusal" not in check_unit(src, "申し訳ありませんが、そのご依頼にはお応えできません。", "stop", TH)
    # names and short texts may stay in Latin script
    assert check_unit("John Smith", "John Smith", "stop", TH) == []
    assert english_run("New York Times の記事") == 0     # capitalised run = a name
    assert english_run("⟦1⟧ を実行して the quick brown fox jumps over") == 6


def test_every_shipped_template_loads_and_renders():
    from jprefs.translate.prompts import builtin_templates

    names = builtin_templates()
    assert {"builtin:en-ja", "builtin:en-ja-fewshot"} <= set(names)
    for name in names:
        t = load_template(name)
        one, many = t.messages(["Hello ⟦1⟧."]), t.messages(["a", "b"])
        assert one[-1]["role"] == "user" and "Hello ⟦1⟧." in one[-1]["content"]
        assert t.parse('<seg id="1">\nあ\n</seg>\n<seg id="2">\nい\n</seg>', 2) == ["あ", "い"]
        assert len(many) == len(one) - 2 * len(t.few_shot) + (2 if t.few_shot else 0)


def test_fewshot_placeholders_survive_the_examples():
    t = load_template("builtin:en-ja-fewshot")
    msgs = t.messages(["x"])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "⟦1⟧" in msgs[4]["content"] and "⟦2⟧" in msgs[4]["content"]


def test_builtin_templates_are_found_without_the_repository(tmp_path, monkeypatch):
    """A non-editable install has no translate/ folder: builtin: names (and the old
    translate/prompts/NAME.yaml paths) resolve inside the package; unknown names say what exists."""
    from jprefs.translate import prompts

    monkeypatch.setattr(prompts, "REPO_ROOT", tmp_path)            # as if installed into site-packages
    monkeypatch.chdir(tmp_path)
    assert load_template("builtin:en-ja").name == "en-ja"
    assert load_template("translate/prompts/en-ja-fewshot.yaml").few_shot
    with pytest.raises(ConfigError, match="builtin:en-ja"):
        load_template("builtin:nope")
    with pytest.raises(ConfigError, match="template file not found"):
        load_template("prompts/missing.yaml")


@pytest.mark.parametrize("raw,src", [
    ("翻訳：ある言語で書かれた文章を別の言語に移すこと。", "Translation: the process of converting text from one language to another."),
    ("日本語訳：この単語の意味です。", "Japanese translation: the meaning of this word."),
    ("以下は詩の翻訳です：\n春の雨", "Below is the translation of the poem:\nSpring rain"),
])
def test_a_label_the_source_itself_begins_with_is_content_and_kept(raw, src):
    assert clean_output(raw, src) == raw


@pytest.mark.parametrize("src,tgt", [
    ("Can you translate this sentence into French for me, please?", "この文をフランス語に翻訳できますか？お願いします。"),
    ("Excuse me, could you tell me where the nearest station is?", "申し訳ありません、最寄りの駅はどこか教えていただけますか？"),
    ("I'm afraid I have to cancel our meeting tomorrow afternoon.", "申し訳ありませんが、明日の午後の会議をキャンセルしなければなりません。"),
])
def test_a_faithful_translation_is_no_refusal(src, tgt):
    assert "refusal" not in check_unit(src, tgt, "stop", TH)
    assert "refusal" in check_unit("Translate the weather report for tomorrow morning into Japanese.",
                                   "申し訳ありませんが、この文章は翻訳できません。", "stop", TH)
