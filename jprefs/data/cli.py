"""``jprefs data``: convert, export, split, merge and summarise preference data.

This module is imported only when ``jprefs data`` runs; it imports nothing heavy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXAMPLES = """examples:
  jprefs data convert harmless-base-test.jsonl.gz --source hh-rlhf -o pairs.jsonl
  jprefs data convert Anthropic/hh-rlhf --split test --source hh-rlhf -o pairs.jsonl      (Hub, online)
  jprefs data convert mine.csv --source jsonl --map prompt=question,chosen=good,rejected=bad --license cc-by-4.0 -o pairs.jsonl
  jprefs data convert ranks.tsv --source ranklist -o ranks.jsonl
  jprefs data export pairs.jsonl --format trl -o trl.parquet
  jprefs data split pairs.jsonl --test-size 0.1 --seed 0 -o splits/
  jprefs data merge a.jsonl b.jsonl -o merged.jsonl
  jprefs data stats pairs.jsonl --json
  jprefs data demo -o demo/            (the bundled offline sample, end to end)"""


def configure(p: argparse.ArgumentParser) -> None:
    p.epilog = EXAMPLES
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    c = sub.add_parser("convert", help="source rows -> canonical pairs (+ OUT.rejects.jsonl)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    c.add_argument("input", help="local file (.jsonl[.gz], .json, .parquet, .csv, .tsv) or a Hub dataset id")
    c.add_argument("--source", required=True, help="adapter: hh-rlhf, webgpt, gptj-pairwise, summarize, jsonl, ranklist, jprefs")
    c.add_argument("--map", dest="mapping", help="field mapping for --source jsonl, e.g. prompt=question,chosen=good,rejected=bad "
                                                 "(dotted paths allowed: prompt=question.full_text; responses=FIELD for rank lists)")
    c.add_argument("-o", "--output", required=True, help="output canonical JSONL")
    c.add_argument("--split", default="train", help="Hub split (default train)")
    c.add_argument("--name", dest="config", help="Hub dataset config name (summarize: comparisons)")
    c.add_argument("--revision", help="Hub revision")
    c.add_argument("--license", help="SPDX licence id to record (overrides the adapter's default)")
    c.add_argument("--require-license", action="store_true", help="fail if any row's licence is unknown")
    c.add_argument("--strict", action="store_true", help="stop at the first bad row with a non-zero exit")
    c.add_argument("--limit", type=int, help="convert only the first N rows")
    c.add_argument("--max-chars", type=int, default=200_000, help="reject rows with a longer text (default 200000)")
    c.add_argument("--json", action="store_true", help="print the summary as JSON")

    e = sub.add_parser("export", help="canonical -> trl | trl-conversational | binary (.jsonl or .parquet)")
    e.add_argument("input")
    e.add_argument("--format", required=True, choices=["trl", "trl-conversational", "binary", "jsonl"])
    e.add_argument("-o", "--output", required=True, help=".jsonl, .jsonl.gz or .parquet")
    e.add_argument("--require-license", action="store_true")

    s = sub.add_parser("split", help="train/test split by prompt (no prompt in both)")
    s.add_argument("input")
    s.add_argument("--test-size", type=float, default=0.1, help="fraction (<1) or number of rows (>=1) for test")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("-o", "--output", required=True, help="directory for train.jsonl and test.jsonl")

    m = sub.add_parser("merge", help="merge canonical files, de-duplicating by normalised content")
    m.add_argument("inputs", nargs="+")
    m.add_argument("-o", "--output", required=True)
    m.add_argument("--require-license", action="store_true")

    t = sub.add_parser("stats", help="counts, lengths (chars, morphemes), script mix, licences")
    t.add_argument("input")
    t.add_argument("--json", action="store_true")
    t.add_argument("--no-morphemes", action="store_true", help="skip morpheme counts (faster on huge files)")

    d = sub.add_parser("demo", help="convert, split, export and summarise the bundled offline samples")
    d.add_argument("-o", "--output", default="jprefs-demo", help="output directory (default jprefs-demo/)")
    d.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    return {"convert": _convert, "export": _export, "split": _split, "merge": _merge,
            "stats": _stats, "demo": _demo}[args.action](args)


def _print_summary(summary: dict, as_json: bool, out: Path, rejects: Path) -> None:
    if as_json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
        return
    lic = ", ".join(f"{k} {v}" for k, v in summary["licenses"].items()) or "-"
    print(f"{summary['input']} (source {summary['source']}; licences: {lic})")
    print(f"  rows in {summary['rows_in']} = out {summary['rows_out']} + rejected {summary['rows_rejected']}"
          f"   (pairs {summary['pairs_out']})")
    for k, v in summary["rejects_by_reason"].items():
        print(f"    rejected {k}: {v}")
    for k, v in summary["notes"].items():
        print(f"    note {k}: {v}")
    print(f"  wrote {out} and {rejects}")


def _convert(args) -> int:
    from jprefs.data.adapters import convert
    from jprefs.data.io import rejects_path_for, write_jsonl
    from jprefs.data.provenance import check_licenses

    res = convert(args.input, args.source, mapping=args.mapping, split=args.split, config=args.config,
                  revision=args.revision, license=args.license, strict=args.strict, limit=args.limit,
                  max_chars=args.max_chars, show_progress=True)
    assert res.rows_in == res.rows_out + len(res.rejects), "row accounting broken"
    check_licenses(res.records, action="convert", require=args.require_license)
    out = Path(args.output)
    rej = rejects_path_for(out)
    write_jsonl(out, res.records)
    write_jsonl(rej, res.rejects)
    _print_summary(res.summary(), args.json, out, rej)
    return 0


def _load_records(path: str):
    from jprefs.data.io import read_records

    return read_records(path)


def _export(args) -> int:
    from jprefs.data.export import export_rows
    from jprefs.data.io import write_rows
    from jprefs.data.provenance import check_licenses

    recs = _load_records(args.input)
    check_licenses(recs, action="export", require=args.require_license)
    rows = export_rows(recs, args.format)
    n = write_rows(args.output, rows)
    print(f"exported {len(recs)} records -> {n} {args.format} rows: {args.output}")
    return 0


def _split(args) -> int:
    from jprefs.data.io import write_jsonl
    from jprefs.data.schema import prompt_key
    from jprefs.data.split import split_by_prompt

    recs = _load_records(args.input)
    train, test = split_by_prompt(recs, args.test_size, args.seed)
    train_keys, test_keys = {prompt_key(r.prompt) for r in train}, {prompt_key(r.prompt) for r in test}
    assert not train_keys & test_keys, "prompt leakage between splits"
    out = Path(args.output)
    write_jsonl(out / "train.jsonl", train)
    write_jsonl(out / "test.jsonl", test)
    print(f"split {len(recs)} records by prompt (seed {args.seed}): train {len(train)}, test {len(test)}; "
          f"prompts train {len(train_keys)}, test {len(test_keys)}"
          f" -> {out}/train.jsonl, {out}/test.jsonl")
    return 0


def _merge(args) -> int:
    from jprefs.data.io import iter_records, rejects_path_for, write_jsonl
    from jprefs.data.merge import merge_records
    from jprefs.data.provenance import check_licenses
    from jprefs.errors import DataError

    inputs = []
    for path in args.inputs:
        recs = []
        for row, rec in iter_records(path):
            if rec is None:
                raise DataError(row.error or "bad row", path=path, line=row.locator,
                                fix="merge takes canonical files: create them with `jprefs data convert`")
            recs.append((row.locator, rec))
        inputs.append((path, recs))
    res = merge_records(inputs)
    check_licenses(res.records, action="merge", require=args.require_license)
    out = Path(args.output)
    rej = rejects_path_for(out)
    write_jsonl(out, res.records)
    write_jsonl(rej, res.rejects)
    s = res.summary()
    print(f"merged {len(args.inputs)} files: rows in {s['rows_in']} = out {s['rows_out']} + rejected {s['rows_rejected']}")
    for k, v in s["rejects_by_reason"].items():
        print(f"    {k}: {v}")
    print(f"  licences: {', '.join(f'{k} {v}' for k, v in s['licenses'].items())}")
    print(f"  wrote {out} and {rej}")
    return 0


def _stats(args) -> int:
    from jprefs.data.stats import compute_stats, format_stats

    recs = _load_records(args.input)
    s = compute_stats(recs, morphemes=not args.no_morphemes)
    print(json.dumps(s, ensure_ascii=False, indent=2) if args.json else format_stats(s))
    return 0


def _demo(args) -> int:
    from jprefs.data.demo import run_demo

    summary = run_demo(Path(args.output))
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    return 0
