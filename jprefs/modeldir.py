"""What a local folder is, checked before a model loader sees it.

``RewardModel.from_pretrained`` / ``jprefs score`` / the rl reward loaders (``want="reward
model"``) and the rl policy loader (``want="policy"``) call :func:`check_model_dir` on a local
folder. A finished model passes; anything else raises a :class:`JprefsError` that says what
the folder is and what to do, instead of a transformers traceback:

- a ``jprefs train-rm`` output whose run did not finish (``config.yaml``, no ``done.json``):
  its last checkpoint and the command that resumes it; a run still writing it: its pid;
- a train-rm checkpoint (``OUT/checkpoint``), an rl run folder or one of its checkpoints
  (the ``policy/`` to use), a ``jprefs translate`` output (data, not a model), a reward
  model given as a policy or a causal LM given as a reward model;
- a folder without ``config.json`` + ``model.safetensors`` (what it holds instead), one with
  only ``pytorch_model.bin`` (a pickle: how to convert it), and a truncated or corrupt
  safetensors file (:func:`check_safetensors`: its header must cover the file exactly).

Light: json, yaml and the file system only.

>>> check_model_dir("out/rm")                     # doctest: +SKIP
>>> check_model_dir("runs/ppo", want="policy")    # doctest: +SKIP
Traceback (most recent call last):
jprefs.errors.JprefsError: runs/ppo is a `jprefs rl` run folder (algo ppo), not a model; its policy is runs/ppo/policy ...
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from jprefs.errors import JprefsError

REWARD_CONFIG = "jprefs_reward.json"
DONE = "done.json"
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
CAUSAL_LM = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


def check_safetensors(path: str | os.PathLike) -> None:
    """Raise when ``path`` is not a whole safetensors file: an 8-byte header length, a JSON
    header, and tensor data that ends exactly at the end of the file (what a killed
    ``save_pretrained`` breaks). Reads only the header.

    >>> check_safetensors("out/rm/model.safetensors")   # doctest: +SKIP
    """
    p = Path(path)
    size = p.stat().st_size

    def bad(why: str):
        return JprefsError(f"{p} is truncated or corrupt ({size} bytes; {why}): the write that made it did not "
                           f"finish, or the file was damaged.\n  fix: re-save or retrain the model; if a train-rm "
                           f"or rl run was killed while saving it, rerun the same command")

    with open(p, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise bad("shorter than a safetensors header")
        n = int.from_bytes(head, "little")
        if n > size - 8:
            raise bad(f"its header says it is {n} bytes long")
        try:
            meta = json.loads(f.read(n))
            end = max((int(v["data_offsets"][1]) for k, v in meta.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
            raise bad(f"its header is not valid: {e}") from None
    if 8 + n + end != size:
        raise bad(f"its header describes {8 + n + end} bytes")


def _yaml(path: Path) -> dict:
    try:
        import yaml

        d = yaml.safe_load(path.read_text(encoding="utf-8"))
        return d if isinstance(d, dict) else {}
    except Exception:            # unreadable or not YAML: not a jprefs config
        return {}


def _stage(cfg: dict) -> str:
    """Which jprefs command wrote a resolved ``config.yaml``."""
    if "algo" in cfg:
        return "rl"
    if "backbone" in cfg and "objective" in cfg:
        return "train-rm"
    if "engine" in cfg and "template" in cfg:
        return "translate"
    return ""


def _live_writer(d: Path) -> dict | None:
    from jprefs.runlock import LOCK_NAME, _holder_alive, read_holder

    h = read_holder(d / LOCK_NAME)
    return h if h and _holder_alive(h) else None


def _rl_checkpoints(d: Path) -> list[tuple[int, Path]]:
    found = []
    for c in d.glob("checkpoint-*"):
        tail = c.name.split("-", 1)[1]
        if tail.isdigit() and (c / "policy" / "config.json").is_file():
            found.append((int(tail), c))
    return sorted(found)


def _listing(d: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in d.iterdir() if p.name != ".jprefs.lock")
    if not names:
        return "it is empty"
    return "it holds " + ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")


def _composite_members(d: Path) -> list[str] | None:
    """The model sub-folders of a train-rm seed ensemble (``jprefs_ensemble.json``) or reward stack
    (``jprefs_stack.json``), None for any other folder; an unreadable file gives ``[]`` (its loader
    then says what is wrong with it)."""
    for name, key in (("jprefs_ensemble.json", "members"), ("jprefs_stack.json", "reward")):
        f = d / name
        if f.is_file():
            try:
                v = json.loads(f.read_text(encoding="utf-8")).get(key) or ("reward" if key == "reward" else [])
            except (OSError, ValueError, AttributeError):
                return []
            subs = [v] if isinstance(v, str) else v if isinstance(v, list) else []
            # only plain sub-folder names: the loaders refuse anything else with their own message
            return [x for x in subs if isinstance(x, str) and x and Path(x).name == x and x not in (".", "..")]
    return None


def check_model_dir(path: str | os.PathLike, *, want: str = "reward model") -> None:
    """Raise a :class:`JprefsError` unless the local folder ``path`` holds a finished model
    (see the module docstring); ``want``: ``"reward model"`` or ``"policy"``."""
    d = Path(path)
    if not d.is_dir():
        if d.is_file():
            raise JprefsError(f"{d} is a file; a {want} is loaded from the folder that holds config.json and "
                              f"model.safetensors.\n  fix: pass {d.parent}")
        return
    subs = _composite_members(d) if want != "policy" else None
    if subs is not None:        # a seed ensemble or a reward stack: the model folders inside it
        for sub in subs:
            check_model_dir(d / sub, want=want)
        return
    cfg_yaml = _yaml(d / "config.yaml") if (d / "config.yaml").is_file() else {}
    stage = _stage(cfg_yaml)
    writer = _live_writer(d)

    # ---- folders of a jprefs run
    if stage == "train-rm":
        _check_train_rm(d, writer, want)
    elif (d / "progress.json").is_file() and (d / "optimizer.bin").is_file():
        epochs = _progress(d)
        raise JprefsError(f"{d} is a train-rm checkpoint{epochs}, not a model: it has no tokenizer or reward "
                          f"config.\n  fix: rerun the `jprefs train-rm ... -o {d.parent}` command of that run to "
                          f"finish it (it resumes from here), then load {d.parent}")
    elif stage == "rl" or (d / "metrics.jsonl").is_file() and _rl_checkpoints(d):
        _check_rl_run(d, cfg_yaml, writer, want)
    elif d.name.startswith("checkpoint-") and ((d / "policy").is_dir() or (d / "resume").is_dir()):
        pol = d / "policy"
        raise JprefsError(f"{d} is a checkpoint of a `jprefs rl` run, not a model folder; its policy is {pol}"
                          + (" (a causal LM, not a reward model)" if want != "policy" else "")
                          + f".\n  fix: pass {pol}" + ("" if want == "policy" else
                                                       "; a reward model comes from `jprefs train-rm`"))
    elif stage == "translate" or ((d / "pairs.jsonl").is_file() and (d / "cache").is_dir()):
        raise JprefsError(f"{d} is a `jprefs translate` output (preference data), not a model.\n"
                          f"  fix: train a reward model on it: jprefs train-rm --data {d / 'pairs.jsonl'} -o RM_DIR, "
                          f"then pass RM_DIR")

    # ---- a model folder: config.json + safetensors weights, of the right kind
    if not (d / "config.json").is_file():
        inner = sorted(p for p in d.iterdir() if (p / "config.json").is_file())
        fix = (f"pass {' or '.join(str(p) for p in inner[:3])}, which has config.json" if inner else
               "pass the folder a `jprefs train-rm -o DIR` (reward model) or `jprefs rl -o DIR` (DIR/policy) run "
               "wrote, or a save_pretrained folder")
        raise JprefsError(f"{d} is not a jprefs model folder: expected config.json + model.safetensors; "
                          f"{_listing(d)}.\n  fix: {fix}")
    shards = _weights(d, want)
    if want == "policy" and (d / REWARD_CONFIG).is_file():
        raise JprefsError(f"{d} is a jprefs reward model, not a policy (a causal LM).\n  fix: use it as the reward: "
                          f"reward_type=rm reward_model={d}; for policy= give a causal LM folder or Hub id")
    if want != "policy" and not (d / REWARD_CONFIG).is_file():
        arch = _architectures(d)
        if arch and all(a.endswith(CAUSAL_LM) for a in arch):
            raise JprefsError(f"{d} holds a causal LM ({', '.join(arch)}), not a sequence classifier: as a {want} "
                              f"it would score with an untrained head.\n  fix: pass a `jprefs train-rm` output or a "
                              f"sequence-classification model")
    for p in shards:
        check_safetensors(p)


def _epochs(ckpt: Path) -> str:
    """'epoch 1 of 2' from a train-rm checkpoint's progress.json ('' when unreadable)."""
    try:
        prog = json.loads((ckpt / "progress.json").read_text(encoding="utf-8"))
        total = prog.get("config", {}).get("epochs")
        return f"epoch {prog['epochs_done']}" + (f" of {total}" if total else "")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ""


def _progress(ckpt: Path) -> str:
    e = _epochs(ckpt)
    return f" (after {e})" if e else ""


def _check_train_rm(d: Path, writer: dict | None, want: str) -> None:
    if want == "policy":
        raise JprefsError(f"{d} is a `jprefs train-rm` output (a reward model), not a policy.\n  fix: use it as the "
                          f"reward: reward_type=rm reward_model={d}; for policy= give a causal LM folder or Hub id")
    if (d / DONE).is_file():
        return
    if writer is not None:
        raise JprefsError(f"{d} is being written by a `jprefs train-rm` run (pid {writer['pid']}, started "
                          f"{str(writer.get('started', ''))[:19].replace('T', ' ')}): its model is not there "
                          f"yet.\n  fix: wait for that run to finish, then load {d}")
    metrics, cfg = d / "metrics.json", d / "config.yaml"
    if metrics.is_file() and (d / "config.json").is_file() and metrics.stat().st_mtime >= cfg.stat().st_mtime:
        return      # saved by the run that wrote config.yaml, killed before done.json (or an older jprefs)
    ckpt = d / "checkpoint"
    resumable = (ckpt / "progress.json").is_file()
    where = f"last checkpoint: {_epochs(ckpt) or ckpt.name}" if resumable else "killed before its first checkpoint"
    raise JprefsError(f"{d}: this train-rm run did not finish ({where}), so there is no model to load yet.\n"
                      f"  fix: rerun the same `jprefs train-rm ... -o {d}` command to "
                      + ("resume it" if resumable else "train it") +
                      f"; its resolved config gives that command: jprefs train-rm {cfg} -o {d}")


def _check_rl_run(d: Path, cfg: dict, writer: dict | None, want: str) -> None:
    algo = f" (algo {cfg['algo']})" if cfg.get("algo") else ""
    pol = d / "policy"
    finished = (d / DONE).is_file() and (pol / "config.json").is_file()
    cks = _rl_checkpoints(d)
    if want != "policy":
        raise JprefsError(f"{d} is a `jprefs rl` run folder{algo}, not a reward model"
                          + (f"; its policy (a causal LM) is {pol}" if finished else "") +
                          ".\n  fix: pass a `jprefs train-rm` output (or a sequence classifier) as the reward model")
    if finished and writer is None:
        raise JprefsError(f"{d} is a `jprefs rl` run folder{algo}; its policy is {pol}.\n  fix: pass {pol}")
    state = (f"is being written by a `jprefs rl` run (pid {writer['pid']})" if writer is not None else
             "is a `jprefs rl` run that did not finish")
    fix = "wait for it to finish, or" if writer is not None else f"rerun the same `jprefs rl ... -o {d}` command to resume it, or"
    raise JprefsError(f"{d} {state}{algo}: it has no final policy yet.\n  fix: {fix} "
                      + (f"use its latest checkpoint's policy: {cks[-1][1] / 'policy'}" if cks else
                         "use another policy (it kept no checkpoint)"))


def _weights(d: Path, want: str) -> list[Path]:
    """The safetensors files of a model folder; raises for none (and for a .bin-only folder)."""
    if (d / WEIGHTS).is_file():
        return [d / WEIGHTS]
    if (d / INDEX).is_file():
        try:
            files = sorted(set(json.loads((d / INDEX).read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise JprefsError(f"{d / INDEX} is not a valid safetensors index ({e}).\n  fix: re-save the model") from e
        missing = [f for f in files if not (d / f).is_file()]
        if missing:
            raise JprefsError(f"{d} is missing {len(missing)} of the {len(files)} weight files its {INDEX} lists "
                              f"({', '.join(missing[:3])}).\n  fix: copy or download the whole folder, or re-save it")
        return [d / f for f in files]
    bins = sorted(p.name for p in d.glob("pytorch_model*.bin"))
    if bins:
        cls = "AutoModelForCausalLM" if want == "policy" else "AutoModelForSequenceClassification"
        raise JprefsError(
            f"{d} has {bins[0]} but no {WEIGHTS}: jprefs loads safetensors only (a .bin file is a pickle, "
            f"and loading a pickle can run code).\n  fix: if you trust the file, convert it once: python -c "
            f"\"from transformers import {cls} as M; M.from_pretrained('{d}').save_pretrained('{d}')\" "
            f"(writes {WEIGHTS}; then delete {bins[0]})")
    raise JprefsError(f"{d} has config.json but no {WEIGHTS}: {_listing(d)}.\n  fix: re-save the model "
                      f"(save_pretrained); if a run was killed while saving it, rerun the same command")


def config_num_labels(path: str | os.PathLike) -> int | None:
    """``num_labels`` of a Hugging Face classifier folder, read from its ``config.json`` (the size of
    ``id2label``, which transformers always saves, else ``num_labels``); None when unknown."""
    try:
        cfg = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict):
        return None
    if isinstance(cfg.get("id2label"), dict):
        return len(cfg["id2label"])
    n = cfg.get("num_labels")
    return int(n) if isinstance(n, int) else None


def _architectures(d: Path) -> list[str]:
    try:
        arch = json.loads((d / "config.json").read_text(encoding="utf-8")).get("architectures") or []
        return [str(a) for a in arch]
    except (OSError, ValueError, AttributeError):
        return []
