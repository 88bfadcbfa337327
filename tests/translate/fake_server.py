"""A local OpenAI-compatible chat-completions server for tests (stdlib only, 127.0.0.1, port 0).

Its "translator" is deterministic and reversible: every ASCII letter becomes a
distinct kana (lower case: katakana, upper case: hiragana), everything else
(digits, punctuation, spaces, newlines, placeholders ⟦n⟧) is kept. So outputs
pass the Japanese-share checks, and :func:`decode` turns a translation back into
the source, which lets tests prove that every piece landed in the right row,
field and position.

Fault injection:
- ``fail_next(status, n, retry_after=None, after=0)``: n requests (after ``after`` good ones)
  answer ``status``.
- ``slow_next(seconds, n)``: the next n requests sleep first (client timeouts);
  ``delay``: every answer waits this long (a throttled server).
- text containing ``TRUNCATE_ME`` -> finish_reason ``length`` and half a translation;
  ``FILTER_ME`` -> finish_reason ``content_filter`` and a third of one;
  ``REFUSE_ME`` -> a Japanese refusal; ``ECHO_ME`` -> the English text unchanged;
  ``PREAMBLE_ME`` -> the translation wrapped as 翻訳：「...」 (clean-up must remove it).
- ``echo_auth = True``: error bodies quote the request's Authorization header.
- ``break_packs = True``: packed answers come back without their <seg> tags.
- ``translator.empty_on = "text"``: units containing that text come back empty
  (``"content": translator.empty_content``: None -> JSON null, or "" or blanks); in a packed
  answer, their item is empty. ``empty_next(n, content=None, after=0)``: the n requests after
  the next ``after`` ones answer 200 with that empty content.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOWER = "アイウエオカキクケコサシスセソタチツテトナニヌネノハ"
UPPER = "あいうえおかきくけこさしすせそたちつてとなにぬねのは"
ENC = {**{chr(97 + i): LOWER[i] for i in range(26)}, **{chr(65 + i): UPPER[i] for i in range(26)}}
DEC = {v: k for k, v in ENC.items()}
SEG = re.compile(r'<seg id="(\d+)">\n(.*?)\n</seg>', re.S)


def encode(text: str) -> str:
    return "".join(ENC.get(c, c) for c in text)


def decode(text: str) -> str:
    return "".join(DEC.get(c, c) for c in text)


class FakeTranslator:
    """Extracts the source text(s) from a rendered template and 'translates' them."""

    def __init__(self, template):
        self.user_pre, self.user_post = template.user.split("{text}")
        self.batch_pre, self.batch_post = (template.user_batch.split("{items}") if template.user_batch else ("", ""))
        self.break_packs = False
        self.empty_on: str | None = None
        self.empty_content: str | None = None

    def __call__(self, messages: list[dict]) -> tuple[str, str]:
        user = messages[-1]["content"]
        if self.batch_pre and user.startswith(self.batch_pre) and SEG.search(user):
            body = user[len(self.batch_pre): len(user) - len(self.batch_post) if self.batch_post else None]
            items = SEG.findall(body)
            outs = [(o or "", r) for o, r in (self.one(t) for _, t in items)]
            if self.break_packs:
                return "\n".join(o for o, _ in outs), "stop"
            reason = next((r for _, r in outs if r != "stop"), "stop")
            return "\n".join(f'<seg id="{i}">\n{o}\n</seg>' for (i, _), (o, _) in zip(items, outs)), reason
        assert user.startswith(self.user_pre), user[:80]
        return self.one(user[len(self.user_pre): len(user) - len(self.user_post) if self.user_post else None])

    def one(self, text: str) -> tuple[str | None, str]:
        if self.empty_on and self.empty_on in text:
            return self.empty_content, "stop"
        if "TRUNCATE_ME" in text:
            return encode(text[: len(text) // 2]), "length"
        if "FILTER_ME" in text:  # a hosted API's content filter cut the answer off
            return encode(text[: len(text) // 3]), "content_filter"
        if "REFUSE_ME" in text:
            return "申し訳ありませんが、この文章は翻訳できません。", "stop"
        if "ECHO_ME" in text:
            return text, "stop"
        if "PREAMBLE_ME" in text:
            return f"翻訳：「{encode(text)}」", "stop"
        return encode(text), "stop"


class LocalServer:
    """A ``ThreadingHTTPServer`` on 127.0.0.1, port 0, served from a daemon thread inside ``with``.
    A subclass builds its request handler and calls :meth:`_listen` with it."""

    def _listen(self, handler) -> None:
        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # the default (5) drops connects under concurrency: 1 s SYN retries

        self.httpd = Server(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        # a short poll interval: shutdown() waits up to one interval, 0.5 s by default, in every test
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        return False


class FakeServer(LocalServer):
    """``with FakeServer(template) as s: s.base_url`` -> ``http://127.0.0.1:PORT/v1``."""

    def __init__(self, template):
        self.translator = FakeTranslator(template)
        self.delay = 0.0           # seconds every successful answer waits (throttled server)
        self.requests = 0          # chat-completion requests answered (any status)
        self.completions = 0       # answered with 200
        self.sent: list[str] = []  # the last user message of every chat-completion request
        self.paths: list[str] = []  # request paths, query included
        self.auth: list[str | None] = []  # Authorization header of every request
        self.echo_auth = False     # error bodies quote the Authorization header (as some APIs quote the key)
        self._faults: list[tuple[str, object]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like real inference servers
            disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms stalls

            def log_message(self, *a):  # keep test output quiet
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(n))
                with server._lock:
                    server.requests += 1
                    server.sent.append(body["messages"][-1]["content"])
                    server.paths.append(self.path)
                    server.auth.append(self.headers.get("Authorization"))
                    fault = server._faults.pop(0) if server._faults else None
                if fault and fault[0] == "slow":
                    time.sleep(fault[1])
                elif fault and fault[0] == "fail":
                    status, retry_after = fault[1]
                    self.send_response(status)
                    if retry_after is not None:
                        self.send_header("Retry-After", str(retry_after))
                    msg = f"injected {status}" + (f"; you sent {self.headers.get('Authorization')}"
                                                   if server.echo_auth else "")
                    payload = json.dumps({"error": {"message": msg}}).encode()
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if self.path.split("?")[0] != "/v1/chat/completions":
                    self.send_error(404)
                    return
                if server.delay:
                    time.sleep(server.delay)
                if fault and fault[0] == "empty":
                    text, reason = fault[1], "stop"
                else:
                    text, reason = server.translator(body["messages"])
                prompt_chars = sum(len(m["content"]) for m in body["messages"])
                out = {"id": "x", "object": "chat.completion", "model": body["model"],
                       "choices": [{"index": 0, "finish_reason": reason,
                                    "message": {"role": "assistant", "content": text}}],
                       "usage": {"prompt_tokens": prompt_chars // 4 + 1, "completion_tokens": len(text or "") // 2 + 1}}
                payload = json.dumps(out, ensure_ascii=False).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    return
                with server._lock:
                    server.completions += 1

        self._listen(Handler)

    def fail_next(self, status: int, n: int = 1, retry_after=None, after: int = 0) -> None:
        """The n requests after the next ``after`` ones answer ``status``."""
        with self._lock:
            self._faults.extend([("ok", None)] * after + [("fail", (status, retry_after))] * n)

    def empty_next(self, n: int = 1, content: str | None = None, after: int = 0) -> None:
        """The n requests after the next ``after`` ones answer 200 with ``content`` (None: null)."""
        with self._lock:
            self._faults.extend([("ok", None)] * after + [("empty", content)] * n)

    def slow_next(self, seconds: float, n: int = 1) -> None:
        with self._lock:
            self._faults.extend([("slow", seconds)] * n)
