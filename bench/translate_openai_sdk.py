"""Benchmark: the openai engine (raw httpx) against the same engine ported to the openai SDK's client.

Baseline: ``jprefs/translate/engines/openai.py`` in the work tree (raw httpx, the one jprefs keeps).
Candidate: the port kept in git at commit dda1a98 (``openai.OpenAI`` over an ``httpx.Client``,
``max_retries=0`` and our retry loop; every engine test passed on it), loaded from git. Needs
``pip install openai`` (measured with 3.57.0).
Same requests, same concurrency, same fake server (its own process, delay 0: the worst case for
client overhead); runs interleaved (old, new, old, new, ...), medians and the ratio new/old reported.

    python bench/translate_openai_sdk.py [--requests 400] [--repeats 5] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]
from translate_server import server_process  # noqa: E402

SDK_COMMIT = "dda1a98"
TEMPLATE = "builtin:en-ja"


def load_sdk_port():
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{SDK_COMMIT}:jprefs/translate/engines/openai.py"],
                         capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "openai_sdk_port.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("openai_sdk_port", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.OpenAIEngine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "translate-openai-sdk.json"))
    args = ap.parse_args()
    from jprefs.translate.engines import Sampling
    from jprefs.translate.engines.openai import OpenAIEngine as Old
    from jprefs.translate.prompts import load_template

    New = load_sdk_port()
    template = load_template(TEMPLATE)
    convs = [template.messages([f"Sentence {i} says something about topic {i % 17}."]) for i in range(args.requests)]
    times = {"httpx": [], "sdk": []}
    with server_process(TEMPLATE, 0.0) as url:
        engines = {"httpx": Old(model="fake-mt", base_url=url, concurrency=args.concurrency),
                   "sdk": New(model="fake-mt", base_url=url, concurrency=args.concurrency)}
        for e in engines.values():
            e.generate(convs[:50], Sampling())  # warm up connections and imports
        for _ in range(args.repeats):
            for name, e in engines.items():
                t0 = time.perf_counter()
                gens = e.generate(convs, Sampling())
                times[name].append(time.perf_counter() - t0)
                assert len(gens) == len(convs) and all(g.text for g in gens)
        for e in engines.values():
            e.close()
    n = args.requests
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {"requests": n, "concurrency": args.concurrency, "repeats": args.repeats, "server_delay_s": 0.0,
           "sdk_port_commit": SDK_COMMIT, "openai_version": __import__("openai").__version__, "runs_s": times,
           "requests_per_s": {k: round(n / v, 1) for k, v in med.items()},
           "ms_per_request": {k: round(1e3 * v / n, 3) for k, v in med.items()},
           "ratio_time_sdk_over_httpx": round(med["sdk"] / med["httpx"], 3),
           "extra_ms_per_request": round(1e3 * (med["sdk"] - med["httpx"]) / n, 3)}
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
