"""Errors that jprefs shows to users.

A :class:`JprefsError` is a mistake the user can fix (a bad file, a bad option,
a missing extra). The CLI prints its message without a traceback and exits with
status 2. Messages name the file, line or argument, show what was received and
say how to fix it.
"""

from __future__ import annotations


class JprefsError(Exception):
    """A user-facing error: the message says what is wrong and how to fix it."""


class DataError(JprefsError, ValueError):
    """Bad input data. ``path`` and ``line`` locate the row when known."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None, fix: str | None = None):
        self.path = path
        self.line = line
        self.reason = message
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        text = where + message
        if fix:
            text += f"\n  fix: {fix}"
        super().__init__(text)


class ConfigError(JprefsError, ValueError):
    """A bad recipe key or value."""


class MissingExtraError(JprefsError, ImportError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, extra: str, purpose: str = ""):
        msg = f"{package} is required{(' for ' + purpose) if purpose else ''} but is not installed.\n" \
              f"  fix: pip install 'jprefs[{extra}]'"
        super().__init__(msg)


def require(module: str, extra: str, purpose: str = ""):
    """Import an optional module or raise :class:`MissingExtraError` naming the extra.

    >>> json = require("json", "dev")
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingExtraError(module.split(".")[0], extra, purpose) from e
