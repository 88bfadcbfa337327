"""Translation engines behind one interface, registered by name and imported lazily.

Every engine implements ``generate(conversations, sampling) -> list[Generation]``:
``conversations`` is a list of chat conversations (lists of ``{"role", "content"}``
dicts), ``sampling`` a :class:`Sampling` with OpenAI field names; the result has
one :class:`Generation` per conversation, in input order. The engine applies the
model's own chat template (vLLM ``LLM.chat``, the server, or the tokenizer).
A generation whose text is empty or only blanks is no translation: the pipeline
counts its unit as failed, reports it and never caches it (a rerun tries again).

Only the chosen backend is imported: ``get_engine("vllm", ...)`` imports vllm,
``get_engine("openai", ...)`` imports httpx, and so on.

Example::

    engine = get_engine("openai", model="calm3", base_url="http://127.0.0.1:8000/v1")
    gens = engine.generate([[{"role": "user", "content": "Translate: Hello"}]],
                           Sampling(temperature=0.0, max_tokens=64))
    gens[0].text, gens[0].finish_reason
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from jprefs.errors import ConfigError, JprefsError

# name -> "module:Class"; modules are imported only when the engine is chosen.
ENGINES: dict[str, str] = {
    "vllm": "jprefs.translate.engines.vllm:VLLMEngine",
    "openai": "jprefs.translate.engines.openai:OpenAIEngine",
    "transformers": "jprefs.translate.engines.transformers:TransformersEngine",
}


class EngineError(JprefsError):
    """The engine failed in a way a rerun may fix (server down, retries exhausted). ``status_code``: the
    HTTP status when a server refused the request (None otherwise)."""

    status_code: int | None = None


@dataclass
class Sampling:
    """Sampling parameters with OpenAI names (as vLLM's ``SamplingParams`` uses them)."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 2048
    seed: int | None = 0
    stop: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Generation:
    """One engine output. ``finish_reason`` is ``stop`` or ``length`` (truncated); a blank
    ``text`` means the engine produced nothing for this request (a failed unit)."""

    text: str
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Engine(Protocol):
    name: str
    model: str
    revision: str | None

    def generate(self, conversations: list[list[dict[str, str]]], sampling: Sampling) -> list[Generation]:
        ...

    def close(self) -> None:
        ...


def get_engine(name: str, **kwargs: Any) -> Engine:
    """Build the engine registered as ``name`` (importing its backend only now).

    >>> get_engine("nope")
    Traceback (most recent call last):
    ...
    jprefs.errors.ConfigError: unknown engine 'nope'; available: vllm, openai, transformers
    """
    if name not in ENGINES:
        raise ConfigError(f"unknown engine {name!r}; available: {', '.join(ENGINES)}")
    module, cls = ENGINES[name].split(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)


def apply_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """Cut ``text`` at the first stop string; return (text, whether it was cut)."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
