"""Shared by the translate benchmarks: the tests' fake OpenAI-compatible server in its own
process (so that its CPU time does not share a GIL with the client being measured).

Not a benchmark itself. Usage::

    with server_process("builtin:en-ja", delay=0.0) as base_url:
        ...
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HH = REPO.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"


def _serve(template_path: str, delay: float, q) -> None:
    sys.path.insert(0, str(REPO))
    from jprefs.translate.prompts import load_template
    from tests.translate.fake_server import FakeServer

    s = FakeServer(load_template(template_path))
    s.delay = delay
    with s:
        q.put(s.base_url)
        s._thread.join()


@contextlib.contextmanager
def server_process(template_path: str, delay: float = 0.0):
    q = mp.get_context("spawn").Queue()
    p = mp.get_context("spawn").Process(target=_serve, args=(template_path, delay, q), daemon=True)
    p.start()
    try:
        yield q.get(timeout=60)
    finally:
        p.terminate()
        p.join(5)
