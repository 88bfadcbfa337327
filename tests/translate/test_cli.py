"""The command line: the scripted form, recipes with overrides, dry runs, merge, errors."""

import json
import subprocess
import sys
from pathlib import Path

from jprefs.cli import main
from jprefs.config import load_config
from jprefs.translate.config import TranslateConfig

REPO = Path(__file__).resolve().parents[2]


def test_scripted_form_runs_end_to_end(server, pairs_file, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["translate", str(pairs_file), "--source", "jprefs", "--engine", "openai", "--model", "fake-mt",
               "--base-url", server.base_url, "-o", str(out), "pack_units=4"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "kept 12 + rejected 0" in err and "cache hits 0" in err and "engine tokens in/out" in err
    assert json.loads((out / "summary.json").read_text())["pairs_out"] == 12
    cfg = load_config(TranslateConfig, out / "config.yaml")
    assert cfg.pack_units == 4 and cfg.base_url == server.base_url
    card = (out / "README.md").read_text(encoding="utf-8")
    assert f"jprefs translate {pairs_file} pack_units=4 --source jprefs --engine openai --model fake-mt" in card


def test_recipe_with_overrides_and_dry_run(pairs_file, tmp_path, capsys):
    rc = main(["translate", "translate/recipes/calm3-22b-vllm.yaml", f"input={pairs_file}",
               f"output={tmp_path / 'o'}", "--dry-run"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "distinct_units" in out and "dedup_ratio" in out
    assert not (tmp_path / "o" / "pairs.jsonl").exists()


def test_every_recipe_loads():
    for p in sorted((REPO / "translate" / "recipes").glob("*.yaml")):
        cfg = load_config(TranslateConfig, p, {"input": "x.jsonl", "output": "o"})
        assert cfg.model


def test_user_errors_exit_2_with_a_fix(tmp_path, capsys):
    assert main(["translate", "translate/recipes/calm3-22b-vllm.yaml", "pack_unit=3"]) == 2
    assert "Did you mean 'pack_units'" in capsys.readouterr().err
    assert main(["translate", "in.jsonl", "--engine", "openai", "-o", str(tmp_path)]) == 2
    assert "base_url" in capsys.readouterr().err
    assert main(["translate", "in.jsonl", "--engine", "tgi", "-o", str(tmp_path)]) == 2
    assert "available: vllm, openai, transformers" in capsys.readouterr().err
    assert main(["translate", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path), "--dry-run"]) == 2
    assert "input file not found" in capsys.readouterr().err
    assert main(["translate", "in.jsonl", "--shard", "4/4", "-o", str(tmp_path)]) == 2
    assert "0 <= i < n" in capsys.readouterr().err


def test_cli_merge(server, pairs_file, tmp_path):
    base = ["translate", str(pairs_file), "--engine", "openai", "--model", "m", "--base-url", server.base_url]
    for i in range(2):
        assert main(base + ["--shard", f"{i}/2", "-o", str(tmp_path / f"s{i}")]) == 0
    assert main(["translate", "merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "-o", str(tmp_path / "m")]) == 0
    assert main(base + ["-o", str(tmp_path / "single")]) == 0
    assert (tmp_path / "m" / "pairs.jsonl").read_bytes() == (tmp_path / "single" / "pairs.jsonl").read_bytes()


def test_cli_module_is_light():
    code = ("import sys, jprefs.translate.cli, jprefs.translate.config; "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'vllm', 'httpx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_units_without_translation_exit_2_after_writing_the_rest(server, pairs_file, tmp_path, capsys):
    server.translator.empty_on = "topic number 1"
    args = ["translate", str(pairs_file), "--engine", "openai", "--model", "m", "--base-url", server.base_url,
            "-o", str(tmp_path / "out"), "max_retries=1", "backoff=0.001"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "kept 8 + rejected 0 + not translated 4" in err and "units without translation 1 (not cached)" in err
    assert ("error: 1 units got no translation (empty completions from the server)" in err
            and "rerun the same command to retry them; finished work is kept" in err)
    server.translator.empty_on = None
    assert main(args) == 0
    assert "kept 12 + rejected 0\n" in capsys.readouterr().err
