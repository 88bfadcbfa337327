"""The examples in jprefs' docstrings run and give what they say (they were not collected before, and
one had drifted: ``per_100_chars`` printed 1.0000000000000002 where its docstring said 1.0)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import jprefs

MODULES = sorted(m.name for m in pkgutil.walk_packages(jprefs.__path__, "jprefs.")
                 if not m.name.endswith("__main__"))


def _has_examples(name: str) -> bool:
    try:
        mod = importlib.import_module(name)
    except ImportError:                     # an optional extra that is not installed
        return False
    return any(t.examples for t in doctest.DocTestFinder().find(mod))


@pytest.mark.parametrize("name", [m for m in MODULES if _has_examples(m)])
def test_docstring_examples(name):
    res = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0, f"{res.failed} of {res.attempted} docstring examples in {name} failed (run with -s to see)"
