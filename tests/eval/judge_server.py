"""A local OpenAI-compatible judge server for tests (stdlib only, 127.0.0.1, port 0).

Its "judge" is deterministic and reads the request rendered from the built-in templates
(``pairwise-ja``: the text between ``[アシスタントAの回答の始まり]`` and its end marker, same for B;
``grade-ja``: between ``[アシスタントの回答の始まり]`` and its end):

- ``policy = "longer"``: pairwise, the longer answer (in characters) wins, equal lengths are
  ``[[C]]``; grade, the score is ``min(10, len(answer))``.
- ``policy = "always_a"``: pairwise, always ``[[A]]`` (a pure position bias); grade as above.

Injected malformed answers, by a marker anywhere in the answers of a request:
``NOVERDICT`` -> an explanation without ``[[...]]``; ``SCORE11`` -> ``[[11]]``; ``EMPTY`` ->
``"content": ""`` (the engine counts an empty completion); ``CONFLICT`` -> ``[[A]]`` and ``[[B]]`` on one line;
``TRUNC`` -> half an explanation with ``finish_reason: length`` and no verdict; ``MALFORMED`` -> a format
line with a valid marker, then a malformed verdict (pairwise ``判定: [[A B]]``, grade ``評価: [[1_0]]``);
``FIRSTBAD`` in the answer shown first (A) -> no verdict (the other order is answered normally);
``TOOLONG`` -> HTTP 400 "maximum context length" (its message quotes the Authorization header, as some
servers echo the request: the client must mask it).

``fail_after = n``: after n answered requests every request gets HTTP ``fail_status`` (500: a server that
dies; 401 fails at once, with no retries).
``reject = (status, message)``: every request gets HTTP ``status`` with that message, ``{n}`` in it replaced
by a request counter and ``{id}`` by a fresh request id (the run's setup refused: a bad sampling value, a model
name the server does not know); ``reject_first = n`` limits that to the first n requests.
``completions`` counts chat-completion requests answered 200, ``refused`` those answered ``reject``, ``auth``
keeps the Authorization headers of the answered ones.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler

from tests.translate.fake_server import LocalServer

PAIR = re.compile(r"\[アシスタントAの回答の始まり\]\n(.*)\n\[アシスタントAの回答の終わり\]\n\n"
                  r"\[アシスタントBの回答の始まり\]\n(.*)\n\[アシスタントBの回答の終わり\]", re.S)
ONE = re.compile(r"\[アシスタントの回答の始まり\]\n(.*)\n\[アシスタントの回答の終わり\]", re.S)


def judge_answer(user: str, policy: str) -> tuple[str, str]:
    """(content, finish_reason) for one rendered judge request."""
    m = PAIR.search(user)
    answers = [m[1], m[2]] if m else [ONE.search(user)[1]]
    joined = "\n".join(answers)
    if "EMPTY" in joined:
        return "", "stop"
    if "NOVERDICT" in joined:
        return "どちらの回答も一長一短で、判定できません。", "stop"
    if "CONFLICT" in joined:
        return "[[A]]と[[B]]のどちらとも言えます。", "stop"
    if "TRUNC" in joined:
        return "回答Aは丁寧ですが、回答Bは", "length"
    if "MALFORMED" in joined:
        if m is None:
            return "点数は[[5]]のように書きます。\n評価: [[1_0]]", "stop"
        return "判定は[[A]]のように書きます。\n判定: [[A B]]", "stop"
    if m is not None and "FIRSTBAD" in answers[0]:
        return "Aを先に読みましたが、決められません。", "stop"
    if m is None:
        if "SCORE11" in joined:
            return "非常に優れた回答です。\n[[11]]", "stop"
        return f"長さに応じて評価します。\n[[{min(10, len(answers[0]))}]]", "stop"
    a, b = answers
    if policy == "always_a":
        return "Aの方が優れています。\n[[A]]", "stop"
    verdict = "A" if len(a) > len(b) else "B" if len(b) > len(a) else "C"
    return f"長い方が詳しいと判断します。\n[[{verdict}]]", "stop"


class JudgeServer(LocalServer):
    """``with JudgeServer("longer") as s: s.base_url`` -> ``http://127.0.0.1:PORT/v1``."""

    def __init__(self, policy: str = "longer"):
        self.policy = policy
        self.completions = 0
        self.auth: list[str | None] = []
        self.models_checks = 0
        self.fail_after: int | None = None
        self.fail_status = 500
        self.reject: tuple[int, str] | None = None
        self.reject_first: int | None = None
        self.refused = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def _send(self, status: int, obj: dict) -> None:
                payload = json.dumps(obj, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                with server._lock:
                    server.models_checks += 1
                self._send(200, {"object": "list", "data": [{"id": "judge", "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if self.path.split("?")[0] != "/v1/chat/completions":
                    self._send(404, {"error": {"message": "not found"}})
                    return
                if "TOOLONG" in body["messages"][-1]["content"]:
                    self._send(400, {"error": {"message": "This model's maximum context length is 8192 tokens, "
                                                          "but the request has 9001 tokens (request headers: "
                                                          f"Authorization: {self.headers.get('Authorization')})",
                                               "type": "BadRequestError", "code": 400}})
                    return
                with server._lock:
                    rejected = server.reject is not None and (server.reject_first is None
                                                              or server.refused < server.reject_first)
                    server.refused += rejected
                    n = server.refused
                if rejected:
                    status, message = server.reject
                    self._send(status, {"error": {"message": message.format(n=n, id=uuid.uuid4().hex),
                                                  "type": "BadRequestError", "code": status}})
                    return
                text, reason = judge_answer(body["messages"][-1]["content"], server.policy)
                with server._lock:
                    failed = server.fail_after is not None and server.completions >= server.fail_after
                    server.completions += not failed
                if failed:
                    self._send(server.fail_status, {"error": {"message": f"injected {server.fail_status}"}})
                    return
                with server._lock:
                    server.auth.append(self.headers.get("Authorization"))
                self._send(200, {"id": "x", "object": "chat.completion", "model": body["model"],
                                 "choices": [{"index": 0, "finish_reason": reason,
                                              "message": {"role": "assistant", "content": text}}],
                                 "usage": {"prompt_tokens": 10, "completion_tokens": 5}})

        self._listen(Handler)
