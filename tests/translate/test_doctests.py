"""The examples in the translate modules' docstrings run and are right."""

import doctest
import importlib

import pytest

MODULES = ["jprefs.translate.segment", "jprefs.translate.prompts", "jprefs.translate.quality",
           "jprefs.translate.config", "jprefs.translate.engines", "jprefs.translate.engines.openai",
           "jprefs.translate.pipeline", "jprefs.translate.cache", "jprefs.redact", "jprefs.config"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    res = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert res.failed == 0
