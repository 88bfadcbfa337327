"""Prompt keys (split / merge / group by prompt) ignore invisible format characters, and only those:
an identical-looking prompt gets one key, visibly different prompts keep two."""

import hashlib
import json
import unicodedata

import pytest

from jprefs.cli import main
from jprefs.data.adapters import convert
from jprefs.data.merge import merge_records
from jprefs.data.schema import PreferencePair, as_messages, normalize_text, prompt_key
from jprefs.data.split import split_by_prompt
from jprefs.text import strip_invisible
from tests.conftest import shared_file
from tests.data.fixtures import write_jsonl

INVISIBLE = {"zero width space": "\u200b", "zero width non-joiner": "\u200c", "zero width joiner": "\u200d",
             "word joiner": "\u2060", "BOM": "\ufeff", "soft hyphen": "\u00ad", "left-to-right mark": "\u200e",
             "right-to-left embedding": "\u202b", "pop directional": "\u202c", "invisible times": "\u2062",
             "variation selector 16": "\ufe0f", "ideographic variation selector": "\U000e0100",
             "tag": "\U000e0041", "Mongolian vowel separator": "\u180e", "Hangul filler": "\u3164"}


def key(text):
    return prompt_key(as_messages(text))


def legacy_key(text):
    """The key before invisible characters were ignored: NFKC + whitespace collapsing."""
    norm = " ".join(unicodedata.normalize("NFKC", text).split())
    return hashlib.sha256(json.dumps([["user", norm]], ensure_ascii=False).encode()).hexdigest()[:20]


@pytest.mark.parametrize("name", INVISIBLE)
def test_invisible_characters_do_not_make_a_new_prompt(name):
    c = INVISIBLE[name]
    plain = "日本の首都はどこですか？"
    for variant in (c + plain, plain[:3] + c + plain[3:], plain + c, plain[:3] + c * 3 + plain[3:]):
        assert key(variant) == key(plain), (name, variant)
    # stored text is never changed: only the key ignores the character
    p = PreferencePair.create(plain[:3] + c + plain[3:], "東京", "大阪")
    assert p.prompt[0].content == plain[:3] + c + plain[3:]
    assert PreferencePair.from_dict(p.to_dict()).prompt[0].content == p.prompt[0].content


def test_spaces_are_consistent():
    # NFKC maps U+3000 / U+00A0 / U+202F to a space and str.split reads all of them as one; invisibles are
    # removed first, so one between two spaces leaves no trace
    one = key("東京 の 天気")
    for v in ("東京\u3000の\u3000天気", "東京\u00a0の\u202f天気", "  東京 \u3000 の 天気",
              "東京 \u200b の\ufeff 天気", "\u3000東京 の 天気\u00a0", "東京\u2002の\u2003天気"):
        assert key(v) == one, repr(v)
    assert key("東京の天気") != one                        # a space that is there still counts
    assert normalize_text("東京\u200b \u200bの") == "東京 の"


def test_invisibles_go_before_nfkc():
    # a zero-width space between a letter and its combining accent must not keep them from composing
    assert normalize_text("caf\u200be\u0301") == normalize_text("café") == "café"
    assert normalize_text("ｶ\u200bﾞ") == normalize_text("ガ")


def test_visible_differences_keep_their_keys():
    distinct = [
        ("\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f468\U0001f469\U0001f467"),    # family vs three people
        ("\U0001f9d1\u200d\U0001f4bb", "\U0001f9d1\U0001f4bb"),                               # technologist
        ("\U0001f44b\U0001f3fd\u200d\u27a1\ufe0f", "\U0001f44b\U0001f3fd\u27a1"),           # skin tone, then ZWJ
        ("\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",          # England
         "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"),         # Scotland
        ("\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f", "\U0001f3f4"),
        ("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "\u0645\u06cc\u062e\u0648\u0627\u0647\u0645"),  # Persian ZWNJ
        ("\u0915\u094d\u200d\u0937", "\u0915\u094d\u0937"),                                   # Devanagari half form
        ("東京", "京東"), ("かき", "がき"),
    ]
    for a, b in distinct:
        assert key(a) != key(b), (a, b)
    # what an emoji sequence may lose is only what does not show: the presentation selector
    assert key("\U0001f3f3\ufe0f\u200d\U0001f308") == key("\U0001f3f3\u200d\U0001f308")
    # a joiner outside such a sequence is invisible: beside kana, Latin, or at the ends
    assert key("東\u200d京") == key("東京") and key("a\u200db") == key("ab") == key("\u200dab\u200c")
    assert key("\U0001f468\u200d") == key("\U0001f468")


def test_normalize_text_is_idempotent_and_keeps_plain_text():
    samples = ["日本の首都は?", "ＡＢＣ  d", "\U0001f468\u200d\U0001f469\u200d\U0001f467 家族",
               "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "\ufeff東京\u200bの天気\u3000", "ﾃｽﾄ\u00ad"]
    for s in samples:
        assert normalize_text(normalize_text(s)) == normalize_text(s)
    assert strip_invisible("plain ascii\t text") == "plain ascii\t text"
    # text without invisible characters keeps the key it always had (recorded splits stay valid)
    for s in samples[:2] + ["東京 の\u3000天気", "\U0001f468\U0001f469"]:
        assert key(s) == legacy_key(s)


def _variant_rows(n=24):
    """Each prompt twice: once as typed, once pasted with an invisible character."""
    marks = list(INVISIBLE.values())
    rows = []
    for i in range(n):
        q = f"質問{i}について説明してください。"
        c = marks[i % len(marks)]
        rows.append({"prompt": q, "chosen": f"良い答え{i}", "rejected": f"悪い答え{i}"})
        rows.append({"prompt": c + q[:2] + c + q[2:], "chosen": f"別の良い答え{i}", "rejected": f"別の悪い答え{i}"})
    return rows


def test_split_never_puts_one_visible_prompt_on_both_sides(tmp_path):
    recs = convert(write_jsonl(tmp_path / "v.jsonl", _variant_rows()), "jsonl").records
    for seed in range(4):
        train, test = split_by_prompt(recs, test_size=0.25, seed=seed)
        seen = {strip_invisible(r.prompt[0].content) for r in train}
        assert not seen & {strip_invisible(r.prompt[0].content) for r in test}, seed
    # the CLI too (two streaming passes over the file)
    conv = tmp_path / "conv.jsonl"
    assert main(["data", "convert", str(tmp_path / "v.jsonl"), "--source", "jsonl", "-o", str(conv)]) == 0
    assert main(["data", "split", str(conv), "--test-size", "0.25", "--seed", "1", "-o", str(tmp_path / "s")]) == 0
    side = {}
    for name in ("train", "test"):
        for line in open(tmp_path / "s" / f"{name}.jsonl", encoding="utf-8"):
            side.setdefault(strip_invisible(json.loads(line)["prompt"][0]["content"]), set()).add(name)
    assert len(side) == 24 and all(len(v) == 1 for v in side.values())


def test_merge_sees_through_invisible_characters():
    a = PreferencePair.create("東京の天気は?", "晴れです。", "雨です。")
    b = PreferencePair.create("\ufeff東京の\u200b天気は?", "晴れ\u2060です。", "雨です。")
    c = PreferencePair.create("東京の天気は?\u200b", "雨です。", "晴れです。")
    res = merge_records([("a.jsonl", [(1, a)]), ("b.jsonl", [(1, b), (2, c)])])
    assert res.records == [a] and [r["reason"] for r in res.rejects] == ["duplicate", "contradicts"]


@pytest.mark.parametrize("rel,source", [("ja_mt_bench/ja_mt_bench_turn1_pairs.jsonl", "jsonl"),
                                        ("rakuda/rakuda_gpt4_pairs.jsonl", "jsonl"),
                                        ("hh-rlhf/harmless-base-test.jsonl.gz", "hh-rlhf")])
def test_real_prompt_keys_unchanged(rel, source):
    """The recorded benchmark splits depend on these keys: no prompt of the real sets changes key."""
    recs = convert(shared_file(rel), source).records
    for r in recs:
        norm = [[m.role, " ".join(unicodedata.normalize("NFKC", m.content).split())] for m in r.prompt]
        legacy = hashlib.sha256(json.dumps(norm, ensure_ascii=False).encode()).hexdigest()[:20]
        assert r.prompt_key == legacy, r.source_id


def test_a_text_of_invisible_characters_only_is_empty():
    """A prompt or answer of zero-width spaces / a BOM looks empty and would share the empty text's key:
    it is rejected as empty, as whitespace is; visible text after an invisible one stays valid."""
    import pytest

    from jprefs.data.schema import PreferencePair, SchemaError

    q = [{"role": "user", "content": "質問"}]
    for bad, reason in (("\u200b", "empty_chosen"), (" \ufeff\u200b\u2060 ", "empty_chosen")):
        with pytest.raises(SchemaError) as e:
            PreferencePair.create(q, bad, "悪い")
        assert e.value.reason == reason
    with pytest.raises(SchemaError) as e:
        PreferencePair.create([{"role": "user", "content": "\u200b\u200d"}], "良い", "悪い")
    assert e.value.reason.startswith("empty")
    assert PreferencePair.create(q, "\u200b東京", "悪い").chosen == "\u200b東京"       # stored as given
    assert PreferencePair.create(q, "👍", "👎").chosen == "👍"
