"""Experiment trackers beside a run's own logs: ``report_to`` of ``jprefs rl`` and ``jprefs train-rm``.

``metrics.jsonl`` (rl) and ``metrics.json`` (train-rm) stay the record of a run; with
``report_to=tensorboard`` (or ``wandb``, ``trackio``, several comma-separated) every step
logged there is also sent to the trackers named. All three are optional packages, imported
only when asked for; a missing one is a :class:`jprefs.errors.ConfigError` naming the
``pip install`` command.

- ``tensorboard``: ``torch.utils.tensorboard.SummaryWriter`` writing event files under
  ``RUN_DIR/tb/`` (``tensorboard --logdir RUN_DIR/tb``);
- ``wandb``: ``wandb.init(dir=RUN_DIR)``; jprefs passes no credentials and sets
  ``WANDB_MODE=offline`` unless the environment already sets ``WANDB_MODE`` (sync later with
  ``wandb sync``, or set ``WANDB_MODE=online`` yourself after ``wandb login``);
- ``trackio``: ``trackio.init`` with no ``space_id``: a local project (``trackio show``).

A resumed run only logs the steps after its checkpoint (the loops call :meth:`Trackers.log`
for new steps only): TensorBoard appends a new event file and hides what an interrupted run
logged after that checkpoint (``purge_step``), so no step appears twice.

Example::

    tr = Trackers.open("tensorboard", "runs/ppo", config={"lr": 1e-5})
    tr.log(1, {"objective/score": 0.5})
    tr.close()
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from jprefs.errors import ConfigError

TRACKERS = ("tensorboard", "wandb", "trackio")
HELP = ("experiment trackers that also receive every logged step (metrics files stay the record): "
        "'' (none) | tensorboard (event files in OUT/tb/) | wandb (offline unless WANDB_MODE is set) | "
        "trackio (local); comma-separated for several")


def parse_report_to(value) -> list[str]:
    """``"tensorboard,wandb"`` (or a list) -> ``["tensorboard", "wandb"]``; "" / "none" -> ``[]``."""
    if value is None:
        return []
    parts = value if isinstance(value, (list, tuple)) else str(value).split(",")
    names = []
    for p in parts:
        p = str(p).strip().lower()
        if p in ("", "none"):
            continue
        if p not in TRACKERS:
            raise ConfigError(f"config key 'report_to': {p!r} is not one of {list(TRACKERS)}; "
                              f"fix: e.g. report_to=tensorboard, or report_to= for none")
        if p not in names:
            names.append(p)
    return names


def _import(name: str):
    """Import the tracker package ``name`` or raise a ConfigError with the pip command."""
    import importlib

    module = {"tensorboard": "torch.utils.tensorboard"}.get(name, name)
    try:
        if name == "tensorboard":
            importlib.import_module("tensorboard")   # torch's SummaryWriter needs the tensorboard package
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"report_to={name} needs the {name} package, which is not installed.\n"
                          f"  fix: pip install {name}  (or drop {name} from report_to)") from e


def check_installed(report_to) -> list[str]:
    """Parse ``report_to`` and import every tracker now (a missing one fails before training starts)."""
    names = parse_report_to(report_to)
    for n in names:
        _import(n)
    if "wandb" in names:
        os.environ.setdefault("WANDB_MODE", "offline")   # never online unless the user says so
    return names


def trl_report_to(report_to) -> list[str] | str:
    """``report_to`` for transformers' ``TrainingArguments``: the names, or ``"none"``."""
    names = check_installed(report_to)
    return names or "none"


class Trackers:
    """The open trackers of one run; :meth:`log` sends one step's finite scalars to each."""

    def __init__(self, names: list[str], run_dir: Path, sinks: list):
        self.names, self.run_dir, self._sinks = names, run_dir, sinks

    @classmethod
    def open(cls, report_to, run_dir, *, config: dict | None = None, name: str = "",
             resume_step: int | None = None) -> "Trackers":
        """``resume_step``: a resumed run logs steps from here on; TensorBoard hides what an earlier,
        interrupted run of the folder logged at this step or later (``SummaryWriter(purge_step=)``)."""
        names = check_installed(report_to)
        run_dir = Path(run_dir)
        sinks = []
        for n in names:
            mod = _import(n)
            if n == "tensorboard":
                w = mod.SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=resume_step)

                def tb_log(step, d, w=w):
                    for k, v in d.items():
                        w.add_scalar(k, v, step)
                    w.flush()                       # a crashed run keeps what it logged

                sinks.append((tb_log, w.close))
            elif n == "wandb":
                run = mod.init(project=os.environ.get("WANDB_PROJECT", "jprefs"), name=name or run_dir.name,
                               dir=str(run_dir), config=config or {})
                sinks.append((lambda step, d, run=run: run.log(d, step=step), lambda run=run: run.finish()))
            else:  # trackio
                mod.init(project=os.environ.get("TRACKIO_PROJECT", "jprefs"), name=name or run_dir.name,
                         config=config or {}, resume="allow")
                sinks.append((lambda step, d, mod=mod: mod.log(d, step=step), lambda mod=mod: mod.finish()))
        return cls(names, run_dir, sinks)

    def log(self, step: int, metrics: dict) -> None:
        scalars = {k: float(v) for k, v in metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}
        for log, _ in self._sinks:
            log(int(step), scalars)

    def close(self) -> None:
        for _, close in self._sinks:
            close()
        self._sinks = []

    def __bool__(self) -> bool:
        return bool(self._sinks)
