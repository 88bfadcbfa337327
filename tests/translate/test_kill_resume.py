"""Kill the real CLI with SIGKILL mid-run, rerun the same command: the output must be
byte-identical to an uninterrupted run (no lost, no duplicated rows)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jprefs.data.io import write_jsonl
from jprefs.data.schema import PreferencePair
from tests.translate.conftest import make_pairs

REPO = Path(__file__).resolve().parents[2]
OUTPUTS = ("pairs.jsonl", "binary.jsonl", "rejects.jsonl", "README.md")


def write_input(folder: Path) -> None:
    pairs = make_pairs(30)
    pairs.insert(5, PreferencePair.create("Tell me a long story about TRUNCATE_ME a dragon and a knight.",
                                          "Once upon a time there was a dragon.", "No.", license="mit"))
    write_jsonl(folder / "in.jsonl", pairs)
    with open(folder / "in.jsonl", "a", encoding="utf-8") as f:
        f.write("{broken json\n")


def cli(folder: Path, base_url: str) -> list[str]:
    # relative paths: both runs have the same command line, so even the card is identical
    return [sys.executable, "-m", "jprefs.cli", "translate", "in.jsonl", "--source", "jprefs", "--engine", "openai",
            "--model", "fake-mt", "--base-url", base_url, "-o", "out", "chunk_size=2", "concurrency=2"]


def env():
    return {**os.environ, "PYTHONPATH": str(REPO), "JPREFS_NO_PROGRESS": "1"}


@pytest.mark.slow
def test_sigkill_then_rerun_gives_identical_output(server, tmp_path):
    server.delay = 0.01
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        write_input(d)
    # uninterrupted run
    subprocess.run(cli(a, server.base_url), cwd=a, env=env(), check=True, capture_output=True, timeout=120)
    total = json.loads((a / "out" / "summary.json").read_text())["distinct_units"]

    # killed run: SIGKILL as soon as the first checkpoint file is on disk
    proc = subprocess.Popen(cli(b, server.base_url), cwd=b, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and not list((b / "out" / "cache").glob("chunk-*.jsonl")):
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.005)
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (b / "out" / "pairs.jsonl").exists()          # killed before the end
    done = sum(1 for p in (b / "out" / "cache").glob("chunk-*.jsonl") for _ in open(p))
    assert 0 < done < total

    # rerun the same command: it resumes and finishes
    subprocess.run(cli(b, server.base_url), cwd=b, env=env(), check=True, capture_output=True, timeout=120)
    s = json.loads((b / "out" / "summary.json").read_text())
    assert s["cache_hits"] >= done and s["units_translated_now"] == total - s["cache_hits"]
    for name in OUTPUTS:
        assert (b / "out" / name).read_bytes() == (a / "out" / name).read_bytes(), name
    rows = [json.loads(x) for x in open(b / "out" / "pairs.jsonl")]
    assert len({r["id"] for r in rows}) == len(rows) == s["pairs_out"]   # no duplicates
    assert s["pairs_out"] + s["quality_rejects"] + s["input_rejects"] == s["rows_in"] == 32
