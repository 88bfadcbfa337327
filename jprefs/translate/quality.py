"""Quality checks on translations: each flag comes with a reason a person can act on.

Per unit (one translated piece, placeholders still in, so code and URLs never
count as English):

- ``empty``: nothing came back.
- ``truncated``: the engine stopped before the end: at ``max_tokens`` (finish reason
  ``length``) or cut off by a server's content filter (``content_filter``).
- ``low_japanese_ratio``: kana+kanji share of letters under ``min_japanese_ratio``
  (only for sources with at least ``min_letters`` letters: "OK" may stay "OK").
- ``leftover_english``: a run of ``max_english_run`` or more English words, at
  least one lower-case (a run of capitalised words is a name or a title); a run goes on
  across sentence ends and line breaks ("Yes. I think so. It is fine." is one run of 7:
  short English sentences left in a row each stayed under the limit before 2026-12-07).
- ``length_ratio``: translated/source characters outside
  ``[min_length_ratio, max_length_ratio]`` (sources of ``min_chars`` or more).
- ``repetition``: a 2-40 character string repeated 5+ times in a row, or a line
  repeated 4+ times (decoding loops), beyond what the source repeats: more looped
  characters than ``max_length_ratio`` times the source's plus 20, or a line repeated
  more than ``max_length_ratio`` times as often (a source with a loop of its own no
  longer lets any loop through).
- ``template_leak``: chat-template markup or special tokens (``<|im_end|>``, ``</s>``,
  ``[INST]``, ``<end_of_turn>``, ...) in the translation that the source lacks: the
  engine decoded past the answer or echoed its prompt format.
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
         "refusal", "placeholder_lost", "low_similarity", "identical_after_translation", "template_leak")

EN_WORD_RUN = re.compile(r"[A-Za-z][A-Za-z'’\-]*(?:[.!?]*[\s,;:]+[A-Za-z][A-Za-z'’\-]*)*")
LOOP = re.compile(r"(.{2,40}?)\1{4,}", re.S)
# chat-template markup and special tokens of the common open models (ChatML, Llama 2/3, Gemma, Mistral,
# Phi, the sentencepiece <s>/</s>) and the "### Response:" instruction format
TEMPLATE_MARKUP = re.compile(r"<\|[A-Za-z_][A-Za-z0-9_]*\|>|</?s>|\[/?INST\]|<</?SYS>>|<(?:start|end)_of_turn>|"
                             r"<(?:bos|eos|pad|unk)>|^\s*###\s*(?:Instruction|Response|Input|Assistant|User)\s*:",
                             re.M)
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


def loop_extent(text: str) -> tuple[int, int]:
    """(characters inside decoding-loop repeats, the most times one line repeats when 4+ else 0)."""
    chars = sum(len(m.group(0)) for m in LOOP.finditer(text))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    most = max((lines.count(ln) for ln in set(lines)), default=0)
    return chars, most if most >= 4 else 0


def _more_loops(src: str, tgt: str, ratio: float) -> bool:
    """The translation loops beyond what its source repeats (a translated loop may be as long)."""
    (sc, sl), (tc, tl) = loop_extent(src), loop_extent(tgt)
    return (tc > 0 and tc > ratio * sc + 20 * bool(sc)) or (tl > 0 and tl > ratio * sl)


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
    if _more_loops(src, tgt, th.max_length_ratio):
        flags.append("repetition")
    if JA_REFUSAL.search(tgt) and not EN_REFUSAL.search(src):
        flags.append("refusal")
    if TEMPLATE_MARKUP.search(tgt) and not TEMPLATE_MARKUP.search(src):
        flags.append("template_leak")
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
