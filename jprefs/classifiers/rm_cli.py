"""``jprefs rm``: the catalogue of public Japanese-capable reward models.

    jprefs rm list            # a table: id, chosen label, input, max length, licence, trained on
    jprefs rm list --json     # every field of every entry, with the source of each

The catalogue (``jprefs/resources/rm_catalogue.yaml``) is what lets
``RewardModel.from_pretrained(HUB_ID)``, ``jprefs score HUB_ID`` and ``jprefs eval rm --model HUB_ID``
score a public reward model without flags.
"""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  jprefs rm list
  jprefs rm list --json > catalogue.json
  jprefs score cyberagent/ca-reward-3b-ja pairs.jsonl -o scored.jsonl      # scored as its entry says
  jprefs eval rm --model OpenAssistant/reward-model-deberta-v3-large-v2 --model out/rm --data pairs.jsonl -o lb/
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    sub = parser.add_subparsers(dest="rm_command", metavar="SUBCOMMAND")
    p = sub.add_parser("list", help="print the reward-model catalogue", description="print the reward-model catalogue",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="every field of every entry as JSON (with sources)")


def _chosen(e) -> str:
    if e.num_labels == 1:
        return "logit 0 (one logit)"
    name = f" {e.chosen_name}" if e.chosen_name and e.chosen_name != "unknown" else " (name unknown)"
    return f"{e.chosen_index}{name} of {e.num_labels}"


def table(entries) -> str:
    """The catalogue as an aligned text table (one row per entry; unsupported ones marked)."""
    head = ("id", "chosen label", "input", "max length", "licence", "trained on")
    rows = []
    for e in entries:
        trained = ", ".join(e.trained_on)
        rows.append((e.id + ("" if e.supported else "  [not supported]"), _chosen(e), e.input,
                     str(e.max_length) if e.max_length else "unknown", e.licence,
                     trained if len(trained) <= 60 else trained[:57] + "..."))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()   # noqa: E731
    lines = [fmt(head), fmt(tuple("-" * w for w in widths)), *map(fmt, rows)]
    unsupported = [e for e in entries if not e.supported]
    if unsupported:
        lines.append("")
        lines += [f"not supported: {e.id}: {e.reason}" for e in unsupported]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from jprefs.classifiers.catalogue import load_catalogue
    from jprefs.errors import ConfigError

    if getattr(args, "rm_command", None) != "list":
        raise ConfigError("no subcommand given\n  fix: jprefs rm list [--json] (jprefs rm --help shows examples)")
    entries = load_catalogue()
    if args.json:
        import json

        print(json.dumps([e.to_dict() for e in entries], ensure_ascii=False, indent=2))
    else:
        print(table(entries))
    return 0
