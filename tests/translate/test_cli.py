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


def test_credentials_in_base_url_reach_no_file_and_no_output(server, pairs_file, tmp_path, capsys):
    """user:KEY@ and ?api_key= in --base-url: used, but in no file of the output (config, card,
    summary, cache, rejects) and in nothing printed, on success and on every error path."""
    import base64

    secret, qsecret = "s3cret-PASS", "Q-s3cret"
    url = server.base_url.replace("http://", f"http://user:{secret}@") + f"?api_key={qsecret}"

    def translate(*extra, out="out"):
        return main(["translate", str(pairs_file), "--engine", "openai", "--model", "m", "--base-url", url,
                     "-o", str(tmp_path / out), "backoff=0.001", *extra])

    def assert_no_secret(text):
        assert secret not in text and qsecret not in text

    assert translate() == 0
    assert set(server.auth) == {"Basic " + base64.b64encode(f"user:{secret}".encode()).decode()}  # it was used
    out = tmp_path / "out"
    cfg_text = (out / "config.yaml").read_text()
    assert "base_url: http://user:***@127.0.0.1:" in cfg_text and "api_key=***" in cfg_text
    assert "--base-url 'http://user:***@127.0.0.1:" in (out / "README.md").read_text()
    # resuming from the saved config: fine while nothing needs sending ...
    assert main(["translate", str(out / "config.yaml")]) == 0
    # ... and when something does, the masked URL is refused with what to do instead
    assert main(["translate", str(out / "config.yaml"), f"output={tmp_path / 'other'}", "temperature=0.3"]) == 2
    err = capsys.readouterr().err
    assert "masked when it saved the config" in err and "api_key_env=VAR" in err
    # error paths: the server refuses (400), fails (500 until retries run out), or is down
    server.fail_next(400, 1)
    assert translate(out="e400") == 2
    server.fail_next(500, 10)
    assert translate("max_retries=1", out="e500") == 2
    url = f"http://user:{secret}@127.0.0.1:9/v1?api_key={qsecret}"
    assert translate("max_retries=0", out="down") == 2
    captured = capsys.readouterr()
    assert ("answered HTTP 400" in captured.err and "HTTP 500" in captured.err
            and "cannot reach the server at http://user:***@127.0.0.1:9/v1?api_key=*** (connection refused)" in captured.err)
    assert captured.err.count("user:***@127.0.0.1") >= 3
    assert_no_secret(captured.out + captured.err)
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert len(files) > 10
    for f in files:
        assert_no_secret(f.read_text(encoding="utf-8", errors="replace"))
