"""The labelling database: one SQLite file (WAL) per labelling job.

Every submission is one row appended to ``events`` and committed (``synchronous=FULL``) before
the server answers, so a server killed at any moment loses nothing that a page was told was
saved. Nothing is ever updated in place: undo is an ``undo`` event that names the event it takes
back, and an annotator's current label of an item is the latest ``label`` event not undone.

Tables:

- ``meta``: the job's settings (mode, overlap, seed, the input file and its sha256, guidelines);
- ``items``: ``item_id``, ``pos`` (input order), ``payload`` (JSON: what the page shows and the
  export needs), ``source`` (file and line);
- ``annotators``: name, a salted sha256 of the access token (the token itself is only printed
  once, when it is made), admin flag;
- ``sessions``: a hash of each browser session id (cookie) and its annotator;
- ``events``: ``label`` / ``skip`` / ``undo`` per (item, annotator) with the value, the time and
  the milliseconds the annotator spent on the item;
- ``state``: per (annotator, item) the event of the current label and of a pending skip: the
  replay of ``events`` (undo included), kept in the same transaction as each event, so that a
  request costs the same with 10 labels as with 10,000; rebuilt from ``events`` if missing;
- ``claims``: which annotator was last shown which item and when, so that with ``overlap`` N no
  more than N annotators are shown an item at the same time;
- ``item_counts``, ``label_hist``, ``annotator_counts``: the progress figures (labels per item;
  how many items have 1, 2, ... labels; labels and pending skips per annotator), kept by triggers on
  ``state`` in the same transaction as each change, so that :meth:`Store.progress` (on every
  submission) reads a few rows instead of counting every label; checked against ``state`` and
  rebuilt when a database is opened;
- ``orders``: each annotator's sort key of each item (below; ``reward``: the arrival position),
  filled the first time the annotator asks for an item and for items added since; ``ordered``: how
  many items each annotator's order covers (items are only appended). Each row also carries the
  frontier of the pick: ``mine`` (0: the annotator has no state for the item, 1: a pending skip,
  2: labelled) and ``labels`` (the item's current labels, everyone's), kept by triggers on ``state``
  and ``item_counts`` in the same transaction as each label / skip / undo, and checked against them
  (rebuilt when they differ) when a database is opened. Picking the next item is then, per label
  count below ``overlap``, one indexed seek to the first row with ``mine = 0`` (then ``1``): the
  labelled, skipped and full items are not in that range, so a pick costs the same after 19,000
  labels as after none (it used to walk the annotator's order from its start, with correlated
  subqueries per row).

Order: each annotator sees the items in a stable shuffled order, sorted by
``sha256(seed:annotator:item_id)``; ``reward`` items (live PPO rollouts) come in arrival order.
An item goes to an annotator who has not labelled or skipped it while fewer than ``overlap``
annotators have labelled or hold a fresh claim on it; skipped items come back at the end.

Example::

    st = Store("labels.sqlite")
    st.init_job(mode="rank", overlap=2, seed=0, source="cands.jsonl", source_sha="...")
    st.add_items([("p1", {"prompt": ..., "responses": [...]}, "cands.jsonl:1")])
    token = st.add_annotator("sato")
    item = st.next_item("sato")
    st.submit("sato", item["item_id"], {"order": [2, 0, 1, 3], "all_bad": False})
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from jprefs.errors import ConfigError, DataError

MODES = ("rank", "ab", "review", "reward")
SCHEMA_VERSION = 1
CLAIM_TTL_S = 15 * 60          # an item shown to an annotator stays theirs this long
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY, pos INTEGER NOT NULL, payload TEXT NOT NULL, source TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS annotators (
    name TEXT PRIMARY KEY, salt TEXT NOT NULL, token_hash TEXT NOT NULL, admin INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    sid_hash TEXT PRIMARY KEY, annotator TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, item_id TEXT NOT NULL, annotator TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('label', 'skip', 'undo')), value TEXT NOT NULL,
    elapsed_ms INTEGER, created TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_annotator ON events (annotator, id);
CREATE INDEX IF NOT EXISTS events_by_item ON events (item_id);
CREATE INDEX IF NOT EXISTS events_undone ON events (json_extract(value, '$.undoes')) WHERE kind = 'undo';
CREATE TABLE IF NOT EXISTS state (
    annotator TEXT NOT NULL, item_id TEXT NOT NULL, label_event INTEGER, skip_event INTEGER,
    PRIMARY KEY (annotator, item_id));
CREATE INDEX IF NOT EXISTS state_by_item ON state (item_id);
CREATE TABLE IF NOT EXISTS claims (
    item_id TEXT NOT NULL, annotator TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (item_id, annotator));
CREATE TABLE IF NOT EXISTS orders (
    annotator TEXT NOT NULL, item_id TEXT NOT NULL, okey TEXT NOT NULL,
    mine INTEGER NOT NULL DEFAULT 0, labels INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (annotator, item_id));
CREATE TABLE IF NOT EXISTS ordered (annotator TEXT PRIMARY KEY, items INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS items_by_pos ON items (pos, item_id);
CREATE TABLE IF NOT EXISTS item_counts (item_id TEXT PRIMARY KEY, labels INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS label_hist (labels INTEGER PRIMARY KEY, items INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS annotator_counts (
    annotator TEXT PRIMARY KEY, labels INTEGER NOT NULL, skipped INTEGER NOT NULL);
"""


def _count_sql(row: str, sign: int) -> str:
    """Trigger statements that add (``sign`` +1) or take away (-1) the ``state`` row ``row`` (NEW or
    OLD) to / from the progress counters: its item's label count and that count's histogram bucket
    (a label moves the item from bucket n to n + 1), and its annotator's labels and pending skips."""
    lab = f"{row}.label_event IS NOT NULL"
    return f"""
    INSERT INTO item_counts (item_id, labels) SELECT {row}.item_id, {sign} WHERE {lab}
        ON CONFLICT (item_id) DO UPDATE SET labels = labels + {sign};
    UPDATE label_hist SET items = items - 1 WHERE {lab}
        AND labels = (SELECT labels - {sign} FROM item_counts WHERE item_id = {row}.item_id);
    INSERT INTO label_hist (labels, items) SELECT labels, 1 FROM item_counts
        WHERE {lab} AND item_id = {row}.item_id AND labels > 0
        ON CONFLICT (labels) DO UPDATE SET items = items + 1;
    INSERT INTO annotator_counts (annotator, labels, skipped) SELECT {row}.annotator, {sign} * ({lab}),
        {sign} * ({row}.label_event IS NULL AND {row}.skip_event IS NOT NULL) WHERE 1
        ON CONFLICT (annotator) DO UPDATE SET labels = labels + excluded.labels,
        skipped = skipped + excluded.skipped;"""


# An UPDATE is the old row taken away and the new one added.
TRIGGERS = f"""
CREATE TRIGGER IF NOT EXISTS state_counts_insert AFTER INSERT ON state BEGIN {_count_sql("NEW", 1)} END;
CREATE TRIGGER IF NOT EXISTS state_counts_delete AFTER DELETE ON state BEGIN {_count_sql("OLD", -1)} END;
CREATE TRIGGER IF NOT EXISTS state_counts_update AFTER UPDATE ON state BEGIN
    {_count_sql("OLD", -1)} {_count_sql("NEW", 1)} END;
"""


# The columns ``orders`` gained with the frontier (a database from before gets them on open, then
# the check on open fills them), its index and the triggers that keep it. Run after the columns
# exist: an older ``orders`` has no ``mine`` to index. ``orders_by_key`` (annotator, okey), which the
# walk used, goes: the frontier index replaces it, and a second index in okey order halved the speed
# of filling an order. An item's rows are found by primary key, one per annotator with an order
# (``ordered``): no index on item_id to fill. (A state row's key and an item_counts row's item never
# change: an UPDATE trigger only writes the NEW row.)
ORDERS_COLUMNS = {"mine": "INTEGER NOT NULL DEFAULT 0", "labels": "INTEGER NOT NULL DEFAULT 0"}
MINE_SQL = "CASE WHEN {s}.label_event IS NULL THEN 1 ELSE 2 END"     # of a state row; no row: 0
ITEM_ROWS = "annotator IN (SELECT annotator FROM ordered) AND item_id = {i}.item_id"   # an item's orders rows
FRONTIER = f"""
DROP INDEX IF EXISTS orders_by_key;
CREATE INDEX IF NOT EXISTS orders_frontier ON orders (annotator, mine, labels, okey, item_id);
CREATE TRIGGER IF NOT EXISTS orders_mine_insert AFTER INSERT ON state BEGIN
    UPDATE orders SET mine = {MINE_SQL.format(s="NEW")} WHERE annotator = NEW.annotator AND item_id = NEW.item_id; END;
CREATE TRIGGER IF NOT EXISTS orders_mine_update AFTER UPDATE ON state BEGIN
    UPDATE orders SET mine = {MINE_SQL.format(s="NEW")} WHERE annotator = NEW.annotator AND item_id = NEW.item_id; END;
CREATE TRIGGER IF NOT EXISTS orders_mine_delete AFTER DELETE ON state BEGIN
    UPDATE orders SET mine = 0 WHERE annotator = OLD.annotator AND item_id = OLD.item_id; END;
CREATE TRIGGER IF NOT EXISTS orders_labels_insert AFTER INSERT ON item_counts BEGIN
    UPDATE orders SET labels = NEW.labels WHERE {ITEM_ROWS.format(i="NEW")}; END;
CREATE TRIGGER IF NOT EXISTS orders_labels_update AFTER UPDATE ON item_counts BEGIN
    UPDATE orders SET labels = NEW.labels WHERE {ITEM_ROWS.format(i="NEW")}; END;
CREATE TRIGGER IF NOT EXISTS orders_labels_delete AFTER DELETE ON item_counts BEGIN
    UPDATE orders SET labels = 0 WHERE {ITEM_ROWS.format(i="OLD")}; END;
"""


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _hash_token(salt: str, token: str) -> str:
    return hashlib.sha256(f"{salt}:{token}".encode("utf-8")).hexdigest()


def order_key(seed: int, annotator: str, item_id: str) -> str:
    """The sort key of an item in an annotator's stable shuffled order.

    >>> order_key(0, "sato", "a") == order_key(0, "sato", "a") != order_key(0, "suzuki", "a")
    True
    """
    return hashlib.sha256(f"{seed}:{annotator}:{item_id}".encode("utf-8")).hexdigest()


class Store:
    """The labelling database at ``path``. Safe to use from several threads: each thread gets its
    own connection; writes take SQLite's write lock (``BEGIN IMMEDIATE``)."""

    def __init__(self, path: str | Path, *, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise DataError("no such labelling database", path=str(self.path),
                            fix="give the --db of a `jprefs label serve` run")
        if self.path.exists() and self.path.is_dir():
            raise DataError("is a folder, not a labelling database", path=str(self.path),
                            fix="give a file name such as labels.sqlite")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        try:
            self.conn().executescript(SCHEMA + TRIGGERS)   # executescript commits on its own
            have = {r[1] for r in self.conn().execute("PRAGMA table_info(orders)")}
            for col, decl in ORDERS_COLUMNS.items():        # a database from before the frontier
                if col not in have:
                    self.conn().execute(f"ALTER TABLE orders ADD COLUMN {col} {decl}")
            self.conn().executescript(FRONTIER)
        except sqlite3.DatabaseError as e:
            raise DataError(f"not a labelling database ({e})", path=str(self.path),
                            fix="give the --db file of a `jprefs label serve` run, or a new file name") from None
        self._rebuild_state_if_missing()
        self._rebuild_counts_if_stale()
        self._rebuild_frontier_if_stale()
        v = self.get_meta("schema_version")
        if v is None:
            self.set_meta("schema_version", SCHEMA_VERSION)
        elif int(v) != SCHEMA_VERSION:
            raise DataError(f"database schema version {v}, this jprefs reads {SCHEMA_VERSION}", path=str(self.path),
                            fix="use the jprefs version that made it")

    # ------------------------------------------------------------ connections
    def conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=True)
            c.row_factory = sqlite3.Row
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=FULL")      # a commit is on disk before the page is told so
            c.execute("PRAGMA foreign_keys=ON")
            c.execute("PRAGMA recursive_triggers=ON")  # INSERT OR REPLACE on state fires its delete trigger too
            self._local.conn = c
        return c

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed when the block ends, rolled back on an exception."""
        c = self.conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    def close(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

    # ------------------------------------------------------------ meta / job
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value"]) if row else default

    def set_meta(self, key: str, value: Any, c: sqlite3.Connection | None = None) -> None:
        sql, args = "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value, ensure_ascii=False))
        if c is not None:
            c.execute(sql, args)
        else:
            with self.write() as w:
                w.execute(sql, args)

    @property
    def mode(self) -> str | None:
        return self.get_meta("mode")

    def init_job(self, *, mode: str, overlap: int = 1, seed: int = 0, **settings: Any) -> None:
        """Record the job's settings in a new database, or check them against an existing one: the
        mode, the seed and a reward job's scale cannot change (an error says so: a 1-5 score and a
        thumb would be averaged into one reward); overlap and guidelines can. Serving another input
        file adds its items to the job; every input file served is kept in the ``inputs`` setting."""
        if mode not in MODES:
            raise ConfigError(f"--mode {mode!r} is not one of {', '.join(MODES)}")
        if overlap < 1:
            raise ConfigError(f"--overlap {overlap}: each item needs at least 1 annotator")
        with self.write() as c:
            old = self.get_meta("mode")
            if old is not None and old != mode:
                raise ConfigError(f"{self.path} is a '{old}' labelling database, not '{mode}'\n"
                                  f"  fix: --mode {old}, or a new --db for the '{mode}' job")
            old_seed = self.get_meta("seed")
            if old_seed is not None and old_seed != seed:
                raise ConfigError(f"{self.path} was made with --seed {old_seed}; a new seed would reshuffle every "
                                  f"annotator's order mid-way\n  fix: --seed {old_seed}, or a new --db")
            old_scale = self.get_meta("reward_scale")
            if mode == "reward" and old is not None and old_scale is not None and \
                    settings.get("reward_scale", old_scale) != old_scale:
                raise ConfigError(f"{self.path} is a reward job scored with --reward-scale {old_scale}; "
                                  f"{settings['reward_scale']} would mix two scales in one reward\n"
                                  f"  fix: --reward-scale {old_scale}, or a new --db")
            if "input" in settings:
                inputs = list(self.get_meta("inputs") or [])
                if not inputs and self.get_meta("input") is not None:       # a database from before `inputs`
                    inputs.append({"input": self.get_meta("input"), "input_sha256": self.get_meta("input_sha256")})
                this = {"input": settings["input"], "input_sha256": settings.get("input_sha256")}
                if this not in inputs:
                    inputs.append(this)
                self.set_meta("inputs", inputs, c)
            self.set_meta("mode", mode, c)
            self.set_meta("seed", seed, c)
            self.set_meta("overlap", overlap, c)
            if self.get_meta("created") is None:
                self.set_meta("created", now_iso(), c)
            for k, v in settings.items():
                self.set_meta(k, v, c)

    # ------------------------------------------------------------ items
    def add_items(self, items: Iterable[tuple[str, dict, str]]) -> tuple[int, int]:
        """Add ``(item_id, payload, source)`` items; an id already present with the same payload is
        kept, with a different payload it is an error (the input changed under a running job).
        Returns (added, already present)."""
        added = same = 0
        with self.write() as c:
            pos = c.execute("SELECT COALESCE(MAX(pos), -1) + 1 FROM items").fetchone()[0]
            for item_id, payload, source in items:
                text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
                row = c.execute("SELECT payload FROM items WHERE item_id = ?", (item_id,)).fetchone()
                if row is not None:
                    if row["payload"] != text:
                        raise DataError(f"item {item_id!r} is already in {self.path} with other content",
                                        path=source.rsplit(":", 1)[0] if source else None,
                                        fix="label a changed input into a new --db (the labels belong to the old "
                                            "texts)")
                    same += 1
                    continue
                c.execute("INSERT INTO items (item_id, pos, payload, source, created) VALUES (?, ?, ?, ?, ?)",
                          (item_id, pos, text, source, now_iso()))
                pos += 1
                added += 1
        return added, same

    def item(self, item_id: str) -> dict | None:
        row = self.conn().execute("SELECT * FROM items WHERE item_id = ?", (item_id,)).fetchone()
        return self._item(row) if row else None

    @staticmethod
    def _item(row: sqlite3.Row) -> dict:
        return {"item_id": row["item_id"], "pos": row["pos"], "source": row["source"],
                **json.loads(row["payload"])}

    def items(self) -> list[dict]:
        return [self._item(r) for r in self.conn().execute("SELECT * FROM items ORDER BY pos")]

    def n_items(self) -> int:
        # items are only appended, at pos 0, 1, 2, ...: one index lookup instead of COUNT(*) (a scan)
        return self.conn().execute("SELECT COALESCE(MAX(pos), -1) + 1 FROM items").fetchone()[0]

    # ------------------------------------------------------------ annotators and sessions
    def add_annotator(self, name: str, *, admin: bool = False, reset: bool = False) -> str | None:
        """Create ``name`` and return its new access token, or None when it exists (``reset``: a new
        token replaces the old one, and the old sessions end). Only a salted hash is stored."""
        name = name.strip()
        if not name or len(name) > 64 or any(ch in name for ch in ",\n\r\t") or not name.isprintable():
            raise ConfigError(f"annotator name {name!r}: use 1-64 printable characters without commas")
        with self.write() as c:
            row = c.execute("SELECT name FROM annotators WHERE name = ?", (name,)).fetchone()
            if row is not None and not reset:
                return None
            token, salt = secrets.token_urlsafe(18), secrets.token_hex(8)
            c.execute("INSERT OR REPLACE INTO annotators (name, salt, token_hash, admin, created) "
                      "VALUES (?, ?, ?, ?, ?)", (name, salt, _hash_token(salt, token), int(admin), now_iso()))
            c.execute("DELETE FROM sessions WHERE annotator = ?", (name,))
        return token

    def annotators(self, *, include_admin: bool = False) -> list[str]:
        sql = "SELECT name FROM annotators" + ("" if include_admin else " WHERE admin = 0") + " ORDER BY name"
        return [r["name"] for r in self.conn().execute(sql)]

    def check_login(self, name: str, token: str) -> bool:
        row = self.conn().execute("SELECT salt, token_hash FROM annotators WHERE name = ?", (name,)).fetchone()
        if row is None:
            _hash_token("x", token)    # the same work for an unknown name
            return False
        return hmac.compare_digest(row["token_hash"], _hash_token(row["salt"], token))

    def is_admin(self, name: str) -> bool:
        row = self.conn().execute("SELECT admin FROM annotators WHERE name = ?", (name,)).fetchone()
        return bool(row and row["admin"])

    def new_session(self, name: str) -> str:
        sid = secrets.token_urlsafe(24)
        with self.write() as c:
            c.execute("INSERT INTO sessions (sid_hash, annotator, created) VALUES (?, ?, ?)",
                      (hashlib.sha256(sid.encode()).hexdigest(), name, now_iso()))
        return sid

    def session_user(self, sid: str | None) -> str | None:
        if not sid:
            return None
        row = self.conn().execute("SELECT annotator FROM sessions WHERE sid_hash = ?",
                                  (hashlib.sha256(sid.encode()).hexdigest(),)).fetchone()
        return row["annotator"] if row else None

    def end_session(self, sid: str) -> None:
        with self.write() as c:
            c.execute("DELETE FROM sessions WHERE sid_hash = ?", (hashlib.sha256(sid.encode()).hexdigest(),))

    # ------------------------------------------------------------ events
    def _events(self, c: sqlite3.Connection, annotator: str | None = None) -> list[sqlite3.Row]:
        if annotator is None:
            return c.execute("SELECT * FROM events ORDER BY id").fetchall()
        return c.execute("SELECT * FROM events WHERE annotator = ? ORDER BY id", (annotator,)).fetchall()

    @staticmethod
    def _replay(events: Iterable[sqlite3.Row]) -> tuple[dict, dict, list]:
        """Per (annotator, item): the current label event and skip flags, after undos; and each
        annotator's stack of events that undo can take back (most recent last)."""
        labels: dict[tuple[str, str], sqlite3.Row] = {}
        skips: dict[tuple[str, str], sqlite3.Row] = {}
        stack: dict[str, list[sqlite3.Row]] = {}
        for e in events:
            key = (e["annotator"], e["item_id"])
            st = stack.setdefault(e["annotator"], [])
            if e["kind"] == "label":
                labels[key] = e
                skips.pop(key, None)
                st.append(e)
            elif e["kind"] == "skip":
                skips[key] = e
                st.append(e)
            elif e["kind"] == "undo":
                target = json.loads(e["value"]).get("undoes")
                for i in range(len(st) - 1, -1, -1):
                    if st[i]["id"] == target:
                        gone = st.pop(i)
                        k = (gone["annotator"], gone["item_id"])
                        if gone["kind"] == "label":
                            labels.pop(k, None)
                            prev = [x for x in st if x["item_id"] == gone["item_id"] and x["kind"] == "label"]
                            if prev:
                                labels[k] = prev[-1]
                        else:
                            skips.pop(k, None)
                        break
        return labels, skips, stack

    def _set_state(self, c: sqlite3.Connection, annotator: str, labels: dict, skips: dict,
                   items: Iterable[str]) -> None:
        """Write the replayed state of ``annotator`` for ``items``."""
        for i in items:
            lab, sk = labels.get((annotator, i)), skips.get((annotator, i))
            if lab is None and sk is None:
                c.execute("DELETE FROM state WHERE annotator = ? AND item_id = ?", (annotator, i))
            else:
                self._put_state(c, annotator, i, lab["id"] if lab is not None else None,
                                sk["id"] if sk is not None else None)

    @staticmethod
    def _put_state(c: sqlite3.Connection, annotator: str, item_id: str, label_event: int | None,
                   skip_event: int | None) -> None:
        # an upsert (an UPDATE of an existing row), so the counters' triggers see the old row go
        c.execute("INSERT INTO state (annotator, item_id, label_event, skip_event) VALUES (?, ?, ?, ?) "
                  "ON CONFLICT (annotator, item_id) DO UPDATE SET label_event = excluded.label_event, "
                  "skip_event = excluded.skip_event", (annotator, item_id, label_event, skip_event))

    def _counts_from_state(self, c: sqlite3.Connection) -> tuple[list, list, list]:
        """The progress counters computed from ``state`` (one pass over every label): the label
        histogram ``[(labels, items)]``, ``[(annotator, labels, pending skips)]`` and the labels per
        item ``[(item_id, labels)]`` (which ``orders.labels`` copies), sorted."""
        hist = c.execute("SELECT n, COUNT(*) FROM (SELECT COUNT(*) AS n FROM state WHERE label_event IS NOT NULL "
                         "GROUP BY item_id) GROUP BY n ORDER BY n").fetchall()
        by = c.execute("SELECT annotator, SUM(label_event IS NOT NULL), "
                       "SUM(label_event IS NULL AND skip_event IS NOT NULL) FROM state "
                       "GROUP BY annotator ORDER BY annotator").fetchall()
        per_item = c.execute("SELECT item_id, COUNT(*) FROM state WHERE label_event IS NOT NULL "
                             "GROUP BY item_id ORDER BY item_id").fetchall()
        return [tuple(r) for r in hist], [tuple(r) for r in by], [tuple(r) for r in per_item]

    def _counts_kept(self, c: sqlite3.Connection) -> tuple[list, list, list]:
        hist = c.execute("SELECT labels, items FROM label_hist WHERE labels > 0 AND items > 0 "
                         "ORDER BY labels").fetchall()
        by = c.execute("SELECT annotator, labels, skipped FROM annotator_counts WHERE labels != 0 OR skipped != 0 "
                       "ORDER BY annotator").fetchall()
        per_item = c.execute("SELECT item_id, labels FROM item_counts WHERE labels != 0 ORDER BY item_id").fetchall()
        return [tuple(r) for r in hist], [tuple(r) for r in by], [tuple(r) for r in per_item]

    def _rebuild_counts_if_stale(self) -> None:
        """Check the progress counters against ``state`` (once, when the database is opened: a
        database from before the counters, or written by a program that bypassed the triggers) and
        rebuild them when they differ."""
        if self._counts_kept(self.conn()) == self._counts_from_state(self.conn()):
            return
        with self.write() as c:
            for t in ("item_counts", "label_hist", "annotator_counts"):
                c.execute(f"DELETE FROM {t}")
            c.execute("INSERT INTO item_counts (item_id, labels) SELECT item_id, COUNT(*) FROM state "
                      "WHERE label_event IS NOT NULL GROUP BY item_id")
            c.execute("INSERT INTO label_hist (labels, items) SELECT labels, COUNT(*) FROM item_counts "
                      "GROUP BY labels")
            c.execute("INSERT INTO annotator_counts (annotator, labels, skipped) SELECT annotator, "
                      "SUM(label_event IS NOT NULL), SUM(label_event IS NULL AND skip_event IS NOT NULL) "
                      "FROM state GROUP BY annotator")

    def _frontier_stale(self, c: sqlite3.Connection) -> tuple[bool, list[str]]:
        """Whether some ``orders`` row's ``mine`` / ``labels`` differs from ``state`` / ``item_counts``
        (one pass over ``orders`` with two key lookups a row, when a database is opened: 0.5 s at
        100,000 items and 3 annotators), and the annotators whose number of ``orders`` rows is not the
        number of items ``ordered`` says their order covers (rows are only written with their
        ``ordered`` count, in one transaction: a count that differs is a program that bypassed it)."""
        wrong = c.execute(
            f"SELECT 1 FROM orders o LEFT JOIN state s ON s.annotator = o.annotator AND s.item_id = o.item_id "
            f"LEFT JOIN item_counts n ON n.item_id = o.item_id "
            f"WHERE o.mine != (CASE WHEN s.annotator IS NULL THEN 0 ELSE {MINE_SQL.format(s='s')} END) "
            f"OR o.labels != COALESCE(n.labels, 0) LIMIT 1").fetchone() is not None
        n = c.execute("SELECT COALESCE(MAX(pos), -1) + 1 FROM items").fetchone()[0]
        rows = dict(c.execute("SELECT annotator, COUNT(*) FROM orders GROUP BY annotator").fetchall())
        said = dict(c.execute("SELECT annotator, items FROM ordered").fetchall())
        short = sorted(a for a in set(rows) | set(said) if not rows.get(a, 0) == said.get(a, 0) <= n)
        return wrong, short

    def _rebuild_frontier_if_stale(self) -> None:
        """Check the pick's frontier (``orders.mine``, ``orders.labels``, the coverage ``ordered``
        records) against ``state`` and ``item_counts``, which are the replay of ``events``, and
        rebuild what differs: a database from before the frontier, or written by a program that
        bypassed its triggers. An annotator whose order does not cover its items is refilled."""
        c = self.conn()
        c.execute("BEGIN")                  # one snapshot: a server writing meanwhile cannot look stale
        try:
            wrong, short = self._frontier_stale(c)
        finally:
            c.execute("COMMIT")
        if not wrong and not short:
            return
        with self.write() as c:
            for a in short:
                c.execute("DELETE FROM ordered WHERE annotator = ?", (a,))
                c.execute("DELETE FROM orders WHERE annotator = ? AND item_id NOT IN (SELECT item_id FROM items)",
                          (a,))
                self._fill_order(c, a, int(self.get_meta("seed", 0)), self.get_meta("mode") == "reward")
            c.execute(f"UPDATE orders SET mine = COALESCE((SELECT {MINE_SQL.format(s='s')} FROM state s "
                      f"WHERE s.annotator = orders.annotator AND s.item_id = orders.item_id), 0), "
                      f"labels = COALESCE((SELECT n.labels FROM item_counts n WHERE n.item_id = orders.item_id), 0)")

    def _rebuild_state_if_missing(self) -> None:
        c = self.conn()
        if c.execute("SELECT 1 FROM state LIMIT 1").fetchone() is not None or \
                c.execute("SELECT 1 FROM events LIMIT 1").fetchone() is None:
            return
        with self.write() as w:
            labels, skips, _ = self._replay(self._events(w))
            for who in {a for a, _ in labels} | {a for a, _ in skips}:
                self._set_state(w, who, labels, skips, {i for a, i in list(labels) + list(skips) if a == who})

    def current_labels(self, item_ids: Iterable[str] | None = None) -> list[dict]:
        """Every annotator's current label of every item (or of ``item_ids``): ``{item_id, annotator,
        value, created, elapsed_ms, event_id}``, in event order."""
        sql = "SELECT e.* FROM state s JOIN events e ON e.id = s.label_event"
        if item_ids is None:
            rows = self.conn().execute(sql + " ORDER BY e.id").fetchall()
        else:
            ids = list(item_ids)
            rows = [r for k in range(0, len(ids), 500)      # SQLite's bound-parameter limit, in chunks
                    for r in self.conn().execute(f"{sql} WHERE s.item_id IN ({','.join('?' * len(ids[k:k + 500]))})",
                                                 ids[k:k + 500])]
            rows.sort(key=lambda e: e["id"])
        return [{"item_id": e["item_id"], "annotator": e["annotator"], "value": json.loads(e["value"]),
                 "created": e["created"], "elapsed_ms": e["elapsed_ms"], "event_id": e["id"]} for e in rows]

    def skipped(self) -> list[tuple[str, str]]:
        """(annotator, item) pairs skipped and not labelled since."""
        return sorted((r["annotator"], r["item_id"]) for r in self.conn().execute(
            "SELECT annotator, item_id FROM state WHERE skip_event IS NOT NULL"))

    def submit(self, annotator: str, item_id: str, value: dict, *, elapsed_ms: int | None = None,
               kind: str = "label") -> int:
        """Commit a label (or a skip) and return its event id. The item must exist. The same label
        again (a retried request: the browser resends when a reply is lost) is no new event: it returns
        the current label's id, so one undo takes the label back (two events left the first one behind
        an undo that said it had removed it)."""
        if kind not in ("label", "skip"):
            raise ValueError(kind)
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
        with self.write() as c:
            if c.execute("SELECT 1 FROM items WHERE item_id = ?", (item_id,)).fetchone() is None:
                raise KeyError(item_id)
            if kind == "label":
                cur_lab = c.execute("SELECT e.id, e.value FROM state s JOIN events e ON e.id = s.label_event "
                                    "WHERE s.annotator = ? AND s.item_id = ? AND s.skip_event IS NULL",
                                    (annotator, item_id)).fetchone()
                if cur_lab is not None and cur_lab["value"] == text:
                    c.execute("DELETE FROM claims WHERE item_id = ? AND annotator = ?", (item_id, annotator))
                    return int(cur_lab["id"])
            cur = c.execute("INSERT INTO events (item_id, annotator, kind, value, elapsed_ms, created) "
                            "VALUES (?, ?, ?, ?, ?, ?)", (item_id, annotator, kind, text, elapsed_ms, now_iso()))
            eid = int(cur.lastrowid)
            old = c.execute("SELECT label_event FROM state WHERE annotator = ? AND item_id = ?",
                            (annotator, item_id)).fetchone()
            # the replay's rules: a label clears a pending skip; a skip keeps an earlier label
            lab, sk = (eid, None) if kind == "label" else (old["label_event"] if old else None, eid)
            self._put_state(c, annotator, item_id, lab, sk)
            c.execute("DELETE FROM claims WHERE item_id = ? AND annotator = ?", (item_id, annotator))
            return eid

    def undo(self, annotator: str) -> tuple[str, dict | None] | None:
        """Take back the annotator's latest label or skip; return its item (shown next) and the
        label taken back (None for a skip), or None when there is nothing to undo."""
        # The replay's rules (:meth:`_replay`), without replaying the annotator's whole log: an undo
        # always takes back the top of the stack, so the stack is the label / skip events that no
        # undo names, and its top the latest of them (indexed: ``events_undone``).
        # (``+e.id``: without its integer affinity the comparison can use the expression index)
        not_undone = ("NOT EXISTS (SELECT 1 FROM events u WHERE u.kind = 'undo' AND "
                      "json_extract(u.value, '$.undoes') = +e.id)")
        with self.write() as c:
            last = c.execute(f"SELECT * FROM events e WHERE e.annotator = ? AND e.kind IN ('label', 'skip') AND "
                             f"{not_undone} ORDER BY e.id DESC LIMIT 1", (annotator,)).fetchone()
            if last is None:
                return None
            c.execute("INSERT INTO events (item_id, annotator, kind, value, elapsed_ms, created) "
                      "VALUES (?, ?, 'undo', ?, NULL, ?)",
                      (last["item_id"], annotator, json.dumps({"undoes": last["id"]}), now_iso()))
            old = c.execute("SELECT label_event, skip_event FROM state WHERE annotator = ? AND item_id = ?",
                            (annotator, last["item_id"])).fetchone()
            if last["kind"] == "skip":          # the skip goes; an earlier label stays
                lab, sk = (old["label_event"] if old else None), None
            else:                               # the label goes, the one before it (if any) comes back;
                prev = c.execute(               # a skip it cleared does not
                    f"SELECT e.id FROM events e WHERE e.item_id = ? AND e.annotator = ? AND e.kind = 'label' AND "
                    f"e.id < ? AND {not_undone} ORDER BY e.id DESC LIMIT 1",
                    (last["item_id"], annotator, last["id"])).fetchone()
                lab, sk = (prev["id"] if prev else None), None
            if lab is None and sk is None:
                c.execute("DELETE FROM state WHERE annotator = ? AND item_id = ?", (annotator, last["item_id"]))
            else:
                self._put_state(c, annotator, last["item_id"], lab, sk)
            c.execute("INSERT OR REPLACE INTO claims (item_id, annotator, at) VALUES (?, ?, ?)",
                      (last["item_id"], annotator, time.time()))
            return last["item_id"], (json.loads(last["value"]) if last["kind"] == "label" else None)

    # ------------------------------------------------------------ assignment
    def next_item(self, annotator: str, *, now: float | None = None) -> dict | None:
        """The next item for ``annotator`` (and a claim on it), or None when nothing is left.

        In this order: an item shown to the annotator before and not answered (the first in input
        order); else the first item in their order (``orders``; ``reward`` jobs: arrival order) that
        they have neither labelled nor skipped and that fewer than ``overlap`` others have labelled or
        hold a fresh claim on; else, by the same rule, the first of the items they skipped.

        The cost does not grow with the items already done: see :meth:`_first_free`."""
        now = time.time() if now is None else now
        overlap = int(self.get_meta("overlap", 1))
        seed = int(self.get_meta("seed", 0))
        arrival = self.get_meta("mode") == "reward"
        with self.write() as c:
            c.execute("DELETE FROM claims WHERE at < ?", (now - CLAIM_TTL_S,))
            row = c.execute(
                "SELECT i.item_id FROM claims k JOIN items i ON i.item_id = k.item_id WHERE k.annotator = :a "
                "AND NOT EXISTS (SELECT 1 FROM state s WHERE s.annotator = :a AND s.item_id = k.item_id "
                "AND s.label_event IS NOT NULL) ORDER BY i.pos, i.item_id LIMIT 1", {"a": annotator}).fetchone()
            if row is None:
                self._fill_order(c, annotator, seed, arrival)
                row = self._first_free(c, annotator, 0, overlap)
                if row is None:                    # skipped items come back last
                    row = self._first_free(c, annotator, 1, overlap)
            if row is None:
                return None
            item_id = row["item_id"]
            c.execute("INSERT OR REPLACE INTO claims (item_id, annotator, at) VALUES (?, ?, ?)",
                      (item_id, annotator, now))
            row = c.execute("SELECT * FROM items WHERE item_id = ?", (item_id,)).fetchone()
        return self._item(row)

    @staticmethod
    def _first_free(c: sqlite3.Connection, annotator: str, mine: int, overlap: int) -> sqlite3.Row | None:
        """The first row of the annotator's order with ``mine`` (0: untouched, 1: skipped) that fewer
        than ``overlap`` others have labelled or hold a fresh claim on.

        The annotator has no label on such a row, so its ``labels`` are the others'. For each count
        ``n`` below ``overlap`` the rows ``(annotator, mine, n)`` are one range of ``orders_frontier``
        sorted by ``(okey, item_id)``: a seek, then a walk past only the rows whose claims fill them
        (at most one per claimed item). The pick is the least of those ``overlap`` firsts. Labelled,
        skipped-when-looking-for-untouched and full items are outside every range, which is why the
        cost does not grow with them."""
        # the others who hold a claim on the item and have not labelled it (one who did both is in labels)
        claimed = ("(SELECT COUNT(*) FROM claims k WHERE k.item_id = o.item_id AND k.annotator != :a AND NOT EXISTS "
                   "(SELECT 1 FROM state s WHERE s.item_id = k.item_id AND s.annotator = k.annotator "
                   "AND s.label_event IS NOT NULL))")
        best = None
        for n in range(overlap):
            row = c.execute(
                f"SELECT o.item_id, o.okey FROM orders o WHERE o.annotator = :a AND o.mine = :m AND o.labels = :n "
                f"AND :n + {claimed} < :overlap ORDER BY o.okey, o.item_id LIMIT 1",
                {"a": annotator, "m": mine, "n": n, "overlap": overlap}).fetchone()
            if row is not None and (best is None or (row["okey"], row["item_id"]) < (best["okey"], best["item_id"])):
                best = row
        return best

    def _fill_order(self, c: sqlite3.Connection, annotator: str, seed: int, arrival: bool = False) -> None:
        """Add the sort keys of ``annotator`` for every item that has none yet (all of them the first
        time; after that only items added since), with their frontier (``mine``, ``labels``) as
        ``state`` and ``item_counts`` have it now. Items are only ever appended (``pos`` 0, 1, ...), so
        ``ordered`` (how many items the annotator's order covers) against ``MAX(pos) + 1`` is the check,
        two index lookups, and the missing items are those from ``pos`` ``ordered`` on. ``arrival``
        (reward jobs): the key is the position, zero-padded so that text order is arrival order."""
        n = c.execute("SELECT COALESCE(MAX(pos), -1) + 1 FROM items").fetchone()[0]
        row = c.execute("SELECT items FROM ordered WHERE annotator = ?", (annotator,)).fetchone()
        if row is not None and row[0] == n:
            return
        missing = c.execute("SELECT item_id, pos FROM items WHERE pos >= ?", (row[0] if row else 0,)).fetchall()
        keys = sorted((f"{pos:016d}" if arrival else order_key(seed, annotator, item_id), item_id)
                      for item_id, pos in missing)      # in index order: 3x faster than random inserts
        c.executemany(
            f"INSERT OR IGNORE INTO orders (annotator, item_id, okey, mine, labels) VALUES (?1, ?2, ?3, "
            f"COALESCE((SELECT {MINE_SQL.format(s='s')} FROM state s WHERE s.annotator = ?1 AND s.item_id = ?2), 0), "
            f"COALESCE((SELECT labels FROM item_counts WHERE item_id = ?2), 0))",
            ((annotator, item_id, okey) for okey, item_id in keys))
        c.execute("INSERT OR REPLACE INTO ordered (annotator, items) VALUES (?, ?)", (annotator, n))

    def release(self, annotator: str) -> None:
        """Drop the annotator's claims (log out)."""
        with self.write() as c:
            c.execute("DELETE FROM claims WHERE annotator = ?", (annotator,))

    def progress(self, annotator: str | None = None) -> dict:
        """Counts for the page and for ``jprefs label stats``: read from the counters that the
        ``state`` triggers keep, a few rows (one per annotator and per label count) whatever the
        number of labels.

        ``labels``: current labels; ``started``: items with at least one; ``complete``: items with at
        least ``overlap``; ``by_annotator``: labels per annotator (those with any); with ``annotator``
        also ``mine`` and ``my_skipped`` (skipped and not labelled since)."""
        c = self.conn()
        overlap = int(self.get_meta("overlap", 1))
        n = self.n_items()
        labels, started, complete = c.execute(
            "SELECT COALESCE(SUM(labels * items), 0), COALESCE(SUM(items), 0), "
            "COALESCE(SUM(CASE WHEN labels >= ? THEN items ELSE 0 END), 0) FROM label_hist WHERE labels > 0",
            (overlap,)).fetchone()
        by = {r[0]: r[1] for r in c.execute("SELECT annotator, labels FROM annotator_counts WHERE labels > 0 "
                                            "ORDER BY annotator")}
        out = {"items": n, "overlap": overlap, "labels": labels, "complete": complete, "started": started,
               "target_labels": n * overlap, "by_annotator": by}
        if annotator is not None:
            out["mine"] = by.get(annotator, 0)
            row = c.execute("SELECT skipped FROM annotator_counts WHERE annotator = ?", (annotator,)).fetchone()
            out["my_skipped"] = row[0] if row else 0
        return out

    # ------------------------------------------------------------ live rewards (PPO)
    def wait_for_labels(self, item_ids: list[str], *, need: int = 1, timeout_s: float = 600.0,
                        poll_s: float = 0.5, on_wait=None) -> dict[str, list[dict]]:
        """Block until each item has ``need`` current labels or ``timeout_s`` passes; return
        ``item_id -> [label, ...]`` of what there is (complete or not)."""
        deadline = time.monotonic() + timeout_s
        want = set(item_ids)
        while True:
            got: dict[str, list[dict]] = {i: [] for i in item_ids}
            for r in self.current_labels(want):
                got[r["item_id"]].append(r)
            done = sum(1 for i in item_ids if len(got[i]) >= need)
            if done == len(item_ids) or time.monotonic() >= deadline:
                return got
            if on_wait is not None:
                on_wait(done, len(item_ids))
            time.sleep(poll_s)
