import json
import subprocess
import sys

import pytest

from jprefs.cli import main
from tests.data.fixtures import HH_ROWS, WEBGPT_ROWS, write_jsonl


def run(*argv):
    return main([str(a) for a in argv])


def read_jsonl(p):
    return [json.loads(l) for l in open(p, encoding="utf-8") if l.strip()]


def test_convert_writes_pairs_and_rejects(tmp_path, capsys):
    src = write_jsonl(tmp_path / "hh.jsonl", HH_ROWS)
    out = tmp_path / "out" / "pairs.jsonl"
    assert run("data", "convert", src, "--source", "hh-rlhf", "-o", out, "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    pairs, rejects = read_jsonl(out), read_jsonl(tmp_path / "out" / "pairs.rejects.jsonl")
    assert summary["rows_in"] == len(HH_ROWS) == len(pairs) + len(rejects) == summary["rows_out"] + summary["rows_rejected"]
    assert {"line", "reason", "error", "raw"} <= set(rejects[0])
    assert rejects[0]["raw"] == HH_ROWS[rejects[0]["line"] - 1]
    assert pairs[0]["license"] == "mit" and pairs[0]["prompt"][-1]["role"] == "user"


def test_convert_strict_exits_nonzero(tmp_path, capsys):
    src = write_jsonl(tmp_path / "hh.jsonl", HH_ROWS)
    assert run("data", "convert", src, "--source", "hh-rlhf", "-o", tmp_path / "p.jsonl", "--strict") == 2
    err = capsys.readouterr().err
    assert "hh.jsonl, line 3" in err and "fix:" in err
    assert not (tmp_path / "p.jsonl").exists()


def test_unknown_licence_warns_and_require_license_fails(tmp_path, capsys):
    src = write_jsonl(tmp_path / "w.jsonl", WEBGPT_ROWS)
    assert run("data", "convert", src, "--source", "webgpt", "-o", tmp_path / "w_out.jsonl") == 0
    assert "UNKNOWN licence" in capsys.readouterr().err
    assert run("data", "export", tmp_path / "w_out.jsonl", "--format", "trl", "-o", tmp_path / "t.jsonl",
               "--require-license") == 2
    assert "UNKNOWN licence" in capsys.readouterr().err and not (tmp_path / "t.jsonl").exists()
    assert run("data", "convert", src, "--source", "webgpt", "--license", "cc-by-4.0", "--require-license",
               "-o", tmp_path / "w2.jsonl") == 0
    assert read_jsonl(tmp_path / "w2.jsonl")[0]["license"] == "cc-by-4.0"


@pytest.fixture
def pairs_file(tmp_path):
    rows = []
    for i in range(40):
        rows.append({"prompt": f"質問{i % 13}", "chosen": f"良い答え{i}", "rejected": f"悪い答え{i}", "license": "mit"})
    rows.append({"prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                            {"role": "user", "content": "c"}], "chosen": "d", "rejected": "e", "license": "mit"})
    rows.append({"prompt": "ランク", "responses": ["一", "二", "三"], "license": "mit"})
    out = tmp_path / "pairs.jsonl"
    assert main(["data", "convert", str(write_jsonl(tmp_path / "raw.jsonl", rows)), "--source", "jprefs",
                 "-o", str(out)]) == 0
    return out


@pytest.mark.parametrize("fmt,suffix", [("trl", ".jsonl"), ("trl-conversational", ".jsonl"),
                                        ("trl", ".parquet"), ("binary", ".parquet"), ("binary", ".jsonl")])
def test_export_formats_load_with_datasets(pairs_file, tmp_path, fmt, suffix):
    import datasets

    out = tmp_path / f"export{suffix}"
    assert run("data", "export", pairs_file, "--format", fmt, "-o", out) == 0
    builder = "parquet" if suffix == ".parquet" else "json"
    ds = datasets.load_dataset(builder, data_files=str(out), split="train")
    n_pairs = 41 + 3
    if fmt == "binary":
        # each response once: 41 pairs x 2, and the rank list's best (1) and worst (0), not its middle one
        assert len(ds) == 2 * 41 + 2 and set(ds["label"]) == {0, 1}
        assert {"prompt", "response", "label", "license"} <= set(ds.column_names)
        rank = {r["response"]: r["label"] for r in ds if r["response"] in ("一", "二", "三")}
        assert rank == {"一": 1, "三": 0}
    else:
        assert len(ds) == n_pairs and {"prompt", "chosen", "rejected"} <= set(ds.column_names)
        if fmt == "trl-conversational":
            assert ds[0]["chosen"][0]["role"] == "assistant" and ds[0]["prompt"][-1]["role"] == "user"
        else:
            # every prompt carries its role markers and ends with the assistant cue, single-turn too
            assert isinstance(ds[0]["prompt"], str)
            assert all(r["prompt"].startswith("ユーザー: ") and r["prompt"].endswith("\n\nアシスタント:\n") for r in ds)
            assert ds[0]["prompt"] == "ユーザー: 質問0\n\nアシスタント:\n" and ds[0]["chosen"] == "良い答え0"
            multi = [r for r in ds if r["prompt"].startswith("ユーザー: a")]
            assert multi[0]["prompt"] == "ユーザー: a\n\nアシスタント: b\n\nユーザー: c\n\nアシスタント:\n"


@pytest.mark.parametrize("fmt,suffix", [("trl-unpaired", ".jsonl"), ("trl-unpaired", ".parquet"),
                                        ("trl-unpaired-conversational", ".jsonl"),
                                        ("trl-unpaired-conversational", ".parquet")])
def test_unpaired_exports_load_with_datasets(pairs_file, tmp_path, fmt, suffix):
    import datasets

    out = tmp_path / f"export{suffix}"
    assert run("data", "export", pairs_file, "--format", fmt, "-o", out) == 0
    ds = datasets.load_dataset("parquet" if suffix == ".parquet" else "json", data_files=str(out), split="train")
    assert len(ds) == 2 * 41 + 2 and ds.features["label"].dtype == "bool"      # a rank list's middle one left out
    assert {"prompt", "completion", "label", "id", "pair_id", "source", "source_id", "license"} <= set(ds.column_names)
    first, second = ds[0], ds[1]
    assert (first["label"], second["label"]) == (True, False) and first["pair_id"] == second["pair_id"]
    assert (first["id"], second["id"]) == (first["pair_id"] + "-c", first["pair_id"] + "-r")
    if fmt == "trl-unpaired":
        assert (first["prompt"], first["completion"], second["completion"]) == (
            "ユーザー: 質問0\n\nアシスタント:\n", "良い答え0", "悪い答え0")
    else:
        assert first["prompt"] == [{"role": "user", "content": "質問0"}]
        assert first["completion"] == [{"role": "assistant", "content": "良い答え0"}]


def test_split_by_prompt_no_leakage_and_deterministic(pairs_file, tmp_path):
    from jprefs.data.io import read_records

    assert run("data", "split", pairs_file, "--test-size", "0.25", "--seed", "3", "-o", tmp_path / "s1") == 0
    assert run("data", "split", pairs_file, "--test-size", "0.25", "--seed", "3", "-o", tmp_path / "s2") == 0
    a = (tmp_path / "s1" / "test.jsonl").read_bytes()
    assert a == (tmp_path / "s2" / "test.jsonl").read_bytes()
    train, test = read_records(tmp_path / "s1" / "train.jsonl"), read_records(tmp_path / "s1" / "test.jsonl")
    assert len(train) + len(test) == 42 and len(test) >= 42 * 0.25
    assert not ({r.prompt_key for r in train} & {r.prompt_key for r in test})
    assert run("data", "split", pairs_file, "--test-size", "0.25", "--seed", "4", "-o", tmp_path / "s3") == 0
    assert (tmp_path / "s3" / "test.jsonl").read_bytes() != a


def test_merge_deduplicates_and_flags_contradictions(tmp_path, capsys):
    a = write_jsonl(tmp_path / "a.jsonl", [
        {"prompt": "q", "chosen": "good", "rejected": "bad", "license": "mit"},
        {"prompt": "q2", "chosen": "x", "rejected": "y", "license": "mit"}])
    b = write_jsonl(tmp_path / "b.jsonl", [
        {"prompt": "q ", "chosen": "ｇｏｏｄ", "rejected": "bad", "license": "mit"},   # same after NFKC/whitespace
        {"prompt": "q2", "chosen": "y", "rejected": "x", "license": "mit"},           # contradicts a:2
        {"prompt": "q3", "chosen": "z", "rejected": "w", "license": "cc-by-4.0"}])
    out = tmp_path / "m.jsonl"
    assert run("data", "merge", a, b, "-o", out) == 0
    kept, rej = read_jsonl(out), read_jsonl(tmp_path / "m.rejects.jsonl")
    assert len(kept) == 3 and len(kept) + len(rej) == 5
    assert sorted(r["reason"] for r in rej) == ["contradicts", "duplicate"]
    assert "a.jsonl line 1" in next(r["error"] for r in rej if r["reason"] == "duplicate")
    assert "licences: mit 2, cc-by-4.0 1" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q"}\n')
    assert run("data", "merge", a, bad, "-o", out) == 2
    assert "bad.jsonl, line 1" in capsys.readouterr().err


def test_stats_json(pairs_file, capsys):
    assert run("data", "stats", pairs_file, "--json") == 0
    s = json.loads(capsys.readouterr().out)
    assert s["records"] == 42 and s["pairs"] == 44 and s["rank_lists"] == 1
    assert s["licenses"] == {"mit": 42}
    assert s["morphemes"]["chosen"]["n"] == 44 and s["morphemes"]["chosen"]["max"] >= 2
    mix = s["script_mix"]["chosen"]
    assert abs(sum(mix.values()) - 1) < 1e-3 and mix["kanji"] > 0.3 and mix["hiragana"] > 0.1
    assert run("data", "stats", pairs_file) == 0
    assert "script mix" in capsys.readouterr().out


def test_cli_errors_are_clear(tmp_path, capsys):
    assert run("data", "stats", tmp_path / "missing.jsonl") == 2
    assert "input file not found" in capsys.readouterr().err
    assert run("data", "convert", tmp_path / "missing.jsonl", "--source", "nope", "-o", tmp_path / "o.jsonl") == 2
    assert "unknown source 'nope'" in capsys.readouterr().err
    assert main(["dat"]) == 2
    assert "Did you mean `jprefs data`" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["split", "{empty}", "-o", "{out}"],
    ["export", "{empty}", "--format", "trl", "-o", "{out}/e.parquet"],
    ["export", "{empty}", "--format", "binary", "-o", "{out}/e.jsonl"],
    ["merge", "{empty}", "{blank}", "-o", "{out}/m.jsonl"],
])
def test_empty_input_is_refused_and_writes_nothing(tmp_path, capsys, argv):
    """An empty (or blank-line-only) canonical file is a mistake upstream, not a data set of 0 rows: split,
    export and merge refuse it with one clear error, as convert does, and leave no empty train.jsonl or
    Parquet file behind for the next step to read."""
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "blank.jsonl").write_text("\n  \n", encoding="utf-8")
    out = tmp_path / "out"
    fill = {"empty": tmp_path / "empty.jsonl", "blank": tmp_path / "blank.jsonl", "out": out}
    assert run("data", *[a.format(**fill) for a in argv]) == 2
    err = capsys.readouterr().err
    assert f"no records to {argv[0]}" in err and "fix:" in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("content", [b"", b"\n  \n"])
@pytest.mark.parametrize("as_json", [False, True])
def test_stats_of_an_empty_file_is_an_error_not_zeros(tmp_path, capsys, content, as_json):
    """`data stats` of an empty (or blank-line-only) file printed a report of zeros with exit 0, which
    reads as a summary; like split / export / merge it is one error naming the file, and prints no report."""
    f = tmp_path / "empty.jsonl"
    f.write_bytes(content)
    assert run("data", "stats", f, *(["--json"] if as_json else [])) == 2
    cap = capsys.readouterr()
    assert str(f) in cap.err and "no rows" in cap.err and "fix:" in cap.err and "Traceback" not in cap.err
    assert cap.out == ""


def test_demo_runs_offline(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "jprefs.cli", "data", "demo", "-o", str(tmp_path / "d"), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)                  # --json: stdout is the JSON alone (progress went before it)
    for c in summary["convert"]:
        assert c["rows_in"] == c["rows_out"] + c["rows_rejected"]
    assert (tmp_path / "d" / "export" / "binary.jsonl").exists()


def test_to_dataset_python_api(pairs_file):
    from jprefs.data.export import to_dataset
    from jprefs.data.io import read_records

    recs = read_records(pairs_file)
    ds = to_dataset(recs, "trl-conversational")
    assert len(ds) == 44 and ds[0]["chosen"][0]["role"] == "assistant"
    assert len(to_dataset(recs, "binary")) == 84
    unpaired = to_dataset(recs, "trl-unpaired")
    assert len(unpaired) == 84 and unpaired.features["label"].dtype == "bool"
    # every completion of a prompt has one label
    seen: dict = {}
    for r in unpaired:
        assert seen.setdefault((r["prompt"], r["completion"]), r["label"]) == r["label"]


@pytest.mark.parametrize("fmt", ["binary", "trl-unpaired", "trl-unpaired-conversational"])
def test_a_response_chosen_in_one_pair_and_rejected_in_another_is_counted(tmp_path, capsys, fmt):
    """Unpairing (as trl's unpair_preference_dataset does) labels a middle answer 1 in one pair and 0 in
    another: the export says how many distinct rows carry both labels, and is quiet when none does."""
    q = [{"role": "user", "content": "質問"}]
    rows = [{"id": "1", "prompt": q, "chosen": "最良", "rejected": "中間"},
            {"id": "2", "prompt": q, "chosen": "中間", "rejected": "最悪"},
            {"id": "3", "prompt": [{"role": "user", "content": "別"}], "chosen": "a", "rejected": "b"}]
    src = write_jsonl(tmp_path / "p.jsonl", rows)
    assert run("data", "export", src, "--format", fmt, "-o", tmp_path / "out.jsonl") == 0
    assert "WARNING: 1 of 5 distinct (prompt, response) rows are labelled both 1 and 0" in capsys.readouterr().err
    src2 = write_jsonl(tmp_path / "p2.jsonl", rows[:1] + rows[2:])
    assert run("data", "export", src2, "--format", fmt, "-o", tmp_path / "out2.jsonl") == 0
    assert "labelled both 1 and 0" not in capsys.readouterr().err


def test_to_dataset_jsonl_holds_rows_whose_extra_columns_differ_in_type():
    """Canonical rows keep a source's own columns in meta.extra, whatever their types: one schema for
    Arrow comes from meta as JSON text (as the Parquet export stores it), read back with json.loads."""
    from jprefs.data.export import to_dataset
    from jprefs.data.schema import PreferencePair

    recs = [PreferencePair.create([{"role": "user", "content": f"質問{i}"}], "良い", "悪い",
                                  meta={"extra": {"question_id": qid}}) for i, qid in enumerate([11, "rakuda_x", None])]
    ds = to_dataset(recs, "jsonl")
    assert [json.loads(m)["extra"]["question_id"] for m in ds["meta"]] == [11, "rakuda_x", None]
