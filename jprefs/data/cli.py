"""``jprefs data``: convert, export, split, merge and summarise preference data.

This module is imported only when ``jprefs data`` runs; it imports nothing heavy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from jprefs.config import arg_float
from jprefs.runlock import holds_output

EXAMPLES = """examples:
  jprefs data convert harmless-base-test.jsonl.gz --source hh-rlhf -o pairs.jsonl
  jprefs data convert Anthropic/hh-rlhf --split test --source hh-rlhf -o pairs.jsonl      (Hub, online)
  jprefs data convert mine.csv --source jsonl --map prompt=question,chosen=good,rejected=bad --license cc-by-4.0 -o pairs.jsonl
  jprefs data convert ranks.tsv --source ranklist -o ranks.jsonl
  jprefs data convert judgments.jsonl --source fastchat-pairwise --license apache-2.0 -o pairs.jsonl   (MT-bench-style verdicts)
  jprefs data export pairs.jsonl --format trl -o trl.parquet
  jprefs data export pairs.jsonl --format trl-unpaired -o kto.jsonl        (KTO: prompt/completion/label)
  jprefs data split pairs.jsonl --test-size 0.1 --seed 0 -o splits/
  jprefs data merge a.jsonl b.jsonl -o merged.jsonl
  jprefs data stats pairs.jsonl --json
  jprefs data rm-pairs cands.jsonl --reward out/rm -o pairs.jsonl      (label candidates -> RM-labelled pairs for DPO)
  jprefs data group model-a.json model-b.json model-c.json --map prompt=Question,response=ModelAnswer,score=score -o graded.jsonl
  jprefs data rm-pairs graded.jsonl --scores scores --pairs all --min-margin 2 --length-balance -o pairs.jsonl
  jprefs data group --fastchat FastChat/fastchat/llm_judge/data/japanese_mt_bench --license apache-2.0 -o graded.jsonl
  jprefs data demo -o demo/            (the bundled offline sample, end to end)"""


def configure(p: argparse.ArgumentParser) -> None:
    p.epilog = EXAMPLES
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    c = sub.add_parser("convert", help="source rows -> canonical pairs (+ OUT.rejects.jsonl)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    c.add_argument("input", help="local file (.jsonl[.gz], .json, .parquet, .csv, .tsv) or a Hub dataset id")
    c.add_argument("--source", required=True, help="adapter: hh-rlhf, webgpt, gptj-pairwise, summarize, "
                                                   "fastchat-pairwise, mt-bench-human, jsonl, ranklist, jprefs")
    c.add_argument("--map", dest="mapping", help="field mapping for --source jsonl, e.g. prompt=question,chosen=good,rejected=bad "
                                                 "(dotted paths allowed: prompt=question.full_text; responses=FIELD for rank lists)")
    c.add_argument("-o", "--output", required=True, help="output canonical JSONL")
    c.add_argument("--split", default=None, help="Hub split (default train; mt-bench-human: human)")
    c.add_argument("--name", dest="config", help="Hub dataset config name (summarize: comparisons)")
    c.add_argument("--revision", help="Hub revision")
    c.add_argument("--license", help="SPDX licence id to record (overrides the adapter's default)")
    c.add_argument("--require-license", action="store_true", help="fail if any row's licence is unknown")
    c.add_argument("--strict", action="store_true", help="stop at the first bad row with a non-zero exit")
    c.add_argument("--limit", type=int, help="convert only the first N rows")
    c.add_argument("--max-chars", type=int, default=200_000, help="reject rows with a longer text (default 200000)")
    c.add_argument("--field", help="for a .json file whose top level is an object: the field holding the list of rows")
    c.add_argument("--answers", metavar="DATA_DIR", help="fastchat-pairwise: the FastChat llm_judge benchmark folder "
                   "(question.jsonl, model_answer/) holding the questions and answers the judgment rows name by id "
                   "(FastChat's own model_judgment/*_pair.jsonl; turn 1)")
    c.add_argument("--json", action="store_true", help="print the summary as JSON")

    from jprefs.data.export import FORMATS  # light: schema and errors only

    e = sub.add_parser("export", help="canonical -> trl | trl-conversational | trl-unpaired | binary (.jsonl or .parquet)")
    e.add_argument("input")
    e.add_argument("--format", required=True, choices=list(FORMATS),
                   help="trl / trl-conversational: preference pairs (DPO, reward); trl-unpaired[-conversational]: "
                        "prompt/completion/label rows (KTO); binary: prompt/response/label 1|0; jsonl: canonical")
    e.add_argument("-o", "--output", required=True, help=".jsonl, .jsonl.gz or .parquet")
    e.add_argument("--require-license", action="store_true")

    s = sub.add_parser("split", help="train/test split by prompt (no prompt in both)")
    s.add_argument("input")
    s.add_argument("--test-size", type=arg_float("> 0"), default=0.1, help="fraction (<1) or number of rows (>=1) for test")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("-o", "--output", required=True, help="directory for train.jsonl and test.jsonl")

    m = sub.add_parser("merge", help="merge canonical files, de-duplicating by normalised content")
    m.add_argument("inputs", nargs="+")
    m.add_argument("-o", "--output", required=True)
    m.add_argument("--require-license", action="store_true")
    m.add_argument("--json", action="store_true", help="print the summary as JSON")

    t = sub.add_parser("stats", help="counts, lengths (chars, morphemes), script mix, licences")
    t.add_argument("input")
    t.add_argument("--json", action="store_true")
    t.add_argument("--no-morphemes", action="store_true", help="skip morpheme counts (faster on huge files)")

    from jprefs.data import rm_pairs  # light: imports nothing heavy until it runs

    r = sub.add_parser("rm-pairs", help="K candidates per prompt -> chosen/rejected pairs scored by a reward model "
                                        "(+ OUT.rejects.jsonl, OUT.summary.json)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    rm_pairs.configure(r)

    from jprefs.data import group  # light

    g = sub.add_parser("group", help="graded answers, one row each -> one row per prompt with responses and scores "
                                     "(the input of rm-pairs --scores; + OUT.rejects.jsonl)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    group.configure(g)

    d = sub.add_parser("demo", help="convert, split, export and summarise the bundled offline samples")
    d.add_argument("-o", "--output", default="jprefs-demo", help="output directory (default jprefs-demo/)")
    d.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    return {"convert": _convert, "export": _export, "split": _split, "merge": _merge,
            "stats": _stats, "demo": _demo, "rm-pairs": _rm_pairs, "group": _group}[args.action](args)


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


@holds_output("jprefs data convert", folder=False)
def _convert(args) -> int:
    from jprefs.data.adapters import Conversion, convert_to_files
    from jprefs.data.io import rejects_path_for
    from jprefs.errors import DataError

    conv = Conversion(args.input, args.source, mapping=args.mapping, split=args.split, config=args.config,
                      revision=args.revision, license=args.license, strict=args.strict, limit=args.limit,
                      max_chars=args.max_chars, field=args.field, show_progress=True, answers=args.answers)
    out = Path(args.output)
    rej = rejects_path_for(out)
    summary = convert_to_files(conv, out, rej, require_license=args.require_license)
    _print_summary(summary, args.json, out, rej)
    if summary["rows_out"] == 0:
        reasons = ", ".join(f"{k} {v}" for k, v in summary["rejects_by_reason"].items()) or "the input has no rows"
        raise DataError(f"no rows were kept out of {summary['rows_in']} ({reasons})", path=str(args.input),
                        fix=f"see {rej} for each row's reason; for --source jsonl name the fields with "
                            f"--map prompt=...,chosen=...,rejected=...")
    return 0


def _no_records(path: str, action: str, why: str = "the file is empty"):
    from jprefs.errors import DataError

    return DataError(f"no records to {action} ({why})", path=str(path),
                     fix="check the path; create canonical records with `jprefs data convert`")


def _records_checked(path: str, action: str, require: bool):
    """Canonical records of ``path`` one at a time; after the last one the licences are checked, so that
    a streaming writer fed from here fails (and writes nothing) when ``require`` finds unknown ones."""
    from jprefs.data.io import stream_records
    from jprefs.data.provenance import check_license_counts
    from jprefs.data.schema import UNKNOWN_LICENSE

    counts: dict[str, int] = {}
    unknown: set[str] = set()
    for rec in stream_records(path):
        lic = rec.license or UNKNOWN_LICENSE
        counts[lic] = counts.get(lic, 0) + 1
        if lic == UNKNOWN_LICENSE:
            unknown.add(rec.source)
        yield rec
    if not counts:
        raise _no_records(path, action)
    check_license_counts(counts, unknown, action=action, require=require)


def _export(args) -> int:
    from jprefs.data.export import iter_export_rows
    from jprefs.data.io import eprint, write_rows

    n_rec = [0]

    def records():
        for r in _records_checked(args.input, "export", args.require_license):
            n_rec[0] += 1
            yield r

    labels: dict[bytes, int] = {}         # labelled formats: (prompt, response) digest -> 1 seen as 1|True, 2 as 0|False

    def counted(rows):
        import hashlib

        for row in rows:
            if "label" in row:
                resp = row.get("completion", row.get("response"))
                k = hashlib.sha256(json.dumps([row.get("prompt"), resp], ensure_ascii=False,
                                              sort_keys=True).encode("utf-8")).digest()[:16]
                labels[k] = labels.get(k, 0) | (1 if row["label"] in (1, True) else 2)
            yield row

    n = write_rows(args.output, counted(iter_export_rows(records(), args.format)), fmt=args.format)
    print(f"exported {n_rec[0]} records -> {n} {args.format} rows: {args.output}")
    both = sum(v == 3 for v in labels.values())
    if both:
        # trl's unpair_preference_dataset does the same (chosen -> True, rejected -> False per pair); say so, as a
        # response preferred in one pair and not in another is in the file as desirable and as undesirable
        eprint(f"WARNING: {both} of {len(labels)} distinct (prompt, response) rows are labelled both 1 and 0 in "
               f"{args.output}: each is chosen in one pair and rejected in another (a middle answer), so a KTO or "
               f"binary model sees both labels for the same text. To leave them out, train on pairs "
               f"(--format trl, DPO / reward models) or keep one pair per prompt before exporting")
    return 0


@holds_output("jprefs data split", folder=True)
def _split(args) -> int:
    from jprefs.data.io import AtomicWriter, stream_records
    from jprefs.data.split import choose_test_groups

    # Two passes, holding only prompt keys: the first counts rows per prompt, the second writes.
    sizes: dict[str, int] = {}
    for r in stream_records(args.input):
        sizes[r.prompt_key] = sizes.get(r.prompt_key, 0) + 1
    if not sizes:
        raise _no_records(args.input, "split")
    test_keys = choose_test_groups(sizes, args.test_size, args.seed)
    out = Path(args.output)
    n = {"train": 0, "test": 0}
    with AtomicWriter(out / "train.jsonl") as ftr, AtomicWriter(out / "test.jsonl") as fte:
        for r in stream_records(args.input):
            side = "test" if r.prompt_key in test_keys else "train"
            (fte if side == "test" else ftr).write_json(r.to_dict())
            n[side] += 1
    total = sum(n.values())
    print(f"split {total} records by prompt (seed {args.seed}): train {n['train']}, test {n['test']}; "
          f"prompts train {len(sizes) - len(test_keys)}, test {len(test_keys)}"
          f" -> {out}/train.jsonl, {out}/test.jsonl")
    return 0


@holds_output("jprefs data merge", folder=False)
def _merge(args) -> int:
    from jprefs.data.io import AtomicWriter, row_error, iter_records, rejects_path_for
    from jprefs.data.merge import Merge
    from jprefs.data.provenance import check_license_counts

    def records(path):
        for row, rec in iter_records(path):
            if rec is None:
                raise row_error(path, row, "merge takes canonical files: create them with `jprefs data convert`")
            yield row.locator, rec

    m = Merge()
    out = Path(args.output)
    rej = rejects_path_for(out)
    with AtomicWriter(out) as fo, AtomicWriter(rej) as fr:
        for rec, reject in m.outcomes((path, records(path)) for path in args.inputs):
            if rec is not None:
                fo.write_json(rec.to_dict())
            else:
                fr.write_json(reject)
        if not m.rows_in:
            raise _no_records(" + ".join(args.inputs), "merge", "every input is empty")
        check_license_counts(dict(m.licenses), m.unknown_sources, action="merge", require=args.require_license)
    s = m.summary()
    if args.json:
        print(json.dumps(s, ensure_ascii=False, indent=2))
        return 0
    print(f"merged {len(args.inputs)} files: rows in {s['rows_in']} = out {s['rows_out']} + rejected {s['rows_rejected']}")
    for k, v in s["rejects_by_reason"].items():
        print(f"    {k}: {v}")
    print(f"  licences: {', '.join(f'{k} {v}' for k, v in s['licenses'].items())}")
    print(f"  wrote {out} and {rej}")
    return 0


def _stats(args) -> int:
    from jprefs.data.io import stream_records
    from jprefs.data.stats import compute_stats, format_stats

    s = compute_stats(stream_records(args.input), morphemes=not args.no_morphemes)
    if not s["records"]:        # zeros would read as a summary of a file that holds nothing
        raise _no_records(args.input, "summarise", "the file has no rows")
    print(json.dumps(s, ensure_ascii=False, indent=2) if args.json else format_stats(s))
    return 0


def _group(args) -> int:
    from jprefs.data.group import run as run_group

    return run_group(args)


def _rm_pairs(args) -> int:
    from jprefs.data.rm_pairs import run as run_rm_pairs

    return run_rm_pairs(args)


@holds_output("jprefs data demo", folder=True)
def _demo(args) -> int:
    from jprefs.data.demo import run_demo

    summary = run_demo(Path(args.output), verbose=not args.json)      # --json: stdout is the JSON alone
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    return 0
