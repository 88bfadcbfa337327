"""The offline demo: every data step on the samples bundled with jprefs.

``jprefs data demo -o DIR`` converts one small sample per source schema (written
for jprefs, in the exact Hub layouts), merges them, splits by prompt, exports the
trl and binary formats and prints statistics. It needs no network and finishes
in about a second, so it is the first command a new user runs.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# (sample file, adapter, extra options): the licences are the samples' own (written for jprefs, Apache-2.0).
SAMPLES = [
    ("hh-rlhf.jsonl", "hh-rlhf", {}),
    ("webgpt.jsonl", "webgpt", {}),
    ("gptj-pairwise.jsonl", "gptj-pairwise", {}),
    ("summarize.jsonl", "summarize", {}),
    ("ja-pairs.jsonl", "jsonl", {"mapping": "prompt=question,chosen=good,rejected=bad"}),
    ("ranklist.tsv", "ranklist", {}),
]


def sample_path(name: str) -> Path:
    """Path of a bundled sample file."""
    return Path(str(resources.files("jprefs") / "resources" / "samples" / name))


def run_demo(out: Path, *, verbose: bool = True) -> dict:
    from jprefs.data.adapters import convert
    from jprefs.data.export import export_rows
    from jprefs.data.io import rejects_path_for, write_jsonl, write_rows
    from jprefs.data.merge import merge_records
    from jprefs.data.split import split_by_prompt
    from jprefs.data.stats import compute_stats, format_stats

    say = print if verbose else (lambda *a, **k: None)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"convert": []}
    converted = []
    say("== convert (one bundled sample per source schema; licence recorded as the sample's own: apache-2.0)")
    for name, source, opts in SAMPLES:
        res = convert(sample_path(name), source, license="apache-2.0", **opts)
        dest = out / "converted" / f"{source}.jsonl"
        write_jsonl(dest, res.records)
        write_jsonl(rejects_path_for(dest), res.rejects)
        s = res.summary()
        summary["convert"].append(s)
        reasons = ", ".join(f"{k} {v}" for k, v in s["rejects_by_reason"].items()) or "none"
        say(f"  {source:<14} rows {s['rows_in']:>2} = out {s['rows_out']:>2} + rejected {s['rows_rejected']} ({reasons})")
        converted.append((str(dest), [(i + 1, r) for i, r in enumerate(res.records)]))
    merged = merge_records(converted)
    write_jsonl(out / "pairs.jsonl", merged.records)
    write_jsonl(out / "pairs.rejects.jsonl", merged.rejects)
    summary["merge"] = merged.summary()
    say(f"== merge: {merged.rows_in} -> {len(merged.records)} records ({len(merged.rejects)} duplicates) -> {out / 'pairs.jsonl'}")
    train, test = split_by_prompt(merged.records, test_size=0.25, seed=0)
    write_jsonl(out / "splits" / "train.jsonl", train)
    write_jsonl(out / "splits" / "test.jsonl", test)
    summary["split"] = {"train": len(train), "test": len(test)}
    say(f"== split by prompt (seed 0): train {len(train)}, test {len(test)} -> {out / 'splits'}")
    for fmt, fname in (("trl", "trl.jsonl"), ("trl-conversational", "trl-conversational.jsonl"), ("binary", "binary.jsonl")):
        n = write_rows(out / "export" / fname, export_rows(merged.records, fmt))
        say(f"== export {fmt}: {n} rows -> {out / 'export' / fname}")
    stats = compute_stats(merged.records)
    summary["stats"] = stats
    say("== stats\n" + format_stats(stats))
    return summary
