"""``jprefs eval policy``: policies against a baseline on evaluation prompts.

Every policy (the baseline included) answers every prompt ``K`` times with recorded sampling
settings and seeds, through rl's one decoding loop (:func:`jprefs.rl.sampling.sample`):
ILQL policies (an rl ILQL output) decode with their heads and ``beta_gen``; a tokenizer with a
chat template gets it. Then, per policy:

- reward (the main ``--reward``) with a 95% interval, bootstrapped by prompt;
- win / tie / loss against the baseline, sample k against sample k of the same prompt, with
  intervals and a sign test;
- KL to the reference (``--reference``, default the baseline): the sequence-level Monte-Carlo
  estimate ``mean over the policy's samples of sum_t [log p_policy(y_t) - log p_ref(y_t)]``,
  where ``log p_policy`` is the log-probability under the distribution the sample was drawn from
  (temperature, top-k/p, ILQL's shift and the EOS rule applied) and ``log p_ref`` is the
  reference's full distribution under the same EOS rule (``--min-new-tokens``);
- perplexity of the samples under the reference (per token, EOS included);
- distinct-1/2 over fugashi morphemes (all samples of the policy), mean length in characters,
  share of Japanese characters, repetition rate (:mod:`jprefs.eval.textmetrics`);
- the same per prompt category, and each ``--judge-reward`` beside the main reward.

Warnings (thresholds in :data:`WARN`) flag reward hacking at a glance. Outputs:
``DIR/samples.jsonl``, ``DIR/metrics.json``, ``DIR/report.md`` + ``report.html`` and plots.

Example::

    jprefs eval policy --policy ppo=runs/ppo --baseline sft=runs/sft --prompts prompts.jsonl \\
        --reward out/rm -o out/eval-ppo
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jprefs.config import arg_float
from jprefs.errors import ConfigError, DataError
from jprefs.modeldir import config_num_labels

# One place for every warning threshold (see eval/README.md).
WARN = {
    # reward rises (paired gain > 0 with its interval above 0) while distinct-2 falls below this
    # fraction of the baseline's
    "distinct2_collapse_ratio": 0.75,
    # mean length above / below these multiples of the baseline's
    "length_balloon_ratio": 1.5,
    "length_shrink_ratio": 0.67,
    # Japanese share more than this many points (absolute) below the baseline's
    "japanese_share_drop": 0.10,
    # KL estimate below this (nats) with its whole 95% interval below 0: a sequence KL is >= 0, so
    # a clearly negative estimate means too few samples or not the two distributions it should compare
    "kl_negative": -1e-3,
}

EPILOG = """examples:
  jprefs eval policy --policy ppo=runs/ppo --policy ilql=runs/ilql --baseline sft=runs/sft \\
      --prompts prompts.jsonl --reward out/rm -o out/eval-policy
  jprefs eval policy --policy runs/ppo/policy --baseline runs/sft/policy --prompts builtin:ja-continuations \\
      --reward out/chabsa-rm --reward-input concat --judge-reward lexicon=jprefs.rl.rewards:lexicon_sentiment \\
      --samples-per-prompt 4 --max-new-tokens 32 -o out/eval-sentiment
  jprefs eval policy --policy ilql=runs/ilql --beta-gen 4 --baseline runs/sft --prompts p.txt \\
      --reward callable:jprefs.rl.rewards:lexicon_sentiment -o out/eval-ilql

POLICY: NAME=PATH or PATH: a `jprefs rl -o DIR` folder (DIR or DIR/policy; ILQL heads are found
beside the policy), a checkpoint's policy/, or any save_pretrained causal LM folder.
REWARD / JUDGE: [NAME=][rm:|classifier:|callable:]SPEC; without a type, module:function is a
callable, a folder with jprefs_reward.json a reward model, another folder a classifier
(label from --reward-label, or classifier:PATH@LABEL)."""


# ====================================================================== inputs

@dataclass
class PolicySpec:
    """A policy to evaluate: its label, model folder, and ILQL heads when it has them."""

    label: str
    path: str
    heads: Path | None = None
    beta_gen: float | None = None
    meta: dict = field(default_factory=dict)


def _split_label(spec: str) -> tuple[str | None, str]:
    """``NAME=PATH`` -> (NAME, PATH); a bare PATH -> (None, PATH). ``=`` inside a path after a
    separator is kept (``./a=b`` stays a path)."""
    if "=" in spec:
        name, rest = spec.split("=", 1)
        if name and os.sep not in name and "/" not in name and ":" not in name:
            return name, rest
    return None, spec


def resolve_policy(spec: str, *, beta_gen: float | None = None) -> PolicySpec:
    """Where a ``--policy`` / ``--baseline`` points, checked before any model loads.

    - a finished ``jprefs rl`` run folder -> its ``policy/``; a policy folder whose parent holds
      ``ilql_heads.safetensors`` (an ILQL run or one of its checkpoints) -> ILQL with those heads
      and their ``beta_gen`` (``beta_gen`` here overrides it);
    - a missing path or a folder that is not a policy -> one :class:`JprefsError` naming it.
    """
    name, path = _split_label(spec)
    p = Path(os.path.expanduser(path))
    if not p.exists():
        raise DataError(f"policy folder not found: {path}",
                        fix="give a `jprefs rl -o DIR` folder (DIR or DIR/policy) or a save_pretrained causal LM "
                            "folder, as NAME=PATH or PATH")
    if p.is_dir() and (p / "config.yaml").is_file() and (p / "policy" / "config.json").is_file() \
            and (p / "done.json").is_file():
        label = name or p.name
        p = p / "policy"
    else:
        label = name or (p.parent.name if p.name == "policy" else p.name)
    from jprefs.modeldir import check_model_dir

    check_model_dir(p, want="policy")
    if not (p / "config.json").is_file():          # check_model_dir returns for a non-directory path
        raise DataError(f"{p} is not a policy folder", fix="give the folder holding config.json + model.safetensors")
    out = PolicySpec(label=label, path=str(p))
    heads = p.parent / "ilql_heads.safetensors"
    if heads.is_file():
        meta_path = p.parent / "ilql_heads.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            int(meta["hidden"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"ILQL heads without a readable description ({e})", path=str(meta_path),
                            fix="use the ILQL run folder as `jprefs rl` wrote it (ilql_heads.json beside "
                                "ilql_heads.safetensors)") from None
        out.heads, out.meta = heads, meta
        out.beta_gen = float(beta_gen if beta_gen is not None else meta.get("beta_gen", 1.0))
    return out


@dataclass
class RewardSpec:
    label: str
    kind: str          # rm | classifier | callable
    target: str
    reward_label: str


def parse_reward_spec(spec: str, default_label: str = "1", name: str | None = None) -> RewardSpec:
    """``[NAME=][rm:|classifier:|callable:]SPEC`` (see the CLI epilog) -> a :class:`RewardSpec`."""
    label, rest = _split_label(spec)
    kind = ""
    for k in ("rm", "classifier", "callable"):
        if rest.startswith(k + ":"):
            kind, rest = k, rest[len(k) + 1:]
            break
    reward_label = default_label
    if kind == "classifier" and "@" in rest and not os.path.exists(rest):
        rest, reward_label = rest.rsplit("@", 1)
    path = Path(os.path.expanduser(rest))
    if not kind:
        if path.exists():
            kind = "rm" if (path / "jprefs_reward.json").is_file() or (path / "config.yaml").is_file() \
                or config_num_labels(path) == 1 else "classifier"
        elif ":" in rest:
            kind = "callable"
        else:
            raise DataError(f"reward not found: {rest}", fix="give a reward model folder (`jprefs train-rm -o DIR`), "
                            "a classifier folder, or a module:function such as jprefs.rl.rewards:lexicon_sentiment")
    if kind in ("rm", "classifier") and not path.exists():
        raise DataError(f"reward model folder not found: {rest}", fix="check the path")
    if label is None:
        label = name or (rest.rsplit(":", 1)[-1] if kind == "callable" else path.name)
    return RewardSpec(label, kind, str(path) if kind != "callable" else rest, reward_label)


def make_reward_fn(spec: RewardSpec, *, device=None, batch_size: int = 32, reward_input: str = "pair",
                   trust_remote_code: bool = False):
    """The reward function ``jprefs rl`` would build for this source (:func:`jprefs.rl.rewards.make_reward`)."""
    from jprefs.rl.rewards import make_reward

    return make_reward(spec.kind, spec.target, label=spec.reward_label, device=device, batch_size=batch_size,
                       trust_remote_code=trust_remote_code, reward_input=reward_input)


# ====================================================================== CLI

def configure_policy(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    a = parser.add_argument
    a("--policy", action="append", required=True, metavar="[NAME=]PATH", help="a policy to evaluate (repeatable)")
    a("--baseline", required=True, metavar="[NAME=]PATH", help="the policy every other one is compared with")
    a("--reference", metavar="PATH", default=None,
      help="reference for KL and perplexity (default: the baseline); must share the policies' tokenizer")
    a("--prompts", required=True, metavar="SPEC",
      help="prompt file(s): JSONL/CSV/Parquet with 'prompt', MT-Bench question.jsonl, .txt, or builtin:NAME")
    a("--limit", type=int, default=0, help="use only the first N prompts (0 = all)")
    a("--reward", required=True, metavar="SPEC", help="main reward (see REWARD below)")
    a("--reward-label", default="1", help="label whose logit margin a classifier reward uses (default 1)")
    a("--reward-input", default="pair", choices=("pair", "concat", "response"),
      help="what rewards and judges score: (prompt, response), prompt+response as one text, or the response")
    a("--judge-reward", action="append", default=[], metavar="SPEC",
      help="an extra reward source reported beside the main one (repeatable)")
    add_sampling_args(parser, per="answers per prompt and policy")
    a("--reward-batch-size", type=int, default=32, help="texts per reward-model batch (default 32)")
    g = parser.add_argument_group("LLM judge (any OpenAI-compatible server; see `jprefs eval judge --help`)")
    g.add_argument("--judge", metavar="MODEL", default=None,
                   help="judge every policy's answers with this model: pairwise against the baseline (both "
                        "orders), or 1-10 grades with --judge-mode grade")
    g.add_argument("--judge-base-url", metavar="URL", default="http://127.0.0.1:8000/v1",
                   help="the judge server (default http://127.0.0.1:8000/v1)")
    g.add_argument("--judge-mode", choices=("pairwise", "grade"), default="pairwise")
    g.add_argument("--judge-template", metavar="FILE", default=None,
                   help="your own judge prompt (default eval/judge/pairwise-ja.yaml or grade-ja.yaml)")
    g.add_argument("--judge-api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the judge's API key (never written anywhere)")
    g.add_argument("--judge-concurrency", type=int, default=8)
    g.add_argument("--judge-max-tokens", type=int, default=1024)
    a("--tie-margin", type=arg_float(">= 0"), default=0.0, help="reward differences up to this count as ties (default 0)")
    a("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    a("--dtype", default="auto", help="auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16, float16")
    a("--trust-remote-code", action="store_true", help="allow model code from the model folder")
    a("-o", "--output", required=True, metavar="DIR", help="output folder")


def add_sampling_args(parser: argparse.ArgumentParser, *, per: str) -> None:
    """The decoding options ``jprefs eval policy`` and ``jprefs label candidates`` share (``-k``,
    temperature, top-k/p, token limits, ILQL's ``--beta-gen``, chat template, seed, batch size);
    ``per`` says what ``-k`` counts. Numbers must be finite when parsed; :func:`check_sampling_args` checks
    their ranges."""
    a = parser.add_argument
    a("--samples-per-prompt", "-k", type=int, default=4, help=f"{per} (default 4)")
    a("--temperature", type=arg_float(), default=1.0, help="sampling temperature (0 = greedy; default 1)")
    a("--top-k", type=int, default=0, help="top-k filter (0 = off)")
    a("--top-p", type=arg_float(), default=1.0, help="nucleus filter (1 = off)")
    a("--max-new-tokens", type=int, default=64, help="response length limit in tokens (default 64)")
    a("--min-new-tokens", type=int, default=0, help="EOS forbidden for the first N tokens (default 0)")
    a("--prompt-max-tokens", type=int, default=256, help="prompts are cut from the left to this many tokens")
    a("--beta-gen", type=arg_float(), default=None, help="ILQL decoding strength for every ILQL policy (default: each "
                                                   "run's own beta_gen)")
    a("--no-chat-template", action="store_true", help="give instruction models the raw prompt text")
    a("--seed", type=int, default=0, help="sampling seed: batch b draws with seed + b (default 0)")
    a("--batch-size", type=int, default=16, help="answers generated per batch (default 16)")


def check_sampling_args(args) -> None:
    """One :class:`ConfigError` naming the flag for a value :func:`add_sampling_args`' options refuse."""
    def bad(flag, val, fix):
        raise ConfigError(f"{flag}={val!r} is out of range\n  fix: {fix}")

    if args.samples_per_prompt < 1:
        bad("--samples-per-prompt", args.samples_per_prompt, "give at least 1")
    if args.max_new_tokens < 1:
        bad("--max-new-tokens", args.max_new_tokens, "give at least 1")
    if not 0 <= args.min_new_tokens <= args.max_new_tokens:
        bad("--min-new-tokens", args.min_new_tokens, "give 0 .. --max-new-tokens")
    if args.temperature < 0:
        bad("--temperature", args.temperature, "give 0 (greedy) or more")
    if not 0 < args.top_p <= 1:
        bad("--top-p", args.top_p, "give a value in (0, 1]")
    if args.top_k < 0:
        bad("--top-k", args.top_k, "give 0 (off) or more")
    if args.batch_size < 1:
        bad("--batch-size", args.batch_size, "give at least 1")
    if args.beta_gen is not None and args.beta_gen < 0:
        bad("--beta-gen", args.beta_gen, "give 0 (plain sampling) or more")


def run_policy(args) -> int:
    from jprefs.data.io import eprint
    from jprefs.eval.prompts import load_eval_prompts

    check_sampling_args(args)
    prompts = load_eval_prompts(args.prompts, limit=args.limit)
    baseline = resolve_policy(args.baseline, beta_gen=args.beta_gen)
    policies = [resolve_policy(s, beta_gen=args.beta_gen) for s in args.policy]
    labels = [baseline.label] + [p.label for p in policies]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ConfigError(f"two policies are labelled {dup[0]!r}\n  fix: name them, e.g. --policy ppo-a=PATH "
                          f"--policy ppo-b=PATH")
    reference = resolve_policy(args.reference) if args.reference else baseline
    reward = parse_reward_spec(args.reward, args.reward_label)
    judges = [parse_reward_spec(s, args.reward_label) for s in args.judge_reward]
    jl = [j.label for j in judges]
    if len(set(jl)) != len(jl) or reward.label in jl:
        raise ConfigError(f"two reward sources share a label ({reward.label}, {', '.join(jl)})\n  fix: name "
                          "them: --judge-reward NAME=SPEC")
    judge = _make_judge(args)
    try:
        args._llm_judge = judge
        result = evaluate_policies(prompts, baseline, policies, reference, reward, judges, args)
    finally:
        if judge is not None:
            judge.close()
    for w in result["metrics"]["warnings"]:
        eprint(f"jprefs eval policy: WARNING: {w['message']}")
    eprint(f"jprefs eval policy: {len(prompts)} prompts x {args.samples_per_prompt} samples x {len(labels)} "
           f"policies -> {result['out']} (report.md, report.html, metrics.json, samples.jsonl)")
    llm = result["metrics"].get("llm_judge") or {}
    if llm.get("requests") and llm.get("requests_failed") == llm["requests"]:
        from jprefs.translate.engines import EngineError

        raise EngineError(f"all {llm['requests']} LLM judge requests failed (the server refused them; see "
                          f"llm_judge.failed in {result['out']}/samples.jsonl); the other figures are written\n"
                          f"  fix: make the requests fit the judge (a longer context: `vllm serve ... "
                          f"--max-model-len N`, or a smaller --judge-max-tokens), then rerun")
    return 0


def _make_judge(args):
    """The LLM judge of ``--judge`` (None without it), its server checked now: a judge that cannot
    be reached fails in seconds, before any generation. Answers are cached in ``DIR/judge-cache``."""
    if not getattr(args, "judge", None):
        return None
    from jprefs.eval.judge import Judge

    judge = Judge(args.judge, args.judge_base_url, args.judge_template, concurrency=args.judge_concurrency,
                  api_key_env=args.judge_api_key_env, max_tokens=args.judge_max_tokens,
                  cache_dir=Path(args.output) / "judge-cache")
    judge.template_for(args.judge_mode)       # a template of the other mode: refused before any work
    judge.check()
    return judge


def llm_judge_metrics(judge, mode: str, rows_by: dict[str, list[dict]], baseline: str) -> dict:
    """Judge the answers in ``rows_by`` (policy -> sample rows) with ``judge`` and return the figures.

    ``pairwise``: each policy's sample k against the baseline's sample k of the same prompt, asked in
    both orders (:func:`jprefs.eval.judge.pairwise`); win / tie / loss from the policy's side with
    intervals by prompt. ``grade``: every answer of every policy (baseline included) graded 1-10.
    Each row gets ``llm_judge`` (the verdict or the grade, why it was unreadable, and ``failed``: the
    server's message when it refused the request, e.g. HTTP 400 for a prompt longer than its context).
    ``requests`` / ``requests_failed`` count the requests of this evaluation and the refused ones."""
    from jprefs.eval.judge import grade, grade_summary, pairwise, pairwise_summary

    t = judge.template_for(mode)
    out: dict[str, Any] = {**judge.describe(), "mode": mode,
                           "template": {"name": t.name, "hash": t.hash, "path": str(t.path)}, "policies": {}}
    requests = failed = 0
    if mode == "pairwise":
        base = {_key(r): r for r in rows_by[baseline]}
        for lab, rows in rows_by.items():
            if lab == baseline:
                continue
            _check_paired(rows, rows_by[baseline], lab, baseline)
            vs = pairwise(judge, [r["prompt"] for r in rows], [r["response"] for r in rows],
                          [base[_key(r)]["response"] for r in rows], desc=f"judge {lab} vs {baseline}")
            for r, v in zip(rows, vs):
                r["llm_judge"] = {"vs": baseline, "winner": v.winner, "first": v.first, "second": v.second,
                                  "reasons": v.reasons, "failed": v.failed}
            out["policies"][lab] = {"vs": baseline, **pairwise_summary(vs, [r["prompt_id"] for r in rows])}
            requests += 2 * len(vs)
            failed += sum(len(v.failed) for v in vs)
    else:
        for lab, rows in rows_by.items():
            gs = grade(judge, [r["prompt"] for r in rows], [r["response"] for r in rows], desc=f"judge grade {lab}")
            for r, g in zip(rows, gs):
                r["llm_judge"] = {"score": g.score, "reason": g.reason, "failed": g.failed}
            out["policies"][lab] = grade_summary(gs, [r["prompt_id"] for r in rows])
            requests += len(gs)
            failed += sum(g.failed is not None for g in gs)
    out["requests_sent"], out["cache_hits"] = judge.requests_sent, judge.cache_hits
    out["requests"], out["requests_failed"] = requests, failed
    return out


def _check_paired(rows: list[dict], base_rows: list[dict], label: str, baseline: str) -> None:
    """Stop when ``rows`` and ``base_rows`` do not hold the same (prompt_id, sample) keys, each once.

    It cannot happen in ``jprefs eval policy``: every policy, the baseline included, answers every prompt of
    one prompt list (ids unique, :func:`jprefs.eval.prompts.load_eval_prompts`) K times in one run (no
    resume; a generation that fails raises, it never leaves a row out), and :func:`policy_metrics` pairs the
    rows the same way before the judge runs. A mismatch is a caller's bug: an error, never rows dropped
    from the judge's figures without a word (which the filter that stood here did)."""
    keys = [_key(r) for r in rows]
    base = [_key(r) for r in base_rows]
    if len(set(keys)) == len(keys) and len(set(base)) == len(base) and set(keys) == set(base):
        return
    extra, missing = sorted(set(keys) - set(base)), sorted(set(base) - set(keys))
    dup = len(keys) - len(set(keys)) + len(base) - len(set(base))
    first = f"; first: (prompt_id, sample) {(extra or missing)[0]}" if extra or missing else ""
    raise ValueError(f"LLM judge: the rows of {label!r} and of the baseline {baseline!r} do not pair up: {len(extra)} "
                     f"{label} rows have no baseline row, {len(missing)} baseline rows have no {label} row, {dup} "
                     f"duplicate keys{first}. Every policy must answer the same (prompt_id, sample) as the baseline, "
                     f"each once (as one `jprefs eval policy` run does)")


def llm_judge_failure_warning(llm: dict) -> dict | None:
    """The warning of a judge whose server refused requests (None when it refused none)."""
    if not llm.get("requests_failed"):
        return None
    n, k = llm["requests"], llm["requests_failed"]
    return {"policy": None, "kind": "llm_judge_requests_failed",
            "message": f"LLM judge: {k} of {n} requests ({k / max(n, 1):.0%}) failed (the server refused them; each "
                       f"row's llm_judge.failed has its message) and are left out of the judge's figures"
                       + ("; EVERY request failed: there is no judge result" if k == n else "")}


# ====================================================================== generation

def _settings(args) -> dict:
    return {"samples_per_prompt": args.samples_per_prompt, "temperature": args.temperature, "top_k": args.top_k,
            "top_p": args.top_p, "max_new_tokens": args.max_new_tokens, "min_new_tokens": args.min_new_tokens,
            "prompt_max_tokens": args.prompt_max_tokens, "seed": args.seed, "batch_size": args.batch_size,
            "beta_gen_override": args.beta_gen, "chat_template": not args.no_chat_template,
            "tie_margin": args.tie_margin, "reward_input": args.reward_input}


def _load(spec: PolicySpec, args, device):
    """Model, tokenizer and ILQL score_fn (None for a plain LM)."""
    from jprefs.rl.policies import load_policy

    model, tok = load_policy(spec.path, device=device, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    model.eval()
    score_fn = None
    if spec.heads is not None:
        from safetensors.torch import load_file

        from jprefs.rl.ilql import ilql_score_fn, make_heads

        vocab = model.get_output_embeddings().weight.shape[0]
        heads = make_heads(int(spec.meta["hidden"]), vocab, bool(spec.meta.get("two_qs", True)))
        try:
            heads.load_state_dict(load_file(str(spec.heads)))
        except RuntimeError as e:
            raise DataError(f"ILQL heads do not fit the policy beside them ({str(e).splitlines()[0]})",
                            path=str(spec.heads), fix="use the heads and policy/ of the same ILQL run") from None
        heads.to(device=device, dtype=next(model.parameters()).dtype).eval()
        score_fn = ilql_score_fn(heads, spec.beta_gen)
    return model, tok, score_fn


def render_prompt_for(tok, prompt, use_template: bool) -> str:
    """The text a policy is given: its chat template applied to the prompt's messages (with the
    generation prompt) when the tokenizer has one, else the prompt text. A leading BOS string
    is dropped: the sampler adds the BOS token itself."""
    if use_template and getattr(tok, "chat_template", None):
        text = tok.apply_chat_template(prompt.chat(), tokenize=False, add_generation_prompt=True)
        if tok.bos_token and text.startswith(tok.bos_token):
            text = text[len(tok.bos_token):]
        return text
    return prompt.text


def prompt_budget(model, prompt_max_tokens: int, max_new_tokens: int, label: str = "") -> int:
    """Prompt tokens that fit the model's context beside BOS and ``max_new_tokens`` (prompts are cut
    from the left to this); ``--prompt-max-tokens`` when the model has room for it."""
    cfg = getattr(model, "config", None)
    n_pos = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
    if not isinstance(n_pos, int):
        return prompt_max_tokens
    room = n_pos - max_new_tokens - 1                       # - 1: the BOS the sampler adds
    if room < 1:
        raise ConfigError(f"--max-new-tokens={max_new_tokens} leaves no room for a prompt in the {n_pos}-token "
                          f"context of policy {label!r}\n  fix: give --max-new-tokens below {n_pos - 1}")
    return min(prompt_max_tokens, room)


def _same_vocab(tok_a, tok_b) -> bool:
    return tok_a is tok_b or tok_a.get_vocab() == tok_b.get_vocab()


def sample_batches(model, tok, texts: list[str], args, *, score_fn=None, label: str = "", first_batch: int = 0):
    """Yield ``(seed, jobs, samples)`` for every batch of answers to the rendered prompts ``texts``.

    The jobs are prompt-major, ``(i, k)`` for prompt i and sample k < ``args.samples_per_prompt``;
    batch b holds jobs ``b * B .. (b + 1) * B - 1`` (``B = args.batch_size``) and draws with seed
    ``args.seed + b`` through :func:`jprefs.rl.sampling.sample`, so every answer is a function of
    the settings, the prompts and its place in that layout only. ``first_batch`` starts later: a
    resumed run regenerates from the batch that holds its first missing job and gets the same
    answers the uninterrupted run got. ``samples`` is the :class:`~jprefs.rl.sampling.Samples` of
    the batch, rows in the order of ``jobs``.

    >>> for seed, jobs, s in sample_batches(model, tok, ["今日は"], args):   # doctest: +SKIP
    ...     s.texts                                                        # K answers
    """
    from jprefs.rl.sampling import sample

    K, B = args.samples_per_prompt, args.batch_size
    prompt_max = prompt_budget(model, args.prompt_max_tokens, args.max_new_tokens, label)
    n_jobs = len(texts) * K
    for b in range(first_batch, -(-n_jobs // B)):
        jobs = [divmod(j, K) for j in range(b * B, min(n_jobs, (b + 1) * B))]
        s = sample(model, tok, [texts[i] for i, _ in jobs], max_new_tokens=args.max_new_tokens,
                   temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, prompt_max_tokens=prompt_max,
                   seed=args.seed + b, score_fn=score_fn, min_new_tokens=args.min_new_tokens)
        yield args.seed + b, jobs, s


def generate(spec: PolicySpec, model, tok, score_fn, prompts, args, ref=None) -> tuple[list[dict], float]:
    """Rows (prompt-major: prompt i, samples 0..K-1) with response, seed, token counts and, when a
    reference model is given, ``logp_policy`` / ``logp_ref`` / ``kl`` per sample; and the seconds
    the generation (with the reference's scoring pass) took."""
    import torch

    from jprefs.progress import progress
    from jprefs.rl.policies import position_ids_from_mask
    from jprefs.rl.sampling import forbid_eos, logprobs_from_logits

    texts = [render_prompt_for(tok, p, not args.no_chat_template) for p in prompts]
    rows: list[dict] = []
    n_tok, t0 = 0, time.time()
    with progress(total=len(prompts) * args.samples_per_prompt, desc=f"generating {spec.label}",
                  unit="sample") as bar:
        for seed, chunk, s in sample_batches(model, tok, texts, args, score_fn=score_fn, label=spec.label):
            mask = s.response_mask.float()                                          # (B, R)
            lp_pol = (s.logprobs * mask).sum(1).tolist()                            # (B,)
            lp_ref = None
            if ref is not None:
                with torch.no_grad():
                    logits = ref(input_ids=s.sequences, attention_mask=s.attention_mask,
                                 position_ids=position_ids_from_mask(s.attention_mask)).logits
                    logits = logits[:, s.prompt_len - 1:-1].float()                 # (B, R, V)
                    if args.min_new_tokens:
                        logits = forbid_eos(logits, tok.eos_token_id, args.min_new_tokens)
                    lp_ref = (logprobs_from_logits(logits, s.sequences[:, s.prompt_len:]) * mask).sum(1).tolist()
            counts = mask.sum(1).long().tolist()
            n_tok += sum(counts)
            for j, (i, k) in enumerate(chunk):
                p = prompts[i]
                row = {"prompt_id": p.id, "prompt": p.text, "category": p.category, "policy": spec.label,
                       "sample": k, "seed": seed, "response": s.texts[j], "reward": None,
                       "n_tokens": int(counts[j]), "logp_policy": float(lp_pol[j])}
                if lp_ref is not None:
                    row["logp_ref"] = float(lp_ref[j])
                    row["kl"] = float(lp_pol[j] - lp_ref[j])
                if spec.beta_gen is not None:
                    row["beta_gen"] = spec.beta_gen
                rows.append(row)
            bar.update(len(chunk))
            bar.set_postfix(tok_s=f"{n_tok / max(1e-6, time.time() - t0):.0f}")
    return rows, time.time() - t0


def score_rows(rows: list[dict], fn, label: str, batch_size: int) -> list[float]:
    """Scores of every row's (prompt, response), in order, with a progress bar."""
    from jprefs.progress import progress

    out: list[float] = []
    with progress(total=len(rows), desc=f"scoring {label}", unit="text") as bar:
        for i in range(0, len(rows), batch_size):
            chunk = rows[i:i + batch_size]
            vals = fn([r["prompt"] for r in chunk], [r["response"] for r in chunk])
            for v in vals:
                v = float(v)
                if not math.isfinite(v):
                    raise DataError(f"reward {label!r} returned {v} for a response",
                                    fix="check the reward model / function (it must return finite numbers)")
                out.append(v)
            bar.update(len(chunk))
    return out


# ====================================================================== metrics

def _ci(values, groups) -> dict:
    from jprefs.eval.stats import bootstrap_ci

    est, (lo, hi) = bootstrap_ci(values, groups)
    return {"mean": est, "ci95": [lo, hi]}


def _ratio_ci(num, den, groups, n_boot: int = 2000, seed: int = 0):
    """sum(num) / sum(den) and its cluster-bootstrap interval (groups resampled)."""
    import numpy as np

    num, den = np.asarray(num, float), np.asarray(den, float)
    _, inv = np.unique(np.asarray([str(g) for g in groups], dtype=object), return_inverse=True)
    k = int(inv.max()) + 1
    sn, sd = np.bincount(inv, num, k), np.bincount(inv, den, k)
    est = float(sn.sum() / max(sd.sum(), 1e-12))
    if k < 2:                                   # one prompt: no interval (not a zero-width one)
        return est, (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, k, size=(n_boot, k))
    boots = sn[draws].sum(1) / np.maximum(sd[draws].sum(1), 1e-12)
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return est, (float(lo), float(hi))


def text_metrics(rows: list[dict]) -> dict:
    """distinct-1/2 over morphemes, mean length, Japanese share and repetition rate of ``rows``
    (the per-row values are stored on the rows as ``length``, ``japanese_share``, ``repetition``)."""
    from jprefs.eval.textmetrics import distinct_n_tokens, japanese_share, morphemes, repetition_rate

    groups = [r["prompt_id"] for r in rows]
    toks = []
    for r in rows:
        t = morphemes(r["response"])
        toks.append(t)
        r["length"] = len(r["response"])
        # an answer with no letters ("42", "3.14", nothing) has no script to measure: None, left out of the
        # mean (as 0.0 it read as wholly non-Japanese and raised a false japanese_share_drop warning)
        r["japanese_share"] = japanese_share(r["response"]) if any(c.isalpha() for c in r["response"]) else None
        r["repetition"] = repetition_rate(t, 4)
    lettered = [(r["japanese_share"], g) for r, g in zip(rows, groups) if r["japanese_share"] is not None]
    return {"distinct1": distinct_n_tokens(toks, 1), "distinct2": distinct_n_tokens(toks, 2),
            "length": _ci([r["length"] for r in rows], groups),
            "japanese_share": _ci([v for v, _ in lettered], [g for _, g in lettered]),
            "repetition_rate": _ci([r["repetition"] for r in rows], groups)}


def _mean_or_none(values) -> float | None:
    """The mean of the values that are not None (None when there are none)."""
    vals = [v for v in values if v is not None]
    return float(sum(vals) / len(vals)) if vals else None


def _key(r):
    return (r["prompt_id"], r["sample"])


def policy_metrics(rows: list[dict], base_rows: list[dict] | None, judges: list[str], tie_margin: float) -> dict:
    """Every figure of one policy (``base_rows``: the baseline's rows, None for the baseline)."""
    import numpy as np

    from jprefs.eval.stats import paired_bootstrap_ci, win_tie_loss

    groups = [r["prompt_id"] for r in rows]
    m: dict[str, Any] = {"n_prompts": len(set(groups)), "n_samples": len(rows)}
    m["reward"] = _ci([r["reward"] for r in rows], groups)
    m.update(text_metrics(rows))
    if all("kl" in r for r in rows):
        m["kl"] = _ci([r["kl"] for r in rows], groups)
        nll = [-r["logp_ref"] for r in rows]
        est, (lo, hi) = _ratio_ci(nll, [r["n_tokens"] for r in rows], groups)
        m["perplexity_ref"] = {"value": math.exp(est), "ci95": [math.exp(lo), math.exp(hi)]}
    base = {_key(r): r for r in base_rows} if base_rows is not None else None
    if base is not None:
        pairs = [(r, base[_key(r)]) for r in rows]
        diff = np.array([a["reward"] - b["reward"] for a, b in pairs])
        outcomes = np.where(diff > tie_margin, 1, np.where(diff < -tie_margin, -1, 0)).tolist()
        m["win_tie_loss"] = win_tie_loss(outcomes, groups)
        est, (lo, hi) = paired_bootstrap_ci([a["reward"] for a, _ in pairs], [b["reward"] for _, b in pairs], groups)
        m["reward_gain"] = {"mean": est, "ci95": [lo, hi]}
    m["judges"] = {}
    for j in judges:
        jm = _ci([r["judges"][j] for r in rows], groups)
        if base is not None:
            est, (lo, hi) = paired_bootstrap_ci([r["judges"][j] for r in rows],
                                                [base[_key(r)]["judges"][j] for r in rows], groups)
            jm["gain"], jm["gain_ci95"] = est, [lo, hi]
        m["judges"][j] = jm
    cats = sorted({r["category"] for r in rows})
    if len(cats) > 1 or cats != [""]:
        m["by_category"] = {}
        for c in cats:
            sub = [r for r in rows if r["category"] == c]
            g = [r["prompt_id"] for r in sub]
            cm = {"n_prompts": len(set(g)), "reward": _ci([r["reward"] for r in sub], g),
                  "length": float(np.mean([r["length"] for r in sub])),
                  "japanese_share": _mean_or_none([r["japanese_share"] for r in sub])}
            if base is not None:
                d = np.array([r["reward"] - base[_key(r)]["reward"] for r in sub])
                o = np.where(d > tie_margin, 1, np.where(d < -tie_margin, -1, 0)).tolist()
                w = win_tie_loss(o, g)
                cm["win_tie_loss"] = {k: w[k] for k in ("win", "tie", "loss", "win_ci95", "loss_ci95")}
            m["by_category"][c] = cm
    return m


def find_warnings(metrics: dict, baseline: str, reference_is_baseline: bool = True, thresholds: dict = WARN) -> list[dict]:
    """Reward-hacking and sanity warnings for every policy against the baseline (see :data:`WARN`)."""
    t = thresholds
    b = metrics[baseline]
    out = []

    def warn(policy, kind, message):
        out.append({"policy": policy, "kind": kind, "message": f"{policy}: {message}"})

    for name, m in metrics.items():
        kl = m.get("kl")
        if kl is not None and kl["mean"] < t["kl_negative"] and kl["ci95"][1] < 0:
            warn(name, "kl_negative", f"the KL estimate to the reference is negative ({kl['mean']:.4f} nats, "
                 f"95% interval [{kl['ci95'][0]:.4f}, {kl['ci95'][1]:.4f}]): a "
                 "sequence KL is never below 0, so the estimate is too noisy (more --samples-per-prompt) or the "
                 "policy and reference do not share the tokenization or decoding rule")
        if name == baseline:
            continue
        gain = m.get("reward_gain", {})
        if gain and gain["ci95"][0] > 0 and b["distinct2"] > 0 \
                and m["distinct2"] < t["distinct2_collapse_ratio"] * b["distinct2"]:
            warn(name, "reward_up_diversity_down",
                 f"the reward rises (+{gain['mean']:.3f}) while distinct-2 collapses to {m['distinct2']:.3f} "
                 f"({m['distinct2'] / b['distinct2']:.0%} of the baseline's {b['distinct2']:.3f}): likely reward "
                 "hacking by repetition; read the samples")
        bl, pl = b["length"]["mean"], m["length"]["mean"]
        if bl > 0 and pl > t["length_balloon_ratio"] * bl:
            warn(name, "length_balloon", f"mean length {pl:.1f} chars is {pl / bl:.2f}x the baseline's {bl:.1f}: "
                 "the reward may favour long answers")
        elif bl > 0 and pl < t["length_shrink_ratio"] * bl:
            warn(name, "length_shrink", f"mean length {pl:.1f} chars is {pl / bl:.2f}x the baseline's {bl:.1f}: "
                 "the policy may win by saying less")
        judged = {j: v for j, v in (m.get("judges") or {}).items() if "gain_ci95" in v}
        if gain and gain["ci95"][0] > 0 and judged and all(v["gain_ci95"][0] <= 0 for v in judged.values()):
            said = ", ".join(f"{j} {v['gain']:+.3f} [{v['gain_ci95'][0]:+.3f}, {v['gain_ci95'][1]:+.3f}]"
                             for j, v in judged.items())
            warn(name, "reward_up_judges_flat",
                 f"the reward rises (+{gain['mean']:.3f}, 95% interval above 0) but no independent judge is "
                 f"shown to improve ({said}): the policy may be pleasing the reward model rather than "
                 "getting better; read the samples")
        bj, pj = b["japanese_share"]["mean"], m["japanese_share"]["mean"]
        if pj < bj - t["japanese_share_drop"]:
            warn(name, "japanese_share_drop", f"the share of Japanese characters fell to {pj:.2f} from the "
                 f"baseline's {bj:.2f}")
    return out


# ====================================================================== run

def evaluate_policies(prompts, baseline: PolicySpec, policies: list[PolicySpec], reference: PolicySpec,
                      reward: RewardSpec, judges: list[RewardSpec], args) -> dict:
    """Generate, score, measure and write everything; returns ``{"out": DIR, "metrics": ...}``.

    Holds ``DIR``'s lock (:mod:`jprefs.runlock`): a second evaluation into the same folder is
    refused with the pid of this one."""
    from jprefs.runlock import run_lock

    import torch

    # no gradients anywhere in an evaluation; torch.no_grad restores the caller's setting on the way out
    # (a process-wide set_grad_enabled(False) would leave a later training in the same process without them)
    with run_lock(args.output, "jprefs eval policy"), torch.no_grad():
        return _evaluate(prompts, baseline, policies, reference, reward, judges, args)


def _evaluate(prompts, baseline, policies, reference, reward, judges, args) -> dict:
    from jprefs.data.io import atomic_write_json, write_jsonl
    from jprefs.rl.device import resolve_device, set_seed

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(args.device)
    set_seed(args.seed)
    gen_s = 0.0
    ref_model, ref_tok, _ = _load(PolicySpec(reference.label, reference.path), args, device)
    rows_by: dict[str, list[dict]] = {}
    decoding: dict[str, dict] = {}
    notes: list[str] = []
    for spec in [baseline] + policies:
        same = spec.path == reference.path and spec.heads is None
        model, tok, score_fn = (ref_model, ref_tok, None) if same else _load(spec, args, device)
        use_ref = ref_model if _same_vocab(tok, ref_tok) and bool(getattr(tok, "chat_template", None)) == \
            bool(getattr(ref_tok, "chat_template", None)) else None
        if use_ref is None:
            notes.append(f"{spec.label}: its tokenizer or chat template differs from the reference's, so KL and "
                         "perplexity are not computed for it")
        rows_by[spec.label], secs = generate(spec, model, tok, score_fn, prompts, args, ref=use_ref)
        for r in rows_by[spec.label]:       # `jprefs eval judge --samples` and export-human read it (B = baseline)
            r["baseline"] = spec is baseline
        gen_s += secs
        decoding[spec.label] = {"path": spec.path, "ilql_heads": str(spec.heads) if spec.heads else None,
                                "beta_gen": spec.beta_gen,
                                "chat_template": bool(getattr(tok, "chat_template", None)) and not args.no_chat_template}
        if not same:
            del model
    del ref_model
    all_rows = [r for lab in rows_by for r in rows_by[lab]]

    t_score = time.time()
    fn = make_reward_fn(reward, device=device, batch_size=args.reward_batch_size, reward_input=args.reward_input,
                        trust_remote_code=args.trust_remote_code)
    for r, v in zip(all_rows, score_rows(all_rows, fn, reward.label, args.reward_batch_size)):
        r["reward"] = v
    for r in all_rows:
        r["judges"] = {}
    for j in judges:
        jf = make_reward_fn(j, device=device, batch_size=args.reward_batch_size, reward_input=args.reward_input,
                            trust_remote_code=args.trust_remote_code)
        for r, v in zip(all_rows, score_rows(all_rows, jf, j.label, args.reward_batch_size)):
            r["judges"][j.label] = v
    score_s = time.time() - t_score

    per_policy = {}
    for lab, rows in rows_by.items():
        per_policy[lab] = policy_metrics(rows, None if lab == baseline.label else rows_by[baseline.label],
                                         [j.label for j in judges], args.tie_margin)
        per_policy[lab]["decoding"] = decoding[lab]
    warnings = find_warnings(per_policy, baseline.label)
    n_tokens = sum(r["n_tokens"] for r in all_rows)
    metrics = {
        "warnings": warnings, "notes": notes, "thresholds": WARN,
        "baseline": baseline.label, "reference": {"label": reference.label, "path": reference.path},
        "reward": {"label": reward.label, "kind": reward.kind, "spec": reward.target},
        "judges": [{"label": j.label, "kind": j.kind, "spec": j.target} for j in judges],
        "prompts": {"spec": args.prompts, "n": len(prompts)}, "settings": _settings(args),
        "throughput": {"generation_s": round(gen_s, 2), "generated_tokens": n_tokens,
                       "tokens_per_s": round(n_tokens / max(gen_s, 1e-6), 1), "scoring_s": round(score_s, 2),
                       "scored_per_s": round(len(all_rows) * (1 + len(judges)) / max(score_s, 1e-6), 1)},
        "policies": per_policy,
    }
    # the generations and scores are written before the LLM judge runs: a judge that fails (its server down,
    # a request refused) left nothing of them, though its error says finished work is kept
    write_jsonl(out / "samples.jsonl", all_rows)
    atomic_write_json(out / "metrics.json", metrics)
    if getattr(args, "_llm_judge", None) is not None:
        metrics["llm_judge"] = llm_judge_metrics(args._llm_judge, args.judge_mode, rows_by, baseline.label)
        w = llm_judge_failure_warning(metrics["llm_judge"])
        if w is not None:
            metrics["warnings"].append(w)
        write_jsonl(out / "samples.jsonl", all_rows)           # now with each row's verdict
        atomic_write_json(out / "metrics.json", metrics)
    from jprefs.eval.policy_report import write_report

    write_report(out, metrics, rows_by)
    return {"out": out, "metrics": metrics}
