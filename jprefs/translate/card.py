"""The dataset card (``README.md``) of a translation output, with Hub-valid YAML front matter.

Licences are propagated from the source rows. If any row's licence is unknown the
card says so at the top, in bold, and ``license: unknown`` goes in the metadata:
such a set must not be published until someone checks the source's terms.

Only deterministic facts go in the card (counts, filters, model, command), never
timings or cache statistics, so a resumed run writes the same card. Credentials in
URLs (a ``--base-url http://user:KEY@host`` in the command) are redacted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jprefs.data.export import TRL_FORMAT_DOCS, TRL_FORMATS
from jprefs.data.io import atomic_write_text
from jprefs.data.schema import UNKNOWN_LICENSE
from jprefs.redact import redact_url

HUB_IDS = {"hh-rlhf": "Anthropic/hh-rlhf", "webgpt": "openai/webgpt_comparisons",
           "gptj-pairwise": "Dahoas/synthetic-instruct-gptj-pairwise",
           "summarize": "openai/summarize_from_feedback"}


def size_category(n: int) -> str:
    """Hub size bucket: ``n<1K``, ``1K<n<10K``, ... ``1M<n<10M``."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "10M<n<100M"


def _license_id(lic: str) -> str:
    lic = (lic or UNKNOWN_LICENSE).strip().lower().replace(" ", "-")
    return lic or UNKNOWN_LICENSE


def render_card(cfg, template, summary: dict[str, Any], command: str = "", sources: list[str] | None = None) -> str:
    """Markdown card with YAML front matter (license, language, task_categories, size, sources)."""
    import yaml

    licenses = {_license_id(k): v for k, v in summary.get("licenses", {}).items()}
    unknown = sum(v for k, v in licenses.items() if k in (UNKNOWN_LICENSE, "other", ""))
    lic_ids = sorted(licenses) or [UNKNOWN_LICENSE]
    srcs = sorted({HUB_IDS.get(s, s) for s in (sources or [cfg.source])})
    name = cfg.dataset_name or Path(cfg.output).resolve().name
    meta = {
        "license": lic_ids[0] if len(lic_ids) == 1 else lic_ids,
        "language": ["ja"],
        "task_categories": ["text-generation", "text-classification"],
        "tags": ["preference", "rlhf", "reward-modeling", "machine-translated"],
        "size_categories": [size_category(summary.get("pairs_out", 0))],
        "source_datasets": srcs,
        "pretty_name": name,
        "configs": [{"config_name": "pairs", "data_files": "pairs.jsonl", "default": True},
                    {"config_name": "binary", "data_files": "binary.jsonl"}]
                   + [{"config_name": f, "data_files": f"{f}.jsonl"} for f in TRL_FORMATS],
    }
    warn = ""
    if unknown:
        warn = (f"\n> **WARNING: the licence of {unknown} of {summary.get('pairs_in', 0)} source pairs is unknown.**\n"
                f"> Do not publish this set until the terms of the source are checked; then rerun with\n"
                f"> `license=SPDX-ID` (or fix the input's `license` field).\n")
    failed = summary.get("units_failed", 0)
    if failed:
        warn += (f"\n> **WARNING: {failed} translation units got no translation from the engine; "
                 f"{summary.get('rows_untranslated', 0)} rows are missing** (`rejects.jsonl`, reason "
                 f"`no_translation`).\n> Rerun the same command to translate them before using this set.\n")
    rej = summary.get("rejects_by_reason", {})
    lines = [
        "---", yaml.safe_dump(meta, allow_unicode=True, sort_keys=False).rstrip(), "---", "",
        f"# {name}", warn,
        f"Japanese machine translation of {', '.join(srcs)} made with `jprefs translate`.", "",
        "## Contents", "",
        "| file | rows | what |", "|---|---:|---|",
        f"| `pairs.jsonl` | {summary.get('pairs_out', 0)} | preference pairs: prompt (conversation), chosen, rejected; "
        f"`meta.translation` has the source ids, model, template hash, sampling and quality scores |",
        f"| `binary.jsonl` | {summary.get('binary_out', 0)} | (prompt, response, label): chosen = 1, rejected = 0 |",
        *(f"| `{f}.jsonl` | {summary.get('trl_rows', {}).get(f, 0)} | {TRL_FORMAT_DOCS[f]} |" for f in TRL_FORMATS),
        f"| `rejects.jsonl` | {sum(rej.values())} | rows not translated or failing a check, with the reason |", "",
        "Load one with `datasets.load_dataset(\"DIR\", \"trl-conversational\")` (DIR: this folder or its Hub id) "
        "and hand it to the trl trainer as is.", "",
        "## Counts", "",
        f"- input rows: {summary.get('rows_in', 0)} (rejected while reading: {summary.get('input_rejects', 0)}); "
        f"pairs: {summary.get('pairs_in', 0)}; kept: {summary.get('pairs_out', 0)}; "
        f"rejected by the checks: {summary.get('quality_rejects', 0)}"
        + (f"; not translated (no text from the engine): {summary['rows_untranslated']}"
           if summary.get("rows_untranslated") else ""),
        "- rejects by reason: " + (", ".join(f"{k} {v}" for k, v in rej.items()) or "none"),
        "- flags raised (a row can have several): " + (", ".join(f"{k} {v}" for k, v in summary.get("flags", {}).items()) or "none"),
        f"- translation units: {summary.get('unit_occurrences', 0)} occurrences, {summary.get('distinct_units', 0)} distinct; "
        f"source characters sent / naive total (prompt sent again with each response): {summary.get('dedup_ratio', 0)}",
        "- licences: " + ", ".join(f"{k} ({v} pairs)" for k, v in sorted(licenses.items())), "",
        "## Translation", "",
        f"- engine: `{cfg.engine}`, model: `{cfg.model}`" + (f" @ `{cfg.revision}`" if cfg.revision else " (revision not pinned)"),
        f"- prompt template: `{template.name}` (hash `{template.hash}`), rendered with the model's chat template",
        f"- sampling: temperature {cfg.temperature}, top_p {cfg.top_p}, max_tokens {cfg.max_tokens}, seed {cfg.seed}",
        f"- segmentation: texts over {cfg.max_unit_tokens} estimated tokens split at paragraph/sentence boundaries; "
        f"code blocks, inline code and URLs copied byte for byte",
        "",
        "## Filters", "",
        f"Rows are rejected when a field is flagged with one of: {', '.join(cfg.reject_on)}.",
        f"Thresholds: Japanese share of letters >= {cfg.min_japanese_ratio} (sources with >= {cfg.min_letters} letters); "
        f"English runs < {cfg.max_english_run} words; length ratio in [{cfg.min_length_ratio}, {cfg.max_length_ratio}] "
        f"(sources >= {cfg.min_chars} chars); no repetition loops, chat-template markup, truncation, empty outputs or refusals"
        + (f"; similarity >= {cfg.min_similarity} with `{cfg.similarity_model}`" if cfg.similarity_model else "") + ".",
        "",
        "## Command", "", "```", redact_url(command) or "jprefs translate config.yaml", "```", "",
        "Machine translation: expect errors; the quality flags catch gross failures only.", "",
    ]
    return redact_url("\n".join(lines))  # the command is not the only place a URL can show up


def write_card(path, cfg, template, summary: dict[str, Any], command: str = "") -> Path:
    """Write the card atomically; returns its path."""
    return atomic_write_text(path, render_card(cfg, template, summary, command,
                                               sources=summary.get("sources")))
