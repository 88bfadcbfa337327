"""``jprefs rl RECIPE.yaml [key=value ...] -o DIR``: SFT, ILQL and PPO, and DPO/KTO/GRPO/RLOO through trl.

Light at import time: torch and transformers are imported only when a run starts.
"""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  jprefs rl rl/recipes/ppo-tiny-cpu.yaml -o runs/ppo-tiny
  jprefs rl rl/recipes/ilql-tiny-cpu.yaml -o runs/ilql-tiny total_steps=50
  jprefs rl rl/recipes/sft-aozora-cpu.yaml -o runs/sft sft_data='../shared/data/aozora/*.jsonl.gz'
  jprefs rl rl/recipes/ppo-tiny-cpu.yaml -o runs/ppo-rm reward_type=rm reward_model=rm/
  jprefs rl rl/recipes/ppo-tiny-cpu.yaml -o runs/ppo-tiny save_every=10   # rerun the same to resume
  jprefs rl rl/recipes/ppo-tiny-cpu.yaml -o runs/ppo-tiny resume=false    # start over in the same folder
  jprefs rl --list-keys              # every config key with its default and help
  accelerate launch --multi_gpu --num_processes 4 -m jprefs.cli rl rl/recipes/ppo-hh-gpu.yaml -o runs/ppo-hh   # data-parallel

outputs (DIR): config.yaml, metrics.jsonl, samples.jsonl, curves.png, policy/ (safetensors +
tokenizer), value_head / ilql_heads (.safetensors + .json), summary.json"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    parser.add_argument("recipe", nargs="?", help="recipe YAML (rl/recipes/*.yaml); omit to use defaults")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides (see --list-keys)")
    parser.add_argument("-o", "--output", help="output directory for the run")
    parser.add_argument("--list-keys", action="store_true", help="print every config key and exit")
    # Allow `RECIPE -o DIR key=value ...` (overrides after options); plain parse_args cannot.
    parser.parse_args = parser.parse_intermixed_args


def run(args) -> int:
    from jprefs.config import config_help, load_config
    from jprefs.errors import ConfigError
    from jprefs.rl.config import RLConfig

    if args.list_keys:
        print(config_help(RLConfig))
        return 0
    recipe, overrides = args.recipe, list(args.overrides)
    if recipe and "=" in recipe and not recipe.endswith((".yaml", ".yml")):
        recipe, overrides = None, [recipe] + overrides
    if not args.output:
        raise ConfigError("no output directory; fix: add -o DIR (e.g. -o runs/ppo)")
    cfg = load_config(RLConfig, recipe, overrides)

    import json
    import os

    from jprefs.rl.runner import run as run_algo

    from jprefs.errors import JprefsError
    from jprefs.rl.dist import end_process, world_size_from_env

    try:
        summary = run_algo(cfg, args.output)
    except JprefsError as e:
        if world_size_from_env() <= 1:
            raise
        # A data-parallel process that stops on a user error (e.g. the folder is busy: every
        # process raises it, see jprefs.runlock.run_lock) says so and ends like a finished one.
        import sys

        rank = os.environ.get("RANK", "0")
        print(f"jprefs rl{'' if rank == '0' else f' (process {rank})'}: error: {e}", file=sys.stderr)
        end_process(2)
    if os.environ.get("RANK", "0") == "0":          # data-parallel: the main process reports
        print(json.dumps({k: v for k, v in summary.items() if k != "final"}, ensure_ascii=False, indent=2,
                         default=str))
        print(f"jprefs rl: outputs in {args.output}/ (policy/, metrics.jsonl, samples.jsonl, curves.png, summary.json)")
    if world_size_from_env() > 1:
        end_process(0)                              # see end_process: no interpreter teardown after a finished run
    return 0
