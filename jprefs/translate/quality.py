"""Quality checks on translations: each flag comes with a reason a person can act on.

Per unit (one translated piece, placeholders still in, so code and URLs never
count as English):

- ``empty``: nothing came back.
- ``truncated``: the engine stopped before the end: at ``max_tokens`` (finish reason
  ``length``) or cut off by a server's content filter (``content_filter``).
- ``low_japanese_ratio``: kana+kanji share of letters under ``min_japanese_ratio``
  (only for sources with at least ``min_letters`` letters: "OK" may stay "OK").
- ``leftover_english``: a run of ``max_english_run`` or more English words, at
  least one lower-case (a run of capitalised words is a name or a title).
- ``length_ratio``: translated/source characters outside
  ``[min_length_ratio, max_length_ratio]`` (sources of ``min_chars`` or more).
- ``repetition``: a 2-40 character string repeated 5+ times in a row, or a line
  repeated 4+ times, when the source has no such repetition (decoding loops).
- ``refusal``: an apology/refusal in the translation that the source lacks.
- ``placeholder_lost``: a code span or URL did not survive (set at reassembly).
- ``low_similarity``: optional cross-lingual embedding similarity under a threshold.

>>> check_unit("Hello there, how are you today my friend?", "こんにちは、今日の調子はどうですか、友よ。", "stop", Thresholds())
[]
>>> check_unit("Hello there, how are you today my friend?", "", "length", Thresholds())
['empty', 'truncated']
>>> check_unit("Hello there, how are you today my friend?", "こんにちは、", "content_filter", Thresholds())
['truncated', 'length_ratio']
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jprefs.text import japanese_ratio, script_counts

FLAGS = ("empty", "truncated", "low_japanese_ratio", "leftover_english", "length_ratio", "repetition",
         "refusal", "placeholder_lost", "low_similarity", "identical_after_translation")

EN_WORD_RUN = re.compile(r"[A-Za-z][A-Za-z'’\-]*(?:[ ,;:]+[A-Za-z][A-Za-z'’\-]*)*")
LOOP = re.compile(r"(.{2,40}?)\1{4,}", re.S)
# a refusal is a NEGATIVE form: 「翻訳できますか」 (for "Can you translate ...?") is a good translation
JA_REFUSAL = re.compile(r"申し訳(?:ありません|ございません)|翻訳(?:できません|できかね|いたしかね|することはできません)|"
                        r"お手伝いでき(?:ません|かね)|お答えでき(?:ません|かね)|(?:AI|言語モデル)として")
# source words that a faithful translation renders with 申し訳ありません etc. ("Excuse me, ..." included)
EN_REFUSAL = re.compile(r"\b(?:sorry|apologi[sz]e|can(?:no|')t|won't|unable|not able|as an ai|excuse|pardon|"
                        r"regret|afraid|forgive)\b", re.I)
PLACEHOLDER = re.compile(r"⟦\d+⟧")
# finish reasons of an answer that stopped before its end: ``length`` (max_tokens reached) and
# ``content_filter`` (a hosted API cut the answer off); either way the text is not a whole translation
INCOMPLETE = ("length", "content_filter")


@dataclass
class Thresholds:
    """Limits of the checks (the config's fields of the same names)."""

    min_japanese_ratio: float = 0.5
    min_letters: int = 20
    max_english_run: int = 6
    min_length_ratio: float = 0.15
    max_length_ratio: float = 2.5
    min_chars: int = 40


def english_run(text: str) -> int:
    """Longest run of English words with at least one lower-case word (names are Capitalised)."""
    best = 0
    for m in EN_WORD_RUN.finditer(text):
        words = re.findall(r"[A-Za-z][A-Za-z'’\-]*", m.group(0))
        if any(w[0].islower() for w in words):
            best = max(best, len(words))
    return best


def _loops(text: str) -> bool:
    if LOOP.search(text):
        return True
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return any(lines.count(ln) >= 4 for ln in set(lines))


def unit_scores(src: str, tgt: str) -> dict[str, float]:
    """Scores behind the flags: Japanese share, length ratio, longest English run."""
    src_c = PLACEHOLDER.sub("", src)
    tgt_c = PLACEHOLDER.sub("", tgt)
    return {"ja_ratio": round(japanese_ratio(tgt_c), 4),
            "len_ratio": round(len(tgt_c.strip()) / max(1, len(src_c.strip())), 4),
            "en_run": english_run(tgt_c)}


def check_unit(src: str, tgt: str, finish_reason: str, th: Thresholds) -> list[str]:
    """Flags of one translated unit (see the module docstring), in :data:`FLAGS` order."""
    flags = []
    if not tgt.strip():
        flags.append("empty")
    if finish_reason in INCOMPLETE:
        flags.append("truncated")
    if "empty" in flags:
        return flags
    s = unit_scores(src, tgt)
    src_letters = sum(v for k, v in script_counts(PLACEHOLDER.sub("", src)).items()
                      if k in ("hiragana", "katakana", "kanji", "latin"))
    if src_letters >= th.min_letters and s["ja_ratio"] < th.min_japanese_ratio:
        flags.append("low_japanese_ratio")
    if s["en_run"] >= th.max_english_run:
        flags.append("leftover_english")
    if len(src.strip()) >= th.min_chars and not (th.min_length_ratio <= s["len_ratio"] <= th.max_length_ratio):
        flags.append("length_ratio")
    if _loops(tgt) and not _loops(src):
        flags.append("repetition")
    if JA_REFUSAL.search(tgt) and not EN_REFUSAL.search(src):
        flags.append("refusal")
    return flags


def similarity(model_name: str, sources: list[str], targets: list[str], batch_size: int = 32) -> list[float]:
    """Cosine similarity of each (source, translation) with a multilingual embedding model.

    >>> similarity("intfloat/multilingual-e5-small", ["Hello"], ["こんにちは"])   # doctest: +SKIP
    [0.9...]
    """
    from jprefs.errors import require

    st = require("sentence_transformers", "st", "the cross-lingual similarity check")
    from jprefs.hub import hub_model

    with hub_model(model_name):  # a Hub id offline and not cached: one line naming it
        model = st.SentenceTransformer(model_name, trust_remote_code=False)
    a = model.encode(sources, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    b = model.encode(targets, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    return [float(x) for x in (a * b).sum(axis=1)]  # (N, D) * (N, D) -> (N,)
