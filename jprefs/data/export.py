"""Exports of canonical records: trl preference formats and the binary set.

- ``trl``: trl's standard preference format ``{prompt: str, chosen: str, rejected: str}``;
  multi-turn prompts are rendered with role markers (:func:`render_prompt`).
- ``trl-conversational``: ``{prompt: [messages], chosen: [assistant message],
  rejected: [assistant message]}``, which trl applies the chat template to.
- ``binary``: two rows per pair, ``{prompt, prompt_text, response, label}`` with
  label 1 = chosen, 0 = rejected (the open_preference layout).

Every row keeps ``id``, ``source`` and ``license`` so provenance survives export.

Example::

    rows = export_rows(load_pairs("pairs.jsonl"), "trl")
    ds = to_dataset(load_pairs("pairs.jsonl"), "trl-conversational")   # datasets.Dataset
"""

from __future__ import annotations

from typing import Any, Iterable

from jprefs.data.schema import PreferencePair, Record, expand_pairs, render_prompt
from jprefs.errors import JprefsError

FORMATS = ("trl", "trl-conversational", "binary", "jsonl")


def _provenance(p: PreferencePair) -> dict[str, Any]:
    return {"id": p.id, "source": p.source, "source_id": p.source_id, "license": p.license}


def export_rows(records: Iterable[Record], fmt: str) -> list[dict[str, Any]]:
    """Rows for ``fmt`` (one of :data:`FORMATS`); rank lists are expanded to pairs first."""
    if fmt not in FORMATS:
        raise JprefsError(f"unknown export format '{fmt}'; use one of {', '.join(FORMATS)}")
    out: list[dict[str, Any]] = []
    for p in expand_pairs(records):
        if fmt == "trl":
            out.append({"prompt": render_prompt(p.prompt), "chosen": p.chosen, "rejected": p.rejected,
                        **_provenance(p)})
        elif fmt == "trl-conversational":
            out.append({"prompt": [m.to_dict() for m in p.prompt],
                        "chosen": [{"role": "assistant", "content": p.chosen}],
                        "rejected": [{"role": "assistant", "content": p.rejected}], **_provenance(p)})
        elif fmt == "binary":
            out.extend(b.to_dict() for b in p.to_binary())
        else:
            out.append(p.to_dict())
    return out


def to_dataset(records: Iterable[Record], fmt: str = "trl"):
    """A ``datasets.Dataset`` in ``fmt`` (imports datasets lazily)."""
    from jprefs.errors import require

    datasets = require("datasets", "dev", "exporting to datasets.Dataset")
    rows = export_rows(records, fmt)
    if fmt == "binary":
        for r in rows:  # meta is free-form; Arrow needs one schema for the column
            r.pop("meta", None)
    return datasets.Dataset.from_list(rows)
