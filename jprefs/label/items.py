"""What each labelling mode reads, turned into store items.

- ``rank``: rows with a ``prompt`` (a string or a conversation) and ``responses`` (2 or more
  strings): ``jprefs label candidates`` output, or canonical rank lists to re-rank. Repeated
  responses are shown once (``meta.duplicates`` counts them); the page shows the responses in a
  per-item shuffled order (``shown``), and labels name the responses by their index in the item's
  list of distinct non-empty responses (the file's order with empty and repeated ones left out;
  ``jprefs label export`` writes that list beside the orders, in ``meta.label.indexed_responses``).
- ``ab``: ``items.jsonl`` of ``jprefs eval export-human`` (``item_id, prompt, left, right``): the
  key, which names the policies, is not read.
- ``review``: translated pairs (``pairs.jsonl`` of ``jprefs translate``, or its folder, where
  ``rejects.jsonl`` rows that carry a translation are added with the flags that sent them
  there). The English source comes from ``meta.translation.source`` (translate with
  ``keep_source_text``) or from ``--source FILE``, the canonical English input, joined on
  ``meta.translation.source_pair_id``.
- ``reward``: no file needed (live PPO rollouts arrive through the store), or rows of
  ``prompt`` + ``response`` to score.

Every input row becomes an item or a reject (``{line, reason, error, raw}``), and the counts add up.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

from jprefs.data.io import check_input, iter_jsonl, reject_entry
from jprefs.data.schema import PreferencePair, SchemaError, as_messages, content_hash
from jprefs.errors import DataError

MAX_TEXT = 200_000   # characters in one shown text; longer is a reject (a page cannot show it usefully)


class Loaded:
    def __init__(self):
        self.items: list[tuple[str, dict, str]] = []
        self.rejects: list[dict] = []
        self.rows = 0
        self.notes: list[str] = []

    def reject(self, row, reason: str, error: str, path: Path) -> None:
        self.rejects.append({"file": str(path), **reject_entry(row, reason, error)})


def _msgs(prompt: Any) -> list[dict]:
    return [m.to_dict() for m in as_messages(prompt)]


def _text(name: str, v: Any) -> str:
    if not isinstance(v, str):
        raise SchemaError(f"field '{name}' must be a string, got {type(v).__name__}", reason=f"non_string_{name}")
    if not v.strip():
        raise SchemaError(f"field '{name}' is empty", reason=f"empty_{name}")
    if len(v) > MAX_TEXT:
        raise SchemaError(f"field '{name}' has {len(v)} characters (over {MAX_TEXT})", reason="text_too_long")
    return v


def _shown(item_id: str, k: int, seed: int) -> list[int]:
    order = list(range(k))
    random.Random(int(hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()[:12], 16)).shuffle(order)
    return order


def _rank(d: dict, seed: int) -> tuple[str, dict]:
    prompt = _msgs(d.get("prompt"))
    responses = d.get("responses")
    if not isinstance(responses, list) or len(responses) < 2:
        raise SchemaError("field 'responses' must be a list of at least 2 strings", reason="too_few_responses")
    uniq: list[str] = []
    empty = 0
    for i, r in enumerate(responses):
        if isinstance(r, str) and not r.strip():
            empty += 1                     # a policy can answer nothing: shown as nothing to rank
            continue
        _text(f"responses[{i}]", r)
        if r not in uniq:
            uniq.append(r)
    if len(uniq) < 2:
        raise SchemaError(f"fewer than 2 distinct non-empty responses ({empty} empty): nothing to rank",
                          reason="identical_responses")
    item_id = str(d.get("id") or content_hash(prompt, uniq)[:16])
    meta = d.get("meta") if isinstance(d.get("meta"), dict) else {}
    payload = {"prompt": prompt, "responses": uniq, "shown": _shown(item_id, len(uniq), seed),
               "license": str(d.get("license") or "unknown"), "data_source": str(d.get("source") or "unknown"),
               "meta": meta}
    if len(uniq) + empty < len(responses):
        payload["duplicates"] = len(responses) - len(uniq) - empty
    if empty:
        payload["empty_responses"] = empty
    return item_id, payload


def _ab(d: dict, seed: int) -> tuple[str, dict]:
    item_id = d.get("item_id")
    if not isinstance(item_id, str) or not item_id:
        raise SchemaError("field 'item_id' is missing: give the items.jsonl of `jprefs eval export-human`",
                          reason="missing_item_id")
    return item_id, {"prompt": _msgs(d.get("prompt")), "prompt_text": d.get("prompt") if isinstance(d.get("prompt"), str)
                     else None, "left": _text("left", d.get("left")),
                     "right": _text("right", d.get("right")), "category": str(d.get("category") or "")}


def _reward(d: dict, seed: int) -> tuple[str, dict]:
    prompt = d.get("prompt")
    if not isinstance(prompt, str):
        prompt = "\n\n".join(m["content"] for m in _msgs(prompt))
    response = _text("response", d.get("response"))
    item_id = str(d.get("id") or content_hash(prompt, response)[:16])
    return item_id, {"prompt": prompt, "response": response, "license": str(d.get("license") or "unknown")}


def _review(d: dict, seed: int, sources: dict[str, dict] | None, rejected: dict | None = None) -> tuple[str, dict]:
    pair = PreferencePair.from_dict(d)
    tr = pair.meta.get("translation") if isinstance(pair.meta.get("translation"), dict) else {}
    src = tr.get("source") if isinstance(tr.get("source"), dict) else None
    if src is None and sources is not None:
        s = sources.get(str(tr.get("source_pair_id") or pair.id))
        if s is not None:
            src = {"prompt": s["prompt"], "chosen": s["chosen"], "rejected": s["rejected"]}
    payload = {"pair": pair.to_dict(), "source_text": src, "flags": tr.get("flags") or {},
               "quality": tr.get("quality") or {}, "engine": tr.get("engine"), "model": tr.get("model")}
    if rejected:
        payload["rejected_by"] = rejected
    return pair.id, payload


def _source_index(path: str | Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for row in iter_jsonl(check_input(path)):
        if row.error:
            raise DataError(row.error, path=str(path), line=row.locator,
                            fix="give the canonical English file that `jprefs translate` read")
        try:
            p = PreferencePair.from_dict(row.data)
        except SchemaError as e:
            raise DataError(str(e), path=str(path), line=row.locator,
                            fix="give the canonical English file that `jprefs translate` read") from None
        out[p.id] = {"prompt": [m.to_dict() for m in p.prompt], "chosen": p.chosen, "rejected": p.rejected}
    return out


def load_items(mode: str, spec: str | None, *, seed: int = 0, source: str | None = None) -> Loaded:
    """Read ``spec`` for ``mode``; bad rows become rejects, never silent drops."""
    out = Loaded()
    if spec is None:
        if mode != "reward":
            raise DataError(f"--mode {mode} needs an input file", fix="jprefs label serve FILE --mode " + mode)
        return out
    p = Path(spec)
    files: list[tuple[Path, bool]] = []
    if mode == "review" and p.is_dir():
        if not (p / "pairs.jsonl").exists():
            raise DataError("no pairs.jsonl in the folder", path=str(p), fix="give a `jprefs translate` output folder")
        files.append((p / "pairs.jsonl", False))
        if (p / "rejects.jsonl").exists():
            files.append((p / "rejects.jsonl", True))
    else:
        files.append((check_input(p), False))
    sources = _source_index(source) if source else None
    parse = {"rank": _rank, "ab": _ab, "reward": _reward}.get(mode)
    seen: dict[str, str] = {}
    for path, is_rejects in files:
        for row in iter_jsonl(path):
            out.rows += 1
            if row.error:
                out.reject(row, row.reason or "bad_row", row.error, path)
                continue
            d = row.data
            try:
                if is_rejects:
                    tr = d.get("translation") if isinstance(d.get("translation"), dict) else None
                    raw = d.get("raw") if isinstance(d.get("raw"), dict) else None
                    if tr is None or raw is None:
                        out.reject(row, "not_reviewable", f"a translate reject without a translation "
                                   f"({d.get('reason', '?')}): nothing to review", path)
                        continue
                    reasons = [str(x) for x in (d.get("reasons") or [d.get("reason", "?")])]
                    d = _rejected_pair(raw, tr, reasons)
                    item_id, payload = _review(d, seed, sources, rejected={"reasons": reasons,
                                                                           "error": str(row.data.get("error", ""))})
                elif mode == "review":
                    item_id, payload = _review(d, seed, sources)
                else:
                    item_id, payload = parse(d, seed)
            except (SchemaError, DataError, KeyError, TypeError) as e:
                out.reject(row, getattr(e, "reason", None) or "invalid_row", str(e), path)
                continue
            loc = f"{path}:{row.locator}"
            if item_id in seen:
                out.reject(row, "duplicate_id", f"item id {item_id!r} already came from {seen[item_id]}", path)
                continue
            seen[item_id] = loc
            out.items.append((item_id, payload, loc))
    if mode == "review" and not any(it[1]["source_text"] for it in out.items) and out.items:
        out.notes.append("no English source text: translate with keep_source_text=true, or pass --source "
                         "the English canonical file, to show the source beside the translation")
    return out


def _rejected_pair(raw: dict, translation: dict, reasons: list[str]) -> dict:
    """A translate reject (the source pair in ``raw``, the engine's text in ``translation``) as a
    translated pair, so that a reviewer can accept or correct what the flags sent away."""
    d = dict(raw)
    src = {"prompt": raw.get("prompt"), "chosen": raw.get("chosen"), "rejected": raw.get("rejected")}
    prompt = raw.get("prompt")
    if isinstance(prompt, list):
        prompt = [{"role": m.get("role"), "content": translation.get(f"prompt.{i}", m.get("content"))}
                  for i, m in enumerate(prompt) if isinstance(m, dict)]
    d.update(prompt=prompt, chosen=translation.get("chosen", raw.get("chosen")),
             rejected=translation.get("rejected", raw.get("rejected")))
    meta = dict(raw.get("meta") or {})
    meta["translation"] = {"source": src, "source_pair_id": raw.get("id"),
                           "flags": {"row": reasons}}
    d["meta"] = meta
    return d
