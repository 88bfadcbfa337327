"""Labelling app: how fast a submission round trip is, what durability costs, and how it scales.

Two annotators label a rank job through the real HTTP API (in-process server, http.client): each
round trip is one ``/api/submit`` that commits the label and returns the next item. Measured:

- labels/s and p50/p95 latency with ``synchronous=FULL`` (what jprefs uses: a commit is on disk
  before the page is told "saved") against the same loop with ``synchronous=OFF`` (a crash may lose
  recent labels): the cost of durability, as a ratio;
- latency of the first 100 round trips against the last 100 (after ``--items`` x 2 labels): how a
  request's cost grows with the labels already made (``bench/label_assign_bench.py`` times the
  pick alone against job size).

Usage::

    python bench/label_store.py --items 1000
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jprefs.label.server import make_server  # noqa: E402
from jprefs.label.store import Store  # noqa: E402


def build(db: Path, n: int) -> tuple[Store, dict[str, str]]:
    st = Store(db)
    st.init_job(mode="rank", overlap=2, seed=0)
    st.add_items((f"p{i}", {"prompt": [{"role": "user", "content": f"質問{i}"}],
                            "responses": [f"回答{i}-{k}" for k in range(4)], "shown": [0, 1, 2, 3],
                            "license": "mit", "data_source": "bench", "meta": {}}, "bench")
                 for i in range(n))
    return st, {who: st.add_annotator(who) for who in ("a", "b")}


def annotate(port: int, who: str, token: str, lat: list[float]) -> None:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(method, path, body=None, cookie=None):
        h = {"Content-Type": "application/json"}
        if cookie:
            h["Cookie"] = cookie
        c.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
        r = c.getresponse()
        return r, json.loads(r.read())

    r, _ = call("POST", "/api/login", {"name": who, "token": token})
    cookie = r.getheader("Set-Cookie").split(";")[0]
    _, nxt = call("GET", "/api/next", cookie=cookie)
    while nxt.get("item"):
        t0 = time.perf_counter()
        _, nxt = call("POST", "/api/submit", {"item_id": nxt["item"]["item_id"],
                                              "value": {"order": [3, 2, 1, 0]}}, cookie=cookie)
        lat.append(time.perf_counter() - t0)
    c.close()


def run(n: int, synchronous: str) -> dict:
    with tempfile.TemporaryDirectory() as d:
        st, tokens = build(Path(d) / "l.sqlite", n)
        if synchronous != "FULL":            # the baseline: every connection of this store, without fsync
            orig = st.conn

            def conn():
                c = orig()
                c.execute(f"PRAGMA synchronous={synchronous}")
                return c
            st.conn = conn
        srv = make_server(st, "127.0.0.1", 0, quiet=True)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        lats = {w: [] for w in tokens}
        t0 = time.perf_counter()
        ths = [threading.Thread(target=annotate, args=(srv.server_address[1], w, t, lats[w])) for w, t in tokens.items()]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        wall = time.perf_counter() - t0
        srv.shutdown()
        srv.server_close()
        n_labels = len(st.current_labels())
    allv = [x for v in lats.values() for x in v]
    first = [x for v in lats.values() for x in v[:50]]
    last = [x for v in lats.values() for x in v[-50:]]
    q = statistics.quantiles(allv, n=20)
    return {"synchronous": synchronous, "labels": n_labels, "wall_s": wall, "labels_per_s": n_labels / wall,
            "p50_ms": 1000 * statistics.median(allv), "p95_ms": 1000 * q[18],
            "first100_ms": 1000 * statistics.median(first), "last100_ms": 1000 * statistics.median(last)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("-o", "--output", default="bench/results/label-store.json")
    a = ap.parse_args()
    full, off = run(a.items, "FULL"), run(a.items, "OFF")
    res = {"items": a.items, "full": full, "off": off,
           "durability_cost_ratio": off["labels_per_s"] / full["labels_per_s"],
           "growth_ratio_last_vs_first": full["last100_ms"] / full["first100_ms"]}
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    Path(a.output).write_text(json.dumps(res, indent=1))
    for r in (full, off):
        print(f"synchronous={r['synchronous']}: {r['labels']} labels in {r['wall_s']:.1f} s = {r['labels_per_s']:.0f}/s, "
              f"p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, first 100 {r['first100_ms']:.1f} ms, "
              f"last 100 {r['last100_ms']:.1f} ms")
    print(f"durability (FULL vs OFF throughput): {res['durability_cost_ratio']:.2f}x; "
          f"latency growth last/first 100: {res['growth_ratio_last_vs_first']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
