"""Benchmark: `jprefs data convert --source hh-rlhf` vs a bare parse of the same file.

Baseline: gzip + json.loads of every line and a plain regex split of both
transcripts (what a throw-away script does, with no validation, no rejects and
no provenance). Candidate: jprefs.data.adapters.convert (validation, edge cases,
rejects, ids, licences). Runs interleaved, reports medians and the ratio.

    python bench/data_convert_bench.py [--path ../shared/data/hh-rlhf/harmless-base-test.jsonl.gz] [--reps 5]
"""

import argparse
import gzip
import json
import re
import statistics
import time
from pathlib import Path

from jprefs.data.adapters import convert
from jprefs.data.stats import compute_stats

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"
TURN = re.compile(r"\n\n(Human|Assistant):")


def baseline(path):
    n = 0
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            TURN.split(d["chosen"])
            TURN.split(d["rejected"])
            n += 1
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--path", default=str(DEFAULT))
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    tb, tc = [], []
    for _ in range(args.reps):
        t = time.perf_counter(); n = baseline(args.path); tb.append(time.perf_counter() - t)
        t = time.perf_counter(); res = convert(args.path, "hh-rlhf"); tc.append(time.perf_counter() - t)
    b, c = statistics.median(tb), statistics.median(tc)
    print(f"rows {n}; baseline (json + regex) {b*1e3:.1f} ms = {n/b:,.0f} rows/s; "
          f"jprefs convert {c*1e3:.1f} ms = {n/c:,.0f} rows/s; convert / baseline time = {c/b:.2f}x")
    t = time.perf_counter(); compute_stats(res.records); ts = time.perf_counter() - t
    t = time.perf_counter(); compute_stats(res.records, morphemes=False); tn = time.perf_counter() - t
    print(f"stats on {res.rows_out} pairs: {ts:.2f} s with morphemes, {tn:.2f} s without; morpheme cost = {ts/tn:.1f}x")


if __name__ == "__main__":
    main()
