"""Exports of canonical records: trl's preference and unpaired formats, and the binary set.

trl reads two dataset types (https://huggingface.co/docs/trl/dataset_formats). In the
*standard* type every field is a string and trl tokenises ``prompt + chosen`` (DPO, KTO,
reward) as is; in the *conversational* type fields are message lists and trl applies the
tokenizer's chat template. jprefs writes:

- ``trl`` (standard preference): ``{prompt: str, chosen: str, rejected: str}``. The prompt
  carries the whole conversation, one paragraph per turn with its role marker, single-turn
  prompts included, and ends with the assistant cue; the answers are the bare responses::

      ユーザー: 日本の首都は?\n\nアシスタント: 東京です。\n\nユーザー: 大阪は?\n\nアシスタント:\n

  so ``prompt + chosen`` decodes as ``...アシスタント:\n<chosen>``. The cue ends with a
  newline, not a space: a trailing space would merge into the answer's first token in
  BPE/SentencePiece tokenizers, and trl's DPO/KTO trainers cut the prompt where the
  tokenised prompt and prompt + answer diverge. No BOS/EOS text is written: trl's tokenizer
  call adds BOS, and trl appends EOS to standard answers.
- ``trl-conversational``: ``{prompt: [messages], chosen: [assistant message],
  rejected: [assistant message]}``, which trl applies the chat template to (the template
  decides the turn markers and special tokens).
- ``trl-unpaired`` (standard unpaired, for trl's KTOTrainer): two rows per pair,
  ``{prompt: str, completion: str, label: bool}`` with the ``trl`` prompt layout above,
  ``label`` true for chosen, false for rejected.
- ``trl-unpaired-conversational``: the same with ``prompt: [messages]`` and
  ``completion: [assistant message]``.
- ``binary``: two rows per pair, ``{prompt, prompt_text, response, label}`` with
  label 1 = chosen, 0 = rejected (the open_preference layout; not a trl format).

The paired formats expand a rank list to its K(K-1)/2 pairs. The unpaired and binary formats write
each of its responses once (``RankList.to_binary``): the better half desirable (1), the worse half
undesirable (0), the middle response of an odd K left out; expanded to pairs first, a middle
response would be written as both desirable and undesirable.

Every row keeps ``id``, ``source``, ``source_id`` and ``license`` so provenance survives
export; the unpaired formats also keep ``pair_id`` (row ids are ``<pair id>-c`` / ``-r``, and
``<rank list id>-<rank>`` for a rank list's responses).

Example::

    rows = export_rows(load_pairs("pairs.jsonl"), "trl")
    ds = to_dataset(load_pairs("pairs.jsonl"), "trl-conversational")   # datasets.Dataset
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator

from jprefs.data.schema import BinaryExample, PreferencePair, Record, expand_pairs, render_prompt
from jprefs.errors import JprefsError

FORMATS = ("trl", "trl-conversational", "trl-unpaired", "trl-unpaired-conversational", "binary", "jsonl")
TRL_FORMATS = FORMATS[:4]
# What each trl format is, for dataset cards (jprefs translate's output folder carries all four).
TRL_FORMAT_DOCS = {
    "trl": "trl standard preference (RewardTrainer, DPOTrainer): prompt text ending in the assistant cue, "
           "bare chosen/rejected answers",
    "trl-conversational": "trl conversational preference: prompt as a message list, chosen/rejected as one "
                          "assistant message (the tokenizer's chat template is applied)",
    "trl-unpaired": "trl standard unpaired (KTOTrainer): prompt, completion, label (true = chosen), two rows a pair",
    "trl-unpaired-conversational": "trl conversational unpaired (KTOTrainer): the same with message lists",
}


def _provenance(p: PreferencePair) -> dict[str, Any]:
    return {"id": p.id, "source": p.source, "source_id": p.source_id, "license": p.license}


def iter_export_rows(records: Iterable[Record], fmt: str, *, cue: bool = True) -> Iterator[dict[str, Any]]:
    """Rows for ``fmt`` (one of :data:`FORMATS`), one record at a time; rank lists are expanded to pairs.
    ``cue=False``: the standard formats' prompt is rendered without role markers and assistant cue
    (``render_prompt``'s plain form: a single user turn is its bare text), for a policy that is
    sampled from that text (``jprefs rl`` DPO/KTO on a tokenizer without a chat template)."""
    if fmt not in FORMATS:
        raise JprefsError(f"unknown export format '{fmt}'; use one of {', '.join(FORMATS)}")
    if fmt in ("trl-unpaired", "trl-unpaired-conversational", "binary"):
        yield from _unpaired_rows(records, fmt, cue)
        return
    for p in expand_pairs(records):
        if fmt == "trl":
            yield {"prompt": render_prompt(p.prompt, cue=cue), "chosen": p.chosen, "rejected": p.rejected, **_provenance(p)}
        elif fmt == "trl-conversational":
            yield {"prompt": [m.to_dict() for m in p.prompt],
                   "chosen": [{"role": "assistant", "content": p.chosen}],
                   "rejected": [{"role": "assistant", "content": p.rejected}], **_provenance(p)}
        else:
            yield p.to_dict()


def binary_examples(records: Iterable[Record]) -> Iterator[BinaryExample]:
    """Each response once with its label: a pair's chosen (1) and rejected (0); a rank list's better half
    (1) and worse half (0) (``RankList.to_binary``), also when it arrives as its expanded pairs (``meta``
    ``group`` / ``chosen_rank`` / ``rejected_rank`` / ``group_size``, as ``jprefs translate`` keeps them):
    per pair, the middle answer of three was written as chosen once and rejected once."""
    seen: set[tuple[str, int]] = set()
    for r in records:
        g = _rank_meta(r) if isinstance(r, PreferencePair) else None
        if g is None:
            yield from r.to_binary()
            continue
        group, i, j, k = g
        half = k // 2
        for rank, text in ((i, r.chosen), (j, r.rejected)):
            if (group, rank) in seen or half <= rank < k - half:
                continue
            seen.add((group, rank))
            yield BinaryExample(prompt=r.prompt, response=text, label=int(rank < half), id=f"{group}-{rank}",
                                source=r.source, source_id=r.source_id, license=r.license, pair_id=group,
                                meta={"rank": rank, "group_size": k})


def _rank_meta(p: PreferencePair) -> tuple[str, int, int, int] | None:
    m = p.meta or {}
    g, i, j, k = (m.get(x) for x in ("group", "chosen_rank", "rejected_rank", "group_size"))
    if isinstance(g, str) and all(type(x) is int for x in (i, j, k)) and 0 <= i < j < k:
        return g, i, j, k
    return None


def _unpaired_rows(records: Iterable[Record], fmt: str, cue: bool) -> Iterator[dict[str, Any]]:
    """One row per response (:func:`binary_examples`)."""
    conv = fmt == "trl-unpaired-conversational"
    for b in binary_examples(records):
        if fmt == "binary":
            yield b.to_dict()
            continue
        prompt = [m.to_dict() for m in b.prompt] if conv else render_prompt(b.prompt, cue=cue)
        completion = [{"role": "assistant", "content": b.response}] if conv else b.response
        yield {"prompt": prompt, "completion": completion, "label": bool(b.label), "id": b.id,
               "source": b.source, "source_id": b.source_id, "license": b.license, "pair_id": b.pair_id}


def write_trl_files(out_dir, records: Iterable[Record]) -> dict[str, int]:
    """Write ``<fmt>.jsonl`` for every trl format in ``out_dir`` (atomically); returns rows per file.
    ``records`` is iterated once per format, so pass a list (or another re-iterable)."""
    from pathlib import Path

    from jprefs.data.io import write_jsonl

    return {fmt: write_jsonl(Path(out_dir) / f"{fmt}.jsonl", iter_export_rows(records, fmt)) for fmt in TRL_FORMATS}


def export_rows(records: Iterable[Record], fmt: str, *, cue: bool = True) -> list[dict[str, Any]]:
    """Rows for ``fmt`` as a list (see :func:`iter_export_rows`)."""
    return list(iter_export_rows(records, fmt, cue=cue))


def parquet_schema(fmt: str):
    """The Arrow schema of ``fmt``'s Parquet export. Fixed per format, so that every batch of a
    streamed export has the same columns and types whatever its rows hold (a first batch whose
    optional scores are all null must not decide that the column is null forever). Canonical
    ``meta`` (free-form) is stored as its JSON text; ``jprefs data convert --source jprefs`` reads it back."""
    import pyarrow as pa

    msgs = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    prov = [("id", pa.string()), ("source", pa.string()), ("source_id", pa.string()), ("license", pa.string())]
    if fmt == "trl":
        cols = [("prompt", pa.string()), ("chosen", pa.string()), ("rejected", pa.string())] + prov
    elif fmt == "trl-conversational":
        cols = [("prompt", msgs), ("chosen", msgs), ("rejected", msgs)] + prov
    elif fmt in ("trl-unpaired", "trl-unpaired-conversational"):
        text = msgs if fmt == "trl-unpaired-conversational" else pa.string()
        cols = [("prompt", text), ("completion", text), ("label", pa.bool_())] + prov + [("pair_id", pa.string())]
    elif fmt == "binary":
        cols = [("id", pa.string()), ("prompt", msgs), ("prompt_text", pa.string()), ("response", pa.string()),
                ("label", pa.int64()), ("source", pa.string()), ("source_id", pa.string()),
                ("license", pa.string()), ("pair_id", pa.string()), ("meta", pa.string())]
    elif fmt == "jsonl":
        cols = [("id", pa.string()), ("prompt", msgs), ("chosen", pa.string()), ("rejected", pa.string()),
                ("source", pa.string()), ("source_id", pa.string()), ("license", pa.string()),
                ("meta", pa.string()), ("chosen_score", pa.float64()), ("rejected_score", pa.float64()),
                ("margin", pa.float64())]
    else:
        raise JprefsError(f"unknown export format '{fmt}'; use one of {', '.join(FORMATS)}")
    return pa.schema(cols)


def parquet_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as :func:`parquet_schema` stores it (``meta`` as JSON text)."""
    if "meta" in row:
        row = dict(row, meta=json.dumps(row["meta"], ensure_ascii=False, allow_nan=False) if row["meta"] else None)
    return row


def to_dataset(records: Iterable[Record], fmt: str = "trl"):
    """A ``datasets.Dataset`` in ``fmt`` (imports datasets lazily)."""
    from jprefs.errors import require

    datasets = require("datasets", "dev", "exporting to datasets.Dataset")
    rows = export_rows(records, fmt)
    if fmt == "binary":
        for r in rows:  # meta is free-form; Arrow needs one schema for the column
            r.pop("meta", None)
    elif fmt == "jsonl":
        # canonical rows: meta (a source's own columns in meta.extra, of any types) as its JSON text, as the
        # Parquet export stores it; Arrow could not give one schema to an int in one row, a string in the next
        rows = [parquet_row(r) for r in rows]
    return datasets.Dataset.from_list(rows)
