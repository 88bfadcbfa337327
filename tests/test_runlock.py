"""One writer per output folder (jprefs.runlock): refusal names the folder and the pid, a
killed holder's lock is free at once, re-entrant in one thread, shards share a folder, the
O_EXCL fallback, and the clean-up of a killed writer's temp files. No torch: fast."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from jprefs import runlock
from jprefs.runlock import FolderBusyError, RunLock, clean_stale_temp, run_lock
from tests.gated import lock_holder


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _in_thread(fn):
    """``fn()`` in another thread (another lock owner than this one); its result or exception."""
    box = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as e:          # noqa: BLE001 - handed back to the test
            box["error"] = e

    t = threading.Thread(target=target)
    t.start()
    t.join(30)
    return box


def test_a_second_process_is_refused_with_the_folder_and_the_holders_pid(tmp_path):
    out = tmp_path / "runs" / "ppo"
    holder = lock_holder(out, "jprefs rl")
    try:
        info = json.loads((out / ".jprefs.lock").read_text(encoding="utf-8"))
        assert info["pid"] == holder.pid and info["command"] == "jprefs rl" and info["started"]
        with pytest.raises(FolderBusyError) as e:
            RunLock(out, "jprefs rl").acquire()
        msg = str(e.value)
        assert f"another `jprefs rl` (pid {holder.pid}, started " in msg and f"writing to {out}" in msg
        assert f"kill {holder.pid}" in msg and "-o NEW_DIR" in msg
        assert e.value.folder == str(out) and e.value.holders[0]["pid"] == holder.pid
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert not (out / ".jprefs.lock").exists()          # released: the holder deleted its file
    with RunLock(out, "jprefs rl"):
        pass


def test_a_sigkilled_holders_lock_is_free_at_once_and_the_takeover_is_logged(tmp_path):
    holder = lock_holder(tmp_path, "jprefs train-rm")
    holder.send_signal(signal.SIGKILL)
    holder.wait(30)
    assert json.loads((tmp_path / ".jprefs.lock").read_text())["pid"] == holder.pid   # left behind
    logs = []
    with RunLock(tmp_path, "jprefs train-rm", log=logs.append):
        assert json.loads((tmp_path / ".jprefs.lock").read_text())["pid"] == os.getpid()
    assert any(f"left locked by pid {holder.pid}" in x and "taking over" in x for x in logs), logs


def test_reentrant_in_one_thread_refused_from_another(tmp_path):
    with RunLock(tmp_path, "jprefs translate merge"):
        with RunLock(tmp_path, "jprefs translate"):          # merge -> run_translate
            pass
        assert (tmp_path / ".jprefs.lock").exists()          # the outer hold survives the inner release
        got = _in_thread(lambda: RunLock(tmp_path, "jprefs translate").acquire())
        assert isinstance(got.get("error"), FolderBusyError), got
        assert f"(pid {os.getpid()}," in str(got["error"])
    assert not (tmp_path / ".jprefs.lock").exists()


def test_shards_of_one_job_share_a_folder_but_not_a_shard(tmp_path):
    holder = lock_holder(tmp_path, "jprefs translate", shard="0/2")
    try:
        with RunLock(tmp_path, "jprefs translate", shard="1/2"):          # another shard: fine
            pass
        with pytest.raises(FolderBusyError, match=rf"`jprefs translate --shard 0/2` \(pid {holder.pid},"):
            RunLock(tmp_path, "jprefs translate", shard="0/2").acquire()
        with pytest.raises(FolderBusyError, match=rf"pid {holder.pid}"):
            RunLock(tmp_path, "jprefs translate").acquire()               # the whole job: refused
    finally:
        holder.stdin.close()
        holder.wait(30)
    with RunLock(tmp_path, "jprefs translate"):
        pass


def test_run_lock_tells_every_process_the_main_ones_outcome(tmp_path):
    holder = lock_holder(tmp_path, "jprefs rl")
    try:
        sent = []

        def broadcast(msg):                 # the main process's outcome, as a collective gives it
            sent.append(msg)
            return msg

        with pytest.raises(FolderBusyError):
            with run_lock(tmp_path, "jprefs rl", is_main=True, broadcast=broadcast):
                raise AssertionError("ran without the lock")
        assert f"pid {holder.pid}" in sent[0]
        with pytest.raises(FolderBusyError, match=f"pid {holder.pid}"):     # a non-main process
            with run_lock(tmp_path, "jprefs rl", is_main=False, broadcast=lambda msg: sent[0]):
                raise AssertionError("ran without the lock")
    finally:
        holder.stdin.close()
        holder.wait(30)
    with run_lock(tmp_path, "jprefs rl", is_main=False, broadcast=lambda msg: None) as lock:
        assert lock is None and not (tmp_path / ".jprefs.lock").exists()   # only the main one locks


def test_without_fcntl_an_exclusive_file_is_used_and_a_dead_pid_taken_over(tmp_path, monkeypatch):
    monkeypatch.setattr(runlock, "fcntl", None)
    lock = tmp_path / ".jprefs.lock"
    lock.write_text(json.dumps({"pid": os.getppid(), "host": runlock.socket.gethostname(),
                                "command": "jprefs rl", "started": "2024-01-01T10:02:11"}))
    with pytest.raises(FolderBusyError, match=rf"pid {os.getppid()}, started 2024-01-01 10:02:11"):
        RunLock(tmp_path, "jprefs rl").acquire()
    dead = _dead_pid()
    lock.write_text(json.dumps({"pid": dead, "host": runlock.socket.gethostname(), "command": "jprefs rl"}))
    logs = []
    with RunLock(tmp_path, "jprefs rl", log=logs.append):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        got = _in_thread(lambda: RunLock(tmp_path, "jprefs rl").acquire())
        assert isinstance(got.get("error"), FolderBusyError), got
    assert not lock.exists() and any(f"pid {dead}" in x for x in logs)


def test_clean_stale_temp_removes_only_a_dead_writers_files(tmp_path):
    dead, live = _dead_pid(), os.getppid()
    (tmp_path / "cache").mkdir()
    (tmp_path / "checkpoint-4" / "resume").mkdir(parents=True)
    (tmp_path / "deep" / "er").mkdir(parents=True)
    stale = [f".pairs.jsonl.tmp-{dead}", f"cache/.chunk-s0of1-000003-{dead}.jsonl.tmp-{dead}",
             "cache/.chunk-s1of2-000000-7.jsonl.tmp", f"checkpoint-4/resume/.state.json.tmp-{dead}",
             ".curves.tmp.png", ".value_head.safetensors.tmp"]
    kept = [f".summary.json.tmp-{live}", "pairs.jsonl", ".hidden", f"notes.tmp-{dead}",
            f"deep/er/.x.tmp-{dead}", "cache/chunk-s0of1-000000-1.jsonl"]
    for f in stale + kept:
        (tmp_path / f).write_text("x")
    (tmp_path / ".checkpoint-6.tmp" / "policy").mkdir(parents=True)
    assert clean_stale_temp(tmp_path, only_dead_pids=True) == 3            # a shard: pid-named ones only
    assert clean_stale_temp(tmp_path) == 4                                  # the rest, and the .tmp folder
    assert not any((tmp_path / f).exists() for f in stale) and not (tmp_path / ".checkpoint-6.tmp").exists()
    assert all((tmp_path / f).exists() for f in kept)


def test_acquire_cleans_and_reports(tmp_path):
    dead = _dead_pid()
    (tmp_path / f".metrics.jsonl.tmp-{dead}").write_text("half")
    (tmp_path / ".checkpoint-2.tmp").mkdir()
    logs = []
    with RunLock(tmp_path, "jprefs rl", log=logs.append) as lock:
        assert lock.cleaned == 2
    assert logs == [f"jprefs rl: removed 2 temporary file(s) left by an interrupted run in {tmp_path}"]
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.parametrize("argv, folder", [
    (["data", "convert", "IN", "--source", "hh-rlhf", "-o", "OUT"], False),
    (["data", "split", "IN", "-o", "OUT"], True),
    (["data", "merge", "IN", "IN", "-o", "OUT"], False),
    (["data", "demo", "-o", "OUT"], True),
    (["data", "rm-pairs", "IN", "--scores", "s", "-o", "OUT"], False),
    (["data", "group", "IN", "-o", "OUT"], False),
    (["score", "MODEL", "IN", "-o", "OUT"], False),
    (["eval", "rm", "--model", "MODEL", "--data", "IN", "-o", "OUT"], True),
    (["eval", "export-human", "--samples", "IN", "-o", "OUT"], True),
    (["eval", "import-human", "--labels", "IN", "--key", "IN", "-o", "OUT"], True),
    (["label", "export", "--db", "IN", "-o", "OUT"], False),
])
def test_every_command_that_writes_several_files_is_one_writer_per_output(tmp_path, capsys, argv, folder):
    """A command whose -o gets more than one file (rows + rejects + summary, a report folder) refuses a
    second run into the same output while one holds it, before it reads any input, and leaves the
    holder's files alone; a file output is locked alone (a run into the file beside it is not refused)."""
    from jprefs.cli import main
    from jprefs.runlock import output_lock

    out = tmp_path / ("out" if folder else "out.jsonl")
    (tmp_path / "in.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n', encoding="utf-8")
    fill = {"IN": str(tmp_path / "in.jsonl"), "OUT": str(out), "MODEL": str(tmp_path / "no-model")}
    cmd = "jprefs " + " ".join(argv[:2] if argv[0] in ("data", "eval", "label") else argv[:1])
    # the holder is a thread that stays alive while the command runs here (a lock is re-entrant in its own
    # thread, and a finished thread's id may be handed to the next one)
    locked, done = threading.Event(), threading.Event()

    def hold():
        with output_lock(out, "jprefs test holder", folder=folder):
            locked.set()
            done.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(30)
        assert main([fill.get(a, a) for a in argv]) == 2
        err = capsys.readouterr().err
        assert "jprefs test holder" in err and f"pid {os.getpid()}" in err, err
        assert not (out / "train.jsonl").exists() and not (tmp_path / "out.rejects.jsonl").exists()
    finally:
        done.set()
        holder.join(30)
    assert not (out / ".jprefs.lock").exists() and not (tmp_path / ".out.jsonl.lock").exists()
    if not folder:                      # the lock is the file's own: a neighbour's run is not refused
        with output_lock(tmp_path / "other.jsonl", cmd, folder=False):
            with output_lock(out, cmd, folder=False):
                pass


def test_a_refused_run_leaves_no_folder_it_created(tmp_path, capsys):
    """The output lock creates the folders of -o; a run that is refused (here: no such input) removes them
    again, every level it made, and one that wrote keeps its folder."""
    from jprefs.cli import main

    out = tmp_path / "a" / "b" / "pairs.jsonl"
    assert main(["data", "convert", str(tmp_path / "nope.jsonl"), "--source", "hh-rlhf", "-o", str(out)]) == 2
    assert "input file not found" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    assert main(["data", "split", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "s" / "t")]) == 2
    assert not (tmp_path / "s").exists()
    assert main(["data", "demo", "-o", str(tmp_path / "d" / "demo")]) == 0
    assert (tmp_path / "d" / "demo" / "pairs.jsonl").exists() and not (tmp_path / "d" / "demo" / ".jprefs.lock").exists()
