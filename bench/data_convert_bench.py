"""Benchmark: `jprefs data convert --source hh-rlhf` vs a bare parse of the same file.

Baseline: gzip + json.loads of every line and a plain regex split of both
transcripts (what a throw-away script does, with no validation, no rejects and
no provenance). Candidate: jprefs.data.adapters.convert (validation, edge cases,
rejects, ids, licences). Runs interleaved, reports medians and the ratio.

    python bench/data_convert_bench.py [--path ../shared/data/hh-rlhf/harmless-base-test.jsonl.gz] [--reps 5]
    python bench/data_convert_bench.py --copies 50     # + streaming: peak memory of the CLI, 1 copy vs 50

``--copies N`` also writes the file concatenated N times and runs ``jprefs data convert`` on one
copy and on N under ``/usr/bin/time -v``: peak RSS of each (streaming means the ratio stays near
1) and the end-to-end CLI time (read, convert, write output and rejects) against the bare parse of
the same N-copy file.
"""

import argparse
import gzip
import json
import re
import os
import re as _re
import statistics
import subprocess
import sys
import tempfile
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
    ap.add_argument("--copies", type=int, default=0, help="also measure the CLI's peak memory, 1 copy vs N")
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


    if args.copies:
        streaming(args.path, args.copies)


def _cli(path: str, out: str) -> tuple[float, int]:
    """(wall seconds, peak RSS in kB) of `jprefs data convert` under /usr/bin/time -v."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "jprefs.cli", "data", "convert", path,
           "--source", "hh-rlhf", "-o", out]
    env = dict(os.environ, JPREFS_NO_PROGRESS="1")
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    wall = time.perf_counter() - t
    rss = int(_re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1))
    return wall, rss


def streaming(path: str, copies: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        big = Path(d) / f"x{copies}.jsonl.gz"
        raw = gzip.open(path, "rb").read()
        with gzip.open(big, "wb", compresslevel=1) as f:
            for _ in range(copies):
                f.write(raw)
        w1, m1 = _cli(path, f"{d}/one.jsonl")
        t = time.perf_counter(); n = baseline(big); tb = time.perf_counter() - t
        wn, mn = _cli(str(big), f"{d}/many.jsonl")
        print(f"CLI peak RSS: 1 copy {m1 / 1024:.1f} MB, {copies} copies ({n:,} rows) {mn / 1024:.1f} MB; "
              f"ratio {mn / m1:.2f}x")
        print(f"CLI end-to-end on {copies} copies {wn:.1f} s = {n / wn:,.0f} rows/s (incl. start-up and writing); "
              f"bare parse {tb:.1f} s; ratio {wn / tb:.2f}x")


if __name__ == "__main__":
    main()
