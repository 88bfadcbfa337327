"""Japanese text utilities shared by every stage: script mix, morpheme counts, invisible characters.

>>> script_mix("ひらがなとカタカナと漢字 and latin")["hiragana"] > 0
True
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Iterable

# Unicode blocks. Prolonged sound mark ー and iteration marks count as kana/kanji.
_HIRAGANA = re.compile(r"[\u3041-\u309F]")
_KATAKANA = re.compile(r"[\u30A0-\u30FF\u31F0-\u31FF\uFF66-\uFF9F]")
_KANJI = re.compile(r"[\u4E00-\u9FFF\u3400-\u4DBF\uF900-\uFAFF\u3005\u3006]")
_LATIN = re.compile(r"[A-Za-z\uFF21-\uFF3A\uFF41-\uFF5A\u00C0-\u024F]")
_DIGIT = re.compile(r"[0-9\uFF10-\uFF19]")
SCRIPTS = ("hiragana", "katakana", "kanji", "latin", "digit", "other")


_SPACE = re.compile(r"\s")


def script_counts(text: str) -> dict[str, int]:
    """Character counts per script, whitespace excluded (regex counts run in C)."""
    counts = {
        "hiragana": len(_HIRAGANA.findall(text)),
        "katakana": len(_KATAKANA.findall(text)),
        "kanji": len(_KANJI.findall(text)),
        "latin": len(_LATIN.findall(text)),
        "digit": len(_DIGIT.findall(text)),
    }
    counts["other"] = len(text) - len(_SPACE.findall(text)) - sum(counts.values())
    return counts


def script_mix(text: str) -> dict[str, float]:
    """Share of each script among non-space characters (sums to 1, or all 0 for empty text)."""
    c = script_counts(text)
    n = sum(c.values())
    return {k: (v / n if n else 0.0) for k, v in c.items()}


def japanese_ratio(text: str) -> float:
    """Share of Japanese letters (kana + kanji) among letters (kana, kanji, latin)."""
    c = script_counts(text)
    letters = c["hiragana"] + c["katakana"] + c["kanji"] + c["latin"]
    return (c["hiragana"] + c["katakana"] + c["kanji"]) / letters if letters else 0.0


@functools.lru_cache(maxsize=1)
def _tagger():
    try:
        import fugashi
    except ImportError as e:  # pragma: no cover
        from jprefs.errors import MissingExtraError
        raise MissingExtraError("fugashi", "dev", "morpheme counts") from e
    try:
        return fugashi.Tagger()  # finds unidic-lite when it is installed
    except RuntimeError as e:  # pragma: no cover
        raise RuntimeError(f"fugashi could not load a dictionary ({e}); fix: pip install unidic-lite") from e


# ---------------------------------------------------------------- invisible characters (for keys)

# Unicode's Default_Ignorable_Code_Point set (DerivedCoreProperties.txt): characters a renderer shows as
# nothing when it does not support them. Zero-width space/joiners, word joiner, BOM, soft hyphen, bidi
# marks and overrides, invisible math operators, variation selectors (emoji presentation FE0E/FE0F and the
# ideographic variation selectors of Japanese glyph variants: the same character), tag characters, the
# Hangul filler. ZWJ/ZWNJ (U+200D/U+200C) are matched on their own (see _keep_joiner). Left out: the
# conjoining Hangul fillers U+115F/U+1160 (letters inside jamo sequences).
# Copy-paste and scraping insert these into prompts, and without them an identical-looking prompt gets
# a second key, so a split by prompt could put it in train and in test.
_IGNORABLE = ("\u00ad\u034f\u061c\u17b4\u17b5\u180b-\u180f\u200b\u200e\u200f\u202a-\u202e\u2060-\u206f\u3164"
              "\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
              "\U000e0000-\U000e0fff")
# An emoji tag sequence (the flags of England, Scotland, Wales): black flag, tag letters, cancel tag.
# Its tags are what tells the flags apart, so they are kept.
_EMOJI_TAG_SEQ = "\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f"
_INVISIBLE = re.compile(f"({_EMOJI_TAG_SEQ})|([\u200c\u200d])|[{_IGNORABLE}]+")
# skipped when looking back from a joiner for the character it joins: variation selectors, skin tones
_EMOJI_TAIL = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef\U0001f3fb-\U0001f3ff]")


def _is_emoji(c: str) -> bool:
    """Characters of emoji ZWJ sequences (an approximation of Extended_Pictographic by block)."""
    cp = ord(c)
    return (0x1F000 <= cp <= 0x1FAFF or 0x2190 <= cp <= 0x21FF or 0x2300 <= cp <= 0x23FF
            or 0x2600 <= cp <= 0x27BF or 0x2B00 <= cp <= 0x2BFF or cp in (0xA9, 0xAE, 0x203C, 0x2049, 0x3030))


def _joins_script(c: str) -> bool:
    """A letter or mark of a script where ZWJ/ZWNJ change the rendering (cursive joining, conjuncts):
    Hebrew to Mongolian and the Indic/Southeast Asian blocks, Arabic presentation forms, the historic
    Brahmic and right-to-left scripts. Latin, Greek, Cyrillic, CJK and kana are not among them."""
    cp = ord(c)
    return (0x0590 <= cp <= 0x1DFF or 0xA800 <= cp <= 0xABFF or 0xFB1D <= cp <= 0xFEFC or 0x10800 <= cp <= 0x11FFF) \
        and unicodedata.category(c)[0] in "LM"


def _keep_joiner(text: str, i: int) -> bool:
    """Whether the ZWJ/ZWNJ at ``text[i]`` is visible: a ZWJ inside an emoji sequence (man ZWJ woman ZWJ
    girl is one family glyph, without the joiners three emoji), or either joiner between two letters of a
    joining script (the Persian ZWNJ of mi-khaham, Devanagari half forms)."""
    j = i - 1
    while j >= 0 and _EMOJI_TAIL.match(text[j]):
        j -= 1
    if j < 0 or i + 1 >= len(text):
        return False
    before, after = text[j], text[i + 1]
    if text[i] == "\u200d" and _is_emoji(before) and _is_emoji(after):
        return True
    return _joins_script(text[i - 1]) and _joins_script(after)


def strip_invisible(text: str) -> str:
    """``text`` without its invisible format characters (Unicode default-ignorables): for keys that group
    or de-duplicate texts, never for stored text. Joiners that change what is shown are kept: the ZWJ of
    emoji sequences, ZWJ/ZWNJ between letters of joining scripts, the tags of flag emoji.

    >>> strip_invisible("\\ufeff東京\\u200bの\\u2060天気")
    '東京の天気'
    >>> strip_invisible("👨\\u200d👩\\u200d👧") == "👨\\u200d👩\\u200d👧"
    True
    """
    if text.isascii():
        return text

    def repl(m: re.Match) -> str:
        if m.group(1):
            return m.group(1)
        if m.group(2):
            return m.group(2) if _keep_joiner(m.string, m.start()) else ""
        return ""

    return _INVISIBLE.sub(repl, text)


def morphemes(text: str) -> list[str]:
    """Surface forms of the morphemes of ``text`` (fugashi + unidic-lite)."""
    return [w.surface for w in _tagger()(text)]


def count_morphemes(texts: Iterable[str]) -> list[int]:
    tagger = _tagger()
    return [len(tagger(t)) for t in texts]
