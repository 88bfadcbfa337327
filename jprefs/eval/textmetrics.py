"""Text metrics of generated answers: diversity, repetition, Japanese share, length.

Owned by ``jprefs eval``; ``jprefs rl`` imports :func:`distinct_n` for its run summaries.

- :func:`distinct_n`: distinct / all character n-grams over a set of texts (what the rl
  summaries report; Japanese has no spaces, so characters are the cheap unit).
- :func:`morphemes`: fugashi (MeCab + unidic-lite) surface forms of a text.
- :func:`distinct_n_tokens`: distinct / all n-grams over tokenised texts (``jprefs eval
  policy`` reports distinct-1/2 over morphemes).
- :func:`repetition_rate`: share of an answer's token n-grams (default 4-grams) that repeat an
  earlier n-gram of the same answer: 0 for no repetition, close to 1 for a loop.
- :func:`japanese_share`: share of an answer's letters that are Japanese script (kana, kanji).

All functions are pure and light (fugashi is imported on first use).

Example::

    distinct_n(["今日は晴れ", "今日は雨"], 2)                    # character bigrams: 5 distinct of 7
    toks = [morphemes(t) for t in ["今日は晴れです。", "今日は雨です。"]]
    distinct_n_tokens(toks, 1), repetition_rate(morphemes("はいはいはいはいはい"), 4)
    japanese_share("Hello 世界")                                  # 2 of 7 letters -> 0.2857
"""

from __future__ import annotations

import unicodedata
from typing import Sequence


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct n-grams / all n-grams over characters of all texts (Japanese has no spaces)."""
    grams, total = set(), 0
    for t in texts:
        for i in range(len(t) - n + 1):
            grams.add(t[i:i + n])
            total += 1
    return len(grams) / total if total else 0.0


_TAGGER = None


def morphemes(text: str) -> list[str]:
    """Surface forms of ``text`` split by fugashi (MeCab with the unidic-lite dictionary).

    >>> morphemes("今日は晴れです。")   # doctest: +SKIP
    ['今日', 'は', '晴れ', 'です', '。']
    """
    global _TAGGER
    if _TAGGER is None:
        from jprefs.errors import require

        fugashi = require("fugashi", "fugashi", "morpheme metrics (distinct-n, repetition)")
        try:
            _TAGGER = fugashi.Tagger()
        except RuntimeError as e:            # no dictionary installed
            from jprefs.errors import ConfigError

            raise ConfigError(f"fugashi found no MeCab dictionary ({e})\n  fix: pip install unidic-lite") from e
    return [w.surface for w in _TAGGER(text) if w.surface.strip()]


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n_tokens(token_lists: Sequence[Sequence[str]], n: int = 2) -> float:
    """Distinct n-grams / all n-grams over every tokenised text (0.0 when there are none).

    All answers the same string of ``k`` distinct tokens, repeated ``m`` times: ``(k-n+1) / (m*(k-n+1))``
    = ``1/m``, the minimum for that many answers.

    >>> distinct_n_tokens([["a", "b", "c"], ["a", "b", "c"]], 2)   # {ab, bc} of 4 bigrams
    0.5
    """
    grams: set = set()
    total = 0
    for toks in token_lists:
        g = _ngrams(toks, n)
        grams.update(g)
        total += len(g)
    return len(grams) / total if total else 0.0


def repetition_rate(tokens: Sequence[str], n: int = 4) -> float:
    """Share of the n-grams of one answer that repeat an n-gram seen earlier in the same answer:
    ``1 - distinct / all``; 0.0 when the answer has fewer than ``n`` tokens.

    >>> repetition_rate(list("abcabcab"), 4)    # abca bcab cabc abca bcab: 2 of 5 repeat
    0.4
    """
    g = _ngrams(tokens, n)
    return 1.0 - len(set(g)) / len(g) if g else 0.0


def is_japanese_char(ch: str) -> bool:
    """Hiragana, katakana (full and half width), kanji (CJK ideographs and extensions), and the
    marks that belong to them (ー 々 〆 ヶ are in these blocks or listed)."""
    o = ord(ch)
    return (0x3040 <= o <= 0x30FF or 0x31F0 <= o <= 0x31FF or 0xFF66 <= o <= 0xFF9F
            or 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF
            or 0x20000 <= o <= 0x2FA1F or ch in "々〆〇ヶ")


def japanese_share(text: str) -> float:
    """Japanese characters / all letters (Unicode category L*) of ``text``; digits, punctuation,
    symbols and spaces count on neither side. 0.0 for a text with no letters.

    >>> round(japanese_share("Hello 世界!"), 4)    # 2 Japanese of 7 letters
    0.2857
    """
    letters = [c for c in text if unicodedata.category(c).startswith("L")]
    if not letters:
        return 0.0
    return sum(is_japanese_char(c) for c in letters) / len(letters)
