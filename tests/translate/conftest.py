"""Fixtures for the translate tests: the prompt template, a local OpenAI-compatible
server with a reversible fake translator, and small preference sets written to disk."""

from __future__ import annotations

import pytest

from jprefs.data.io import write_jsonl
from jprefs.data.schema import Message, PreferencePair
from jprefs.translate.prompts import load_template
from tests.translate.fake_server import FakeServer

TEMPLATE = "translate/prompts/en-ja.yaml"


@pytest.fixture
def template():
    return load_template(TEMPLATE)


@pytest.fixture
def server(template):
    with FakeServer(template) as s:
        yield s


def make_pairs(n: int = 12) -> list[PreferencePair]:
    """Multi-turn pairs with shared prompts, shared first turns, code, URLs and long texts."""
    pairs = []
    for i in range(n):
        first = f"Hi, I need help with topic number {i % 3}."  # shared across rows
        prompt = [Message("user", first),
                  Message("assistant", "Sure, what exactly would you like to know?"),
                  Message("user", f"How do I do thing {i}? The docs at https://example.com/doc/{i} did not help.")]
        chosen = (f"Here is how to do thing {i}.\n\n```python\nprint('thing {i}')\n```\n\n"
                  f"Run `python main.py` afterwards. " + " ".join(f"Sentence {j} explains step {j} carefully."
                                                                  for j in range(12 if i % 4 == 0 else 2)))
        rejected = "I do not know, try searching the web." if i % 2 else f"Maybe ask someone else about thing {i}."
        pairs.append(PreferencePair.create(prompt, chosen, rejected, source="hh-rlhf", source_id=str(i), license="mit"))
    return pairs


@pytest.fixture
def pairs_file(tmp_path):
    p = tmp_path / "pairs.jsonl"
    write_jsonl(p, make_pairs())
    return p
