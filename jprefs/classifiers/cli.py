"""``jprefs train-rm``: train a Japanese reward model (binary classifier, Bradley-Terry, listwise).

Two forms (other tools script against both)::

    jprefs train-rm RECIPE.yaml [key=value ...] -o DIR
    jprefs train-rm --data PAIRS --backbone ID_OR_PATH --objective binary|pairwise|listwise -o DIR

Light at import time: torch and transformers are imported only when training starts.
"""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  jprefs train-rm classifiers/recipes/e5-small-chabsa.yaml -o out/chabsa-rm
  jprefs train-rm classifiers/recipes/tiny.yaml epochs=1 -o /tmp/rm
  jprefs train-rm --data pairs.jsonl --backbone e5-small-offline --objective pairwise -o out/rm
  jprefs train-rm --data hh.jsonl.gz --data-source hh-rlhf --objective pairwise max_length=256 -o out/hh
  torchrun --nproc_per_node 2 -m jprefs.cli train-rm classifiers/recipes/bge-m3-seed.yaml -o out/bge-m3
  jprefs train-rm classifiers/recipes/e5-small-ja-debiased.yaml -o out/ja-debiased-rm      # a reward stack
  jprefs train-rm classifiers/recipes/e5-small-ja-debiased.yaml 'stack=[]' stack_head= -o out/ja-odin
  jprefs train-rm classifiers/recipes/e5-small-ja-debiased.yaml 'ensemble_seeds=[1,2,3]' -o out/ja-ens-stack
  jprefs train-rm classifiers/recipes/e5-small-ja-mt-bench.yaml 'ensemble_seeds=[1,2,3]' -o out/ja-ensemble

keys (recipe or key=value):
"""


def configure(parser: argparse.ArgumentParser) -> None:
    from jprefs.classifiers.config import TrainRMConfig
    from jprefs.config import config_help

    parser.epilog = EXAMPLES + config_help(TrainRMConfig)
    parser.add_argument("recipe", nargs="?", help="recipe YAML (flat keys of the train-rm config)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. epochs=1 lr=3e-5")
    parser.add_argument("-o", "--output-dir", required=True, help="output directory for the model and reports")
    parser.add_argument("--data", help="training data (pairs JSONL, binary JSONL, or text<TAB>label TSV)")
    parser.add_argument("--eval-data", help="held-out data (default: split off by prompt)")
    parser.add_argument("--test-data", help="final test data (evaluated once, never used for selection)")
    parser.add_argument("--data-source", help="read --data through a jprefs.data.adapters source (e.g. hh-rlhf)")
    parser.add_argument("--backbone", help="Hub id or path of an encoder, or e5-small-offline")
    parser.add_argument("--objective", choices=["binary", "pairwise", "listwise"])


def build_config(args: argparse.Namespace):
    """The resolved config: recipe, then key=value overrides, then the explicit flags."""
    from jprefs.classifiers.config import TrainRMConfig
    from jprefs.config import load_config, parse_overrides
    from jprefs.errors import ConfigError

    recipe = args.recipe
    overrides = list(args.overrides or [])
    if recipe and "=" in recipe and not recipe.endswith((".yaml", ".yml")):
        overrides.insert(0, recipe)   # `jprefs train-rm key=value ... -o DIR` without a recipe
        recipe = None
    ov = parse_overrides(overrides)
    for flag in ("data", "eval_data", "test_data", "data_source", "backbone", "objective"):
        v = getattr(args, flag, None)
        if v is not None:
            ov[flag] = v
    ov["output_dir"] = args.output_dir
    cfg = load_config(TrainRMConfig, recipe, ov)
    if not cfg.data:
        raise ConfigError("no training data\n  fix: pass --data FILE or a recipe with `data:` "
                          "(see classifiers/recipes/)")
    return cfg


def run(args: argparse.Namespace) -> int:
    from jprefs.classifiers.train import train_reward_model
    from jprefs.data.io import eprint

    cfg = build_config(args)
    if cfg.stack:
        from jprefs.classifiers.stack import train_stack

        metrics = train_stack(cfg, log=eprint)
    elif cfg.ensemble_seeds:
        from jprefs.classifiers.ensemble import train_ensemble

        metrics = train_ensemble(cfg, log=eprint)
    else:
        metrics = train_reward_model(cfg, log=eprint)
    for split in ("eval", "test"):
        m = metrics.get(split)
        if m:
            keys = [k for k in ("accuracy", "roc_auc", "pairwise_accuracy", "length_baseline_accuracy") if k in m]
            print(f"{split}: " + "  ".join(f"{k}={m[k]:.4f}" for k in keys))
    return 0
