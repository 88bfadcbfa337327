"""A jprefs dataset folder or file staged for the Hub: Parquet shards per config and an honest card.

What can be pushed (``jprefs push dataset PATH``):

- a ``jprefs translate`` output folder (``pairs.jsonl``, ``rejects.jsonl``, ``summary.json``,
  ``config.yaml``);
- a ``jprefs data split`` folder (``train.jsonl``, ``test.jsonl``, and ``validation.jsonl`` /
  ``dev.jsonl`` when present): one split each;
- one canonical file (``jprefs data convert`` / ``merge`` output, ``jprefs label export``), with
  its ``X.rejects.jsonl`` beside it when there is one.

The staged repository holds one folder per config, each with its splits as Parquet shards
(``pairs/train-00000-of-00001.parquet``), and a ``README.md`` whose YAML ``configs:`` names every
shard, so ``datasets.load_dataset(repo_id, "pairs")`` reads exactly those files:

- ``pairs`` (default): canonical preference pairs (rank lists expanded to their pairs), the
  ``jprefs data export --format jsonl`` schema (``meta`` as JSON text; ``jprefs data convert
  REPO --source jprefs`` reads it back);
- ``binary``: (prompt, response, label) rows, chosen = 1;
- ``trl``, ``trl-conversational``, ``trl-unpaired``, ``trl-unpaired-conversational``: the pairs in
  trl's layouts (:mod:`jprefs.data.export`), to hand to trl's trainers as they are;
- ``rejects``: every row that was not kept, with its reason (nothing is hidden).

Everything is deterministic (no timestamps), so staging the same folder twice gives the same
bytes and a second push uploads nothing.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jprefs.errors import DataError

SHARD_ROWS = 50_000
SPLIT_FILES = {"train": "train.jsonl", "validation": "validation.jsonl", "dev": "dev.jsonl", "test": "test.jsonl"}
PAIR_CONFIGS = ("pairs", "binary", "trl", "trl-conversational", "trl-unpaired", "trl-unpaired-conversational")


@dataclass
class DatasetSource:
    """What was found at PATH: the splits' files, the rejects files and the recorded provenance."""

    path: Path
    kind: str                                        # translate | split | file
    splits: dict[str, Path]                          # split -> canonical JSONL
    rejects: list[Path] = field(default_factory=list)
    summary: dict = field(default_factory=dict)      # translate summary.json
    config: dict = field(default_factory=dict)       # translate config.yaml (credentials redacted)
    command: str = ""


def find_source(path: str | Path) -> DatasetSource:
    """Recognise a jprefs output at ``path`` (see the module doc), or one error saying what is there."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p} does not exist", path=str(p),
                        fix="give a jprefs translate / data split output folder or a canonical JSONL file")
    if p.is_file():
        from jprefs.data.io import rejects_path_for

        rej = rejects_path_for(p)
        return DatasetSource(p, "file", {"train": p}, [rej] if rej.exists() and rej != p else [])
    if (p / "pairs.jsonl").is_file():
        src = DatasetSource(p, "translate", {"train": p / "pairs.jsonl"},
                            [p / "rejects.jsonl"] if (p / "rejects.jsonl").is_file() else [])
        if (p / "summary.json").is_file():
            from jprefs.publish.model import read_json_file

            src.summary = read_json_file(p / "summary.json")
        if (p / "config.yaml").is_file():
            import yaml

            from jprefs.redact import redact

            src.config = redact(yaml.safe_load((p / "config.yaml").read_text(encoding="utf-8")) or {})
        src.command = _card_command(p / "README.md")
        return src
    splits = {s: p / f for s, f in SPLIT_FILES.items() if (p / f).is_file()}
    if splits:
        if "dev" in splits and "validation" not in splits:
            splits["validation"] = splits.pop("dev")
        splits.pop("dev", None)
        rejects = sorted(x for x in p.glob("*.rejects.jsonl"))
        return DatasetSource(p, "split", splits, rejects)
    found = sorted(x.name for x in p.iterdir())[:10]
    raise DataError(f"{p} is not a jprefs dataset output: no pairs.jsonl (translate) and no train.jsonl / "
                    f"test.jsonl (data split); it holds {found}", path=str(p),
                    fix="push a `jprefs translate` or `jprefs data split` folder, or one canonical JSONL file")


def _card_command(readme: Path) -> str:
    """The command recorded in a translate card's ``## Command`` block ('' when there is none)."""
    if not readme.is_file():
        return ""
    m = re.search(r"## Command\s*\n\s*```\n(.*?)\n```", readme.read_text(encoding="utf-8"), re.S)
    return m.group(1).strip() if m else ""


@dataclass
class StagedDataset:
    """A staged dataset repository: ``files`` (relative paths) under ``root``, and the facts of its card."""

    root: Path
    files: list[str]
    rows: dict[str, dict[str, int]]                  # config -> split -> rows
    licenses: Any                                    # jprefs.publish.licenses.Derived
    card: str


def _rejects_rows(paths: list[Path]):
    from jprefs.data.io import iter_jsonl

    for path in paths:
        for row in iter_jsonl(path):
            d = row.data if isinstance(row.data, dict) and not row.error else {"raw": row.text, "reason": "unreadable"}
            where = {k: d[k] for k in ("file", "line", "index", "row") if k in d}
            yield {"file": str(d.get("file") or path.name), "where": json.dumps(where, ensure_ascii=False),
                   "reason": str(d.get("reason", "")), "error": str(d.get("error", "")),
                   "raw": json.dumps(d.get("raw"), ensure_ascii=False, default=str)}


def _rejects_licences(paths: list[Path]) -> set[tuple[str, str]]:
    """``(source, licence)`` of the rejected rows that name a licence (their raw row, as written)."""
    from jprefs.data.io import iter_jsonl

    out = set()
    for path in paths:
        for row in iter_jsonl(path):
            raw = row.data.get("raw") if isinstance(row.data, dict) and not row.error else None
            if isinstance(raw, dict) and isinstance(raw.get("license"), str) and raw["license"].strip():
                out.add((str(raw.get("source") or "(none)"), raw["license"].strip()))
    return out


def _rejects_schema():
    import pyarrow as pa

    return pa.schema([("file", pa.string()), ("where", pa.string()), ("reason", pa.string()),
                      ("error", pa.string()), ("raw", pa.string())])


def _write_shards(root: Path, config: str, split: str, rows: list[dict], schema) -> list[str]:
    """``rows`` as ``config/split-0000i-of-0000n.parquet`` (at least one shard, so an empty split has its
    schema); returns the relative paths."""
    from jprefs.data.io import write_parquet

    n = max(1, -(-len(rows) // SHARD_ROWS))
    out = []
    for i in range(n):
        rel = f"{config}/{split}-{i:05d}-of-{n:05d}.parquet"
        write_parquet(root / rel, rows[i * SHARD_ROWS:(i + 1) * SHARD_ROWS], schema=schema)
        out.append(rel)
    return out


def stage_dataset(src: DatasetSource, root: Path, *, repo_id: str, allow_unknown: bool = False,
                  pretty_name: str = "", revision: str | None = None) -> StagedDataset:
    """Write the repository for ``src`` into ``root`` (an empty folder) and render its card (its
    ``load_dataset`` snippets load ``revision`` when that is not main).
    Raises :class:`jprefs.publish.licenses.LicenseRefused` before writing when the licence refuses."""
    from jprefs.data.export import iter_export_rows, parquet_row, parquet_schema
    from jprefs.data.io import atomic_write_text, stream_records
    from jprefs.data.schema import BinaryExample, RankList
    from jprefs.publish.licenses import check, derive

    records = {s: list(stream_records(f)) for s, f in src.splits.items()}
    kinds = {type(r).__name__ for rs in records.values() for r in rs}
    binary_only = kinds == {"BinaryExample"}
    if BinaryExample.__name__ in kinds and not binary_only:
        raise DataError(f"{src.path} mixes binary examples with preference records", path=str(src.path),
                        fix="push them as two datasets")
    by_source: Counter = Counter((r.source or "(none)", r.license or "") for rs in records.values() for r in rs)
    per_source: dict[str, dict[str, int]] = {}
    for (s, lc), n in sorted(by_source.items()):
        per_source.setdefault(s, {})[lc] = n
    comps = {(f"data: {s}" if len(per_source[s]) == 1 else f"data: {s} ({lc or 'none'})"): lc
             for (s, lc) in sorted(by_source)}
    # the rejects config publishes rejected rows whole: a licence they name is a component too (rows of a
    # cc-by-nc-nd source went out under the kept rows' mit)
    for (s, lc) in sorted(_rejects_licences(src.rejects)):
        comps.setdefault(f"rejects: {s} ({lc})", lc)
    # a translation by its rows, not by the folder layout (a translate folder's pairs.jsonl pushed as a file,
    # or split, escaped the no-derivatives check)
    translated = src.kind == "translate" or any(isinstance((getattr(r, "meta", None) or {}).get("translation"), dict)
                                                for rs in records.values() for r in rs)
    lic = derive(comps, kind="translation" if translated else "dataset")
    check(lic, allow_unknown=allow_unknown, what=f"dataset {src.path}")

    files: list[str] = []
    rows: dict[str, dict[str, int]] = {}
    configs: list[dict] = []
    n_lists = sum(isinstance(r, RankList) for rs in records.values() for r in rs)
    for cfg_name in (("binary",) if binary_only else PAIR_CONFIGS):
        data_files = []
        fmt = "binary" if binary_only else ("jsonl" if cfg_name == "pairs" else cfg_name)
        for split, recs in records.items():
            # iter_export_rows expands rank lists to their pairs itself
            out_rows = ([parquet_row(b.to_dict()) for b in recs] if binary_only else
                        [parquet_row(r) for r in iter_export_rows(recs, fmt)])
            rows.setdefault(cfg_name, {})[split] = len(out_rows)
            if not out_rows:              # datasets cannot load a split with no rows: it is left out (card: 0)
                continue
            files += _write_shards(root, cfg_name, split, out_rows, parquet_schema(fmt))
            data_files.append({"split": split, "path": f"{cfg_name}/{split}-*.parquet"})
        if data_files:
            configs.append({"config_name": cfg_name, "data_files": data_files,
                            **({"default": True} if cfg_name == ("binary" if binary_only else "pairs") else {})})
    rej_rows = list(_rejects_rows(src.rejects))
    if src.rejects:
        rows["rejects"] = {"train": len(rej_rows)}
    if rej_rows:
        files += _write_shards(root, "rejects", "train", rej_rows, _rejects_schema())
        configs.append({"config_name": "rejects", "data_files": [{"split": "train", "path": "rejects/train-*.parquet"}]})
    facts = {"format": "jprefs-dataset/1", "kind": src.kind, "rows": rows, "rank_lists": n_lists,
             "sources": per_source,
             "license": lic.metadata("dataset")}
    atomic_write_text(root / "jprefs_dataset.json", json.dumps(facts, indent=2, ensure_ascii=False, sort_keys=True)
                      + "\n")
    files.append("jprefs_dataset.json")
    card = dataset_card(src, records, rows, configs, lic, by_source, repo_id=repo_id, pretty_name=pretty_name,
                        rejects=rej_rows, n_lists=n_lists)
    from jprefs.publish.snippets import pin_revision

    card = pin_revision(card, repo_id, revision, repo_type="dataset")
    atomic_write_text(root / "README.md", card)
    files.append("README.md")
    return StagedDataset(root, sorted(files), rows, lic, card)


def dataset_card(src: DatasetSource, records: dict, rows: dict, configs: list[dict], lic, by_source: Counter, *,
                 repo_id: str, pretty_name: str, rejects: list[dict], n_lists: int) -> str:
    """The dataset card: Hub YAML metadata and a body built from what jprefs recorded."""
    import yaml

    from jprefs.data.export import TRL_FORMAT_DOCS
    from jprefs.publish.licenses import unknown_banner
    from jprefs.redact import redact_url
    from jprefs.translate.card import HUB_IDS, size_category

    n_main = sum(rows.get("pairs", rows.get("binary", {})).values())
    sources = sorted({HUB_IDS.get(s, s) for (s, _) in by_source})
    translated = src.kind == "translate"
    tags = ["jprefs", "preference", "rlhf", "reward-modeling"] + (["machine-translated"] if translated else [])
    meta = {**lic.metadata("dataset"), "language": ["ja"],
            "task_categories": ["text-classification", "text-generation"],
            "size_categories": [size_category(n_main)], "source_datasets": sources,
            "pretty_name": pretty_name or repo_id.split("/")[-1], "tags": tags, "configs": configs}
    what = {"pairs": "canonical preference pairs: `prompt` (messages), `chosen`, `rejected`, `source`, `license`, "
                     "`meta` (JSON text)" + (f"; {n_lists} rank lists expanded to their pairs" if n_lists else ""),
            "binary": "(prompt, response, label) rows, label 1 = chosen, 0 = rejected",
            "rejects": "every input row that was not kept, with `reason` and `error` (nothing is hidden)",
            **TRL_FORMAT_DOCS}
    config_rows = "\n".join(f"| `{c}` | " + ", ".join(f"{s} {n}" for s, n in per.items()) + f" | {what.get(c, '')}"
                            + (" (no rows, so not a loadable config)" if not sum(per.values()) else "") + " |"
                            for c, per in rows.items())
    reasons = Counter(r["reason"] for r in rejects)
    from jprefs.publish.licenses import normalize

    src_rows = "\n".join(f"| {HUB_IDS.get(s, s)} | {lc or '(none recorded)'} | {normalize(lc)} | {n} |"
                         for (s, lc), n in sorted(by_source.items()))
    lines = ["---", yaml.safe_dump(meta, allow_unicode=True, sort_keys=False).rstrip(), "---", "",
             unknown_banner(lic), f"# {meta['pretty_name']}", ""]
    if translated:
        lines += [f"Japanese machine translation of {', '.join(sources)}, made with "
                  f"[jprefs](https://github.com/jprefs/jprefs) `translate`.", ""]
    else:
        lines += [f"Preference data in the jprefs canonical format from {', '.join(sources)} "
                  f"(`jprefs data` {'split' if src.kind == 'split' else 'convert / merge'} output).", ""]
    lines += ["## Use", "", "```python", "from datasets import load_dataset",
              f'pairs = load_dataset("{repo_id}", "pairs", split="train")',
              f'dpo = load_dataset("{repo_id}", "trl-conversational", split="train")   # trl DPOTrainer as is'
              if "trl-conversational" in rows else "", "```", "",
              "| config | rows per split | what |", "|---|---|---|", config_rows, "",
              "## Sources and licences", "", "| source | licence as recorded | Hub licence id | rows |",
              "|---|---|---|---|", src_rows, "",
              f"Licence of the whole: **{lic.license}**" + (f" ({lic.license_name})" if lic.license_name else "")
              + ". A conservative reading for this card, not legal advice.", "",
              "Every row keeps its source's licence in its `license` column."
              + (" Each translated row is a derivative of its source row and is under that row's licence."
                 if translated else ""), ""]
    lines += ["## Counts", ""]
    s = src.summary
    if translated and s:
        lines += [f"- input rows {s.get('rows_in', '?')} (rejected while reading {s.get('input_rejects', 0)}); "
                  f"pairs {s.get('pairs_in', '?')}; kept {s.get('pairs_out', '?')}; rejected by the quality checks "
                  f"{s.get('quality_rejects', 0)}; not translated {s.get('rows_untranslated', 0)}",
                  "- flags raised (a row can have several): "
                  + (", ".join(f"{k} {v}" for k, v in (s.get("flags") or {}).items()) or "none")]
    lines += ["- rejects by reason: " + (", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "none"), ""]
    if translated:
        lines += _translation_lines(src, records)
    if src.command:
        lines += ["## Command", "", "```", redact_url(src.command), "```", ""]
    lines += ["## Limitations", ""]
    if translated:
        lines += ["- Machine translation: expect errors; the quality flags catch gross failures only. The "
                  "preference labels are the English annotators', not judged again in Japanese."]
    lines += ["- Preference labels encode their annotators' (or judge's) taste, including any taste for length.",
              "- Built with jprefs; `jprefs_dataset.json` holds these counts and licences as data.", ""]
    return redact_url("\n".join(x for x in lines if x is not None))


def _translation_lines(src: DatasetSource, records: dict) -> list[str]:
    """The translator, template and sampling: from config.yaml, else from the rows' meta.translation."""
    seen: Counter = Counter()
    for rs in records.values():
        for r in rs:
            t = (getattr(r, "meta", None) or {}).get("translation") or {}
            if t:
                seen[(t.get("engine"), t.get("model"), t.get("revision"), t.get("template"), t.get("template_hash"),
                      json.dumps(t.get("sampling"), sort_keys=True))] += 1
    out = ["## Translation", ""]
    for (engine, model, rev, tpl, th, samp), n in sorted(seen.items(), key=lambda kv: -kv[1]):
        out.append(f"- {n} rows: engine `{engine}`, model `{model}`"
                   + (f" @ `{rev}`" if rev else " (revision not pinned)")
                   + f", template `{tpl}` (hash `{th}`), sampling `{samp}`")
    c = src.config
    if c:
        out.append(f"- quality filters: reject on {', '.join(c.get('reject_on') or [])}; Japanese share >= "
                   f"{c.get('min_japanese_ratio')}; length ratio in [{c.get('min_length_ratio')}, "
                   f"{c.get('max_length_ratio')}]" + (f"; similarity >= {c.get('min_similarity')} with "
                                                       f"`{c.get('similarity_model')}`" if c.get("similarity_model")
                                                       else ""))
    if not seen and not c:
        out.append("- (no translation provenance recorded in the rows)")
    out.append("- the translator model's own terms may restrict the use of its outputs: check its licence.")
    return out + [""]
