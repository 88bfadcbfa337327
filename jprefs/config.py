"""Stage configs: typed dataclasses loaded from recipe YAML plus ``key=value`` overrides.

Every stage (translate, train-rm, rl, eval) has one dataclass whose fields are
typed, defaulted and documented with ``field(metadata={"help": ...})``. A recipe
is a flat YAML mapping whose keys are those field names. Unknown keys are errors
that suggest the closest valid key; values are coerced to the field's type and
bad values are reported with the key, the value and the expected type; a number must be
finite (YAML's ``.nan`` / ``.inf`` and ``lr=nan`` are refused), and each stage's ``validate()``
checks its numeric ranges with :func:`check_ranges` (CLI number options use :func:`arg_float`). The
resolved config is saved next to every output with :func:`save_config`.

Example::

    @dataclass
    class MyConfig:
        lr: float = field(default=1e-5, metadata={"help": "learning rate"})

    cfg = load_config(MyConfig, "recipe.yaml", ["lr=3e-5"])
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from jprefs.errors import ConfigError

T = TypeVar("T")


def config_help(cls) -> str:
    """One line per field: ``name (type, default): help``."""
    lines = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "required")
        tname = getattr(f.type, "__name__", str(f.type))
        lines.append(f"  {f.name} ({tname}, default {default!r}): {f.metadata.get('help', '')}")
    return "\n".join(lines)


def _type_hints(cls) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # pragma: no cover - forward refs we cannot resolve
        return {f.name: f.type for f in dataclasses.fields(cls)}


def _parse_scalar(text: str) -> Any:
    """Parse an override value the way YAML would (numbers, bools, null, lists)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    # "input_prefix=query: " is the text "query: ", not the mapping {query: null}: only an explicit
    # flow mapping ({...}) makes a mapping from the command line
    if isinstance(value, dict) and not text.lstrip().startswith("{"):
        return text
    return value


def _coerce(key: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(key, value, a)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"config key '{key}': cannot use {value!r} as {tp}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"config key '{key}': {value!r} is not one of {list(args)}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v]
        if not isinstance(value, (list, tuple)):
            value = [value]
        inner = args[0] if args else Any
        out = [_coerce(key, v, inner) for v in value]
        return out if origin is list else tuple(out)
    if origin is dict or tp is dict:
        if isinstance(value, str):
            value = _parse_scalar(value)
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        number = None
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        if not math.isfinite(number):     # YAML's .nan / .inf, or "nan" on the command line
            raise ConfigError(f"config key '{key}': expected a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
        return "" if value is None else str(value)
    return value


# numeric ranges a config checks in validate(): "> 0", ">= 0", "[0, 1]", "[0, 1)", "(0, 1]", "(0, 1)"
_RANGE_TESTS = {
    "> 0": lambda v: v > 0,
    ">= 0": lambda v: v >= 0,
    "[0, 1]": lambda v: 0 <= v <= 1,
    "[0, 1)": lambda v: 0 <= v < 1,
    "(0, 1]": lambda v: 0 < v <= 1,
    "(0, 1)": lambda v: 0 < v < 1,
}


def check_ranges(cfg: Any, ranges: dict[str, str]) -> None:
    """Raise a ConfigError naming the first key of ``ranges`` whose value is outside its range.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class C:
    ...     top_p: float = 1.5
    >>> check_ranges(C(), {"top_p": "(0, 1]"})
    Traceback (most recent call last):
    ...
    jprefs.errors.ConfigError: config key 'top_p': must be in (0, 1], got 1.5
    """
    for name, rule in ranges.items():
        value = getattr(cfg, name)
        if not _RANGE_TESTS[rule](value):
            raise ConfigError(f"config key '{name}': {_must(rule)}, got {value!r}")


def _must(rule: str) -> str:
    return f"must be {rule}" if rule[0] in "<>" else f"must be in {rule}"


def arg_float(rule: str | None = None):
    """An argparse ``type=`` for a finite number, optionally in a range of ``check_ranges``'s rules
    (``"> 0"``, ``"[0, 1)"`` ...): ``--top-p nan`` or ``--top-p 2`` is then argparse's one-line usage error.

    >>> import argparse
    >>> arg_float("(0, 1]")("0.5")
    0.5
    >>> arg_float()("nan")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a finite number, got 'nan'
    """
    import argparse

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if rule is not None and not _RANGE_TESTS[rule](value):
            raise argparse.ArgumentTypeError(f"{_must(rule)}, got {text!r}")
        return value

    parse.__name__ = "number"          # argparse names the type in its messages
    return parse


def _unknown_key(cls, key: str, source: str) -> ConfigError:
    names = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return ConfigError(
        f"unknown config key '{key}' in {source}.{hint}\n"
        f"  valid keys: {', '.join(names)}")


def parse_overrides(overrides: list[str] | None) -> dict[str, Any]:
    """``["lr=1e-5", "tags=a,b"]`` -> ``{"lr": 1e-5, "tags": "a,b"}`` (YAML scalars)."""
    out: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. lr=1e-5)")
        k, v = item.split("=", 1)
        k = k.strip().replace("-", "_")
        out[k] = _parse_scalar(v)
    return out


def load_config(cls: type[T], recipe: str | os.PathLike | dict | None = None,
                overrides: list[str] | dict | None = None) -> T:
    """Build ``cls`` from a recipe (YAML path or mapping) and ``key=value`` overrides.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class C:
    ...     lr: float = 1.0
    >>> load_config(C, None, ["lr=0.5"]).lr
    0.5
    """
    import yaml

    values: dict[str, Any] = {}
    source = "overrides"
    if recipe is not None:
        if isinstance(recipe, dict):
            values.update(recipe)
            source = "config mapping"
        else:
            p = Path(recipe)
            if not p.exists():
                raise ConfigError(f"recipe file not found: {p}\n  fix: check the path, or list recipes with `ls */recipes/`")
            if not p.is_file():
                raise ConfigError(f"{p}: the recipe is a folder, not a YAML file\n  fix: give the recipe's .yaml file")
            try:
                loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
            except UnicodeDecodeError as e:
                raise ConfigError(f"{p}: not UTF-8 text (byte {e.start}: {e.reason})\n  fix: save the recipe "
                                  f"as UTF-8") from None
            except OSError as e:
                raise ConfigError(f"{p}: cannot read the recipe: {e.strerror}") from None
            except yaml.YAMLError as e:
                raise ConfigError(f"{p}: not valid YAML: {e}") from e
            if not isinstance(loaded, dict):
                raise ConfigError(f"{p}: a recipe must be a flat mapping of key: value, got {type(loaded).__name__}")
            values.update(loaded)
            source = str(p)
    hints = _type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in values:
        if k not in names:
            raise _unknown_key(cls, k, source)
    ov = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    for k in ov:
        if k not in names:
            raise _unknown_key(cls, k, "command-line overrides")
    values.update(ov)
    kwargs = {k: _coerce(k, v, hints.get(k, Any)) for k, v in values.items()}
    cfg = cls(**kwargs)
    post = getattr(cfg, "validate", None)
    if callable(post):
        post()
    return cfg


def config_dict(cfg) -> dict[str, Any]:
    """The resolved config as plain JSON values (so a saved one and the current one compare equal),
    with credentials in URLs redacted (``http://user:***@host``, ``?api_key=***``).

    This is the form that goes to disk (config.yaml, checkpoints), so a secret never does; and
    because a saved config and the current one both pass through it, a run resumed with the real
    credential again is not "a different config". The price: a saved config cannot carry a
    credential, which must come from the command line or an environment variable each time.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class C:
    ...     base_url: str = "http://user:key@host/v1"
    >>> config_dict(C())
    {'base_url': 'http://user:***@host/v1'}
    """
    from jprefs.redact import redact

    return redact(json.loads(json.dumps(dataclasses.asdict(cfg), default=str)))


def config_diff(saved: dict, cfg, ignore: tuple[str, ...] = ()) -> str:
    """``"key: old -> new, ..."`` over the keys of ``cfg`` that differ from ``saved`` ('' if none).

    ``ignore``: keys that do not change what a run computes (a resumed run may change them).
    """
    now = config_dict(cfg)
    # a key the saved config lacks was added to jprefs after that run: at its default it changes nothing
    try:
        defaults = config_dict(type(cfg)()) if dataclasses.is_dataclass(cfg) else {}
    except TypeError:             # a config class with required fields: no defaults to fall back on
        defaults = {}
    old = {**{k: defaults[k] for k in now if k not in saved and k in defaults}, **saved}
    diff = sorted(k for k in set(old) | set(now) if k not in ignore and old.get(k) != now.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} -> {now.get(k)!r}" for k in diff)


def refuse_config_change(saved: dict, cfg, ignore: tuple[str, ...], *, holds: str, fix: str,
                         consequence: str = "; it cannot be resumed with these settings",
                         error: type[Exception] = ConfigError) -> None:
    """Raise ``error`` naming every key (outside ``ignore``) where ``cfg`` differs from the
    ``saved`` config of an earlier run; ``holds`` says what holds that run (a folder, a checkpoint)."""
    shown = config_diff(saved, cfg, ignore)
    if shown:
        raise error(f"{holds} with a different config ({shown}){consequence}.\n  fix: {fix}")


def save_config(cfg, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML (atomically) and return the path."""
    import yaml

    from jprefs.data.io import atomic_write_text

    text = yaml.safe_dump(config_dict(cfg), allow_unicode=True, sort_keys=False)
    return atomic_write_text(path, text)
