"""``jprefs eval judge``: an LLM judge on any OpenAI-compatible server, pairwise or 1-10 grading.

Two modes, each a template file (``jprefs/resources/eval/judge/``, visible as ``eval/judge/`` in
the repository; ``--template FILE`` for your own):

- **pairwise** (``pairwise-ja``): the judge compares two answers in Japanese and writes
  ``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie). Every comparison is asked **in both orders** (X as A,
  then Y as A): a judge that favours a position then contradicts itself, and two orders that
  disagree count as a tie (MT-Bench's rule). Both raw verdicts are kept, and the share of
  comparisons where the two orders agree is reported as the *position consistency*.
- **grade** (``grade-ja``): the judge explains, then writes a 1-10 score as ``[[7]]``
  (MT-Bench's single-answer grading).

A judge answer that cannot be read (empty, cut off without a verdict, no ``[[...]]``, an unknown
verdict, two different verdicts on the verdict line, a score outside 1-10) is counted by reason and
excluded from the rates, with the counts beside them; it never stops the run. The verdict line is
the last line that states a verdict (the marker alone, or labelled 判定 / 評価 / Verdict ...), else
the last line with a marker, so a judge that restates the format before deciding is read right; every
marker on that line must be one valid verdict (``[[A]]``, or a score written as digits: ``[[1_0]]``,
``[[1e1]]``, ``[[1.0]]`` on an integer scale, ``[[A B]]`` are ``unknown_verdict``, never a guess).

A request the server refuses (HTTP 400 / 413 / 422, e.g. a prompt too long for the judge's context)
is that item's failure: counted (``requests_failed``, ``n_failed_*``), listed with the server's
message in ``rejects.jsonl`` and left out of the figures, and the run goes on. A refusal of the run's
setup instead (a sampling value or model name the server rejects) refuses every request: when the first
:data:`SETUP_PROBE` (8) requests the server answers in a run, sent as one wave, are all refused with the same
status and message (numbers and request ids aside), the run stops there with the message and the likely fix;
those are the run's shortest requests, so over-long prompts alone never stop it.
A server that is down, answers 5xx after the retries, or refuses the credentials stops the run too (finished
answers are kept, a rerun asks only the rest); a run whose every request failed exits with an error after
writing its outputs.

Inputs: ``--pairs FILE`` (canonical pairs, or any ``--source`` the data layer reads) judges chosen
against rejected and reports the judge's agreement with the labels (95% interval by prompt) beside
the longer-wins baseline on the same pairs; ``--samples FILE`` (the ``samples.jsonl`` of
``jprefs eval policy``) compares two policies (``--a``, ``--b``: win / tie / loss with intervals and a
sign test) or grades every answer (``--mode grade``: mean score per policy). Outputs in ``-o DIR``:
``judge.json`` (figures, unparseable counts by reason, judge model, template name and hash,
sampling), ``judgments.jsonl`` (one row per pair or comparison, ids included, so a reward model's
choices can be joined), ``report.md`` and ``report.html``.

Requests go through :class:`jprefs.translate.engines.openai.OpenAIEngine` (bounded concurrency,
retries with backoff and ``Retry-After``, the API key from an environment variable, never logged,
URLs redacted). Answers are cached on disk (``DIR/cache``, the translation cache's checkpoint
files) under a key of (the server's URL without credentials, judge model, template hash, the
rendered request, sampling: temperature, top_p, max_tokens, seed, stop): a rerun or an interrupted
run asks nothing twice, and another server (or model, or sampling) asks again. The server is checked
once, before the first request.

Python API (what ``jprefs eval policy --judge`` calls)::

    from jprefs.eval.judge import Judge, pairwise, grade

    judge = Judge("Qwen/Qwen2.5-7B-Instruct", "http://127.0.0.1:8000/v1", concurrency=8,
                  api_key_env="OPENAI_API_KEY", cache_dir="out/judge-cache")
    verdicts = pairwise(judge, prompts, answers_a, answers_b)   # list[Verdict], input order
    verdicts[0].winner            # "a", "b", "tie", or None (unparseable: .reasons; refused: .failed)
    grades = grade(judge, prompts, answers)                      # list[Grade]
    grades[0].score               # 1.0 .. 10.0, or None (grades[0].reason)
    judge.close()

``prompts`` are strings or chat conversations (lists of ``{"role", "content"}``); ``template``
(a path, ``builtin:NAME`` or a :class:`JudgeTemplate`) defaults to the built-in prompt of the mode.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from jprefs.config import arg_float
from jprefs.errors import ConfigError, DataError

BUILTIN = {"pairwise": "pairwise-ja", "grade": "grade-ja"}
MODES = ("pairwise", "grade")
# why a judge answer was not used; every one is counted in judge.json and the report
REASONS = ("empty", "truncated", "no_verdict", "unknown_verdict", "conflicting_verdicts", "score_out_of_range")
MARKER = re.compile(r"\[\[\s*([^\[\]\n]{1,20}?)\s*\]\]")          # [[A]], [[ 7 ]], [[7.5]]
PLACEHOLDER = re.compile(r"\{(question|answer_a|answer_b|answer)\}")
# a line that states the verdict: the marker alone (with punctuation), or led by a label such as 判定 / 評価 /
# Verdict / Rating; a later note that names another marker ("（注: [[A]]は…の記号）") is not one
LABELLED = re.compile(r"^\s*[#*【\[(（]*\s*(?:最終)?(?:判定|評価|結論|採点|点数|スコア|final verdict|verdict|rating|score)"
                      r"(?:\s*結果)?\s*[】\])）*]*\s*[:：は]", re.I)
CHUNK = 64  # requests per engine call (at least 4 x concurrency); each call's answers are one cache checkpoint
# a score is written in digits, nothing else: float() would read [[1_0]] and [[1e1]] as 10, [[٨]] as 8, [[nan]]
# (decimals as FastChat's MT-Bench reader takes them: a judge that writes [[7.5]] gave 7.5)
SCORE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
# full-width ASCII (Ａ, ８, ．) as a Japanese judge may type it -> ASCII; nothing else is folded
WIDE = {0xFF01 + i: 0x21 + i for i in range(94)}
# HTTP statuses that refuse one request, not the run: 400 (e.g. the prompt is longer than the judge's context),
# 413 (body too large), 422 (a body the server cannot process). 401/403/404 are the run's setup and stop it.
REFUSED = (400, 413, 422)
# a refusal that comes from the run's setup (a sampling value or a model name the server rejects, a malformed
# request) refuses every request: when the first SETUP_PROBE requests the server answers in a run are ALL refused
# with the same status and message (numbers and request ids aside, :func:`refusal_signature`), the run stops there
# instead of sending (and, against a paid API, paying for) thousands more. Refusals among successes stay per-item.
SETUP_PROBE = 8
CACHE_VERSION = "judge-v2"   # part of every cache key: v1 keys (no server URL) miss instead of being reused


def builtin_judge_dir() -> Path:
    return Path(str(resources.files("jprefs") / "resources" / "eval" / "judge"))


# ---------------------------------------------------------------- templates

@dataclass
class JudgeTemplate:
    """A judge prompt: ``system`` and ``user`` text with placeholders, and how to read the answer.

    ``verdicts`` (pairwise) maps the marker inside ``[[...]]`` to ``a``, ``b`` or ``tie``;
    ``score_min`` / ``score_max`` (grade) bound a valid score, written in digits (``[[7]]``, ``[[7.5]]``).
    ``hash`` covers everything that
    changes a request or its reading (not the comments), so it keys the cache.
    """

    name: str
    mode: str
    system: str
    user: str
    verdicts: dict[str, str] = field(default_factory=dict)
    score_min: float = 1.0
    score_max: float = 10.0
    description: str = ""
    path: str = ""

    @property
    def hash(self) -> str:
        from jprefs.data.schema import content_hash

        return content_hash(self.mode, self.system, self.user, self.verdicts, self.score_min, self.score_max)[:16]

    def render(self, question: str, **answers: str) -> list[dict[str, str]]:
        """The chat messages of one request; placeholders are filled in one pass, so text in an answer
        that looks like ``{answer_b}`` stays as it is.

        >>> t = load_judge_template("builtin:grade-ja")
        >>> t.render("1+1は？", answer="{question}")[-1]["content"].count("{question}")
        1
        """
        values = {"question": question, **answers}
        user = PLACEHOLDER.sub(lambda m: values.get(m[1], m[0]), self.user)
        return ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": user}]

    def parse(self, text: str, finish_reason: str = "stop") -> tuple[Any, str | None]:
        """``(value, None)`` or ``(None, reason)``; value: ``a``/``b``/``tie`` or a float score.

        The verdict line is the **last line that states a verdict** (the marker alone, or labelled
        判定 / 評価 / Verdict / Rating ...; the prompts ask for it on the last line), else the last line
        that holds a marker: a judge that first restates the format (``[[A]]、[[B]]、[[C]]のいずれか``)
        and then decides is read right. Every marker on that line must be one valid verdict: two
        different ones are ``conflicting_verdicts``, one this template does not know
        (``[[D]]``, ``[[A B]]``, ``[[1_0]]``) is ``unknown_verdict``, and neither falls back to an
        earlier line, so a malformed verdict is never replaced by a guess.

        >>> t = load_judge_template("builtin:pairwise-ja")
        >>> t.parse("Aの方が正確です。\\n[[A]]"), t.parse("[[A]]か[[B]]です"), t.parse("どちらも良い")
        (('a', None), (None, 'conflicting_verdicts'), (None, 'no_verdict'))
        >>> t.parse("形式は[[A]]、[[B]]、[[C]]です。\\nBの方が詳しい。\\n[[B]]"), t.parse("形式は[[A]]です\\n判定: [[A B]]")
        (('b', None), (None, 'unknown_verdict'))
        >>> g = load_judge_template("builtin:grade-ja")
        >>> g.parse("良い回答です。[[8]]"), g.parse("[[11]]"), g.parse(""), g.parse("[[1_0]]"), g.parse("[[８]]")
        ((8.0, None), (None, 'score_out_of_range'), (None, 'empty'), (None, 'unknown_verdict'), (8.0, None))

        A line that states the verdict wins over a later note that names another marker, and an answer
        cut off by ``max_tokens`` (``finish_reason="length"``) counts only when its last line states the verdict:

        >>> t.parse("最終判定: [[B]]\\n（注: [[A]]は回答Aを表す記号です）"), g.parse("評価: [[7]]\\n(1が最低、[[10]]が最高)")
        (('b', None), (7.0, None))
        >>> t.parse("回答Aは正確で、もし「[[A]]」と書くなら", "length"), t.parse("理由…\\n[[A]]", "length")
        ((None, 'truncated'), ('a', None))
        """
        if not text or not text.strip():
            return None, "empty"
        lines = [ln for ln in text.splitlines() if ln.strip()]
        marked = [ln for ln in lines if MARKER.search(ln)]
        stated = [ln for ln in marked if _states_verdict(ln)]
        if finish_reason == "length" and not (lines and MARKER.search(lines[-1]) and _states_verdict(lines[-1])):
            # cut off by max_tokens: a marker before the end is the judge thinking aloud ("もし[[A]]なら"),
            # not its verdict, which the prompts ask for last
            return None, "truncated"
        if not marked:
            return None, "no_verdict"
        line = stated[-1] if stated else marked[-1]
        values = [self.marker_value(m) for m in MARKER.findall(line)]
        if any(v is None for v in values):
            return None, "unknown_verdict"          # [[D]], [[良い]], [[1_0]]: not one this template knows
        found = set(values)
        if len(found) > 1:
            return None, "conflicting_verdicts"
        value = found.pop()
        if self.mode == "grade" and not (self.score_min <= value <= self.score_max):
            return None, "score_out_of_range"
        return value, None

    def marker_value(self, marker: str) -> Any:
        """What one ``[[...]]`` means: ``a``/``b``/``tie`` (pairwise) or a float score (grade), None when it
        is not exactly one valid verdict. Full-width letters and digits (``Ａ``, ``８``) read as ASCII.

        >>> g = load_judge_template("builtin:grade-ja")
        >>> [g.marker_value(m) for m in ("7", " 10 ", "1_0", "1e1", "1.0", "+8", "nan", "٨")]
        [7.0, 10.0, None, None, 1.0, None, None, None]
        """
        m = marker.strip()
        folded = m.translate(WIDE)
        if self.mode == "pairwise":
            return self.verdicts.get(m, self.verdicts.get(folded))
        return float(folded) if SCORE.fullmatch(folded) else None


def _states_verdict(line: str) -> bool:
    """The line is the marker alone (punctuation aside) or is labelled as the verdict (:data:`LABELLED`)."""
    rest = MARKER.sub("", line)
    return not re.sub(r"[\s\W_]", "", rest) or bool(LABELLED.match(line))


def load_judge_template(spec: str | Path) -> JudgeTemplate:
    """Load a judge template: ``builtin:NAME`` or a YAML file (keys: name, mode, description, system,
    user, verdicts, score_min, score_max).

    >>> t = load_judge_template("builtin:pairwise-ja")
    >>> t.mode, sorted(t.verdicts.values())
    ('pairwise', ['a', 'b', 'tie'])
    """
    import yaml

    spec = str(spec)
    if spec.startswith("builtin:"):
        name = spec.split(":", 1)[1]
        p = builtin_judge_dir() / f"{name}.yaml"
        if not p.is_file():
            names = sorted(x.stem for x in builtin_judge_dir().glob("*.yaml"))
            raise ConfigError(f"no built-in judge template {name!r}; available: {', '.join(names)}")
    else:
        p = Path(spec)
        if not p.is_file():
            raise DataError(f"judge template not found: {p}",
                            fix="give a YAML file (copy eval/judge/pairwise-ja.yaml and edit it) or builtin:NAME")
    try:
        d = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DataError(f"not a valid YAML judge template ({e})", path=str(p)) from None
    known = {"name", "mode", "description", "system", "user", "verdicts", "score_min", "score_max"}
    if not isinstance(d, dict) or set(d) - known:
        got = sorted(set(d) - known) if isinstance(d, dict) else type(d).__name__
        raise DataError(f"a judge template is a mapping with keys {sorted(known)}; got unknown {got}", path=str(p),
                        fix="see eval/judge/pairwise-ja.yaml for the layout")
    mode = d.get("mode")
    if mode not in MODES:
        raise DataError(f"'mode' must be one of {MODES}, got {mode!r}", path=str(p))
    user = str(d.get("user") or "")
    need = ("{question}", "{answer_a}", "{answer_b}") if mode == "pairwise" else ("{question}", "{answer}")
    missing = [x for x in need if x not in user]
    if missing:
        raise DataError(f"'user' of a {mode} template must contain {', '.join(need)}; missing {', '.join(missing)}",
                        path=str(p))
    verdicts: dict[str, str] = {}
    if mode == "pairwise":
        raw = d.get("verdicts") or {"A": "a", "B": "b", "C": "tie"}
        if not isinstance(raw, dict):
            raise DataError(f"'verdicts' must map markers to a, b and tie, got {raw!r}", path=str(p),
                            fix="verdicts: {A: a, B: b, C: tie}")
        verdicts = {str(k).strip(): str(v) for k, v in raw.items()}
        bracketed = [k for k in verdicts if not MARKER.fullmatch(f"[[{k}]]")]
        if bracketed:
            raise DataError(f"'verdicts' keys are what goes inside [[...]]: {bracketed} can never match", path=str(p),
                            fix="write A, not [[A]] (verdicts: {A: a, B: b, C: tie})")
        if set(verdicts.values()) != {"a", "b", "tie"}:
            raise DataError(f"'verdicts' must map markers to each of a, b, tie; got {verdicts}", path=str(p),
                            fix='verdicts: {A: a, B: b, C: tie}')
    try:
        lo, hi = float(d.get("score_min", 1)), float(d.get("score_max", 10))
    except (TypeError, ValueError):
        raise DataError("score_min and score_max must be numbers", path=str(p)) from None
    if not lo < hi:                             # (NaN fails too) every score would be out of range
        raise DataError(f"score_min {lo:g} must be below score_max {hi:g}", path=str(p))
    return JudgeTemplate(name=str(d.get("name") or p.stem), mode=mode, system=str(d.get("system") or ""), user=user,
                         verdicts=verdicts, score_min=lo, score_max=hi, description=str(d.get("description") or ""),
                         path=spec if spec.startswith("builtin:") else str(p))


# ---------------------------------------------------------------- results

@dataclass
class Verdict:
    """One pairwise comparison asked in both orders.

    ``first``: the verdict with answer a shown as A; ``second``: with b shown as A, translated back
    (``"a"`` always means answer a). ``winner``: ``a`` / ``b`` when both orders agree, ``tie`` when
    both say tie or they disagree, ``None`` when either answer was unparseable (``reasons``) or its
    request failed (``failed``: the server's message by order, ``{"first": "HTTP 400: ..."}``).
    """

    winner: str | None
    first: str | None
    second: str | None
    consistent: bool | None
    reasons: list[str]
    explanation_first: str
    explanation_second: str
    failed: dict[str, str] = field(default_factory=dict)


@dataclass
class Grade:
    """One graded answer: ``score`` in the template's range, or ``None`` and the ``reason`` (unreadable)
    or ``failed`` (the server's message: the request was refused, e.g. HTTP 400)."""

    score: float | None
    reason: str | None
    explanation: str
    failed: str | None = None


class Answer(NamedTuple):
    """The judge's answer to one request: its text and finish reason, or ``error`` (the server's
    message, credentials masked) when the server refused the request."""

    text: str
    finish_reason: str
    error: str | None = None


def combine(first: str | None, second: str | None) -> tuple[str | None, bool | None]:
    """(winner, consistent) of two orders, both given from answer a's side.

    >>> combine("a", "a"), combine("a", "b"), combine("tie", "tie"), combine("a", "tie"), combine("a", None)
    (('a', True), ('tie', False), ('tie', True), ('tie', False), (None, None))
    """
    if first is None or second is None:
        return None, None
    return (first, True) if first == second else ("tie", False)


SWAP = {"a": "b", "b": "a", "tie": "tie", None: None}


# ---------------------------------------------------------------- the judge

def endpoint_identity(base_url: str) -> str:
    """The judge server as the cache keys it: scheme, host, port, path and query, without credentials
    (no ``user:password@``, ``?api_key=`` masked), so two servers serving the same model name never
    share answers and no secret goes into a key.

    >>> endpoint_identity("http://u:SECRET@Judge.example:8000/v1/"), endpoint_identity("https://h/v1?api_key=K&v=2")
    ('http://judge.example:8000/v1', 'https://h:443/v1?api_key=***&v=2')
    """
    from urllib.parse import urlsplit

    from jprefs.redact import redact_url

    text = (base_url or "").strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:                  # not a URL the engine accepts; the text itself, credentials masked
        return redact_url(text)
    host = parts.hostname or ""
    if ":" in host:                     # IPv6
        host = f"[{host}]"
    port = port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    netloc = f"{host}:{port}" if port else host
    query = redact_url(f"?{parts.query}") if parts.query else ""
    return f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}{query}"


def refused_message(error: BaseException) -> str | None:
    """The server's message when ``error`` is one request refused (HTTP 400, 413, 422: a prompt longer
    than the judge's context, a body it cannot process), else None (the run's failure: the server down,
    5xx after the retries, 401/403/404). The engine's messages have credentials masked already; they are
    masked again here.

    >>> from jprefs.translate.engines import EngineError
    >>> refused_message(EngineError("http://h/v1/chat/completions answered HTTP 400: too long\\n  fix: check"))
    'HTTP 400: too long'
    >>> refused_message(EngineError("http://h/v1/chat/completions answered HTTP 401: no")) is None
    True
    """
    from jprefs.redact import redact_url
    from jprefs.translate.engines import EngineError

    if not isinstance(error, EngineError):
        return None
    text = str(error)
    status = getattr(error, "status_code", None)
    m = re.search(r"answered HTTP (\d{3})\b", text)
    if status is None and m:
        status = int(m[1])
    if status not in REFUSED:
        return None
    text = text.split("\n  fix:")[0]                  # the engine's fix ("check --model") is for the run
    if m:
        text = text[m.start() + len("answered "):]      # "HTTP 400: ..."; the URL is in judge.json
    return redact_url(text)[:500]


# request-specific parts of a server's message: request / completion ids, hex and UUID ids, then every number
# (token counts, positions). Each becomes "#", so a normalised message is never longer than the raw one
_REQUEST_ID = re.compile(r"\b(?:req|request|chatcmpl|cmpl|trace)[-_][A-Za-z0-9_-]+"
                         r"|\b[0-9a-fA-F]{8,}(?:-[0-9a-fA-F]{4,})*\b", re.I)


def refusal_signature(message: str) -> str:
    """What two refusals must share to count as the same one: the status, and the message with ids and
    numbers replaced by ``#``, its first 200 characters (the engine keeps 300 of the server's body, so the
    cut point moves with the numbers before it).

    >>> refusal_signature("HTTP 400: the request has 9001 tokens, max 8192 (id req_8f3a2b)")
    'HTTP 400: the request has # tokens, max # (id #)'
    """
    m = re.match(r"HTTP \d{3}\b", message)
    head, rest = (m[0], message[m.end():]) if m else ("", message)
    return head + re.sub(r"\d+", "#", _REQUEST_ID.sub("#", rest))[:200]


def setup_fix(message: str) -> str:
    """The likely fix of a refusal that every request of a run got (the server's ``message``)."""
    low = message.lower()
    if "model" in low and any(w in low for w in ("not exist", "not found", "unknown", "invalid model",
                                                   "does not support", "not supported")):
        return ("the judge model name must be one the server serves (GET BASE_URL/models lists them): "
                "--judge MODEL (`jprefs eval policy`: --judge MODEL)")
    if any(w in low for w in ("context length", "context window", "too long", "max_tokens", "max_completion_tokens",
                              "maximum context")):
        return ("make the requests fit the judge: a smaller --max-tokens (`jprefs eval policy`: --judge-max-tokens), "
                "or a longer context (`vllm serve ... --max-model-len N`)")
    if any(w in low for w in ("temperature", "top_p", "seed", "stop", "sampling")):
        return "a sampling value the server accepts (--temperature, --max-tokens; the server's message names it)"
    if message.startswith("HTTP 413"):
        return "the requests are larger than the server accepts: raise its body limit, or shorten the inputs"
    return ("fix what the server's message names (the model name, a sampling value, the template's messages) "
            "or check the server's log")


class Judge:
    """A judge model behind an OpenAI-compatible server, with an on-disk answer cache.

    ``template``: for :meth:`template_for` (a mode's built-in one when None). ``cache_dir``: where
    answers are kept (None: in memory for this object only). ``engine``: an object with
    ``generate``/``check``/``close`` to use instead of building an :class:`OpenAIEngine` (tests); it is
    given one conversation per ``generate`` call (``concurrency`` calls at once), so that a request the
    server refuses fails alone. ``setup_probe``: when the first that many requests the server answers
    (over the object's life) are all refused with the same status and message, :meth:`ask` stops with
    an :class:`~jprefs.translate.engines.EngineError` naming it (the run's setup, not its items, is
    wrong; :data:`SETUP_PROBE`); 0 never stops.
    """

    def __init__(self, model: str, base_url: str, template: str | Path | JudgeTemplate | None = None, *,
                 concurrency: int = 8, api_key_env: str = "OPENAI_API_KEY", max_tokens: int = 1024,
                 temperature: float = 0.0, seed: int | None = 0, cache_dir: str | Path | None = None,
                 max_retries: int = 6, timeout: float = 120.0, show_progress: bool = True, engine: Any = None,
                 setup_probe: int = SETUP_PROBE):
        from jprefs.redact import redact_url
        from jprefs.translate.engines import Sampling

        if not model:
            raise ConfigError("no judge model given\n  fix: --judge MODEL (the name the server serves, e.g. "
                              "Qwen/Qwen2.5-7B-Instruct)")
        self.model = model
        self.base_url = redact_url(base_url or "")
        self.endpoint = endpoint_identity(base_url or "")   # the server in every cache key, credentials left out
        self._template = template if isinstance(template, JudgeTemplate) else (
            load_judge_template(template) if template else None)
        self.sampling = Sampling(temperature=float(temperature), top_p=1.0, max_tokens=int(max_tokens), seed=seed)
        self.show_progress = show_progress
        if engine is None:
            from jprefs.translate.engines.openai import OpenAIEngine

            engine = OpenAIEngine(model=model, base_url=base_url, api_key_env=api_key_env, concurrency=concurrency,
                                  max_retries=max_retries, timeout=timeout)
        self.engine = engine
        self.concurrency = int(concurrency)
        self.api_key_env = api_key_env
        self._checked = False
        self._cache = None
        self._memory: dict[str, tuple[str, str]] = {}
        if cache_dir is not None:
            from jprefs.translate.cache import Cache

            self._cache = Cache(cache_dir)
        self.requests_sent = 0   # distinct requests that went to the server (failed ones included)
        self.cache_hits = 0      # requests answered without a new one: from the cache, or an identical request
        self.requests_failed = 0  # distinct requests the server refused (HTTP 400/413/422), of requests_sent
        self.setup_probe = int(setup_probe)
        # refusal_signature of each of the first setup_probe answered requests, None for an answer; once full
        # (or disabled) the run is past the check and every refusal is its item's failure
        self._probe: list[str | None] = []

    def template_for(self, mode: str) -> JudgeTemplate:
        t = self._template or load_judge_template(f"builtin:{BUILTIN[mode]}")
        if t.mode != mode:
            raise ConfigError(f"the judge template {t.name!r} ({t.path}) is a {t.mode} template, but {mode} was asked"
                              f"\n  fix: --mode {t.mode}, or a {mode} template (eval/judge/{BUILTIN[mode]}.yaml)")
        return t

    def describe(self) -> dict[str, Any]:
        """What judged: model, server (redacted), sampling (recorded in judge.json)."""
        return {"model": self.model, "base_url": self.base_url, "sampling": self.sampling.to_dict(),
                "concurrency": self.concurrency, "api_key_env": self.api_key_env}

    def check(self) -> None:
        """Check the server once (a judge that cannot be reached fails in seconds, with one clear
        error); later calls, and :meth:`ask`, do not check again."""
        if not self._checked and hasattr(self.engine, "check"):
            self.engine.check()
        self._checked = True

    def _key(self, messages: list[dict], template: JudgeTemplate) -> str:
        """Cache key of one request: everything that changes the judge's answer (the server, the model,
        the rendered messages, the sampling) and the template hash; never a credential."""
        from jprefs.data.schema import content_hash

        return content_hash(CACHE_VERSION, self.endpoint, self.model, template.hash, self.sampling.to_dict(),
                            messages)[:32]

    def _get(self, key: str):
        return self._cache.get(key) if self._cache is not None else self._memory.get(key)

    def ask(self, conversations: list[list[dict]], template: JudgeTemplate, desc: str = "judge") -> list[Answer]:
        """An :class:`Answer` per conversation, in input order: cached answers reused, the rest sent
        (each distinct request once), each chunk's answers cached before the next is sent.
        An empty answer is returned as ``""`` and not cached (a rerun asks again); a request the
        server refuses (HTTP 400/413/422) comes back with its ``error`` and is not cached either.
        Anything else that fails a request (server down, 5xx after the retries, 401) stops here,
        after the answers that did arrive are cached, as does a refusal of the run's setup (the first
        ``setup_probe`` answered requests all refused alike: a rerun after the fix asks only what is missing)."""
        from jprefs.progress import progress

        keys = [self._key(c, template) for c in conversations]
        todo: dict[str, list[dict]] = {}
        for k, c in zip(keys, conversations):
            if self._get(k) is None and k not in todo:
                todo[k] = c
        self.cache_hits += len(keys) - len(todo)     # every request not sent now: cached, or a duplicate
        got: dict[str, Answer] = {}
        if todo:
            self.check()                     # server down: one clear error in seconds, before any work
            items = list(todo.items())
            need = self.setup_probe - len(self._probe)
            if 0 < need < len(items):
                # the setup check asks the SHORTEST requests first: a prompt file sorted longest first would
                # otherwise stop a run on the over-long prompts' own context-length refusals
                size = [sum(len(str(m.get("content", ""))) for m in c) for _, c in items]
                first = set(sorted(range(len(items)), key=lambda j: (size[j], j))[:need])
                items = [items[j] for j in sorted(first)] + [x for j, x in enumerate(items) if j not in first]
            with progress(total=len(items), desc=desc, unit="req", disable=not self.show_progress) as bar:
                step = max(CHUNK, 4 * self.concurrency)   # keep every connection busy
                i = 0
                while i < len(items):
                    # until the setup check is decided, send only the requests it still needs, one wave: a setup
                    # the server refuses costs exactly setup_probe requests, not those that were in flight too
                    n = self.setup_probe - len(self._probe) if len(self._probe) < self.setup_probe else step
                    got.update(self._send(items[i:i + n], bar))
                    i += n
        out = []
        for k in keys:
            hit = self._get(k)
            out.append(Answer(*hit) if hit is not None else got[k])
        return out

    def _send(self, chunk: list[tuple[str, list[dict]]], bar) -> dict[str, Answer]:
        """Send one chunk, ``concurrency`` requests at a time, one request per engine call so that a
        refused request fails alone. Answers with text are cached (one checkpoint per chunk); a fatal
        error (or the setup's refusal, :meth:`_probe_refusal`) cancels the requests not yet sent, caches what
        arrived (those in flight included), then is raised."""
        from concurrent.futures import ThreadPoolExecutor, as_completed

        got: dict[str, Answer] = {}
        fatal: BaseException | None = None
        stopped, setup = False, None          # setup: the message every request of the run's setup is refused with
        sent = 0
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(chunk))) as pool:
            futures = {pool.submit(self._one, c): k for k, c in chunk}

            def stop(error: BaseException | None) -> None:
                nonlocal fatal, stopped
                if not stopped:
                    stopped, fatal = True, error
                    for other in futures:     # stop sending: the rest would fail the same way
                        other.cancel()

            for f in as_completed(futures):
                if f.cancelled():
                    continue
                sent += 1
                bar.update(1)
                try:
                    g = f.result()
                except Exception as e:  # noqa: BLE001 - sorted below: refused (this item) or fatal (the run)
                    refused = refused_message(e)
                    if refused is None:
                        stop(e)
                        continue
                    got[futures[f]] = Answer("", "error", refused)
                    if self._probe_refusal(refused):
                        setup = refused
                        stop(None)            # the error is made below, with this chunk's counts
                    continue
                got[futures[f]] = Answer(g.text or "", g.finish_reason)
                self._probe_refusal(None)
        self.requests_sent += sent
        self.requests_failed += sum(1 for a in got.values() if a.error is not None)
        # against a paid API, what arrived before a failure was paid for: keep it (a rerun asks only the rest)
        self._keep([(k, a) for k, a in got.items() if a.error is None])
        if fatal is not None:
            raise fatal
        if setup is not None:
            raise self._setup_error(setup)
        return got

    def _probe_refusal(self, refused: str | None) -> bool:
        """Note one answered request (``refused``: the server's message, None for an answer); True when it
        completes :data:`SETUP_PROBE` answered requests that were all refused alike (the run's setup)."""
        if len(self._probe) >= self.setup_probe:
            return False                 # past the check (or disabled): refusals are their items' failures
        self._probe.append(None if refused is None else refusal_signature(refused))
        return len(self._probe) == self.setup_probe and self._probe[0] is not None and len(set(self._probe)) == 1

    def _setup_error(self, refused: str):
        from jprefs.translate.engines import EngineError

        return EngineError(
            f"the judge server refused each of the first {self.setup_probe} requests it answered in this run the "
            f"same way, so the run's setup is wrong, not its items: stopped instead of sending the rest "
            f"({self.requests_sent} sent, {self.requests_failed} refused; the answers that did arrive are cached)\n"
            f"  server: {refused}\n  fix: {setup_fix(refused)}; then rerun the same command (cached answers "
            f"are not asked again)")

    def _one(self, conversation: list[dict]):
        return self.engine.generate([conversation], self.sampling)[0]

    def _keep(self, answered: list[tuple[str, Answer]]) -> None:
        """Cache ``(key, answer)`` pairs that have text (an empty one is asked again on a rerun)."""
        records = [(k, a.text, a.finish_reason) for k, a in answered if (a.text or "").strip()]
        if not records:
            return
        if self._cache is not None:
            self._cache.add(records, tag="judge")
        else:
            self._memory.update({k: (t, f) for k, t, f in records})

    def close(self) -> None:
        if hasattr(self.engine, "close"):
            self.engine.close()

    def __enter__(self) -> "Judge":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _question(p: Any) -> str:
    """The prompt as the judge sees it: a string as is, a conversation with role markers."""
    from jprefs.data.schema import render_prompt

    if isinstance(p, str):
        return p
    if hasattr(p, "chat"):            # an EvalPrompt
        return render_prompt(p.chat())
    return render_prompt(p)


def pairwise(judge: Judge, prompts: Sequence[Any], answers_a: Sequence[str], answers_b: Sequence[str],
             desc: str = "judge pairwise") -> list[Verdict]:
    """Compare ``answers_a[i]`` with ``answers_b[i]`` for each prompt, in both orders.

    >>> v = pairwise(judge, ["質問"], ["回答1"], ["回答2"])   # doctest: +SKIP
    >>> v[0].winner, v[0].first, v[0].second, v[0].consistent   # doctest: +SKIP
    ('a', 'a', 'a', True)
    """
    if not len(prompts) == len(answers_a) == len(answers_b):
        raise ValueError(f"{len(prompts)} prompts, {len(answers_a)} answers a, {len(answers_b)} answers b")
    t = judge.template_for("pairwise")
    qs = [_question(p) for p in prompts]
    convs = [t.render(q, answer_a=a, answer_b=b) for q, a, b in zip(qs, answers_a, answers_b)]
    convs += [t.render(q, answer_a=b, answer_b=a) for q, a, b in zip(qs, answers_a, answers_b)]
    answers = judge.ask(convs, t, desc=desc)
    n = len(qs)
    out = []
    for i in range(n):
        a1, a2 = answers[i], answers[n + i]
        # a refused request has no verdict and no unreadable reason: it is counted as failed, apart
        v1, r1 = t.parse(a1.text, a1.finish_reason) if a1.error is None else (None, None)
        v2, r2 = t.parse(a2.text, a2.finish_reason) if a2.error is None else (None, None)
        second = SWAP[v2]   # the second order showed b as A: its "a" means answer b
        winner, consistent = combine(v1, second)
        failed = {side: a.error for side, a in (("first", a1), ("second", a2)) if a.error is not None}
        out.append(Verdict(winner, v1, second, consistent, [r for r in (r1, r2) if r], a1.text, a2.text, failed))
    return out


def grade(judge: Judge, prompts: Sequence[Any], answers: Sequence[str], desc: str = "judge grade") -> list[Grade]:
    """Grade each answer 1-10 (the template's range).

    >>> g = grade(judge, ["質問"], ["回答"])   # doctest: +SKIP
    >>> g[0].score, g[0].reason                # doctest: +SKIP
    (7.0, None)
    """
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts, {len(answers)} answers")
    t = judge.template_for("grade")
    convs = [t.render(_question(p), answer=a) for p, a in zip(prompts, answers)]
    out = []
    for a in judge.ask(convs, t, desc=desc):
        if a.error is not None:
            out.append(Grade(None, None, "", a.error))
            continue
        s, r = t.parse(a.text, a.finish_reason)
        out.append(Grade(s, r, a.text))
    return out


def unparseable_counts(reasons: Sequence[str | None]) -> dict[str, int]:
    """``{reason: count}`` over every reason, zeros included (a fixed layout for judge.json)."""
    c = Counter(r for r in reasons if r)
    return {r: int(c.get(r, 0)) for r in REASONS} | {r: int(n) for r, n in c.items() if r not in REASONS}


def pairwise_summary(verdicts: Sequence[Verdict], groups: Sequence[Any]) -> dict[str, Any]:
    """Figures of pairwise verdicts from answer a's side, intervals resampled by ``groups`` (prompt ids).

    ``win_tie_loss``: :func:`jprefs.eval.stats.win_tie_loss` of a against b over the readable
    verdicts (win = a preferred in both orders); ``a_decisive``: the share of a's wins among the
    verdicts that are not ties; ``position_consistency``: the share of readable comparisons whose two
    orders agree; ``first_position_rate``: over the ``n_judged`` comparisons (both orders readable), of
    their decisive single-order verdicts (``first_position_n`` of the ``2 * n_judged``; ties left out), the
    share that picked whatever was shown first (0.5: no position bias, 1.0: always "A"); a comparison with
    an unreadable or failed order adds nothing to it. ``n = n_judged + n_unparseable + n_failed``
    (``n_failed``: a request of the comparison was refused); ``unparseable``: answers by reason.

    >>> v = [Verdict("a", "a", "a", True, [], "", ""), Verdict("tie", "a", "b", False, [], "", ""),
    ...      Verdict(None, "a", None, None, ["empty"], "", "")]
    >>> s = pairwise_summary(v, ["p1", "p2", "p3"])
    >>> s["win_tie_loss"]["wins"], s["position_consistency"], s["first_position_rate"], s["first_position_n"]
    (1, 0.5, 0.75, 4)
    """
    from jprefs.eval.stats import bootstrap_ci, win_tie_loss

    if len(verdicts) != len(groups):
        raise ValueError(f"{len(verdicts)} verdicts, {len(groups)} groups")
    ok = [i for i, v in enumerate(verdicts) if v.winner is not None]
    n_failed = sum(1 for v in verdicts if v.failed)
    outcomes = [{"a": 1, "tie": 0, "b": -1}[verdicts[i].winner] for i in ok]
    g = [groups[i] for i in ok]
    out: dict[str, Any] = {"n": len(verdicts), "n_judged": len(ok),
                           "n_unparseable": len(verdicts) - len(ok) - n_failed, "n_failed": n_failed,
                           "win_tie_loss": win_tie_loss(outcomes, g) if ok else {"n": 0}}
    out["position_consistency"] = sum(verdicts[i].consistent for i in ok) / len(ok) if ok else None
    # on the judged comparisons only, like position_consistency: a single readable order of a comparison
    # whose other order was unreadable would count a judge's lone "A" that the swap could not check.
    # v.second is given from a's side; SWAP turns it back into "what the judge picked as shown"
    shown = [x for i in ok for x in (verdicts[i].first, SWAP[verdicts[i].second]) if x in ("a", "b")]
    out["first_position_rate"] = sum(x == "a" for x in shown) / len(shown) if shown else None
    out["first_position_n"] = len(shown)
    dec = [(o, gg) for o, gg in zip(outcomes, g) if o != 0]
    if dec:
        est, ci = bootstrap_ci([float(o > 0) for o, _ in dec], [gg for _, gg in dec])
        out["a_decisive"], out["a_decisive_ci95"] = est, list(ci)
    else:
        out["a_decisive"], out["a_decisive_ci95"] = None, None
    out["n_decisive"] = len(dec)
    if ok:   # ties count 1/2: comparable with a length baseline that counts equal lengths 1/2
        est, ci = bootstrap_ci([(o + 1) / 2 for o in outcomes], g)
        out["a_ties_half"], out["a_ties_half_ci95"] = est, list(ci)
    out["unparseable"] = unparseable_counts([r for v in verdicts for r in v.reasons])
    return out


def grade_summary(grades: Sequence[Grade], groups: Sequence[Any]) -> dict[str, Any]:
    """Mean score of the readable grades with a 95% interval resampled by ``groups``.

    ``n_answers = n_graded + n_unparseable + n_failed`` (``n_failed``: the request was refused).

    >>> s = grade_summary([Grade(8.0, None, ""), Grade(None, "empty", ""), Grade(6.0, None, "")], ["p", "q", "r"])
    >>> s["mean_score"], s["n_graded"], s["unparseable"]["empty"]
    (7.0, 2, 1)
    """
    from jprefs.eval.stats import bootstrap_ci

    if len(grades) != len(groups):
        raise ValueError(f"{len(grades)} grades, {len(groups)} groups")
    ok = [i for i, x in enumerate(grades) if x.score is not None]
    n_failed = sum(1 for x in grades if x.failed is not None)
    out: dict[str, Any] = {"n_answers": len(grades), "n_graded": len(ok),
                           "n_unparseable": len(grades) - len(ok) - n_failed, "n_failed": n_failed,
                           "mean_score": None, "mean_score_ci95": None}
    if ok:
        est, ci = bootstrap_ci([grades[i].score for i in ok], [groups[i] for i in ok])
        out["mean_score"], out["mean_score_ci95"] = est, list(ci)
    out["unparseable"] = unparseable_counts([x.reason for x in grades])
    return out


# ---------------------------------------------------------------- inputs

def load_pairs_input(path: str, source: str = "jprefs", limit: int = 0):
    """(pairs, rejects entries of the unreadable input rows) from a canonical file or any ``--source``
    the data layer reads."""
    from jprefs.data.io import check_input, iter_records, reject_entry
    from jprefs.data.schema import expand_pairs

    check_input(path)
    rejects: list[dict] = []
    if source in ("jprefs", "canonical"):
        records = []
        for row, rec in iter_records(path):
            if rec is None:
                rejects.append(reject_entry(row, row.reason or "invalid_record"))
            else:
                records.append(rec)
    else:
        from jprefs.data.adapters import convert

        res = convert(path, source=source, strict=False)
        records, rejects = list(res.records), list(res.rejects)
    pairs = list(expand_pairs(records))
    if limit:
        pairs = pairs[:limit]
    if not pairs:
        raise DataError(f"no usable preference pairs ({len(rejects)} unreadable rows)", path=path,
                        fix="give a file of pairs (prompt, chosen, rejected); `jprefs data convert` makes one, "
                            "or name its layout with --source")
    return pairs, rejects


def load_samples(path: str) -> list[dict]:
    """Rows of a ``samples.jsonl`` (``jprefs eval policy``); a bad row stops with its line and the fix."""
    from jprefs.data.io import check_input, iter_jsonl

    check_input(path)
    rows: list[dict] = []
    seen: dict[tuple, int] = {}
    need = {"prompt_id": str, "prompt": str, "policy": str, "response": str}
    for row in iter_jsonl(path):
        if row.error:
            raise DataError(row.error, path=path, line=row.locator, fix="a samples.jsonl of `jprefs eval policy`")
        d = row.data
        for k, typ in need.items():
            if not isinstance(d.get(k), typ):
                raise DataError(f"field {k!r} must be a string, got {type(d.get(k)).__name__}", path=path,
                                line=row.locator, fix="a samples.jsonl of `jprefs eval policy` (fields prompt_id, "
                                                      "prompt, policy, sample, response)")
        if not isinstance(d.get("sample", 0), int):
            raise DataError("field 'sample' must be an integer", path=path, line=row.locator)
        key = (d["policy"], d["prompt_id"], d.get("sample", 0))
        if key in seen:
            raise DataError(f"policy {key[0]!r}, prompt_id {key[1]!r}, sample {key[2]} appears twice (first on line "
                            f"{seen[key]})", path=path, line=row.locator,
                            fix="one row per (policy, prompt_id, sample); give two runs of a policy different labels")
        seen[key] = row.locator
        rows.append(d)
    if not rows:
        raise DataError("the samples file is empty", path=path, fix="run `jprefs eval policy ... -o DIR` first")
    return rows


# ---------------------------------------------------------------- CLI

EPILOG = """examples:
  # serve an open judge model (on a machine with a GPU), then judge a pair file against its labels
  vllm serve Qwen/Qwen2.5-7B-Instruct --port 8000
  jprefs eval judge --pairs out/rm/eval_split.jsonl --judge Qwen/Qwen2.5-7B-Instruct \\
      --judge-base-url http://127.0.0.1:8000/v1 -o out/judge-pairs
  # two policies of `jprefs eval policy`, win/tie/loss of ppo against sft, both orders asked
  jprefs eval judge --samples out/eval-ppo/samples.jsonl --a ppo --b sft \\
      --judge Qwen/Qwen2.5-7B-Instruct --judge-base-url http://127.0.0.1:8000/v1 -o out/judge-ppo
  # grade every answer 1-10, a hosted API with its key in an environment variable
  OPENAI_API_KEY=... jprefs eval judge --samples out/eval-ppo/samples.jsonl --mode grade \\
      --judge gpt-4o --judge-base-url https://api.openai.com/v1 -o out/judge-grade
  # your own prompt (copy eval/judge/pairwise-ja.yaml and edit it)
  jprefs eval judge --pairs pairs.jsonl --template my-judge.yaml --judge M --judge-base-url URL -o out/j

A rerun of the same command reuses the cached answers in DIR/cache and sends only what is missing."""


def configure_judge(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    g = p.add_argument_group("input (one of)")
    g.add_argument("--pairs", metavar="FILE", help="preference pairs: judge chosen against rejected and report "
                                                   "agreement with the labels")
    g.add_argument("--source", default="jprefs", help="layout of --pairs for the data layer (default: jprefs, "
                                                      "the canonical pairs; e.g. hh-rlhf, generic)")
    g.add_argument("--samples", metavar="FILE", help="samples.jsonl of `jprefs eval policy`")
    g.add_argument("--a", metavar="NAME", help="policy A in --samples (default: the first policy in the file)")
    g.add_argument("--b", metavar="NAME", help="policy B in --samples (default: the baseline, else the last policy)")
    j = p.add_argument_group("judge")
    j.add_argument("--judge", metavar="MODEL", required=True, help="the judge model's name on the server")
    j.add_argument("--judge-base-url", metavar="URL", required=True,
                   help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    j.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR",
                   help="environment variable holding the API key (default: OPENAI_API_KEY; never logged)")
    j.add_argument("--mode", choices=MODES, default="pairwise", help="pairwise (both orders) or grade (1-10)")
    j.add_argument("--template", metavar="FILE", help="a judge template YAML (default: the built-in one of the mode)")
    j.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    j.add_argument("--max-tokens", type=int, default=1024, help="tokens the judge may write (default 1024)")
    j.add_argument("--temperature", type=arg_float(">= 0"), default=0.0, help="judge sampling temperature (default 0)")
    j.add_argument("--max-retries", type=int, default=6, help="retries of a failed request (default 6)")
    p.add_argument("--limit", type=int, default=0, help="judge only the first N pairs / prompts (0: all)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")


def run_judge(args) -> int:
    from jprefs.runlock import RunLock

    if bool(args.pairs) == bool(args.samples):
        raise ConfigError("give exactly one of --pairs FILE or --samples FILE\n"
                          "  fix: jprefs eval judge --pairs pairs.jsonl ... (jprefs eval judge --help)")
    if args.limit < 0 or args.concurrency < 1 or args.max_tokens < 1:
        raise ConfigError("--limit must be >= 0, --concurrency and --max-tokens >= 1")
    # read the inputs before touching the output folder or the server: a bad file costs nothing
    if args.pairs:
        data = load_pairs_input(args.pairs, args.source, args.limit)
    else:
        data = load_samples(args.samples)
        if args.mode == "pairwise":
            args.a, args.b = _pick_policies(data, args.a, args.b, args.samples)
    template = load_judge_template(args.template) if args.template else None
    if template is not None and template.mode != args.mode:
        raise ConfigError(f"--template {args.template} is a {template.mode} template, but --mode is {args.mode}\n"
                          f"  fix: --mode {template.mode}")
    out = Path(args.output)
    with RunLock(out, "jprefs eval judge"):
        judge = Judge(args.judge, args.judge_base_url, template, concurrency=args.concurrency,
                      api_key_env=args.api_key_env, max_tokens=args.max_tokens, temperature=args.temperature,
                      cache_dir=out / "cache", max_retries=args.max_retries)
        try:
            if args.pairs:
                result = _judge_pairs(judge, args, *data)
            else:
                result = _judge_samples(judge, args, data)
        finally:
            judge.close()
        _write(out, judge, args, *result)
    return 0


def _judge_pairs(judge: Judge, args, pairs, input_rejects: list[dict]):
    from jprefs.eval.stats import bootstrap_ci, win_tie_loss

    prompts = [p.prompt for p in pairs]
    groups = [p.prompt_key for p in pairs]
    chosen, rejected = [p.chosen for p in pairs], [p.rejected for p in pairs]
    longer = ["chosen" if len(c) > len(r) else "rejected" if len(r) > len(c) else "equal"
              for c, r in zip(chosen, rejected)]
    length_win = {"chosen": 1.0, "rejected": 0.0, "equal": 0.5}
    name = {"a": "chosen", "b": "rejected", "tie": "tie", None: None}
    rows, reasons, failures = [], [], []
    fig: dict[str, Any] = {"n_pairs": len(pairs), "input_rows_rejected": len(input_rejects)}
    if args.mode == "pairwise":
        vs = pairwise(judge, prompts, chosen, rejected)
        order = {"first": "chosen_first", "second": "rejected_first"}
        for p, v, lg in zip(pairs, vs, longer):
            ids = {"pair_id": p.id, "prompt_id": p.prompt_key}
            failed = {order[k]: e for k, e in v.failed.items()}
            rows.append({**ids, "source": p.source, "verdict": name[v.winner],
                         "chosen_first": name[v.first], "rejected_first": name[v.second],
                         "consistent": v.consistent, "unparseable": v.reasons, "failed": failed, "longer": lg,
                         "explanation_chosen_first": v.explanation_first,
                         "explanation_rejected_first": v.explanation_second})
            reasons += v.reasons
            failures += [_failure(ids, k, e) for k, e in failed.items()]
        sm = pairwise_summary(vs, groups)
        ok = [i for i, v in enumerate(vs) if v.winner is not None]
        wtl = sm["win_tie_loss"]
        fig.update({"requests": 2 * len(pairs), "n_judged": sm["n_judged"], "n_unparseable_pairs": sm["n_unparseable"],
                    "n_failed_pairs": sm["n_failed"], "position_consistency": sm["position_consistency"],
                    "first_position_rate": sm["first_position_rate"], "first_position_n": sm["first_position_n"]})
        if ok:   # a = chosen: a judge that prefers chosen agrees with the label
            fig["agreement"], fig["agreement_ci95"] = wtl["win"], wtl["win_ci95"]
            fig["tie_rate"], fig["tie_rate_ci95"] = wtl["tie"], wtl["tie_ci95"]
            fig["prefers_rejected"], fig["prefers_rejected_ci95"] = wtl["loss"], wtl["loss_ci95"]
            fig["agreement_ties_half"], fig["agreement_ties_half_ci95"] = sm["a_ties_half"], sm["a_ties_half_ci95"]
            fig["agreement_decisive"], fig["agreement_decisive_ci95"] = sm["a_decisive"], sm["a_decisive_ci95"]
            fig["n_decisive"] = sm["n_decisive"]
            fig["sign_test_p"] = wtl["sign_test_p"]
    else:
        gs = grade(judge, prompts * 2, chosen + rejected)
        n = len(pairs)
        for i, p in enumerate(pairs):
            gc, gr = gs[i], gs[n + i]
            ids = {"pair_id": p.id, "prompt_id": p.prompt_key}
            failed = {k: x.failed for k, x in (("chosen", gc), ("rejected", gr)) if x.failed is not None}
            rows.append({**ids, "source": p.source,
                         "score_chosen": gc.score, "score_rejected": gr.score,
                         "unparseable": [r for r in (gc.reason, gr.reason) if r], "failed": failed,
                         "longer": longer[i], "explanation_chosen": gc.explanation,
                         "explanation_rejected": gr.explanation})
            reasons += [r for r in (gc.reason, gr.reason) if r]
            failures += [_failure(ids, k, e) for k, e in failed.items()]
        ok = [i for i in range(n) if gs[i].score is not None and gs[n + i].score is not None]
        n_failed = sum(1 for r in rows if r["failed"])
        fig["requests"] = 2 * n
        fig["n_judged"] = len(ok)
        fig["n_unparseable_pairs"] = n - len(ok) - n_failed
        fig["n_failed_pairs"] = n_failed
        g = [groups[i] for i in ok]
        if ok:
            outcomes = [(gs[i].score > gs[n + i].score) - (gs[i].score < gs[n + i].score) for i in ok]
            wtl = win_tie_loss(outcomes, g)
            fig["agreement"], fig["agreement_ci95"] = wtl["win"], wtl["win_ci95"]
            fig["tie_rate"], fig["tie_rate_ci95"] = wtl["tie"], wtl["tie_ci95"]
            fig["prefers_rejected"], fig["prefers_rejected_ci95"] = wtl["loss"], wtl["loss_ci95"]
            est, ci = bootstrap_ci([(o + 1) / 2 for o in outcomes], g)
            fig["agreement_ties_half"], fig["agreement_ties_half_ci95"] = est, list(ci)
            for side, off in (("chosen", 0), ("rejected", n)):   # on the pairs with both scores readable
                sm = grade_summary([gs[off + i] for i in ok], g)
                fig[f"mean_score_{side}"], fig[f"mean_score_{side}_ci95"] = sm["mean_score"], sm["mean_score_ci95"]
    # the longer-wins baseline on exactly the pairs the judge's figures use, and on all pairs
    if ok:
        est, ci = bootstrap_ci([length_win[longer[i]] for i in ok], [groups[i] for i in ok])
        fig["length_baseline_accuracy"], fig["length_baseline_ci95"] = est, list(ci)
    fig["length_baseline_accuracy_all_pairs"] = sum(length_win[x] for x in longer) / len(longer)
    fig["unparseable"] = unparseable_counts(reasons)
    fig["requests_failed"] = len(failures)
    fig["_rejects"] = input_rejects + failures   # written to DIR/rejects.jsonl, not into judge.json
    return "pairs", fig, rows


def _failure(ids: dict, request: str, error: str) -> dict:
    """The rejects.jsonl entry of one request the judge server refused."""
    return {**ids, "request": request, "reason": "judge_request_failed", "error": error}


def _pick_policies(rows: list[dict], a: str | None, b: str | None, path: str) -> tuple[str, str]:
    names = list(dict.fromkeys(r["policy"] for r in rows))
    base = next((r["policy"] for r in rows if r.get("baseline") is True), None)
    for flag, v in (("--a", a), ("--b", b)):
        if v is not None and v not in names:
            raise DataError(f"{flag} {v!r} is not a policy in this file; it has: {', '.join(names)}", path=path,
                            fix=f"{flag} NAME with one of those names")
    if b is None:
        b = base if base is not None and base != a else names[-1]
    if a is None:
        a = next((x for x in names if x != b), None)
    if a is None or a == b:
        raise DataError(f"need two different policies to compare, the file has: {', '.join(names)}", path=path,
                        fix="--a NAME --b NAME, or --mode grade to grade the answers of one policy")
    return a, b


def _judge_samples(judge: Judge, args, rows: list[dict]):
    order = list(dict.fromkeys(r["prompt_id"] for r in rows))
    if args.limit:
        keep = set(order[:args.limit])
        rows = [r for r in rows if r["prompt_id"] in keep]
    out_rows, reasons, failures = [], [], []
    fig: dict[str, Any] = {"n_prompts": len({r["prompt_id"] for r in rows})}
    if args.mode == "grade":
        gs = grade(judge, [r["prompt"] for r in rows], [r["response"] for r in rows])
        for r, g in zip(rows, gs):
            ids = {"prompt_id": r["prompt_id"], "sample": r.get("sample", 0), "policy": r["policy"]}
            out_rows.append({**ids, "score": g.score, "unparseable": [g.reason] if g.reason else [],
                             "failed": g.failed, "explanation": g.explanation})
            reasons += [g.reason] if g.reason else []
            failures += [_failure(ids, "grade", g.failed)] if g.failed is not None else []
        fig["requests"] = len(rows)
        per = {}
        for name in dict.fromkeys(r["policy"] for r in rows):
            idx = [i for i, r in enumerate(rows) if r["policy"] == name]
            sm = grade_summary([gs[i] for i in idx], [rows[i]["prompt_id"] for i in idx])
            per[name] = {k: v for k, v in sm.items() if k != "unparseable"}
        fig["policies"] = per
    else:
        a, b = _pick_policies(rows, args.a, args.b, args.samples)
        ra = {(r["prompt_id"], r.get("sample", 0)): r for r in rows if r["policy"] == a}
        rb = {(r["prompt_id"], r.get("sample", 0)): r for r in rows if r["policy"] == b}
        keys = [k for k in ra if k in rb]
        if not keys:
            raise DataError(f"policies {a!r} and {b!r} share no (prompt_id, sample)", path=args.samples,
                            fix="compare policies generated on the same prompts by one `jprefs eval policy` run")
        vs = pairwise(judge, [ra[k]["prompt"] for k in keys], [ra[k]["response"] for k in keys],
                      [rb[k]["response"] for k in keys])
        label = {"a": a, "b": b, "tie": "tie", None: None}
        order = {"first": "a_first", "second": "b_first"}
        for k, v in zip(keys, vs):
            ids = {"prompt_id": k[0], "sample": k[1], "a": a, "b": b}
            failed = {order[x]: e for x, e in v.failed.items()}
            out_rows.append({**ids, "winner": label[v.winner],
                             "outcome": {"a": 1, "tie": 0, "b": -1, None: None}[v.winner],
                             "a_first": label[v.first], "b_first": label[v.second], "consistent": v.consistent,
                             "unparseable": v.reasons, "failed": failed, "explanation_a_first": v.explanation_first,
                             "explanation_b_first": v.explanation_second})
            reasons += v.reasons
            failures += [_failure(ids, x, e) for x, e in failed.items()]
        sm = pairwise_summary(vs, [k[0] for k in keys])
        fig.update({"a": a, "b": b, "n_comparisons": len(keys), "requests": 2 * len(keys), "n_judged": sm["n_judged"],
                    "n_unparseable_comparisons": sm["n_unparseable"], "n_failed_comparisons": sm["n_failed"],
                    "unmatched_rows": len(ra) + len(rb) - 2 * len(keys),
                    "position_consistency": sm["position_consistency"],
                    "first_position_rate": sm["first_position_rate"], "first_position_n": sm["first_position_n"],
                    "win_tie_loss": sm["win_tie_loss"]})
    fig["unparseable"] = unparseable_counts(reasons)
    fig["requests_failed"] = len(failures)
    fig["_rejects"] = failures
    return "samples", fig, out_rows


def _write(out: Path, judge: Judge, args, kind: str, fig: dict, rows: list[dict]) -> None:
    from jprefs.data.io import atomic_write_json, eprint, write_jsonl

    t = judge.template_for(args.mode)
    rejects = fig.pop("_rejects", [])
    if rejects:
        write_jsonl(out / "rejects.jsonl", rejects)
    elif (out / "rejects.jsonl").exists():
        (out / "rejects.jsonl").unlink()        # an earlier run's, on another input
    failed = [r for r in rejects if r.get("reason") == "judge_request_failed"]
    warnings = []
    if failed:
        share = len(failed) / max(fig["requests"], 1)
        warnings.append(f"{len(failed)} of {fig['requests']} judge requests ({share:.0%}) failed: the server refused "
                        f"them (first: {failed[0]['error'][:200]}); they are listed in rejects.jsonl and left out of "
                        f"every figure" + (" (MOST requests failed: the figures rest on few items)" if share >= 0.5
                                            else ""))
    summary = {"command": "jprefs eval judge", "input": kind, "mode": args.mode,
               "pairs": args.pairs, "source": args.source if args.pairs else None, "samples": args.samples,
               "limit": args.limit, "judge": judge.describe(),
               "template": {"name": t.name, "hash": t.hash, "path": t.path},
               "requests_sent": judge.requests_sent, "cache_hits": judge.cache_hits, **fig, "warnings": warnings}
    write_jsonl(out / "judgments.jsonl", rows)
    atomic_write_json(out / "judge.json", summary)
    _report(out, summary, rows)
    bad = sum(fig["unparseable"].values())
    for w in warnings:
        eprint(f"jprefs eval judge: WARNING: {w}")
    eprint(f"jprefs eval judge: {len(rows)} judgments -> {out}/judge.json, judgments.jsonl, report.md, report.html "
           f"({judge.requests_sent} requests sent, {judge.cache_hits} from the cache, {bad} unparseable answers, "
           f"{len(failed)} failed requests)")
    if fig["requests"] and len(failed) == fig["requests"]:
        from jprefs.translate.engines import EngineError

        raise EngineError(f"all {fig['requests']} judge requests failed; nothing was judged (first: "
                          f"{failed[0]['error'][:300]}; all are in {out}/rejects.jsonl)\n  fix: make the requests fit "
                          f"the judge (a longer context: `vllm serve ... --max-model-len N`, or a smaller --max-tokens), "
                          f"then rerun the same command")
    headline = _headline(summary)
    if headline:
        print(headline)


def _headline(s: dict) -> str:
    from jprefs.eval.report import fmt_ci

    if s["input"] == "pairs" and "agreement" in s:
        return (f"agreement with the labels {fmt_ci(s['agreement'], s['agreement_ci95'])} "
                f"(ties half {fmt_ci(s['agreement_ties_half'])}); longer-wins baseline "
                f"{fmt_ci(s.get('length_baseline_accuracy'))} on the same {s['n_judged']} pairs")
    if s["input"] == "samples" and s["mode"] == "pairwise" and s["win_tie_loss"].get("n"):
        w = s["win_tie_loss"]
        return (f"{s['a']} vs {s['b']}: win {fmt_ci(w['win'], w['win_ci95'])}, tie {fmt_ci(w['tie'])}, "
                f"loss {fmt_ci(w['loss'])}, sign test p={w['sign_test_p']:.3g}")
    if s["input"] == "samples" and s["mode"] == "grade":
        return "; ".join(f"{k}: {fmt_ci(v.get('mean_score'), v.get('mean_score_ci95'), 2)}"
                         for k, v in s["policies"].items())
    return ""


def _report(out: Path, s: dict, rows: list[dict]) -> None:
    from jprefs.eval.report import Report, fmt_ci

    rep = Report("jprefs eval judge")
    t = s["template"]
    rep.para(f"Judge: {s['judge']['model']} at {s['judge']['base_url']}; template {t['name']} (hash {t['hash']}); "
             f"mode {s['mode']}; sampling {json.dumps(s['judge']['sampling'], ensure_ascii=False)}. "
             f"Input: {s['pairs'] or s['samples']}. Requests: {s['requests']} "
             f"({s['requests_sent']} sent now, {s['cache_hits']} from the cache). "
             f"Intervals: 95% bootstrap, resampled by prompt.")
    if s.get("input_rows_rejected"):
        rep.warning(f"{s['input_rows_rejected']} rows of {s['pairs']} could not be read as preference pairs and "
                    f"were not judged (rejects.jsonl lists them with the reason)")
    for w in s.get("warnings", []):
        rep.warning(w)
    bad = {k: v for k, v in s["unparseable"].items() if v}
    if bad:
        rep.warning(f"{sum(bad.values())} judge answers could not be read and are excluded from the rates: "
                    + ", ".join(f"{k} {v}" for k, v in bad.items())
                    + (" (truncated: raise --max-tokens)" if bad.get("truncated") else ""))
    if s["input"] == "pairs":
        rep.heading("Agreement with the labels")
        rep.table(["figure", "value"], [row for row in [
            ["pairs", s["n_pairs"]], ["pairs judged (both answers readable)", s["n_judged"]],
            ["pairs unreadable", s["n_unparseable_pairs"]],
            ["pairs failed (a request refused, see rejects.jsonl)", s.get("n_failed_pairs", 0)],
            ["judge prefers chosen (agreement)", fmt_ci(s.get("agreement"), s.get("agreement_ci95"))],
            ["agreement, ties count 1/2", fmt_ci(s.get("agreement_ties_half"), s.get("agreement_ties_half_ci95"))],
            ["agreement on decisive verdicts", fmt_ci(s.get("agreement_decisive"), s.get("agreement_decisive_ci95"))],
            ["tie", fmt_ci(s.get("tie_rate"), s.get("tie_rate_ci95"))],
            ["judge prefers rejected", fmt_ci(s.get("prefers_rejected"), s.get("prefers_rejected_ci95"))],
            ["longer-wins baseline (same pairs, equal = 1/2)",
             fmt_ci(s.get("length_baseline_accuracy"), s.get("length_baseline_ci95"))],
            ["longer-wins baseline (all pairs)", fmt_ci(s.get("length_baseline_accuracy_all_pairs"))],
            ["position consistency (both orders agree)", fmt_ci(s.get("position_consistency"))],
            ["first-position rate (A chosen, 0.5 = no bias; decisive orders of the judged pairs)",
             fmt_ci(s.get("first_position_rate")) + (f" (n = {s['first_position_n']})"
                                                      if s.get("first_position_rate") is not None else "")],
            ["mean score chosen", fmt_ci(s.get("mean_score_chosen"), s.get("mean_score_chosen_ci95"), 2)],
            ["mean score rejected", fmt_ci(s.get("mean_score_rejected"), s.get("mean_score_rejected_ci95"), 2)],
        ] if row[1] != "-"])   # a figure of the other mode (or of no judged pair) is left out
        rep.para("A judge that agrees with the labels no better than the longer-wins baseline may be judging length.")
    elif s["mode"] == "pairwise":
        w = s["win_tie_loss"]
        rep.heading(f"{s['a']} against {s['b']}")
        rep.table(["figure", "value"], [
            ["comparisons", s["n_comparisons"]], ["judged", s["n_judged"]],
            ["unreadable", s["n_unparseable_comparisons"]], ["failed (a request refused)", s["n_failed_comparisons"]],
            [f"{s['a']} wins", fmt_ci(w.get("win"), w.get("win_ci95"))],
            ["tie", fmt_ci(w.get("tie"), w.get("tie_ci95"))],
            [f"{s['b']} wins", fmt_ci(w.get("loss"), w.get("loss_ci95"))],
            [f"{s['a']} at least as good", fmt_ci(w.get("at_least_as_good"), w.get("at_least_as_good_ci95"))],
            ["sign test p (ties dropped)", f"{w['sign_test_p']:.3g}" if "sign_test_p" in w else "-"],
            ["position consistency", fmt_ci(s.get("position_consistency"))],
            ["first-position rate (0.5 = no bias)", fmt_ci(s.get("first_position_rate"))],
        ])
    else:
        rep.heading("Mean judge score per policy (1-10)")
        rep.table(["policy", "answers", "graded", "unparseable", "failed", "mean score"],
                  [[k, v["n_answers"], v["n_graded"], v["n_unparseable"], v["n_failed"],
                    fmt_ci(v.get("mean_score"), v.get("mean_score_ci95"), 2)] for k, v in s["policies"].items()])
    rep.heading("Unparseable judge answers by reason")
    rep.table(["reason", "count"], [[k, v] for k, v in s["unparseable"].items()])
    rep.heading("Examples (the judge's own words)")
    expl = [k for k in (rows[0].keys() if rows else []) if k.startswith("explanation")]
    ids = [k for k in ("pair_id", "prompt_id", "sample", "policy") if rows and k in rows[0]]
    rep.table(ids + ["verdict"] + expl,
              [[r.get(k) for k in ids] + [r.get("verdict", r.get("winner", r.get("score", r.get("score_chosen"))))]
               + [str(r[k])[:600] for k in expl] for r in rows[:5]])
    bad_rows = [r for r in rows if r.get("unparseable") or r.get("failed")][:5]
    if bad_rows:
        rep.heading("Judge answers that could not be read or were refused (first 5)")
        rep.table(ids + ["reasons"] + expl, [[r.get(k) for k in ids] + [", ".join(r["unparseable"] + _failed_text(r))]
                                             + [str(r[k])[:600] for k in expl] for r in bad_rows])
    rep.write(out)


def _failed_text(row: dict) -> list[str]:
    """``["failed (chosen_first): HTTP 400: ..."]`` for a judgments row (``failed``: a message or {request: message})."""
    f = row.get("failed")
    if not f:
        return []
    items = f.items() if isinstance(f, dict) else [("request", f)]
    return [f"failed ({k}): {str(e)[:200]}" for k, e in items]
