"""Human A/B: blinded export, labels back, win/tie/loss, agreement, and every kind of bad input."""

import csv
import json
from pathlib import Path

import pytest

from jprefs.cli import main
from jprefs.eval.human import (LABEL_SYNONYMS, cohen_kappa, csv_text, fleiss_kappa, majority, parse_label)

A, B = "policy-alpha-7", "policy-beta-3"
CATS = ("math", "writing", "harmful")


def _samples(path: Path, n: int, *, per: int = 1, names=(A, B), drop=()) -> Path:
    """A samples.jsonl as `jprefs eval policy` writes it: both policies, ``per`` samples each.
    Answers hold newlines, quotes, commas and a leading '-' (a spreadsheet formula character)."""
    rows = []
    for i in range(n):
        for j, pol in enumerate(names):
            for k in range(per):
                if (i, pol) in drop:
                    continue
                side = "甲" if j == 0 else "乙"
                rows.append({"prompt_id": f"q{i:03d}", "prompt": f"質問{i}: 「今週末に」の続きを書いて、\n二行で。",
                             "category": CATS[i % 3], "policy": pol, "sample": k, "seed": 1000 + k,
                             "response": f"- 回答{side}{i}-{k}, \"引用\"\n=二行目", "reward": 0.5 * j})
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _export(tmp_path, samples, *extra, out="exp"):
    o = tmp_path / out
    assert main(["eval", "export-human", "--samples", str(samples), "-o", str(o), *extra]) == 0
    return o


def _key(out: Path) -> dict:
    return {r["item_id"]: r for r in map(json.loads, (out / "key.jsonl").read_text(encoding="utf-8").splitlines())}


def _items_csv(out: Path) -> list[dict]:
    with open(out / "items.csv", encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def _label_file(path: Path, out: Path, vote_of) -> Path:
    """A rater's CSV: ``vote_of(position, key_row)`` -> 'a' | 'b' | 'tie' (a vote for a policy),
    written as left / right / tie the way a person sees the items."""
    key = _key(out)
    rows = _items_csv(out)
    for pos, r in enumerate(rows):
        k = key[r["item_id"]]
        v = vote_of(pos, k)
        r["label"] = "tie" if v == "tie" else (k["a_side"] if v == "a" else
                                               ("right" if k["a_side"] == "left" else "left"))
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _import(tmp_path, key_dir, *labels, extra=(), out="res"):
    args = ["eval", "import-human", "--key", str(key_dir / "key.jsonl"), "-o", str(tmp_path / out)]
    for f in labels:
        args += ["--labels", str(f)]
    assert main(args + list(extra)) == 0
    return json.loads((tmp_path / out / "human.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------- round trip

def test_a_rater_who_always_prefers_a_gives_win_one(tmp_path):
    out = _export(tmp_path, _samples(tmp_path / "s.jsonl", 12))
    lab = _label_file(tmp_path / "sato.csv", out, lambda pos, k: "a")
    res = _import(tmp_path, out, lab)
    o = res["overall"]
    assert (o["n"], o["wins"], o["ties"], o["losses"]) == (12, 12, 0, 0)
    assert o["win"] == 1.0 and o["win_ci95"] == [1.0, 1.0] and o["at_least_as_good"] == 1.0
    assert o["sign_test_p"] == pytest.approx(2 / 2 ** 12)
    assert res["a"] == A and res["b"] == B and res["raters"] == ["sato"]
    assert o["sentence"] == f"{A} at least as good as {B} on 12 of 12 prompts (12 wins, 0 ties)"
    # half of the items show A on the right: the rater wrote both sides, and each maps back to A
    assert res["label_sides"] == {"left": 6, "right": 6, "tie": 0}
    rep = (tmp_path / "res" / "report.md").read_text(encoding="utf-8")
    assert o["sentence"] in rep and (tmp_path / "res" / "report.html").exists()
    per_item = [json.loads(x) for x in (tmp_path / "res" / "per_item.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(per_item) == 12 and all(p["majority"] == "a" and p["outcome_for_a"] == 1 for p in per_item)


def test_30_wins_54_ties_16_losses_is_the_84_of_100_form(tmp_path):
    scipy_stats = pytest.importorskip("scipy.stats")
    out = _export(tmp_path, _samples(tmp_path / "s.jsonl", 100), "--seed", "3")
    lab = _label_file(tmp_path / "r.csv", out, lambda pos, k: "a" if pos < 30 else ("tie" if pos < 84 else "b"))
    res = _import(tmp_path, out, lab)
    o = res["overall"]
    assert (o["wins"], o["ties"], o["losses"], o["n"], o["n_prompts"]) == (30, 54, 16, 100, 100)
    assert (o["win"], o["tie"], o["loss"], o["at_least_as_good"]) == pytest.approx((0.30, 0.54, 0.16, 0.84))
    assert o["sentence"] == f"{A} at least as good as {B} on 84 of 100 prompts (30 wins, 54 ties)"
    assert o["sign_test_p"] == pytest.approx(scipy_stats.binomtest(30, 46, 0.5).pvalue, rel=1e-9)
    for name in ("win", "tie", "loss", "at_least_as_good"):
        lo, hi = o[f"{name}_ci95"]
        assert lo < o[name] < hi and hi - lo < 0.25
    # categories come from the key, one prompt in three each
    assert set(res["per_category"]) == set(CATS)
    assert sum(c["n"] for c in res["per_category"].values()) == 100
    assert sum(c["wins"] for c in res["per_category"].values()) == 30
    assert o["sentence"] in (tmp_path / "res" / "report.md").read_text(encoding="utf-8")


def test_several_samples_per_prompt_group_by_prompt(tmp_path):
    out = _export(tmp_path, _samples(tmp_path / "s.jsonl", 6, per=3), "--per-prompt", "2")
    key = _key(out)
    assert len(key) == 12 and sorted({k["sample"] for k in key.values()}) == [0, 1]
    lab = _label_file(tmp_path / "r.csv", out, lambda pos, k: "a" if k["sample"] == 0 else "b")
    o = _import(tmp_path, out, lab)["overall"]
    assert (o["wins"], o["losses"], o["n_prompts"]) == (6, 6, 6)
    assert o["sentence"] == f"{A} at least as good as {B} on 6 of 12 items of 6 prompts (6 wins, 0 ties)"
    # every prompt holds one win and one loss, so resampling prompts cannot move the win share
    assert o["win_ci95"] == [0.5, 0.5]
    out0 = _export(tmp_path, _samples(tmp_path / "s.jsonl", 6, per=3), "--per-prompt", "0", out="all")
    assert len(_key(out0)) == 18


def test_two_systems_made_elsewhere(tmp_path):
    f = tmp_path / "two.jsonl"
    rows = [{"prompt_id": f"x{i}", "prompt": f"問{i}", "response_a": f"甲{i}", "response_b": f"乙{i}"} for i in range(8)]
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = _export(tmp_path, f, "--a", "mine", "--b", "theirs")
    items = [json.loads(x) for x in (out / "items.jsonl").read_text(encoding="utf-8").splitlines()]
    key = _key(out)
    for it in items:   # the key says where response_a went
        k = key[it["item_id"]]
        assert it[k["a_side"]].startswith("甲") and k["a"] == "mine" and k[k["a_side"]] == "mine"
    lab = _label_file(tmp_path / "r.csv", out, lambda pos, k: "a")
    res = _import(tmp_path, out, lab)
    assert res["overall"]["win"] == 1.0 and res["a"] == "mine"
    assert "per_category" not in res   # no categories in the input


# ---------------------------------------------------------------- blinding

def test_items_reveal_no_policy_and_sides_are_balanced_and_seeded(tmp_path):
    s = _samples(tmp_path / "s.jsonl", 40)
    out = _export(tmp_path, s, "--seed", "7")
    for name in ("items.csv", "items.jsonl", "README.md"):
        text = (out / name).read_text(encoding="utf-8-sig")
        for word in (A, B, "alpha", "beta", "policy"):
            assert word not in text, (name, word)
    items = [json.loads(x) for x in (out / "items.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [it["item_id"] for it in items] == [f"item-{i:03d}" for i in range(1, 41)]
    assert all(set(it) == {"item_id", "prompt", "left", "right", "label", "comment"} for it in items)
    key = _key(out)
    assert sum(k["a_side"] == "left" for k in key.values()) == 20      # exactly balanced
    assert A in (out / "key.jsonl").read_text(encoding="utf-8")
    # shuffled: the items do not follow the prompts' order
    assert [k["prompt_id"] for k in key.values()] != sorted(k["prompt_id"] for k in key.values())
    # the same seed gives the same files; another seed other sides and another order
    again = _export(tmp_path, s, "--seed", "7", out="again")
    for name in ("items.csv", "items.jsonl", "key.jsonl"):
        assert (out / name).read_bytes() == (again / name).read_bytes()
    other = _key(_export(tmp_path, s, "--seed", "8", out="other"))
    assert [k["prompt_id"] for k in other.values()] != [k["prompt_id"] for k in key.values()]
    side = {k["prompt_id"]: k["a_side"] for k in key.values()}
    assert any(side[k["prompt_id"]] != k["a_side"] for k in other.values())
    # the items depend on the answers and the seed only, never on the policies' names
    renamed = _export(tmp_path, _samples(tmp_path / "r.jsonl", 40, names=("x", "y")), "--seed", "7", out="renamed")
    assert (renamed / "items.csv").read_bytes() == (out / "items.csv").read_bytes()


def test_sides_balance_over_seeds_with_an_odd_count(tmp_path):
    s = _samples(tmp_path / "s.jsonl", 9)
    lefts = [sum(k["a_side"] == "left" for k in _key(_export(tmp_path, s, "--seed", str(i), out=f"o{i}")).values())
             for i in range(8)]
    assert set(lefts) <= {4, 5} and len(set(lefts)) == 2    # the odd item falls on either side


def test_the_csv_opens_in_python_and_pandas(tmp_path):
    out = _export(tmp_path, _samples(tmp_path / "s.jsonl", 5))
    raw = (out / "items.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw          # BOM for Excel, CRLF records
    items = [json.loads(x) for x in (out / "items.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = _items_csv(out)
    assert list(rows[0]) == ["item_id", "prompt", "left", "right", "label", "comment"]
    assert len(rows) == len(items) == 5
    for r, it in zip(rows, items):
        assert r["item_id"] == it["item_id"] and r["prompt"] == it["prompt"] and "\n" in r["prompt"]
        # a cell starting with '-' gets the spreadsheet text marker; the JSONL keeps the exact text
        assert it["left"].startswith("- ") and r["left"] == "'" + it["left"] and r["right"] == "'" + it["right"]
        assert r["label"] == "" and r["comment"] == ""
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(out / "items.csv", encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert list(df.columns) == list(rows[0]) and df.to_dict("records") == rows


def test_csv_text_escapes_formulas_and_line_breaks():
    text = csv_text([{"item_id": "i1", "prompt": "=1+1", "left": "a\r\nb", "right": "@x", "label": "", "comment": ""}])
    rows = list(csv.reader(text.lstrip("\ufeff").splitlines(keepends=True)))
    assert rows[1] == ["i1", "'=1+1", "a\nb", "'@x", "", ""]


# ---------------------------------------------------------------- labels: synonyms and invalid rows

def test_label_synonyms():
    for raw in ("left", "L", " l ", "左", "ひだり", "ＬＥＦＴ", "Left"):
        assert parse_label(raw) == ("left", None), raw
    for raw in ("right", "R", "右", "みぎ"):
        assert parse_label(raw) == ("right", None), raw
    for raw in ("tie", "T", "draw", "引き分け", "同じ", "互角", "="):
        assert parse_label(raw) == ("tie", None), raw
    assert parse_label("") == (None, None) and parse_label("   ") == (None, None) and parse_label(None) == (None, None)
    for raw in ("A", "b", "1"):
        assert parse_label(raw)[0] is None and "ambiguous" in parse_label(raw)[1]
    assert parse_label("A", ab_means_left_right=True) == ("left", None)
    assert parse_label("2", ab_means_left_right=True) == ("right", None)
    assert parse_label("maybe")[1].startswith("unknown label 'maybe'")
    assert set(LABEL_SYNONYMS.values()) == {"left", "right", "tie"}


def test_every_row_is_accounted_for(tmp_path, capsys):
    out = _export(tmp_path, _samples(tmp_path / "s.jsonl", 14))
    ids = list(_key(out))
    labels = ["左", "右", "引き分け", "L", "r", "ＴＩＥ", "Left ", "", "A", "x", "maybe", "", "tie", "right"]
    rows = [{"item_id": i, "label": lab} for i, lab in zip(ids, labels)]
    rows.append({"item_id": ids[0], "label": "right"})          # line 15: a duplicate, another label
    rows.append({"item_id": "item-999", "label": "left"})       # line 16: not in the key
    rows.append({"item_id": "", "label": "left"})               # line 17: no item id
    f = tmp_path / "rater1.jsonl"
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + "{not json\n", encoding="utf-8")
    res = _import(tmp_path, out, f)
    (fs,) = res["files"]
    assert (fs["rows"], fs["used"], fs["unlabelled"], fs["invalid"]) == (18, 9, 2, 7)
    assert fs["used"] + fs["unlabelled"] + fs["invalid"] == fs["rows"]
    bad = {r["line"]: r["reason"] for r in res["invalid_rows"]}
    assert sorted(bad) == [9, 10, 11, 15, 16, 17, 18]
    assert "ambiguous" in bad[9] and "unknown label 'x'" in bad[10] and "unknown label 'maybe'" in bad[11]
    assert "duplicate item_id" in bad[15] and "different label" in bad[15] and "line 1 counts" in bad[15]
    assert "not in the key" in bad[16] and bad[17] == "no item_id" and "malformed JSON" in bad[18]
    assert res["overall"]["n"] == 9
    assert set(res["unlabelled_items"]) == {ids[7], ids[8], ids[9], ids[10], ids[11]}
    rep = (tmp_path / "res" / "report.md").read_text(encoding="utf-8")
    assert "unknown label 'maybe'" in rep and "| 18 | 9 | 2 | 7 |" in rep
    assert "rater1.jsonl, line 9" in capsys.readouterr().err
    # told that raters wrote A for the left answer, the A row counts
    res2 = _import(tmp_path, out, f, extra=["--ab-means-left-right"], out="res2")
    assert (res2["files"][0]["used"], res2["files"][0]["invalid"]) == (10, 6)


def test_csv_labels_in_shift_jis_and_a_rater_column(tmp_path):
    out = _export(tmp_path, _samples(tmp_path / "s.jsonl", 4))
    ids = list(_key(out))
    f = tmp_path / "team.csv"
    lines = ["item_id,label,rater"] + [f"{i},左,佐藤" for i in ids] + [f"{i},右,鈴木" for i in ids]
    f.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp932"))
    res = _import(tmp_path, out, f)
    assert res["raters"] == ["佐藤", "鈴木"] and res["files"][0]["raters"] == ["佐藤", "鈴木"]
    assert "Shift_JIS" in res["files"][0]["notes"][0]
    # 佐藤 always left and 鈴木 always right: they disagree on every item, so every majority is a tie
    assert res["overall"]["ties"] == 4
    assert res["agreement"]["pairs"][0]["agreement"] == 0.0


# ---------------------------------------------------------------- agreement

def test_two_raters_agreement_and_kappa_by_hand(tmp_path):
    out = _export(tmp_path, _samples(tmp_path / "s.jsonl", 10))
    r1 = ["a", "a", "a", "a", "b", "b", "tie", "tie", "a", "b"]
    r2 = ["a", "a", "a", "b", "b", "tie", "tie", "a", "a", "a"]
    f1 = _label_file(tmp_path / "one.csv", out, lambda pos, k: r1[int(k["prompt_id"][1:])])
    f2 = _label_file(tmp_path / "two.csv", out, lambda pos, k: r2[int(k["prompt_id"][1:])])
    res = _import(tmp_path, out, f1, f2)
    # by hand: agreement 6/10. Cohen: p_e = .5*.6 + .3*.2 + .2*.2 = .40 -> (.6 - .4) / .6 = 1/3.
    # Fleiss pools the marginals: a 11/20, b 5/20, tie 4/20 -> p_e = .405 -> (.6 - .405) / .595
    ag = res["agreement"]
    (pair,) = ag["pairs"]
    assert pair["raters"] == ["one", "two"] and pair["n"] == 10
    assert pair["agreement"] == pytest.approx(0.6) and pair["cohen_kappa"] == pytest.approx(1 / 3)
    assert ag["fleiss"]["kappa"] == pytest.approx(0.195 / 0.595) and ag["fleiss"]["n"] == 10
    assert ag["fleiss"]["mean_pairwise_agreement"] == pytest.approx(0.6) and ag["unanimous_items"] == 6
    # majority per item: agreement -> that vote, disagreement -> tie: a a a tie b tie tie tie a tie
    o = res["overall"]
    assert (o["wins"], o["ties"], o["losses"]) == (4, 5, 1)
    assert res["per_rater"]["one"]["wins"] == 5 and res["per_rater"]["two"]["wins"] == 6
    assert res["pooled"]["n"] == 20 and res["pooled"]["wins"] == 11
    sk = pytest.importorskip("sklearn.metrics")
    assert pair["cohen_kappa"] == pytest.approx(sk.cohen_kappa_score(r1, r2))


def test_kappa_functions_by_hand():
    # three raters, four items: P_i = 1, 1/3, 1, 0 -> P = 7/12; p_j = 6/12, 5/12, 1/12 -> P_e = 31/72
    k, p = fleiss_kappa([["a", "a", "a"], ["a", "a", "b"], ["b", "b", "b"], ["a", "b", "tie"]])
    assert p == pytest.approx(7 / 12) and k == pytest.approx(11 / 41)
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None       # one category only: undefined
    assert cohen_kappa(["a", "b"], ["b", "a"]) == pytest.approx(-1.0)
    assert majority(["a", "b", "tie"]) == "tie" and majority(["a", "a", "b"]) == "a"
    with pytest.raises(ValueError):
        fleiss_kappa([["a", "b"], ["a"]])


# ---------------------------------------------------------------- bad input: exit 2, one error

def _fails(capsys, argv, *needles):
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert "Traceback" not in err and lines[0].startswith("jprefs eval: error: "), err
    assert sum("error" in ln for ln in lines) == 1 and all(ln.startswith("  fix: ") for ln in lines[1:]), err
    for n in needles:
        assert n in err, (n, err)
    return err


def test_bad_export_inputs(tmp_path, capsys):
    s = _samples(tmp_path / "s.jsonl", 3)
    ex = ["eval", "export-human", "-o", str(tmp_path / "o")]
    _fails(capsys, ex + ["--samples", str(tmp_path / "nope.jsonl")], "not found", "nope.jsonl")
    one = tmp_path / "one.jsonl"
    one.write_text("".join(ln + "\n" for ln in s.read_text(encoding="utf-8").splitlines() if A in ln), encoding="utf-8")
    _fails(capsys, ex + ["--samples", str(one)], "one policy only", "--baseline")
    three = _samples(tmp_path / "three.jsonl", 3, names=(A, B, "third"))
    _fails(capsys, ex + ["--samples", str(three)], "3 policies", "--a NAME --b NAME")
    _fails(capsys, ex + ["--samples", str(s), "--a", "ppo"], "--a 'ppo'", A)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(s.read_text(encoding="utf-8") + '{"prompt_id": \n', encoding="utf-8")
    _fails(capsys, ex + ["--samples", str(broken)], "broken.jsonl, line 7", "malformed JSON")
    nokey = tmp_path / "nokey.jsonl"
    nokey.write_text(json.dumps({"prompt_id": "q", "prompt": "p", "response": "r"}) + "\n", encoding="utf-8")
    _fails(capsys, ex + ["--samples", str(nokey)], "nokey.jsonl, line 1", "no 'policy'")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    _fails(capsys, ex + ["--samples", str(empty)], "no rows")
    _fails(capsys, ex + ["--samples", str(s), "--per-prompt", "-1"], "--per-prompt -1")
    _export(tmp_path, s, out="o")
    _fails(capsys, ex + ["--samples", str(s)], "already holds an export", "--overwrite")
    assert main(ex + ["--samples", str(s), "--overwrite"]) == 0


def test_bad_import_inputs(tmp_path, capsys):
    out = _export(tmp_path, _samples(tmp_path / "s.jsonl", 6))
    good = _label_file(tmp_path / "good.csv", out, lambda pos, k: "a")
    key = str(out / "key.jsonl")
    im = ["eval", "import-human", "-o", str(tmp_path / "res")]
    _fails(capsys, im + ["--labels", str(tmp_path / "missing.csv"), "--key", key], "not found", "missing.csv")
    _fails(capsys, im + ["--labels", str(good), "--key", str(tmp_path / "nokey.jsonl")], "not found", "nokey.jsonl")
    hdr = tmp_path / "hdr.csv"
    hdr.write_text("id,choice\nitem-001,left\n", encoding="utf-8")
    _fails(capsys, im + ["--labels", str(hdr), "--key", key], "hdr.csv, line 1", "no 'item_id' or 'label' column",
           "fix: the first row must name the columns")
    nolab = tmp_path / "nolab.jsonl"
    nolab.write_text(json.dumps({"item_id": "item-001", "choice": "left"}) + "\n", encoding="utf-8")
    _fails(capsys, im + ["--labels", str(nolab), "--key", key], "nolab.jsonl, line 1", "no row has 'label'")
    blank = out / "items.csv"      # handed back unlabelled
    _fails(capsys, im + ["--labels", str(blank), "--key", key], "no usable label", "6 rows, 6 unlabelled, 0 invalid",
           "fix: fill the label column")
    _fails(capsys, im + ["--labels", str(good), "--labels", str(good), "--key", key], "given twice")
    book = tmp_path / "labels.xlsx"
    book.write_bytes(b"PK\x03\x04")
    _fails(capsys, im + ["--labels", str(book), "--key", key], "labels.xlsx", "CSV UTF-8")
    dup = tmp_path / "dupkey.jsonl"
    lines = (out / "key.jsonl").read_text(encoding="utf-8").splitlines()
    dup.write_text("\n".join(lines + lines[:1]) + "\n", encoding="utf-8")
    _fails(capsys, im + ["--labels", str(good), "--key", str(dup)], "dupkey.jsonl, line 7", "appears twice")
    # labels of one export against the key of another with the same item ids
    other = _export(tmp_path, _samples(tmp_path / "t.jsonl", 6), "--seed", "5", out="other")
    for k in _key(other):
        assert k in _key(out)
    wrong = _label_file(tmp_path / "wrong.csv", other, lambda pos, k: "a")
    _fails(capsys, im + ["--labels", str(wrong), "--key", key], "do not belong to this key")


def test_help_shows_examples(capsys):
    for sub in ("export-human", "import-human"):
        with pytest.raises(SystemExit) as e:
            main(["eval", sub, "--help"])
        assert e.value.code == 0
        assert "examples:" in capsys.readouterr().out


def test_the_module_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys, jprefs.eval.human; "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'matplotlib', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_the_bundled_demo_of_the_readme(tmp_path):
    """eval/README.md's round trip: the shipped labels belong to the seed-0 export of the shipped samples."""
    res_dir = Path(__file__).resolve().parents[2] / "jprefs" / "resources" / "samples"
    out = tmp_path / "human-demo"
    assert main(["eval", "export-human", "--samples", str(res_dir / "eval-samples.jsonl"), "--a", "ppo", "--b", "sft",
                 "-o", str(out)]) == 0
    res = _import(tmp_path, out, res_dir / "eval-labels-rater1.csv", res_dir / "eval-labels-rater2.csv")
    o = res["overall"]
    assert o["sentence"] == "ppo at least as good as sft on 5 of 8 prompts (2 wins, 3 ties)"
    assert (o["wins"], o["ties"], o["losses"]) == (2, 3, 3) and res["prompt_mismatch"] == []
    assert all(f["used"] == 8 and f["invalid"] == 0 for f in res["files"])
    # rater 1: A 2, B 4, tie 2; rater 2: A 3, B 3, tie 2; they agree on 6 of 8 -> kappa 13/21
    (pair,) = res["agreement"]["pairs"]
    assert pair["agreement"] == 0.75 and pair["cohen_kappa"] == pytest.approx(13 / 21)
    readme = (Path(__file__).resolve().parents[2] / "eval" / "README.md").read_text(encoding="utf-8")
    assert "ppo at least as good as sft on 5 of 8 prompts (2 wins, 3 ties); win 0.250" in " ".join(readme.split())


def test_labels_of_the_same_prompts_re_exported_with_a_and_b_exchanged_are_refused(tmp_path, capsys):
    """The key kept only the prompt's hash: re-exported with --a and --b exchanged (same seed, same prompt
    order), a rater's ppo votes were counted for sft with no warning. The answers shown are checked too."""
    s = _samples(tmp_path / "s.jsonl", 10)
    out = _export(tmp_path, s, "--a", A, "--b", B)
    lab = _label_file(tmp_path / "sato.csv", out, lambda pos, k: "a")          # always policy A (= A)
    assert _import(tmp_path, out, lab)["overall"]["wins"] == 10
    swapped = _export(tmp_path, s, "--a", B, "--b", A, out="swapped")
    assert [r["prompt_sha"] for r in _key(swapped).values()] == [r["prompt_sha"] for r in _key(out).values()]
    _fails(capsys, ["eval", "import-human", "--labels", str(lab), "--key", str(swapped / "key.jsonl"), "-o",
                    str(tmp_path / "bad")], "do not belong to this key", "answers swapped")
    # the same prompts with regenerated answers: the votes were about other texts
    regen = tmp_path / "regen.jsonl"
    regen.write_text(s.read_text(encoding="utf-8").replace("回答", "別の回答"), encoding="utf-8")
    other = _export(tmp_path, regen, "--a", A, "--b", B, out="regen")
    _fails(capsys, ["eval", "import-human", "--labels", str(lab), "--key", str(other / "key.jsonl"), "-o",
                    str(tmp_path / "bad2")], "do not belong to this key", ": answers)")
    # one edited answer is a warning, not a refusal, and is named
    rows = _items_csv(out)
    with open(lab, encoding="utf-8-sig", newline="") as f:
        labelled = list(csv.DictReader(f))
    labelled[0]["left"] += " (edited)"
    with open(tmp_path / "edited.csv", "w", encoding="utf-8-sig", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(labelled)
    res = _import(tmp_path, out, tmp_path / "edited.csv", out="edited")
    assert [m["differs"] for m in res["prompt_mismatch"]] == ["answers"] and res["overall"]["wins"] == 10


def test_an_empty_row_before_a_labelled_one_of_the_same_item_does_not_discard_the_label(tmp_path):
    out = _export(tmp_path, _samples(tmp_path / "s.jsonl", 4))
    ids = list(_key(out))
    key = _key(out)
    rows = [{"item_id": ids[0], "label": ""}] + [{"item_id": i, "label": key[i]["a_side"]} for i in ids]
    f = tmp_path / "r.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    res = _import(tmp_path, out, f)
    assert res["overall"]["n"] == 4 and res["overall"]["wins"] == 4 and res["invalid_rows"] == []
    assert (res["files"][0]["used"], res["files"][0]["unlabelled"]) == (4, 1)


def test_a_prompt_that_begins_with_a_tab_round_trips_through_the_csv_guard(tmp_path):
    s = _samples(tmp_path / "s.jsonl", 4)
    s.write_text(s.read_text(encoding="utf-8").replace('"prompt": "', '"prompt": "\\t'), encoding="utf-8")
    out = _export(tmp_path, s)
    assert all(r["prompt"].startswith("'\t") for r in _items_csv(out))
    res = _import(tmp_path, out, _label_file(tmp_path / "r.csv", out, lambda pos, k: "b"))
    assert res["prompt_mismatch"] == [] and res["overall"]["losses"] == 4


def test_the_baseline_eval_policy_marks_is_b_by_default(tmp_path):
    """eval policy writes the baseline's rows first; A defaulted to the first policy, so the headline was the
    baseline's result against the policy under test."""
    s = _samples(tmp_path / "s.jsonl", 4, names=("sft", "ppo"))
    rows = [json.loads(x) for x in s.read_text(encoding="utf-8").splitlines()]
    s.write_text("".join(json.dumps(dict(r, baseline=r["policy"] == "sft"), ensure_ascii=False) + "\n"
                         for r in rows), encoding="utf-8")
    out = _export(tmp_path, s)
    assert {(k["a"], k["b"]) for k in _key(out).values()} == {("ppo", "sft")}
    out2 = _export(tmp_path, s, "--a", "sft", out="explicit")           # a flag still wins
    assert {(k["a"], k["b"]) for k in _key(out2).values()} == {("sft", "ppo")}
