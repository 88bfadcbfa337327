"""Defects of `jprefs label` found in review: a tie of the combined ranking exported as a
preference, progress counted over every label on each submission, undo replaying the whole log,
the serve lock left behind, and zeros reported for a database with no job."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys

import pytest

from jprefs.cli import main
from jprefs.data.io import read_records
from jprefs.data.schema import PreferencePair, RankList, expand_pairs
from jprefs.label import export as lexport
from jprefs.label.store import Store, order_key

from .conftest import write_cands


def _rank_item(item_id: str, responses: list[str]) -> tuple[str, dict, str]:
    return (item_id, {"prompt": [{"role": "user", "content": f"質問 {item_id}"}], "responses": responses,
                      "shown": list(range(len(responses))), "license": "mit", "data_source": "t", "meta": {}},
            f"t.jsonl:{item_id}")


def _order(st, who, item, order):
    st.submit(who, item, {"order": order, "all_bad": False, "comment": ""})


# ---------------------------------------------------------------- 1. ties are no preference

def test_borda_tiers_hand_computed():
    # points (k - 1 - rank summed): [0,1,2] + [1,0,2] -> 0: 3, 1: 3, 2: 0
    assert lexport.borda([[0, 1, 2], [1, 0, 2]]) == [[0, 1], [2]]
    assert lexport.borda([[0, 1, 2, 3], [3, 2, 1, 0]]) == [[0, 1, 2, 3]]          # reversed orders cancel out
    assert lexport.borda([[2, 0, 1]]) == [[2], [0], [1]]                            # one order: itself
    assert lexport.tier_pairs([[1], [0, 2], [3]]) == [(1, 0), (1, 2), (1, 3), (0, 3), (2, 3)]


def test_export_writes_no_pair_between_tied_responses_and_counts_them(tmp_path, capsys):
    st = Store(tmp_path / "l.sqlite")
    st.init_job(mode="rank", overlap=3)
    st.add_items([_rank_item("tie", ["A", "B", "C"]), _rank_item("strict", ["A", "B", "C"]),
                  _rank_item("cancel", ["A", "B"]), _rank_item("tie4", ["A", "B", "C", "D"])])
    _order(st, "a", "tie", [0, 1, 2])
    _order(st, "b", "tie", [1, 0, 2])            # A and B: 3 points each
    for who, o in zip("abc", ([0, 1, 2], [1, 0, 2], [0, 2, 1])):
        _order(st, who, "strict", o)            # A 5, B 3, C 1: a strict order
    _order(st, "a", "cancel", [0, 1])
    _order(st, "b", "cancel", [1, 0])            # nothing is preferred
    _order(st, "a", "tie4", [0, 1, 2, 3])
    _order(st, "b", "tie4", [2, 3, 0, 1])        # A 4, C 4, B 2, D 2: tiers {A, C} > {B, D}
    out = tmp_path / "ranked.jsonl"
    assert main(["label", "export", "--db", str(st.path), "-o", str(out)]) == 0
    assert "4 pairs of tied responses left out (3 items with a tie" in capsys.readouterr().out   # 1 + 1 + 2
    s = json.loads((tmp_path / "ranked.jsonl.summary.json").read_text(encoding="utf-8"))
    assert s["tied_pairs_dropped"] == 1 + 1 + 2 and s["items_with_ties"] == 3
    assert s["rejects_by_reason"] == {"tied": 1}
    assert s["exported_items"] + s["rejected_items"] == s["items"] == 4

    recs = read_records(out)
    strict = [r for r in recs if isinstance(r, RankList)]
    assert [r.source_id for r in strict] == ["strict"] and strict[0].responses == ["A", "B", "C"]
    assert "borda_tie_broken" not in strict[0].meta["label"]
    pairs = {(r.source_id, r.chosen, r.rejected) for r in recs if isinstance(r, PreferencePair)}
    assert pairs == {("tie", "A", "C"), ("tie", "B", "C"),
                     ("tie4", "A", "B"), ("tie4", "A", "D"), ("tie4", "C", "B"), ("tie4", "C", "D")}
    assert s["pairs"] == len(list(expand_pairs(recs))) == 3 + 6
    tie4 = [r for r in recs if r.source_id == "tie4"][0]
    assert tie4.meta["label"]["tiers"] == [[0, 2], [1, 3]] and tie4.meta["label"]["tied_pairs_dropped"] == 2
    assert "chosen_rank" not in tie4.meta          # no strict rank of the whole list is claimed
    (rej,) = [json.loads(x) for x in (tmp_path / "ranked.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rej["item_id"] == "cancel" and rej["reason"] == "tied"


def test_every_exported_pair_has_more_borda_points_under_random_orders(tmp_path):
    """Whatever the annotators' orders, no exported pair (rank lists expanded) prefers a response
    that does not have strictly more Borda points, and every pair that does is exported."""
    rng = random.Random(3)
    st = Store(tmp_path / "l.sqlite")
    st.init_job(mode="rank", overlap=4)
    ks = {f"i{n}": rng.choice([2, 3, 4]) for n in range(40)}
    st.add_items([_rank_item(i, [f"{i}-{x}" for x in range(k)]) for i, k in ks.items()])
    points = {}
    for i, k in ks.items():
        pts = [0] * k
        for who in rng.sample("abcd", rng.randint(1, 4)):
            o = rng.sample(range(k), k)
            _order(st, who, i, o)
            for rank, idx in enumerate(o):
                pts[idx] += k - 1 - rank
        points[i] = pts
    s = lexport.export(st.path, tmp_path / "o.jsonl")
    got = {(p.source_id, p.chosen, p.rejected) for p in expand_pairs(read_records(tmp_path / "o.jsonl"))}
    want = {(i, f"{i}-{x}", f"{i}-{y}") for i, pts in points.items() for x in range(len(pts))
            for y in range(len(pts)) if pts[x] > pts[y]}
    assert got == want
    ties = sum(1 for pts in points.values() for x in range(len(pts)) for y in range(x + 1, len(pts))
               if pts[x] == pts[y])
    assert s["tied_pairs_dropped"] == ties > 0 and s["pairs"] == len(want)


# ---------------------------------------------------------------- 2. the next item after a labelled prefix

@pytest.mark.parametrize("overlap", [1, 2, 3])
def test_next_item_after_a_labelled_prefix(tmp_path, overlap):
    """An annotator who labelled the first k items of their order (here straight through submit, as
    a retried page does) gets the first item after them that still needs a label, never one they
    labelled, and then every remaining item that fewer than ``overlap`` others labelled, in order."""
    st = Store(tmp_path / "l.sqlite")
    st.init_job(mode="ab", overlap=overlap, seed=5)
    ids = [f"it{k:02d}" for k in range(20)]
    st.add_items([(i, {"k": i}, "x") for i in ids])
    order = {w: sorted(ids, key=lambda i: (order_key(5, w, i), i)) for w in ("a", "b", "c", "d")}
    for i in order["a"][:7]:
        st.submit("a", i, {"label": "left"})
    full = set(order["a"][7:10])              # three items after a's prefix get `overlap` other labels
    for i in full:
        for w in ("b", "c", "d")[:overlap]:
            st.submit(w, i, {"label": "right"})
    got = []
    while (it := st.next_item("a")) is not None:
        got.append(it["item_id"])
        st.submit("a", it["item_id"], {"label": "tie"})
    assert got == [i for i in order["a"][7:] if i not in full]
    assert st.progress("a")["mine"] == 20 - len(full)


# ---------------------------------------------------------------- 3. progress without counting every label

def _progress_by_scan(st: Store, annotator: str | None) -> dict:
    """:meth:`Store.progress` as it was: a GROUP BY over every current label, on every request."""
    c = st.conn()
    overlap = int(st.get_meta("overlap", 1))
    n = c.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    per_item = [r[0] for r in c.execute("SELECT COUNT(*) FROM state WHERE label_event IS NOT NULL GROUP BY item_id")]
    by = {r[0]: r[1] for r in c.execute("SELECT annotator, COUNT(*) FROM state WHERE label_event IS NOT NULL "
                                        "GROUP BY annotator ORDER BY annotator")}
    out = {"items": n, "overlap": overlap, "labels": sum(per_item), "complete": sum(1 for v in per_item if v >= overlap),
           "started": len(per_item), "target_labels": n * overlap, "by_annotator": by}
    if annotator is not None:
        out["mine"] = by.get(annotator, 0)
        out["my_skipped"] = c.execute("SELECT COUNT(*) FROM state WHERE annotator = ? AND skip_event IS NOT NULL "
                                      "AND label_event IS NULL", (annotator,)).fetchone()[0]
    return out


def test_progress_figures_hand_computed(tmp_path):
    st = Store(tmp_path / "l.sqlite")
    st.init_job(mode="ab", overlap=2)
    st.add_items([(f"i{k}", {"k": k}, "x") for k in range(4)])
    st.submit("a", "i0", {"label": "left"})
    st.submit("b", "i0", {"label": "left"})     # i0: 2 labels, complete
    st.submit("a", "i1", {"label": "left"})
    st.submit("a", "i1", {"label": "right"})    # a relabel: still one label
    st.submit("b", "i2", {}, kind="skip")
    st.submit("c", "i3", {"label": "tie"})
    st.undo("c")                                 # taken back: i3 has none
    assert st.progress("b") == {"items": 4, "overlap": 2, "labels": 3, "complete": 1, "started": 2,
                                "target_labels": 8, "by_annotator": {"a": 2, "b": 1}, "mine": 1, "my_skipped": 1}
    st.init_job(mode="ab", overlap=1)           # overlap can change between serves: complete follows it
    assert st.progress()["complete"] == 2


def test_progress_reads_only_the_counters(tmp_path):
    """The figure comes from a few counter rows: progress() reads neither `state` nor `events`."""
    st = Store(tmp_path / "l.sqlite")
    st.init_job(mode="ab", overlap=2)
    st.add_items([(f"i{k}", {"k": k}, "x") for k in range(50)])
    for k in range(50):
        st.submit("a", f"i{k}", {"label": "left"})
    read: set[str] = set()

    def auth(action, arg1, arg2, db, trigger):
        if action == sqlite3.SQLITE_READ:
            read.add(arg1)
        return sqlite3.SQLITE_OK

    st.conn().set_authorizer(auth)
    p = st.progress("a")
    st.conn().set_authorizer(None)
    assert p["labels"] == 50 and read and not read & {"state", "events"}, read


def test_progress_counters_equal_the_full_count_under_random_sessions(tmp_path):
    """Labels, relabels, retried submits, skips, undos and items added midway: after every step the
    counters give what the GROUP BY over every label gave, the state equals the replay of the log,
    and each undo takes back what the replay's stack has on top."""
    rng = random.Random(11)
    st = Store(tmp_path / "l.sqlite")
    st.init_job(mode="ab", overlap=2)
    st.add_items([(f"i{k}", {"k": k}, "x") for k in range(8)])
    names = ["a", "b", "c"]
    for step in range(400):
        if step == 200:
            st.add_items([(f"i{k}", {"k": k}, "x") for k in range(8, 12)])
        who, op = rng.choice(names), rng.random()
        item = f"i{rng.randrange(st.n_items())}"
        if op < 0.5:
            st.submit(who, item, {"label": rng.choice(["left", "right"])})
        elif op < 0.7:
            st.submit(who, item, {}, kind="skip")
        else:
            _, _, stack = st._replay(st._events(st.conn(), who))
            top = (stack.get(who) or [None])[-1]
            got = st.undo(who)
            assert (got[0] if got else None) == (top["item_id"] if top else None), step
        labels, skips, _ = st._replay(st._events(st.conn()))
        assert sorted(((r["annotator"], r["item_id"]), r["event_id"]) for r in st.current_labels()) == \
            sorted((k, e["id"]) for k, e in labels.items()), step
        assert st.skipped() == sorted(skips), step
        for w in [None, *names]:
            assert st.progress(w) == _progress_by_scan(st, w), (step, w)


def test_counters_are_rebuilt_for_a_database_made_before_them(tmp_path):
    st = Store(tmp_path / "l.sqlite")
    st.init_job(mode="ab", overlap=2)
    st.add_items([(f"i{k}", {"k": k}, "x") for k in range(5)])
    for w, k in [("a", 0), ("b", 0), ("a", 1), ("c", 2)]:
        st.submit(w, f"i{k}", {"label": "left"})
    st.submit("b", "i3", {}, kind="skip")
    want = st.progress("b")
    with st.write() as c:                        # an older database: no triggers, no counters
        for t in ("insert", "delete", "update"):
            c.execute(f"DROP TRIGGER state_counts_{t}")
        for t in ("item_counts", "label_hist", "annotator_counts"):
            c.execute(f"DELETE FROM {t}")
        c.execute("INSERT OR REPLACE INTO state (annotator, item_id, label_event, skip_event) "
                  "SELECT annotator, item_id, label_event, skip_event FROM state WHERE annotator = 'a'")
    st.close()
    again = Store(tmp_path / "l.sqlite")
    assert again.progress("b") == want == _progress_by_scan(again, "b")
    again.submit("d", "i4", {"label": "right"})  # and kept from then on
    assert again.progress("d") == _progress_by_scan(again, "d")


def test_undo_finds_the_top_through_the_index(tmp_path):
    """Undo no longer replays the annotator's whole log: the stack's top is one indexed search."""
    st = Store(tmp_path / "l.sqlite")
    plan = [tuple(r)[3] for r in st.conn().execute(
        "EXPLAIN QUERY PLAN SELECT * FROM events e WHERE e.annotator = 'a' AND e.kind IN ('label', 'skip') AND "
        "NOT EXISTS (SELECT 1 FROM events u WHERE u.kind = 'undo' AND json_extract(u.value, '$.undoes') = +e.id) "
        "ORDER BY e.id DESC LIMIT 1")]
    assert any("SEARCH u USING INDEX events_undone" in p for p in plan), plan


# ---------------------------------------------------------------- 4. the serve lock

def _serve_args(tmp_path):
    cands = write_cands(tmp_path / "c.jsonl")
    return ["label", "serve", str(cands), "--db", str(tmp_path / "l.sqlite"), "--mode", "rank", "--annotators", "a"]


def test_serve_lock_is_removed_on_stop_refuses_a_live_server_and_takes_over_a_dead_ones(tmp_path, serve, capsys):
    lock = tmp_path / "l.sqlite.serve.lock"
    args = _serve_args(tmp_path)[2:]
    s = serve(*args)
    holder = json.loads(lock.read_text(encoding="utf-8"))
    assert holder["pid"] == s.proc.pid and holder["command"] == "jprefs label serve"
    # a second server on the same database: refused, naming the pid of the live one
    assert main(_serve_args(tmp_path) + ["--no-serve"]) == 2
    err = capsys.readouterr().err
    assert f"pid {s.proc.pid}" in err and f"kill {s.proc.pid}" in err and "Traceback" not in err
    assert lock.exists()
    # SIGTERM is a normal stop: exit 0, lock file gone
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(10) == 0
    assert not lock.exists()
    # Ctrl-C too
    s2 = serve(*args)
    assert lock.exists()
    s2.proc.send_signal(signal.SIGINT)
    assert s2.proc.wait(10) == 0 and not lock.exists()
    # a lock file left by a killed server (kill -9 skips every finally): taken over, with a line naming its pid
    s3 = serve(*args)
    s3.kill9()
    assert json.loads(lock.read_text(encoding="utf-8"))["pid"] == s3.proc.pid
    s4 = serve(*args)
    assert any(f"was left by a server that stopped without releasing it (pid {s3.proc.pid}" in x and
               "no longer running: taking it over" in x for x in s4.lines), s4.lines
    assert json.loads(lock.read_text(encoding="utf-8"))["pid"] == s4.proc.pid


def test_a_stale_lock_of_a_dead_pid_is_taken_over_in_process(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / "l.sqlite.serve.lock"
    lock.write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "command": "jprefs label serve",
                                "started": "2024-01-02T03:04:05"}), encoding="utf-8")
    assert main(_serve_args(tmp_path) + ["--no-serve"]) == 0
    err = capsys.readouterr().err
    assert f"pid {dead.pid}, started 2024-01-02 03:04:05" in err and "taking it over" in err
    assert not lock.exists()                     # released when the run ended


# ---------------------------------------------------------------- 5. a database with no job

def test_label_stats_of_a_database_with_no_job_is_an_error(tmp_path, capsys):
    db = tmp_path / "empty.sqlite"
    db.write_bytes(b"")                          # SQLite reads an empty file as a new database
    assert main(["label", "stats", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert str(db) in err and "no labelling job" in err and "fix:" in err


def test_an_export_with_no_usable_label_is_an_error_and_writes_nothing(tmp_path, capsys):
    """An export of 0 rows is no data set (train-rm / import-human downstream would read nothing): exit 2,
    the reasons counted, no file written, as `jprefs data` refuses empty outputs."""
    st = Store(tmp_path / "l.sqlite")
    st.init_job(mode="rank", overlap=2)
    st.add_items([_rank_item("x", ["A", "B"]), _rank_item("y", ["A", "B"])])
    _order(st, "a", "x", [0, 1])
    _order(st, "b", "x", [1, 0])                 # x: tied; y: unlabelled
    out = tmp_path / "ranked.jsonl"
    assert main(["label", "export", "--db", str(st.path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nothing to export: none of the 2 items" in err and "tied 1" in err and "unlabelled 1" in err
    assert not out.exists() and not (tmp_path / "ranked.rejects.jsonl").exists()
    assert "Traceback" not in err
