"""The files every ``jprefs rl`` run writes: config, metrics, samples, curves, policy, heads.

:class:`RunWriter` writes ``metrics.jsonl``, samples, the curve PNG and checkpoints, and
finds the checkpoint a rerun resumes from (see :mod:`jprefs.rl.checkpoint`).

Example::

    writer = RunWriter("runs/ppo", cfg)
    writer.log(1, {"objective/score": 0.5})
    writer.finish(1)
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Sequence


def _truncate_lines(path: Path, n: int) -> int:
    """Keep the first ``n`` lines of ``path`` (atomically); return how many there are."""
    from jprefs.data.io import atomic_write_text

    lines = path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []
    if len(lines) < n:
        from jprefs.errors import JprefsError

        raise JprefsError(f"{path} has {len(lines)} lines but the checkpoint needs {n}; the run folder was "
                          "edited. fix: add resume=false to start over, or use a new -o folder")
    atomic_write_text(path, "".join(lines[:n]))
    return n



def _names_a_path_in(cfg, folder: Path) -> bool:
    """Some string setting of ``cfg`` points at ``folder`` or inside it."""
    import dataclasses

    if cfg is None or not dataclasses.is_dataclass(cfg):
        return False
    root = folder.resolve()
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, str) and v and not v.startswith("builtin:"):
            try:
                p = Path(v).expanduser().resolve()
            except (OSError, ValueError):
                continue
            if p == root or root in p.parents:
                return True
    return False


class RunWriter:
    """The files every run writes under ``out``: config, metrics, samples, curves, policy, heads.

    ``dist`` (a :class:`jprefs.rl.dist.Dist`): in a data-parallel run every process opens the
    run (finds the checkpoint to resume from, or the completion marker), but only the main
    process writes; on the others every writing method does nothing.

    ``finished``: set when ``out`` holds a finished run of the same config (``done.json``);
    the writer then touches nothing and the caller returns ``finished["summary"]``.
    """

    def __init__(self, out: str | os.PathLike, cfg=None, dist=None):
        from jprefs.config import save_config
        from jprefs.data.io import eprint

        self.out = Path(out)
        self.write = dist is None or dist.is_main
        if getattr(cfg, "report_to", ""):
            from jprefs.trackers import check_installed

            check_installed(cfg.report_to)      # a missing tracker package stops the run before it writes
        self.metrics_path = self.out / "metrics.jsonl"
        self.samples_path = self.out / "samples.jsonl"
        self.history: list[dict] = []
        self._t0 = time.time()
        self.cfg = cfg
        self.n_metrics = self.n_samples = 0
        self.trackers = None                # report_to (jprefs/trackers.py): opened below for a run that writes
        # A checkpoint of the same config in ``out``: resume from it (see jprefs/rl/checkpoint.py).
        self.checkpoint: dict | None = None
        self.finished: dict | None = None
        self.world = int(getattr(dist, "world", 1) or 1)
        if cfg is not None and getattr(cfg, "resume", False):
            from jprefs.rl.checkpoint import find_finished, find_resumable

            # Reads only, on every process (a changed config raises everywhere alike).
            self.finished = find_finished(self.out, cfg, self.world)
            if self.finished is None:
                self.checkpoint = find_resumable(self.out, cfg, self.world)
        if dist is not None:
            dist.barrier()                  # every process has read before the main one writes
        if self.finished is not None:
            if self.write:
                eprint(f"jprefs rl: run in {self.out} already finished at step {self.finished['step']}; "
                       f"use resume=false to start over or a new -o")
            return
        if not self.write:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        if self.checkpoint is not None:
            # Drop what was logged after the checkpoint so that no step appears twice.
            self.n_metrics = _truncate_lines(self.metrics_path, self.checkpoint["metrics_lines"])
            self.n_samples = _truncate_lines(self.samples_path, self.checkpoint["samples_lines"])
            self.history = [json.loads(x) for x in self.metrics_path.read_text(encoding="utf-8").splitlines()]
            self._t0 -= self.history[-1].get("time/elapsed_s", 0.0) if self.history else 0.0
            eprint(f"jprefs rl: resuming from step {self.checkpoint['step']} "
                   f"({self.checkpoint['dir']}; resume=false starts over)")
        else:
            # Fresh run: the completion marker first (a kill after it cannot leave a "finished" run with empty
            # logs), then the old checkpoints and the last run's results (its summary, policy, heads and
            # curves would otherwise stand beside this run's logs), then the logs.
            import shutil

            from jprefs.rl.checkpoint import DONE

            (self.out / DONE).unlink(missing_ok=True)
            for d in list(self.out.glob("checkpoint-*")) + list(self.out.glob(".checkpoint-*.tmp")):
                shutil.rmtree(d, ignore_errors=True)
            for f in ("summary.json", "curves.png", "beta_gen_sweep.json"):
                (self.out / f).unlink(missing_ok=True)
            for pat in ("value_head.*", "ilql_heads.*"):
                for f in self.out.glob(pat):
                    f.unlink(missing_ok=True)
            if not _names_a_path_in(cfg, self.out / "policy"):   # not when the run starts from that very policy
                shutil.rmtree(self.out / "policy", ignore_errors=True)
            self.metrics_path.write_text("", encoding="utf-8")
            self.samples_path.write_text("", encoding="utf-8")
        if cfg is not None:
            save_config(cfg, self.out / "config.yaml")
            self._open_trackers(cfg)

    def _open_trackers(self, cfg) -> None:
        """``report_to``: every later :meth:`log` also goes to these trackers (jprefs/trackers.py). trl's
        algos pass ``report_to`` to trl instead (jprefs/rl/trl_algos.py), so their writer opens none."""
        from jprefs.rl.config import TRL_ALGOS
        from jprefs.trackers import Trackers

        if getattr(cfg, "report_to", "") and getattr(cfg, "algo", "") not in TRL_ALGOS:
            from jprefs.config import config_dict

            resume_step = None
            if self.checkpoint is not None:
                resume_step = self.history[-1]["step"] + 1 if self.history else 0
            self.trackers = Trackers.open(cfg.report_to, self.out, config=config_dict(cfg), resume_step=resume_step)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.write:
            return
        row = {"step": step, "time/elapsed_s": round(time.time() - self._t0, 3)}
        row.update({k: (float(v) if v is not None else None) for k, v in metrics.items()})
        self.history.append(row)
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.n_metrics += 1
        if self.trackers is not None:
            self.trackers.log(step, {k: v for k, v in row.items() if k != "step"})

    def samples(self, step: int, prompts: Sequence[str], responses: Sequence[str], rewards=None, **extra) -> None:
        if not self.write:
            return
        with open(self.samples_path, "a", encoding="utf-8") as f:
            for i, (p, r) in enumerate(zip(prompts, responses)):
                row = {"step": step, "prompt": p, "response": r}
                if rewards is not None:
                    row["reward"] = float(rewards[i])
                row.update(extra)
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                self.n_samples += 1

    def plot(self, keys: Sequence[str], title: str) -> Path | None:
        """One panel per metric key against step, saved as ``curves.png``."""
        if not self.write:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        keys = [k for k in keys if any(r.get(k) is not None for r in self.history)]
        if not keys:
            return None
        ncol = min(3, len(keys))
        nrow = (len(keys) + ncol - 1) // ncol
        fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.0 * nrow), squeeze=False)
        for ax in axes.flat[len(keys):]:
            ax.axis("off")
        for ax, k in zip(axes.flat, keys):
            pts = [(r["step"], r[k]) for r in self.history if r.get(k) is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 50 else None)
            ax.set_title(k)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        fig.suptitle(title)
        fig.tight_layout()
        path = self.out / "curves.png"
        tmp = self.out / ".curves.tmp.png"
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        os.replace(tmp, path)
        return path

    def save_policy(self, model, tok, subdir: str = "policy") -> Path:
        """Policy weights (safetensors) and tokenizer; a LoRA model is merged first. Written into a
        temporary folder beside ``subdir`` and renamed, so a kill mid-save leaves no half policy. A saved
        policy is for generation: its config keeps ``use_cache`` on (trainers that turn it off while
        training left it off in the saved config, and ``generate`` then recomputed every step)."""
        import shutil

        d = self.out / subdir
        if not self.write:
            return d
        if hasattr(model, "merge_and_unload"):
            import copy

            model = copy.deepcopy(model).merge_and_unload()
        tmp = d.with_name(f".{d.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        cfg = getattr(model, "config", None)
        was = getattr(cfg, "use_cache", None)
        if was is False:
            cfg.use_cache = True
        try:
            model.save_pretrained(tmp, safe_serialization=True)
        finally:
            if was is False:
                cfg.use_cache = was
        tok.save_pretrained(tmp)
        if d.exists():
            shutil.rmtree(d)
        os.replace(tmp, d)
        return d

    def save_heads(self, heads, name: str, meta: dict | None = None) -> Path:
        """Heads (``torch.nn.Module``) as ``NAME.safetensors`` plus ``NAME.json`` describing them."""
        from safetensors.torch import save_file

        from jprefs.data.io import atomic_write_json

        path = self.out / f"{name}.safetensors"
        if not self.write:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in heads.state_dict().items()}
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(state, str(tmp))
        os.replace(tmp, path)
        atomic_write_json(self.out / f"{name}.json", meta or {})
        return path

    def summary(self, obj: dict) -> Path:
        from jprefs.data.io import atomic_write_json

        if not self.write:
            return self.out / "summary.json"
        return atomic_write_json(self.out / "summary.json", obj)

    def finish(self, step: int) -> None:
        """Write the completion marker ``done.json`` (atomically, after every other output): a
        rerun with the same config then stops at once instead of redoing the last steps."""
        if self.write:
            from jprefs.rl.checkpoint import write_done

            write_done(self, step)
        self.close()

    def close(self) -> None:
        """Close the trackers of ``report_to`` (their files are complete after this)."""
        if self.trackers is not None:
            self.trackers.close()
            self.trackers = None

