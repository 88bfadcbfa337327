"""One writer per output folder: ``FOLDER/.jprefs.lock``, held for the whole run.

``jprefs translate``, ``jprefs train-rm`` and ``jprefs rl`` each hold an exclusive
lock on their output folder while they run, so a second run into the same folder
stops at once with an error naming the folder and the pid of the run that holds it,
instead of interleaving ``metrics.jsonl`` or paying for every translation twice.

- **The lock is ``flock(LOCK_EX | LOCK_NB)``** on ``FOLDER/.jprefs.lock``. The OS frees
  it when the process ends, however it ends (``kill -9``, a preempted machine), so a
  killed run never leaves a folder locked: the next run takes the lock and says which
  pid left it. The holder writes ``{pid, host, command, started}`` into the file (that
  is what a refused run reports) and deletes the file when it is done.
- **Shards** of one translation job (``--shard i/n``) may share a folder: each takes the
  folder lock shared plus ``FOLDER/.jprefs.shard-i.lock`` exclusively, so two runs
  of the same shard, or a shard and a whole run, still refuse each other.
- **Data-parallel runs** (``accelerate launch`` / ``torchrun``): only the main process
  takes the lock; :func:`run_lock` hands its outcome to every process (``broadcast``), so
  all of them stop with the same error when it is refused.
- **Re-entrant** in one thread: ``merge`` holds the lock and calls the translation run,
  which asks again for the same folder.
- Where ``fcntl`` does not exist (Windows), the lock file is created with ``O_EXCL`` and
  one that names a pid no longer running on this host is taken over.
- **One file of a folder**: a command whose output is one file among others
  (``jprefs label candidates -o CANDS.jsonl``) passes ``lock_name=".CANDS.jsonl.lock"``, so
  that two runs into one file refuse each other while runs into files beside it do not; such
  a lock cleans no temporary files (the folder is not its own).
- **Every command that writes more than one file** holds its ``-o``'s lock
  (:func:`holds_output` on its ``run``): ``data convert / merge / split / rm-pairs / group /
  demo``, ``score``, ``eval rm / export-human / import-human``, ``label export``, besides the
  long jobs above; a one-file output (``data export``) is one atomic write and needs none.

While holding the lock a run calls :func:`clean_stale_temp`: temporary files that a
killed writer left (``.NAME.tmp-PID`` of atomic writes, ``.checkpoint-N.tmp`` folders,
the translation cache's ``.chunk-*.tmp``) are removed and counted in the log.

Example::

    with RunLock("runs/ppo", "jprefs rl"):
        ...                                # write runs/ppo/*
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shutil
import socket
import sys
import threading
from pathlib import Path
from typing import Callable

from jprefs.errors import JprefsError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".jprefs.lock"
# Folders (under the locked one) whose temp files :func:`clean_stale_temp` removes.
KNOWN_SUBDIRS = ("cache", "policy", "checkpoint", "checkpoint-*", "checkpoint-*/resume", "checkpoint-*/policy")
_PID_TMP = re.compile(r"^\..+\.tmp-(\d+)$")                     # jprefs.data.io atomic writes
_OTHER_TMP = (re.compile(r"^\.checkpoint-\d+\.tmp$"),            # rl checkpoints being written
              re.compile(r"^\.chunk-.+\.tmp$"),                 # translate cache merge copies
              re.compile(r"^\.curves\.tmp\.png$"),              # rl curves
              re.compile(r"^\..+\.safetensors\.tmp$"))          # rl heads

_held: dict[tuple, list] = {}     # (folder, thread, shard) -> [lock, depth]: re-entrant use
_held_guard = threading.Lock()


class FolderBusyError(JprefsError):
    """Another run holds the output folder's lock. ``holders``: what their lock files say."""

    def __init__(self, message: str, folder: str = "", holders: list[dict] | None = None):
        super().__init__(message)
        self.folder = folder
        self.holders = holders or []


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a process of another user counts).

    >>> pid_alive(os.getpid())
    True
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:          # pragma: no cover - e.g. Windows without the process
        return False
    return True


def read_holder(path: Path) -> dict:
    """The ``{pid, host, command, started}`` a lock file holds, or ``{}`` (empty, unreadable)."""
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8") or "{}")
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _holder_alive(h: dict) -> bool:
    """A holder on another host cannot be checked: it counts as alive."""
    if not isinstance(h.get("pid"), int):
        return False
    return h.get("host") not in (None, socket.gethostname()) or pid_alive(h["pid"])


def _describe(h: dict) -> str:
    """'another `jprefs rl` (pid 1234, started 2024-06-01 10:02:11)'."""
    if not h.get("pid"):
        return "another jprefs run (its lock file names no pid yet: it is starting)"
    when = str(h.get("started", ""))[:19].replace("T", " ")
    host = f" on {h['host']}" if h.get("host") not in (None, socket.gethostname()) else ""
    return f"another `{h.get('command') or 'jprefs'}` (pid {h['pid']}{host}, started {when})"


class RunLock:
    """Exclusive use of ``folder`` for one run (see the module docstring).

    ``command`` names this run in a refusal ("jprefs rl"); ``shard`` ("i/n", n > 1) takes
    the shard's lock instead of the whole folder; ``log`` gets one line when a killed
    run's lock or temp files are found (default: stderr).

    >>> with RunLock(tmp_dir, "jprefs rl"):          # doctest: +SKIP
    ...     RunLock(tmp_dir, "jprefs rl").acquire()   # another thread/process: FolderBusyError
    """

    def __init__(self, folder: str | os.PathLike, command: str, *, shard: str = "",
                 log: Callable[[str], None] | None = None, lock_name: str = LOCK_NAME):
        self.folder = Path(folder)
        self.command = command
        self.lock_name = lock_name
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard or "")
        self.shard = f"{int(m[1])}/{int(m[2])}" if m and int(m[2]) > 1 else ""   # else: the whole folder
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self.cleaned = 0
        self._fds: list[tuple[int, Path, bool]] = []   # (fd, path, this process wrote its info)
        self._key: tuple | None = None
        self._excl_path: Path | None = None

    # ------------------------------------------------------------------ paths

    @property
    def path(self) -> Path:
        return self.folder / self.lock_name

    def _shard_path(self) -> Path:
        # by index alone: 0/2 and 0/3 into one folder both write config.shard0.yaml and summary.shard0.json
        i, _ = self.shard.split("/")
        return self.folder / f".jprefs.shard-{i}.lock"

    def _info(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command + (
            f" --shard {self.shard}" if self.shard else ""),
                "started": datetime.datetime.now().isoformat(timespec="seconds")}

    # ------------------------------------------------------------------ acquire / release

    def acquire(self) -> "RunLock":
        """Take the lock or raise :class:`FolderBusyError`; then clean stale temp files."""
        self.folder.mkdir(parents=True, exist_ok=True)
        key = (os.path.realpath(self.folder), threading.get_ident(), self.shard, self.lock_name)
        with _held_guard:
            if key in _held:                 # this thread holds it already (merge -> translate)
                _held[key][1] += 1
                self._key = key
                return self
        if fcntl is None:
            self._acquire_excl_file()
        else:
            self._acquire_flock()
        with _held_guard:
            _held[key] = [self, 1]
        self._key = key
        if self.lock_name != LOCK_NAME:      # a lock on one file: the folder's temp files are not its own
            return self
        self.cleaned = clean_stale_temp(self.folder, only_dead_pids=bool(self.shard))
        if self.cleaned:
            self.log(f"{self.command}: removed {self.cleaned} temporary file(s) left by an interrupted run "
                     f"in {self.folder}")
        return self

    def _refuse(self, holders: list[dict]) -> FolderBusyError:
        live = [h for h in holders if _holder_alive(h)]
        if live:
            who = "; ".join(_describe(h) for h in live)
            pids = " ".join(dict.fromkeys(str(h["pid"]) for h in live))
            verb, fix = ("are" if len(live) > 1 else "is"), f"wait for it to finish (or stop it: kill {pids})"
        else:
            named = [h for h in holders if h.get("pid")]
            # flock held, but not by the pid the file names: a process it started (it inherited
            # the lock), or a run that is just starting and has not written its pid yet
            who = (f"another process (the lock file names pid {named[0]['pid']}, which has ended; a process "
                   f"it started may still run)" if named else _describe({}))
            verb, fix = "is", f"wait for it to finish (`fuser {self.path}` shows who holds the lock)"
        one_file = self.lock_name != LOCK_NAME          # a lock on one file (.NAME.lock): name that file
        target = self.folder / self.lock_name.removeprefix(".").removesuffix(".lock") if one_file else self.folder
        kind, new = ("file", "NEW_FILE") if one_file else ("folder", "NEW_DIR")
        return FolderBusyError(
            f"{who} {verb} writing to {target}; two runs into one {kind} would overwrite each other's "
            f"files.\n  fix: {fix}, or write to another {kind} (-o {new})",
            folder=str(self.folder), holders=live)

    def _take(self, path: Path, mode: int) -> int | None:
        """Open ``path`` and flock it; the fd, or None when another process holds it."""
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            # The holder deletes the file on release: if the name now points elsewhere we
            # locked a deleted file; try again with the current one.
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)

    def _write_info(self, fd: int, path: Path) -> None:
        before = read_holder(path)
        if before.get("pid") and before.get("pid") != os.getpid():
            self.log(f"{self.command}: {self.folder} was left locked by pid {before['pid']} "
                     f"({before.get('command', 'jprefs')}, started {str(before.get('started', ''))[:19]}), "
                     f"which is no longer running; taking over")
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(self._info()) + "\n").encode("utf-8"), 0)

    def _acquire_flock(self) -> None:
        main_mode = fcntl.LOCK_SH if self.shard else fcntl.LOCK_EX
        fd = self._take(self.path, main_mode)
        if fd is None:
            raise self._refuse(self._holders())
        if not self.shard:
            self._write_info(fd, self.path)
            self._fds.append((fd, self.path, True))
            return
        self._fds.append((fd, self.path, False))
        sp = self._shard_path()
        sfd = self._take(sp, fcntl.LOCK_EX)
        if sfd is None:
            holders = [read_holder(sp)]
            self._release_fds()
            raise self._refuse(holders)
        self._write_info(sfd, sp)
        self._fds.append((sfd, sp, True))

    def _holders(self) -> list[dict]:
        """Who holds the folder: the exclusive holder's info, else the shards'."""
        h = read_holder(self.path)
        shards = [read_holder(p) for p in sorted(self.folder.glob(".jprefs.shard-*.lock"))]
        shards = [s for s in shards if _holder_alive(s)]
        if _holder_alive(h) or not shards:
            return [h] if h else []
        return shards

    def _acquire_excl_file(self) -> None:
        """No fcntl: create the lock file with O_EXCL; a dead holder's file is taken over."""
        path = self._shard_path() if self.shard else self.path
        for _ in range(3):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                h = read_holder(path)
                if h.get("pid") and not _holder_alive(h):
                    self.log(f"{self.command}: {self.folder} was left locked by pid {h['pid']}, which is no "
                             f"longer running; taking over")
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                    continue
                raise self._refuse([h]) from None
            os.write(fd, (json.dumps(self._info()) + "\n").encode("utf-8"))
            self._fds.append((fd, path, True))
            self._excl_path = path
            return
        raise self._refuse([read_holder(path)])

    def _release_fds(self) -> None:
        for fd, path, mine in reversed(self._fds):
            if fcntl is None:                # O_EXCL file: closed, then deleted (Windows order)
                os.close(fd)
            if mine:                         # only the exclusive holder of a file deletes it, while
                with contextlib.suppress(FileNotFoundError):   # it still holds the flock
                    os.unlink(path)
            if fcntl is not None:
                os.close(fd)                 # closing frees the flock
        self._fds = []

    def release(self) -> None:
        """Give the folder back (the outermost ``release`` of a re-entrant lock does)."""
        if self._key is None:
            return
        with _held_guard:
            entry = _held.get(self._key)
            if entry is not None:
                entry[1] -= 1
                if entry[1] > 0:
                    self._key = None
                    return
                del _held[self._key]
        self._key = None
        self._release_fds()

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike, command: str, *, is_main: bool = True,
             broadcast: Callable | None = None, shard: str = "", log: Callable[[str], None] | None = None,
             lock_name: str = LOCK_NAME):
    """:class:`RunLock` for a run of one or several processes: the main process takes the lock,
    ``broadcast(obj) -> rank 0's obj`` tells every process the outcome, and all of them raise
    the same :class:`FolderBusyError` when it was refused (no process is left waiting in a
    collective for one that stopped).

    >>> with run_lock(out, "jprefs rl", is_main=dist.is_main, broadcast=share):   # doctest: +SKIP
    ...     train()
    """
    lock = RunLock(folder, command, shard=shard, log=log, lock_name=lock_name) if is_main else None
    error = None
    try:
        if lock is not None:
            try:
                lock.acquire()
            except FolderBusyError as e:
                error = e
        msg = str(error) if error is not None else None
        if broadcast is not None:
            msg = broadcast(msg)
        if msg is not None:
            raise error if error is not None else FolderBusyError(msg, folder=str(folder))
        yield lock
    finally:
        if lock is not None:
            lock.release()


def output_lock(output: str | os.PathLike, command: str, *, folder: bool) -> RunLock:
    """The lock of a command's ``-o``: the folder's own (``folder=True``: ``-o DIR``) or one file's
    (``-o OUT.jsonl``, beside which it writes ``OUT.rejects.jsonl`` and the like), so that two runs
    into one output refuse each other instead of leaving one run's rows beside the other's rejects.

    >>> with output_lock("pairs.jsonl", "jprefs data convert", folder=False):   # doctest: +SKIP
    ...     convert()
    """
    out = Path(output)
    if folder:
        return RunLock(out, command)
    return RunLock(out.parent, command, lock_name=f".{out.name}.lock")


def holds_output(command: str, *, folder: bool, attr: str = "output"):
    """Decorate a CLI ``run(args)``: it runs holding :func:`output_lock` on ``args.<attr>``. A folder
    the lock had to create is removed again when the run leaves it empty (a refused run writes nothing)."""
    import functools

    def wrap(fn):
        @functools.wraps(fn)
        def run(args, *rest, **kw):
            out = Path(getattr(args, attr))
            d = out if folder else out.parent
            new = []                                         # the folders the lock creates, deepest first
            while not d.exists() and d != d.parent:
                new.append(d)
                d = d.parent
            try:
                with output_lock(out, command, folder=folder):
                    return fn(args, *rest, **kw)
            finally:
                for d in new:
                    try:
                        d.rmdir()
                    except OSError:                          # not empty: the run wrote there
                        break
        return run
    return wrap


def clean_stale_temp(folder: str | os.PathLike, *, only_dead_pids: bool = False) -> int:
    """Remove the temporary files a killed writer left in ``folder`` and its known subfolders
    (``cache/``, ``checkpoint*/``); return how many. Call it only while holding the folder's
    :class:`RunLock`. ``.NAME.tmp-PID`` is removed only when PID is not running; the other
    patterns (no pid in the name) only when ``only_dead_pids`` is false (an exclusive lock).

    >>> clean_stale_temp("runs/ppo")      # doctest: +SKIP
    2
    """
    root = Path(folder)
    dirs = [root]
    for pattern in KNOWN_SUBDIRS:
        dirs += [d for d in sorted(root.glob(pattern)) if d.is_dir()]
    n = 0
    for d in dict.fromkeys(dirs):
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            m = _PID_TMP.match(e.name)
            if m:
                stale = int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1)))
            else:
                stale = not only_dead_pids and any(p.match(e.name) for p in _OTHER_TMP)
            if not stale:
                continue
            try:
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(e.path)
                else:
                    os.unlink(e.path)
                n += 1
            except FileNotFoundError:
                pass
    return n
