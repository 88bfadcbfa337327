"""Crash-safe checkpoints and resume for ``jprefs rl`` runs.

Every ``save_every`` steps a run writes ``OUT/checkpoint-N/``: ``policy/`` (merged
safetensors + tokenizer, for use) and ``resume/`` (everything needed to continue):
``model.safetensors`` (the trained module's state, LoRA adapter included),
``heads.safetensors`` (value head / ILQL heads), ``reference.safetensors`` (PPO's
frozen reference when it is a copy), ``train_state.safetensors`` + ``train_state.json``
(optimizer, scheduler, RNG states of python/numpy/torch and the loop's own generators:
every tensor in the safetensors file, everything else as JSON that points at them; no
pickle, see :func:`pack_state`) and ``state.json`` (format, step, resolved config, the
line counts of ``metrics.jsonl`` / ``samples.jsonl``, small loop state such as the PPO
KL coefficient). The folder is written as
``.checkpoint-N.tmp`` and renamed into place, so a ``checkpoint-N/resume`` that
exists is complete. Older checkpoints keep ``policy/`` but lose ``resume/``.

Runs of trl's trainers (``algo: dpo | kto | grpo | rloo``, :mod:`jprefs.rl.trl_algos`) keep
transformers Trainer checkpoints in ``checkpoint-N/`` instead, with the same
``resume/state.json`` (``"trainer": "trl"``) written after the Trainer's files, so the same
resumable-checkpoint search, config check and log truncation apply; the Trainer restores
the rest (``resume_from_checkpoint``).

Rerunning the same command resumes from the newest complete checkpoint
(:meth:`RunWriter.__init__` finds it); a changed config is refused. A checkpoint of an
older jprefs (``resume/state.pt``, a pickle) is refused with what to do rather than
unpickled: unpickling runs whatever code the file names.

A run that reached its end writes ``OUT/done.json`` last (step, resolved config, time;
atomically). Rerunning a finished run with the same config then changes nothing and
says so; with another config it is refused like a checkpoint of another config.

Example::

    ck = writer.checkpoint                     # None on a fresh run
    if ck: step0 = restore(ck, model=model, opt=opt)
    ...
    save_checkpoint(writer, step, model=model, tok=tok, opt=opt)
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

from jprefs.config import config_dict, refuse_config_change

# Keys that do not change what a run computes: a resume may change them.
COSMETIC_KEYS = ("resume", "save_every", "torch_threads", "report_to")
# The completion marker, written after every other output of a finished run.
DONE = "done.json"
# state.json "format" of checkpoints whose loop state is safetensors + JSON (before: state.pt, a pickle).
FORMAT = 2


def checkpoint_dirs(out: Path) -> list[tuple[int, Path]]:
    """``(step, dir)`` of every complete resumable checkpoint under ``out``, oldest first."""
    found = []
    for d in Path(out).glob("checkpoint-*"):
        tail = d.name.split("-", 1)[1]
        if tail.isdigit() and (d / "resume" / "state.json").is_file():
            found.append((int(tail), d))
    return sorted(found)


INPUT_KEYS = ("sft_data", "data", "prompts", "eval_prompts")


def run_inputs(cfg, world: int = 1) -> dict:
    """What a run read besides its config: each input file's content hash (by role, file names only) and
    the number of processes (the batch is per process). The same config over a changed file, or resumed
    under another world size, is not the same run: a resume would mix the two, and a tiny policy's
    tokenizer, rebuilt from changed sft_data, would give the restored weights other characters."""
    from jprefs.data.io import file_sha256
    from jprefs.rl.texts import expand_paths

    files = {}
    for key in INPUT_KEYS:
        spec = str(getattr(cfg, key, "") or "")
        if not spec or spec.startswith("builtin:"):
            continue                            # shipped with jprefs: fixed by its version
        try:
            paths = [p for p in expand_paths(spec) if p.is_file()]
        except Exception:                       # noqa: BLE001 - missing now: the run's own check says so
            continue
        files[key] = [{"file": p.name, "sha256": file_sha256(p)} for p in paths]
    return {"world": int(world), "files": files}


def _refuse_inputs_change(saved: dict | None, cfg, world: int, holds: str, fix: str) -> None:
    """An error when the run in ``saved`` read other input files or ran on another number of processes."""
    from jprefs.errors import JprefsError

    if not isinstance(saved, dict):          # written before inputs were recorded
        return
    now = run_inputs(cfg, world)
    if saved.get("world", now["world"]) != now["world"]:
        raise JprefsError(f"{holds} on {saved['world']} process(es); this one has {now['world']}, and the batch "
                          f"(and the data order) is per process\n  fix: run it on {saved['world']} process(es), "
                          f"or {fix}")
    for key, digests in now["files"].items():
        old = (saved.get("files") or {}).get(key)
        if old is not None and old != digests:
            raise JprefsError(f"{holds} read another version of {key} ({', '.join(d['file'] for d in digests)}): "
                              f"the same config over changed data is not the same run\n  fix: restore the file, "
                              f"or {fix}")


def find_resumable(out: Path, cfg, world: int = 1) -> dict | None:
    """The newest checkpoint's ``state.json`` (plus ``dir``), or None; raises when the config differs."""
    from jprefs.errors import JprefsError

    found = checkpoint_dirs(out)
    if not found:
        return None
    step, d = found[-1]
    state = json.loads((d / "resume" / "state.json").read_text(encoding="utf-8"))
    if state.get("format") != FORMAT:
        old = (d / "resume" / "state.pt").is_file()
        raise JprefsError(
            f"{d} was written by " + ("an older jprefs: its optimizer and RNG state are a pickle "
                                      "(resume/state.pt), which this version does not load (unpickling a file "
                                      "runs whatever code it names)" if old else
                                      f"another jprefs version (checkpoint format {state.get('format')!r}, "
                                      f"expected {FORMAT})") + ".\n"
            f"  fix: add resume=false to start over in {out}, or continue from its weights in a new run: "
            f"policy={d / 'policy'} -o NEW_DIR (optimizer state and data order then start afresh)")
    refuse_config_change(state["config"], cfg, COSMETIC_KEYS, error=JprefsError,
                         holds=f"{out} holds a checkpoint (step {step}) of a run",
                         fix=f"write to a new folder (-o NEW_DIR), restore the old values to resume, or add "
                             f"resume=false to start over in {out} (its checkpoints are deleted)")
    _refuse_inputs_change(state.get("inputs"), cfg, world, holds=f"{out} holds a checkpoint (step {step}) of a run",
                          fix=f"write to a new folder (-o NEW_DIR), or add resume=false to start over in {out}")
    state["dir"] = str(d)
    return state


def find_finished(out: Path, cfg, world: int = 1) -> dict | None:
    """``done.json`` of a finished run in ``out`` (plus ``summary``, read from ``summary.json``),
    or None when the run has not finished; raises when it was run with another config."""
    from jprefs.errors import JprefsError

    path = Path(out) / DONE
    if not path.is_file():
        return None
    try:
        done = json.loads(path.read_text(encoding="utf-8"))
        step, saved = int(done["step"]), done["config"]
    except (ValueError, KeyError, TypeError) as e:
        raise JprefsError(f"{path} is not a completion marker written by jprefs rl ({e}).\n"
                          f"  fix: delete it to resume or redo the run, or add resume=false to start over") from e
    refuse_config_change(saved, cfg, COSMETIC_KEYS, error=JprefsError,
                         holds=f"{out} holds a finished run (step {step})",
                         consequence="; it cannot be continued with these settings",
                         fix=f"write to a new folder (-o NEW_DIR), or add resume=false to start over in {out} "
                             f"(its outputs are replaced)")
    _refuse_inputs_change(done.get("inputs"), cfg, world, holds=f"{out} holds a finished run (step {step})",
                          fix=f"write to a new folder (-o NEW_DIR), or add resume=false to start over in {out}")
    summary_path = Path(out) / "summary.json"
    done["summary"] = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
    return done


def write_done(writer, step: int) -> Path:
    """Write ``OUT/done.json`` atomically: the last file a finished run writes."""
    import datetime

    from jprefs.data.io import atomic_write_json

    return atomic_write_json(writer.out / DONE, {
        "step": step, "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "metrics_lines": writer.n_metrics, "samples_lines": writer.n_samples, "config": config_dict(writer.cfg),
        "inputs": run_inputs(writer.cfg, writer.world)})


def _rng_state() -> dict:
    import numpy as np
    import torch

    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    import numpy as np
    import torch

    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


# ---------------------------------------------------------------- loop state without pickle

def pack_state(obj, tensors: dict) -> object:
    """``obj`` (dicts, lists, tuples, tensors, numpy arrays and scalars, str/int/float/bool/None)
    as JSON: every tensor goes into ``tensors`` (for a safetensors file) and is replaced by
    ``{"__tensor__": key}``; tuples, numpy arrays and dicts with non-string keys are tagged so
    that :func:`unpack_state` gives back the same types (``random.setstate`` needs tuples, an
    optimizer's state has int keys). Python ints of any size (a PCG64 state) and floats
    (``repr`` in JSON) come back exactly, so a resumed run stays bit-identical.

    >>> t = {}
    >>> pack_state({"step": 3, "betas": (0.9, 0.95)}, t)
    {'step': 3, 'betas': {'__tuple__': [0.9, 0.95]}}
    """
    import numpy as np
    import torch

    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        t = obj.detach().cpu().contiguous()
        if any(t.data_ptr() == u.data_ptr() for u in tensors.values() if t.numel() and u.numel()):
            t = t.clone()                                        # safetensors refuses shared memory
        tensors[key] = t
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return {"__tuple__": [pack_state(x, tensors) for x in obj]}
    if isinstance(obj, list):
        return [pack_state(x, tensors) for x in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: pack_state(v, tensors) for k, v in obj.items()}
        return {"__dict__": [[pack_state(k, tensors), pack_state(v, tensors)] for k, v in obj.items()]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"checkpoint state: cannot store a {type(obj).__name__} without pickle; convert it to "
                    f"tensors, numbers, strings, lists or dicts first")


def unpack_state(obj, tensors: dict):
    """The inverse of :func:`pack_state`.

    >>> unpack_state({"__tuple__": [1, {"__dict__": [[0, "a"]]}]}, {})
    (1, {0: 'a'})
    """
    if isinstance(obj, list):
        return [unpack_state(x, tensors) for x in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(unpack_state(x, tensors) for x in obj["__tuple__"])
        if "__ndarray__" in obj:
            import numpy as np

            return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
        if "__dict__" in obj:
            return {unpack_state(k, tensors): unpack_state(v, tensors) for k, v in obj["__dict__"]}
        return {k: unpack_state(v, tensors) for k, v in obj.items()}
    return obj


def save_checkpoint(writer, step: int, *, model, tok, opt, sched=None, heads=None, heads_name: str = "",
                    ref=None, extra: dict | None = None, objects: dict | None = None) -> Path:
    """Write ``OUT/checkpoint-STEP`` atomically. ``extra``: JSON loop state (KL coef, losses);
    ``objects``: loop state that :func:`pack_state` can store (numpy generator states, data
    order) saved in ``train_state.*``.
    In a data-parallel run only the main process writes (every process holds the same state)."""
    from safetensors.torch import save_file, save_model

    from jprefs.data.io import atomic_write_json

    out = writer.out
    if not writer.write:
        return out / f"checkpoint-{step}"
    final = out / f"checkpoint-{step}"
    tmp = out / f".checkpoint-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    writer.save_policy(model, tok, f"{tmp.name}/policy")
    if heads is not None and heads_name:
        writer.save_heads(heads, f"{tmp.name}/{heads_name}")
    r = tmp / "resume"
    r.mkdir()
    save_model(model, str(r / "model.safetensors"))       # save_model copes with tied embeddings
    if heads is not None:
        save_model(heads, str(r / "heads.safetensors"))
    if ref is not None:
        save_model(ref, str(r / "reference.safetensors"))
    # Optimizer, scheduler, RNG states, loop objects: tensors in safetensors, the rest JSON (no pickle).
    tensors: dict = {}
    tree = pack_state({"optimizer": opt.state_dict(), "scheduler": sched.state_dict() if sched is not None else None,
                       "rng": _rng_state(), "objects": objects or {}}, tensors)
    save_file(tensors, str(r / "train_state.safetensors"))
    atomic_write_json(r / "train_state.json", tree)
    state = {"format": FORMAT, "step": step, "metrics_lines": writer.n_metrics, "samples_lines": writer.n_samples,
             "config": config_dict(writer.cfg), "extra": extra or {}, "inputs": run_inputs(writer.cfg, writer.world)}
    # state.json last (written and fsynced): a resume/ folder without it is never used.
    atomic_write_json(r / "state.json", state)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    # Only the newest checkpoint stays resumable (the optimizer state doubles the size).
    for s, d in checkpoint_dirs(out):
        if s != step:
            shutil.rmtree(d / "resume", ignore_errors=True)
    return final


def restore(state: dict, *, model, opt, sched=None, heads=None, ref=None) -> dict:
    """Load a checkpoint found by :func:`find_resumable` into the given objects (in place) and
    return its loop objects plus ``step`` and ``extra``. Nothing is unpickled."""
    from safetensors.torch import load_file, load_model

    r = Path(state["dir"]) / "resume"
    device = next(model.parameters()).device
    load_model(model, str(r / "model.safetensors"), device=str(device))
    if heads is not None:
        load_model(heads, str(r / "heads.safetensors"), device=str(device))
    if ref is not None:
        load_model(ref, str(r / "reference.safetensors"), device=str(device))
    tree = json.loads((r / "train_state.json").read_text(encoding="utf-8"))
    blob = unpack_state(tree, load_file(str(r / "train_state.safetensors")))    # cpu; opt moves state to params
    opt.load_state_dict(blob["optimizer"])
    if sched is not None and blob["scheduler"] is not None:
        sched.load_state_dict(blob["scheduler"])
    _set_rng_state(blob["rng"])
    return {"step": state["step"], "extra": state.get("extra", {}), **blob["objects"]}
