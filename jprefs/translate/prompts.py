"""Prompt templates: load, hash, render to chat messages, parse packed answers, clean up.

A template is a YAML file (``builtin:NAME`` for the ones shipped in
``jprefs/resources/prompts/``: ``builtin:en-ja``, ``builtin:en-ja-fewshot``) with ``system``, ``user``
(containing ``{text}``), optionally ``user_batch`` (containing ``{items}``) and
``item`` (containing ``{i}`` and ``{text}``) for packing several short units into
one request, and ``few_shot`` (a list of ``{source, target}``). The messages are
rendered by the engine through the model's own chat template.

>>> t = Template(name="t", system="S", user="Translate:\\n{text}")
>>> t.messages(["Hello"])
[{'role': 'system', 'content': 'S'}, {'role': 'user', 'content': 'Translate:\\nHello'}]
>>> clean_output("翻訳：「こんにちは」", "Hello")
'こんにちは'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from jprefs.data.schema import content_hash
from jprefs.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILTIN_DIR = Path(__file__).resolve().parents[1] / "resources" / "prompts"
ITEM_DEFAULT = '<seg id="{i}">\n{text}\n</seg>'


@dataclass(frozen=True)
class Template:
    """A translation prompt. ``hash`` covers everything that reaches the model."""

    name: str
    system: str
    user: str
    user_batch: str = ""
    item: str = ITEM_DEFAULT
    few_shot: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def hash(self) -> str:
        return content_hash(self.system, self.user, self.user_batch, self.item, list(self.few_shot))[:16]

    def _item_re(self) -> re.Pattern:
        pre, _, post = self.item.partition("{i}")
        pre_id, _, post_text = post.partition("{text}")
        # '<seg id="(\d+)">\n(.*?)\n</seg>' with the whitespace around the text made optional
        return re.compile(re.escape(pre) + r"(\d+)" + re.escape(pre_id.rstrip()) + r"\s*(.*?)\s*"
                          + re.escape(post_text.strip()), re.S)

    def _user(self, texts: list[str]) -> str:
        if len(texts) == 1:
            return self.user.replace("{text}", texts[0])
        if not self.user_batch:
            raise ConfigError(f"template {self.name!r} has no user_batch; set pack_units=1 or add one")
        items = "\n".join(self.item.replace("{i}", str(i + 1)).replace("{text}", t) for i, t in enumerate(texts))
        return self.user_batch.replace("{items}", items)

    def _answer(self, texts: list[str]) -> str:
        if len(texts) == 1:
            return texts[0]
        return "\n".join(self.item.replace("{i}", str(i + 1)).replace("{text}", t) for i, t in enumerate(texts))

    def messages(self, texts: list[str]) -> list[dict[str, str]]:
        """Chat messages translating ``texts`` (one unit, or a pack of several)."""
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        if self.few_shot:
            src = [s for s, _ in self.few_shot]
            tgt = [t for _, t in self.few_shot]
            shots = [(src, tgt)] if len(texts) > 1 else [([s], [t]) for s, t in self.few_shot]
            for s, t in shots:
                msgs.append({"role": "user", "content": self._user(s)})
                msgs.append({"role": "assistant", "content": self._answer(t)})
        msgs.append({"role": "user", "content": self._user(texts)})
        return msgs

    def parse(self, answer: str, n: int) -> list[str] | None:
        """Split a packed answer into ``n`` items; ``None`` unless exactly ids 1..n appear once."""
        if n == 1:
            return [answer]
        found = self._item_re().findall(answer)
        if [int(i) for i, _ in found] != list(range(1, n + 1)):
            return None
        return [t for _, t in found]

    def overhead_chars(self, texts: list[str]) -> int:
        """Characters sent besides the source texts themselves (instructions, few-shot, tags)."""
        return sum(len(m["content"]) for m in self.messages(texts)) - sum(len(t) for t in texts)


def builtin_templates() -> list[str]:
    return sorted(f"builtin:{p.stem}" for p in BUILTIN_DIR.glob("*.yaml"))


def resolve_path(path: str) -> Path:
    """``builtin:NAME`` (shipped inside the package, so a non-editable install finds it), else a path
    as given, else relative to the repository root. ``translate/prompts/NAME.yaml`` - where the
    shipped templates lived before - still finds the built-in of that name."""
    path = str(path)
    if path.startswith("builtin:"):
        q = BUILTIN_DIR / f"{path[len('builtin:'):]}.yaml"
        if q.exists():
            return q
        raise ConfigError(f"no built-in template {path!r}\n  fix: use one of {builtin_templates()} or template=PATH")
    p = Path(path)
    if p.exists():
        return p
    q = REPO_ROOT / path
    if not p.is_absolute() and q.exists():
        return q
    legacy = BUILTIN_DIR / p.name
    if p.parent.as_posix() == "translate/prompts" and legacy.exists():
        return legacy
    raise ConfigError(f"template file not found: {path}\n  fix: pass template=PATH or one of {builtin_templates()}")


def load_template(path: str) -> Template:
    """Load a template YAML (see the module docstring for its keys).

    >>> load_template("builtin:en-ja").name
    'en-ja'
    """
    import yaml

    p = resolve_path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: the template is a folder, not a YAML file\n  fix: pass template=FILE.yaml")
    try:
        d = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.start}: {e.reason})\n  fix: save the template as UTF-8") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from e
    known = {"name", "system", "user", "user_batch", "item", "few_shot", "description"}
    if not isinstance(d, dict) or set(d) - known:
        raise ConfigError(f"{p}: a template is a mapping with keys {sorted(known)}; got {sorted(d) if isinstance(d, dict) else d!r}")
    for k in ("name", "system", "user", "user_batch", "item", "description"):
        if d.get(k) is not None and not isinstance(d[k], str):
            raise ConfigError(f"{p}: '{k}' must be a string, got {type(d[k]).__name__}")
    if "{text}" not in str(d.get("user", "")):
        raise ConfigError(f"{p}: 'user' must contain {{text}} where the source text goes")
    if d.get("user_batch") and "{items}" not in d["user_batch"]:
        raise ConfigError(f"{p}: 'user_batch' must contain {{items}}")
    few = d.get("few_shot") or []
    if not isinstance(few, list) or not all(isinstance(x, dict) and isinstance(x.get("source"), str)
                                            and isinstance(x.get("target"), str) for x in few):
        raise ConfigError(f"{p}: 'few_shot' must be a list of {{source: TEXT, target: TEXT}} examples, got "
                          f"{few!r:.120}")
    shots = tuple((s["source"], s["target"]) for s in few)
    return Template(name=str(d.get("name") or p.stem), system=str(d.get("system") or ""), user=d["user"],
                    user_batch=str(d.get("user_batch") or ""), item=str(d.get("item") or ITEM_DEFAULT),
                    few_shot=shots)


# ---------------------------------------------------------------- output clean-up

PREAMBLE = re.compile(
    r"^\s*(?:(?:以下|こちら)(?:は|が)[^\n]{0,20}(?:翻訳|訳)[^\n]{0,12}[:：]?\s*\n"  # 以下が翻訳です：
    r"|(?:日本語)?(?:翻訳|訳文|和訳|日本語訳)(?:結果)?\s*[:：]\s*"                   # 翻訳：
    r"|(?:here is|here's) (?:the |my )?(?:japanese )?translation[^\n]{0,20}[:：]\s*)", re.I)
QUOTES = [("「", "」"), ("『", "』"), ('"', '"'), ("“", "”"), ("'", "'")]
# a source that itself begins with such a label ("Translation: the process of ...", "Here is the plan:"):
# its translation begins with one too, and that is content, not the model's preamble
SOURCE_LABEL = re.compile(r"^\s*(?:(?:the |a |my )?(?:japanese )?translat|here(?: is|'s)|below is|the following)", re.I)


def clean_output(text: str, source: str) -> str:
    """Strip preambles such as 「翻訳：」 and quotes wrapping the whole answer.

    Quotes are removed only when the source was not itself wrapped in quotes and
    the inner text has no other quote of the same kind.

    >>> clean_output("「彼は『はい』と言った」", 'He said "yes"')
    '彼は『はい』と言った'
    >>> clean_output("翻訳：ある言語を別の言語に移すこと。", "Translation: moving text from one language to another.")
    '翻訳：ある言語を別の言語に移すこと。'
    """
    t = text.strip()
    keep_label = bool(SOURCE_LABEL.match(source))
    for _ in range(2):  # 翻訳：「...」 needs two passes
        if not keep_label:
            t = PREAMBLE.sub("", t, count=1).strip()
        for a, b in QUOTES:
            if len(t) >= 2 and t.startswith(a) and t.endswith(b) and a not in t[1:-1] and b not in t[1:-1]:
                s = source.strip()
                if not (s[:1] in "\"'“「『" and s[-1:] in "\"'”」』"):
                    t = t[1:-1].strip()
                break
    return t
