"""The labelling store, the HTTP API (in-process, no browser), items and export."""

from __future__ import annotations

import http.client
import io
import json
import sqlite3
import threading

import pytest

from jprefs.cli import main
from jprefs.data.io import read_records
from jprefs.data.schema import RankList
from jprefs.errors import ConfigError, DataError
from jprefs.label import export as lexport
from jprefs.label.items import load_items
from jprefs.label.server import BadRequest, check_value, make_server
from jprefs.label.store import CLAIM_TTL_S, Store

from .conftest import XSS_IMG, XSS_SCRIPT, write_cands


def rank_store(tmp_path, n=4, overlap=1, seed=0) -> Store:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cands = write_cands(tmp_path / "c.jsonl", n)
    st = Store(tmp_path / "l.sqlite")
    st.init_job(mode="rank", overlap=overlap, seed=seed)
    st.add_items(load_items("rank", str(cands), seed=seed).items)
    return st


# ---------------------------------------------------------------- store

def test_order_is_stable_per_annotator_and_differs_between_them(tmp_path):
    st = rank_store(tmp_path, n=8, overlap=2)
    st.add_annotator("a")
    st.add_annotator("b")

    def walk(who):
        seq = []
        while (it := st.next_item(who)) is not None:
            seq.append(it["item_id"])
            st.submit(who, it["item_id"], {"order": list(range(len(it["responses"]))), "all_bad": False})
        return seq

    a, b = walk("a"), walk("b")
    assert sorted(a) == sorted(b) == [f"p{i}" for i in range(8)]
    assert a != b                                  # each annotator has their own shuffle
    st2 = rank_store(tmp_path / "again", n=8, overlap=2)
    st2.add_annotator("a")
    assert st2.next_item("a")["item_id"] == a[0]   # the same seed, the same order


def test_overlap_and_claims(tmp_path):
    st = rank_store(tmp_path, n=2, overlap=1)
    x = st.next_item("a")
    y = st.next_item("b")
    assert x["item_id"] != y["item_id"]             # a's claim keeps b off a's item
    assert st.next_item("c") is None                 # overlap 1: both items are taken
    assert st.next_item("a")["item_id"] == x["item_id"]   # shown again until answered
    # a claim older than the TTL is released
    import time

    assert st.next_item("c", now=time.time() + CLAIM_TTL_S + 5) is not None


def test_undo_restores_and_skip_comes_last(tmp_path):
    st = rank_store(tmp_path, n=3)
    first = st.next_item("a")["item_id"]
    st.submit("a", first, {"order": [0, 1, 2, 3][:3], "all_bad": False})
    second = st.next_item("a")["item_id"]
    st.submit("a", second, {}, kind="skip")
    third = st.next_item("a")["item_id"]
    assert third not in (first, second)
    assert st.undo("a") == (second, None)            # the skip is taken back first
    assert st.undo("a")[0] == first
    assert st.current_labels() == []
    assert st.undo("a") is None
    # relabel twice, undo once: the earlier label of the same item comes back
    st.submit("a", first, {"order": [0, 1, 2], "all_bad": False})
    st.submit("a", first, {"order": [2, 1, 0], "all_bad": False})
    st.undo("a")
    assert [r["value"]["order"] for r in st.current_labels()] == [[0, 1, 2]]


def test_job_settings_cannot_change_under_a_database(tmp_path):
    st = rank_store(tmp_path)
    with pytest.raises(ConfigError, match="'rank' labelling database"):
        st.init_job(mode="ab")
    with pytest.raises(ConfigError, match="--seed 0"):
        st.init_job(mode="rank", seed=3)
    with pytest.raises(DataError, match="other content"):
        st.add_items([("p0", {"prompt": "changed"}, "x:1")])
    bad = tmp_path / "not.sqlite"
    bad.write_text("hello, not a database " * 100)
    with pytest.raises(DataError, match="not a labelling database"):
        Store(bad)


def test_tokens_are_hashed_and_checked(tmp_path):
    st = rank_store(tmp_path)
    tok = st.add_annotator("佐藤")
    assert st.add_annotator("佐藤") is None          # exists: no second token
    assert st.check_login("佐藤", tok) and not st.check_login("佐藤", tok + "x") and not st.check_login("x", tok)
    raw = sqlite3.connect(st.path).execute("SELECT * FROM annotators").fetchall()
    assert tok not in json.dumps(raw, ensure_ascii=False)
    new = st.add_annotator("佐藤", reset=True)
    assert st.check_login("佐藤", new) and not st.check_login("佐藤", tok)
    with pytest.raises(ConfigError):
        st.add_annotator("a,b")


# ---------------------------------------------------------------- values

def test_check_value_per_mode():
    item = {"responses": ["a", "b", "c"]}
    assert check_value("rank", item, {"order": [2, 0, 1]})["order"] == [2, 0, 1]
    for bad in ({"order": [0, 1]}, {"order": [0, 0, 1]}, {"order": [True, 0, 2]}, {"order": "012"},
                {"order": [0, 1, 2], "all_bad": "yes"}):
        with pytest.raises(BadRequest):
            check_value("rank", item, bad)
    with pytest.raises(BadRequest):
        check_value("ab", {}, {"label": "A"})
    pair = {"pair": {"prompt": [{"role": "user", "content": "q"}], "chosen": "c", "rejected": "r"}}
    with pytest.raises(BadRequest, match="reason"):
        check_value("review", pair, {"verdict": "reject"})
    with pytest.raises(BadRequest):
        check_value("review", pair, {"verdict": "correct", "corrected": {"meta": "x"}})
    assert check_value("review", pair, {"verdict": "correct", "corrected": {"prompt.0": "問"}})["corrected"] == \
        {"prompt.0": "問"}
    for bad in ({"score": 0}, {"score": 6}, {"score": 2.5}, {"score": True}):
        with pytest.raises(BadRequest):
            check_value("reward", {}, bad)
    with pytest.raises(BadRequest):
        check_value("reward", {}, {"score": 3}, reward_scale="thumbs")


# ---------------------------------------------------------------- HTTP API

@pytest.fixture
def api(tmp_path):
    st = rank_store(tmp_path)
    token = st.add_annotator("sato")
    admin = st.add_annotator("admin", admin=True)
    log = io.StringIO()
    srv = make_server(st, "127.0.0.1", 0, quiet=False, log=log)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    port = srv.server_address[1]

    def call(method, path, body=None, cookie=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        h = {"Content-Type": "application/json", **(headers or {})}
        if cookie:
            h["Cookie"] = cookie
        c.request(method, path, body=json.dumps(body) if isinstance(body, dict) else body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r, data

    yield call, token, admin, log, st
    srv.shutdown()
    srv.server_close()


def _login(call, name, token):
    r, body = call("POST", "/api/login", {"name": name, "token": token})
    assert r.status == 200, body
    return r.getheader("Set-Cookie").split(";")[0]


def test_api_auth_origin_and_headers(api):
    call, token, admin, log, st = api
    r, _ = call("GET", "/api/next")
    assert r.status == 401
    r, _ = call("POST", "/api/login", {"name": "sato", "token": "wrong"})
    assert r.status == 403
    r, _ = call("POST", "/api/login", {"name": "sato", "token": token}, headers={"Origin": "http://evil.example"})
    assert r.status == 403                                   # cross-site login refused
    r, _ = call("GET", "/api/me", headers={"Host": "rebound.example:80"})
    assert r.status == 421                                   # a DNS-rebinding page is refused
    r, _ = call("POST", "/api/login", "name=sato", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 415                                   # a plain form post cannot reach the API
    r, _ = call("POST", "/api/login", {"name": "sato", "token": token})
    cookie = r.getheader("Set-Cookie")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    sid = cookie.split(";")[0]
    r, body = call("GET", "/api/next", cookie=sid)
    assert r.status == 200 and json.loads(body)["item"]["item_id"].startswith("p")
    assert "script-src 'self'" in r.getheader("Content-Security-Policy")
    assert r.getheader("X-Content-Type-Options") == "nosniff"
    r, _ = call("GET", "/api/stats", cookie=sid)
    assert r.status == 403                                   # not the admin
    r, body = call("GET", "/api/stats", cookie=_login(call, "admin", admin))
    assert r.status == 200 and json.loads(body)["mode"] == "rank"
    for path in ("/static/../store.py", "/static/%2e%2e/store.py", "/static/nope.js"):
        assert call("GET", path)[0].status == 404
    text = log.getvalue()
    assert "/api/login" in text and token not in text and admin not in text and sid.split("=")[1] not in text


def test_api_submit_validates_and_commits(api):
    call, token, _, _, st = api
    sid = _login(call, "sato", token)
    item = json.loads(call("GET", "/api/next", cookie=sid)[1])["item"]
    k = len(item["responses"])
    r, body = call("POST", "/api/submit", {"item_id": item["item_id"], "value": {"order": [0] * k}}, cookie=sid)
    assert r.status == 400 and "each of the" in json.loads(body)["error"]
    r, _ = call("POST", "/api/submit", {"item_id": "nope", "value": {}}, cookie=sid)
    assert r.status == 404
    r, body = call("POST", "/api/submit", "{not json", cookie=sid)
    assert r.status == 400
    order = [x["index"] for x in item["responses"]][::-1]
    r, body = call("POST", "/api/submit", {"item_id": item["item_id"], "value": {"order": order},
                                           "elapsed_ms": 1234}, cookie=sid)
    assert r.status == 200
    # committed before the answer: a fresh connection sees it
    fresh = sqlite3.connect(st.path).execute("SELECT item_id, value, elapsed_ms FROM events").fetchall()
    assert fresh == [(item["item_id"], json.dumps({"all_bad": False, "comment": "", "order": order}), 1234)]
    assert json.loads(body)["item"]["item_id"] != item["item_id"]


# ---------------------------------------------------------------- items and export

def test_items_reject_bad_rows_with_reasons(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_bytes(b'{"id": "a", "prompt": "q", "responses": ["x", "y", "x"]}\n'
                  b'{"id": "a", "prompt": "q", "responses": ["x", "z"]}\n'
                  b'{"prompt": "q", "responses": ["only"]}\n'
                  b'{"prompt": 5, "responses": ["a", "b"]}\n'
                  b'\xff\xfe broken\n[1, 2]\n')
    got = load_items("rank", str(p))
    assert got.rows == 6 and len(got.items) + len(got.rejects) == 6
    assert got.items[0][1]["responses"] == ["x", "y"] and got.items[0][1]["duplicates"] == 1
    assert [r["reason"] for r in got.rejects][:3] == ["duplicate_id", "too_few_responses", "non_string_prompt"]
    assert all(r["file"] == str(p) and "line" in r for r in got.rejects)


def _label_all(st, who, order_fn, all_bad=frozenset()):
    st.add_annotator(who)
    while (it := st.next_item(who)) is not None:
        k = len(it["responses"])
        st.submit(who, it["item_id"], {"order": order_fn(k), "all_bad": it["item_id"] in all_bad, "comment": ""})


def test_export_rank_borda_all_bad_unlabelled_and_counts(tmp_path):
    st = rank_store(tmp_path, n=5, overlap=2)
    # p4 stays unlabelled: both annotators skip it
    for who in ("a", "b"):
        st.add_annotator(who)
        st.submit(who, "p4", {}, kind="skip")
    _label_all(st, "a", lambda k: list(range(k)), all_bad={"p3"})
    _label_all(st, "b", lambda k: [1, 0] + list(range(2, k)), all_bad={"p3"})
    # an item was offered again after the skip: drop those labels so p4 stays unlabelled
    with st.write() as c:
        c.execute("DELETE FROM events WHERE item_id = 'p4' AND kind = 'label'")
    out = tmp_path / "ranked.jsonl"
    s = lexport.export(st.path, out)
    assert s["items"] == 5 and s["exported_items"] == 3 and s["rejects_by_reason"] == {"all_bad": 1, "unlabelled": 1}
    recs = read_records(out)
    # Borda of [0,1,2,3] and [1,0,2,3]: 0 and 1 tie (the labels say nothing between them), so every
    # item is written as the pairs between its tiers: p0 5 of its 6 pairs, p1 and p2 2 of 3 each
    assert not any(isinstance(r, RankList) for r in recs) and len(recs) == 9
    assert s["pairs"] == 9 and s["tied_pairs_dropped"] == 3 and s["items_with_ties"] == 3
    p0 = [r for r in recs if r.source_id == "p0"]
    assert {(r.chosen, r.rejected) for r in p0} == {
        (a, b) for a in ("東京です。", "大阪です。") for b in (XSS_SCRIPT, XSS_IMG)} | {(XSS_SCRIPT, XSS_IMG)}
    assert p0[0].meta["label"]["tiers"] == [[0, 1], [2], [3]]
    assert p0[0].license == "cc-by-4.0" and p0[0].meta["label"]["annotators"] == ["a", "b"]
    assert p0[0].meta["label"]["kendall_tau_mean"] == pytest.approx(2 / 3, abs=1e-4)
    assert main(["data", "stats", str(out)]) == 0
    per = tmp_path / "per.jsonl"
    sp = lexport.export(st.path, per, per_annotator=True)
    assert len(read_records(per)) == 6 and all(isinstance(r, RankList) for r in read_records(per))
    assert sp["tied_pairs_dropped"] == 0 and sp["pairs"] == 6 + 3 + 3 + 6 + 3 + 3


def test_export_review_majority_and_no_majority(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"id": f"x{i}", "prompt": [{"role": "user", "content": f"質問{i}"}], "chosen": "良い答え", "rejected": "悪い答え",
             "source": "s", "license": "mit"} for i in range(3)]
    pairs.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    st = Store(tmp_path / "r.sqlite")
    st.init_job(mode="review", overlap=2)
    loaded = load_items("review", str(pairs))
    assert loaded.notes and "keep_source_text" in loaded.notes[0]
    st.add_items(loaded.items)
    st.submit("a", "x0", {"verdict": "accept"})
    st.submit("b", "x0", {"verdict": "correct", "corrected": {"chosen": "より良い答え"}})
    st.submit("a", "x1", {"verdict": "accept"})
    st.submit("b", "x1", {"verdict": "reject", "reason": "誤訳"})
    s = lexport.export(st.path, tmp_path / "out.jsonl")
    assert s["rejects_by_reason"] == {"no_majority": 1, "unlabelled": 1}
    (rec,) = read_records(tmp_path / "out.jsonl")
    assert rec.chosen == "より良い答え" and rec.meta["review"]["original"] == {"chosen": "良い答え"}


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["label", "serve", str(tmp_path / "missing.jsonl"), "--db", str(tmp_path / "x.sqlite"),
                 "--mode", "rank", "--no-serve"]) == 2
    err = capsys.readouterr().err
    assert "missing.jsonl" in err and "Traceback" not in err
    assert main(["label", "stats", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "no such labelling database" in capsys.readouterr().err
    assert main(["label"]) == 2
    cands = write_cands(tmp_path / "c.jsonl")
    assert main(["label", "serve", str(cands), "--db", str(tmp_path / "l.sqlite"), "--mode", "rank",
                 "--annotators", "a,a", "--no-serve"]) == 2
    assert main(["label", "serve", str(cands), "--db", str(tmp_path / "l.sqlite"), "--mode", "rank",
                 "--annotators", "a", "--no-serve"]) == 0
    out = capsys.readouterr().out
    assert "access token for a:" in out and "4 items (4 new" in out
    assert main(["label", "serve", str(cands), "--db", str(tmp_path / "l.sqlite"), "--mode", "rank",
                 "--annotators", "a", "--no-serve"]) == 0
    out = capsys.readouterr().out
    assert "access token for a" not in out and "(0 new, 4 already" in out and "earlier tokens: a" in out


def test_state_table_equals_a_replay_of_the_event_log(tmp_path):
    """The materialised state (kept per event) is the replay of the append-only log, after any
    mix of labels, skips and undos; a database without it is rebuilt from the log."""
    import random

    st = rank_store(tmp_path, n=6, overlap=3)
    rnd = random.Random(7)
    for _ in range(300):
        who = rnd.choice(["a", "b", "c"])
        op = rnd.random()
        item = f"p{rnd.randrange(6)}"
        if op < 0.55:
            st.submit(who, item, {"order": rnd.sample(range(3), 3), "all_bad": False})
        elif op < 0.75:
            st.submit(who, item, {}, kind="skip")
        else:
            st.undo(who)

    def replayed():
        labels, skips, _ = st._replay(st._events(st.conn()))
        return (sorted((k, e["id"]) for k, e in labels.items()), sorted(skips))

    def from_state():
        return (sorted(((r["annotator"], r["item_id"]), r["event_id"]) for r in st.current_labels()), st.skipped())

    want = replayed()
    assert from_state() == want and want[0] and want[1]
    assert st.current_labels(["p0", "p3"]) == [r for r in st.current_labels() if r["item_id"] in ("p0", "p3")]
    before = st.progress("a")
    with st.write() as c:
        c.execute("DELETE FROM state")
    st.close()
    st2 = Store(st.path)
    assert (sorted(((r["annotator"], r["item_id"]), r["event_id"]) for r in st2.current_labels()),
            st2.skipped()) == want
    assert st2.progress("a") == before


def _next_item_by_scan(st: Store, annotator: str, now: float) -> str | None:
    """The assignment rule written the plain way (the implementation before the ``orders`` table): every
    item hashed and sorted on each request. Read-only: it takes no claim."""
    from jprefs.label.store import order_key

    c = st.conn()
    overlap, seed, arrival = int(st.get_meta("overlap", 1)), int(st.get_meta("seed", 0)), st.get_meta("mode") == "reward"
    done = {r[0] for r in c.execute("SELECT item_id FROM state WHERE annotator = ? AND label_event IS NOT NULL",
                                    (annotator,))}
    skipped = {r[0] for r in c.execute("SELECT item_id FROM state WHERE annotator = ? AND label_event IS NULL",
                                       (annotator,))}
    fresh = [r for r in c.execute("SELECT item_id, annotator FROM claims WHERE at >= ?", (now - CLAIM_TTL_S,))]
    busy: dict[str, set] = {}
    for r in list(c.execute("SELECT item_id, annotator FROM state WHERE label_event IS NOT NULL")) + fresh:
        if r["annotator"] != annotator:
            busy.setdefault(r["item_id"], set()).add(r["annotator"])
    mine = {r["item_id"] for r in fresh if r["annotator"] == annotator}
    open_, later = [], []
    for r in c.execute("SELECT item_id, pos FROM items"):
        i = r["item_id"]
        if i in done:
            continue
        if i in mine:
            open_.append((-1, "", r["pos"], i))
            continue
        if len(busy.get(i, ())) >= overlap:
            continue
        key = (0, "", r["pos"], i) if arrival else (0, order_key(seed, annotator, i), 0, i)
        (later if i in skipped else open_).append(key)
    pick = min(open_) if open_ else (min(later) if later else None)
    return None if pick is None else pick[3]


@pytest.mark.parametrize("mode, overlap, seed", [("rank", 1, 0), ("rank", 2, 3), ("reward", 2, 0), ("ab", 3, 1)])
def test_next_item_is_the_plain_scan_rule_under_random_sessions(tmp_path, mode, overlap, seed):
    """Random sessions of four annotators (labels, skips, undos, relabels, claims left to expire, items
    added midway): every next_item is the item the plain rule (hash and sort every item) picks."""
    import random
    import time

    rng = random.Random(seed * 10 + overlap)
    st = Store(tmp_path / "l.sqlite")
    st.init_job(mode=mode, overlap=overlap, seed=seed)

    def add(lo, hi):
        st.add_items([(f"it{k:03d}", {"k": k}, f"x.jsonl:{k}") for k in range(lo, hi)])

    add(0, 25)
    names, t, picked = ["sato", "suzuki", "tanaka", "ito"], time.time(), 0
    for step in range(400):
        if step == 150:
            add(25, 40)
        who = rng.choice(names)
        t += rng.choice([1, 5, 60, CLAIM_TTL_S / 3])          # claims expire now and then
        op = rng.random()
        if op < 0.1 and st.undo(who) is not None:
            continue
        expect = _next_item_by_scan(st, who, t)
        got = st.next_item(who, now=t)
        assert (got["item_id"] if got else None) == expect, (step, who)
        if got is None:
            continue
        picked += 1
        if op < 0.6:
            st.submit(who, got["item_id"], {"x": 1})
        elif op < 0.75:
            st.submit(who, got["item_id"], {}, kind="skip")
        # else: shown and left unanswered (a claim that holds until it expires)
    assert picked > 100


# ---------------------------------------------------------------- defects a new reader found

def test_review_export_counts_items_not_source_ids_and_rejects_a_correction_that_is_no_pair(tmp_path):
    """Two accepted pairs of one source_id (pairs cut from one rank list) aborted the export ("export lost
    items: 1 + 0 != 2") after writing its files; a correction making chosen == rejected crashed it."""
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"id": f"x{i}", "prompt": [{"role": "user", "content": f"質問{i}"}], "chosen": f"良い答え{i}",
             "rejected": f"悪い答え{i}", "source": "s", "source_id": "conv-7", "license": "mit"} for i in range(3)]
    pairs.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    st = Store(tmp_path / "r.sqlite")
    st.init_job(mode="review", overlap=1)
    st.add_items(load_items("review", str(pairs)).items)
    st.submit("a", "x0", {"verdict": "accept"})
    st.submit("a", "x1", {"verdict": "accept"})
    # the server refuses a correction that is no preference; one stored anyway (an old database) is a reject
    item = st.item("x2")
    with pytest.raises(BadRequest, match="same text"):
        check_value("review", item, {"verdict": "correct", "corrected": {"chosen": "悪い答え2"}})
    st.submit("a", "x2", {"verdict": "correct", "corrected": {"chosen": "悪い答え2"}})
    s = lexport.export(st.path, tmp_path / "out.jsonl")
    assert (s["exported_items"], s["rows"], s["rejects_by_reason"]) == (2, 2, {"invalid_correction": 1})
    assert sorted(r.meta["review"]["item_id"] for r in read_records(tmp_path / "out.jsonl")) == ["x0", "x1"]


def test_a_reward_job_keeps_its_scale_and_every_input_file_it_served(tmp_path):
    st = Store(tmp_path / "w.sqlite")
    st.init_job(mode="reward", reward_scale="5", input="a.jsonl", input_sha256="aa")
    with pytest.raises(ConfigError, match="--reward-scale 5"):
        st.init_job(mode="reward", reward_scale="thumbs")
    st.init_job(mode="reward", reward_scale="5", input="b.jsonl", input_sha256="bb")
    st.init_job(mode="reward", reward_scale="5", input="b.jsonl", input_sha256="bb")
    assert st.get_meta("inputs") == [{"input": "a.jsonl", "input_sha256": "aa"},
                                      {"input": "b.jsonl", "input_sha256": "bb"}]


def test_a_rank_order_must_be_exactly_the_k_indices():
    item = {"responses": ["a", "b", "c"]}
    for bad in ([2, 0, 1, "x"], [2, 0, 1, True], [2, 0, 1, None], [0, 1, 2, 1.0], [0, 1, 2.0], [0, 1, 2, 0]):
        with pytest.raises(BadRequest):
            check_value("rank", item, {"order": bad})


def test_a_retried_submit_is_one_label_and_one_undo_takes_it_back(tmp_path):
    st = rank_store(tmp_path)
    e1 = st.submit("sato", "p1", {"order": [0, 1, 2]})
    assert st.submit("sato", "p1", {"order": [0, 1, 2]}) == e1          # the same request again: no new event
    assert st.undo("sato")[0] == "p1"
    assert [r for r in st.current_labels() if r["annotator"] == "sato"] == []
    e2 = st.submit("sato", "p1", {"order": [0, 1, 2]})
    e3 = st.submit("sato", "p1", {"order": [2, 1, 0]})                  # a changed label is a new event
    assert e3 != e2 and st.undo("sato")[1] == {"order": [2, 1, 0]}
    assert [r["value"]["order"] for r in st.current_labels() if r["annotator"] == "sato"] == [[0, 1, 2]]


def test_the_api_refuses_negative_lengths_lone_surrogates_and_odd_static_paths(api):
    call, token, _, _, st = api
    sid = _login(call, "sato", token)
    r, _ = call("GET", "/static/" + "a" * 300 + ".js")
    assert r.status == 404
    r, _ = call("GET", "/static/a%00b.js")
    assert r.status == 404
    item = json.loads(call("GET", "/api/next", cookie=sid)[1])["item"]
    r, body = call("POST", "/api/submit", '{"item_id": "%s", "value": {"order": [0, 1, 2, 3], "comment": "\\ud800"}}'
                   % item["item_id"], cookie=sid)
    assert r.status == 400 and "Unicode" in json.loads(body)["error"]
    r, body = call("POST", "/api/submit", "{}", cookie=sid, headers={"Content-Length": "-1"})
    assert r.status == 400 and "Content-Length" in json.loads(body)["error"]     # read(-1) read to the end


def test_human_reward_refuses_more_scores_than_the_app_offers(tmp_path):
    from jprefs.label.human_reward import human_reward

    st = Store(tmp_path / "h.sqlite")
    st.init_job(mode="reward", overlap=1)
    with pytest.raises(ConfigError, match="--overlap 1"):
        human_reward(st.path, run="r", need=2)
    assert callable(human_reward(st.path, run="r", need=1))
