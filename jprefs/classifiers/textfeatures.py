"""Surface features of an answer that a judge punishes whatever the question: cheap, question-free signals.

A reward model fine-tuned on a few hundred judged questions learns those questions (issue #13: its
quality head is near chance on another benchmark's). What does carry across benchmarks is how weak
models fail: answering in English, looping on the same phrase, stopping mid-sentence, refusing,
copying the question back. These features measure that from the text alone, in microseconds, so a
linear model over them can be fit on tens of thousands of graded answers (``jprefs data rm-pairs
--scores``) where a fine-tuned encoder sees a thousand pairs.

``FEATURES`` (one float each; :func:`answer_features` gives them in this order):

- ``log_chars``: ``log(1 + characters)`` of the answer (stripped);
- ``ja_share``: hiragana, katakana and CJK ideographs among the answer's letters (Unicode ``L*``);
- ``latin_share``: ASCII letters among its letters;
- ``repeated_4grams``: ``1 - distinct / total`` character 4-grams (0 below 8 characters): loops;
- ``repeated_lines``: non-empty lines that occur more than once, as a share of the non-empty lines;
- ``log_lines``: ``log(1 + non-empty lines)``;
- ``list_lines``: lines that start with a bullet or a number (``-``, ``*``, ``・``, ``1.``, ``(1)``,
  ``①``), as a share of the non-empty lines;
- ``ends_clean``: 1 when the last character closes a sentence or a block (``。．.！!？?」』）)】``,
  a closing code fence, a digit or a ``*``), else 0: an answer cut off mid-sentence;
- ``polite_share``: sentences (split on ``。！？``) ending in a polite form (です, ます, でした,
  ました, ください, ません, でしょう + punctuation), as a share of the sentences;
- ``refusal``: 1 when the answer contains a refusal or an AI disclaimer (申し訳, できません, お答え
  できません, AIとして, 言語モデル, "I'm sorry", "I cannot", "As an AI"), else 0;
- ``prompt_coverage``: the prompt's distinct character bigrams found in the answer, as a share of
  the prompt's (the last user turn; 0 for an empty prompt);
- ``echoes_prompt``: 1 when the answer begins with the prompt's first 20 characters, else 0;
- ``reasoning_trace``: 1 when the answer holds a ``<think>`` or ``</think>`` tag, else 0.

    >>> f = dict(zip(FEATURES, answer_features("富士山の高さは?", "富士山の高さは3,776メートルです。")))
    >>> round(f["ja_share"], 3), f["ends_clean"], f["polite_share"], f["refusal"]
    (1.0, 1.0, 1.0, 0.0)
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any, Sequence

FEATURES = ("log_chars", "ja_share", "latin_share", "repeated_4grams", "repeated_lines", "log_lines", "list_lines",
            "ends_clean", "polite_share", "refusal", "prompt_coverage", "echoes_prompt", "reasoning_trace")

_LIST = re.compile(r"^\s*(?:[-*+・•]|\d{1,3}[.)．、]|[(（]\d{1,3}[)）]|[①-⑳])")
_CLOSERS = set("。．.！!？?」』）)】]*`") | set("0123456789")
_SENT = re.compile(r"[^。！？!?]+[。！？!?]?")
_POLITE = re.compile(r"(です|ます|でした|ました|ください|ません|でしょう|ございます)[。！？!?」）)]*\s*$")
_REFUSAL = re.compile(r"申し訳|お答えできません|できません|AIとして|言語モデル|I'm sorry|I am sorry|I cannot|As an AI",
                      re.IGNORECASE)


def _is_ja(ch: str) -> bool:
    o = ord(ch)
    return 0x3040 <= o <= 0x30FF or 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF \
        or 0xFF66 <= o <= 0xFF9F or o == 0x3005


def _bigrams(text: str) -> set[str]:
    t = re.sub(r"\s+", "", text)
    return {t[i:i + 2] for i in range(len(t) - 1)}


def answer_features(prompt: Any, response: str) -> list[float]:
    """The :data:`FEATURES` of one answer to ``prompt`` (a string or messages: its last user turn)."""
    from jprefs.classifiers.relevance import last_user_turn

    q = last_user_turn(prompt).strip()
    r = (response or "").strip()
    letters = [c for c in r if unicodedata.category(c).startswith("L")]
    n_let = len(letters) or 1                  # no letters: both shares 0
    ja = sum(_is_ja(c) for c in letters) / n_let
    latin = sum(c.isascii() for c in letters) / n_let
    grams = [r[i:i + 4] for i in range(len(r) - 3)] if len(r) >= 8 else []
    rep4 = 1.0 - len(set(grams)) / len(grams) if grams else 0.0
    lines = [x.strip() for x in r.splitlines() if x.strip()]
    n_lines = len(lines)
    counts: dict[str, int] = {}
    for x in lines:
        counts[x] = counts.get(x, 0) + 1
    rep_lines = sum(v for v in counts.values() if v > 1) / n_lines if n_lines else 0.0
    list_lines = sum(bool(_LIST.match(x)) for x in lines) / n_lines if n_lines else 0.0
    ends = 1.0 if r and (r[-1] in _CLOSERS) else 0.0
    sents = [s.strip() for s in _SENT.findall(r.replace("\n", "。")) if s.strip(" 。")]
    polite = sum(bool(_POLITE.search(s)) for s in sents) / len(sents) if sents else 0.0
    refusal = 1.0 if _REFUSAL.search(r) else 0.0
    qb = _bigrams(q)
    coverage = len(qb & _bigrams(r)) / len(qb) if qb else 0.0
    echo = 1.0 if len(q) >= 5 and r.startswith(q[:20]) else 0.0
    think = 1.0 if ("<think>" in r or "</think>" in r) else 0.0
    return [math.log1p(len(r)), ja, latin, rep4, rep_lines, math.log1p(n_lines), list_lines, ends, polite, refusal,
            coverage, echo, think]


def feature_matrix(prompts: Sequence[Any], responses: Sequence[str]):
    """``(n, len(FEATURES))`` float64 array of :func:`answer_features` over aligned prompts and responses."""
    import numpy as np

    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
    return np.array([answer_features(p, x) for p, x in zip(prompts, responses)], dtype=np.float64).reshape(
        len(responses), len(FEATURES))
