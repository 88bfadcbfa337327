"""The pick's frontier (``orders.mine`` / ``orders.labels``): the same item as the query it replaced,
under random sessions; a cost that does not grow with the items done; kept, checked and rebuilt
from the event log like the progress counters."""

from __future__ import annotations

import random
import time

import pytest

from jprefs.label.store import CLAIM_TTL_S, Store, order_key

NAMES = ["sato", "suzuki", "tanaka", "ito"]


def _next_item_by_walk(st: Store, annotator: str, now: float) -> str | None:
    """The reference: ``Store.next_item`` before the frontier, verbatim (its ``_fill_order`` too), a
    walk of the annotator's order from its start. Run in a transaction that is rolled back, so it
    takes no claim, deletes no expired claim and leaves the database as it found it."""
    overlap = int(st.get_meta("overlap", 1))
    seed = int(st.get_meta("seed", 0))
    arrival = st.get_meta("mode") == "reward"
    q = {"a": annotator, "overlap": overlap}
    c = st.conn()
    c.execute("BEGIN IMMEDIATE")
    try:
        c.execute("DELETE FROM claims WHERE at < ?", (now - CLAIM_TTL_S,))
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
                                  ((annotator, r[0], order_key(seed, annotator, r[0])) for r in missing))
                source, by = "orders o WHERE o.annotator = :a", "o.okey, o.item_id"
            free = ("(SELECT COUNT(*) FROM state s WHERE s.item_id = o.item_id AND s.label_event IS NOT NULL "
                    "AND s.annotator != :a) + (SELECT COUNT(*) FROM claims k WHERE k.item_id = o.item_id AND "
                    "k.annotator != :a AND NOT EXISTS (SELECT 1 FROM state s WHERE s.item_id = k.item_id AND "
                    "s.annotator = k.annotator AND s.label_event IS NOT NULL)) < :overlap")
            row = c.execute(
                f"SELECT o.item_id FROM {source} AND NOT EXISTS (SELECT 1 FROM state s WHERE "
                f"s.annotator = :a AND s.item_id = o.item_id) AND {free} ORDER BY {by} LIMIT 1", q).fetchone()
            if row is None:                    # skipped items come back last
                row = c.execute(
                    f"SELECT o.item_id FROM {source} AND EXISTS (SELECT 1 FROM state s WHERE s.annotator = :a "
                    f"AND s.item_id = o.item_id AND s.label_event IS NULL) AND {free} "
                    f"ORDER BY {by} LIMIT 1", q).fetchone()
        return None if row is None else row["item_id"]
    finally:
        c.execute("ROLLBACK")


def _assert_frontier_kept(st: Store) -> None:
    """Every ``orders`` row's frontier is what ``state`` / ``item_counts`` say, written out plainly."""
    c = st.conn()
    mine = {(r[0], r[1]): 1 if r[2] is None else 2
            for r in c.execute("SELECT annotator, item_id, label_event FROM state")}
    labels = {r[0]: r[1] for r in c.execute("SELECT item_id, COUNT(*) FROM state WHERE label_event IS NOT NULL "
                                            "GROUP BY item_id")}
    for r in c.execute("SELECT annotator, item_id, mine, labels FROM orders"):
        assert (r[2], r[3]) == (mine.get((r[0], r[1]), 0), labels.get(r[1], 0)), tuple(r)
    assert st._frontier_stale(c) == (False, [])


def _add(st: Store, lo: int, hi: int) -> None:
    st.add_items([(f"it{k:03d}", {"k": k}, f"x.jsonl:{k}") for k in range(lo, hi)])


def _break_frontier(st: Store, rng: random.Random) -> None:
    """What a program that bypassed the triggers (or an older jprefs) could leave behind."""
    with st.write() as c:
        rows = [r[0] for r in c.execute("SELECT rowid FROM orders ORDER BY rowid")]
        for r in rng.sample(rows, min(5, len(rows))):
            c.execute("UPDATE orders SET mine = ?, labels = ? WHERE rowid = ?",
                      (rng.choice([0, 1, 2]), rng.randrange(4), r))
        if rng.random() < 0.5:
            c.executemany("DELETE FROM orders WHERE rowid = ?", [(r,) for r in rng.sample(rows, min(3, len(rows)))])


@pytest.mark.parametrize("mode, overlap, seed", [
    ("rank", 1, 0), ("rank", 2, 1), ("rank", 3, 2), ("ab", 2, 3), ("reward", 1, 4), ("reward", 3, 5)])
def test_the_frontier_picks_what_the_walk_picked_under_random_sessions(tmp_path, mode, overlap, seed):
    """Four annotators label, skip, undo, relabel, leave items shown until their claims expire; items
    arrive midway; the overlap changes; the store is reopened (now and then after its frontier was
    damaged): every pick equals the old walk's, and the frontier equals the replay throughout."""
    rng = random.Random(100 * seed + overlap)
    st = Store(tmp_path / "l.sqlite")
    st.init_job(mode=mode, overlap=overlap, seed=seed)
    _add(st, 0, 30)
    t, picked, nones = time.time(), 0, 0      # (undo claims at the clock's time)
    eager = rng.choice(NAMES)                   # labels far more often: a long done prefix of their order
    for step in range(700):
        if step in (200, 450):
            _add(st, 30 + (step // 450) * 25, 55 + (step // 450) * 25)
        if step == 300:
            st.init_job(mode=mode, overlap=max(1, overlap + rng.choice([-1, 1])), seed=seed)
        if step % 97 == 96:
            if rng.random() < 0.5:
                _break_frontier(st, rng)
            st.close()
            st = Store(tmp_path / "l.sqlite")
            _assert_frontier_kept(st)
        who = eager if rng.random() < 0.4 else rng.choice(NAMES)
        t += rng.choice([1, 5, 60, CLAIM_TTL_S / 3, CLAIM_TTL_S])   # claims expire now and then
        op = rng.random()
        if op < 0.1 and st.undo(who) is not None:
            continue
        expect = _next_item_by_walk(st, who, t)
        got = st.next_item(who, now=t)
        assert (got["item_id"] if got else None) == expect, (step, who)
        if got is None:
            nones += 1
            continue
        picked += 1
        if op < 0.65:
            st.submit(who, got["item_id"], {"x": rng.randrange(3)})
        elif op < 0.8:
            st.submit(who, got["item_id"], {}, kind="skip")
        # else: shown and left unanswered (a claim that holds until it expires)
        if step % 25 == 0:
            _assert_frontier_kept(st)
    _assert_frontier_kept(st)
    assert picked > 200 and nones > 0           # the sessions reached the end of the work, too


def _vm_steps(st: Store, fn) -> int:
    """SQLite virtual-machine instructions (in tens) that ``fn`` runs on ``st``'s connection."""
    n = [0]

    def tick():
        n[0] += 1
        return 0
    st.conn().set_progress_handler(tick, 10)
    try:
        fn()
    finally:
        st.conn().set_progress_handler(None, 0)
    return n[0]


@pytest.mark.parametrize("mode", ["rank", "reward"])
def test_a_pick_costs_the_same_after_a_long_done_prefix(tmp_path, mode):
    """2,000 items: a pick after 1,900 of the annotator's own labels (the start of their order), or
    the poll of a finished page (every item labelled, nothing left), runs about as many SQLite
    instructions as the pick on a fresh job; the walk ran ~170x more."""
    def job(name, n_done):
        st = Store(tmp_path / f"{name}.sqlite")
        st.init_job(mode=mode, overlap=1, seed=0)
        st.add_items((f"p{i}", {"k": i}, "x") for i in range(2000))
        st.next_item("sato", now=0.0)           # fills the order
        st.release("sato")
        key = (lambda i: i) if mode == "reward" else (lambda i: order_key(0, "sato", f"p{i}"))
        with st.write() as c:
            for i in sorted(range(2000), key=key)[:n_done]:
                cur = c.execute("INSERT INTO events (item_id, annotator, kind, value, created) "
                                "VALUES (?, 'sato', 'label', '{}', 't')", (f"p{i}",))
                c.execute("INSERT INTO state (annotator, item_id, label_event) VALUES ('sato', ?, ?)",
                          (f"p{i}", cur.lastrowid))
        return st

    fresh, late, done = job("fresh", 0), job("late", 1900), job("done", 2000)
    base = _vm_steps(fresh, lambda: fresh.next_item("sato", now=1.0))
    walk = _vm_steps(late, lambda: _next_item_by_walk(late, "sato", 1.0))
    after = _vm_steps(late, lambda: late.next_item("sato", now=1.0))
    poll = _vm_steps(done, lambda: done.next_item("sato", now=1.0))
    assert after <= base + 5 and poll <= base + 5, (base, after, poll)     # ~170 instructions each
    assert walk > 50 * after, (walk, after)                                  # ~30,000
    assert done.next_item("sato", now=1.0) is None


def test_a_database_from_before_the_frontier_gets_it_on_open(tmp_path):
    """An ``orders`` table without ``mine`` / ``labels`` (and none of the frontier's triggers or
    indexes): opening adds the columns and fills them from the replay; picks then match the walk."""
    st = Store(tmp_path / "l.sqlite")
    st.init_job(mode="rank", overlap=2, seed=0)
    _add(st, 0, 20)
    for k in range(14):
        who = NAMES[k % 3]
        it = st.next_item(who, now=float(k))
        st.submit(who, it["item_id"], {"x": 1}, kind="skip" if k % 5 == 4 else "label")
    with st.write() as c:                        # the schema before, with the order already filled
        for t in ("mine_insert", "mine_update", "mine_delete", "labels_insert", "labels_update", "labels_delete"):
            c.execute(f"DROP TRIGGER orders_{t}")
        c.execute("CREATE TABLE orders_old (annotator TEXT NOT NULL, item_id TEXT NOT NULL, okey TEXT NOT NULL, "
                  "PRIMARY KEY (annotator, item_id))")
        c.execute("INSERT INTO orders_old SELECT annotator, item_id, okey FROM orders")
        c.execute("DROP TABLE orders")
        c.execute("ALTER TABLE orders_old RENAME TO orders")
        c.execute("CREATE INDEX orders_by_key ON orders (annotator, okey, item_id)")
    st.submit("ito", "it019", {"x": 2})         # written without the triggers
    st.close()
    st = Store(tmp_path / "l.sqlite")
    _assert_frontier_kept(st)
    for k in range(40):
        who, t = NAMES[k % 4], 100.0 + k
        expect = _next_item_by_walk(st, who, t)
        got = st.next_item(who, now=t)
        assert (got and got["item_id"]) == expect, k
        if got:
            st.submit(who, got["item_id"], {"x": 0})
    _assert_frontier_kept(st)


def test_a_wrong_item_count_is_rebuilt_on_open_and_the_frontier_with_it(tmp_path):
    """``orders.labels`` copies ``item_counts``; a wrong per-item count (the histogram left right) is
    caught on open, so a copy of it cannot hide a free item."""
    st = Store(tmp_path / "l.sqlite")
    st.init_job(mode="rank", overlap=1, seed=0)
    _add(st, 0, 3)
    assert st.next_item("sato", now=0.0) is not None
    with st.write() as c:          # each item looks full, without a label histogram or state to say so
        c.execute("DROP TRIGGER state_counts_insert")
        c.execute("INSERT INTO item_counts (item_id, labels) SELECT item_id, 1 FROM items")
    st.close()
    st = Store(tmp_path / "l.sqlite")
    _assert_frontier_kept(st)
    assert st._counts_kept(st.conn()) == st._counts_from_state(st.conn())
    expect = _next_item_by_walk(st, "suzuki", 1.0)
    assert expect is not None and st.next_item("suzuki", now=1.0)["item_id"] == expect
