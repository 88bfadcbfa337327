"""``jprefs push model DIR --eval REPORT``: a ``jprefs eval rm`` report in the card, if it is of this model.

A report's figures go in the card as this model's, so the report must have evaluated this model.
``jprefs eval rm`` records, per model it scored (``metrics.json`` ``models[LABEL]``), the ``path`` it
was given, what the loaded model said of itself (``objective``, ``input``, ``pooling`` and the
centring constant ``center``) and its ``fingerprint``: the SHA-256 of its weights
(:func:`jprefs.eval.rm.weights_fingerprint`: a reward model's safetensors, an ensemble's members', a
stack's reward model and fitted numbers), and for a Hub id the revision asked for and the commit it
resolved to. :func:`eval_section` accepts the report when one of its models

- has a fingerprint equal to this folder's :func:`~jprefs.eval.rm.weights_fingerprint` now, wherever
  it was (a moved or copied folder, or the Hub copy of this folder, is this model; a folder trained
  again since the evaluation has other weights), and recorded the same objective, input, pooling and
  centring constant as this folder holds now; or, in a report without fingerprints (older than
  them, or of a Hub model that was not in the cache to be read),
- has a ``path`` that is this folder (an absolute path, or a relative one read from the folder the
  evaluation ran in: where its ``-o`` argument leads to the report) and the same recorded facts.

Anything else is refused with a :class:`jprefs.errors.DataError` naming the report's models (and
their weights' digests) and this one, and the command that evaluates this model. Without a
fingerprint the path alone cannot be checked when it is gone (the folder was moved), relative to an
unknown folder, or a Hub id, or when the report is older than these fields: then
``--allow-unverified-eval`` puts the report in the card under a line saying it could not be verified
to be this model's. A report whose model is known to be another (other weights, another folder, or
this folder with other recorded facts) is refused even then. An old report's ensemble and stack
report the settings of their first member / reward model, so for them only the path tells ``--model
ENS/seed-1`` from ``--model ENS``; their fingerprints differ.

The card names the accepted model's fingerprint (its first 12 hex digits) and, for a report of the
Hub copy, the commit that was evaluated.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from pathlib import Path

from jprefs.errors import DataError
from jprefs.eval.rm_report import fingerprint_text

FACTS = ("objective", "input", "pooling", "center")      # what eval rm recorded of each model it loaded


def model_facts(folder: Path, kind: str) -> dict:
    """What ``jprefs eval rm`` records of the model in ``folder`` (``kind``: reward-model | stack |
    ensemble), read from its own files: a reward model's ``jprefs_reward.json``; an ensemble's first
    member's (the ensemble loads as it describes itself); a stack's reward model's, or for a frozen
    stack ``objective: stack`` with its offset as the centre."""
    from jprefs.classifiers.ensemble import ENSEMBLE_NAME
    from jprefs.classifiers.stack import STACK_NAME
    from jprefs.data.io import json_dict_or_empty as read

    if kind == "reward-model":
        spec = read(folder / "jprefs_reward.json")
        return {k: spec.get(k) for k in FACTS if k in spec}
    if kind == "ensemble":
        members = read(folder / ENSEMBLE_NAME).get("members") or []
        return model_facts(folder / str(members[0]), _kind(folder / str(members[0]))) if members else {}
    spec = read(folder / STACK_NAME)
    if spec.get("reward"):
        sub = folder / str(spec["reward"])
        return model_facts(sub, _kind(sub))
    return {"objective": "stack", "input": "pair", "center": spec.get("offset"),
            **({"pooling": spec["embedder"]["pooling"]} if isinstance(spec.get("embedder"), dict)
               and "pooling" in spec["embedder"] else {})}


def _kind(d: Path) -> str:
    from jprefs.classifiers.ensemble import is_ensemble
    from jprefs.classifiers.stack import is_stack

    return "ensemble" if is_ensemble(d) else "stack" if is_stack(d) else "reward-model"


def _ran_in(report: Path, command: str) -> Path | None:
    """The folder ``jprefs eval rm`` ran in: the one from which its ``-o`` argument names ``report``
    (None when that cannot be told)."""
    try:
        toks = shlex.split(command or "")
    except ValueError:
        return None
    out = None
    for i, t in enumerate(toks):
        if t in ("-o", "--output") and i + 1 < len(toks):
            out = toks[i + 1]
        elif t.startswith("--output="):
            out = t.split("=", 1)[1]
    if not out:
        return None
    o = Path(os.path.normpath(out)).expanduser()
    if o.is_absolute():
        return None                                     # the report's folder says nothing of the cwd
    if ".." in o.parts:
        return None
    here = report.resolve().parts
    n = len(o.parts)
    return Path(*here[:-n]) if n < len(here) and here[-n:] == o.parts else None


def _resolved(path: str, ran_in: Path | None) -> Path:
    """A path the report recorded, read from the folder the evaluation ran in (else from here)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (ran_in or Path.cwd()) / p


def _where(path: str, ran_in: Path | None, folder: Path) -> str:
    """``this`` (the recorded path is ``folder``), ``other`` (another folder that is here) or ``unknown``."""
    p = _resolved(path, ran_in)
    try:
        if p.resolve() == folder.resolve():
            return "this"
        return "other" if p.is_dir() else "unknown"
    except OSError:
        return "unknown"


def _recorded_weights(rec: dict) -> str | None:
    """The weights' SHA-256 that ``jprefs eval rm`` recorded of a model (None in older reports, and for a
    Hub model it could not read back from the cache)."""
    fp = rec.get("fingerprint")
    sha = fp.get("weights_sha256") if isinstance(fp, dict) else None
    return sha if isinstance(sha, str) and sha else None


def _weights_now(folder: Path) -> str | None:
    """This folder's weights' SHA-256 now, as ``jprefs eval rm`` computes it (one function, not a copy)."""
    from jprefs.eval.rm import weights_fingerprint

    fp = weights_fingerprint(folder)
    return fp["sha256"] if fp else None


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _differs(rec: dict, facts: dict) -> list[str]:
    """``KEY recorded (this model's: NOW)`` for every fact both sides hold that differs."""
    return [f"{k} {rec[k]!r} (this model's: {facts[k]!r})" for k in FACTS if k in rec and k in facts
            and not _same(rec[k], facts[k])]


def eval_section(report: Path, folder: Path, kind: str, *, allow_unverified: bool = False) -> str:
    """The card section of the ``jprefs eval rm`` output folder ``report`` (its report.md, else its
    metrics.json) for the model in ``folder``, or a DataError when the report is not of that model
    (module doc)."""
    report, folder = Path(report), Path(folder)
    if not (report / "report.md").is_file() and not (report / "metrics.json").is_file():
        raise DataError(f"{report} is not a `jprefs eval rm` output (no report.md or metrics.json)", path=str(report),
                        fix="pass the folder `jprefs eval rm ... -o DIR` wrote")
    from jprefs.publish.model import read_json_file

    metrics = read_json_file(report / "metrics.json") if (report / "metrics.json").is_file() else {}
    models = metrics.get("models") if isinstance(metrics, dict) else None
    models = {str(k): v for k, v in models.items() if isinstance(v, dict)} if isinstance(models, dict) else {}
    facts = model_facts(folder, kind)
    ran_in = _ran_in(report, str(metrics.get("command") or ""))
    now = _weights_now(folder) if any(_recorded_weights(r) for r in models.values()) else None
    mine, maybe, seen, other_weights = [], [], [], []
    for label, rec in models.items():
        where = _where(str(rec["path"]), ran_in, folder) if rec.get("path") else "unknown"
        diff = _differs(rec, facts)
        weights = _recorded_weights(rec)
        exact = weights is not None and now is not None        # the weights decide; the path says nothing more
        incomplete = not rec.get("path") or "center" not in rec or "center" not in facts
        at = {"this": "this folder", "other": "another folder", "unknown": "not found from here, or a Hub id"}[where]
        seen.append(f"{label} ({rec.get('path') or 'no path recorded'}: {at}"
                    + (f", weights SHA-256 {weights[:12]}" if weights else "")
                    + (f", centre {rec['center']:.6g}" if isinstance(rec.get("center"), (int, float)) else "")
                    + (f"; {'; '.join(diff)}" if diff else "") + ")")
        if exact:
            if weights != now:
                other_weights.append(label)
            elif not diff:
                mine.append(label)
            continue                 # other weights, or these weights with other settings: another model
        if diff or where == "other":
            continue                 # known to be another model (or this folder before it was retrained)
        (maybe if incomplete or where == "unknown" else mine).append(label)
    if not models:                                     # an older report (or another tool's): nothing to check
        maybe.append("(no model recorded)")
    what = f"the {kind.replace('-', ' ')} {folder}" + (f" (centre {facts['center']:.6g})"
                                                        if isinstance(facts.get("center"), (int, float)) else "")
    if now is not None:
        what += f", weights SHA-256 {now[:12]}"
    # the report's data files, as this shell reaches them (as recorded when where it ran is not known)
    data = [str(_resolved(str(d.get("path") or name), ran_in) if ran_in else d.get("path") or name)
            for name, d in (metrics.get("data") or {}).items()
            if isinstance(d, dict)] if isinstance(metrics.get("data"), dict) else []
    fix = (f"evaluate this model and pass that report: jprefs eval rm --model {folder} --data "
           f"{' --data '.join(data) if data else 'PAIRS'} -o NEW_DIR, then --eval NEW_DIR")
    said, warnings = "", []                 # a line after "From `DIR`.", and blockquotes of their own
    if mine:
        labels = ", ".join(f"`{x}`" for x in mine)
        said = f" This model is {labels} in the report" + (" (the other models are there for comparison)"
                                                           if len(models) > len(mine) else "") + "."
        ids = {t for x in mine if (t := fingerprint_text(models[x].get("fingerprint")))}
        if ids:              # the heads of one model (--all-heads) share one fingerprint
            said += f" Evaluated: {'; '.join(sorted(ids))}."
    elif maybe and allow_unverified:
        warnings.append("> **Not verified to be this model's report** (`--allow-unverified-eval`): the report "
                        "names its model by a path that is not this folder here (moved since, or a Hub id), or "
                        "records nothing that identifies it. Treat these figures with care."
                        + "".join(f" `{x}`: {t}." for x in maybe if x in models
                                  and (t := fingerprint_text(models[x].get("fingerprint")))))
    else:
        told = "; ".join(seen) if seen else "no models (an older report, or not one of `jprefs eval rm`)"
        refused = (f"this --eval report is not shown to be of the model being pushed, and its figures would appear "
                   f"on the card as this model's. It evaluated: {told}. This push is {what}")
        if other_weights:
            who = "the report" if len(models) == 1 else ", ".join(other_weights)
            refused += (f". The weights {who} scored are not this model's (their SHA-256 differ): this folder was "
                        f"trained again, or its weights changed, since that evaluation, or the report is of "
                        f"another model")
        if maybe:
            fix += ("; or, if the report is of this very model (the folder was moved since, or it scored the "
                    "model's Hub copy), pass --allow-unverified-eval (the card then says it is unverified)")
        raise DataError(refused, path=str(report), fix=fix)
    trained = _training_files(folder)
    on_train = []
    for name, d in ((metrics.get("data") or {}).items() if isinstance(metrics.get("data"), dict) else []):
        if not isinstance(d, dict):
            continue
        sha = d.get("sha256") if isinstance(d.get("sha256"), str) else None     # recorded: the rows scored
        p = _resolved(str(d.get("path")), ran_in) if d.get("path") else None
        if sha is None and p is not None and p.is_file():                        # an older report: the file now
            from jprefs.data.io import file_sha256

            sha = file_sha256(p)
        role = trained.get(sha) if sha else None
        if role:
            on_train.append(f"`{name}` is its {role}")
    if on_train:
        warnings.append(f"> **These figures include the model's own training rows** ({'; '.join(on_train)}): they "
                        f"overstate accuracy on new data. Evaluate on held-out rows (train-rm's `eval_split.jsonl`, "
                        f"`test_data`) for a figure to rely on.")
    if (report / "report.md").is_file():
        body = _demote((report / "report.md").read_text(encoding="utf-8"))
    else:
        body = "```json\n" + json.dumps(metrics, indent=1, ensure_ascii=False)[:4000] + "\n```"
    src = f"From `{report.name}`" + ("" if (report / "report.md").is_file() else " (metrics.json)")
    return _no_local_paths("\n\n".join([f"{src}.{said}", *warnings, body]) + "\n")


def _training_files(folder: Path) -> dict[str, str]:
    """``{sha256: "training file NAME (ROLE)"}`` of the files the models in ``folder`` trained on, as each
    run recorded them in its ``done.json`` (a stack's or ensemble's members too)."""
    out: dict[str, str] = {}
    from jprefs.data.io import json_dict_or_empty

    for done in sorted(Path(folder).rglob("done.json")):
        files = json_dict_or_empty(done).get("data_files") or {}
        for role, fp in files.items() if isinstance(files, dict) else []:
            if (role == "data" or role.startswith("extra_data")) and isinstance(fp, dict) and fp.get("sha256"):
                out.setdefault(str(fp["sha256"]), f"training file {fp.get('file', '?')} ({role})")
    return out


def _demote(md: str) -> str:
    """Markdown headings one level down (a report's # title becomes ###), images left out."""
    out = []
    for line in md.splitlines():
        if line.startswith("#"):
            line = "##" + line
        if line.lstrip().startswith("!["):
            continue
        out.append(line)
    return "\n".join(out)


# an absolute, ~ or ../ path of this machine (not part of a URL, a word or a fraction like 1/2)
_LOCAL = re.compile(r"(?<![\w:/.~\-])(?:~|\.\.)?/(?:[\w.\-]+/)*[\w.\-]+")


def _no_local_paths(text: str) -> str:
    """``text`` with every local path cut to its last part: a report names the files and folders it read
    and wrote (its command, its model and data paths), and a public card names no local path."""
    return _LOCAL.sub(lambda m: Path(m.group(0)).name, text)
