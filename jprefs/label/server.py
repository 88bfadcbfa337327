"""``jprefs label serve``: the labelling web app (stdlib HTTP server, one page, no build step).

Security and safety:

- bound to 127.0.0.1 unless ``--host`` says otherwise (a warning then);
- per-annotator login with the name and the access token that the server printed when it made
  the annotator; the token is posted in a JSON body, never put in a URL, never logged, and only
  a salted hash is stored. A login opens a session: a random id in an ``HttpOnly``,
  ``SameSite=Strict`` cookie, stored as a hash;
- every POST must be JSON and, when the browser sends an ``Origin``, come from this server's
  own origin (no cross-site requests);
- the page inserts every piece of model output and data with ``textContent`` (never
  ``innerHTML``), and the Content-Security-Policy forbids inline scripts and event handlers, so
  ``<script>`` or ``<img onerror>`` in a response is shown as text and cannot run;
- each submission is committed to SQLite before the answer that lets the page move on
  (:mod:`jprefs.label.store`); the request log names method, path and status only.
"""

from __future__ import annotations

import http.cookies
import http.server
import json
import socketserver
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jprefs.label.store import Store

STATIC = Path(__file__).parent / "static"
MAX_BODY = 1 << 20
COOKIE = "jprefs_label_sid"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
AB_LABELS = ("left", "right", "tie", "cant_tell")
REVIEW_VERDICTS = ("accept", "reject", "correct")
MAX_COMMENT = 4000

DEFAULT_GUIDELINES = {
    "rank": "回答を良い順に並べてください（一番上が最良）。正確さ・有用さ・日本語の自然さを重視し、長さだけで判断しないでください。"
            "どれも使えない場合は「全部だめ」にしてください。\n"
            "Order the answers best first: accuracy, helpfulness and natural Japanese; do not judge by length alone. "
            "Mark \"all bad\" when none is acceptable.",
    "ab": "どちらの回答が良いか選んでください。差がなければ「引き分け」、判断できなければ「判断できない」。\n"
          "Choose the better answer; tie when they are equally good, can't tell when you cannot judge.",
    "review": "英語の原文と日本語訳を比べ、訳が正確で自然なら承認、誤訳・欠落があれば理由を添えて却下、直せるなら修正してください。\n"
              "Compare the English source and the Japanese translation: accept a faithful, natural one; reject with "
              "a reason; or correct the text.",
    "reward": "回答の質を採点してください（1 = 悪い、5 = とても良い）。\n"
              "Score the answer (1 = bad, 5 = very good).",
}


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------- what the page sees

def view(mode: str, item: dict) -> dict:
    """The item as the page shows it: nothing it does not need (no licence, no key)."""
    base = {"item_id": item["item_id"]}
    if mode == "rank":
        return {**base, "prompt": item["prompt"],
                "responses": [{"index": i, "text": item["responses"][i]} for i in item["shown"]]}
    if mode == "ab":
        return {**base, "prompt": item["prompt"], "left": item["left"], "right": item["right"]}
    if mode == "review":
        pair = item["pair"]
        return {**base, "translated": {"prompt": pair["prompt"], "chosen": pair["chosen"], "rejected": pair["rejected"]},
                "source": item.get("source_text"), "flags": item.get("flags") or {},
                "quality": item.get("quality") or {}, "rejected_by": item.get("rejected_by")}
    return {**base, "prompt": item["prompt"], "response": item["response"]}


def _str(v: Any, name: str, limit: int = MAX_COMMENT) -> str:
    if v is None:
        return ""
    if not isinstance(v, str) or len(v) > limit:
        raise BadRequest(400, f"'{name}' must be a string of at most {limit} characters")
    return v


def check_value(mode: str, item: dict, value: Any, *, reward_scale: str = "5") -> dict:
    """The submitted label, validated for the mode (a :class:`BadRequest` says what is wrong)."""
    if not isinstance(value, dict):
        raise BadRequest(400, "the label must be an object")
    comment = _str(value.get("comment"), "comment")
    if mode == "rank":
        k = len(item["responses"])
        all_bad = value.get("all_bad", False)
        if not isinstance(all_bad, bool):
            raise BadRequest(400, "'all_bad' must be true or false")
        order = value.get("order")
        # exactly k plain ints (extras such as "x", true, null or 1.0 were filtered out of the check and stored)
        if not isinstance(order, list) or len(order) != k or \
                not all(type(o) is int for o in order) or sorted(order) != list(range(k)):
            raise BadRequest(400, f"'order' must list each of the {k} responses once (indices 0..{k - 1})")
        return {"order": order, "all_bad": all_bad, "comment": comment}
    if mode == "ab":
        if value.get("label") not in AB_LABELS:
            raise BadRequest(400, f"'label' must be one of {', '.join(AB_LABELS)}")
        return {"label": value["label"], "comment": comment}
    if mode == "review":
        verdict = value.get("verdict")
        if verdict not in REVIEW_VERDICTS:
            raise BadRequest(400, f"'verdict' must be one of {', '.join(REVIEW_VERDICTS)}")
        out: dict[str, Any] = {"verdict": verdict, "comment": comment, "reason": _str(value.get("reason"), "reason")}
        if verdict == "reject" and not out["reason"].strip():
            raise BadRequest(400, "a rejection needs a reason")
        if verdict == "correct":
            fields = value.get("corrected")
            pair = item["pair"]
            known = {"chosen", "rejected"} | {f"prompt.{i}" for i in range(len(pair["prompt"]))}
            if not isinstance(fields, dict) or not fields or set(fields) - known:
                raise BadRequest(400, f"'corrected' must map some of {', '.join(sorted(known))} to the corrected text")
            for k, v in fields.items():
                if not isinstance(v, str) or not v.strip() or len(v) > 200_000:
                    raise BadRequest(400, f"the corrected '{k}' must be a non-empty string")
            if fields.get("chosen", pair["chosen"]) == fields.get("rejected", pair["rejected"]):
                raise BadRequest(400, "the correction makes chosen and rejected the same text: not a preference")
            out["corrected"] = dict(sorted(fields.items()))
        return out
    if reward_scale == "thumbs":
        if value.get("thumb") not in ("up", "down"):
            raise BadRequest(400, "'thumb' must be up or down")
        return {"thumb": value["thumb"], "comment": comment}
    score = value.get("score")
    if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5:
        raise BadRequest(400, "'score' must be a whole number from 1 to 5")
    return {"score": score, "comment": comment}


# ---------------------------------------------------------------- HTTP

class LabelServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, store: Store, *, quiet: bool = False, log=None):
        super().__init__(addr, Handler)
        self.store = store
        self.quiet = quiet
        self.log = log              # a text stream; None: stderr

    def host_ok(self, host_header: str | None) -> bool:
        """The Host a browser names: a loopback name (or the bound address) on this port. A server
        bound to every address (``--host 0.0.0.0``) takes any name. Refusing other names stops
        DNS-rebinding pages from talking to a loopback server."""
        host, port = self.server_address[:2]
        if host in ("0.0.0.0", "::"):
            return True
        names = {host, "127.0.0.1", "localhost", "[::1]"}
        return host_header in {f"{h}:{port}" for h in names}


class Handler(http.server.BaseHTTPRequestHandler):
    server: LabelServer
    server_version = "jprefs-label"
    sys_version = ""
    timeout = 60                        # a client that stops sending mid-request does not hold a thread forever

    # the log: method, path (never a query string or a body) and status
    def log_message(self, fmt, *args):  # noqa: D401 - http.server's hook
        if not self.server.quiet:
            (self.server.log or sys.stderr).write(
                f"label: {self.command} {urlsplit(self.path).path} {args[1] if len(args) > 1 else ''}\n")

    def log_request(self, code="-", size="-"):
        self.log_message("%s %s %s", "", code, size)

    # ---------------------------------------------------------- helpers
    def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, extra: dict | None = None) -> None:
        self._send(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8", extra)

    def _sid(self) -> str | None:
        raw = self.headers.get("Cookie")
        if not raw:
            return None
        try:
            c = http.cookies.SimpleCookie(raw)
        except http.cookies.CookieError:
            return None
        return c[COOKIE].value if COOKIE in c else None

    def _user(self) -> str | None:
        return self.server.store.session_user(self._sid())

    def _body(self) -> dict:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise BadRequest(415, "send JSON (Content-Type: application/json)")
        origin = self.headers.get("Origin")
        if origin and origin != f"http://{self.headers.get('Host')}":
            raise BadRequest(403, "cross-origin request refused")
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise BadRequest(400, "bad Content-Length") from None
        if n < 0:                       # read(-1) would read to the end of the stream, past MAX_BODY
            raise BadRequest(400, "bad Content-Length")
        if n > MAX_BODY:
            raise BadRequest(413, f"request over {MAX_BODY} bytes")
        try:
            obj = json.loads(self.rfile.read(n).decode("utf-8") or "{}")
            json.dumps(obj, ensure_ascii=False).encode("utf-8")     # "\ud800" is JSON but not text SQLite can store
        except (UnicodeDecodeError, UnicodeEncodeError, ValueError, RecursionError):
            raise BadRequest(400, "the body is not JSON (or holds text that is not valid Unicode)") from None
        if not isinstance(obj, dict):
            raise BadRequest(400, "the body must be a JSON object")
        return obj

    def _need_user(self) -> str:
        user = self._user()
        if user is None:
            raise BadRequest(401, "log in first")
        return user

    # ---------------------------------------------------------- routes
    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = urlsplit(self.path).path
        try:
            if not self.server.host_ok(self.headers.get("Host")):
                raise BadRequest(421, "unknown host name: open the address the server printed")
            if path in ("/", "/index.html", "/admin"):
                return self._static("index.html")
            if path.startswith("/static/"):
                return self._static(path[len("/static/"):])
            if path == "/api/me":
                return self._json(200, self._me())
            if path == "/api/next":
                user = self._need_user()
                return self._json(200, self._next(user))
            if path == "/api/stats":
                user = self._need_user()
                if not self.server.store.is_admin(user):
                    raise BadRequest(403, "the statistics page is for the admin")
                return self._json(200, stats(self.server.store))
            raise BadRequest(404, "not found")
        except BadRequest as e:
            self._json(e.status, {"error": str(e)})

    def do_POST(self):
        path = urlsplit(self.path).path
        st = self.server.store
        try:
            if not self.server.host_ok(self.headers.get("Host")):
                raise BadRequest(421, "unknown host name: open the address the server printed")
            body = self._body()
            if path == "/api/login":
                name, token = body.get("name"), body.get("token")
                if not isinstance(name, str) or not isinstance(token, str) or not st.check_login(name.strip(), token.strip()):
                    raise BadRequest(403, "wrong name or access token")
                sid = st.new_session(name.strip())
                cookie = f"{COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/"
                return self._json(200, self._me(name.strip()), {"Set-Cookie": cookie})
            user = self._need_user()
            if path == "/api/logout":
                st.release(user)
                st.end_session(self._sid() or "")
                return self._json(200, {"ok": True}, {"Set-Cookie": f"{COOKIE}=; Max-Age=0; Path=/"})
            if path == "/api/submit":
                item = st.item(str(body.get("item_id")))
                if item is None:
                    raise BadRequest(404, "no such item")
                value = check_value(st.mode, item, body.get("value"), reward_scale=st.get_meta("reward_scale", "5"))
                elapsed = body.get("elapsed_ms")
                elapsed = int(elapsed) if isinstance(elapsed, (int, float)) and 0 <= elapsed < 1e10 else None
                eid = st.submit(user, item["item_id"], value, elapsed_ms=elapsed)
                return self._json(200, {"ok": True, "event_id": eid, **self._next(user)})
            if path == "/api/skip":
                item_id = str(body.get("item_id"))
                if st.item(item_id) is None:
                    raise BadRequest(404, "no such item")
                st.submit(user, item_id, {}, kind="skip")
                return self._json(200, {"ok": True, **self._next(user)})
            if path == "/api/undo":
                undone = st.undo(user)
                if undone is None:
                    return self._json(200, {"ok": False, "message": "nothing to undo", **self._next(user)})
                item = st.item(undone[0])
                return self._json(200, {"ok": True, "item": view(st.mode, item), "previous": undone[1],
                                        "progress": st.progress(user)})
            raise BadRequest(404, "not found")
        except BadRequest as e:
            self._json(e.status, {"error": str(e)})
        except KeyError:
            self._json(404, {"error": "no such item"})

    def _me(self, user: str | None = None) -> dict:
        st = self.server.store
        user = user or self._user()
        out = {"mode": st.mode, "title": st.get_meta("title", "jprefs label"),
               "guidelines": st.get_meta("guidelines") or DEFAULT_GUIDELINES.get(st.mode or "", ""),
               "reward_scale": st.get_meta("reward_scale", "5"), "annotator": user}
        if user:
            out["admin"] = st.is_admin(user)
            out["progress"] = st.progress(user)
        return out

    def _next(self, user: str) -> dict:
        st = self.server.store
        item = st.next_item(user)
        return {"item": view(st.mode, item) if item else None, "progress": st.progress(user)}

    def _static(self, name: str) -> None:
        types = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
        try:
            p = (STATIC / name).resolve()
            found = STATIC.resolve() in p.parents and p.is_file() and p.suffix in types
        except (OSError, ValueError):   # a name too long for the file system, a NUL byte
            found = False
        if not found:
            raise BadRequest(404, "not found")
        self._send(200, p.read_bytes(), types[p.suffix])


def stats(store: Store) -> dict:
    """Progress and agreement, for the admin page and ``jprefs label stats``."""
    from jprefs.label.agreement import Label, agreement

    mode = store.mode
    labels = [Label(r["item_id"], r["annotator"], mode, r["value"]) for r in store.current_labels()]
    return {"mode": mode, "progress": store.progress(), "annotators": store.annotators(),
            "agreement": agreement(labels, modes=[mode] if mode else None)}


def make_server(store: Store, host: str = "127.0.0.1", port: int = 8765, *, quiet: bool = False,
                log=None) -> LabelServer:
    return LabelServer((host, port), store, quiet=quiet, log=log)
