"""Say so when a launcher was asked for N processes but started one (issue #11, item 4).

``accelerate launch --num_processes N`` without ``--multi_gpu`` (or with ``--cpu``) goes
through accelerate's *simple* launcher on a machine with fewer than 2 GPUs: it starts one
process, sets ``OMP_NUM_THREADS=1`` (unless set) and no ``WORLD_SIZE``, and prints nothing
about it. The run then trains alone, on one thread. What does give N processes, on CPU (gloo)
and GPU (NCCL) alike:

    torchrun --nproc_per_node N -m jprefs.cli train-rm ...
    accelerate launch --multi_gpu --num_processes N -m jprefs.cli train-rm ...

Example::

    note = single_process_note("train-rm")     # None unless the launch went wrong
    if note:
        eprint(note)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

# accelerate's simple launcher sets these for its child (and so does no other launcher)
_ACCELERATE_MARKERS = ("ACCELERATE_DYNAMO_BACKEND", "ACCELERATE_MIXED_PRECISION")


def _parent_argv() -> list[str] | None:
    """The parent process's command line (Linux ``/proc``), or None where it cannot be read."""
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def asked_processes(argv: Sequence[str]) -> int | None:
    """``--num_processes`` of an ``accelerate launch`` command line (None when not one, or not given).

    >>> asked_processes(["python", "/venv/bin/accelerate", "launch", "--num_processes", "2", "-m", "jprefs.cli"])
    2
    >>> asked_processes(["python", "-m", "jprefs.cli", "train-rm", "--num_processes", "2"]) is None
    True
    """
    argv = list(argv)
    start = None
    for i, a in enumerate(argv):
        if a == "accelerate.commands.launch" or a.endswith("accelerate/commands/launch.py"):
            start = i + 1
            break
        if a == "launch" and i > 0 and os.path.basename(argv[i - 1]).startswith("accelerate"):
            start = i + 1
            break
    if start is None:
        return None
    import contextlib
    import io

    from accelerate.commands.launch import launch_command_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args, _ = launch_command_parser().parse_known_args(argv[start:])
    except SystemExit:
        return None
    return args.num_processes


def single_process_note(command: str, environ: Mapping[str, str] | None = None,
                        parent_argv: Sequence[str] | None = None, gpus: int | None = None) -> str | None:
    """A plain message when this process runs alone although ``accelerate launch`` asked for more.

    ``environ``, ``parent_argv`` and ``gpus`` default to this process's environment, its parent's
    command line and the visible GPU count (they are parameters so the check can be tested
    without launching anything).
    """
    env = os.environ if environ is None else environ
    try:
        if int(env.get("WORLD_SIZE", "1")) > 1:
            return None                       # a real multi-process launch (torchrun, --multi_gpu)
    except ValueError:
        return None
    if not any(k in env for k in _ACCELERATE_MARKERS):
        return None                           # not started by accelerate's simple launcher
    argv = _parent_argv() if parent_argv is None else parent_argv
    n = asked_processes(argv) if argv else None
    if n is None:
        # no readable command line: accelerate sets MASTER_ADDR only when asked for more than one process
        if "MASTER_ADDR" not in env or "RANK" in env:
            return None
        asked = "more than 1"
    elif n <= 1:
        return None
    else:
        asked = str(n)
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    k = n if n and n > 1 else "N"
    threads = env.get("OMP_NUM_THREADS")
    return (f"jprefs {command}: 1 process is running, although `accelerate launch` was asked for {asked}: "
            f"without --multi_gpu, accelerate starts a single process on a machine with "
            f"{'no GPU' if gpus == 0 else f'{gpus} GPU'}"
            + (f" (and gives it OMP_NUM_THREADS={threads})" if threads else "") + ".\n"
            f"  fix: torchrun --nproc_per_node {k} -m jprefs.cli {command} ...   or   "
            f"accelerate launch --multi_gpu --num_processes {k} -m jprefs.cli {command} ...   "
            f"(both work on CPU too: the processes use gloo)")
