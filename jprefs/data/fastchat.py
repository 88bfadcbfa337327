"""FastChat ``llm_judge`` benchmark folders: the questions and answers its judgment files refer to.

A FastChat benchmark folder (``fastchat/llm_judge/data/BENCH``; Japanese MT-Bench as Stability AI, shisa,
Nejumi and Swallow publish it) keeps the questions in ``question.jsonl`` (``question_id``, ``turns``), each
model's answers in ``model_answer/MODEL.jsonl`` (``question_id``, ``model_id``, ``choices[0].turns``) and
the judge's verdicts in ``model_judgment/`` by id only. :class:`FastChatAnswers` loads the first two so
that ``jprefs data group --fastchat`` (single-answer grades) and ``jprefs data convert --source
fastchat-pairwise --answers DIR`` (pairwise verdicts) can join them. Turn 1 only: a later turn's prompt
holds each model's own earlier answers, so no two models share it.
"""

from __future__ import annotations

import os
from pathlib import Path

from jprefs.errors import DataError


class FastChatAnswers:
    """``questions``: question id -> its first turn; ``answers``: (model, question id) -> the model's
    first answer (the first row of a model's file for a question wins); ``bad_refs``: ``"FILE:LINE"`` of
    each question or answer row that could not be read (reported, never fatal: the judgments that need
    such a row are rejected as having no answer)."""

    def __init__(self, data_dir: str | os.PathLike):
        from jprefs.data.io import iter_table

        d = Path(data_dir)
        self.dir = d
        qf, ad = d / "question.jsonl", d / "model_answer"
        if not qf.is_file() or not ad.is_dir():
            raise DataError(f"{d} is not a FastChat llm_judge data folder (no question.jsonl or model_answer/)",
                            path=str(d), fix="give fastchat/llm_judge/data/BENCH, e.g. .../data/japanese_mt_bench")
        self.bad_refs: dict[str, int] = {}
        self.questions: dict[str, str] = {}
        for row in iter_table(qf):
            q = row.data if not row.error and isinstance(row.data, dict) else None
            turns = q.get("turns") if q else None
            if q is None or q.get("question_id") is None or not isinstance(turns, list) or not turns \
                    or not isinstance(turns[0], str):
                self.bad_refs[f"{qf}:{row.locator}"] = 1
                continue
            self.questions[str(q["question_id"])] = turns[0]
        self.answers: dict[tuple[str, str], str] = {}
        for f in sorted(ad.iterdir()):
            if not (f.is_file() and f.name.endswith(".jsonl")):
                continue
            for row in iter_table(f):
                a = row.data if not row.error and isinstance(row.data, dict) else None
                try:
                    text = a["choices"][0]["turns"][0]
                    key = (str(a.get("model_id") or f.name[: -len(".jsonl")]), str(a["question_id"]))
                except (TypeError, KeyError, IndexError):
                    text = None
                if not isinstance(text, str):
                    self.bad_refs[f"{f}:{row.locator}"] = 1
                    continue
                self.answers.setdefault(key, text)

    def question(self, qid) -> str:
        """The first turn of question ``qid``; an unknown id rejects the row (``unknown_question``)."""
        from jprefs.data.adapters import RowReject

        q = self.questions.get(str(qid))
        if q is None:
            raise RowReject("unknown_question", f"question_id {qid!r} is not in {self.dir / 'question.jsonl'}")
        return q

    def answer(self, model, qid) -> str:
        """``model``'s first answer to question ``qid``; none rejects the row (``no_answer``)."""
        from jprefs.data.adapters import RowReject

        a = self.answers.get((str(model), str(qid)))
        if a is None:
            raise RowReject("no_answer", f"{self.dir / 'model_answer'} has no answer of {model!r} to question {qid!r}")
        return a
