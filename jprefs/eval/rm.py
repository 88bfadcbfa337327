"""``jprefs eval rm``: reward models on preference pairs, with intervals, length baselines and a leaderboard.

    jprefs eval rm --model [NAME=]RM[@REV] [--model ...] --data [NAME=]PAIRS [--data ...] -o DIR [--revision REV]

Every model scores both responses of every pair of every data set; the figures come from
:mod:`jprefs.eval.metrics` (the implementation train-rm's own evaluation uses): pairwise accuracy
with a 95% cluster-bootstrap interval resampled by prompt, the longer-wins and shorter-wins
baselines on the same pairs, length-controlled accuracy (pairs whose chosen response is the
shorter one) and accuracy on length-matched pairs, reward-length correlation, calibration,
and a breakdown by source / RewardBench subset / category. Lengths are characters of the
response text.

Inputs
    ``--data``: canonical jprefs pairs or rank lists (``jprefs data convert``; train-rm's
    ``OUT/eval_split.jsonl``), RewardBench-style rows (``prompt``, ``chosen``, ``rejected``,
    ``subset``, e.g. the Japanese split of M-RewardBench, JSONL or Parquet: ``subset`` is kept for
    the breakdown), or any ``--source`` of :mod:`jprefs.data.adapters`. Read by
    :func:`jprefs.classifiers.data.load_rm_data`; rows it cannot use are counted per file and
    written to ``DIR/rejects.jsonl`` (rows read = pairs' records + rejected rows).
    ``--model``: anything :meth:`RewardModel.from_pretrained` loads: a jprefs reward model folder,
    a plain Hugging Face sequence classifier (one logit, or a chosen ``--label``), a Hub id. A Hub id
    is read at ``ORG/NAME@REV`` (that model) or ``--revision REV`` (every Hub id; ``@REV`` wins), else
    at a catalogued model's pinned revision, else ``main``; a revision of a local folder is an error.
    ``--label`` is ignored, with a notice, for a jprefs reward model, ensemble or stack and for a
    one-logit classifier, local or on the Hub (decided from the repo's files: ``jprefs_reward.json``
    and the others, ``config.json``).

Outputs (``DIR``)
    ``metrics.json`` (``results[MODEL][DATA]`` has ``n_pairs``, ``pairwise_accuracy``, ``ci95``,
    ``length_baseline_accuracy``, ``length_controlled_accuracy`` and the rest), ``report.md``,
    ``report.html``, ``scores.jsonl`` (one row per model, data set and pair: ``r_chosen``,
    ``r_rejected``), ``rejects.jsonl`` when rows were rejected, and the plots. ``models[MODEL]
    ["fingerprint"]`` identifies the weights scored (:func:`weights_fingerprint`; a Hub id's commit
    too) and ``data[DATA]["sha256"]`` the file, so that ``jprefs push model --eval`` can tell whether
    a report is of the folder it pushes (:mod:`jprefs.publish.evals`).
    With ``--probe-train``: ``data[DATA]["probe_baseline"]`` and ``results[MODEL][DATA]
    ["accuracy_minus_probe"]`` (paired, by prompt) in ``metrics.json``, ``probe.json`` (the fitted
    :class:`jprefs.classifiers.probe.LengthProbe`) and ``probe_scores.jsonl`` (``s_chosen``,
    ``s_rejected`` per pair).

The probe baseline (``--probe-train``): a logistic model on the frozen ``--probe-backbone``
embeddings of the same (prompt, response) inputs plus the log length, fit once on the given
training pairs (L2 by grouped cross-validation on them), scored on every data set
(:mod:`jprefs.classifiers.probe`).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jprefs.config import arg_float
from jprefs.runlock import holds_output

EXAMPLES = """examples:
  jprefs eval rm --model out/rm --data out/rm/eval_split.jsonl -o out/eval-rm
  jprefs eval rm --model a=out/rm-a --model b=out/rm-b --data ja=pairs.jsonl --data mrb=m-rewardbench-ja.parquet \\
      -o out/leaderboard
  jprefs eval rm --model out/rm-hh --data harmless-base-test.jsonl.gz --source hh-rlhf --limit 500 -o out/eval-hh
  jprefs eval rm --model some-org/ja-sentiment --label positive --data pairs.jsonl -o out/eval-clf
  jprefs eval rm --model me/ja-rm@v1 --model me/ja-rm@v2 --data pairs.jsonl -o out/eval-versions
  jprefs eval rm --model me/ja-rm --revision 1b2c3d4e --data pairs.jsonl -o out/eval-at-commit
  jprefs eval rm --model out/rm --data out/rm/eval_split.jsonl --probe-train train-pairs.jsonl -o out/eval-rm

NAME=PATH gives a model or data set its label in the tables (default: the folder or file name; for
a Hub id read at a revision, its name@REV). ORG/NAME@REV reads a Hub model at a branch, tag or commit
(--revision REV: every Hub model; @REV wins); a local folder has no revisions.
Lengths are characters of the response; length-matched pairs differ by at most --length-tolerance
of the longer response. Intervals: 95% bootstrap, resampling prompts (pairs that share a prompt
move together), --seed fixes them. --probe-train adds a second baseline: a logistic probe on frozen
--probe-backbone embeddings plus log length, fit on the given (training) pairs, scored on every --data set."""

LAYOUT_KEYS = ("subset", "category")      # per-pair columns kept for the breakdown (RewardBench, Rakuda)


def configure_rm(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    parser.add_argument("--model", action="append", required=True, metavar="[NAME=]RM[@REV]",
                        help="reward model: jprefs train-rm folder, sequence-classification folder or Hub id, "
                             "a Hub id at a revision as ORG/NAME@REV (repeat for a leaderboard)")
    parser.add_argument("--revision", metavar="REV",
                        help="Hub revision (branch, tag or commit) of every Hub --model (default: a catalogued "
                             "model's pinned one, else main); ORG/NAME@REV wins for its model; an error with a "
                             "local folder")
    parser.add_argument("--data", action="append", required=True, metavar="[NAME=]FILE",
                        help="preference pairs: jprefs JSONL, RewardBench-style JSONL/Parquet (prompt, chosen, "
                             "rejected, subset), or a file of --source (repeatable)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="report folder")
    parser.add_argument("--source", default="",
                        help="read every --data file with this adapter (hh-rlhf, webgpt, jsonl, ...; "
                             "`jprefs data convert --help` lists them); default: pairs as they are")
    parser.add_argument("--label", help="chosen label (name or index) of a plain classifier without "
                                        "jprefs_reward.json (ignored, with a notice, for jprefs reward models "
                                        "and one-logit classifiers, local or on the Hub)")
    parser.add_argument("--batch-size", type=int, default=32, help="responses per forward pass (default 32)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--dtype", help="fp32 | bf16 | fp16 (default: fp32 on CPU, bf16 on GPU)")
    parser.add_argument("--all-heads", action="store_true",
                        help="multi-head reward models (train-rm debias=odin): also score every other head "
                             "(NAME:full, NAME:length) as its own leaderboard entry; NAME is the default head. "
                             "A reward stack: also its reward model's heads and its parts alone (NAME:probe, "
                             "NAME:relevance), all from one scoring pass")
    parser.add_argument("--limit", type=int, default=0, help="read at most N records of each data file (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--length-tolerance", type=arg_float(), default=0.10,
                        help="length-matched: |len_c - len_r| / max(len_c, len_r) at most this (default 0.10)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    g = parser.add_argument_group("probe baseline (frozen embeddings + log length; jprefs.classifiers.probe)")
    g.add_argument("--probe-train", metavar="FILE",
                   help="pairs to fit the probe on: the reward model's TRAINING pairs (never the --data pairs); "
                        "read like --data")
    g.add_argument("--probe-backbone", default="e5-small-offline",
                   help="frozen backbone of the probe (default e5-small-offline)")
    g.add_argument("--probe-prefix", default="query: ", help="input prefix of the probe (default 'query: ', e5's)")
    g.add_argument("--probe-pooling", default="mean", choices=["mean", "cls"],
                   help="mean: masked mean of the last hidden states (e5); cls: the [CLS] state (default mean)")
    g.add_argument("--probe-max-length", type=int, default=512, help="probe input tokens (default 512)")
    g.add_argument("--probe-max-prompt-length", type=int, default=128, help="probe prompt tokens (default 128)")


# ------------------------------------------------------------------ inputs


def _split_label(spec: str) -> tuple[str | None, str]:
    """``NAME=PATH`` -> (NAME, PATH); a plain path (or one that exists with ``=`` in it) -> (None, PATH)."""
    if "=" in spec and not Path(spec).exists():
        name, path = spec.split("=", 1)
        if name and "/" not in name and path:
            return name, path
    return None, spec


def _labels(specs: list[str], auto) -> list[tuple[str, str]]:
    """(label, path) per spec: given labels kept, auto labels widened with the parent folder until unique."""
    return _unique_labels([_split_label(s) for s in specs], lambda path, depth: auto(Path(path), depth))


def _unique_labels(parsed: list[tuple[str | None, Any]], auto) -> list[tuple[str, Any]]:
    """(label, what) per (NAME or None, what): given labels kept, auto labels (``auto(what, depth)``)
    widened with the parent folder until unique."""
    labels = [name or auto(path, 1) for name, path in parsed]
    for depth in (2, 3):
        dup = {x for x in labels if labels.count(x) > 1}
        labels = [auto(p, depth) if (n is None and lab in dup) else lab
                  for (n, p), lab in zip(parsed, labels)]
    seen: dict[str, int] = {}
    out = []
    for (_, path), lab in zip(parsed, labels):
        seen[lab] = seen.get(lab, 0) + 1
        out.append((lab if seen[lab] == 1 else f"{lab}#{seen[lab]}", path))
    return out


_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")        # ORG/NAME: what the Hub accepts as a model repo id


def _split_revision(spec: str) -> tuple[str, str | None]:
    """``ORG/NAME@REV`` -> (ORG/NAME, REV); anything else, or a path that exists, -> (spec, None).
    A Hub repo id cannot hold ``@``, so the first one starts the revision (a branch may hold ``/``)."""
    if "@" in spec and not Path(spec).expanduser().exists():
        repo, rev = spec.split("@", 1)
        if rev.strip() and (_HUB_ID.fullmatch(repo) or Path(repo).expanduser().exists()):
            return repo, rev
    return spec, None


def _model_specs(specs: list[str], revision: str | None) -> list[tuple[str, str, str | None]]:
    """(label, path or Hub id, revision or None) per ``--model``: ``ORG/NAME@REV`` or ``--revision``
    (``@REV`` wins) for a Hub id; a revision of a local folder is a :class:`ConfigError`. The default
    label of a Hub id read at a revision is ``NAME@REV``, so the tables and plots name the revision."""
    from jprefs.errors import ConfigError

    if revision is not None and not revision.strip():
        raise ConfigError("--revision is empty\n  fix: give a branch, tag or commit of the Hub model, or drop it")
    parsed = []
    for spec in specs:
        name, path = _split_label(spec)
        path, at = _split_revision(path)
        if Path(path).expanduser().exists() and (at or revision):
            how = f"--model {spec}" if at else f"--revision {revision}"
            fix = (f"drop '@{at}' (check out the version of the folder you mean)" if at else
                   "drop --revision, or give the revision of each Hub model alone: --model ORG/NAME@REV")
            raise ConfigError(f"{how}: {path} is a local folder, and a local folder has no revisions (a revision "
                              f"is a branch, tag or commit of a Hub model)\n  fix: {fix}")
        parsed.append((name, path, at or revision))
    labelled = _unique_labels([(n, (p, r)) for n, p, r in parsed],
                              lambda pr, depth: _model_label(Path(pr[0]), depth) + (f"@{pr[1]}" if pr[1] else ""))
    return [(lab, p, r) for lab, (p, r) in labelled]


def _model_label(p: Path, depth: int) -> str:
    parts = [x for x in p.parts if x not in ("/", ".", "")]
    return "/".join(parts[-depth:]) if parts else str(p)


def _data_label(p: Path, depth: int) -> str:
    name = p.name
    for suf in (".jsonl.gz", ".json.gz", ".jsonl", ".json", ".parquet", ".csv", ".tsv", ".gz"):
        if name.endswith(suf):
            name = name[: -len(suf)]
            break
    parents = [x for x in p.parent.parts if x not in ("/", ".", "")]
    return "/".join(parents[-(depth - 1):] + [name]) if depth > 1 and parents else name


@dataclass
class EvalData:
    """The pairs of one ``--data`` file, with what the breakdown and the bootstrap need."""

    label: str
    path: str
    pairs: list
    groups: list[str]                       # prompt key per pair (the bootstrap's unit)
    keys: dict[str, list[str]]              # breakdown dimension -> value per pair
    layout: str
    rows_in: int
    records: int
    rejects: list[dict] = field(default_factory=list)

    @property
    def len_chosen(self) -> list[int]:
        return [len(p.chosen) for p in self.pairs]

    @property
    def len_rejected(self) -> list[int]:
        return [len(p.rejected) for p in self.pairs]


def _meta_value(pair, key: str) -> str | None:
    meta = pair.meta or {}
    v = meta.get(key)
    if v is None and isinstance(meta.get("extra"), dict):
        v = meta["extra"].get(key)
    return None if v is None else str(v)


def load_eval_data(label: str, path: str, *, source: str = "", limit: int = 0) -> EvalData:
    """Read one data set with the data layer (:func:`load_rm_data`); raises :class:`DataError` when it
    holds no usable pair. Files other than JSONL are read with the canonical adapter, which keeps
    unknown columns (``subset``) in ``meta.extra`` as the JSONL reader does."""
    from jprefs.classifiers.data import load_rm_data
    from jprefs.data.io import check_input
    from jprefs.data.schema import prompt_key
    from jprefs.errors import DataError

    p = Path(path)
    if not _looks_remote(path, source):
        check_input(p)
        if p.stat().st_size == 0:
            raise DataError(f"{p}: the file is empty", fix="pass a file of preference pairs (prompt, chosen, "
                                                            "rejected); `jprefs data convert` makes one")
    name = p.name.lower()
    jsonl = name.endswith((".jsonl", ".jsonl.gz"))
    if source:
        data = load_rm_data(path, source=source, limit=limit)
    elif jsonl:
        try:
            data = load_rm_data(path, data_format="pairs", limit=limit)
        except DataError as e:
            if "no usable rows" not in e.reason:
                raise
            data = None
        if data is None:        # every row rejected: say what would read it (outside the except: no chained trace)
            data = load_rm_data(path, source="jprefs", limit=limit)
    else:
        data = load_rm_data(path, source="jprefs", limit=limit)
    pairs = data.pairs()
    if not pairs:
        first = data.rejects[0] if data.rejects else None
        where = ""
        if first:
            loc = f"line {first['line']}" if "line" in first else f"row {first.get('index', '?')}"
            where = f" (first reject, {loc}: {first.get('error')})"
        raw = first.get("raw") if first else None
        hh = isinstance(raw, dict) and "\n\nHuman:" in str(raw.get("chosen", "")) and "prompt" not in raw
        raise DataError(f"{path}: no usable preference pairs out of {data.rows_in} rows{where}",
                        fix=("these rows look like hh-rlhf transcripts: add --source hh-rlhf" if hh else
                             "give prompt/chosen/rejected rows (jprefs pairs or RewardBench-style), or the --source "
                             "that reads this file (`jprefs data convert --help` lists them)"))
    keys: dict[str, list[str]] = {}
    for k in LAYOUT_KEYS:
        vals = [_meta_value(x, k) for x in pairs]
        if any(v is not None for v in vals):
            keys[k] = [v if v is not None else "(none)" for v in vals]
    sources = [x.source for x in pairs]
    if len(set(sources)) > 1:
        keys = {"source": sources, **keys}
    layout = "rewardbench" if "subset" in keys else (source or "jprefs")
    return EvalData(label, str(path), pairs, [prompt_key(x.prompt) for x in pairs], keys, layout, data.rows_in,
                    len(data.records), [dict(r, data=label) for r in data.rejects])


def _looks_remote(path: str, source: str) -> bool:
    """A Hub dataset id given with ``--source`` (the data layer fetches it) rather than a local file."""
    return bool(source) and not Path(path).exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", path) is not None


def _check_model(path: str, revision: str | None = None) -> bool:
    """Fail fast on a model path that cannot load; returns whether ``--label`` applies to it: a plain
    classifier (no ``jprefs_reward.json``, ensemble or stack) with more than one logit (or an unknown
    number). A Hub id is judged the same way from its files at ``revision`` (else a catalogued model's
    pinned one, else main), read through the Hub cache (downloaded when online; offline, the cached
    snapshot), so a jprefs reward model ignores ``--label`` on the Hub as it does in a folder."""
    from jprefs.classifiers.ensemble import ENSEMBLE_NAME
    from jprefs.classifiers.stack import STACK_NAME
    from jprefs.errors import JprefsError
    from jprefs.modeldir import REWARD_CONFIG, check_model_dir, config_num_labels

    p = Path(path).expanduser()
    if p.exists():
        check_model_dir(p, want="reward model")
        if any((p / name).is_file() for name in (REWARD_CONFIG, ENSEMBLE_NAME, STACK_NAME)):
            return False
        n = config_num_labels(p)
        return n is None or n > 1          # a one-logit classifier's reward is its logit: no label to pick
    if path.startswith((".", "/", "~")) or path.count("/") != 1:
        raise JprefsError(f"reward model not found: {path}\n  fix: pass a jprefs train-rm output folder, a "
                          f"sequence-classification model folder, or a Hub id like 'org/name'")
    rev = _hub_revision(path, revision)
    # a pushed stack or ensemble has its marker at the root (and no config.json there); a reward model its config
    if any(_hub_file(path, name, rev)[0] for name in (STACK_NAME, ENSEMBLE_NAME, REWARD_CONFIG)):
        return False
    config, missed = _hub_file(path, "config.json", rev)
    if missed:                              # not cached and the Hub out of reach: say so before loading anything
        from jprefs.hub import ModelNotCachedError

        raise ModelNotCachedError(path, rev)
    n = config_num_labels(Path(config).parent) if config else None
    return n is None or n > 1


def _hub_revision(repo_id: str, revision: str | None) -> str | None:
    """The revision a Hub model is read at: the one asked for, else a catalogued model's pinned one, else
    None (main)."""
    from jprefs.classifiers.catalogue import lookup

    if revision:
        return revision
    entry = lookup(repo_id)
    return entry.revision if entry is not None and entry.revision else None


def _hub_file(repo_id: str, name: str, revision: str | None) -> tuple[str | None, bool]:
    """``(local path or None, missed)`` of one file of a Hub repo at ``revision``, through the Hub cache
    (downloaded when online). None: the repo (or revision) has no such file, or it is not cached while the
    Hub is out of reach (then ``missed``); the model loader says what is wrong with a repo that is not."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, HFValidationError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    from jprefs.hub import is_offline_miss

    try:
        return hf_hub_download(repo_id, name, revision=revision), False
    except LocalEntryNotFoundError:         # offline: not in the cache (or known absent there)
        return None, True
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError, HFValidationError):
        return None, False
    except Exception as e:  # noqa: BLE001 - an offline miss is a miss; anything else is re-raised
        if is_offline_miss(e):
            return None, True
        raise


# ------------------------------------------------------------------ scoring and metrics


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "x"


# ------------------------------------------------------------------ which model: the weights' fingerprint


def weights_fingerprint(folder: str | Path) -> dict | None:
    """``{"sha256": HEX, "files": {RELPATH: HEX}}``: what identifies the trained model in ``folder``, or
    None when it holds none of the files below. ``jprefs eval rm`` records it per model and ``jprefs
    push model --eval`` compares it with the folder pushed (:mod:`jprefs.publish.evals`).

    ``files``: a reward model's ``*.safetensors`` beside its config (``model.safetensors``, or the
    shards); an ensemble's members' files (``seed-1/model.safetensors``, ...); a stack's reward model's
    files (``reward/...``) plus ``jprefs_stack.json#numbers`` and ``probe.json#numbers``: the SHA-256 of
    the numbers in those files (the fitted weights, offset and probe; their strings are names and paths,
    which ``jprefs push`` rewrites, and a frozen stack has no safetensors). ``sha256``: the file's own
    SHA-256 (``sha256sum model.safetensors``) when ``files`` is that one file, else the SHA-256 of the
    lines ``HEX  RELPATH\n`` sorted by path (``sha256sum``'s format). The folder's path is in neither:
    a moved or copied folder has the same fingerprint, a retrained one another.

    >>> weights_fingerprint("out/rm")["sha256"][:12]                  # doctest: +SKIP
    '3f9a0c1d22be'
    """
    import hashlib

    files = dict(sorted(_weights_files(Path(folder)).items()))
    if not files:
        return None
    if list(files) == ["model.safetensors"]:
        return {"sha256": files["model.safetensors"], "files": files}
    manifest = "".join(f"{h}  {rel}\n" for rel, h in files.items())
    return {"sha256": hashlib.sha256(manifest.encode("utf-8")).hexdigest(), "files": files}


def _weights_files(d: Path, pre: str = "") -> dict[str, str]:
    from jprefs.classifiers.ensemble import ENSEMBLE_NAME
    from jprefs.classifiers.stack import STACK_NAME
    from jprefs.data.io import file_sha256, json_dict_or_empty as read

    if (d / ENSEMBLE_NAME).is_file():
        out: dict[str, str] = {}
        for m in read(d / ENSEMBLE_NAME).get("members") or []:
            out.update(_weights_files(d / str(m), f"{pre}{m}/"))
        return out
    if (d / STACK_NAME).is_file():
        spec = read(d / STACK_NAME)
        out = {f"{pre}{STACK_NAME}#numbers": _numbers_sha256(spec)}
        if spec.get("reward"):
            out.update(_weights_files(d / str(spec["reward"]), f"{pre}{spec['reward']}/"))
        if spec.get("probe") and (d / str(spec["probe"])).is_file():
            out[f"{pre}{spec['probe']}#numbers"] = _numbers_sha256(read(d / str(spec["probe"])))
        return out
    # the folder's own weights only: not a checkpoint/ or other run folder below it
    return {pre + p.name: file_sha256(p) for p in sorted(d.glob("*.safetensors")) if p.is_file()}


def _numbers_sha256(value) -> str:
    """SHA-256 of the canonical JSON of ``value`` with its strings left out (numbers, booleans, nulls and
    the keys that lead to them stay)."""
    import hashlib
    import json

    def keep(v):
        if isinstance(v, dict):
            return {str(k): keep(x) for k, x in v.items() if not isinstance(x, str)}
        if isinstance(v, list):
            return [keep(x) for x in v if not isinstance(x, str)]
        return v

    text = json.dumps(keep(value), sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_fingerprint(rm, path: str, revision: str | None = None) -> dict:
    """The ``fingerprint`` that ``jprefs eval rm`` records of the model loaded from ``path``: a local
    folder's :func:`weights_fingerprint` (``weights_sha256``, ``weights_files``); for a Hub id also
    ``hub_id``, the ``revision`` asked for (``revision``, else a catalogued model's pinned one, else
    main) and the ``commit``
    it resolved to (transformers' ``config._commit_hash`` of the loaded model), the weights then read
    from that snapshot in the Hub cache."""
    p = Path(path).expanduser()
    commit = None
    if not getattr(rm, "frozen", False):     # a frozen stack's model is its backbone's, not the stack's
        model = getattr(rm, "model", None)
        commit = getattr(getattr(model, "config", None), "_commit_hash", None)
    fp: dict[str, Any] = {}
    if p.exists():
        folder: Path | None = p
    else:
        rev = _hub_revision(path, revision) or "main"
        folder = _hub_snapshot(path, commit or rev)
        if commit is None and folder is not None and folder.parent.name == "snapshots":
            commit = folder.name
        fp = {"hub_id": path, "revision": rev}
    w = weights_fingerprint(folder) if folder is not None else None
    if w is not None:
        fp.update(weights_sha256=w["sha256"], weights_files=w["files"])
    if commit:
        fp["commit"] = str(commit)
    return fp


def _hub_snapshot(repo_id: str, revision: str) -> Path | None:
    """The Hub cache's snapshot folder of ``repo_id`` at ``revision`` (what the loader read), if cached."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    from jprefs.classifiers.ensemble import ENSEMBLE_NAME
    from jprefs.classifiers.stack import STACK_NAME

    for name in (STACK_NAME, ENSEMBLE_NAME, "model.safetensors", "model.safetensors.index.json"):
        try:
            hit = try_to_load_from_cache(repo_id, name, revision=revision)
        except Exception:                     # a malformed id or cache: nothing to read, no fingerprint
            return None
        if isinstance(hit, str):
            return Path(hit).parent
    return None


def _model_info(rm, path: str, revision: str | None = None) -> dict:
    c = rm.config
    info = {"path": path, "objective": c.objective, "input": c.input, "pooling": c.pooling, "center": c.center,
            "base_model": c.base_model, "max_length": c.max_length,
            "fingerprint": model_fingerprint(rm, path, revision)}
    if getattr(rm, "frozen", False):       # a frozen reward stack: no classifier, its parts on a frozen backbone
        return {**info, "class": type(rm).__name__, "parts": list(rm.names)}
    return {**info, "class": type(rm.model).__name__, "num_labels": int(rm.model.config.num_labels),
            "chosen_index": c.chosen_index, "labels": list(c.labels)}


def _score(rm, data: EvalData, batch_size: int, model_label: str, heads: list[str] | None = None):
    """``(r_chosen, r_rejected)`` of the model's reward, or ``{head: (r_chosen, r_rejected)}`` for ``heads``
    (one forward pass for all heads)."""
    n = len(data.pairs)
    prompts = [p.prompt for p in data.pairs] * 2
    responses = [p.chosen for p in data.pairs] + [p.rejected for p in data.pairs]
    if heads:           # one forward pass for every head (a stack: one score for the stack, its heads and parts)
        by = rm.score_heads(prompts, responses, heads, batch_size=batch_size, show_progress=True)
        return {h: _checked(by[h], n, data, f"{model_label}:{h}") for h in heads}
    return _checked(rm.score(prompts, responses, batch_size=batch_size, show_progress=True), n, data, model_label)


def _checked(r, n: int, data: EvalData, model_label: str):
    import numpy as np

    from jprefs.errors import JprefsError

    bad = int((~np.isfinite(r)).sum())
    if bad:
        raise JprefsError(f"model {model_label} gave {bad} NaN or infinite rewards on {data.path}: it cannot be "
                          f"evaluated.\n  fix: check the model folder (a mean-pooled jprefs model loaded by plain "
                          f"transformers scores NaN); retrain or re-save it")
    return r[:n].astype(np.float64), r[n:].astype(np.float64)


def _result(rc, rr, data: EvalData, *, tolerance: float, seed: int) -> dict:
    from jprefs.eval.metrics import breakdown, pairwise_metrics

    m = pairwise_metrics(rc, rr, data.len_chosen, data.len_rejected, data.groups, tolerance=tolerance, seed=seed)
    m["reliability"] = {"of": "confidence of the predicted winner, sigmoid(r_c - r_r), one point per pair",
                        "bins": m.pop("reliability_bins")}
    m["breakdown"] = {k: breakdown(rc, rr, data.len_chosen, data.len_rejected, v, data.groups, tolerance=tolerance,
                                   seed=seed) for k, v in data.keys.items()}
    return m


def _file_sha256(path: str) -> dict:
    """``{"sha256": HEX}`` of a local data file (which rows were scored, wherever the file is later);
    empty for a Hub dataset id."""
    from jprefs.data.io import file_sha256

    return {"sha256": file_sha256(path)} if Path(path).is_file() else {}


def _data_summary(d: EvalData, tolerance: float, seed: int) -> dict:
    """What depends on the data alone: counts and the two length baselines."""
    from collections import Counter

    import numpy as np

    from jprefs.eval.metrics import accuracy_metrics

    n = len(d.pairs)
    zero = np.zeros(n)            # any constant reward: only the length figures are used
    base = accuracy_metrics(zero, zero, d.len_chosen, d.len_rejected, d.groups, tolerance=tolerance, seed=seed)
    return {"path": d.path, **_file_sha256(d.path), "layout": d.layout, "rows_in": d.rows_in, "records": d.records,
            "rows_rejected": len(d.rejects), "rejects_by_reason": dict(Counter(r.get("reason", "?")
                                                                             for r in d.rejects).most_common()),
            "n_pairs": n, "n_prompts": base["n_prompts"],
            "length_baseline_accuracy": base["length_baseline_accuracy"],
            "length_baseline_ci95": base["length_baseline_ci95"],
            "shorter_baseline_accuracy": base["shorter_baseline_accuracy"],
            "shorter_baseline_ci95": base["shorter_baseline_ci95"],
            "chosen_shorter_n": base["length_subsets"]["chosen_shorter"]["n"],
            "chosen_longer_n": base["length_subsets"]["chosen_longer"]["n"],
            "equal_length_n": base["length_subsets"]["equal_length"]["n"],
            "length_matched_n": base["length_subsets"]["length_matched"]["n"],
            "mean_len_chosen": float(np.mean(d.len_chosen)), "mean_len_rejected": float(np.mean(d.len_rejected)),
            "breakdown_keys": list(d.keys)}


# ------------------------------------------------------------------ the probe baseline


def _load_probe_train(path: str, source: str) -> EvalData:
    """The probe's training pairs, read like ``--data``; a missing, empty or unusable file is one error
    naming ``--probe-train``."""
    from jprefs.errors import DataError

    fix = ("pass the reward model's TRAINING pairs to --probe-train (for a train-rm folder: its data file "
           "without the prompts of OUT/eval_split.jsonl), or drop --probe-train")
    try:
        return load_eval_data("probe-train", path, source=source)
    except DataError as e:
        raise DataError(f"--probe-train: {e.reason}", path=e.path, line=e.line, fix=fix) from None


def _run_probe(args, train: EvalData, sets, models, scores, results, data_info, out: Path) -> dict:
    """Fit the probe once on ``train``, score every data set, add ``probe_baseline`` to each data set's
    summary and ``accuracy_minus_probe`` (paired, by prompt) to every model's results; write
    ``probe.json`` (the fitted probe) and ``probe_scores.jsonl``. Returns the run-level probe summary."""
    import gc

    from jprefs.classifiers.probe import Embedder, fit_probe, probe_pair_scores
    from jprefs.data.io import atomic_write_json, eprint, write_jsonl
    from jprefs.eval.metrics import accuracy_metrics, wins
    from jprefs.eval.stats import paired_bootstrap_ci

    tol, seed = args.length_tolerance, args.seed
    emb = Embedder(args.probe_backbone, pooling=args.probe_pooling, input_prefix=args.probe_prefix,
                   max_length=args.probe_max_length, max_prompt_length=args.probe_max_prompt_length,
                   device=args.device, batch_size=args.batch_size)
    eprint(f"probe: fitting on {len(train.pairs)} pairs of {train.path} ({args.probe_backbone}, {args.probe_pooling} "
           f"pooling, max_length {emb.max_length})")
    probe = fit_probe(train.pairs, emb, seed=seed)
    eprint(f"probe: l2 {probe.l2:g}, grouped-CV accuracy {probe.cv_accuracy:.3f} ({probe.folds} folds by prompt), "
           f"length weight {probe.length_weight:.3f} per log-character")
    train_keys = set(train.groups)
    rows = []
    for d in sets:
        sc, sr = probe_pair_scores(probe, d.pairs, emb)
        m = accuracy_metrics(sc, sr, d.len_chosen, d.len_rejected, d.groups, tolerance=tol, seed=seed)
        won = wins(sc, sr)
        vs = {}
        for lab, _ in models:
            rc, rr = scores[(lab, d.label)]
            diff, (lo, hi) = paired_bootstrap_ci(wins(rc, rr), won, d.groups, seed=seed)
            vs[lab] = {"accuracy_minus_probe": diff, "ci95": [lo, hi]}
            results[lab][d.label]["accuracy_minus_probe"] = diff
            results[lab][d.label]["accuracy_minus_probe_ci95"] = [lo, hi]
        shared = sorted({g for g in d.groups if g in train_keys})
        data_info[d.label]["probe_baseline"] = {
            "accuracy": m["pairwise_accuracy"], "ci95": m["ci95"],
            "length_controlled_accuracy": m["length_controlled_accuracy"],
            "length_controlled_ci95": m["length_controlled_ci95"], "length_controlled_n": m["length_controlled_n"],
            "length_matched_accuracy": m["length_matched_accuracy"], "length_matched_ci95": m["length_matched_ci95"],
            "length_matched_n": m["length_matched_n"],
            "chosen_longer_accuracy": m["length_subsets"]["chosen_longer"]["accuracy"],
            "accuracy_minus_length_baseline": m["accuracy_minus_length_baseline"],
            "accuracy_minus_length_baseline_ci95": m["accuracy_minus_length_baseline_ci95"],
            "models": vs, "prompts_shared_with_train": len(shared),
            "l2": probe.l2, "cv_accuracy": probe.to_dict()["cv_accuracy"], "length_weight": probe.length_weight}
        if shared:
            eprint(f"probe: warning: {len(shared)} prompts of {d.label} are also in --probe-train: the probe has seen "
                   f"them (give training pairs only)")
        for i, p in enumerate(d.pairs):
            rows.append({"pair": i, "id": p.id, "prompt_key": d.groups[i], "data": d.label, "s_chosen": float(sc[i]),
                         "s_rejected": float(sr[i]), "len_chosen": len(p.chosen), "len_rejected": len(p.rejected)})
    atomic_write_json(out / "probe.json", probe.to_dict())
    write_jsonl(out / "probe_scores.jsonl", rows)
    del emb
    gc.collect()
    _free_cuda()
    d = probe.to_dict()
    return {"train": train.path, **{f"train_{k}": v for k, v in _file_sha256(train.path).items()},
            "n_train_pairs": probe.n_train_pairs, "n_train_prompts": probe.n_train_prompts,
            "train_rows_rejected": len(train.rejects), "file": "probe.json", "scores": "probe_scores.jsonl",
            **{k: d[k] for k in ("backbone", "pooling", "input_prefix", "max_length", "max_prompt_length", "l2",
                                 "cv_accuracy", "folds", "length_weight", "cv")},
            "model": "score = w . (e - mean) / scale + length_weight * log(characters); logistic regression on "
                     "pair differences, no intercept, L2 chosen by grouped CV (folds by prompt) on the training "
                     "pairs"}


# ------------------------------------------------------------------ run


@holds_output("jprefs eval rm", folder=True)
def run_rm(args: argparse.Namespace) -> int:
    import datetime
    import gc
    import shlex

    from jprefs import __version__
    from jprefs.data.io import atomic_write_json, eprint, write_jsonl
    from jprefs.errors import ConfigError
    from jprefs.eval.metrics import agreement

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.limit < 0:
        raise ConfigError(f"--limit must be >= 0, got {args.limit}")
    if not 0 <= args.length_tolerance < 1:
        raise ConfigError(f"--length-tolerance must be in [0, 1), got {args.length_tolerance}")
    probe_train = getattr(args, "probe_train", None)
    if probe_train and (args.probe_max_length < 16 or args.probe_max_prompt_length < 0):
        raise ConfigError(f"--probe-max-length must be >= 16 and --probe-max-prompt-length >= 0, got "
                          f"{args.probe_max_length}, {args.probe_max_prompt_length}")
    specs = _model_specs(args.model, getattr(args, "revision", None))
    models = [(lab, path) for lab, path, _ in specs]
    revisions = {lab: rev for lab, _, rev in specs}
    datas = _labels(args.data, _data_label)
    # ---- everything that can fail on input fails before any model is loaded
    takes_label = {lab: _check_model(path, revisions[lab]) for lab, path in models}
    sets = [load_eval_data(lab, path, source=args.source, limit=args.limit) for lab, path in datas]
    train = _load_probe_train(probe_train, args.source) if probe_train else None
    for d in sets:
        eprint(f"{d.label}: {len(d.pairs)} pairs from {d.rows_in} rows of {d.path} ({len(d.rejects)} rejected, "
               f"layout {d.layout}{', breakdown by ' + ', '.join(d.keys) if d.keys else ''})")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    tol, seed = args.length_tolerance, args.seed

    scores: dict[tuple[str, str], tuple[Any, Any]] = {}
    model_info: dict[str, dict] = {}
    extra: list[tuple[str, str]] = []            # --all-heads: (NAME:HEAD, path) entries
    for lab, path in models:
        from jprefs.classifiers.reward_model import RewardModel

        if args.label and not takes_label[lab]:
            eprint(f"{lab}: --label ignored (a jprefs reward model or a one-logit classifier has one reward)")
        rm = RewardModel.from_pretrained(path, device=args.device, dtype=args.dtype, revision=revisions[lab],
                                         label=args.label if takes_label[lab] else None)
        eprint(f"{lab}: {rm}" + (f" (revision {revisions[lab]})" if revisions[lab] else ""))
        model_info[lab] = _model_info(rm, path, revisions[lab])
        others = rm.heads[1:] if args.all_heads and not hasattr(rm, "members") else []
        if args.all_heads and hasattr(rm, "components"):      # a reward stack: each of its parts alone, too
            others += [c for c in rm.names if c != "reward"]
        if args.all_heads and not others:
            eprint(f"{lab}: --all-heads: one reward to score (no heads, or an ensemble)")
        for h in others:
            extra.append((f"{lab}:{h}", path))
            model_info[f"{lab}:{h}"] = {**model_info[lab], "head": h}
        if others:
            model_info[lab]["head"] = rm.heads[0]
        for d in sets:
            if others:
                by_head = _score(rm, d, args.batch_size, lab, heads=[rm.heads[0], *others])
                scores[(lab, d.label)] = by_head[rm.heads[0]]
                for h in others:
                    scores[(f"{lab}:{h}", d.label)] = by_head[h]
            else:
                scores[(lab, d.label)] = _score(rm, d, args.batch_size, lab)
        del rm
        gc.collect()
        _free_cuda()

    models = models + extra
    results: dict[str, dict] = {lab: {} for lab, _ in models}
    for (lab, dl), (rc, rr) in scores.items():
        d = next(x for x in sets if x.label == dl)
        results[lab][dl] = _result(rc, rr, d, tolerance=tol, seed=seed)
    data_info = {d.label: _data_summary(d, tol, seed) for d in sets}
    probe_info = None
    if train is not None:
        probe_info = _run_probe(args, train, sets, models, scores, results, data_info, out)
    leaderboard = {d.label: sorted(({"model": lab, **_lb_row(results[lab][d.label])} for lab, _ in models),
                                   key=lambda r: (-r["pairwise_accuracy"], r["model"])) for d in sets}
    agree: dict[str, list] = {}
    if len(models) > 1:
        for d in sets:
            rows = []
            for i, (a, _) in enumerate(models):
                for b, _ in models[i + 1:]:
                    (rca, rra), (rcb, rrb) = scores[(a, d.label)], scores[(b, d.label)]
                    rows.append({"a": a, "b": b, **agreement(rca, rra, rcb, rrb, d.groups, seed=seed)})
            agree[d.label] = rows

    # ---- files
    plots: dict[str, Any] = {}
    if not args.no_plots:
        plots = _plots(out, models, sets, results, scores, data_info, leaderboard, model_info)
        for lab, _ in models:
            for d in sets:
                results[lab][d.label]["plots"] = plots["per"].get((lab, d.label), [])
    command = "jprefs eval rm " + " ".join(shlex.quote(a) for a in _argv_of(args))
    metrics = {
        "command": command, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "jprefs": __version__, "seed": seed, "length_unit": "characters of the response text",
        "length_match_tolerance": tol, "bootstrap": "2000 resamples of prompts (cluster bootstrap), percentile 95%",
        "models": model_info, "data": data_info, "results": results, "leaderboard": leaderboard, "agreement": agree,
    }
    if probe_info is not None:
        metrics["probe"] = probe_info
    atomic_write_json(out / "metrics.json", metrics)
    write_jsonl(out / "scores.jsonl", _score_rows(models, sets, scores))
    rejects = [r for d in sets for r in d.rejects]
    if rejects:
        write_jsonl(out / "rejects.jsonl", rejects)
    elif (out / "rejects.jsonl").exists():
        (out / "rejects.jsonl").unlink()         # a stale file of an earlier run would mislead
    from jprefs.eval.rm_report import build_report

    build_report(metrics, plots).write(out)
    for d in sets:
        base = data_info[d.label]
        pb = base.get("probe_baseline")
        print(f"{d.label} ({base['n_pairs']} pairs, longer wins {base['length_baseline_accuracy']:.3f}"
              + (f", probe {pb['accuracy']:.3f} [{pb['ci95'][0]:.3f}, {pb['ci95'][1]:.3f}]" if pb else "") + "):")
        for row in leaderboard[d.label]:
            lc = row["length_controlled_accuracy"]
            print(f"  {row['model']}: pairwise_accuracy={row['pairwise_accuracy']:.4f} "
                  f"[{row['ci95'][0]:.4f}, {row['ci95'][1]:.4f}]  length_controlled_accuracy="
                  + (f"{lc:.4f}" if lc is not None else "-") + f" (n={row['length_controlled_n']})")
    eprint(f"wrote {out / 'report.md'}, {out / 'report.html'}, {out / 'metrics.json'}, {out / 'scores.jsonl'}"
           + (f"; {len(rejects)} rejected rows in {out / 'rejects.jsonl'}" if rejects else ""))
    return 0


def _argv_of(args) -> list[str]:
    """The options of a programmatic call, spelled as on the command line (for the report)."""
    parts: list[str] = []
    for m in args.model:
        parts += ["--model", m]
    for d in args.data:
        parts += ["--data", d]
    parts += ["-o", str(args.output)]
    for opt in ("revision", "source", "label", "device", "dtype"):
        if getattr(args, opt, None):
            parts += [f"--{opt}", str(getattr(args, opt))]
    for opt, default in (("batch_size", 32), ("limit", 0), ("seed", 0), ("length_tolerance", 0.10)):
        if getattr(args, opt) != default:
            parts += ["--" + opt.replace("_", "-"), str(getattr(args, opt))]
    if args.no_plots:
        parts.append("--no-plots")
    if getattr(args, "all_heads", False):
        parts.append("--all-heads")
    if getattr(args, "probe_train", None):
        parts += ["--probe-train", str(args.probe_train)]
        for opt, default in (("probe_backbone", "e5-small-offline"), ("probe_prefix", "query: "),
                             ("probe_pooling", "mean"), ("probe_max_length", 512), ("probe_max_prompt_length", 128)):
            if getattr(args, opt) != default:
                parts += ["--" + opt.replace("_", "-"), str(getattr(args, opt))]
    return parts


def _free_cuda() -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _lb_row(m: dict) -> dict:
    return {k: m[k] for k in ("n_pairs", "pairwise_accuracy", "ci95", "length_baseline_accuracy",
                              "accuracy_minus_length_baseline", "accuracy_minus_length_baseline_ci95",
                              "shorter_baseline_accuracy", "length_controlled_accuracy", "length_controlled_ci95",
                              "length_controlled_n", "length_matched_accuracy", "length_matched_ci95",
                              "length_matched_n", "pair_ece")} | {"reward_length_spearman":
                                                                  m["reward_length_corr"]["spearman"]} \
        | {k: m[k] for k in ("accuracy_minus_probe", "accuracy_minus_probe_ci95") if k in m}


def _score_rows(models, sets, scores):
    for lab, _ in models:
        for d in sets:
            rc, rr = scores[(lab, d.label)]
            for i, p in enumerate(d.pairs):
                row = {"pair": i, "id": p.id, "prompt_key": d.groups[i], "model": lab, "data": d.label,
                       "r_chosen": float(rc[i]), "r_rejected": float(rr[i]), "len_chosen": len(p.chosen),
                       "len_rejected": len(p.rejected)}
                for k, v in d.keys.items():
                    row[k] = v[i]
                yield row


def _plot_name(label: str, info: dict) -> str:
    """A model in a plot's title: its label, and for a Hub model the id and revision it was read at
    (``ja-rm (me/ja-rm@v1)``), so that a plot alone says which model it is."""
    fp = info.get("fingerprint") or {}
    if not fp.get("hub_id"):
        return label
    at = f"{fp['hub_id']}@{fp.get('revision') or 'main'}"
    return label if label == at else f"{label} ({at})"


def _plots(out: Path, models, sets, results, scores, data_info, leaderboard, model_info=None) -> dict:
    """Write every PNG; returns {"leaderboard": {data: file}, "per": {(model, data): [files]}}."""
    from jprefs.eval.plots import plot_leaderboard, plot_reliability, plot_rewards, plot_reward_vs_length

    made: dict[str, Any] = {"leaderboard": {}, "per": {}}
    for d in sets:
        rows = leaderboard[d.label]
        f = out / f"leaderboard_{_slug(d.label)}.png"
        plot_leaderboard([(r["model"], r["pairwise_accuracy"], r["ci95"]) for r in rows], f,
                         longer_wins=data_info[d.label]["length_baseline_accuracy"],
                         probe=data_info[d.label].get("probe_baseline", {}).get("accuracy"),
                         extra=[("length-controlled (chosen shorter)", [r["length_controlled_accuracy"] for r in rows]),
                                ("length-matched", [r["length_matched_accuracy"] for r in rows])],
                         title=f"{d.label}: {data_info[d.label]['n_pairs']} pairs, "
                               f"{data_info[d.label]['n_prompts']} prompts")
        made["leaderboard"][d.label] = f.name
    for lab, _ in models:
        for d in sets:
            m, (rc, rr) = results[lab][d.label], scores[(lab, d.label)]
            stem = f"{_slug(lab)}__{_slug(d.label)}"
            rel, dist = out / f"{stem}_reliability.png", out / f"{stem}_rewards.png"
            rl = out / f"{stem}_reward_length.png"
            who = _plot_name(lab, (model_info or {}).get(lab, {}))
            n = sum(b["n"] for b in m["reliability"]["bins"])
            plot_reliability(m["reliability"]["bins"], rel, xlabel="confidence of the predicted winner "
                             "(one point per pair)", ylabel="fraction where it is the chosen response",
                             title=f"{who} on {d.label}: ECE {m['pair_ece']:.3f}, n={n}")
            plot_rewards(rc, rr, dist, title=f"{who} on {d.label}: rewards")
            sp = m["reward_length_corr"]["spearman"]
            plot_reward_vs_length(rc, rr, d.len_chosen, d.len_rejected, rl,
                                  title=f"{who} on {d.label}: reward vs length (Spearman "
                                        + (f"{sp:.2f})" if sp == sp else "-)"))
            made["per"][(lab, d.label)] = [rel.name, dist.name, rl.name]
    return made
