"""Text and prompt sources of ``jprefs rl``: bundled data, files and globs, canonical pairs.

- :func:`load_text_rows`: training texts (``.txt``, JSONL/CSV/TSV/Parquet, canonical pairs
  as chosen = 1 / rejected = 0), long documents cut into paragraphs.
- :func:`load_prompts`: prompts from ``.txt`` (one per line), JSONL or pairs.

Example::

    rows = load_text_rows("builtin:ja-tiny", reward_field="reward")
    prompts = load_prompts("builtin:ja-tiny-prompts")
"""

from __future__ import annotations

import glob
import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from jprefs.errors import ConfigError, DataError

BUILTIN = {
    "builtin:ja-tiny": "ja_tiny.jsonl",
    "builtin:ja-tiny-prompts": "ja_tiny_prompts.txt",
    "builtin:ja-tiny-eval": "ja_tiny_eval_prompts.txt",
    "builtin:ja-tiny-pairs": "ja_tiny_pairs.jsonl",
}



def builtin_path(name: str) -> Path:
    """Path of a bundled data file (``builtin:ja-tiny`` etc.)."""
    if name not in BUILTIN:
        raise ConfigError(f"unknown built-in data {name!r}; available: {', '.join(BUILTIN)}")
    return Path(str(resources.files("jprefs") / "resources" / "rl" / BUILTIN[name]))



def expand_paths(spec: str) -> list[Path]:
    """``builtin:NAME``, a path, or comma-separated globs -> existing files."""
    if spec.startswith("builtin:"):
        return [builtin_path(spec)]
    out: list[Path] = []
    for part in (s.strip() for s in spec.split(",") if s.strip()):
        hits = sorted(glob.glob(os.path.expanduser(part)))
        if not hits:
            raise DataError(f"no file matches {part!r}", fix="check the path or glob (relative to the current directory)")
        out += [Path(h) for h in hits]
    return out



@dataclass
class TextRow:
    """One training text: ``prompt`` (may be empty) + ``text``, with an optional reward."""

    prompt: str
    text: str
    reward: float | None = None



def _chunks(text: str, max_chars: int) -> list[str]:
    """Split long documents (e.g. Aozora works) into paragraph-sized pieces."""
    out = []
    for para in text.replace("\r", "").split("\n"):
        para = para.strip().replace("\u3000", "")
        while len(para) > max_chars:
            cut = para.rfind("。", 0, max_chars)
            cut = cut + 1 if cut > max_chars // 4 else max_chars
            out.append(para[:cut])
            para = para[cut:]
        if para:
            out.append(para)
    return out



def load_text_rows(spec: str, *, text_field: str = "text", prompt_field: str = "", reward_field: str = "",
                   max_chars: int = 200, rejects=None) -> list[TextRow]:
    """Rows from ``.txt`` (one text per line), JSONL/CSV/TSV/Parquet, or canonical pairs.

    Canonical pairs (``prompt``/``chosen``/``rejected``) give two rows each: the
    chosen response with reward 1 and the rejected one with reward 0. Long texts are
    split into paragraphs of at most ``max_chars``. Bad rows go to ``rejects``
    (a :class:`jprefs.data.io.RejectsWriter`) with a reason, or raise when it is None.

    >>> rows = load_text_rows("builtin:ja-tiny", reward_field="reward")   # doctest: +SKIP
    """
    from jprefs.data.io import iter_table, iter_text_lines
    from jprefs.data.schema import SchemaError, record_from_dict, render_prompt

    def reject(path, loc, reason, error, raw):
        if rejects is None:
            raise DataError(error, path=str(path), line=loc if isinstance(loc, int) else None,
                            fix=f"fix the row, or check text_field={text_field!r} / reward_field={reward_field!r}")
        rejects.add(loc, reason, f"{path}: {error}", raw)

    rows: list[TextRow] = []
    for path in expand_paths(spec):
        if path.name.endswith(".txt"):
            for i, line, err in iter_text_lines(path):
                if err:
                    reject(path, i, "invalid_utf8", err, None)
                elif line.strip():
                    rows += [TextRow("", t) for t in _chunks(line, max_chars)]
            continue
        for row in iter_table(path):
            if row.error:
                reject(path, row.locator, row.reason or "bad_row", row.error, row.data)
                continue
            d = row.data
            if "chosen" in d and "rejected" in d and text_field not in d:
                try:
                    pair = record_from_dict(d)
                except SchemaError as e:
                    reject(path, row.locator, e.reason, str(e), d)
                    continue
                pairs = pair.to_pairs() if hasattr(pair, "to_pairs") else [pair]
                for p in pairs:
                    rows.append(TextRow(render_prompt(p.prompt), p.chosen, 1.0))
                    rows.append(TextRow(render_prompt(p.prompt), p.rejected, 0.0))
                continue
            text = d.get(text_field)
            if not isinstance(text, str) or not text.strip():
                reject(path, row.locator, "missing_text", f"field {text_field!r} missing or empty (keys: {sorted(d)})", d)
                continue
            prompt = d.get(prompt_field, "") if prompt_field else ""
            if prompt_field and isinstance(prompt, list):
                prompt = render_prompt(prompt)
            reward = None
            if reward_field:
                v = d.get(reward_field)
                try:
                    reward = float(v)
                    if not math.isfinite(reward):
                        raise ValueError
                except (TypeError, ValueError):
                    reject(path, row.locator, "bad_reward", f"field {reward_field!r} is not a number: {v!r}", d)
                    continue
            for t in _chunks(text, max_chars) if not prompt else [text]:
                rows.append(TextRow(str(prompt or ""), t, reward))
    return rows



def load_prompts(spec: str) -> list[str]:
    """Prompts from a .txt file (one per line), JSONL (``prompt`` or ``text``) or canonical pairs."""
    from jprefs.data.io import iter_table, iter_text_lines
    from jprefs.data.schema import render_prompt

    if spec == "builtin:ja-tiny":
        spec = "builtin:ja-tiny-prompts"
    out: list[str] = []
    for path in expand_paths(spec):
        if path.name.endswith(".txt"):
            out += [line.strip() for _, line, err in iter_text_lines(path) if not err and line.strip()]
            continue
        for row in iter_table(path):
            if row.error:
                raise DataError(row.error, path=str(path), line=row.locator)
            p = row.data.get("prompt", row.data.get("text"))
            if p is None:
                raise DataError(f"row has neither 'prompt' nor 'text' (keys: {sorted(row.data)})",
                                path=str(path), line=row.locator)
            out.append(render_prompt(p) if isinstance(p, list) else str(p))
    if not out:
        raise DataError(f"no prompts found in {spec!r}", fix="give a file with one prompt per line")
    return out

