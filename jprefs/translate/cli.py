"""``jprefs translate``: translate preference sets into Japanese.

Light at import time: the pipeline (and any engine backend) is imported in ``run``.
"""

from __future__ import annotations

import argparse
import shlex

EXAMPLES = """examples:
  # any OpenAI-compatible server (e.g. `vllm serve cyberagent/calm3-22b-chat`)
  jprefs translate hh.jsonl.gz --source hh-rlhf --engine openai --model cyberagent/calm3-22b-chat \\
      --base-url http://127.0.0.1:8000/v1 -o out/hh-ja
  # a recipe plus key=value overrides (vLLM offline batch inference on GPUs)
  jprefs translate translate/recipes/calm3-22b-vllm.yaml input=pairs.jsonl output=out/ja tensor_parallel_size=2
  # how much would be sent? (no engine)
  jprefs translate pairs.jsonl -o out/ja --dry-run
  # split across machines, then join
  jprefs translate RECIPE.yaml input=pairs.jsonl --shard 0/4 -o out/shard0     # ... on 4 machines
  jprefs translate merge out/shard0 out/shard1 out/shard2 out/shard3 -o out/ja

Rerun the same command after a crash or kill: finished work is kept (OUT/cache) and the
output is the same as an uninterrupted run. Recipe keys: `jprefs translate --help-config`."""

# flag -> config field; flags override the recipe, key=value overrides override flags
FLAGS = {"source": "source", "engine": "engine", "model": "model", "revision": "revision", "base_url": "base_url",
         "output": "output", "template": "template", "shard": "shard", "limit": "limit", "license": "license",
         "pack_units": "pack_units", "concurrency": "concurrency", "cache_dir": "cache_dir"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    # `INPUT --engine openai ... -o DIR key=value`: positionals may come after options
    parser.parse_args = parser.parse_intermixed_args  # type: ignore[method-assign]
    parser.add_argument("args", nargs="*", metavar="INPUT|RECIPE.yaml|merge [key=value ...]",
                        help="an input file (or Hub id), or a recipe YAML; then key=value overrides. "
                             "`merge DIR...` joins --shard outputs.")
    parser.add_argument("--source", help="source adapter (hh-rlhf, webgpt, gptj-pairwise, summarize, generic; "
                                         "default: canonical jprefs pairs)")
    parser.add_argument("--engine", help="vllm | openai | transformers")
    parser.add_argument("--model", help="model id (openai engine: the served model name)")
    parser.add_argument("--revision", help="model revision to pin and record")
    parser.add_argument("--base-url", dest="base_url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("-o", "--output", help="output folder")
    parser.add_argument("--template", help="prompt template YAML (default builtin:en-ja)")
    parser.add_argument("--shard", help="i/n: translate shard i of n (0-based); join with `merge`")
    parser.add_argument("--limit", type=int, help="first N input rows only")
    parser.add_argument("--license", help="licence to record where the source gives none (SPDX id)")
    parser.add_argument("--pack-units", dest="pack_units", type=int, help="units per request")
    parser.add_argument("--concurrency", type=int, help="openai engine: requests in flight")
    parser.add_argument("--cache-dir", dest="cache_dir", help="translation cache (default OUTPUT/cache)")
    parser.add_argument("--dry-run", action="store_true", help="plan only: print what would be sent, send nothing")
    parser.add_argument("--help-config", action="store_true", help="list every config key with its help")


def _config(args, positional: list[str]):
    from jprefs.config import load_config, parse_overrides
    from jprefs.translate.config import TranslateConfig

    recipe = None
    values: dict = {}
    rest = list(positional)
    if rest and "=" not in rest[0]:
        first = rest.pop(0)
        if first.endswith((".yaml", ".yml")):
            recipe = first
        else:
            values["input"] = first
    values.update({f: getattr(args, a) for a, f in FLAGS.items() if getattr(args, a, None) is not None})
    values.update(parse_overrides(rest))
    return load_config(TranslateConfig, recipe, values)


def run(args: argparse.Namespace) -> int:
    if args.help_config:
        from jprefs.config import config_help
        from jprefs.translate.config import TranslateConfig

        print(config_help(TranslateConfig))
        return 0
    command = _command(args)
    positional = list(args.args)
    if positional and positional[0] == "merge":
        return _merge(args, positional[1:], command)
    cfg = _config(args, positional)
    from jprefs.translate import pipeline

    if args.dry_run:
        from jprefs.translate.prompts import load_template

        loaded = pipeline.load_input(cfg)
        plan = pipeline.make_plan(loaded.pairs, cfg.max_unit_tokens, cfg.pack_units, cfg.pack_max_tokens)
        stats = pipeline.plan_stats(plan, load_template(cfg.template))
        stats.update(rows_in=loaded.rows_in, input_rejects=len(loaded.rejects))
        for k, v in stats.items():
            print(f"{k:>26}: {v}")
        return 0
    try:
        summary = pipeline.run_translate(cfg, command=command)
    except pipeline.UnitsFailed as e:  # the output is written: show its summary, then the error (exit 2)
        _print_summary(e.summary, cfg.output)
        raise
    _print_summary(summary, cfg.output)
    return 0


def _command(args) -> str:
    """The command line, rebuilt from the parsed arguments (for the dataset card).

    Rebuilt rather than read from ``sys.argv`` so that it is right however ``main`` was called.
    """
    parts = ["jprefs", "translate", *args.args]
    for a in FLAGS:
        v = getattr(args, a, None)
        if v is not None:
            parts += ["--" + a.replace("_", "-"), str(v)]
    from jprefs.redact import redact_url

    # the card shows this: a --base-url http://user:KEY@host must not put the key in it
    return " ".join(shlex.quote(redact_url(p)) for p in parts)


def _merge(args, dirs: list[str], command: str) -> int:
    from pathlib import Path

    from jprefs.config import load_config
    from jprefs.errors import ConfigError
    from jprefs.translate import pipeline
    from jprefs.translate.config import TranslateConfig

    if not dirs or not args.output:
        raise ConfigError("usage: jprefs translate merge SHARD_DIR [SHARD_DIR ...] -o OUT")
    saved = sorted(Path(dirs[0]).glob("config.shard*.yaml"))
    if not saved:
        raise ConfigError(f"{dirs[0]} has no config.shard*.yaml: not the output of `jprefs translate --shard i/n`")
    over = {"output": args.output, "shard": "", "cache_dir": ""}
    cfg = load_config(TranslateConfig, saved[0], over)
    summary = pipeline.merge_shards(dirs, cfg, command=command)  # merge sends nothing: no UnitsFailed
    _print_summary(summary, cfg.output)
    return 0


def _print_summary(s: dict, out: str) -> None:
    from jprefs.data.io import eprint

    failed = s.get("units_failed", 0)
    if "shard" in s:
        eprint(f"shard {s['shard']}: translated {s['units_translated_now']} units "
               f"({s['cache_hits']} of {s['distinct_units']} were cached"
               + (f"; {failed} got no translation" if failed else "") + "); merge the shards with "
               "`jprefs translate merge DIR... -o OUT`")
        return
    eprint(f"rows in {s['rows_in']} = {s['records']} records + {s['input_rejects']} rejected while reading; "
           f"pairs {s['pairs_in']} -> kept {s['pairs_out']} + rejected {s['quality_rejects']}"
           + (f" + not translated {s['rows_untranslated']}" if s.get("rows_untranslated") else ""))
    eprint(f"units: {s['unit_occurrences']} occurrences, {s['distinct_units']} distinct "
           f"(sent/naive chars {s['dedup_ratio']}); cache hits {s['cache_hits']}, translated now "
           f"{s['units_translated_now']} in {s['requests_sent']} requests")
    eprint(f"engine tokens in/out: {s['engine_tokens_in']}/{s['engine_tokens_out']}; "
           f"template overhead {s['template_overhead_chars_sent']} chars for {s['source_chars_sent']} source chars; "
           f"retries {s['engine_retries']}; pack fallbacks {s['pack_fallbacks']}"
           + (f"; units without translation {failed} (not cached)" if failed else ""))
    eprint("rejects by reason: " + (", ".join(f"{k} {v}" for k, v in s["rejects_by_reason"].items()) or "none"))
    unknown = s["licenses"].get("unknown", 0) + s["licenses"].get("", 0)
    if unknown:
        eprint(f"WARNING: licence unknown for {unknown} of {s['pairs_in']} pairs: do not publish before checking "
               f"the source's terms (set license=SPDX-ID)")
    eprint(f"wrote {out}/pairs.jsonl, binary.jsonl, rejects.jsonl, README.md, summary.json")
