"""The translation pipeline: plan units, translate each distinct unit once, check, reassemble.

1. **Plan.** Every pair becomes fields (each prompt turn, chosen, rejected), every
   field becomes segments (:mod:`jprefs.translate.segment`). Distinct units are
   collected across the whole dataset in first-appearance order, so a prompt
   shared by chosen and rejected, or by many rows, is translated once.
2. **Translate.** Distinct units are grouped into requests (``pack_units`` per
   request), requests whose units are all cached are skipped, and the rest go to
   the engine ``chunk_size`` requests at a time; every chunk's results are written
   to the cache as one atomic checkpoint file before the next chunk starts.
   ``shard=i/n`` keeps the requests whose hash falls in shard i.
3. **Assemble.** Rows are rebuilt from the cache in input order (roles intact,
   code and URLs restored byte for byte), checked, and written: ``pairs.jsonl``,
   ``binary.jsonl``, ``rejects.jsonl``, ``README.md`` (dataset card),
   ``config.yaml`` and ``summary.json``.

Because the output is a pure function of (input, config, cache), a run killed at
any moment and rerun produces byte-identical files.

Example::

    cfg = load_config(TranslateConfig, "translate/recipes/calm3-22b-vllm.yaml", ["input=p.jsonl", "output=out"])
    summary = run_translate(cfg)
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jprefs.config import save_config
from jprefs.data.io import RejectsWriter, atomic_write_json, iter_records, reject_entry, write_jsonl
from jprefs.data.schema import Message, PreferencePair, SchemaError, UNKNOWN_LICENSE, expand_pairs
from jprefs.errors import ConfigError, DataError, JprefsError
from jprefs.redact import redact
from jprefs.translate.cache import Cache, unit_key
from jprefs.translate.config import TranslateConfig
from jprefs.translate.engines import EngineError, Sampling, get_engine
from jprefs.translate.prompts import Template, clean_output, load_template
from jprefs.translate.quality import INCOMPLETE, Thresholds, check_unit, unit_scores
from jprefs.translate.segment import Segment, est_tokens, reassemble, segment_text


# ---------------------------------------------------------------- input

@dataclass
class Loaded:
    pairs: list[PreferencePair]
    rejects: list[dict]        # input rows that could not be read: {line|index, reason, error, raw}
    rows_in: int               # input rows read (= records + rejects)
    records: int               # records read (rank lists count once; expanded into pairs)


def load_input(cfg: TranslateConfig) -> Loaded:
    """Read the input with the chosen source adapter ('jprefs' = canonical JSONL).

    >>> load_input(TranslateConfig(input="hh.jsonl.gz", source="hh-rlhf")).pairs[0].prompt  # doctest: +SKIP
    """
    if not cfg.input:
        raise ConfigError("no input given\n  fix: jprefs translate INPUT ... (or input=PATH in the recipe)")
    jsonl = str(cfg.input).lower().endswith((".jsonl", ".jsonl.gz", ".ndjson"))
    if cfg.source in ("jprefs", "canonical") and jsonl:
        records, rejects, rows = [], [], 0
        for row, rec in iter_records(cfg.input):
            if cfg.limit and rows >= cfg.limit:
                break
            rows += 1
            if rec is None:
                rejects.append(reject_entry(row, row.reason or "invalid_record"))
            else:
                records.append(rec)
    else:
        try:
            from jprefs.data.adapters import convert
        except ImportError as e:
            raise ConfigError(f"source adapters are not available in this install ({e})\n"
                              f"  fix: convert first with `jprefs data convert`, then use --source jprefs") from e
        # canonical Parquet / JSON / CSV (jprefs data export writes Parquet) go through the table readers:
        # read as JSONL they were every row a reject, and the run "succeeded" with an empty dataset
        res = convert(cfg.input, source=cfg.source, mapping=cfg.mapping or None, split=cfg.split,
                      license=cfg.license or None, strict=False, limit=cfg.limit or None, show_progress=True)
        records, rejects, rows = list(res.records), list(res.rejects), res.rows_in
    if rows and not records:
        first = rejects[0] if rejects else {}
        raise DataError(f"no usable record among {rows} rows (first reject: line/index "
                        f"{first.get('line', first.get('index', '?'))}, {first.get('reason', '?')}: "
                        f"{str(first.get('error', ''))[:160]})", path=str(cfg.input),
                        fix="check --source (and --map) against the file's layout; `jprefs data convert` shows "
                            "the rejects")
    for rec in records:
        if cfg.license and rec.license in ("", UNKNOWN_LICENSE):
            rec.license = cfg.license
    return Loaded(list(expand_pairs(records)), rejects, rows, len(records))


# ---------------------------------------------------------------- plan

@dataclass
class Plan:
    """Segmented rows and the distinct units to translate."""

    fields: list[list[tuple[str, list[Segment]]]]  # per pair: [(field name, segments)]
    units: list[str]                                 # distinct unit texts, first-appearance order
    occurrences: int                                 # unit occurrences over all pairs (prompt counted once)
    naive_chars: int                                 # chars of prompt+chosen and prompt+rejected, per pair
    packs: list[list[int]] = field(default_factory=list)  # unit indices per request


def pair_fields(p: PreferencePair) -> list[tuple[str, str]]:
    """(name, text) of every translatable field of a pair, in a fixed order."""
    return [(f"prompt.{i}", m.content) for i, m in enumerate(p.prompt)] + [("chosen", p.chosen),
                                                                           ("rejected", p.rejected)]


def make_plan(pairs: list[PreferencePair], max_unit_tokens: int, pack_units: int = 1,
              pack_max_tokens: int = 768) -> Plan:
    """Segment every field and de-duplicate units across the whole dataset.

    >>> p = PreferencePair.create("Hi there", "Hello!", "Go away.")
    >>> make_plan([p, p], 512).units
    ['Hi there', 'Hello!', 'Go away.']
    """
    seg_cache: dict[str, list[Segment]] = {}
    index: dict[str, int] = {}
    fields, occ, naive = [], 0, 0
    for p in pairs:
        row = []
        for name, text in pair_fields(p):
            segs = seg_cache.get(text)
            if segs is None:
                segs = seg_cache[text] = segment_text(text, max_unit_tokens)
            for s in segs:
                if s.kind == "unit":
                    occ += 1
                    index.setdefault(s.text, len(index))
            row.append((name, segs))
        fields.append(row)
        prompt_chars = sum(len(m.content) for m in p.prompt)
        naive += 2 * prompt_chars + len(p.chosen) + len(p.rejected)
    plan = Plan(fields, list(index), occ, naive)
    plan.packs = make_packs(plan.units, pack_units, pack_max_tokens)
    return plan


def make_packs(units: list[str], pack_units: int, pack_max_tokens: int) -> list[list[int]]:
    """Consecutive units grouped into requests: at most ``pack_units`` and ``pack_max_tokens``.

    >>> make_packs(["a", "b", "c"], 2, 100)
    [[0, 1], [2]]
    """
    packs: list[list[int]] = []
    cur: list[int] = []
    tokens = 0
    for i, u in enumerate(units):
        t = est_tokens(u)
        if cur and (len(cur) >= pack_units or tokens + t > pack_max_tokens):
            packs.append(cur)
            cur, tokens = [], 0
        cur.append(i)
        tokens += t
    if cur:
        packs.append(cur)
    return packs


def plan_stats(plan: Plan, template: Template) -> dict[str, Any]:
    """Characters a full run would send: sources, and template overhead on top of them.

    >>> plan_stats(make_plan(pairs, 1024), load_template("builtin:en-ja"))["dedup_ratio"]  # doctest: +SKIP
    0.6289
    """
    src = sum(len(u) for u in plan.units)
    over = sum(template.overhead_chars([plan.units[i] for i in p]) for p in plan.packs)
    return {"pairs": len(plan.fields), "unit_occurrences": plan.occurrences, "distinct_units": len(plan.units),
            "requests": len(plan.packs), "naive_chars": plan.naive_chars, "source_chars": src,
            "dedup_ratio": round(src / max(1, plan.naive_chars), 4), "template_overhead_chars": over,
            "template_overhead_ratio": round(over / max(1, src), 4)}


# ---------------------------------------------------------------- translate

def engine_kwargs(cfg: TranslateConfig) -> dict[str, Any]:
    common = {"model": cfg.model, "revision": cfg.revision or None}
    if cfg.engine == "openai":
        return {**common, "base_url": cfg.base_url, "api_key_env": cfg.api_key_env, "concurrency": cfg.concurrency,
                "timeout": cfg.timeout, "max_retries": cfg.max_retries, "backoff": cfg.backoff}
    if cfg.engine == "vllm":
        return {**common, "tensor_parallel_size": cfg.tensor_parallel_size, "max_model_len": cfg.max_model_len or None,
                "gpu_memory_utilization": cfg.gpu_memory_utilization, "dtype": cfg.dtype, "seed": cfg.seed}
    return {**common, "device": cfg.device, "dtype": cfg.dtype, "batch_size": cfg.batch_size, "seed": cfg.seed}


@dataclass
class RunStats:
    requests: int = 0
    units_sent: int = 0
    source_chars_sent: int = 0
    template_overhead_chars: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    pack_fallbacks: int = 0
    checkpoints_written: int = 0
    engine_seconds: float = 0.0
    retries: int = 0
    units_translated: int = 0                        # units that got text this run (a pack retried alone counts once)
    failed: list[int] = field(default_factory=list)  # units the engine gave no text (never cached)


def _shard_of(key: str, n: int) -> int:
    return int(key[:8], 16) % n


def translate_units(plan: Plan, keys: list[str], cache: Cache, cfg: TranslateConfig, template: Template,
                    engine_factory) -> RunStats:
    """Send every uncached unit of this shard to the engine, checkpointing each chunk.

    A unit the engine returns no text for is not cached; its index goes to ``RunStats.failed``
    and the job goes on (``run_translate`` reports it at the end).

    >>> translate_units(plan, keys, Cache("out/cache"), cfg, template, lambda: engine)  # doctest: +SKIP
    RunStats(requests=..., units_sent=..., ...)
    """
    from jprefs.progress import progress

    i_shard, n_shard = cfg.shard_index()
    todo = []
    for pack in plan.packs:
        if n_shard > 1 and _shard_of(keys[pack[0]], n_shard) != i_shard:
            continue
        missing = [u for u in pack if keys[u] not in cache]
        if missing:
            todo.append(missing)
    st = RunStats()
    if not todo:
        return st
    sampling = Sampling(**cfg.sampling_dict())
    engine = engine_factory()
    check = getattr(engine, "check", None)  # a server engine: is anything listening? (seconds, not retries)
    if check is not None:
        try:
            check()
        except BaseException:
            close = getattr(engine, "close", None)
            if close:
                close()
            raise
    tag = f"s{i_shard}of{n_shard}"
    t0 = time.perf_counter()
    try:
        with progress(total=sum(len(p) for p in todo), desc="translate", unit="unit") as bar:
            for c in range(0, len(todo), cfg.chunk_size):
                chunk = todo[c:c + cfg.chunk_size]
                records = _run_chunk(chunk, plan, keys, template, engine, sampling, st)
                st.units_translated += len(records)
                if cache.add(records, tag=tag) is not None:
                    st.checkpoints_written += 1
                bar.update(sum(len(p) for p in chunk))
                el = max(1e-9, time.perf_counter() - t0)
                bar.set_postfix(tok_in_s=f"{st.prompt_tokens / el:.0f}", tok_out_s=f"{st.completion_tokens / el:.0f}",
                                failed=len(st.failed))
    finally:
        st.engine_seconds = time.perf_counter() - t0
        st.retries = int(getattr(engine, "retries", 0))
        close = getattr(engine, "close", None)
        if close:
            close()
    return st


def _send(packs: list[list[int]], plan: Plan, template: Template, engine, sampling: Sampling, st: RunStats):
    convs = [template.messages([plan.units[u] for u in p]) for p in packs]
    gens = engine.generate(convs, sampling)
    if len(gens) != len(convs):
        raise JprefsError(f"engine returned {len(gens)} results for {len(convs)} requests (a bug in the engine)")
    for p, g in zip(packs, gens):
        texts = [plan.units[u] for u in p]
        st.requests += 1
        st.units_sent += len(p)
        st.source_chars_sent += sum(len(t) for t in texts)
        st.template_overhead_chars += template.overhead_chars(texts)
        st.prompt_tokens += g.prompt_tokens
        st.completion_tokens += g.completion_tokens
    return gens


def _no_text(g) -> bool:
    """An engine answer without text (null, empty or blank): no translation, a failed unit."""
    return not (g.text or "").strip()


def _run_chunk(chunk, plan, keys, template, engine, sampling, st) -> list[tuple[str, str, str]]:
    """Send one chunk of requests; return the cache records of the units translated.

    Units that got no text are not in the records (so never cached); they go to ``st.failed``.
    """
    records: list[tuple[str, str, str]] = []
    retry: list[int] = []

    def one(u: int, g) -> None:
        if _no_text(g):
            st.failed.append(u)
        else:
            records.append((keys[u], g.text, g.finish_reason))

    for p, g in zip(chunk, _send(chunk, plan, template, engine, sampling, st)):
        if len(p) == 1:
            one(p[0], g)
            continue
        items = template.parse(g.text or "", len(p)) if g.finish_reason not in INCOMPLETE else None
        if items is not None and any(not t.strip() for t in items):
            items = None  # an empty item is a unit without translation: ask for each unit alone
        if items is None:  # the model broke the packed format (or ran out of tokens): one unit per request
            st.pack_fallbacks += 1
            retry.extend(p)
        else:
            records.extend((keys[u], t, "stop") for u, t in zip(p, items))
    if retry:
        singles = [[u] for u in retry]
        for p, g in zip(singles, _send(singles, plan, template, engine, sampling, st)):
            one(p[0], g)
    return records


# ---------------------------------------------------------------- assemble

class MissingUnits(JprefsError):
    pass


class UnitsFailed(EngineError):
    """Some units got no translation from the engine. Raised after the rest of the output is
    written (their rows are in rejects.jsonl as ``no_translation``); ``summary`` is the run's."""

    def __init__(self, message: str, summary: dict[str, Any]):
        super().__init__(message)
        self.summary = summary


def assemble(loaded: Loaded, plan: Plan, keys: list[str], cache: Cache, cfg: TranslateConfig,
             template: Template, failed: set[str] | frozenset = frozenset()
             ) -> tuple[list[PreferencePair], RejectsWriter, Counter]:
    """Rebuild every pair from the cache, check it, and split kept pairs from rejects.

    ``failed``: keys of units the engine gave no text in this run; a row using one is
    rejected as ``no_translation`` (never written half translated). Any other unit missing
    from the cache is an error (an unfinished shard).

    >>> kept, rejects, flags = assemble(loaded, plan, keys, cache, cfg, template)  # doctest: +SKIP
    >>> len(kept) + len(rejects) == len(loaded.pairs) + len(loaded.rejects)      # doctest: +SKIP
    True
    """
    th = Thresholds(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(Thresholds)})
    uid = {u: i for i, u in enumerate(plan.units)}
    missing = [k for k in keys if k not in cache and k not in failed]
    if missing:
        raise MissingUnits(f"{len(missing)} of {len(keys)} units have no translation in the cache\n"
                           f"  fix: run every shard to completion (or rerun without --shard), then merge")
    unit_out: dict[int, tuple[str, list[str]]] = {}  # unit -> (clean text, flags), computed once per unit

    def unit(u: int) -> tuple[str, list[str]]:
        if u not in unit_out:
            raw, finish = cache.get(keys[u])
            t = clean_output(raw, plan.units[u])
            unit_out[u] = (t, check_unit(plan.units[u], t, finish, th))
        return unit_out[u]

    rejects = RejectsWriter(Path(cfg.output) / "rejects.jsonl")
    for r in loaded.rejects:
        loc = r.get("line", r.get("index"))
        rejects.add(loc if loc is not None else -1, r.get("reason", "invalid_record"), r.get("error", ""),
                    r.get("raw"), unit="index" if "index" in r else "line")
        rejects.rows[-1]["stage"] = "input"
    flag_counts: Counter = Counter()
    # out is None for a row with a unit that got no translation; flags then lists its fields
    rows: list[tuple[PreferencePair, dict[str, str] | None, dict[str, list[str]], dict]] = []
    for pair, fields in zip(loaded.pairs, plan.fields):
        untranslated = [name for name, segs in fields
                        if any(s.kind == "unit" and keys[uid[s.text]] in failed for s in segs)]
        if untranslated:
            rows.append((pair, None, {"fields": untranslated}, {}))
            continue
        out: dict[str, str] = {}
        flags: dict[str, list[str]] = {}
        scores: dict[str, dict] = {}
        for name, segs in fields:
            units = [unit(uid[s.text]) for s in segs if s.kind == "unit"]
            text, lost = reassemble(segs, [u[0] for u in units])
            f = sorted({x for u in units for x in u[1]} | ({"placeholder_lost"} if lost else set()))
            out[name], flags[name] = text, f
            scores[name] = unit_scores(
                "".join(s.text for s in segs if s.kind == "unit"), "".join(u[0] for u in units))
        rows.append((pair, out, flags, scores))
    if cfg.similarity_model:
        _add_similarity(rows, cfg)
    kept = []
    for idx, (pair, out, flags, scores) in enumerate(rows):
        if out is None:
            rejects.add(idx, "no_translation", f"the engine gave no text for {', '.join(flags['fields'])}; "
                                               f"a rerun of the same command retries it", pair.to_dict())
            rejects.rows[-1]["index"] = rejects.rows[-1].pop("line")
            rejects.rows[-1].update({"stage": "translate", "id": pair.id, "reasons": ["no_translation"],
                                     "fields": flags["fields"]})
            continue
        if out["chosen"].strip() and out["chosen"] == out["rejected"]:
            flags.setdefault("chosen", []).append("identical_after_translation")
        all_flags = [(n, f) for n, fs in flags.items() for f in fs]
        flag_counts.update(f for _, f in all_flags)
        blocking = [(n, f) for n, f in all_flags if f in cfg.reject_on]
        err = "; ".join(f"{n}: {f}" for n, f in blocking)
        if not blocking:
            try:
                kept.append(_translated_pair(pair, out, flags, scores, cfg, template))
                continue
            except SchemaError as e:  # e.g. a field that came back empty and is not flagged
                blocking, err = [("row", e.reason)], str(e)
        rejects.add(idx, blocking[0][1], err, pair.to_dict())
        rejects.rows[-1]["index"] = rejects.rows[-1].pop("line")  # position among the input pairs, 0-based
        rejects.rows[-1].update({"stage": "quality", "id": pair.id, "reasons": sorted({f for _, f in blocking}),
                                 "translation": out, "scores": scores})
    return kept, rejects, flag_counts


def _add_similarity(rows, cfg: TranslateConfig) -> None:
    from jprefs.translate.quality import similarity

    src, tgt, where = [], [], []
    for r, (pair, out, flags, scores) in enumerate(rows):
        if out is None:  # not translated: nothing to compare
            continue
        english = dict(pair_fields(pair))
        for name, text in out.items():
            src.append(english[name])
            tgt.append(text)
            where.append((r, name))
    for (r, name), s in zip(where, similarity(cfg.similarity_model, src, tgt)):
        rows[r][3][name]["similarity"] = round(s, 4)
        if s < cfg.min_similarity:
            rows[r][2][name].append("low_similarity")


def _translated_pair(pair: PreferencePair, out: dict[str, str], flags, scores, cfg: TranslateConfig,
                     template: Template) -> PreferencePair:
    meta = dict(pair.meta)
    info = {"source_pair_id": pair.id, "source_row_id": pair.source_id, "engine": cfg.engine, "model": cfg.model,
            "revision": cfg.revision or None, "template": template.name, "template_hash": template.hash,
            "sampling": cfg.sampling_dict(), "quality": scores,
            "flags": {n: f for n, f in flags.items() if f}}
    if cfg.keep_source_text:
        info["source"] = {"prompt": [m.to_dict() for m in pair.prompt], "chosen": pair.chosen,
                          "rejected": pair.rejected}
    meta["translation"] = info
    prompt = [Message(m.role, out[f"prompt.{i}"]) for i, m in enumerate(pair.prompt)]
    return PreferencePair(id=pair.id, prompt=prompt, chosen=out["chosen"], rejected=out["rejected"],
                          source=pair.source, source_id=pair.source_id, license=pair.license, meta=meta,
                          chosen_score=pair.chosen_score, rejected_score=pair.rejected_score, margin=pair.margin)


# ---------------------------------------------------------------- run

def run_translate(cfg: TranslateConfig, engine_factory=None, command: str = "") -> dict[str, Any]:
    """Run a whole job (or one shard) and return the summary.

    ``engine_factory`` builds the engine when there is work (default: the
    configured engine); it is never called when everything is cached.
    """
    if not cfg.output:
        raise ConfigError("no output folder given\n  fix: -o DIR (or output=DIR)")
    from jprefs.runlock import RunLock   # one writer per folder; shards of one job may share it

    with RunLock(cfg.output, "jprefs translate", shard=cfg.shard):
        return _run_translate_locked(cfg, engine_factory, command)


def _run_translate_locked(cfg: TranslateConfig, engine_factory=None, command: str = "") -> dict[str, Any]:
    t0 = time.perf_counter()
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    template = load_template(cfg.template)
    loaded = load_input(cfg)
    plan = make_plan(loaded.pairs, cfg.max_unit_tokens, cfg.pack_units, cfg.pack_max_tokens)
    sampling = cfg.sampling_dict()
    keys = [unit_key(u, cfg.model, cfg.revision, template.hash, sampling) for u in plan.units]
    cache = Cache(cfg.cache_dir or out / "cache")
    cached_before = sum(1 for k in keys if k in cache)
    save_config(cfg, out / ("config.yaml" if not cfg.shard else f"config.shard{cfg.shard_index()[0]}.yaml"))
    factory = engine_factory or (lambda: get_engine(cfg.engine, **engine_kwargs(cfg)))
    st = translate_units(plan, keys, cache, cfg, template, factory)
    summary: dict[str, Any] = {
        "rows_in": loaded.rows_in, "input_rejects": len(loaded.rejects), "records": loaded.records,
        "pairs_in": len(loaded.pairs), **plan_stats(plan, template),
        "dedup_savings_chars": plan.naive_chars - sum(len(u) for u in plan.units), "cache_hits": cached_before, "units_translated_now": st.units_translated, "requests_sent": st.requests,
        "source_chars_sent": st.source_chars_sent, "template_overhead_chars_sent": st.template_overhead_chars,
        "engine_tokens_in": st.prompt_tokens, "engine_tokens_out": st.completion_tokens,
        "pack_fallbacks": st.pack_fallbacks, "checkpoints_written": st.checkpoints_written,
        "engine_seconds": round(st.engine_seconds, 3), "engine_retries": st.retries,
        "units_failed": len(st.failed),
    }
    failed = {keys[u] for u in st.failed}
    if cfg.shard and cfg.shard_index()[1] > 1:
        summary["shard"] = cfg.shard
        atomic_write_json(out / f"summary.shard{cfg.shard_index()[0]}.json", redact(summary))
        _raise_if_failed(summary, cfg)
        return summary
    kept, rejects, flag_counts = assemble(loaded, plan, keys, cache, cfg, template, failed)
    untranslated = rejects.by_reason.get("no_translation", 0)
    # summary.json (written last) marks a complete set: a run killed while writing the files below leaves
    # none, rather than the previous run's summary and card beside this run's pairs
    for stale in ("summary.json", "README.md"):
        (out / stale).unlink(missing_ok=True)
    write_jsonl(out / "pairs.jsonl", (p.to_dict() for p in kept))
    from jprefs.data.export import binary_examples, write_trl_files

    # each response once (a rank list's pairs share responses: its middle answer was labelled both ways)
    n_binary = write_jsonl(out / "binary.jsonl", (b.to_dict() for b in binary_examples(kept)))

    trl_rows = write_trl_files(out, kept)  # the same pairs in trl's four layouts, one config each
    rejects.save()
    licenses = Counter(p.license or UNKNOWN_LICENSE for p in loaded.pairs)
    summary.update({"pairs_out": len(kept), "binary_out": n_binary, "trl_rows": trl_rows,
                    "quality_rejects": len(rejects) - len(loaded.rejects) - untranslated,
                    "rows_untranslated": untranslated,
                    "rejects_by_reason": dict(sorted(rejects.by_reason.items())),
                    "flags": dict(sorted(flag_counts.items())), "licenses": dict(sorted(licenses.items())),
                    "sources": sorted({p.source for p in loaded.pairs}) or [cfg.source],
                    "seconds": round(time.perf_counter() - t0, 3)})
    from jprefs.translate.card import write_card

    write_card(out / "README.md", cfg, template, summary, command)
    # counts add up
    assert summary["pairs_out"] + summary["quality_rejects"] + untranslated == summary["pairs_in"], summary
    atomic_write_json(out / "summary.json", redact(summary))  # (sources and the like may be URLs)
    _raise_if_failed(summary, cfg)
    return summary


def _raise_if_failed(summary: dict[str, Any], cfg: TranslateConfig) -> None:
    """Exit status 2 (via :class:`UnitsFailed`) when units got no translation: the output is
    written, but it lacks their rows, and a rerun is what completes it."""
    n = summary["units_failed"]
    if not n:
        return
    what = ("empty completions from the server" if cfg.engine == "openai"
            else "the model generated no text")
    rows = (f"; {summary['rows_untranslated']} rows are in rejects.jsonl as no_translation, the rest of the "
            f"output is written" if "rows_untranslated" in summary else "")
    again = ("" if cfg.engine == "openai" else
             " (with greedy decoding a local model may give the same empty answer again: check max_tokens, "
             "the template and the model's chat template)")
    raise UnitsFailed(f"{n} units got no translation ({what}){rows}\n"
                      f"  fix: rerun the same command to retry them; finished work is kept{again}", summary)


def merge_shards(shard_dirs: list[str], cfg: TranslateConfig, command: str = "") -> dict[str, Any]:
    """Join the caches of ``--shard i/n`` runs and assemble the full output (no engine needed).

    >>> merge_shards(["out/s0", "out/s1"], load_config(TranslateConfig, "out/s0/config.shard0.yaml",
    ...                                                {"output": "out/ja"}))   # doctest: +SKIP
    """
    if not cfg.output:
        raise ConfigError("merge needs an output folder: -o DIR")
    from jprefs.runlock import RunLock

    with RunLock(cfg.output, "jprefs translate merge"):
        return _merge_shards_locked(shard_dirs, cfg, command)


def _merge_shards_locked(shard_dirs: list[str], cfg: TranslateConfig, command: str = "") -> dict[str, Any]:
    cache = Cache(cfg.cache_dir or Path(cfg.output) / "cache")
    for d in shard_dirs:
        src = Path(d) / "cache"
        if not src.is_dir():
            raise DataError(f"{d} has no cache/ folder: not the output of `jprefs translate --shard`",
                            fix="pass the -o folders of the shard runs")
        cache.merge_from(src)

    def no_engine():
        raise MissingUnits("some units were translated by no shard\n  fix: rerun the missing shard(s) with the "
                           "same command and --shard i/n, then merge again")

    cfg.shard = ""
    return run_translate(cfg, engine_factory=no_engine, command=command)
