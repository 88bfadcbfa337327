"""Credentials out of everything jprefs writes or prints: configs, cards, summaries, errors.

A URL may carry a secret in two places: its userinfo (``http://user:KEY@host/v1``, or
``http://KEY@host`` with the key as the user name) and its query (``?api_key=KEY``).
:func:`redact_url` replaces both with ``***`` wherever a URL appears in a text, and
leaves everything else as it is, so it is safe to apply to any message. It is
idempotent: redacting twice gives the same text as redacting once.

>>> redact_url("http://user:s3cret@host:8000/v1")
'http://user:***@host:8000/v1'
>>> redact_url("error from https://sk-abc123@api.example.com/v1?api-version=2&api_key=xyz")
'error from https://***@api.example.com/v1?api-version=2&api_key=***'
>>> redact_url("plain text, http://127.0.0.1:8000/v1 and me@example.com")
'plain text, http://127.0.0.1:8000/v1 and me@example.com'
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

# scheme://USERINFO@ : the userinfo runs to the last '@' before the path, query or fragment
# (a raw '@' inside a password must not leave its tail in the clear)
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s/?#]*)@")
# ?name=VALUE / &name=VALUE where the name looks like a credential (api_key, key, token, sig, ...)
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&;][\w.\-]*(?:key|token|secret|passw(?:or)?d|pwd|sig|signature|auth|credential)[\w.\-]*=)"
    r"(?P<value>[^&#\s'\"]+)", re.I)


def _userinfo(m: re.Match) -> str:
    user, colon, password = m.group("userinfo").partition(":")
    # user:password -> user:***; a lone user name (or user:) is the key itself -> ***
    shown = f"{user}:{MASK}" if colon and password else MASK
    return f"{m.group('scheme')}{shown}@"


def redact_url(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***`` (see the module doc)."""
    if not isinstance(text, str) or ("@" not in text and "=" not in text):
        return text
    text = _USERINFO.sub(_userinfo, text)
    return _SECRET_PARAM.sub(lambda m: m.group("name") + MASK, text)


def redact(obj: Any) -> Any:
    """:func:`redact_url` applied to every string inside ``obj`` (dicts, lists, tuples).

    >>> redact({"base_url": "http://u:p@h/v1", "stop": ["x"], "n": 1})
    {'base_url': 'http://u:***@h/v1', 'stop': ['x'], 'n': 1}
    """
    if isinstance(obj, str):
        return redact_url(obj)
    if isinstance(obj, dict):
        return {k: redact(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v) for v in obj)
    return obj


def is_redacted(url: str) -> bool:
    """Whether ``url`` holds a credential that :func:`redact_url` masked (so it cannot be used).

    >>> is_redacted("http://user:***@host/v1"), is_redacted("http://***@host"), is_redacted("http://u:k@host")
    (True, True, False)
    """
    if not isinstance(url, str) or MASK not in url:
        return False
    for m in _USERINFO.finditer(url):
        user, colon, password = m.group("userinfo").partition(":")
        if (password if colon and password else user) == MASK:
            return True
    return any(m.group("value") == MASK for m in _SECRET_PARAM.finditer(url))
