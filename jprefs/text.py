"""Japanese text utilities shared by every stage: script mix and morpheme counts.

>>> script_mix("ひらがなとカタカナと漢字 and latin")["hiragana"] > 0
True
"""

from __future__ import annotations

import functools
import re
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


def morphemes(text: str) -> list[str]:
    """Surface forms of the morphemes of ``text`` (fugashi + unidic-lite)."""
    return [w.surface for w in _tagger()(text)]


def count_morphemes(texts: Iterable[str]) -> list[int]:
    tagger = _tagger()
    return [len(tagger(t)) for t in texts]
