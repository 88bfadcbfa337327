"""Picking the next item in a labelling job: the frontier (``orders.mine`` / ``orders.labels``, one
indexed seek per label count) against the query before it (a walk of the annotator's order from its
start, with correlated subqueries per row), same process, same operations, interleaved.

Two databases are built the same way per case. "after" is :class:`jprefs.label.store.Store` as it
is. "before" is the same store with the frontier's triggers and indexes dropped (so a submission
costs what it did before) and picked by :func:`next_item_before`, the previous ``next_item``
verbatim. Both must pick the same item at every step (checked). Timed, as medians over ``--labels``
requests, the pick (``next_item``) and the round trip (``next_item`` + ``submit``):

- ``early``: a rank job with overlap 2 and three annotators, from its start, round-robin;
- ``late``: the same after ``--done`` of the items were labelled twice (the first of the first
  annotator's order: the third annotator's order starts with items the other two completed);
- ``prefix``: a rank job with overlap 1 where the first annotator has labelled the first
  ``--prefix`` of their own order (19,000 of 20,000 at the default): only they ask;
- ``finished``: a reward job whose every item is scored, polled by its annotator's page (every
  1.5 s in the browser): the pick finds nothing.

The first request of each annotator (which fills its order) is timed apart. Every request is a
write transaction (it takes a claim), so on a disk its median is mostly the commit's fsync, the same
for both; ``--dir /dev/shm`` times the queries.

    python bench/label_assign_bench.py --sizes 2000,20000,100000 --dir /dev/shm
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jprefs.label import store as S  # noqa: E402

NAMES = ("sato", "suzuki", "tanaka")
VALUE = {"order": [0, 1], "all_bad": False}


def next_item_before(st: S.Store, annotator: str, *, now: float | None = None) -> dict | None:
    """``Store.next_item`` before the frontier, verbatim (with its ``_fill_order``): the baseline."""
    now = time.time() if now is None else now
    overlap = int(st.get_meta("overlap", 1))
    seed = int(st.get_meta("seed", 0))
    arrival = st.get_meta("mode") == "reward"
    q = {"a": annotator, "overlap": overlap}
    with st.write() as c:
        c.execute("DELETE FROM claims WHERE at < ?", (now - S.CLAIM_TTL_S,))
        row = c.execute(
            "SELECT i.item_id FROM claims k JOIN items i ON i.item_id = k.item_id WHERE k.annotator = :a "
            "AND NOT EXISTS (SELECT 1 FROM state s WHERE s.annotator = :a AND s.item_id = k.item_id "
            "AND s.label_event IS NOT NULL) ORDER BY i.pos, i.item_id LIMIT 1", q).fetchone()
        if row is None:
            if arrival:
                source, by = "items o WHERE 1", "o.pos, o.item_id"
            else:
                n = c.execute("SELECT COALESCE(MAX(pos), -1) + 1 FROM items").fetchone()[0]
                have = c.execute("SELECT items FROM ordered WHERE annotator = ?", (annotator,)).fetchone()
                if have is None or have[0] != n:
                    missing = c.execute("SELECT item_id FROM items WHERE item_id NOT IN "
                                        "(SELECT item_id FROM orders WHERE annotator = ?)", (annotator,)).fetchall()
                    c.executemany("INSERT INTO orders (annotator, item_id, okey) VALUES (?, ?, ?)",
                                  ((annotator, r[0], S.order_key(seed, annotator, r[0])) for r in missing))
                    c.execute("INSERT OR REPLACE INTO ordered (annotator, items) VALUES (?, ?)", (annotator, n))
                source, by = "orders o WHERE o.annotator = :a", "o.okey, o.item_id"
            free = ("(SELECT COUNT(*) FROM state s WHERE s.item_id = o.item_id AND s.label_event IS NOT NULL "
                    "AND s.annotator != :a) + (SELECT COUNT(*) FROM claims k WHERE k.item_id = o.item_id AND "
                    "k.annotator != :a AND NOT EXISTS (SELECT 1 FROM state s WHERE s.item_id = k.item_id AND "
                    "s.annotator = k.annotator AND s.label_event IS NOT NULL)) < :overlap")
            row = c.execute(
                f"SELECT o.item_id FROM {source} AND NOT EXISTS (SELECT 1 FROM state s WHERE "
                f"s.annotator = :a AND s.item_id = o.item_id) AND {free} ORDER BY {by} LIMIT 1", q).fetchone()
            if row is None:
                row = c.execute(
                    f"SELECT o.item_id FROM {source} AND EXISTS (SELECT 1 FROM state s WHERE s.annotator = :a "
                    f"AND s.item_id = o.item_id AND s.label_event IS NULL) AND {free} "
                    f"ORDER BY {by} LIMIT 1", q).fetchone()
        if row is None:
            return None
        item_id = row["item_id"]
        c.execute("INSERT OR REPLACE INTO claims (item_id, annotator, at) VALUES (?, ?, ?)", (item_id, annotator, now))
        row = c.execute("SELECT * FROM items WHERE item_id = ?", (item_id,)).fetchone()
    return st._item(row)


def as_before(st: S.Store) -> S.Store:
    """The schema before the frontier: its triggers and indexes dropped (a submission then writes what
    it wrote before, and nothing keeps ``mine`` / ``labels``, which ``next_item_before`` never reads),
    the walk's index ``orders_by_key`` back."""
    with st.write() as c:
        for t in ("mine_insert", "mine_update", "mine_delete", "labels_insert", "labels_update", "labels_delete"):
            c.execute(f"DROP TRIGGER orders_{t}")
        c.execute("DROP INDEX orders_frontier")
        c.execute("CREATE INDEX orders_by_key ON orders (annotator, okey, item_id)")
    return st


def build(folder: Path, n: int, *, mode: str, overlap: int, done: dict[str, list[int]]) -> S.Store:
    """A job of ``n`` items with ``done[annotator]``'s items already labelled (as events and state,
    as ``submit`` writes them, without ``n`` transactions)."""
    st = S.Store(folder / "l.sqlite")
    st.init_job(mode=mode, overlap=overlap, seed=0)
    st.add_items((f"p{i}", {"prompt": f"質問{i}", "responses": ["a", "b"]}, f"x.jsonl:{i}") for i in range(n))
    with st.write() as c:
        for who, items in done.items():
            for i in items:
                cur = c.execute("INSERT INTO events (item_id, annotator, kind, value, elapsed_ms, created) "
                                "VALUES (?, ?, 'label', ?, NULL, ?)", (f"p{i}", who, json.dumps(VALUE), "t"))
                c.execute("INSERT INTO state (annotator, item_id, label_event, skip_event) VALUES (?, ?, ?, NULL)",
                          (who, f"p{i}", cur.lastrowid))
    return st


def run_case(n: int, k: int, *, mode: str, overlap: int, done: dict, askers: tuple[str, ...],
             submit: bool = True, folder: str | None = None) -> dict:
    """Both stores side by side: each asker's first request, then ``k`` requests (round-robin over
    ``askers``), alternating before / after at every step."""
    with tempfile.TemporaryDirectory(dir=folder) as d:
        stores = {"before": as_before(build(Path(d) / "b", n, mode=mode, overlap=overlap, done=done)),
                  "after": build(Path(d) / "a", n, mode=mode, overlap=overlap, done=done)}
        pick = {"before": lambda who: next_item_before(stores["before"], who),
                "after": lambda who: stores["after"].next_item(who)}
        first = {v: [] for v in stores}
        picks = {v: [] for v in stores}
        trips = {v: [] for v in stores}
        for j in range(-len(askers), k):
            who = askers[j % len(askers)]
            got = {}
            for v in (("before", "after") if j % 2 else ("after", "before")):
                t = time.perf_counter()
                item = pick[v](who)
                t_pick = time.perf_counter() - t
                if item is not None and submit:
                    stores[v].submit(who, item["item_id"], VALUE)
                t_trip = time.perf_counter() - t
                got[v] = item and item["item_id"]
                if j < 0:
                    first[v].append(t_pick)
                else:
                    picks[v].append(t_pick)
                    trips[v].append(t_trip)
            assert got["before"] == got["after"], (j, who, got)        # the same rule
        for st in stores.values():
            st.close()
    out = {v: {"first_request_s": statistics.mean(first[v]), "pick_median_s": statistics.median(picks[v]),
               "pick_max_s": max(picks[v]), "round_trip_median_s": statistics.median(trips[v])} for v in stores}
    out["pick_ratio"] = out["before"]["pick_median_s"] / out["after"]["pick_median_s"]
    out["round_trip_ratio"] = out["before"]["round_trip_median_s"] / out["after"]["round_trip_median_s"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="2000,20000,100000")
    ap.add_argument("--labels", type=int, default=30, help="timed requests per case")
    ap.add_argument("--done", type=float, default=0.5, help="'late': share of items labelled twice")
    ap.add_argument("--prefix", type=float, default=0.95, help="'prefix': share of the first annotator's order "
                                                              "they have labelled")
    ap.add_argument("--dir", default=None, help="where the databases go (default: the temp folder); /dev/shm "
                                                "leaves out the disk's fsync, which both pay alike")
    ap.add_argument("-o", "--output", default="bench/results/label-assign.json")
    args = ap.parse_args()
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        order = sorted(range(n), key=lambda i: S.order_key(0, NAMES[0], f"p{i}"))
        cases = {
            "early": dict(mode="rank", overlap=2, done={}, askers=NAMES),
            "late": dict(mode="rank", overlap=2, done={w: order[:int(args.done * n)] for w in NAMES[:2]},
                         askers=NAMES),
            "prefix": dict(mode="rank", overlap=1, done={NAMES[0]: order[:int(args.prefix * n)]},
                           askers=NAMES[:1]),
            "finished": dict(mode="reward", overlap=1, done={NAMES[0]: list(range(n))}, askers=NAMES[:1],
                             submit=False),
        }
        row = {"items": n}
        for name, kw in cases.items():
            r = row[name] = run_case(n, args.labels, folder=args.dir, **kw)
            b, a = r["before"], r["after"]
            print(f"{n:>7} items, {name:>8}: pick {b['pick_median_s'] * 1e3:7.2f} -> "
                  f"{a['pick_median_s'] * 1e3:5.2f} ms "
                  f"({r['pick_ratio']:6.1f}x; slowest {b['pick_max_s'] * 1e3:.2f} -> {a['pick_max_s'] * 1e3:.2f} ms), "
                  f"round trip {b['round_trip_median_s'] * 1e3:7.2f} -> {a['round_trip_median_s'] * 1e3:5.2f} ms "
                  f"({r['round_trip_ratio']:5.1f}x); first request {b['first_request_s'] * 1e3:.0f} / "
                  f"{a['first_request_s'] * 1e3:.0f} ms", flush=True)
        rows.append(row)
    out = ROOT / args.output
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
