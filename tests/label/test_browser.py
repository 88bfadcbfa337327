"""End to end in real headless Chromium: a `jprefs label serve` process, pages driven by Playwright.

Screenshots of each mode go to ``JPREFS_SCREENSHOTS`` when set (``docs/label/`` holds the
committed ones), else to the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


from jprefs.label.store import Store

from .conftest import ROOT, XSS_IMG, XSS_SCRIPT, write_cands


def shot(page, tmp_path: Path, name: str) -> None:
    out = Path(os.environ.get("JPREFS_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)


def act(page, key: str) -> None:
    """Press ``key`` and wait until the page has taken the server's answer (the next item, or
    nothing left): pressing on before that would act on the item the page still shows."""
    before = int(page.evaluate("() => Number(document.body.dataset.loads || 0)"))
    page.keyboard.press(key)
    page.wait_for_function("n => Number(document.body.dataset.loads || 0) > n", arg=before)


def shown_indices(page) -> list[int]:
    return [int(x) for x in page.eval_on_selector_all("#ranklist li", "els => els.map(e => e.dataset.index)")]


def labels_of(db: Path, who: str | None = None) -> list[dict]:
    st = Store(db, create=False)
    try:
        return [r for r in st.current_labels() if who is None or r["annotator"] == who]
    finally:
        st.close()


def wait_labels(db: Path, n: int, who: str | None = None, timeout: float = 10.0) -> list[dict]:
    t0 = time.time()
    while time.time() - t0 < timeout:
        got = labels_of(db, who)
        if len(got) >= n:
            return got
        time.sleep(0.1)
    return labels_of(db, who)


def test_rank_with_keyboard_reload_undo_and_xss(tmp_path, serve, page_for):
    cands = write_cands(tmp_path / "cands.jsonl", 4)
    db = tmp_path / "labels.sqlite"
    s = serve(cands, "--db", db, "--mode", "rank", "--annotators", "sato")
    page = page_for(s, "sato")
    expected = {}
    pwned_seen = False
    for n in range(3):
        page.wait_for_selector("#ranklist li")
        shown = shown_indices(page)
        text = page.inner_text("#item")
        if "<script>" in text:
            # the injected markup is shown as text, nothing ran, no element was made from it
            assert XSS_SCRIPT in text and XSS_IMG in text
            assert page.evaluate("() => window.__pwned === undefined")
            assert page.eval_on_selector_all("#item img, #item script", "els => els.length") == 0
            pwned_seen = True
            shot(page, tmp_path, "rank")
        # keyboard: select the 2nd card, move it to the top; select the last and move it up once
        page.keyboard.press("2")
        page.keyboard.press("ArrowUp")
        page.keyboard.press(str(len(shown)))
        page.keyboard.press("k")
        want = [shown[1], shown[0]] + shown[2:]
        want[-1], want[-2] = want[-2], want[-1]
        assert shown_indices(page) == want
        act(page, "Enter")
        got = wait_labels(db, n + 1, "sato")
        assert len(got) == n + 1
        expected[got[-1]["item_id"]] = want
        assert got[-1]["value"]["order"] == want and got[-1]["value"]["all_bad"] is False
        assert got[-1]["elapsed_ms"] is not None
    # reload: the labels are in the database and the page goes on with the 4th item
    page.reload()
    page.wait_for_selector("#ranklist li")
    assert page.inner_text("#progress").startswith("あなた 3 件")
    assert {r["item_id"]: r["value"]["order"] for r in labels_of(db, "sato")} == expected
    fourth = shown_indices(page)
    # undo takes back the 3rd label and shows its order again; a new order replaces it
    last = labels_of(db, "sato")[-1]
    act(page, "z")
    assert shown_indices(page) == expected[last["item_id"]]
    assert len(labels_of(db, "sato")) == 2
    page.keyboard.press("x")                      # all bad this time
    act(page, "Enter")
    got = wait_labels(db, 3, "sato")
    redo = [r for r in got if r["item_id"] == last["item_id"]]
    assert redo and redo[0]["value"]["all_bad"] is True
    page.wait_for_selector("#ranklist li")
    assert shown_indices(page) == fourth
    # the mouse: drag the last card above the first
    cards = page.locator("#ranklist li")
    cards.nth(len(fourth) - 1).drag_to(cards.nth(0), target_position={"x": 20, "y": 3})
    dragged = [fourth[-1]] + fourth[:-1]
    assert shown_indices(page) == dragged
    act(page, "Enter")
    assert wait_labels(db, 4, "sato")[-1]["value"]["order"] == dragged
    page.wait_for_selector("#done:not([hidden])")
    if not pwned_seen:                             # the XSS item was the 4th: check it in the DB-backed page
        assert page.evaluate("() => window.__pwned === undefined")
    assert not page.errors
    # nothing secret in the log or the URL
    assert s.tokens["sato"] not in "".join(s.lines[len(s.tokens) + 2:])
    assert s.tokens["sato"] not in page.url


def test_two_annotators_overlap_2_agreement(tmp_path, serve, page_for):
    cands = write_cands(tmp_path / "cands.jsonl", 4)
    db = tmp_path / "labels.sqlite"
    s = serve(cands, "--db", db, "--mode", "rank", "--annotators", "sato,suzuki", "--overlap", "2")
    pa, pb = page_for(s, "sato"), page_for(s, "suzuki")
    # both at once: interleave their submissions; sato keeps the shown order, suzuki reverses it
    for _ in range(4):
        for page, rev in ((pa, False), (pb, True)):
            page.wait_for_selector("#ranklist li")
            if rev:
                n = len(shown_indices(page))
                for i in range(1, n):            # move card i to the top, for each i: reverses
                    page.keyboard.press(str(i + 1))
                    for _ in range(i):
                        page.keyboard.press("ArrowUp")
            act(page, "Enter")
    got = wait_labels(db, 8)
    assert len(got) == 8
    assert {r["item_id"] for r in got if r["annotator"] == "sato"} == {"p0", "p1", "p2", "p3"}
    assert {r["item_id"] for r in got if r["annotator"] == "suzuki"} == {"p0", "p1", "p2", "p3"}
    for page in (pa, pb):
        page.wait_for_selector("#done:not([hidden])")
    # the agreement: opposite orders only agree where the two shuffles happened to coincide
    r = subprocess.run([sys.executable, "-m", "jprefs.cli", "label", "stats", "--db", str(db), "--json"],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)["agreement"]["rank"]
    pair = rep["pairs"][0]
    assert sorted(pair["annotators"]) == ["sato", "suzuki"]
    orders = {(x["annotator"], x["item_id"]): x["value"]["order"] for x in got}
    agree = total = 0
    for item in ("p0", "p1", "p2", "p3"):
        a, b = orders[("sato", item)], orders[("suzuki", item)]
        for i in range(len(a)):
            for j in range(i + 1, len(a)):
                total += 1
                agree += (a.index(i) < a.index(j)) == (b.index(i) < b.index(j))
    assert pair["n"] == total and abs(pair["agreement"] - agree / total) < 1e-9
    assert pair["cohen_kappa"] is not None and pair["cohen_kappa"] < 0.5
    assert rep["krippendorff"]["alpha"] is not None
    assert len(rep["items"]) == 4 and all(0 <= it["disagreement"] <= 1 for it in rep["items"])
    # the admin page shows the same figures
    adm = page_for(s, "admin")
    adm.wait_for_selector("#admin:not([hidden]) table")
    text = adm.inner_text("#admin")
    assert "sato / suzuki" in text and "Cohen" in text and "Krippendorff" in text
    shot(adm, tmp_path, "admin")


def test_kill_9_between_submissions_loses_nothing(tmp_path, serve, page_for):
    cands = write_cands(tmp_path / "cands.jsonl", 6)
    db = tmp_path / "labels.sqlite"
    s = serve(cands, "--db", db, "--mode", "rank", "--annotators", "sato")
    token = s.tokens["sato"]
    page = page_for(s, "sato")
    done = []
    for n in range(3):
        page.wait_for_selector("#ranklist li")
        act(page, "Enter")
        done.append(labels_of(db, "sato")[-1])
    s.kill9()                                       # between submissions
    s2 = serve(cands, "--db", db, "--mode", "rank")   # same db: no new tokens, nothing reloaded twice
    assert "sato" not in s2.tokens
    assert [r["event_id"] for r in labels_of(db)] == [r["event_id"] for r in done]
    s2.tokens["sato"] = token
    page2 = page_for(s2, "sato")
    page2.wait_for_selector("#ranklist li")
    assert page2.inner_text("#progress").startswith("あなた 3 件")
    act(page2, "Enter")
    assert len(wait_labels(db, 4, "sato")) == 4
    assert len({r["item_id"] for r in labels_of(db)}) == 4


def test_ab_mode_keys_and_export_for_import_human(tmp_path, serve, page_for):
    from jprefs.eval.human import read_key, read_labels

    # the blinded items of `jprefs eval export-human`
    human = tmp_path / "human"
    r = subprocess.run([sys.executable, "-m", "jprefs.cli", "eval", "export-human", "--samples",
                        str(ROOT / "jprefs/resources/samples/eval-samples.jsonl"), "-o", str(human)],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    items = [json.loads(x) for x in (human / "items.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    db = tmp_path / "ab.sqlite"
    s = serve(human / "items.jsonl", "--db", db, "--mode", "ab", "--annotators", "sato")
    page = page_for(s, "sato")
    keys = ["a", "ArrowRight", "t", "c"]
    for i in range(len(items)):
        page.wait_for_selector("#side-left")
        if i == 0:
            shot(page, tmp_path, "ab")
        act(page, keys[i % 4])
    page.wait_for_selector("#done:not([hidden])")
    got = labels_of(db)
    assert [g["value"]["label"] for g in got] == [["left", "right", "tie", "cant_tell"][i % 4] for i in range(len(items))]
    out = tmp_path / "ab-labels.jsonl"
    r = subprocess.run([sys.executable, "-m", "jprefs.cli", "label", "export", "--db", str(db), "-o", str(out)],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    # eval import-human reads it: every label used, can't tell counted as unlabelled
    rows, _ = read_labels(out, read_key(human / "key.jsonl"), rater="x")
    assert len(rows) == len(items)
    assert sum(r.status == "used" for r in rows) == sum(1 for i in range(len(items)) if i % 4 != 3)
    assert {r.rater for r in rows} == {"sato"}
    res = tmp_path / "res"
    r = subprocess.run([sys.executable, "-m", "jprefs.cli", "eval", "import-human", "--labels", str(out), "--key",
                        str(human / "key.jsonl"), "-o", str(res)], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr


def test_review_mode_source_beside_translation_accept_reject_correct(tmp_path, serve, page_for):
    from jprefs.data.io import read_records

    src = [{"id": f"s{i}", "prompt": [{"role": "user", "content": f"What is {i} plus {i}?"}],
            "chosen": f"It is {2 * i}.", "rejected": "I don't know.", "source": "example", "license": "mit"}
           for i in range(3)]
    pairs = []
    for i, p in enumerate(src):
        pairs.append({**p, "prompt": [{"role": "user", "content": f"{i}足す{i}は？"}], "chosen": f"{2 * i}です。",
                      "rejected": "わかりません。<script>window.__pwned=3</script>",
                      "meta": {"translation": {"source_pair_id": p["id"], "engine": "openai", "model": "calm3",
                                               "flags": {"chosen": ["length_ratio"]} if i == 1 else {},
                                               "source": {"prompt": p["prompt"], "chosen": p["chosen"],
                                                          "rejected": p["rejected"]}}}})
    folder = tmp_path / "ja"
    folder.mkdir()
    (folder / "pairs.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in pairs),
                                        encoding="utf-8")
    db = tmp_path / "review.sqlite"
    s = serve(folder, "--db", db, "--mode", "review", "--annotators", "sato")
    page = page_for(s, "sato")
    seen = []
    for i in range(3):
        page.wait_for_selector("#item table")
        text = page.inner_text("#item")
        assert "What is" in text and "足す" in text                # English beside the Japanese
        assert "<script>" in text and page.evaluate("() => window.__pwned === undefined")
        if "length_ratio" in text:
            shot(page, tmp_path, "review")
        if i == 0:
            act(page, "y")
        elif i == 1:
            page.keyboard.press("r")                                  # focus goes to the reason
            page.keyboard.type("誤訳 / mistranslation")
            page.keyboard.press("Escape")
            act(page, "r")
        else:
            page.keyboard.press("e")
            ed = page.locator("textarea.editor[data-field=rejected]")
            ed.fill("分かりません。")
            before = int(page.evaluate("() => Number(document.body.dataset.loads || 0)"))
            ed.press("Control+Enter")
            page.wait_for_function("n => Number(document.body.dataset.loads || 0) > n", arg=before)
        got = wait_labels(db, i + 1)
        seen.append(got[-1])
    assert [g["value"]["verdict"] for g in seen] == ["accept", "reject", "correct"]
    assert seen[1]["value"]["reason"] == "誤訳 / mistranslation"
    assert seen[2]["value"]["corrected"] == {"rejected": "分かりません。"}
    out = tmp_path / "reviewed.jsonl"
    r = subprocess.run([sys.executable, "-m", "jprefs.cli", "label", "export", "--db", str(db), "-o", str(out)],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    recs = read_records(out)
    assert len(recs) == 2
    corrected = [p for p in recs if p.id == seen[2]["item_id"]][0]
    assert corrected.rejected == "分かりません。"
    assert corrected.meta["review"]["original"]["rejected"].startswith("わかりません。")
    assert corrected.license == "mit"
    rej = [json.loads(x) for x in (tmp_path / "reviewed.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [x["reason"] for x in rej] == ["rejected_in_review"] and "誤訳" in rej[0]["error"]


def test_ppo_with_human_reward_driven_by_a_browser(tmp_path, serve, page_for):
    """A tiny PPO run whose every reward is a score typed in the page; first a step that nobody
    scores times out (the run stops, resumable), then a person scores and the rerun completes."""
    db = tmp_path / "human.sqlite"
    s = serve("--db", db, "--mode", "reward", "--annotators", "sato")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JPREFS_NO_PROGRESS": "1"}
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "jprefs.cli", "rl", str(ROOT / "rl/recipes/ppo-human-tiny.yaml"), "-o", str(run_dir),
           f"human_db={db}", "total_steps=2", "sft_steps=40", "eval_every=2"]
    # nobody scores: the step gives up after 2 s with a clear message; the rollouts stay queued
    r = subprocess.run(cmd + ["human_timeout_s=2"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=240)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "no human score yet" in r.stderr and "rerun the same command" in r.stderr
    st = Store(db, create=False)
    queued = st.n_items()
    assert queued == 4
    # now a person scores in the browser while the run waits
    proc = subprocess.Popen(cmd + ["human_timeout_s=120"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=ROOT, env=env)
    page = page_for(s, "sato")
    scores = []
    t0 = time.time()
    while proc.poll() is None and time.time() - t0 < 200:
        if page.locator("#work:not([hidden]) .card .body").count():
            text = page.inner_text("#item")
            score = 5 if len(text) % 2 else 2
            before = len(labels_of(db))
            if not scores:
                shot(page, tmp_path, "reward")
            act(page, str(score))
            assert len(labels_of(db)) == before + 1
            scores.append(score)
        else:
            time.sleep(0.2)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out[-3000:]
    # the first batch was the one already queued (same seed, same texts): scored once, not asked again
    assert st.n_items() == 8 and len(scores) == 8 == len(labels_of(db))
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    steps = [m for m in metrics if m.get("step", 0) >= 1 and "objective/score" in m]
    assert len(steps) == 2
    by_item = {r["item_id"]: r["value"]["score"] for r in labels_of(db)}
    items = st.items()
    for k, m in enumerate(steps):
        batch = items[4 * k: 4 * k + 4]
        want = sum((by_item[it["item_id"]] - 3) / 2 for it in batch) / 4
        assert abs(m["objective/score"] - want) < 1e-6
    assert (run_dir / "done.json").exists()
