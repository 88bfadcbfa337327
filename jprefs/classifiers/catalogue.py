"""The catalogue of public Japanese-capable reward models shipped with jprefs.

``jprefs/resources/rm_catalogue.yaml`` holds one entry per Hub model: which logit is "chosen",
the input layout (sentence pair, response alone, or chat template), the maximum length, the
licence and what it was trained on, each field with the card it was read from.
:meth:`jprefs.RewardModel.from_pretrained` applies the entry when a repo has no
``jprefs_reward.json`` (a model pushed by jprefs carries the same fields in that file), so a
catalogued model scores correctly without flags::

    from jprefs.classifiers.catalogue import lookup
    lookup("OpenAssistant/reward-model-deberta-v3-large-v2").input     # 'pair'

Light: imports only yaml.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from jprefs.errors import ConfigError

CATALOGUE_PATH = Path(__file__).resolve().parent.parent / "resources" / "rm_catalogue.yaml"
INPUTS = ("pair", "response", "chat")          # RewardConfig.input values the catalogue may name
OBJECTIVES = ("classifier", "pairwise")
REQUIRED = ("id", "supported", "architecture", "model_type", "objective", "num_labels", "chosen_label", "input",
            "template", "max_length", "revision", "licence", "trained_on", "languages", "card_url", "notes", "source")


@dataclass(frozen=True)
class CatalogueEntry:
    """One public reward model: how to score it (see the YAML file's header for every field)."""

    id: str                          # Hub id, case-sensitive
    supported: bool                  # False: RewardModel cannot score it; ``reason`` says why
    architecture: str                # transformers class the weights are saved as
    model_type: str                  # config.json model_type
    objective: str                   # classifier (C >= 2 logits) | pairwise (one logit)
    num_labels: int
    chosen_index: int                # the logit that means "chosen"
    chosen_name: str | None          # its label name as the card/config says ("unknown" when not said)
    input: str                       # pair | response | chat
    template: str | None             # one-text inputs: how prompt and response become the text
    max_length: int | None           # None: unknown (jprefs uses 512, capped at the position limit)
    revision: str | None             # the revision loaded when the caller gives none (None: main)
    licence: str
    trained_on: tuple[str, ...]
    languages: tuple[str, ...]
    card_url: str
    notes: str
    source: dict[str, str] = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "supported": self.supported, "architecture": self.architecture,
                "model_type": self.model_type, "objective": self.objective, "num_labels": self.num_labels,
                "chosen_label": {"index": self.chosen_index, "name": self.chosen_name}, "input": self.input,
                "template": self.template, "max_length": self.max_length, "revision": self.revision,
                "licence": self.licence, "trained_on": list(self.trained_on), "languages": list(self.languages),
                "card_url": self.card_url, "notes": self.notes, "source": dict(self.source),
                **({"reason": self.reason} if self.reason else {})}


def _entry(raw: Any, i: int, where: str) -> CatalogueEntry:
    """Validate one YAML entry; every problem is one ConfigError naming the file, the entry and the field."""
    name = raw.get("id", f"#{i}") if isinstance(raw, dict) else f"#{i}"

    def bad(msg: str) -> ConfigError:
        return ConfigError(f"{where}: entry {name!r}: {msg}\n  fix: correct the entry (the file's header "
                           f"describes every field)")

    if not isinstance(raw, dict):
        raise bad(f"must be a mapping, got {type(raw).__name__}")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise bad(f"missing field(s) {missing}")
    unknown = sorted(set(raw) - set(REQUIRED) - {"reason"})
    if unknown:
        raise bad(f"unknown field(s) {unknown}")
    hub_id = raw["id"]
    if not isinstance(hub_id, str) or hub_id.count("/") != 1 or not all(hub_id.split("/")):
        raise bad(f"id must be a Hub id 'owner/name', got {hub_id!r}")
    if not isinstance(raw["supported"], bool):
        raise bad(f"supported must be true or false, got {raw['supported']!r}")
    reason = raw.get("reason") or ""
    if not raw["supported"] and not (isinstance(reason, str) and reason.strip()):
        raise bad("supported: false needs a `reason` saying why RewardModel cannot score it")
    for k in ("architecture", "model_type", "licence", "card_url", "notes"):
        if not isinstance(raw[k], str) or not raw[k].strip():
            raise bad(f"{k} must be a non-empty string (write `unknown` when the card does not say)")
    if raw["objective"] not in OBJECTIVES:
        raise bad(f"objective must be one of {list(OBJECTIVES)}, got {raw['objective']!r}")
    n = raw["num_labels"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise bad(f"num_labels must be a positive integer, got {n!r}")
    if (raw["objective"] == "pairwise") != (n == 1):
        raise bad(f"objective {raw['objective']!r} does not fit num_labels {n} (pairwise = one logit, "
                  f"classifier = 2 or more)")
    cl = raw["chosen_label"]
    if not isinstance(cl, dict) or set(cl) != {"index", "name"}:
        raise bad(f"chosen_label must be {{index: N, name: NAME}}, got {cl!r}")
    idx = cl["index"]
    if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < n:
        raise bad(f"chosen_label.index must be an integer in 0..{n - 1}, got {idx!r}")
    if raw["input"] not in INPUTS:
        raise bad(f"input must be one of {list(INPUTS)}, got {raw['input']!r}")
    if raw["input"] != "pair" and not (isinstance(raw["template"], str) and raw["template"].strip()):
        raise bad(f"input {raw['input']!r} (one text) needs a `template` saying how prompt and response are joined")
    ml = raw["max_length"]
    if ml is not None and (not isinstance(ml, int) or isinstance(ml, bool) or ml < 16):
        raise bad(f"max_length must be an integer >= 16 or null (unknown), got {ml!r}")
    if raw["revision"] is not None and not (isinstance(raw["revision"], str) and raw["revision"].strip()):
        raise bad(f"revision must be a branch, tag, commit or null, got {raw['revision']!r}")
    for k in ("trained_on", "languages"):
        if not isinstance(raw[k], list) or not raw[k] or not all(isinstance(x, str) and x for x in raw[k]):
            raise bad(f"{k} must be a non-empty list of strings (write [unknown] when the card does not say)")
    src = raw["source"]
    if not isinstance(src, dict) or not src or not all(isinstance(k, str) and isinstance(v, str) and v
                                                       for k, v in src.items()):
        raise bad("source must map field names to where each was read (a card, a config file, ...)")
    return CatalogueEntry(
        id=hub_id, supported=raw["supported"], architecture=raw["architecture"], model_type=raw["model_type"],
        objective=raw["objective"], num_labels=n, chosen_index=idx,
        chosen_name=None if cl["name"] is None else str(cl["name"]), input=raw["input"], template=raw["template"],
        max_length=ml, revision=raw["revision"], licence=raw["licence"], trained_on=tuple(raw["trained_on"]),
        languages=tuple(raw["languages"]), card_url=raw["card_url"], notes=" ".join(raw["notes"].split()),
        source=dict(src), reason=" ".join(str(reason).split()))


def load_catalogue(path: str | Path | None = None) -> list[CatalogueEntry]:
    """Every entry of the catalogue (the shipped one by default), validated; a bad entry is a ConfigError.

    >>> len(load_catalogue()) >= 5
    True
    """
    if path is None:
        return list(_shipped())
    return _load(Path(path))


@lru_cache(maxsize=1)
def _shipped() -> tuple[CatalogueEntry, ...]:
    return tuple(_load(CATALOGUE_PATH))


def _load(p: Path) -> list[CatalogueEntry]:
    import yaml

    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read the reward-model catalogue {p}: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}\n  fix: correct the file") from e
    if not isinstance(raw, list):
        raise ConfigError(f"{p}: the catalogue must be a YAML list of entries, got {type(raw).__name__}")
    entries = [_entry(r, i, str(p)) for i, r in enumerate(raw)]
    seen: set[str] = set()
    for e in entries:
        if e.id in seen:
            raise ConfigError(f"{p}: entry {e.id!r} appears twice\n  fix: keep one entry per Hub id")
        seen.add(e.id)
    return entries


def lookup(hub_id: str, path: str | Path | None = None) -> CatalogueEntry | None:
    """The entry of ``hub_id`` (exact, case-sensitive Hub id), or None when it is not catalogued.

    >>> lookup("OpenAssistant/reward-model-deberta-v3-large-v2").chosen_index
    0
    >>> lookup("openassistant/reward-model-deberta-v3-large-v2") is None
    True
    """
    for e in load_catalogue(path):
        if e.id == str(hub_id):
            return e
    return None


def lookup_other_case(hub_id: str, path=None):
    """The entry whose id equals ``hub_id`` but for case (the Hub resolves ids case-insensitively, so
    ``CyberAgent/...`` loads the model the catalogue lists as ``cyberagent/...``), or None.

    >>> lookup_other_case("openassistant/reward-model-deberta-v3-large-v2").id
    'OpenAssistant/reward-model-deberta-v3-large-v2'
    """
    want = str(hub_id).casefold()
    return next((e for e in load_catalogue(path) if e.id.casefold() == want and e.id != str(hub_id)), None)
