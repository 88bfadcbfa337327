"""``jprefs label candidates``: K responses per prompt from a causal LM, for people to rank.

The model answers every prompt ``K`` times (``-k``, at least 2) through the decoding loop of
``jprefs eval policy`` (:func:`jprefs.eval.policy.sample_batches`, which is rl's
:func:`jprefs.rl.sampling.sample`): the same prompt sets (:func:`jprefs.eval.prompts.load_eval_prompts`),
chat templates, ILQL heads and seeds, so ``jprefs eval policy`` with the same settings draws the same
answers. ``--model`` is a ``jprefs rl -o DIR`` folder (SFT, PPO, ILQL, DPO ...: DIR or DIR/policy;
an ILQL run decodes with its heads and ``beta_gen``), any ``save_pretrained`` causal LM folder, or a
Hub id in the local cache.

Output ``CANDS.jsonl``, one row per prompt, in prompt order::

    {"id": PROMPT_ID, "prompt": [{"role": "user", "content": ...}], "responses": [K strings, sample order],
     "source": "jprefs-candidates", "license": ROW_LICENCE or "unknown",
     "meta": {"category": ..., "candidates": {"model": SPEC, "model_revision": COMMIT or null,
              "model_digest": "sha256-sampled:...", "k": K,
              "sampling": {temperature, top_k, top_p, max_new_tokens, min_new_tokens, seed, batch_size,
                           prompt_max_tokens},
              "seeds": [seed of each sample], "chat_template": bool, "n_tokens": [...],
              "n_empty": N, "n_duplicates": N, ("beta_gen": B for an ILQL run)}}}

- **seeds**: batch ``b`` of the prompt-major samples (``--batch-size`` of them) draws with
  ``--seed + b``; ``seeds[k]`` is the seed of the batch sample ``k`` was drawn in.
- **Duplicates and empty responses are kept**, in place, and counted: ``n_duplicates`` (responses
  equal to an earlier one of the same prompt) and ``n_empty`` (blank responses) per row, totals in
  the summary file and a warning on stderr. A rank list needs distinct, non-empty responses
  (:class:`jprefs.data.schema.RankList`), so the labeller has to merge or skip them.
- **Licence**: a prompt row's ``license`` field, Apache-2.0 for the built-in prompt sets, else
  ``unknown``. The model's outputs may carry the model's own terms: check them.
- ``model_digest``: sha256 over the model folder's file names, sizes and contents (files up to
  4 MiB whole, larger ones in 16 evenly spaced 64 KiB pieces): cheap, and it changes when the
  weights are retrained; ``model_revision``: the commit of a Hub model's cached snapshot.

Summary ``CANDS.jsonl.meta.json`` (rewritten atomically at the start and at the end of a run):
the command that reproduces the file, the settings, ``status`` (``running`` / ``interrupted`` /
``complete``), counts (prompts, rows, responses, empty, duplicates, prompts with duplicates,
tokens) and timing of every session (``runs``: started, seconds, rows written, tokens/s).

**Resume.** Rows are appended and fsynced after every batch; a run stopped at any moment (Ctrl-C,
``kill -9``, a lost machine) leaves whole rows and at most one cut last line. The same command
again drops the cut line, regenerates from the batch holding the first missing prompt (same batch,
same seed, so the same answers) and appends the rest: the file is byte for byte the one an
uninterrupted run writes. A rerun with other settings (model, prompts, ``-k``, sampling, seed,
batch size, device, dtype) is refused with the differences listed; ``--overwrite`` starts again.
One writer per output file: ``.CANDS.jsonl.lock`` beside it (:mod:`jprefs.runlock`).

Example::

    jprefs label candidates --model runs/sft --prompts builtin:ja-instructions -k 4 -o cands.jsonl
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import shlex
import time
from pathlib import Path

from jprefs.errors import ConfigError, DataError

COMMAND = "jprefs label candidates"
SOURCE = "jprefs-candidates"
# what a Hub id looks like ("org/name" or "name"); any other missing path is a missing folder
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
# model_digest: whole files up to _FULL bytes, else _PIECES pieces of _PIECE bytes
_FULL, _PIECES, _PIECE = 4 << 20, 16, 64 << 10

EPILOG = """examples:
  jprefs label candidates --model runs/sft --prompts builtin:ja-instructions -k 4 -o cands.jsonl
  jprefs label candidates --model runs/ppo/policy --prompts prompts.jsonl -k 4 --temperature 0.8 --top-p 0.95 \\
      --max-new-tokens 256 --seed 1 -o cands.jsonl
  jprefs label candidates --model llm-jp/llm-jp-3-1.8b-instruct --prompts questions.txt -k 2 -o cands.jsonl

MODEL: a `jprefs rl -o DIR` folder (DIR or DIR/policy; ILQL heads are found beside the policy),
any save_pretrained causal LM folder, or a Hub id in the local cache.
An interrupted run continues when the same command is run again; --overwrite starts again."""


# ====================================================================== CLI

def configure(parser: argparse.ArgumentParser) -> None:
    from jprefs.eval.policy import add_sampling_args

    parser.epilog = EPILOG
    a = parser.add_argument
    a("--model", required=True, metavar="MODEL", help="the causal LM that answers (see MODEL below)")
    a("--prompts", required=True, metavar="SPEC",
      help="prompt file(s): JSONL/CSV/Parquet with 'prompt', MT-Bench question.jsonl, .txt, or builtin:NAME")
    a("--limit", type=int, default=0, help="use only the first N prompts (0 = all)")
    add_sampling_args(parser, per="responses per prompt, 2 or more")
    a("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    a("--dtype", default="auto", help="auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16, float16")
    a("--trust-remote-code", action="store_true", help="allow model code from the model folder")
    a("-o", "--output", required=True, metavar="CANDS.jsonl", help="output file (the summary goes to "
                                                                   "CANDS.jsonl.meta.json)")
    a("--overwrite", action="store_true", help="start again when the output holds rows of other settings")


def run(args) -> int:
    from jprefs.data.io import eprint
    from jprefs.eval.policy import check_sampling_args
    from jprefs.eval.prompts import load_eval_prompts
    from jprefs.runlock import output_lock

    if args.samples_per_prompt < 2:
        raise ConfigError(f"--samples-per-prompt={args.samples_per_prompt}: candidates are ranked or compared, "
                          f"which takes at least 2 responses per prompt\n  fix: give -k 2 or more (4 is usual)")
    check_sampling_args(args)
    out = Path(args.output)
    if not out.name.endswith(".jsonl"):
        raise ConfigError(f"-o {args.output}: the candidates file is JSONL, appended to as it grows\n  fix: give a "
                          f"name ending in .jsonl (not .gz)")
    if out.is_dir():
        raise ConfigError(f"-o {args.output} is a folder\n  fix: give a file name such as {out / 'cands.jsonl'}")
    prompts = load_eval_prompts(args.prompts, limit=args.limit)
    spec = resolve_model(args.model, beta_gen=args.beta_gen)
    with output_lock(out, COMMAND, folder=False):
        summary = write_candidates(spec, prompts, args)
    c = summary["counts"]
    if summary.get("nothing_to_do"):
        eprint(f"{COMMAND}: {out} is complete ({c['rows']} prompts x {c['k']}); nothing to do "
               "(--overwrite starts again)")
        return 0
    for w in summary["warnings"]:
        eprint(f"{COMMAND}: WARNING: {w}")
    eprint(f"{COMMAND}: {c['rows']} prompts x {c['k']} responses -> {out} (summary: {meta_path(out).name})")
    return 0


# ====================================================================== the model

def resolve_model(spec: str, *, beta_gen: float | None = None):
    """The :class:`~jprefs.eval.policy.PolicySpec` of ``--model``: a local folder as
    :func:`jprefs.eval.policy.resolve_policy` reads it (rl runs, ILQL heads), or a Hub id, loaded
    later; a missing path that is no Hub id is one :class:`DataError`."""
    from jprefs.eval.policy import PolicySpec, resolve_policy

    if os.path.exists(os.path.expanduser(spec)):
        return resolve_policy(spec, beta_gen=beta_gen)
    if _HUB_ID.fullmatch(spec) and not spec.startswith("."):
        return PolicySpec(label=spec, path=spec)
    raise DataError(f"model not found: {spec}", fix=_MODEL_FIX)


_MODEL_FIX = ("give a `jprefs rl -o DIR` folder (DIR or DIR/policy), a save_pretrained causal LM folder, or a "
              "Hub id in the local cache (`hf download ID` on a machine with network)")


def _load_model(spec, args, device):
    """Model, tokenizer and ILQL score_fn; a Hub id not in the cache names the model once."""
    from jprefs.eval.policy import _load
    from jprefs.hub import ModelNotCachedError

    try:
        return _load(spec, args, device)
    except ModelNotCachedError:
        raise DataError(f"model not found: {spec.path}: no such folder, and no Hub model of that name in the local "
                        "Hugging Face cache (the Hub cannot be reached)", fix=_MODEL_FIX) from None


def model_fingerprint(spec) -> dict:
    """``{"model_revision", "model_digest"}`` of a resolved model: the cached snapshot's commit
    for a Hub id (None for a folder) and a cheap sampled sha256 of the folder's files (ILQL heads
    included); both None for a Hub id that is not cached."""
    folder, revision = Path(spec.path), None
    if not folder.exists():
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(spec.path, "config.json")
        except Exception:  # noqa: BLE001 - no cache, an odd id: no fingerprint, the load says why
            hit = None
        if not isinstance(hit, str):
            return {"model_revision": None, "model_digest": None}
        folder = Path(hit).parent
        revision = folder.name                      # .../snapshots/<commit>/config.json
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if spec.heads is not None:
        files += [spec.heads, spec.heads.with_suffix(".json")]
    h = hashlib.sha256()
    for p in files:
        size = p.stat().st_size
        h.update(f"{p.name}\0{size}\0".encode("utf-8"))
        with open(p, "rb") as f:
            if size <= _FULL:
                h.update(f.read())
                continue
            for j in range(_PIECES):                # evenly spaced, the first and the last piece included
                f.seek(j * (size - _PIECE) // (_PIECES - 1))
                h.update(f.read(_PIECE))
    return {"model_revision": revision, "model_digest": "sha256-sampled:" + h.hexdigest()[:32]}


# ====================================================================== settings and resume

def meta_path(out: Path) -> Path:
    """``CANDS.jsonl`` -> ``CANDS.jsonl.meta.json``."""
    return out.with_name(out.name + ".meta.json")


def sampling_settings(args) -> dict:
    """The decoding settings a row records (and a resume must match)."""
    return {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p,
            "max_new_tokens": args.max_new_tokens, "min_new_tokens": args.min_new_tokens, "seed": args.seed,
            "batch_size": args.batch_size, "prompt_max_tokens": args.prompt_max_tokens}


def run_settings(args, spec, prompts, device) -> dict:
    """Everything the answers depend on; a resumed run must match it key for key."""
    from jprefs.data.schema import content_hash

    return {"model": args.model, "model_path": spec.path, **model_fingerprint(spec),
            "ilql_heads": str(spec.heads) if spec.heads else None, "beta_gen": spec.beta_gen,
            "prompts": args.prompts, "limit": args.limit, "n_prompts": len(prompts),
            "prompts_digest": content_hash([[p.id, p.text, p.chat(), p.category, p.license] for p in prompts])[:32],
            "k": args.samples_per_prompt, "sampling": sampling_settings(args),
            "chat_template": not args.no_chat_template, "device": device.type, "dtype": args.dtype,
            "trust_remote_code": bool(args.trust_remote_code)}


def command_line(args) -> str:
    """The command that writes this file again (every setting spelled out)."""
    s = sampling_settings(args)
    parts = ["jprefs", "label", "candidates", "--model", args.model, "--prompts", args.prompts,
             "-k", str(args.samples_per_prompt)]
    for key in ("temperature", "top_k", "top_p", "max_new_tokens", "min_new_tokens", "prompt_max_tokens",
                "seed", "batch_size"):
        parts += ["--" + key.replace("_", "-"), str(s[key])]
    if args.limit:
        parts += ["--limit", str(args.limit)]
    if args.beta_gen is not None:
        parts += ["--beta-gen", str(args.beta_gen)]
    if args.no_chat_template:
        parts.append("--no-chat-template")
    if args.device != "auto" or args.dtype != "auto":
        parts += ["--device", args.device, "--dtype", args.dtype]
    if args.trust_remote_code:
        parts.append("--trust-remote-code")
    return shlex.join(parts + ["-o", args.output])


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} then, {b!r} now")
    return out


def _new_counts(k: int) -> dict:
    return {"k": k, "rows": 0, "responses": 0, "empty_responses": 0, "duplicate_responses": 0,
            "prompts_with_duplicates": 0, "prompts_with_empty": 0, "tokens": 0}


def _count(counts: dict, row: dict) -> None:
    c = row["meta"]["candidates"]
    counts["rows"] += 1
    counts["responses"] += len(row["responses"])
    counts["empty_responses"] += c["n_empty"]
    counts["duplicate_responses"] += c["n_duplicates"]
    counts["prompts_with_duplicates"] += c["n_duplicates"] > 0
    counts["prompts_with_empty"] += c["n_empty"] > 0
    counts["tokens"] += sum(c["n_tokens"])


def read_done_rows(out: Path, prompts, k: int, counts: dict) -> tuple[int, int]:
    """Check the rows an earlier run of the same settings left in ``out`` and count them into
    ``counts``: ``(number of whole rows, bytes they take)``. A cut last line (no newline: the run
    was stopped while writing it) is not counted; a row that is not the one this run would
    write there is a :class:`DataError` naming the line."""
    done, end = 0, 0
    fix = "rerun with --overwrite to start again, or write to another -o"
    with open(out, "rb") as f:
        for n, raw in enumerate(iter(f.readline, b""), start=1):
            if not raw.endswith(b"\n"):
                break                                   # the cut last line of a stopped run
            try:
                row = json.loads(raw.decode("utf-8"))
                ok = n <= len(prompts) and row["id"] == prompts[n - 1].id and len(row["responses"]) == k
                row["meta"]["candidates"]["n_tokens"]   # noqa: B018 - present in every row this command writes
            except (UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
                raise DataError(f"row {n} is not a candidates row ({type(e).__name__}: {e})", path=str(out), line=n,
                                fix=fix) from None
            if not ok:
                want = prompts[n - 1].id if n <= len(prompts) else "no row (every prompt has one)"
                raise DataError(f"row {n} holds prompt {row.get('id')!r} with {len(row['responses'])} responses; this "
                                f"run writes {want!r} with {k} there", path=str(out), line=n, fix=fix)
            _count(counts, row)
            done, end = n, end + len(raw)
    return done, end


# ====================================================================== generation

def candidate_row(prompt, texts: list[str], seeds: list[int], n_tokens: list[int], base: dict) -> dict:
    """One output row (see the module docstring); ``base``: the row-independent part of
    ``meta.candidates``."""
    dup = len(texts) - len(set(texts))
    cand = {**base, "seeds": seeds, "n_tokens": n_tokens, "n_empty": sum(not t.strip() for t in texts),
            "n_duplicates": dup}
    return {"id": prompt.id, "prompt": prompt.chat(), "responses": texts, "source": SOURCE,
            "license": prompt.license or "unknown", "meta": {"category": prompt.category, "candidates": cand}}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_candidates(spec, prompts, args) -> dict:
    """Generate (or finish) ``args.output`` and its summary; returns the summary (see the module
    docstring). The caller holds the output's lock."""
    import torch

    from jprefs.data.io import atomic_write_json, eprint
    from jprefs.rl.device import resolve_device

    out, mp = Path(args.output), meta_path(Path(args.output))
    K = args.samples_per_prompt
    device = resolve_device(args.device)
    settings = run_settings(args, spec, prompts, device)
    if args.overwrite:
        for p in (out, mp):
            p.unlink(missing_ok=True)
    counts, done, keep, runs = _new_counts(K), 0, 0, []
    if out.exists():
        old = _read_meta(out, mp)
        diff = _differences(old.get("settings", {}), settings)
        if diff:
            raise ConfigError(f"{out} was started with other settings ({'; '.join(diff)}); rows of two settings "
                              f"in one file could not be told apart\n  fix: rerun the command that started it "
                              f"(`command` in {mp}) to continue it, add --overwrite to start again, or write to "
                              f"another -o")
        done, keep = read_done_rows(out, prompts, K, counts)
        runs = list(old.get("runs", []))
        if done == len(prompts) and old.get("status") == "complete" and keep == out.stat().st_size:
            return {**old, "nothing_to_do": True}
        if keep < out.stat().st_size:
            eprint(f"{COMMAND}: {out}: dropping the cut last line ({out.stat().st_size - keep} bytes) of a run "
                   "that was stopped while writing it")
            os.truncate(out, keep)
        if done:
            eprint(f"{COMMAND}: {out}: {done} of {len(prompts)} prompts done; continuing after "
                   f"{prompts[done - 1].id!r}")
    t0 = time.time()
    # the model loads before the summary is written: a model that does not load leaves no file behind
    loaded = _load_model(spec, args, device) if done < len(prompts) else None
    session = {"started": _now(), "resumed_after_rows": done, "load_s": round(time.time() - t0, 2)}
    meta = {"command": command_line(args), "settings": settings, "status": "running", "counts": counts,
            "warnings": [], "runs": runs + [session]}
    atomic_write_json(mp, meta)                         # before any row: a file without it is not ours
    n_tok, t_gen = 0, 0.0
    try:
        if loaded is not None:
            with torch.no_grad():
                n_tok, t_gen = _generate_rows(loaded, spec, prompts, args, settings, out, done, counts)
    except KeyboardInterrupt:
        session.update(seconds=round(time.time() - t0, 2), rows_written=counts["rows"] - done)
        atomic_write_json(mp, {**meta, "status": "interrupted"})
        eprint(f"{COMMAND}: stopped after {counts['rows']} of {len(prompts)} prompts (every row in {out} is "
               "whole); run the same command again to continue")
        raise
    session.update(finished=_now(), seconds=round(time.time() - t0, 2), generation_s=round(t_gen, 2),
                   rows_written=counts["rows"] - done, tokens=n_tok,
                   tokens_per_s=round(n_tok / max(t_gen, 1e-6), 1),
                   samples_per_s=round((counts["rows"] - done) * K / max(t_gen, 1e-6), 2))
    meta["status"] = "complete"
    meta["warnings"] = _warnings(counts)
    atomic_write_json(mp, meta)
    return meta


def _read_meta(out: Path, mp: Path) -> dict:
    try:
        meta = json.loads(mp.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or not isinstance(meta.get("settings"), dict):
            raise ValueError("no settings")
        return meta
    except FileNotFoundError:
        raise DataError(f"{out} exists but has no {mp.name} beside it, so it was not written by `{COMMAND}` (or its "
                        "summary was deleted) and cannot be continued", path=str(out),
                        fix="add --overwrite to replace it, or write to another -o") from None
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read the summary of an earlier run ({e})", path=str(mp),
                        fix="add --overwrite to start again, or write to another -o") from None


def _warnings(c: dict) -> list[str]:
    w = []
    if c["duplicate_responses"]:
        w.append(f"{c['duplicate_responses']} responses repeat an earlier response of the same prompt "
                 f"({c['prompts_with_duplicates']} of {c['rows']} prompts; kept, counted in meta.candidates."
                 "n_duplicates): raise --temperature or -k, or merge them when labelling")
    if c["empty_responses"]:
        w.append(f"{c['empty_responses']} responses are empty ({c['prompts_with_empty']} of {c['rows']} prompts; "
                 "kept, counted in meta.candidates.n_empty): try --min-new-tokens")
    return w


def _generate_rows(loaded, spec, prompts, args, settings: dict, out: Path, done: int,
                   counts: dict) -> tuple[int, float]:
    """Append the rows of prompts ``done ..`` to ``out`` (fsynced after every batch that completes
    a row) with ``loaded`` = (model, tokenizer, ILQL score_fn); returns (tokens generated, seconds)."""
    from jprefs.data.io import json_line
    from jprefs.eval.policy import render_prompt_for, sample_batches
    from jprefs.progress import progress

    K, B = args.samples_per_prompt, args.batch_size
    model, tok, score_fn = loaded
    use_template = bool(getattr(tok, "chat_template", None)) and not args.no_chat_template
    base = {"model": args.model, "model_revision": settings["model_revision"], "model_digest": settings["model_digest"],
            "k": K, "sampling": settings["sampling"], "chat_template": use_template}
    if spec.beta_gen is not None:
        base["beta_gen"] = spec.beta_gen
    texts = [render_prompt_for(tok, p, use_template) for p in prompts]
    pending: dict[int, list] = {}                       # prompt index -> [(text, seed, n_tokens)] so far
    nxt, n_tok, t0 = done, 0, time.time()
    new_file = not out.exists()
    with open(out, "ab") as f, progress(total=(len(prompts) - done) * K, desc="candidates", unit="sample") as bar:
        if new_file:
            _fsync_dir(out.parent)
        for seed, jobs, s in sample_batches(model, tok, texts, args, score_fn=score_fn, label=spec.label,
                                            first_batch=done * K // B):
            lengths = s.response_mask.sum(1).tolist()
            fresh = 0
            for j, (i, _k) in enumerate(jobs):
                if i >= done:                           # earlier prompts of the batch are in the file already
                    pending.setdefault(i, []).append((s.texts[j], seed, int(lengths[j])))
                    fresh += 1
                    n_tok += int(lengths[j])
            lines = []
            while len(pending.get(nxt, ())) == K:
                got = pending.pop(nxt)
                row = candidate_row(prompts[nxt], [t for t, _, _ in got], [x for _, x, _ in got],
                                    [n for _, _, n in got], base)
                lines.append(json_line(row) + "\n")
                _count(counts, row)
                nxt += 1
            if lines:                                   # whole rows only, on disk before the next batch
                f.write("".join(lines).encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            bar.update(fresh)
            bar.set_postfix(tok_s=f"{n_tok / max(1e-6, time.time() - t0):.0f}")
    return n_tok, time.time() - t0


def _fsync_dir(d: Path) -> None:
    """Make a new file's name durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(d if str(d) else ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
