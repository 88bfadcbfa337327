"""The jprefs data model: messages, preference pairs, rank lists and binary examples.

Everything that flows between stages is one of these records, serialised as one
JSON object per line (see :mod:`jprefs.data.io`).

- :class:`Message` ``{role: system|user|assistant, content}``.
- :class:`PreferencePair` ``{id, prompt: [Message], chosen, rejected, source,
  source_id, license, meta}`` plus optional ``chosen_score``, ``rejected_score``
  and ``margin``. The prompt is a conversation so multi-turn hh-rlhf keeps its
  turns; it always ends with a user turn.
- :class:`RankList` ``{id, prompt, responses (best first), ...}``; expands to
  K(K-1)/2 pairs with :meth:`RankList.to_pairs`.
- :class:`BinaryExample` ``{prompt, response, label}`` with label 1 = chosen and
  0 = rejected (the open_preference layout of the seed classifiers).

Validation raises :class:`ValueError` subclasses whose message names the field
and shows the value, so row-level callers can turn them into rejects.

Example::

    pair = PreferencePair.create(
        prompt=[Message("user", "日本の首都は?")], chosen="東京です。", rejected="大阪です。",
        source="example", source_id="0", license="mit")
    pair.to_dict()["prompt"]   # [{"role": "user", "content": "日本の首都は?"}]
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from jprefs.text import strip_invisible

ROLES = ("system", "user", "assistant")
UNKNOWN_LICENSE = "unknown"
LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # a lone surrogate: no UTF-8 writer can encode it


class SchemaError(ValueError):
    """A record does not match the schema. ``reason`` is a short machine-friendly tag."""

    def __init__(self, message: str, reason: str = "invalid_record"):
        super().__init__(message)
        self.reason = reason


def _blank(value: str) -> bool:
    """Nothing visible: whitespace, or only invisible format characters (a zero-width space, a BOM: such
    a text looks empty and has the empty text's prompt key). The second test runs only on a text that
    begins with a non-printable character after stripping, so ordinary text costs one ``strip``."""
    s = value.strip()
    if not s:
        return True
    if s[0].isprintable():
        return False
    from jprefs.text import strip_invisible

    return not strip_invisible(s).strip()


def _check_text(name: str, value: Any, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise SchemaError(f"field '{name}' must be a string, got {type(value).__name__} {_short(value)}",
                          reason=f"non_string_{name}")
    if not allow_empty and _blank(value):
        raise SchemaError(f"field '{name}' is empty", reason=f"empty_{name}")
    if "\x00" in value:
        raise SchemaError(f"field '{name}' contains a NUL character", reason=f"nul_in_{name}")
    if not value.isascii() and LONE_SURROGATE.search(value):
        raise SchemaError(f"field '{name}' holds a lone surrogate ({LONE_SURROGATE.search(value).group()!a}), which UTF-8 "
                          f"cannot encode: the source text is damaged", reason="unencodable_text")
    return value


def _check_strs(obj: Any, names: tuple[str, ...]) -> None:
    """Provenance strings (id, source, licence, ...): strings that UTF-8 can encode."""
    for name in names:
        value = getattr(obj, name)
        if type(value) is not str:
            raise SchemaError(f"field '{name}' must be a string, got {_short(value)}", reason=f"non_string_{name}")
        if not value.isascii() and LONE_SURROGATE.search(value):
            raise SchemaError(f"field '{name}' holds a lone surrogate, which UTF-8 cannot encode",
                              reason="unencodable_text")
    if "license" in names:
        # a blank licence is an unknown one (it passed --require-license and counted as a licence of its own)
        obj.license = obj.license.strip() or UNKNOWN_LICENSE


_PROVENANCE = ("id", "source", "source_id", "license")


def _check_meta(meta: Any) -> dict:
    """``meta`` must be a JSON object that a strict writer accepts: no NaN/Infinity, no lone
    surrogates, at most ``MAX_DEPTH`` levels of nesting."""
    if not isinstance(meta, dict):
        raise SchemaError(f"field 'meta' must be an object, got {type(meta).__name__} {_short(meta)}",
                          reason="bad_meta")
    if meta:
        from jprefs.data.io import RowProblem, check_value

        try:
            check_value(meta, finite=True)
        except RowProblem as e:
            raise SchemaError(f"field 'meta': {e}", reason=e.reason) from e
    return meta


def _meta_from(d: dict) -> dict:
    """``meta`` of an input row: an object, absent/null, or (Parquet exports) the object's JSON text."""
    meta = d.get("meta")
    if meta is None:
        return {}
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except ValueError:
            raise SchemaError(f"field 'meta' must be an object, got the string {_short(d['meta'])}",
                              reason="bad_meta") from None
    if not isinstance(meta, dict):
        raise SchemaError(f"field 'meta' must be an object, got {type(meta).__name__} {_short(meta)}",
                          reason="bad_meta")
    return dict(meta)


def _meta_with_extra(d: dict, known: set[str]) -> dict:
    """``meta`` of an input row with the row's unknown fields added under ``meta["extra"]``: what
    ``PreferencePair.from_dict`` and ``RankList.from_dict`` both do, so no column of a canonical row
    is lost (``jprefs data convert --source jsonl`` keeps the unmapped ones the same way)."""
    meta = _meta_from(d)
    extra = {k: v for k, v in d.items() if k not in known}
    if extra:
        kept = meta.get("extra", {})
        if not isinstance(kept, dict):
            raise SchemaError(f"field 'meta.extra' must be an object to take the row's other fields "
                              f"{sorted(extra)}, got {type(kept).__name__} {_short(kept)}", reason="bad_meta")
        meta["extra"] = {**kept, **extra}
    return meta


def _short(value: Any, n: int = 60) -> str:
    s = repr(value)
    return s if len(s) <= n else s[: n - 3] + "..."


@dataclass(frozen=True)
class Message:
    """One chat turn. ``role`` is system, user or assistant."""

    role: str
    content: str

    def __post_init__(self):
        if self.role not in ROLES:
            raise SchemaError(f"message role must be one of {ROLES}, got {_short(self.role)}", reason="bad_role")
        _check_text(f"{self.role} message content", self.content)

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}

    @classmethod
    def from_dict(cls, d: Any) -> "Message":
        if isinstance(d, Message):
            return d
        if not isinstance(d, dict) or "role" not in d or "content" not in d:
            raise SchemaError(f"a message must be an object with 'role' and 'content', got {_short(d)}",
                              reason="bad_message")
        return cls(d["role"], d["content"])


def as_messages(prompt: Any) -> list[Message]:
    """Accept a string (one user turn) or a list of messages/dicts; return messages.

    >>> as_messages("こんにちは")
    [Message(role='user', content='こんにちは')]
    """
    if isinstance(prompt, str):
        return [Message("user", _check_text("prompt", prompt))]
    if isinstance(prompt, (list, tuple)):
        if not prompt:
            raise SchemaError("field 'prompt' is an empty conversation", reason="empty_prompt")
        return [Message.from_dict(m) for m in prompt]
    raise SchemaError(f"field 'prompt' must be a string or a list of messages, got {type(prompt).__name__}",
                      reason="non_string_prompt")


def _check_prompt(messages: list[Message]) -> None:
    if not messages:
        raise SchemaError("field 'prompt' is an empty conversation", reason="empty_prompt")
    if messages[-1].role != "user":
        raise SchemaError(f"the prompt must end with a user turn, it ends with '{messages[-1].role}'",
                          reason="prompt_not_ending_with_user")


def normalize_text(text: str) -> str:
    """Normalisation used for de-duplication and prompt grouping (keys only, never stored): invisible
    format characters removed (:func:`jprefs.text.strip_invisible`: zero-width space/joiners, BOM, word
    joiner, soft hyphen, bidi marks, variation selectors), then NFKC, then whitespace collapsed to one
    space and trimmed. Invisibles go first, so that a zero-width space cannot keep a combining accent
    from composing; NFKC and ``str.split`` both read the ideographic space U+3000 and the no-break spaces
    U+00A0 / U+202F as a space.

    >>> normalize_text("\\ufeff  東京\\u3000\\u200bの\\u00a0天気 ")
    '東京 の 天気'
    """
    return " ".join(unicodedata.normalize("NFKC", strip_invisible(text)).split())


def prompt_key(messages: list[Message]) -> str:
    """Stable key of a prompt conversation (for splits and grouping)."""
    payload = json.dumps([[m.role, normalize_text(m.content)] for m in messages], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:20]


def content_hash(*parts: Any) -> str:
    payload = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


ROLE_NAMES = {"user": "ユーザー", "assistant": "アシスタント", "system": "システム"}

# The assistant cue that ends a prompt for trl's standard (string) formats. A newline, not a
# space, ends it: BPE and SentencePiece tokenizers merge a trailing space into the first word
# that follows (" はい"), so the tokenized prompt would not be a prefix of the tokenized
# prompt + answer, and trl's DPO/KTO trainers would cut the prompt where they diverge.
ASSISTANT_CUE = "アシスタント:\n"


def render_prompt(messages: list[Message] | str, *, style: str = "plain", cue: bool = False) -> str:
    """Render a conversation as one string.

    ``plain``: a single user turn is its content; multi-turn conversations get
    role markers ``ユーザー:`` / ``アシスタント:`` / ``システム:`` one turn per paragraph.
    ``hh``: the Anthropic transcript form (``\\n\\nHuman: ...\\n\\nAssistant: ...``).
    ``cue=True`` (``plain`` only; what ``jprefs data export --format trl`` writes): every turn
    gets its role marker, single-turn prompts too, and the prompt ends with the assistant cue
    ``\\n\\nアシスタント:\\n``, so that ``prompt + answer`` reads as one well-formed turn.

    >>> render_prompt([Message("user", "こんにちは")])
    'こんにちは'
    >>> render_prompt([Message("user", "こんにちは")], cue=True)
    'ユーザー: こんにちは\\n\\nアシスタント:\\n'
    """
    msgs = as_messages(messages)
    if style == "hh":
        if cue:
            raise ValueError("cue=True needs style='plain'")
        names = {"user": "Human", "assistant": "Assistant", "system": "System"}
        return "".join(f"\n\n{names[m.role]}: {m.content}" for m in msgs)
    if style != "plain":
        raise ValueError(f"unknown prompt style {style!r}; use 'plain' or 'hh'")
    if cue:
        return "".join(f"{ROLE_NAMES[m.role]}: {m.content}\n\n" for m in msgs) + ASSISTANT_CUE
    if len(msgs) == 1 and msgs[0].role == "user":
        return msgs[0].content
    return "\n\n".join(f"{ROLE_NAMES[m.role]}: {m.content}" for m in msgs)


_CUE_TURN = re.compile(r"(ユーザー|アシスタント|システム): (.*)", re.DOTALL)
_CUE_SPLIT = re.compile(r"\n\n(?=(?:ユーザー|アシスタント|システム): )")


def parse_cue_prompt(text: str) -> list[Message] | None:
    """The conversation of a prompt written by ``render_prompt(..., cue=True)`` (the ``trl``
    export), or ``None`` if ``text`` is not in that layout. Exact inverse of the rendering
    unless a turn's content itself holds a paragraph starting with a role marker.

    >>> parse_cue_prompt("ユーザー: こんにちは\\n\\nアシスタント:\\n")
    [Message(role='user', content='こんにちは')]
    >>> parse_cue_prompt("こんにちは") is None
    True
    """
    if not isinstance(text, str) or not text.endswith("\n\n" + ASSISTANT_CUE):
        return None
    roles = {v: k for k, v in ROLE_NAMES.items()}
    msgs = []
    for turn in _CUE_SPLIT.split(text[:-len("\n\n" + ASSISTANT_CUE)]):
        m = _CUE_TURN.fullmatch(turn)
        if m is None:
            return None
        msgs.append(Message(roles[m.group(1)], m.group(2)))
    return msgs


def finite_float(v: int | float) -> float | None:
    """``v`` as a float, or None when it is NaN, infinite or an int too large for a float (where
    ``math.isfinite`` itself raises OverflowError)."""
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _opt_float(name: str, v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SchemaError(f"field '{name}' must be a number, got {_short(v)}", reason=f"non_numeric_{name}")
    f = finite_float(v)
    if f is None:
        raise SchemaError(f"field '{name}' is {v!r}, not a finite number", reason="non_finite_score")
    return f


class _HasPrompt:
    """Shared accessors of records with a ``prompt`` conversation."""

    prompt: list[Message]

    @property
    def prompt_text(self) -> str:
        """The prompt as one string (role markers for multi-turn)."""
        return render_prompt(self.prompt)

    @property
    def prompt_key(self) -> str:
        """Stable key of the normalised prompt (for splits and grouping)."""
        return prompt_key(self.prompt)


@dataclass
class PreferencePair(_HasPrompt):
    """A prompt conversation with a preferred (chosen) and a dispreferred (rejected) response."""

    id: str
    prompt: list[Message]
    chosen: str
    rejected: str
    source: str = "unknown"
    source_id: str = ""
    license: str = UNKNOWN_LICENSE
    meta: dict[str, Any] = field(default_factory=dict)
    chosen_score: float | None = None
    rejected_score: float | None = None
    margin: float | None = None

    def __post_init__(self):
        self.prompt = as_messages(self.prompt)
        _check_prompt(self.prompt)
        _check_text("chosen", self.chosen)
        _check_text("rejected", self.rejected)
        if self.chosen == self.rejected:
            raise SchemaError("chosen and rejected are identical: not a preference", reason="identical_responses")
        if not isinstance(self.id, str) or not self.id:
            raise SchemaError(f"field 'id' must be a non-empty string, got {_short(self.id)}", reason="bad_id")
        _check_strs(self, _PROVENANCE)
        _check_meta(self.meta)
        self.chosen_score = _opt_float("chosen_score", self.chosen_score)
        self.rejected_score = _opt_float("rejected_score", self.rejected_score)
        self.margin = _opt_float("margin", self.margin)
        # scores that state the opposite preference (a mapping that swapped score columns): a margin-aware
        # reward loss would be told that the rejected answer is the better one
        if self.chosen_score is not None and self.rejected_score is not None and self.chosen_score < self.rejected_score:
            raise SchemaError(f"chosen_score {self.chosen_score:g} is below rejected_score {self.rejected_score:g}: the "
                              f"scores contradict the preference (check which score belongs to which answer)",
                              reason="scores_contradict_preference")
        if self.margin is not None and self.margin < 0:
            raise SchemaError(f"margin {self.margin:g} is negative: it would say the rejected answer is the better one",
                              reason="scores_contradict_preference")

    @staticmethod
    def make_id(prompt: list[Message], chosen: str, rejected: str) -> str:
        """Content id: the same prompt and responses always get the same id."""
        return content_hash([m.to_dict() for m in prompt], chosen, rejected)[:16]

    @classmethod
    def create(cls, prompt: Any, chosen: str, rejected: str, **kw) -> "PreferencePair":
        """Build a pair, computing ``id`` from the content when not given."""
        msgs = as_messages(prompt)
        kw.setdefault("id", cls.make_id(msgs, chosen if isinstance(chosen, str) else "",
                                        rejected if isinstance(rejected, str) else ""))
        return cls(prompt=msgs, chosen=chosen, rejected=rejected, **kw)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "prompt": [m.to_dict() for m in self.prompt],
            "chosen": self.chosen,
            "rejected": self.rejected,
            "source": self.source,
            "source_id": self.source_id,
            "license": self.license,
            "meta": self.meta,
        }
        for k in ("chosen_score", "rejected_score", "margin"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "PreferencePair":
        if not isinstance(d, dict):
            raise SchemaError(f"a pair must be a JSON object, got {type(d).__name__}", reason="not_an_object")
        missing = [k for k in ("prompt", "chosen", "rejected") if k not in d]
        if missing:
            raise SchemaError(f"missing field(s) {missing}; a pair needs prompt, chosen and rejected",
                              reason="missing_field")
        meta = _meta_with_extra(d, {"id", "prompt", "chosen", "rejected", "source", "source_id", "license",
                                    "meta", "chosen_score", "rejected_score", "margin"})
        kw = {k: d[k] for k in ("source", "source_id", "license", "chosen_score", "rejected_score", "margin")
              if k in d and d[k] is not None}
        if "source_id" in kw and not isinstance(kw["source_id"], str):
            kw["source_id"] = _opt_str(kw["source_id"])
        if d.get("id") is not None:
            kw["id"] = _opt_str(d["id"])
        return cls.create(d["prompt"], d["chosen"], d["rejected"], meta=meta, **kw)

    def to_binary(self) -> list["BinaryExample"]:
        """Two binary examples: chosen (label 1) and rejected (label 0)."""
        common = dict(prompt=self.prompt, source=self.source, source_id=self.source_id,
                      license=self.license, pair_id=self.id)
        return [BinaryExample(response=self.chosen, label=1, id=f"{self.id}-c", **common),
                BinaryExample(response=self.rejected, label=0, id=f"{self.id}-r", **common)]


@dataclass
class RankList(_HasPrompt):
    """K responses to one prompt, best first. Ties are not representable: use pairs."""

    id: str
    prompt: list[Message]
    responses: list[str]
    source: str = "unknown"
    source_id: str = ""
    license: str = UNKNOWN_LICENSE
    meta: dict[str, Any] = field(default_factory=dict)
    scores: list[float] | None = None

    def __post_init__(self):
        self.prompt = as_messages(self.prompt)
        _check_prompt(self.prompt)
        if not isinstance(self.responses, list) or len(self.responses) < 2:
            raise SchemaError(f"a rank list needs at least 2 responses, got {_short(self.responses)}",
                              reason="too_few_responses")
        for i, r in enumerate(self.responses):
            _check_text(f"responses[{i}]", r)
        if len(set(self.responses)) != len(self.responses):
            raise SchemaError("a rank list contains the same response twice", reason="duplicate_responses")
        if self.scores is not None:
            if not isinstance(self.scores, list) or len(self.scores) != len(self.responses):
                raise SchemaError("'scores' must be a list with one number per response", reason="bad_scores")
            self.scores = [_opt_float(f"scores[{i}]", x) for i, x in enumerate(self.scores)]
            if None in self.scores:
                raise SchemaError("'scores' must hold numbers, not null", reason="bad_scores")
            # responses are best first (no ties), so their scores must fall: a row of graded answers in file
            # order (`jprefs data group` output) has the same shape, and read as a rank list its pairs would
            # prefer a worse-graded (or equally graded) answer over a better one
            up = next((i for i in range(1, len(self.scores)) if self.scores[i] >= self.scores[i - 1]), None)
            if up is not None:
                raise SchemaError(f"'scores' do not fall from responses[{up - 1}] ({self.scores[up - 1]:g}) to "
                                  f"responses[{up}] ({self.scores[up]:g}), but a rank list lists its responses "
                                  f"best first, without ties; for graded answers in any order (`jprefs data group` "
                                  f"output) make pairs with `jprefs data rm-pairs FILE --scores scores`",
                                  reason="scores_out_of_order")
        if not isinstance(self.id, str) or not self.id:
            raise SchemaError(f"field 'id' must be a non-empty string, got {_short(self.id)}", reason="bad_id")
        _check_strs(self, _PROVENANCE)
        _check_meta(self.meta)

    @classmethod
    def create(cls, prompt: Any, responses: list[str], **kw) -> "RankList":
        msgs = as_messages(prompt)
        kw.setdefault("id", content_hash([m.to_dict() for m in msgs], responses)[:16])
        return cls(prompt=msgs, responses=list(responses) if isinstance(responses, (list, tuple)) else responses, **kw)

    def to_pairs(self) -> list[PreferencePair]:
        """All K(K-1)/2 ordered pairs (better, worse); meta records the ranks and the group."""
        out = []
        K = len(self.responses)
        for i in range(K):
            for j in range(i + 1, K):
                meta = dict(self.meta)
                meta.update({"group": self.id, "chosen_rank": i, "rejected_rank": j, "group_size": K})
                kw = {}
                if self.scores is not None:
                    kw = {"chosen_score": self.scores[i], "rejected_score": self.scores[j]}
                out.append(PreferencePair.create(
                    self.prompt, self.responses[i], self.responses[j], id=f"{self.id}-{i}-{j}",
                    source=self.source, source_id=self.source_id, license=self.license, meta=meta, **kw))
        return out

    def to_binary(self) -> list["BinaryExample"]:
        """Each response once: the better half label 1, the worse half label 0, the middle response of an
        odd K left out (it is neither). Expanding to pairs first gave one response both labels (the
        second of three was chosen over the third and rejected against the first). Ids
        ``<id>-<rank>``, ``pair_id`` the rank list's id, ``meta`` the rank and the group size."""
        K = len(self.responses)
        half = K // 2
        common = dict(prompt=self.prompt, source=self.source, source_id=self.source_id, license=self.license,
                      pair_id=self.id)
        return [BinaryExample(response=self.responses[i], label=int(i < half), id=f"{self.id}-{i}",
                              meta={"rank": i, "group_size": K}, **common)
                for i in [*range(half), *range(K - half, K)]]

    def to_dict(self) -> dict[str, Any]:
        d = {"id": self.id, "prompt": [m.to_dict() for m in self.prompt], "responses": self.responses,
             "source": self.source, "source_id": self.source_id, "license": self.license, "meta": self.meta}
        if self.scores is not None:
            d["scores"] = self.scores
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "RankList":
        if not isinstance(d, dict) or "prompt" not in d or "responses" not in d:
            raise SchemaError("a rank list needs 'prompt' and 'responses'", reason="missing_field")
        kw = {k: d[k] for k in ("source", "source_id", "license", "scores") if d.get(k) is not None}
        # unknown fields in meta.extra, as PreferencePair.from_dict keeps them
        kw["meta"] = _meta_with_extra(d, {"id", "prompt", "responses", "source", "source_id", "license", "meta",
                                          "scores"})
        if d.get("id") is not None:
            kw["id"] = _opt_str(d["id"])
        if "source_id" in kw:
            kw["source_id"] = _opt_str(kw["source_id"])
        return cls.create(d["prompt"], d["responses"], **kw)


@dataclass
class BinaryExample:
    """(prompt, response, label): label 1 = chosen/good, 0 = rejected/bad."""

    prompt: list[Message] | None
    response: str
    label: int
    id: str = ""
    source: str = "unknown"
    source_id: str = ""
    license: str = UNKNOWN_LICENSE
    pair_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.prompt is not None:
            self.prompt = as_messages(self.prompt)
        _check_text("response", self.response)
        if isinstance(self.label, bool) or not isinstance(self.label, int) or self.label not in (0, 1):
            raise SchemaError(f"field 'label' must be 0 or 1, got {_short(self.label)}", reason="bad_label")
        _check_strs(self, _PROVENANCE if self.pair_id is None else _PROVENANCE + ("pair_id",))
        _check_meta(self.meta)
        if not self.id:
            self.id = content_hash([m.to_dict() for m in self.prompt or []], self.response, self.label)[:16]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id}
        if self.prompt is not None:
            d["prompt"] = [m.to_dict() for m in self.prompt]
            d["prompt_text"] = render_prompt(self.prompt)
        d.update({"response": self.response, "label": self.label, "source": self.source,
                  "source_id": self.source_id, "license": self.license})
        if self.pair_id:
            d["pair_id"] = self.pair_id
        if self.meta:
            d["meta"] = self.meta
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "BinaryExample":
        if not isinstance(d, dict):
            raise SchemaError("a binary example must be a JSON object", reason="not_an_object")
        resp = d.get("response", d.get("text"))
        if resp is None or "label" not in d:
            raise SchemaError("a binary example needs 'response' (or 'text') and 'label'", reason="missing_field")
        label = d["label"]
        if isinstance(label, str) and label.strip() in ("0", "1"):
            label = int(label)
        elif isinstance(label, float) and label in (0.0, 1.0):  # 1.0 from pandas / Parquet exports
            label = int(label)
        pair_id = d.get("pair_id")
        return cls(prompt=d.get("prompt"), response=resp, label=label, id=_opt_str(d.get("id")),
                   source=d.get("source") or "unknown", source_id=_opt_str(d.get("source_id")),
                   license=d.get("license") or UNKNOWN_LICENSE, pair_id=None if pair_id is None else _opt_str(pair_id),
                   meta=_meta_from(d))


def _opt_str(v: Any) -> str:
    """An id-like field: strings as they are, numbers as text, absent as empty."""
    if v is None:
        return ""
    if isinstance(v, (str, int)) and not isinstance(v, bool):
        return str(v)
    raise SchemaError(f"an id field must be a string or an integer, got {_short(v)}", reason="bad_id")


Record = PreferencePair | RankList


def record_from_dict(d: Any) -> Record:
    """A canonical record: a rank list if it has ``responses``, otherwise a pair; a row with both
    (``responses`` beside ``chosen`` / ``rejected``) is ambiguous and refused: read as a rank list, it
    could state the opposite preference of its own ``chosen`` / ``rejected``."""
    if isinstance(d, dict) and "responses" in d:
        both = [k for k in ("chosen", "rejected") if k in d]
        if both:
            raise SchemaError(f"the row has both 'responses' (a rank list) and {' and '.join(repr(k) for k in both)} "
                              f"(a pair): which preference it states is ambiguous; keep one of the two forms",
                              reason="ambiguous_record")
        return RankList.from_dict(d)
    return PreferencePair.from_dict(d)


def expand_pairs(records: Iterable[Record]) -> Iterator[PreferencePair]:
    """Yield pairs, expanding rank lists into their K(K-1)/2 pairs."""
    for r in records:
        if isinstance(r, RankList):
            yield from r.to_pairs()
        else:
            yield r
