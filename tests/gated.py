"""Run the jprefs CLI with one of its functions held at a gate: the concurrency tests' second run.

    python -m tests.gated GATE MODULE:FUNCTION jprefs-args...

``MODULE.FUNCTION`` is replaced by a wrapper that creates ``GATE.reached`` and waits until the
file ``GATE`` exists before calling the original. Pick a function the run calls after taking
its output folder's lock (the input loader), and the run is known to be inside its lock, and
still running, until the test opens the gate. Exits with the CLI's status.

:func:`lock_holder` starts a process that holds a folder's lock until its stdin closes (or
it is killed): the deterministic "other run" of the lock tests.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path


def hold(gate: Path, fn, timeout: float = 240.0):
    def gated(*a, **k):
        Path(str(gate) + ".reached").write_text("", encoding="utf-8")
        deadline = time.time() + timeout
        while not gate.exists():
            if time.time() > deadline:
                raise SystemExit(f"tests.gated: gate {gate} was never opened")
            time.sleep(0.02)
        return fn(*a, **k)

    return gated


def wait_reached(gate: Path, proc, timeout: float = 180.0) -> None:
    """Block until the gated run is at its gate (fail if it exits first)."""
    deadline = time.time() + timeout
    while not Path(str(gate) + ".reached").exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the gated run exited with {proc.returncode} before its gate:\n{out}\n{err}")
        if time.time() > deadline:
            raise AssertionError("the gated run never reached its gate")
        time.sleep(0.02)


HOLDER = ("import sys\nfrom jprefs.runlock import RunLock\n"
          "with RunLock(sys.argv[1], sys.argv[2], shard=sys.argv[3]):\n"
          "    print('locked', flush=True)\n    sys.stdin.read()\n")


def lock_holder(folder, command: str = "jprefs rl", shard: str = ""):
    """A process holding ``folder``'s :class:`RunLock`; close its stdin (or kill it) to end it."""
    import os
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), command, shard], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if line.strip() != "locked":
        proc.kill()
        raise AssertionError(f"lock holder failed: {line}{proc.stderr.read()}")
    return proc


def main() -> int:
    gate, target, args = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    mod_name, fn_name = target.split(":")
    mod = importlib.import_module(mod_name)
    setattr(mod, fn_name, hold(gate, getattr(mod, fn_name)))
    from jprefs.cli import main as cli

    return cli(args)


if __name__ == "__main__":
    sys.exit(main())
