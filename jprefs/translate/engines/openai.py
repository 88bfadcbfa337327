"""Any OpenAI-compatible chat-completions server (``vllm serve``, hosted APIs, local servers).

Requests go out on a bounded thread pool (``concurrency``); each has its own
timeout. 429, 5xx, timeouts and connection errors are retried with exponential
backoff and full jitter; a ``Retry-After`` header can lengthen a wait but never
shorten it below that schedule. Other 4xx errors fail at once with the server's
message. An empty completion (``"content": null``, ``""`` or only blanks) is a failed
attempt too: retried the same way, and if it stays empty the result has ``text == ""``,
which the pipeline reports as a unit without translation (never cached).

The API key is read from an environment variable (``api_key_env``) and never
printed, logged or saved. Credentials in the URL (``http://user:KEY@host/v1``) are
sent as HTTP basic auth and redacted (``user:***@``) in every message; the saved
config keeps only the redacted URL.

Example::

    eng = OpenAIEngine(model="cyberagent/calm3-22b-chat", base_url="http://127.0.0.1:8000/v1")
    eng.generate([[{"role": "user", "content": "Hello"}]], Sampling(max_tokens=32))
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from jprefs.errors import ConfigError
from jprefs.redact import MASK, is_redacted, redact_url
from jprefs.translate.engines import EngineError, Generation, Sampling

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
CHECK_TIMEOUT = 5.0  # seconds for the one reachability check before a job (OpenAIEngine.check)


class OpenAIEngine:
    """Chat completions over HTTP with bounded concurrency and retries."""

    name = "openai"

    def __init__(self, model: str, base_url: str = "http://127.0.0.1:8000/v1", revision: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", concurrency: int = 8, timeout: float = 120.0,
                 max_retries: int = 6, backoff: float = 1.0, max_backoff: float = 60.0, **_: Any):
        import httpx

        if not base_url:
            raise ConfigError("the openai engine needs base_url (e.g. --base-url http://127.0.0.1:8000/v1)")
        if is_redacted(base_url):
            raise ConfigError(
                f"base_url {redact_url(base_url)!r} holds a credential that jprefs masked when it saved the config "
                f"(credentials are never written to disk), so it cannot be used\n"
                f"  fix: give the real URL on the command line again (--base-url URL), or better, put the "
                f"API key in an environment variable and name it with api_key_env=VAR")
        self.model = model
        self.revision = revision
        self.concurrency = max(1, int(concurrency))
        self.max_retries = max(0, int(max_retries))
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.api_key_env = api_key_env
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(api_key_env) if api_key_env else None
        self._secrets = [key] if key else []  # masked in every message, whatever the server echoes
        if key:
            headers["Authorization"] = f"Bearer {key}"
        # user:key@ in the URL goes into an Authorization: Basic header (what httpx would do with it),
        # and the URL itself is kept without it, so that no error, log line or traceback can show it
        self._url, auth = self._split_credentials(base_url, httpx)  # _url: the one we post to
        self._models_url = self._with_endpoint(urlsplit(base_url.strip()), endpoint="/models")  # for check()
        # what messages show: the URL as given, its credentials masked (user:***@, ?api_key=***)
        self.base_url = redact_url(base_url.strip().rstrip("/"))
        self._shown_url = redact_url(self._with_endpoint(urlsplit(base_url.strip()), keep_userinfo=True))
        self._httpx = httpx
        self._client = httpx.Client(headers=headers, auth=auth, timeout=httpx.Timeout(timeout),
                                    limits=httpx.Limits(max_connections=self.concurrency))
        self._lock = threading.Lock()
        self.retries = 0  # total retried requests, for the summary
        self.empty_completions = 0  # requests still without text after every retry

    @staticmethod
    def _with_endpoint(parts, keep_userinfo: bool = False, endpoint: str = "/chat/completions") -> str:
        """``.../v1`` -> ``.../v1/chat/completions``, the endpoint on the path, before any query
        (``?api-version=...``), not after it."""
        netloc = parts.netloc if keep_userinfo else parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + endpoint, parts.query, ""))

    def check(self, timeout: float = CHECK_TIMEOUT) -> None:
        """Fail in seconds when nothing listens at ``base_url``: one ``GET {base_url}/models``.

        Called once before a job sends its first request, so that a server that is down costs one
        clear error instead of every request's retries (about a minute of backoff at 0%). Only a
        transport failure fails the check: connection refused, an unknown host, a connect timeout.
        Any HTTP answer, 401 or 404 included (a server without ``/models``), means the server is
        reachable; what it says to the real requests is handled (and explained) there.

        >>> OpenAIEngine(model="m", base_url="http://127.0.0.1:9/v1").check()   # doctest: +SKIP
        Traceback (most recent call last):
        jprefs.translate.engines.EngineError: cannot reach the server at http://127.0.0.1:9/v1 (connection refused) ...
        """
        httpx = self._httpx
        try:
            r = self._client.get(self._models_url, timeout=httpx.Timeout(timeout))
            r.close()
        except httpx.ConnectTimeout:
            why = f"no answer to the connection within {timeout:g} s"
        except httpx.ConnectError as e:
            text = str(e).lower()
            if "refused" in text:
                why = "connection refused"
            elif any(t in text for t in ("name or service not known", "nodename nor servname", "name resolution",
                                         "no address associated", "getaddrinfo")):
                why = "the host name does not resolve"
            else:
                why = self._scrub(f"{type(e).__name__}: {e}")
        except (httpx.TimeoutException, httpx.TransportError):
            return  # connected, then slow or odd (a busy server): the requests' own timeouts and retries handle it
        else:
            return
        port = urlsplit(self._models_url).port or 8000  # start it where --base-url looks for it
        raise EngineError(f"cannot reach the server at {self.base_url} ({why}); fix: start it "
                          f"(`vllm serve {self.model} --port {port}`) or check --base-url")

    def _split_credentials(self, base_url: str, httpx):
        """(request URL without userinfo, ``BasicAuth`` from the userinfo or None)."""
        try:
            parts = urlsplit(base_url.strip())
            parts.port  # noqa: B018  (raises ValueError on a bad port)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("expected http(s)://HOST[:PORT]/PATH")
            url = self._with_endpoint(parts)
            httpx.URL(url)
        except (ValueError, TypeError, httpx.InvalidURL) as e:
            raise ConfigError(f"base_url {redact_url(base_url)!r} is not a usable URL ({redact_url(str(e))})\n"
                              f"  fix: --base-url http://HOST:PORT/v1 (e.g. http://127.0.0.1:8000/v1)") from None
        userinfo = parts.netloc.rpartition("@")[0]
        if not userinfo:
            return url, None
        user, colon, password = (unquote(x) for x in userinfo.partition(":"))
        self._secrets.append(password if colon and password else user)
        # the header's own form too: a server that echoes "Authorization: Basic ..." gives user:password in base64
        import base64

        self._secrets.append(base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii"))
        return url, httpx.BasicAuth(user, password)

    def _scrub(self, text: str) -> str:
        """``text`` without credentials: URLs redacted, and any known key the server echoed masked."""
        text = redact_url(text)
        for secret in self._secrets:
            if len(secret) >= 4:  # a 1-3 character "key" would mask half the message
                text = text.replace(secret, MASK)
        return text

    def generate(self, conversations: list[list[dict[str, str]]], sampling: Sampling,
                 on_result=None) -> list[Generation]:
        """Send every conversation (at most ``concurrency`` at once); results in input order.
        ``on_result(i, generation)`` is called (from a worker thread) as each request is answered, so a
        caller can keep the answers of a batch that later fails."""
        if not conversations:
            return []
        body = {"model": self.model, "temperature": sampling.temperature, "top_p": sampling.top_p,
                "max_tokens": sampling.max_tokens}
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        def one(ic):
            g = self._one({**body, "messages": ic[1]})
            if on_result is not None:
                on_result(ic[0], g)
            return g

        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(conversations))) as pool:
            # map() yields in submission order, whatever order the requests finish in
            return list(pool.map(one, enumerate(conversations)))

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before retry ``attempt`` (0-based).

        Our own schedule is exponential backoff with full jitter: uniform in
        ``[0, backoff * 2^attempt]``, capped at ``max_backoff``. A server's ``Retry-After``
        can only lengthen the wait, never shorten it: ``Retry-After: 0`` from a proxy that
        always sends it would otherwise turn backoff off, and a burst of 429s would use up
        every retry in no time while the same burst of 500s passes. So the delay is
        ``min(max_backoff, max(retry_after, schedule))``.
        """
        schedule = random.uniform(0, min(self.max_backoff, self.backoff * (2 ** attempt)))
        return min(self.max_backoff, max(_retry_after_seconds(retry_after), schedule))

    def _one(self, body: dict) -> Generation:
        url, shown = self._url, self._shown_url
        last = ""
        for attempt in range(self.max_retries + 1):
            retry_after = None
            empty: Generation | None = None  # this attempt's answer when it came back without text
            try:
                r = self._client.post(url, json=body)
            except (self._httpx.TimeoutException, self._httpx.TransportError) as e:
                last = self._scrub(f"{type(e).__name__}: {e}")
            else:
                if r.status_code == 200:
                    g = _parse(r, shown, self._scrub)
                    if g.text.strip():
                        return g
                    # "content": null, "" or blanks is no translation (an overloaded or broken backend,
                    # a filter): a failed attempt, retried like a 5xx rather than returned as a result
                    empty, last = g, f"empty completion (finish_reason {g.finish_reason})"
                elif r.status_code not in RETRY_STATUS:
                    hint = (f"check the API key in ${self.api_key_env}"
                            + (" and the user:key in --base-url" if self._client.auth else "")
                            if r.status_code in (401, 403) else "check --model and --base-url")
                    err = EngineError(f"{shown} answered HTTP {r.status_code}: {self._scrub(r.text[:300])}\n"
                                      f"  fix: {hint}")
                    err.status_code = r.status_code
                    raise err
                else:
                    last = f"HTTP {r.status_code}: {self._scrub(r.text[:200])}"
                    retry_after = r.headers.get("retry-after")
            if attempt < self.max_retries:
                with self._lock:
                    self.retries += 1
                time.sleep(self._delay(attempt, retry_after))
        if empty is not None:
            # the server is up but gives this request no text: return the empty answer so that the
            # pipeline reports the unit as failed (and caches nothing) while the rest of the job goes on
            with self._lock:
                self.empty_completions += 1
            return empty
        raise EngineError(f"{shown}: request failed after {self.max_retries + 1} attempts (last: {last})\n"
                          f"  fix: check the server, then rerun the same command; finished work is kept")

    def close(self) -> None:
        self._client.close()


def _retry_after_seconds(value: str | None, now: float | None = None) -> float:
    """``Retry-After`` in seconds from now: delta-seconds or an HTTP date; 0 when absent,
    negative, in the past or unreadable (the backoff schedule then decides alone).

    >>> _retry_after_seconds("2.5"), _retry_after_seconds("-3"), _retry_after_seconds("soon")
    (2.5, 0.0, 0.0)
    >>> _retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0)
    10.0
    """
    if not value:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return 0.0
        if when.tzinfo is None:  # an HTTP date is always GMT; "-0000" parses as naive
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    return 0.0 if math.isnan(seconds) or seconds <= 0 else seconds  # inf: capped at max_backoff by _delay


def _parse(r, url: str, scrub=redact_url) -> Generation:
    try:
        data = r.json()
        choice = data["choices"][0]
        text = choice["message"].get("content")
        if text is None:  # "content": null
            text = ""
        if not isinstance(text, str):
            raise TypeError(f"message.content is a {type(text).__name__}, not a string")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        raise EngineError(f"{url}: not a chat-completions response ({e}): {scrub(r.text[:300])}") from e
    usage = data.get("usage") or {}
    return Generation(text=text, finish_reason=choice.get("finish_reason") or "stop",
                      prompt_tokens=int(usage.get("prompt_tokens") or 0),
                      completion_tokens=int(usage.get("completion_tokens") or 0))
