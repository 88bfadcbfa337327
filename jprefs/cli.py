"""The ``jprefs`` command line.

Commands are registered by name and their modules imported only when chosen,
so ``jprefs --help`` is instant and imports neither torch nor datasets. A command
module provides ``configure(parser)`` (add arguments) and ``run(args) -> int``.
User mistakes (:class:`jprefs.errors.JprefsError`) print a message that says how
to fix them and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

# name -> (module, one-line summary). Modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("jprefs.data.cli", "convert, export, split, merge and summarise preference data"),
    "translate": ("jprefs.translate.cli", "translate preference sets into Japanese (vllm | openai | transformers)"),
    "train-rm": ("jprefs.classifiers.cli", "train a reward model: binary classifier or Bradley-Terry"),
    "score": ("jprefs.classifiers.score_cli", "score (prompt, response) pairs with a reward model"),
    "rm": ("jprefs.classifiers.rm_cli", "the catalogue of public Japanese reward models (rm list)"),
    "rl": ("jprefs.rl.cli", "ILQL, PPO and SFT against a reward model"),
    "eval": ("jprefs.eval.cli", "evaluate reward models and policies"),
    "label": ("jprefs.label.cli", "label in a local web app: rank, A/B, translation review, live rewards"),
    "push": ("jprefs.publish.cli", "publish a dataset, reward model or policy to the Hugging Face Hub"),
}

EPILOG = """examples:
  jprefs data convert hh.jsonl.gz --source hh-rlhf -o pairs.jsonl
  jprefs data stats pairs.jsonl
  jprefs translate pairs.jsonl --engine openai --model calm3 --base-url http://127.0.0.1:8000/v1 -o ja/
  jprefs train-rm --data ja/pairs.jsonl --backbone e5-small-offline --objective pairwise -o rm/
  jprefs rl rl/recipes/ppo-tiny-cpu.yaml -o runs/ppo

Run `jprefs COMMAND --help` for the options of one command."""


def _available() -> dict[str, tuple[str, str]]:
    out = {}
    for name, (mod, summary) in COMMANDS.items():
        try:
            if importlib.util.find_spec(mod) is not None:
                out[name] = (mod, summary)
        except ModuleNotFoundError:
            pass
    return out


def _top_parser(commands: dict[str, tuple[str, str]]) -> argparse.ArgumentParser:
    from jprefs import __version__

    p = argparse.ArgumentParser(
        prog="jprefs",
        description="Japanese preference data, reward models and RL.\n\ncommands:\n" + "\n".join(
            f"  {n:<11} {s}" for n, (_, s) in commands.items()),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"jprefs {__version__}")
    p.add_argument("command", nargs="?", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    from jprefs.errors import JprefsError

    argv = list(sys.argv[1:] if argv is None else argv)
    commands = _available()
    if not argv or argv[0] in ("-h", "--help") or argv[0] == "--version":
        _top_parser(commands).parse_args(argv or ["--help"])
        return 0
    name = argv[0]
    if name not in commands:
        import difflib

        close = difflib.get_close_matches(name, list(commands), n=1)
        hint = f" Did you mean `jprefs {close[0]}`?" if close else ""
        print(f"jprefs: unknown command '{name}'.{hint}\n  available: {', '.join(commands)}", file=sys.stderr)
        return 2
    module = importlib.import_module(commands[name][0])
    parser = argparse.ArgumentParser(prog=f"jprefs {name}", description=commands[name][1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.configure(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except JprefsError as e:
        from jprefs.redact import redact_url

        # messages quote arguments, URLs among them: never print a credential a URL carries
        print(f"jprefs {name}: error: {redact_url(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"jprefs {name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `jprefs data stats x | head`
        return 0
    except Exception as e:  # noqa: BLE001 - a bug, not a user mistake: one line, the traceback on request
        import os

        if os.environ.get("JPREFS_DEBUG"):
            raise
        from jprefs.hub import is_offline_miss
        from jprefs.redact import redact_url

        if is_offline_miss(e):  # a Hub download outside the loaders that name their model (jprefs/hub.py)
            print(f"jprefs {name}: error: a file is not in the local Hugging Face cache and the Hub cannot be "
                  f"reached (HF_HUB_OFFLINE=1 / no network): {redact_url(str(e)).splitlines()[0]}; fix: download "
                  f"it on a machine with network (`hf download REPO_ID`) or pass a local path", file=sys.stderr)
            return 2

        print(f"jprefs {name}: internal error: {type(e).__name__}: {redact_url(str(e))}\n"
              f"  this is a bug in jprefs, not in your input; rerun with JPREFS_DEBUG=1 for the traceback "
              f"and report it", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
