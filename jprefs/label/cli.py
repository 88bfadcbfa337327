"""``jprefs label``: collect human feedback in a local web app, and get it back as data.

Subcommands: ``candidates`` (K answers per prompt from a policy), ``serve`` (the web app),
``stats`` (progress and agreement), ``export`` (labels in the jprefs data model). See
``label/README.md``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path

SUBCOMMANDS = {
    "candidates": ("jprefs.label.candidates", "K responses per prompt from a policy or causal LM, for ranking"),
    "serve": ("jprefs.label.cli", "the labelling web app (rank | ab | review | reward), on 127.0.0.1"),
    "stats": ("jprefs.label.cli", "progress and inter-annotator agreement of a labelling database"),
    "export": ("jprefs.label.export", "labels as rank lists, pairs, reviewed translations or A/B labels"),
}

EXAMPLES = """examples:
  jprefs label candidates --model runs/sft --prompts builtin:ja-eval-mini -k 4 -o cands.jsonl
  jprefs label serve cands.jsonl --db labels.sqlite --mode rank --annotators sato,suzuki --overlap 2
  jprefs label serve out/human/items.jsonl --db ab.sqlite --mode ab --annotators sato
  jprefs label serve ja/ --db review.sqlite --mode review --annotators sato
  jprefs label stats --db labels.sqlite
  jprefs label export --db labels.sqlite -o ranked.jsonl"""


def configure(p: argparse.ArgumentParser) -> None:
    p.epilog = EXAMPLES
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = p.add_subparsers(dest="label_command", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, (mod, summary) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=summary, description=summary,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == "serve":
            configure_serve(sp)
        elif name == "stats":
            configure_stats(sp)
        elif importlib.util.find_spec(mod) is not None:
            importlib.import_module(mod).configure(sp)


def run(args: argparse.Namespace) -> int:
    from jprefs.errors import ConfigError

    name = getattr(args, "label_command", None)
    if not name:
        raise ConfigError("no subcommand given\n  fix: jprefs label candidates|serve|stats|export "
                          "(jprefs label --help)")
    if name == "serve":
        return run_serve(args)
    if name == "stats":
        return run_stats(args)
    return int(importlib.import_module(SUBCOMMANDS[name][0]).run(args) or 0)


# ---------------------------------------------------------------- serve

def configure_serve(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", nargs="?", help="what to label: candidates / rank lists (rank), export-human items.jsonl "
                                            "(ab), a translate folder or pairs.jsonl (review); none for reward")
    p.add_argument("--db", required=True, help="the labelling database (SQLite); created if new, resumed if not")
    p.add_argument("--mode", required=True, choices=("rank", "ab", "review", "reward"))
    p.add_argument("--annotators", default="", help="comma-separated names; a new name gets an access token, "
                                                    "printed once")
    p.add_argument("--reset-token", action="append", default=[], metavar="NAME",
                   help="print a new access token for NAME (the old one stops working)")
    p.add_argument("--overlap", type=int, default=1, help="how many annotators label each item (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of each annotator's shuffled order (default 0)")
    p.add_argument("--guidelines", help="a text or Markdown file shown on the page (default: short built-in "
                                        "guidelines in Japanese and English)")
    p.add_argument("--source", help="review: the English canonical file that translate read, when the "
                                    "translation did not keep the source text")
    p.add_argument("--reward-scale", choices=("5", "thumbs"), default="5", help="reward mode: 1-5 or thumbs")
    p.add_argument("--title", default="", help="the page title")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    p.add_argument("--quiet", action="store_true", help="no request log")
    p.add_argument("--no-serve", action="store_true", help="load the items and make the annotators, then stop")


def _lock(db: Path):
    """One server per database: ``DB.serve.lock``, held with :class:`jprefs.runlock.RunLock`
    (``flock``, freed by the OS however the server ends). The file names the holder's pid and is
    deleted when the server stops (Ctrl-C, SIGTERM, SIGHUP). A file left by a killed server is
    taken over with a line saying so; a live server's lock is refused with an error naming its
    pid."""
    import socket

    from jprefs.errors import JprefsError
    from jprefs.runlock import FolderBusyError, RunLock, pid_alive, read_holder

    path = db.with_name(db.name + ".serve.lock")

    def took_over(_line: str) -> None:      # RunLock's own line names the folder, not the database
        h = read_holder(path)
        pid = h.get("pid")
        why = "no longer holds it (another process has that pid now)" if isinstance(pid, int) and pid_alive(pid) \
            else "is no longer running"
        print(f"label: {path} was left by a server that stopped without releasing it (pid {pid}, started "
              f"{str(h.get('started', ''))[:19].replace('T', ' ')}), and that pid {why}: taking it over",
              file=sys.stderr, flush=True)

    try:
        return RunLock(db.parent, "jprefs label serve", lock_name=path.name, log=took_over).acquire()
    except FolderBusyError as e:
        named = [h for h in e.holders if h.get("pid")]
        if named:
            h = named[0]
            host = f" on {h['host']}" if h.get("host") not in (None, socket.gethostname()) else ""
            who = f"pid {h['pid']}{host}, started {str(h.get('started', ''))[:19].replace('T', ' ')}"
            fix = f"use that server (its address is in its log), or stop it first (kill {h['pid']})"
        else:       # the flock is held but the file names no live pid: a process the server started
            who = f"a process that holds {path}"
            fix = f"stop it first (`fuser {path}` names it)"
        raise JprefsError(f"another `jprefs label serve` is running on {db} ({who}): two servers on one database "
                          f"would hand out the same items twice\n  fix: {fix}, or serve another --db") from None


def _stop_on_signals() -> dict:
    """SIGTERM and SIGHUP stop the server as Ctrl-C does (KeyboardInterrupt in the main thread), so
    the ``finally`` blocks run and the lock file goes: by default Python ends at once on them.
    Returns the old handlers, for :func:`_restore_signals`."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():   # signal.signal works only there
        return {}

    def stop(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    old = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:   # `nohup` ignores SIGHUP: keep that
            old[sig] = signal.signal(sig, stop)
    return old


def _restore_signals(old: dict) -> None:
    import signal

    for sig, handler in old.items():
        signal.signal(sig, handler)


def setup_job(args: argparse.Namespace, out=print):
    """Open the database, record the job, load the items (rejects beside the database) and make
    the annotators; return the store."""
    from jprefs.data.io import write_jsonl
    from jprefs.errors import ConfigError, DataError
    from jprefs.label.items import load_items
    from jprefs.label.store import Store

    db = Path(args.db)
    st = Store(db)
    settings = {"reward_scale": args.reward_scale}
    if args.title:
        settings["title"] = args.title
    if args.guidelines:
        gp = Path(args.guidelines)
        if not gp.is_file():
            raise DataError("no such guidelines file", path=str(gp), fix="give a UTF-8 text or Markdown file")
        try:
            settings["guidelines"] = gp.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DataError("the guidelines are not UTF-8 text", path=str(gp), fix="save the file as UTF-8") from None
    if args.input:
        import hashlib

        ip = Path(args.input)
        settings["input"] = str(ip)
        if ip.is_file():
            settings["input_sha256"] = hashlib.sha256(ip.read_bytes()).hexdigest()
    st.init_job(mode=args.mode, overlap=args.overlap, seed=args.seed, **settings)
    if args.input or args.mode != "reward":
        loaded = load_items(args.mode, args.input, seed=args.seed, source=args.source)
        added, same = st.add_items(loaded.items)
        rej = db.with_name(db.name + ".rejects.jsonl")
        if loaded.rejects:
            write_jsonl(rej, loaded.rejects)
        out(f"label: {loaded.rows} rows from {args.input}: {len(loaded.items)} items ({added} new, {same} already in "
            f"the database), {len(loaded.rejects)} rejected" + (f" -> {rej}" if loaded.rejects else ""))
        for note in loaded.notes:
            out(f"label: note: {note}")
        if not loaded.items and not st.n_items():
            raise DataError("no item to label", path=str(args.input),
                            fix=f"see the rejects in {rej}" if loaded.rejects else "give a file with rows")
    names = [n.strip() for n in args.annotators.split(",") if n.strip()]
    if len(set(names)) != len(names):
        raise ConfigError(f"--annotators names a person twice: {args.annotators}")
    tokens = []
    t = st.add_annotator("admin", admin=True, reset="admin" in args.reset_token)
    if t is not None:
        tokens.append(("admin", t))
    for n in names:
        if n == "admin":
            raise ConfigError("'admin' is the statistics account; pick another annotator name")
        t = st.add_annotator(n, reset=n in args.reset_token)
        if t is not None:
            tokens.append((n, t))
    for n in args.reset_token:
        if n != "admin" and n not in names:
            if n not in st.annotators():
                raise ConfigError(f"--reset-token {n}: no such annotator (known: {', '.join(st.annotators())})")
            tokens.append((n, st.add_annotator(n, reset=True)))
    for n, t in tokens:
        out(f"label: access token for {n}: {t}")
    if tokens:
        out("label: give each person their own name and token (shown only now; --reset-token NAME makes a new one)")
    known = [n for n in st.annotators() if n not in {x for x, _ in tokens}]
    if known:
        out(f"label: annotators with earlier tokens: {', '.join(known)}")
    return st


def run_serve(args: argparse.Namespace) -> int:
    from jprefs.errors import ConfigError
    from jprefs.label.server import make_server

    if args.overlap < 1:
        raise ConfigError(f"--overlap {args.overlap}: each item needs at least 1 annotator")
    db = Path(args.db)
    db.parent.mkdir(parents=True, exist_ok=True)
    handlers = _stop_on_signals()
    lock = None
    try:
        lock = _lock(db)
        st = setup_job(args, out=lambda s: print(s, flush=True))
        if args.no_serve:
            return 0
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print(f"label: warning: listening on {args.host}, not only on this machine: anyone who can reach it "
                  f"can try to log in", file=sys.stderr, flush=True)
        try:
            srv = make_server(st, args.host, args.port, quiet=args.quiet)
        except OSError as e:
            raise ConfigError(f"cannot listen on {args.host}:{args.port} ({e.strerror})\n  fix: --port N "
                              f"(or --port 0 for any free port)") from None
        try:        # from here on Ctrl-C / SIGTERM is a normal stop (exit 0), also before serve_forever starts
            host, port = srv.server_address[:2]
            p = st.progress()
            print(f"label: {st.mode} job, {p['items']} items, overlap {p['overlap']}, {p['labels']} labels so far; "
                  f"serving on http://{host}:{port}/ (Ctrl-C stops; every submission is already saved)", flush=True)
            srv.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt as e:
            print(f"label: stopped{f' ({e})' if str(e) else ''}", flush=True)
        finally:
            srv.server_close()
        return 0
    finally:
        if lock is not None:
            lock.release()          # deletes DB.serve.lock
        _restore_signals(handlers)


# ---------------------------------------------------------------- stats

def configure_stats(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", required=True, help="the labelling database")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")


def run_stats(args: argparse.Namespace) -> int:
    import json

    from jprefs.errors import DataError
    from jprefs.label.agreement import agreement_text
    from jprefs.label.server import stats
    from jprefs.label.store import Store

    st = Store(args.db, create=False)
    if st.mode is None:         # as `label export` says it: zeros would read as a job with nothing done yet
        raise DataError("the database has no labelling job", path=str(args.db),
                        fix="start it with `jprefs label serve FILE --db DB --mode MODE`")
    rep = stats(st)
    if args.json:
        print(json.dumps(rep, ensure_ascii=False, indent=1))
        return 0
    p = rep["progress"]
    print(f"{args.db}: {rep['mode']} job, {p['items']} items, overlap {p['overlap']}: {p['labels']} labels of "
          f"{p['target_labels']} wanted, {p['complete']} items complete, {p['started']} started")
    for who, n in p["by_annotator"].items():
        print(f"  {who}: {n}")
    print(agreement_text(rep["agreement"]))
    return 0
