"""``jprefs eval``: reward models and policies on Japanese prompts, LLM judges, human A/B.

Subcommands are registered in :data:`SUBCOMMANDS` as ``name -> (module, summary)``; a module
provides ``configure_NAME(parser)`` and ``run_NAME(args) -> int`` (``-`` in the name becomes
``_``) and imports nothing heavy at module level, so ``jprefs eval --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "rm": ("jprefs.eval.rm", "reward models on preference pairs: accuracy with intervals, length baselines, "
                             "length-controlled accuracy, calibration, leaderboard"),
    "policy": ("jprefs.eval.policy", "policies on prompts: reward, win/tie/loss against a baseline, KL, "
                                     "perplexity, diversity, reward-hacking warnings"),
    "judge": ("jprefs.eval.judge", "an LLM judge (any OpenAI-compatible server) on a pair file or on "
                                   "two sets of answers: pairwise in both orders, or 1-10 grading"),
    "export-human": ("jprefs.eval.human", "blinded, randomised A/B pairs for people to label (CSV + JSONL) "
                                          "and a separate key file"),
    "import-human": ("jprefs.eval.human", "human A/B labels: win/tie/loss with intervals, sign test, "
                                          "'at least as good' share"),
}

EPILOG = """examples:
  jprefs eval rm --model out/rm --data out/rm/eval_split.jsonl -o out/eval-rm
  jprefs eval rm --model out/rm-a --model out/rm-b --data pairs.jsonl --data m-rewardbench-ja.jsonl -o out/lb
  jprefs eval policy --policy runs/ppo/policy --baseline runs/sft/policy --prompts builtin:ja-instructions \\
      --reward out/rm -o out/eval-ppo
  jprefs eval judge --pairs pairs.jsonl --judge qwen2.5-7b --judge-base-url http://127.0.0.1:8000/v1 -o out/j
  jprefs eval export-human --samples out/eval-ppo/samples.jsonl -o out/human
  jprefs eval import-human --labels out/human/labels.csv --key out/human/key.jsonl -o out/human-result

Run `jprefs eval SUBCOMMAND --help` for the options of one subcommand."""


def _module(name: str):
    mod_name = SUBCOMMANDS[name][0]
    try:
        return importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        if e.name == mod_name:
            return None
        raise


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="eval_command", metavar="SUBCOMMAND")
    for name, (_, summary) in SUBCOMMANDS.items():
        mod = _module(name)
        if mod is None:
            continue
        p = sub.add_parser(name, help=summary, description=summary,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        getattr(mod, "configure_" + name.replace("-", "_"))(p)
        p.set_defaults(_eval_run=getattr(mod, "run_" + name.replace("-", "_")))


def run(args) -> int:
    from jprefs.errors import ConfigError

    if getattr(args, "_eval_run", None) is None:
        raise ConfigError("no subcommand given\n  fix: jprefs eval rm|policy|judge|export-human|import-human "
                          "(jprefs eval --help shows examples)")
    return int(args._eval_run(args) or 0)
