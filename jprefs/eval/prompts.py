"""Evaluation prompts: the built-in Japanese sets, MT-Bench ``question.jsonl`` files, JSONL and text.

Sources (``load_eval_prompts(spec)``; several specs may be joined with commas):

- ``builtin:NAME``: a set shipped with jprefs (``jprefs/resources/eval/prompts/NAME.jsonl``,
  also visible as ``eval/prompts/`` in the repository); :data:`BUILTIN_SETS` lists them.
- an MT-Bench style ``question.jsonl`` (``question_id``, ``category``, ``turns``): the first turn is
  the prompt (later turns depend on the model's own first answer; they are kept in ``turns``).
- JSONL / JSON / CSV / Parquet rows with ``prompt`` (a string or a message list) or ``text``, and
  optionally ``id``, ``category``, ``reference``, ``license`` (kept as :attr:`EvalPrompt.license`;
  the built-in sets are Apache-2.0, :data:`BUILTIN_LICENSE`).
- ``.txt``: one prompt per non-blank line (continuation openings such as 「今週末に」 work too).

Every prompt gets a stable ``id`` (the row's ``id`` / ``question_id``, else ``FILE:LINE``), which
the reports, the human A/B files and the bootstrap's grouping use. Bad rows stop with the file,
line and fix; duplicate ids are refused (they would merge two prompts in every interval).

Example::

    prompts = load_eval_prompts("builtin:ja-instructions")
    prompts[0].id, prompts[0].category, prompts[0].text
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from jprefs.errors import DataError

BUILTIN_SETS = ("ja-instructions", "ja-continuations")
BUILTIN_LICENSE = "apache-2.0"      # written for jprefs (eval/prompts/README.md)


@dataclass
class EvalPrompt:
    """One evaluation prompt. ``text`` is what a policy is given (a conversation is rendered with
    role markers, see :func:`jprefs.data.schema.render_prompt`); ``messages`` keeps the turns for
    chat templates."""

    id: str
    text: str
    category: str = ""
    messages: list[dict[str, str]] = field(default_factory=list)
    turns: list[str] = field(default_factory=list)
    reference: str = ""
    license: str = ""           # the row's ``license`` ("" when the source names none)

    def chat(self) -> list[dict[str, str]]:
        """The prompt as chat messages (a single user turn when the source had plain text)."""
        return self.messages or [{"role": "user", "content": self.text}]


def builtin_prompts_dir() -> Path:
    return Path(str(resources.files("jprefs") / "resources" / "eval" / "prompts"))


def _paths(spec: str) -> list[Path]:
    out: list[Path] = []
    for part in (s.strip() for s in spec.split(",") if s.strip()):
        if part.startswith("builtin:"):
            name = part[len("builtin:"):]
            p = builtin_prompts_dir() / f"{name}.jsonl"
            if name not in BUILTIN_SETS or not p.exists():
                raise DataError(f"unknown built-in prompt set {part!r}",
                                fix=f"use one of {', '.join('builtin:' + s for s in BUILTIN_SETS)} or a file")
            out.append(p)
            continue
        hits = sorted(glob.glob(os.path.expanduser(part)))
        if not hits:
            raise DataError(f"prompt file not found: {part}", fix="check the path (relative to the current "
                            "directory), or use builtin:ja-instructions")
        out += [Path(h) for h in hits]
    if not out:
        raise DataError("no prompt file given", fix="--prompts FILE or builtin:ja-instructions")
    return out


def _from_row(data: Any, path: Path, line: int) -> EvalPrompt:
    from jprefs.data.schema import render_prompt

    if not isinstance(data, dict):
        raise DataError(f"a row must be a JSON object, got {type(data).__name__}", path=str(path), line=line,
                        fix="one object per line with a 'prompt' (or 'text', or MT-Bench 'turns') field")
    rid = data.get("id", data.get("question_id"))
    cat = data.get("category") or ""
    ref = data.get("reference") or ""
    if isinstance(ref, list):
        ref = "\n".join(str(x) for x in ref)
    turns: list[str] = []
    messages: list[dict[str, str]] = []
    if "turns" in data and "prompt" not in data:
        turns = data["turns"]
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
            raise DataError("'turns' must be a non-empty list of strings", path=str(path), line=line)
        text = turns[0]
    else:
        p = data.get("prompt", data.get("text"))
        if p is None:
            raise DataError(f"row has no 'prompt', 'text' or 'turns' (keys: {sorted(data)})", path=str(path),
                            line=line, fix="name the prompt column 'prompt'")
        if isinstance(p, list):
            try:
                messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in p]
            except (TypeError, KeyError):
                raise DataError("'prompt' as a list must hold {role, content} messages", path=str(path),
                                line=line) from None
            from jprefs.data.schema import Message

            text = render_prompt([Message(m["role"], m["content"]) for m in messages])
        elif isinstance(p, str):
            text = p
        else:
            raise DataError(f"'prompt' must be a string or a message list, got {type(p).__name__}",
                            path=str(path), line=line)
    if not text.strip():
        raise DataError("empty prompt", path=str(path), line=line, fix="remove the row or write the prompt")
    lic = data.get("license") or (BUILTIN_LICENSE if path.parent == builtin_prompts_dir() else "")
    return EvalPrompt(id=str(rid) if rid is not None else f"{path.name}:{line}", text=text, category=str(cat),
                      messages=messages, turns=list(turns), reference=str(ref), license=str(lic))


def load_eval_prompts(spec: str, *, limit: int = 0) -> list[EvalPrompt]:
    """Prompts from ``spec`` (see the module docstring), in file order; ``limit`` keeps the first N."""
    from jprefs.data.io import iter_table, iter_text_lines

    out: list[EvalPrompt] = []
    for path in _paths(spec):
        if path.name.endswith(".txt"):
            for line, text, err in iter_text_lines(path):
                if err:
                    raise DataError(err, path=str(path), line=line, fix="save the file as UTF-8")
                if text and text.strip():
                    out.append(EvalPrompt(id=f"{path.name}:{line}", text=text.strip()))
            continue
        try:
            rows = iter_table(path)
            for row in rows:
                if row.error:
                    raise DataError(row.error, path=str(path), line=row.locator,
                                    fix="fix or remove the row (one JSON object per line)")
                out.append(_from_row(row.data, path, row.locator))
        except DataError:
            raise
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read prompts: {e}", path=str(path)) from e
    if limit:
        out = out[:limit]
    if not out:
        raise DataError(f"no prompts in {spec!r}", fix="give a file with at least one prompt")
    seen: dict[str, int] = {}
    for i, p in enumerate(out):
        if p.id in seen:
            raise DataError(f"prompt id {p.id!r} appears twice (rows {seen[p.id] + 1} and {i + 1} of {spec})",
                            fix="give every prompt its own id")
        seen[p.id] = i
    return out
