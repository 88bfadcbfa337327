"""Picking the next item in a labelling job: the ``orders`` table's indexed query against the code
before it (every item hashed and sorted on each request, loaded from git at ``--base``), same process,
same operations, interleaved.

Per job size: a rank job with overlap 2 and three annotators; each annotator asks for an item and
labels it, round-robin. Timed: the median of ``next_item`` + ``submit`` over the first ``--labels``
round trips and over ``--labels`` round trips after ``--done`` of the items have been labelled twice
(late in a job, where a scan from the start of an order skips the most; the slowest of them too:
the third annotator, whose order starts with items the other two have completed). The first request of each
annotator (which fills its order) is timed apart.

    python bench/label_assign_bench.py --sizes 2000,20000,100000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jprefs.label import store as new_store  # noqa: E402

NAMES = ("sato", "suzuki", "tanaka")


def old_module(rev: str):
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:jprefs/label/store.py"], check=True,
                         capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "store_before.py"
    path.write_text(src, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("store_before", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build(mod, folder: Path, n: int):
    st = mod.Store(folder / "l.sqlite")
    st.init_job(mode="rank", overlap=2, seed=0)
    st.add_items((f"p{i}", {"prompt": f"質問{i}", "responses": ["a", "b"]}, f"x.jsonl:{i}") for i in range(n))
    return st


def round_trips(st, k: int, start: int = 0) -> list[float]:
    times = []
    for j in range(k):
        who = NAMES[(start + j) % len(NAMES)]
        t = time.perf_counter()
        item = st.next_item(who)
        st.submit(who, item["item_id"], {"order": [0, 1], "all_bad": False})
        times.append(time.perf_counter() - t)
    return times


def measure(mod, n: int, labels: int, done: float) -> dict:
    with tempfile.TemporaryDirectory() as d:
        st = build(mod, Path(d), n)
        t = time.perf_counter()
        for who in NAMES:
            st.next_item(who)
        first = (time.perf_counter() - t) / len(NAMES)
        early = round_trips(st, labels)
        st.close()
    with tempfile.TemporaryDirectory() as d:
        st = build(mod, Path(d), n)
        # the labelled items are the first of the annotators' own orders (what a real job has done)
        order = sorted(range(n), key=lambda i: new_store.order_key(0, NAMES[0], f"p{i}"))
        n_done = int(done * n)
        with st.write() as c:
            for i in order[:n_done]:
                for who in NAMES[:2]:
                    cur = c.execute("INSERT INTO events (item_id, annotator, kind, value, elapsed_ms, created) "
                                    "VALUES (?, ?, 'label', ?, NULL, ?)", (f"p{i}", who, '{"order": [0, 1]}', "t"))
                    c.execute("INSERT INTO state (annotator, item_id, label_event, skip_event) "
                              "VALUES (?, ?, ?, NULL)", (who, f"p{i}", cur.lastrowid))
        for who in NAMES:
            st.next_item(who)
        late = round_trips(st, labels)
        st.close()
    return {"first_request_s": first, "early_median_s": statistics.median(early),
            "late_median_s": statistics.median(late), "late_max_s": max(late)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="2000,20000,100000")
    ap.add_argument("--labels", type=int, default=30)
    ap.add_argument("--done", type=float, default=0.5, help="share of items labelled twice before 'late'")
    ap.add_argument("--base", default="83a9b07", help="the commit whose store.py is the baseline")
    ap.add_argument("-o", "--output", default="bench/results/label-assign.json")
    args = ap.parse_args()
    before = old_module(args.base)
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        b = measure(before, n, args.labels, args.done)
        a = measure(new_store, n, args.labels, args.done)
        row = {"items": n, "before": b, "after": a,
               "early_ratio": b["early_median_s"] / a["early_median_s"],
               "late_ratio": b["late_median_s"] / a["late_median_s"]}
        rows.append(row)
        print(f"{n:>7} items: round trip early {b['early_median_s'] * 1e3:7.1f} -> {a['early_median_s'] * 1e3:6.1f} ms "
              f"({row['early_ratio']:.1f}x), late ({args.done:.0%} done) {b['late_median_s'] * 1e3:7.1f} -> "
              f"{a['late_median_s'] * 1e3:6.1f} ms ({row['late_ratio']:.1f}x; slowest {b['late_max_s'] * 1e3:.1f} -> "
              f"{a['late_max_s'] * 1e3:.1f} ms); first request "
              f"{b['first_request_s'] * 1e3:.0f} / {a['first_request_s'] * 1e3:.0f} ms", flush=True)
    out = ROOT / args.output
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
