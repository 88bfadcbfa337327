"""Fixtures for the labelling app: data files, a real `jprefs label serve` process, a real
headless Chromium (Debian's, driven by Playwright; `.ci/run` installs both).

Without a Chromium the browser tests skip locally; with ``JPREFS_REQUIRE_BROWSER=1`` (CI) they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
XSS_SCRIPT = "京都です。<script>window.__pwned = 1</script>"
XSS_IMG = "わかりません。<img src=x onerror=\"window.__pwned = 2\">"


def chromium_path() -> str | None:
    for cand in (os.environ.get("JPREFS_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                 shutil.which("chromium-browser")):
        if cand and Path(cand).exists():
            return cand
    return None


def write_cands(path: Path, n: int = 4) -> Path:
    rows = [
        {"id": "p0", "prompt": "日本の首都はどこですか？", "license": "cc-by-4.0",
         "responses": ["東京です。", "大阪です。", XSS_SCRIPT, XSS_IMG]},
        {"id": "p1", "prompt": "Pythonで1から10までの和を求めるコードを書いてください。",
         "responses": ["```python\nprint(sum(range(1, 11)))\n```\n答えは55です。", "55です。", "forループを使います。"]},
        {"id": "p2", "prompt": "富士山の高さは？", "responses": ["3776メートルです。", "約3776mです。", "とても高いです。"]},
        {"id": "p3", "prompt": "「ありがとう」を英語で言うと？", "responses": ["Thank you.", "Sorry.", "Hello."]},
    ]
    for i in range(4, n):
        rows.append({"id": f"p{i}", "prompt": f"質問{i}：おすすめの本は？",
                     "responses": [f"本{i}-A です。", f"本{i}-B です。", f"本{i}-C です。"]})
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[:n]), encoding="utf-8")
    return path


class Served:
    """A `jprefs label serve` subprocess: its URL and the tokens it printed."""

    def __init__(self, args: list[str], env: dict | None = None):
        self.args = args
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.tokens: dict[str, str] = {}
        self.proc = None
        self.url = ""
        self.lines: list[str] = []

    def start(self, timeout: float = 30.0) -> "Served":
        self.proc = subprocess.Popen([sys.executable, "-m", "jprefs.cli", "label", "serve", *self.args,
                                     "--port", "0", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, env=self.env, cwd=str(ROOT))
        t0 = time.time()
        while time.time() - t0 < timeout:
            line = self.proc.stdout.readline()
            if not line:
                if self.proc.poll() is not None:
                    raise RuntimeError("label serve exited:\n" + "".join(self.lines))
                continue
            self.lines.append(line)
            m = re.search(r"access token for (\S+): (\S+)", line)
            if m:
                self.tokens[m.group(1)] = m.group(2)
            m = re.search(r"serving on (http://\S+?)/? ", line)
            if m:
                self.url = m.group(1).rstrip("/")
                return self
        raise RuntimeError("label serve did not start:\n" + "".join(self.lines))

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc and self.proc.stdout:
            self.lines.extend(self.proc.stdout.readlines())
            self.proc.stdout.close()


@pytest.fixture
def serve():
    started: list[Served] = []

    def _serve(*args: str, env: dict | None = None) -> Served:
        s = Served([str(a) for a in args], env).start()
        started.append(s)
        return s

    yield _serve
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def browser():
    exe = chromium_path()
    if exe is None:
        if os.environ.get("JPREFS_REQUIRE_BROWSER"):
            pytest.fail("no Chromium found (JPREFS_REQUIRE_BROWSER=1): install Debian's chromium")
        pytest.skip("no Chromium here (apt-get install chromium; CI installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("JPREFS_REQUIRE_BROWSER"):
            pytest.fail("playwright is not installed (JPREFS_REQUIRE_BROWSER=1)")
        pytest.skip("playwright is not installed")
    pw = sync_playwright().start()
    b = pw.chromium.launch(executable_path=exe, headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"])
    yield b
    b.close()
    pw.stop()


@pytest.fixture
def page_for(browser):
    """``page_for(served, name)``: a fresh browser context logged in as ``name``."""
    contexts = []

    def _page(served: Served, name: str, *, login: bool = True):
        ctx = browser.new_context(viewport={"width": 1200, "height": 900}, locale="ja-JP")
        contexts.append(ctx)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.errors = errors
        page.goto(served.url + "/")
        if login:
            page.fill("#login-name", name)
            page.fill("#login-token", served.tokens[name])
            page.click("#login-form button[type=submit]")
            page.wait_for_selector("#work:not([hidden]), #done:not([hidden]), #admin:not([hidden])")
        return page

    yield _page
    for c in contexts:
        c.close()
