"""Source adapters: turn rows of public preference sets into canonical records.

Each adapter knows one source's exact schema (as on the Hugging Face Hub) and its
licence. :func:`convert` reads a local file (JSONL/JSONL.gz/JSON/Parquet/CSV/TSV)
or a Hub dataset id, runs the adapter on every row, and returns the records plus
a reject entry for every row it could not use, so that
``rows_in == len(records) + len(rejects)`` always holds.

| name | Hub id | licence recorded |
|---|---|---|
| ``hh-rlhf`` | Anthropic/hh-rlhf | mit |
| ``webgpt`` | openai/webgpt_comparisons | unknown (card states none) |
| ``gptj-pairwise`` | Dahoas/synthetic-instruct-gptj-pairwise | unknown (card states none) |
| ``summarize`` | openai/summarize_from_feedback (comparisons) | unknown (card states none) |
| ``jsonl`` / ``generic`` | any file or Hub dataset + ``--map`` | the row's own ``license`` column, else ``--license``, else unknown |
| ``ranklist`` | TSV ``prompt<TAB>best<TAB>...<TAB>worst`` | unknown unless ``--license`` |
| ``jprefs`` | canonical jprefs JSONL | per row |

hh-rlhf transcripts are messy; what happens to each case (counted in ``notes``
or ``rejects``):

- consecutive turns of the same speaker are merged into one turn (joined by a
  blank line) -> note ``merged_consecutive_turns``;
- text before the first ``Human:`` marker -> reject ``malformed_transcript``;
- an empty turn inside the prompt -> reject ``empty_prompt_turn``;
- the last turn of chosen or rejected is not an assistant turn -> reject
  ``no_final_assistant_turn``;
- chosen and rejected differ before their final assistant turn (the transcripts
  fork earlier) -> reject ``diverges_before_final_turn`` (the pair would not
  compare two answers to the same conversation);
- an empty final assistant turn -> reject ``empty_chosen`` / ``empty_rejected``;
- identical chosen and rejected -> reject ``identical_responses``.

Example::

    res = convert("harmless-base-test.jsonl.gz", source="hh-rlhf")
    res.rows_in == len(res.records) + len(res.rejects)   # True
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

from jprefs.data.io import MAX_EXTRA_CHARS, Row, iter_table
from jprefs.data.schema import (UNKNOWN_LICENSE, Message, PreferencePair, RankList, Record, SchemaError,
                                 finite_float)
from jprefs.errors import DataError, JprefsError


class RowReject(Exception):
    """Raised by an adapter for a row it cannot use; ``reason`` is a short tag."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class ConvertResult:
    """Output of :func:`convert`: records in input order plus every rejected row."""

    records: list[Record]
    rejects: list[dict]
    rows_in: int
    source: str
    license: str
    input: str
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def rows_out(self) -> int:
        return len(self.records)

    @property
    def rejects_by_reason(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rejects:
            out[r["reason"]] = out.get(r["reason"], 0) + 1
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def summary(self) -> dict[str, Any]:
        n_pairs = sum(len(r.to_pairs()) if isinstance(r, RankList) else 1 for r in self.records)
        from jprefs.data.provenance import license_counts

        return {"input": self.input, "source": self.source, "license": self.license,
                "licenses": license_counts(self.records),
                "rows_in": self.rows_in, "rows_out": self.rows_out, "rows_rejected": len(self.rejects),
                "pairs_out": n_pairs, "rejects_by_reason": self.rejects_by_reason, "notes": self.notes}


class Context:
    """Per-conversion state an adapter may use: options and note counters."""

    def __init__(self, source: str, license: str, mapping: dict[str, str] | None):
        self.source = source
        self.license = license
        self.mapping = mapping or {}
        self.notes: dict[str, int] = {}
        self.answers: Any = None        # fastchat-pairwise --answers: a jprefs.data.fastchat.FastChatAnswers

    def note(self, key: str, n: int = 1) -> None:
        self.notes[key] = self.notes.get(key, 0) + n


@dataclass
class Adapter:
    name: str
    parse: Callable[[dict, str, Context], Record]
    hub_id: str | None = None
    hub_config: str | None = None
    hub_split: str | None = None         # the split read when none is given (a data set without "train")
    license: str = UNKNOWN_LICENSE
    license_note: str = ""
    description: str = ""
    table_options: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- helpers

def _get(d: dict, path: str, *, required: bool = True) -> Any:
    """``d["a"]["b"]`` for ``path="a.b"``; list indices allowed (``summaries.0.text``)."""
    cur: Any = d
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, (list, tuple)) and part.lstrip("-").isdigit() and -len(cur) <= int(part) < len(cur):
            cur = cur[int(part)]
        else:
            if required:
                raise RowReject("missing_field", f"missing field '{path}'")
            return None
    return cur


def _text(value: Any, name: str) -> str:
    if value is None:
        raise RowReject(f"missing_{name}", f"field '{name}' is missing or null")
    if not isinstance(value, str):
        raise RowReject(f"non_string_{name}", f"field '{name}' must be a string, got {type(value).__name__}")
    value = value.strip()
    if not value:
        raise RowReject(f"empty_{name}", f"field '{name}' is empty")
    return value


def _brief(v: Any) -> str:
    """A value for a message: a huge number is shown by its size, not its 400 digits."""
    t = repr(v)
    return t if len(t) <= 40 else f"{t[:20]}... ({len(t)} characters)"


def _finite(v: int | float, name: str) -> float:
    """A score as a finite float: a NaN would decide the preference by a failed comparison."""
    f = finite_float(v)
    if f is None:
        raise RowReject("non_finite_score", f"field '{name}' is {_brief(v)}, not a finite number")
    return f


def _pair(ctx: Context, sid: str, prompt: Any, chosen: str, rejected: str, **kw) -> PreferencePair:
    if chosen == rejected:
        raise RowReject("identical_responses", "chosen and rejected are identical: not a preference")
    lic = kw.pop("license", None) or ctx.license
    return PreferencePair.create(prompt, chosen, rejected, source=ctx.source, source_id=sid, license=lic, **kw)


# ---------------------------------------------------------------- hh-rlhf

_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


def parse_hh_transcript(text: str, *, merge: bool = True) -> tuple[list[tuple[str, str]] | None, int, str | None]:
    """Parse ``\\n\\nHuman: ...\\n\\nAssistant: ...`` into ``(role, content)`` turns.

    Returns ``(turns, merged, problem)``: ``merged`` counts consecutive same-role
    turns merged (when ``merge``); ``problem`` is a reject reason when the
    transcript is unusable. Empty turns are kept as empty strings here and
    checked by the caller.
    """
    if not text.startswith("\n\n"):
        text = "\n\n" + text.lstrip("\n") if text.lstrip().startswith(("Human:", "Assistant:")) else text
    parts = _HH_TURN.split(text)
    if parts[0].strip():
        return None, 0, "malformed_transcript"
    turns = [("user" if speaker == "Human" else "assistant", content.strip())
             for speaker, content in zip(parts[1::2], parts[2::2])]
    if not turns:
        return None, 0, "malformed_transcript"
    if merge:
        turns, merged = merge_turns(turns)
        return turns, merged, None
    return turns, 0, None


def merge_turns(turns: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], int]:
    """Consecutive turns of one role joined by a blank line; returns ``(turns, number merged)``."""
    out: list[tuple[str, str]] = []
    merged = 0
    for role, content in turns:
        if out and out[-1][0] == role:
            prev = out[-1][1]
            out[-1] = (role, (prev + "\n\n" + content).strip() if prev or content else "")
            merged += 1
        else:
            out.append((role, content))
    return out, merged


def _hh(d: dict, sid: str, ctx: Context) -> Record:
    chosen_t = _get(d, "chosen")
    rejected_t = _get(d, "rejected")
    for name, t in (("chosen", chosen_t), ("rejected", rejected_t)):
        if not isinstance(t, str):
            raise RowReject(f"non_string_{name}", f"field '{name}' must be a transcript string, got {type(t).__name__}")
    if chosen_t == rejected_t:
        raise RowReject("identical_responses", "chosen and rejected transcripts are identical")
    # Divergence is judged on the raw turns: a transcript whose last two turns are both
    # "Assistant:" (a forked conversation glued together) must not be merged into one answer.
    raw_c, _, pc = parse_hh_transcript(chosen_t, merge=False)
    raw_r, _, pr = parse_hh_transcript(rejected_t, merge=False)
    if pc or pr:
        raise RowReject("malformed_transcript", "text before the first 'Human:' marker, or no turns at all")
    if raw_c[-1][0] != "assistant" or raw_r[-1][0] != "assistant":
        raise RowReject("no_final_assistant_turn", "the transcript does not end with an 'Assistant:' turn")
    if raw_c[:-1] != raw_r[:-1]:
        raise RowReject("diverges_before_final_turn",
                        f"chosen and rejected differ before the final assistant turn "
                        f"({len(raw_c) - 1} vs {len(raw_r) - 1} prompt turns)")
    tc, mc = merge_turns(raw_c)   # parsed once: the raw turns above, merged here
    tr, mr = merge_turns(raw_r)
    prompt_turns = tc[:-1]
    if not prompt_turns:
        raise RowReject("empty_prompt", "no human turn before the final assistant turn")
    if any(not c for _, c in prompt_turns):
        raise RowReject("empty_prompt_turn", "a turn inside the prompt conversation is empty")
    if mc or mr:
        ctx.note("merged_consecutive_turns")
    chosen, rejected = tc[-1][1], tr[-1][1]
    if not chosen:
        raise RowReject("empty_chosen", "the final assistant turn of 'chosen' is empty")
    if not rejected:
        raise RowReject("empty_rejected", "the final assistant turn of 'rejected' is empty")
    if len(prompt_turns) > 1:
        ctx.note("multi_turn_prompts")
    return _pair(ctx, sid, [Message(r, c) for r, c in prompt_turns], chosen, rejected)


# ---------------------------------------------------------------- webgpt

def _webgpt(d: dict, sid: str, ctx: Context) -> Record:
    q = _get(d, "question")
    question = _text(q.get("full_text") if isinstance(q, dict) else q, "question.full_text")
    a0, a1 = _text(_get(d, "answer_0"), "answer_0"), _text(_get(d, "answer_1"), "answer_1")
    s0, s1 = _get(d, "score_0"), _get(d, "score_1")
    for name, s in (("score_0", s0), ("score_1", s1)):
        if isinstance(s, bool) or not isinstance(s, (int, float)):
            raise RowReject("non_numeric_score", f"field '{name}' must be a number, got {s!r}")
        _finite(s, name)
    if s0 == s1:
        raise RowReject("tie", f"equal scores ({s0}): a tie is not a preference")
    (c, cs), (r, rs) = ((a0, s0), (a1, s1)) if s0 > s1 else ((a1, s1), (a0, s0))
    return _pair(ctx, sid, question, c, r, chosen_score=float(cs), rejected_score=float(rs))


# ---------------------------------------------------------------- gptj-pairwise

def _gptj(d: dict, sid: str, ctx: Context) -> Record:
    return _pair(ctx, sid, _text(_get(d, "prompt"), "prompt"), _text(_get(d, "chosen"), "chosen"),
                 _text(_get(d, "rejected"), "rejected"))


# ---------------------------------------------------------------- summarize_from_feedback

def _summarize(d: dict, sid: str, ctx: Context) -> Record:
    info = _get(d, "info")
    if not isinstance(info, dict):
        raise RowReject("missing_field", "field 'info' must be an object with 'post' or 'article'")
    body = info.get("post") or info.get("article")
    body = _text(body, "info.post")
    title, sub = info.get("title"), info.get("subreddit")
    # The TL;DR format of the original paper: subreddit, title and post make the prompt.
    head = []
    if isinstance(sub, str) and sub.strip():
        head.append(f"SUBREDDIT: r/{sub.strip()}")
    if isinstance(title, str) and title.strip():
        head.append(f"TITLE: {title.strip()}")
    prompt = "\n".join(head + [f"POST: {body}"]) if head else body
    summaries = _get(d, "summaries")
    if not isinstance(summaries, list) or len(summaries) != 2:
        raise RowReject("bad_summaries", f"'summaries' must be a list of 2 objects, got {summaries!r:.80}")
    texts = [_text(s.get("text") if isinstance(s, dict) else None, f"summaries[{i}].text")
             for i, s in enumerate(summaries)]
    choice = _get(d, "choice")
    if isinstance(choice, bool) or choice not in (0, 1):
        raise RowReject("bad_choice", f"'choice' must be 0 or 1, got {choice!r}")
    meta = {k: info.get(k) for k in ("id", "subreddit", "site") if info.get(k) is not None}
    extra = d.get("extra")
    if isinstance(extra, dict) and extra.get("confidence") is not None:
        meta["confidence"] = extra["confidence"]
    policies = [s.get("policy") for s in summaries]
    if all(isinstance(p, str) for p in policies):
        meta["policies"] = [policies[choice], policies[1 - choice]]
    return _pair(ctx, sid, prompt, texts[choice], texts[1 - choice], meta=meta)


# ---------------------------------------------------------------- MT-bench-style pairwise judgments

# FastChat's llm_judge (MT-bench, and the Japanese MT-bench / Vicuna-QA forks) writes one row per
# judged pair. Two layouts: its own pairwise files (model_1/model_2, g1_winner = the verdict with
# answer_1 shown first, g2_winner = with the order swapped, each already mapped to model_1/model_2;
# the forks add question/answer_1/answer_2 inline) and the Hub release of the MT-bench judgments
# (model_a/model_b, winner, conversation_a/conversation_b, turn). A pair is kept only when the
# verdict names one side in every game: FastChat counts a swap that changes the verdict as
# "inconsistent", and a tie is not a preference.
_SIDES = {"model_1": 0, "model_2": 1, "model_a": 0, "model_b": 1}
_TIES = ("tie", "tie (bothbad)")


def _verdict(v: Any, name: str) -> int:
    if not isinstance(v, str):
        raise RowReject("bad_winner", f"field '{name}' must be a string such as 'model_1', got {v!r}")
    key = v.strip().lower()
    if key in _SIDES:
        return _SIDES[key]
    if key in _TIES:
        raise RowReject("tie", f"'{name}' is {v!r}: a tie is not a preference")
    if key == "inconsistent":
        raise RowReject("inconsistent_verdict", f"'{name}' is 'inconsistent': the verdict changed when the "
                                                "answers were shown in the other order")
    if key == "error":
        raise RowReject("judge_error", f"'{name}' is 'error': the judge's output could not be parsed")
    raise RowReject("bad_winner", f"field '{name}' is {v!r}; expected model_1/model_2 (or model_a/model_b), "
                                  f"tie or inconsistent")


def _turn(d: dict) -> int:
    t = d.get("turn", 1)
    if isinstance(t, bool) or not isinstance(t, int) or t < 1:
        raise RowReject("bad_turn", f"field 'turn' must be a positive integer, got {t!r}")
    return t


def _judged_turn(conv: Any, name: str, turn: int) -> tuple[list[Message], str]:
    """The conversation up to the judged turn's user message, and that turn's assistant answer."""
    if not isinstance(conv, list) or not all(isinstance(m, dict) for m in conv):
        raise RowReject(f"bad_{name}", f"field '{name}' must be a list of {{role, content}} messages")
    try:
        msgs = [Message.from_dict(m) for m in conv]
    except SchemaError as e:
        raise RowReject(e.reason, f"'{name}': {e}") from e
    users = [i for i, m in enumerate(msgs) if m.role == "user"]
    if len(users) < turn:
        raise RowReject("missing_turn", f"'{name}' has {len(users)} user turn(s); the judgment is of turn {turn}")
    end = users[turn - 1] + 1
    if end >= len(msgs) or msgs[end].role != "assistant":
        raise RowReject("missing_turn", f"'{name}' has no assistant answer to user turn {turn}")
    return msgs[:end], msgs[end].content.strip()


def _judgment(d: dict, sid: str, ctx: Context) -> Record:
    turn = _turn(d)
    if "conversation_a" in d or "conversation_b" in d:          # the Hub release (lmsys/mt_bench_human_judgments)
        side = _verdict(_get(d, "winner"), "winner")
        pa, a = _judged_turn(_get(d, "conversation_a"), "conversation_a", turn)
        pb, b = _judged_turn(_get(d, "conversation_b"), "conversation_b", turn)
        a, b = _text(a, "answer_a"), _text(b, "answer_b")
        if [m.to_dict() for m in pa] != [m.to_dict() for m in pb]:
            raise RowReject("no_shared_prompt", f"turn {turn} is judged after two different conversations "
                                                f"(the earlier answers differ): no single prompt for a pair")
        prompt: Any = pa
        models = (d.get("model_a"), d.get("model_b"))
        judge = d.get("judge")
    else:                                                        # FastChat llm_judge pairwise files
        by_id = "answer_1" not in d and "answer_2" not in d       # FastChat's own files: answers by id
        if by_id and ctx.answers is None:
            raise RowReject("no_inline_answers",
                            "a judgment row without answer_1/answer_2: FastChat keeps the answers in "
                            "model_answer/; pass the benchmark folder with --answers DATA_DIR (question.jsonl, "
                            "model_answer/), or a file with the answers inline")
        if turn != 1:
            raise RowReject("multi_turn_inline", f"turn {turn}: its prompt holds each model's own earlier "
                                                 "answers, so the two answers share no prompt" if by_id else
                            f"turn {turn} judged on plain-string answers: the earlier turns of the "
                            "conversation are not in the row")
        if by_id:
            d = _joined_answers(d, ctx.answers)
        games = [k for k in ("g1_winner", "g2_winner") if k in d] or ["winner"]
        sides = {_verdict(_get(d, k), k) for k in games}
        if len(sides) > 1:
            raise RowReject("inconsistent_verdict", "g1_winner and g2_winner disagree: the verdict changed "
                                                    "when the answers were shown in the other order")
        (side,) = sides
        q = _get(d, "question")
        if isinstance(q, list) and q:
            q = q[0]
        prompt = _text(q, "question")
        a, b = _text(_get(d, "answer_1"), "answer_1"), _text(_get(d, "answer_2"), "answer_2")
        models = (d.get("model_1"), d.get("model_2"))
        judge = d.get("judge_model", d.get("judge"))
    chosen, rejected = (a, b) if side == 0 else (b, a)
    meta: dict[str, Any] = {"turn": turn}
    if d.get("question_id") is not None:
        meta["question_id"] = str(d["question_id"])
    if all(isinstance(m, str) for m in models):
        meta["models"] = [models[side], models[1 - side]]
    if isinstance(judge, (str, list)):
        meta["judge"] = judge if isinstance(judge, str) else [str(x) for x in judge]
    if isinstance(d.get("category"), str):
        meta["category"] = d["category"]
    return _pair(ctx, sid, prompt, chosen, rejected, meta=meta)


def _joined_answers(d: dict, ref: Any) -> dict:
    """A FastChat pairwise judgment row with its question and both answers filled in from ``ref``
    (:class:`jprefs.data.fastchat.FastChatAnswers`)."""
    qid = _get(d, "question_id")
    out = {**d, "question": ref.question(qid)}
    for i in ("1", "2"):
        out[f"answer_{i}"] = ref.answer(_get(d, f"model_{i}"), qid)
    return out


# ---------------------------------------------------------------- generic / canonical / ranklist

GENERIC_FIELDS = ("prompt", "system", "chosen", "rejected", "responses", "chosen_score", "rejected_score",
                  "margin", "license", "id")


def parse_mapping(spec: str | dict | None, targets: Sequence[str] = GENERIC_FIELDS) -> dict[str, str]:
    """``"prompt=question,chosen=good"`` -> ``{"prompt": "question", "chosen": "good"}``; ``targets``: the
    names a target may take."""
    if spec is None:
        return {}
    if isinstance(spec, dict):
        items = list(spec.items())
    else:
        items = []
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            if "=" not in part:
                raise JprefsError(f"--map entry {part!r} is not of the form target=source_field "
                                  f"(e.g. --map prompt=question,chosen=good,rejected=bad)")
            k, v = part.split("=", 1)
            items.append((k.strip(), v.strip()))
    out = {}
    for k, v in items:
        if k not in targets:
            import difflib

            close = difflib.get_close_matches(k, targets, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise JprefsError(f"--map target '{k}' is not a jprefs field.{hint} Valid targets: {', '.join(targets)}")
        out[k] = v
    return out


def _has(d: dict, path: str) -> bool:
    """Whether the (dotted) ``path`` is present in ``d``, a null value included."""
    try:
        _get(d, path)
    except RowReject:
        return False
    return True


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) for m in value)


def _response_text(value: Any, name: str) -> tuple[str, list[Message] | None]:
    """A response as its text and, for a message list (trl conversational layout), the turns before its
    final assistant message (``None`` for a string or an answer-only list ``[{"role": "assistant", ...}]``)."""
    if _is_messages(value):
        if value[-1].get("role") != "assistant":
            raise RowReject(f"bad_{name}", f"'{name}' is a message list that does not end with an assistant turn")
        try:
            before = [Message.from_dict(m) for m in value[:-1]]
        except SchemaError as e:
            raise RowReject(e.reason, f"'{name}': {e}") from e
        return _text(value[-1].get("content"), name), before or None
    return _text(value, name), None


def _same_turns(a: list[Message], b: list[Message]) -> bool:
    return [(m.role, m.content.strip()) for m in a] == [(m.role, m.content.strip()) for m in b]


def _conversation_prompt(prompt: list[Message] | str | None, before_c: list[Message] | None,
                         before_r: list[Message] | None) -> Any:
    """The prompt of a pair whose responses may be whole conversations (trl's implicit-prompt layout, or a
    ``prompt`` column holding only the first question beside multi-turn ``chosen``/``rejected``):
    ``before_*`` are the turns before each final answer (None: a bare answer, which continues ``prompt``).
    Both answers must continue one conversation that begins with ``prompt``; keeping ``prompt`` alone
    would drop the middle of the conversation, and differing conversations are no pair."""
    if before_c is None and before_r is None:
        if prompt is None:
            raise RowReject("missing_field", "missing field 'prompt' (and the responses are answers only)")
        return prompt
    msgs = None if prompt is None else [Message("user", prompt)] if isinstance(prompt, str) else prompt
    convs = [b if b is not None else msgs for b in (before_c, before_r)]
    if convs[0] is None or convs[1] is None or not _same_turns(convs[0], convs[1]):
        raise RowReject("diverges_before_final_turn", "chosen and rejected continue different conversations "
                                                      "(the turns before their final assistant answers differ): "
                                                      "no single prompt for a pair")
    conv = convs[0]
    if msgs is not None and (len(msgs) > len(conv) or not _same_turns(msgs, conv[:len(msgs)])):
        raise RowReject("prompt_mismatch", f"'prompt' is not the start of the conversation that chosen and "
                                           f"rejected continue ({len(conv)} turns): which one they answer is ambiguous")
    return conv


def extra_columns(d: dict, used: set[str], ctx: Context | None = None, *,
                  max_chars: int = MAX_EXTRA_CHARS) -> dict[str, Any]:
    """``meta`` entries for the columns of row ``d`` not in ``used``: ``{"extra": {column: value}}`` (as
    ``PreferencePair.from_dict`` keeps unknown fields), plus ``{"extra_dropped": {column: reason}}`` for
    the columns that cannot be kept: not JSON (``not_json``: bytes, an image), NaN/Infinity
    (``non_finite_number``), a lone surrogate (``unencodable_text``), nested so deep that the record would
    pass :data:`~jprefs.data.io.MAX_DEPTH` (``too_deeply_nested``), or over the ``max_chars`` of JSON left
    for the row (``too_large``). Each dropped column counts in the note ``extra_dropped_<reason>``: the
    row itself is kept, as before the columns were.

    >>> extra_columns({"prompt": "q", "question_id": 7, "judge": "gpt-4"}, {"prompt"})
    {'extra': {'question_id': 7, 'judge': 'gpt-4'}}
    """
    import datetime
    import json

    from jprefs.data.io import MAX_DEPTH, RowProblem, check_value

    kept: dict[str, Any] = {}
    dropped: dict[str, str] = {}
    left = max_chars
    for k, v in d.items():
        if k in used:
            continue
        if isinstance(v, (datetime.date, datetime.time)):       # Parquet / Hub timestamps
            v = v.isoformat()
        try:
            check_value(v, max_depth=MAX_DEPTH - 2, finite=True)   # it sits at meta.extra.<column>
            n = len(json.dumps(v, ensure_ascii=False, allow_nan=False))
        except RowProblem as e:
            reason = e.reason
        except (TypeError, ValueError):                            # bytes, an image, a circular reference
            reason = "not_json"
        else:
            if n <= left:
                kept[str(k)] = v
                left -= n
                continue
            reason = "too_large"
        dropped[str(k)] = reason
        if ctx is not None:
            ctx.note(f"extra_dropped_{reason}")
    out: dict[str, Any] = {}
    if kept:
        out["extra"] = kept
    if dropped:
        out["extra_dropped"] = dropped
    return out


def _top(path: str) -> str:
    """The input column a (dotted) path reads: ``question.full_text`` -> ``question``."""
    return path.split(".", 1)[0]


def _generic(d: dict, sid: str, ctx: Context) -> Record:
    m = ctx.mapping
    f = lambda key: m.get(key, key)  # noqa: E731
    # the columns read into canonical fields; every other column is kept in meta.extra (provenance:
    # ja_mt_bench's question_id, chosen_model, judge, category), a column read in part (a dotted path) not
    used = {_top(f("prompt")), _top(m["license"]) if "license" in m else "license"}
    used.update(_top(m[k]) for k in ("system", "id") if k in m)
    prompt = _get(d, f("prompt"), required=False)
    # no prompt column: trl's implicit-prompt layout (the conversation before each answer) when chosen is a
    # message list, else missing_field naming the path
    implicit = prompt is None and "prompt" not in m and _is_messages(_get(d, f("chosen"), required=False))
    if implicit:
        pass
    elif isinstance(prompt, str):
        prompt = _text(prompt, "prompt")
    elif isinstance(prompt, list):
        try:
            prompt = [Message.from_dict(x) for x in prompt]
        except SchemaError as e:
            raise RowReject(e.reason, str(e)) from e
    else:
        _get(d, f("prompt"))
        raise RowReject("non_string_prompt", f"field '{f('prompt')}' must be a string or a message list, "
                                             f"got {type(prompt).__name__}")
    system = _get(d, m["system"], required=False) if "system" in m else None
    if isinstance(system, str) and system.strip() and prompt is not None:
        prompt = [Message("system", system.strip())] + ([Message("user", prompt)] if isinstance(prompt, str) else prompt)
    # a row's own licence (its `license` column, or the column mapped with license=...) is kept per row,
    # with or without a --map for the other fields: dropping it would lose provenance
    lic = _get(d, m["license"], required=False) if "license" in m else d.get("license")
    kw: dict[str, Any] = {}
    if isinstance(lic, str) and lic.strip():
        kw["license"] = lic.strip()
    if "id" in m:
        v = _get(d, m["id"], required=False)
        if v is not None:
            sid = str(v)
    # a rank list when `responses` is mapped, or present with no chosen field (mapped or not) beside it
    # (presence of the mapped paths, dotted ones too: a row with `responses` beside a mapped `pair.good` is a pair)
    if "responses" in m or ("responses" in d and not _has(d, f("chosen")) and not _has(d, f("rejected"))):
        if implicit:
            _get(d, f("prompt"))
        responses = _get(d, f("responses"))
        if isinstance(responses, str):
            responses = [r for r in responses.split("\t")]
        if not isinstance(responses, list):
            raise RowReject("bad_responses", "'responses' must be a list of strings, best first")
        responses = [_text(r, f"responses[{i}]") for i, r in enumerate(responses)]
        if len(responses) < 2:
            raise RowReject("too_few_responses", "a rank list needs at least 2 responses")
        if len(set(responses)) != len(responses):
            raise RowReject("duplicate_responses", "a rank list contains the same response twice")
        used.add(_top(f("responses")))
        return RankList.create(prompt, responses, source=ctx.source, source_id=sid,
                               license=kw.get("license", ctx.license), meta=extra_columns(d, used, ctx))
    for key in ("chosen_score", "rejected_score", "margin"):
        if key in m or key in d:
            used.add(_top(f(key)))
            v = _get(d, f(key), required=False)
            if isinstance(v, str) and not v.strip():
                v = None                        # an empty CSV cell: no score, as `data group` reads it
            if v is not None:
                if isinstance(v, str):
                    try:
                        v = float(v)
                    except ValueError:
                        raise RowReject(f"non_numeric_{key}", f"field '{f(key)}' must be a number, got {v!r}")
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise RowReject(f"non_numeric_{key}", f"field '{f(key)}' must be a number, got {v!r}")
                kw[key] = _finite(v, f(key))
    chosen, before_c = _response_text(_get(d, f("chosen")), "chosen")
    rejected, before_r = _response_text(_get(d, f("rejected")), "rejected")
    pair_prompt = _conversation_prompt(prompt, before_c, before_r)
    used.update((_top(f("chosen")), _top(f("rejected"))))
    return _pair(ctx, sid, pair_prompt, chosen, rejected, meta=extra_columns(d, used, ctx), **kw)


def _canonical(d: dict, sid: str, ctx: Context) -> Record:
    from jprefs.data.schema import record_from_dict

    try:
        rec = record_from_dict(d)
    except SchemaError as e:
        raise RowReject(e.reason, str(e)) from e
    if rec.license == UNKNOWN_LICENSE and ctx.license != UNKNOWN_LICENSE:
        rec.license = ctx.license           # --license fills rows that name none (a row's own licence is kept)
    return rec


def _ranklist(d: dict, sid: str, ctx: Context) -> Record:
    fields = d.get("fields")
    if fields is None:  # a JSONL/Parquet rank list goes through the generic mapping
        return _generic(d, sid, ctx)
    if len(fields) < 3:
        raise RowReject("too_few_responses", f"expected prompt<TAB>best<TAB>...<TAB>worst (>= 3 fields), got {len(fields)}")
    prompt = _text(fields[0], "prompt")
    responses = [r for r in fields[1:]]
    while responses and not responses[-1].strip():
        responses.pop()  # trailing tabs
    responses = [_text(r, f"responses[{i}]") for i, r in enumerate(responses)]
    if len(responses) < 2:
        raise RowReject("too_few_responses", "a rank list needs at least 2 responses")
    if len(set(responses)) != len(responses):
        raise RowReject("duplicate_responses", "a rank list contains the same response twice")
    return RankList.create(prompt, responses, source=ctx.source, source_id=sid, license=ctx.license)


_NONE_STATED = "the dataset card states no licence"
SOURCES: dict[str, Adapter] = {
    "hh-rlhf": Adapter("hh-rlhf", _hh, hub_id="Anthropic/hh-rlhf", license="mit",
                       license_note="MIT (github.com/anthropics/hh-rlhf LICENSE)",
                       description="Anthropic HH transcripts: shared prefix = prompt, final assistant turns = responses"),
    "webgpt": Adapter("webgpt", _webgpt, hub_id="openai/webgpt_comparisons", license=UNKNOWN_LICENSE,
                      license_note=_NONE_STATED,
                      description="question.full_text, answer_0/1, score_0/1; ties rejected; chosen = higher score"),
    "gptj-pairwise": Adapter("gptj-pairwise", _gptj, hub_id="Dahoas/synthetic-instruct-gptj-pairwise",
                             license=UNKNOWN_LICENSE, license_note=_NONE_STATED,
                             description="prompt, chosen, rejected"),
    "summarize": Adapter("summarize", _summarize, hub_id="openai/summarize_from_feedback", hub_config="comparisons",
                         license=UNKNOWN_LICENSE, license_note=_NONE_STATED,
                         description="info.post (+title, subreddit) as prompt; summaries[choice] chosen"),
    "fastchat-pairwise": Adapter("fastchat-pairwise", _judgment,
                                 description="MT-bench-style pairwise judgments (FastChat llm_judge): model_1/2 + "
                                             "g1/g2_winner + question/answer_1/answer_2, or model_a/b + winner + "
                                             "conversation_a/b + turn; ties and order-inconsistent verdicts rejected"),
    "mt-bench-human": Adapter("mt-bench-human", _judgment, hub_id="lmsys/mt_bench_human_judgments", hub_split="human",
                              license="cc-by-4.0", license_note="CC BY 4.0 (dataset card)",
                              description="lmsys/mt_bench_human_judgments (splits human, gpt4_pair), as fastchat-pairwise"),
    "jsonl": Adapter("jsonl", _generic, description="any file or Hub dataset with a field mapping (--map)"),
    "ranklist": Adapter("ranklist", _ranklist, description="TSV prompt<TAB>best<TAB>...<TAB>worst, or --map responses=FIELD",
                        table_options={"header": False, "quoting": False}),
    "jprefs": Adapter("jprefs", _canonical, description="canonical jprefs JSONL (pairs and rank lists)"),
}
ALIASES = {"generic": "jsonl", "hh": "hh-rlhf", "anthropic/hh-rlhf": "hh-rlhf", "openai/webgpt_comparisons": "webgpt",
           "dahoas/synthetic-instruct-gptj-pairwise": "gptj-pairwise", "gptj": "gptj-pairwise",
           "openai/summarize_from_feedback": "summarize", "canonical": "jprefs",
           "fastchat": "fastchat-pairwise", "mt-bench": "fastchat-pairwise",
           "lmsys/mt_bench_human_judgments": "mt-bench-human"}


def get_adapter(name: str) -> Adapter:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in SOURCES:
        import difflib

        close = difflib.get_close_matches(key, list(SOURCES) + list(ALIASES), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise JprefsError(f"unknown source '{name}'.{hint}\n  available: {', '.join(SOURCES)}"
                          f"\n  fix: pass --source with one of these, or --source jsonl --map prompt=...,chosen=...,rejected=...")
    return SOURCES[key]


def _looks_like_hub_id(s: str) -> bool:
    """``owner/name`` that is not a local path; a name ending in a table suffix (``sub/rows.jsonl``) is a
    file, so a missing one is "input file not found", not a Hub download attempt."""
    from jprefs.data.io import TABLE_SUFFIXES

    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", s)) and not os.path.exists(s) \
        and not s.lower().endswith((*TABLE_SUFFIXES, ".txt", ".ndjson"))


def iter_hub_rows(hub_id: str, *, config: str | None, split: str, revision: str | None = None) -> Iterator[Row]:
    """Rows of a Hub dataset through ``datasets.load_dataset`` (0-based index locators)."""
    from jprefs.errors import require

    datasets = require("datasets", "dev", "loading Hub datasets")
    try:
        ds = datasets.load_dataset(hub_id, config, split=split, revision=revision)
    except Exception as e:  # network, missing split, script-based dataset, ...
        raise DataError(f"could not load Hub dataset '{hub_id}' (config={config!r}, split={split!r}): "
                        f"{type(e).__name__}: {e}",
                        fix="check the id, --name and --split; offline, download the files and pass a local path; "
                            "for a script-based dataset try --revision refs/convert/parquet") from e
    i = 0
    try:
        for r in ds:
            yield Row(i, r, unit="index")
            i += 1
    except Exception as e:  # a damaged cache file surfaces while iterating
        raise DataError(f"reading Hub dataset '{hub_id}' failed at row {i}: {type(e).__name__}: {e}",
                        fix="clear its cache (`rm -r ~/.cache/huggingface/datasets/...`) and load it again") from e


MAX_CHARS = 200_000  # longer texts are almost always scraping accidents; no encoder or translator takes them whole


def _check_lengths(rec: Record, max_chars: int) -> None:
    texts = [m.content for m in rec.prompt]
    texts += rec.responses if isinstance(rec, RankList) else [rec.chosen, rec.rejected]
    longest = max(len(t) for t in texts)
    if longest > max_chars:
        raise RowReject("text_too_long", f"a text has {longest:,} characters (limit {max_chars:,}); "
                                         f"raise --max-chars if this is intended")


def n_pairs(rec: Record) -> int:
    """Pairs a record expands to: 1, or K(K-1)/2 for a rank list of K."""
    return len(rec.responses) * (len(rec.responses) - 1) // 2 if isinstance(rec, RankList) else 1


class Conversion:
    """A streaming conversion of one input with one adapter.

    Iterate :meth:`outcomes` for ``(record, line, None)`` or ``(None, None, reject)`` in input order;
    counts, licences and notes accumulate as it goes, so memory does not grow with the input.
    Every row read is either a record or a reject (``rows_in == rows_out + rows_rejected``): a row
    the adapter cannot use, one it fails on unexpectedly (``adapter_error``), one whose output
    could not be written as strict JSON. ``strict`` raises :class:`DataError` at the first instead.

    >>> conv = Conversion("hh.jsonl.gz", "hh-rlhf")            # doctest: +SKIP
    >>> for rec, line, rej in conv.outcomes(): ...              # doctest: +SKIP
    """

    def __init__(self, input: str | os.PathLike, source: str, *, mapping: str | dict | None = None,
                 split: str | None = None, config: str | None = None, revision: str | None = None,
                 license: str | None = None, strict: bool = False, limit: int | None = None,
                 max_chars: int = MAX_CHARS, field: str | None = None, show_progress: bool = False,
                 answers: str | os.PathLike | None = None):
        self.adapter = get_adapter(source)
        self.input = str(input)
        self.license = license or self.adapter.license
        self.from_hub = _looks_like_hub_id(self.input)
        # Provenance: known sources are recorded by Hub id, generic ones by their file name or Hub id.
        source_name = self.adapter.hub_id or (self.input if self.from_hub else os.path.basename(self.input))
        self.ctx = Context(source_name, self.license, parse_mapping(mapping))
        if self.ctx.mapping and self.adapter.parse not in (_generic, _ranklist):
            from jprefs.errors import ConfigError

            raise ConfigError(f"--map: --source {self.adapter.name} reads its own fields and would ignore the "
                              f"mapping\n  fix: drop --map, or use --source jsonl (or ranklist) with --map")
        if answers is not None:
            if self.adapter.name != "fastchat-pairwise":
                from jprefs.errors import ConfigError

                raise ConfigError(f"--answers joins FastChat judgments with their answers; --source {source} "
                                  "reads its answers from the rows\n  fix: drop --answers, or --source fastchat-pairwise")
            from jprefs.data.fastchat import FastChatAnswers

            self.ctx.answers = FastChatAnswers(answers)
            if self.ctx.answers.bad_refs:       # unreadable question/answer rows: their judgments get no_answer
                self.ctx.note("answers_rows_unreadable", len(self.ctx.answers.bad_refs))
        self.opts = dict(split=split, config=config, revision=revision, field=field)
        self.strict, self.limit, self.max_chars, self.show_progress = strict, limit, max_chars, show_progress
        self.rows_in = self.rows_out = self.pairs_out = 0
        self.rejects_by_reason: Counter = Counter()
        self.licenses: Counter = Counter()
        self.unknown_sources: set[str] = set()

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejects_by_reason.values())

    def _rows(self) -> Iterable[Row]:
        if not self.from_hub:
            opts = dict(self.adapter.table_options)
            if self.opts["field"]:
                opts["field"] = self.opts["field"]
            return iter_table(self.input, **opts)
        own = self.input == self.adapter.hub_id
        cfg = self.opts["config"] or (self.adapter.hub_config if own else None)
        split = self.opts["split"] or (self.adapter.hub_split if own else None) or "train"
        return iter_hub_rows(self.input, config=cfg, split=split, revision=self.opts["revision"])

    def outcomes(self, *, serialize: bool = True) -> Iterator[tuple[Record | None, str | None, dict | None]]:
        """``serialize``: also render each record as its strict JSON line (a row whose record cannot be
        written is then a reject, never a crash of the writer)."""
        from jprefs.data.io import RowProblem, json_line, safe_raw

        bar = None
        if self.show_progress:
            from jprefs.progress import progress

            bar = progress(desc=f"convert {self.adapter.name}", unit="row")
        parse, ctx, max_chars, limit = self.adapter.parse, self.ctx, self.max_chars, self.limit
        licenses, unknown = self.licenses, self.unknown_sources
        try:
            for row in self._rows():
                if limit is not None and self.rows_in >= limit:
                    break
                self.rows_in += 1
                if bar is not None:
                    bar.update(1)
                if row.error:
                    reason, err = row.reason or "unreadable_row", row.error
                else:
                    try:
                        rec = parse(row.data, str(row.locator), ctx)
                        _check_lengths(rec, max_chars)
                        line = json_line(rec.to_dict()) if serialize else None
                    except (RowReject, SchemaError, RowProblem) as e:
                        reason, err = e.reason, str(e)
                    except Exception as e:  # noqa: BLE001 - the boundary: one surprising row never aborts a run
                        reason, err = "adapter_error", f"{type(e).__name__}: {e}"
                    else:
                        self.rows_out += 1
                        self.pairs_out += len(rec.responses) * (len(rec.responses) - 1) // 2 \
                            if type(rec) is RankList else 1
                        lic = rec.license or UNKNOWN_LICENSE
                        licenses[lic] += 1
                        if lic == UNKNOWN_LICENSE:
                            unknown.add(rec.source)
                        yield rec, line, None
                        continue
                if self.strict:
                    raise DataError(f"{err} [{reason}]", path=self.input, line=row.locator if row.unit == "line" else None,
                                    fix=("" if row.unit == "line" else f"row index {row.locator}; ") +
                                        "fix the row, or drop --strict to write bad rows to the rejects file")
                self.rejects_by_reason[reason] += 1
                yield None, None, {**row.where(), "reason": reason, "error": err, "raw": safe_raw(row.data)}
        finally:
            if bar is not None:
                bar.close()

    def summary(self) -> dict[str, Any]:
        return {"input": self.input, "source": self.adapter.name, "license": self.license,
                "licenses": dict(self.licenses.most_common()), "rows_in": self.rows_in, "rows_out": self.rows_out,
                "rows_rejected": self.rows_rejected, "pairs_out": self.pairs_out,
                "rejects_by_reason": dict(self.rejects_by_reason.most_common()), "notes": dict(self.ctx.notes)}


def convert(input: str | os.PathLike, source: str, **opts) -> ConvertResult:
    """Convert a local file or a Hub dataset with the named adapter, in memory (options as
    :class:`Conversion`). ``jprefs data convert`` streams instead (:func:`convert_to_files`).

    >>> res = convert("hh.jsonl.gz", source="hh-rlhf")          # doctest: +SKIP
    >>> res.rows_in == res.rows_out + len(res.rejects)           # doctest: +SKIP
    True
    """
    conv = Conversion(input, source, **opts)
    records: list[Record] = []
    rejects: list[dict] = []
    for rec, _, rej in conv.outcomes(serialize=False):
        if rec is not None:
            records.append(rec)
        else:
            rejects.append(rej)
    return ConvertResult(records, rejects, conv.rows_in, conv.adapter.name, conv.license, conv.input, conv.ctx.notes)


def convert_to_files(conv: Conversion, out: str | os.PathLike, rejects_out: str | os.PathLike, *,
                     require_license: bool = False) -> dict[str, Any]:
    """Stream ``conv`` into ``out`` and ``rejects_out`` (both atomic: on any error neither appears);
    memory stays flat whatever the input size. Returns the summary."""
    from jprefs.data.io import AtomicWriter
    from jprefs.data.provenance import check_license_counts

    with AtomicWriter(out) as fo, AtomicWriter(rejects_out) as fr:
        for rec, line, rej in conv.outcomes():
            if rec is not None:
                fo.write(line + "\n")
            else:
                fr.write_json(rej)
        check_license_counts(dict(conv.licenses), conv.unknown_sources, action="convert", require=require_license)
    assert conv.rows_in == conv.rows_out + conv.rows_rejected, "row accounting broken"
    return conv.summary()
