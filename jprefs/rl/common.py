"""Pieces shared by SFT, ILQL and PPO: policies, text sources, sampling, run outputs.

- :func:`build_tiny_policy` trains a byte-level BPE tokenizer on Japanese text and
  builds a small GPT-2 from a config, so that a CPU run needs no download.
- :func:`load_policy` loads any Hugging Face causal LM (safetensors only,
  ``trust_remote_code`` off unless asked for).
- :func:`sample` is the one decoding loop (left-padded prompts, KV cache, explicit
  position ids); ILQL passes a ``score_fn`` that adds ``beta_gen * (Q - V)``.
- :class:`RunWriter` writes ``metrics.jsonl``, samples, the curve PNG and checkpoints.

Example::

    model, tok = build_tiny_policy(["今日はいい天気だ。"] * 50, vocab_size=300)
    out = sample(model, tok, ["今日は"], max_new_tokens=8, seed=0)
"""

from __future__ import annotations

import glob
import json
import math
import os
import random
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Sequence

from jprefs.errors import ConfigError, DataError

BOS = "<|endoftext|>"
PAD = "<pad>"
BUILTIN = {
    "builtin:ja-tiny": "ja_tiny.jsonl",
    "builtin:ja-tiny-prompts": "ja_tiny_prompts.txt",
    "builtin:ja-tiny-eval": "ja_tiny_eval_prompts.txt",
}


# ====================================================================== basics

def resolve_device(name: str = "auto"):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def set_seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def builtin_path(name: str) -> Path:
    """Path of a bundled data file (``builtin:ja-tiny`` etc.)."""
    if name not in BUILTIN:
        raise ConfigError(f"unknown built-in data {name!r}; available: {', '.join(BUILTIN)}")
    return Path(str(resources.files("jprefs") / "resources" / "rl" / BUILTIN[name]))


def expand_paths(spec: str) -> list[Path]:
    """``builtin:NAME``, a path, or comma-separated globs -> existing files."""
    if spec.startswith("builtin:"):
        return [builtin_path(spec)]
    out: list[Path] = []
    for part in (s.strip() for s in spec.split(",") if s.strip()):
        hits = sorted(glob.glob(os.path.expanduser(part)))
        if not hits:
            raise DataError(f"no file matches {part!r}", fix="check the path or glob (relative to the current directory)")
        out += [Path(h) for h in hits]
    return out


# ====================================================================== text sources

@dataclass
class TextRow:
    """One training text: ``prompt`` (may be empty) + ``text``, with an optional reward."""

    prompt: str
    text: str
    reward: float | None = None


def _chunks(text: str, max_chars: int) -> list[str]:
    """Split long documents (e.g. Aozora works) into paragraph-sized pieces."""
    out = []
    for para in text.replace("\r", "").split("\n"):
        para = para.strip().replace("\u3000", "")
        while len(para) > max_chars:
            cut = para.rfind("。", 0, max_chars)
            cut = cut + 1 if cut > max_chars // 4 else max_chars
            out.append(para[:cut])
            para = para[cut:]
        if para:
            out.append(para)
    return out


def load_text_rows(spec: str, *, text_field: str = "text", prompt_field: str = "", reward_field: str = "",
                   max_chars: int = 200, rejects=None) -> list[TextRow]:
    """Rows from ``.txt`` (one text per line), JSONL/CSV/TSV/Parquet, or canonical pairs.

    Canonical pairs (``prompt``/``chosen``/``rejected``) give two rows each: the
    chosen response with reward 1 and the rejected one with reward 0. Long texts are
    split into paragraphs of at most ``max_chars``. Bad rows go to ``rejects``
    (a :class:`jprefs.data.io.RejectsWriter`) with a reason, or raise when it is None.

    >>> rows = load_text_rows("builtin:ja-tiny", reward_field="reward")   # doctest: +SKIP
    """
    from jprefs.data.io import iter_table, iter_text_lines
    from jprefs.data.schema import SchemaError, record_from_dict, render_prompt

    def reject(path, loc, reason, error, raw):
        if rejects is None:
            raise DataError(error, path=str(path), line=loc if isinstance(loc, int) else None,
                            fix=f"fix the row, or check text_field={text_field!r} / reward_field={reward_field!r}")
        rejects.add(loc, reason, f"{path}: {error}", raw)

    rows: list[TextRow] = []
    for path in expand_paths(spec):
        if path.name.endswith(".txt"):
            for i, line, err in iter_text_lines(path):
                if err:
                    reject(path, i, "invalid_utf8", err, None)
                elif line.strip():
                    rows += [TextRow("", t) for t in _chunks(line, max_chars)]
            continue
        for row in iter_table(path):
            if row.error:
                reject(path, row.locator, row.reason or "bad_row", row.error, row.data)
                continue
            d = row.data
            if "chosen" in d and "rejected" in d and text_field not in d:
                try:
                    pair = record_from_dict(d)
                except SchemaError as e:
                    reject(path, row.locator, e.reason, str(e), d)
                    continue
                pairs = pair.to_pairs() if hasattr(pair, "to_pairs") else [pair]
                for p in pairs:
                    rows.append(TextRow(render_prompt(p.prompt), p.chosen, 1.0))
                    rows.append(TextRow(render_prompt(p.prompt), p.rejected, 0.0))
                continue
            text = d.get(text_field)
            if not isinstance(text, str) or not text.strip():
                reject(path, row.locator, "missing_text", f"field {text_field!r} missing or empty (keys: {sorted(d)})", d)
                continue
            prompt = d.get(prompt_field, "") if prompt_field else ""
            if prompt_field and isinstance(prompt, list):
                prompt = render_prompt(prompt)
            reward = None
            if reward_field:
                v = d.get(reward_field)
                try:
                    reward = float(v)
                    if not math.isfinite(reward):
                        raise ValueError
                except (TypeError, ValueError):
                    reject(path, row.locator, "bad_reward", f"field {reward_field!r} is not a number: {v!r}", d)
                    continue
            for t in _chunks(text, max_chars) if not prompt else [text]:
                rows.append(TextRow(str(prompt or ""), t, reward))
    return rows


def load_prompts(spec: str) -> list[str]:
    """Prompts from a .txt file (one per line), JSONL (``prompt`` or ``text``) or canonical pairs."""
    from jprefs.data.io import iter_table, iter_text_lines
    from jprefs.data.schema import render_prompt

    if spec == "builtin:ja-tiny":
        spec = "builtin:ja-tiny-prompts"
    out: list[str] = []
    for path in expand_paths(spec):
        if path.name.endswith(".txt"):
            out += [line.strip() for _, line, err in iter_text_lines(path) if not err and line.strip()]
            continue
        for row in iter_table(path):
            if row.error:
                raise DataError(row.error, path=str(path), line=row.locator)
            p = row.data.get("prompt", row.data.get("text"))
            if p is None:
                raise DataError(f"row has neither 'prompt' nor 'text' (keys: {sorted(row.data)})",
                                path=str(path), line=row.locator)
            out.append(render_prompt(p) if isinstance(p, list) else str(p))
    if not out:
        raise DataError(f"no prompts found in {spec!r}", fix="give a file with one prompt per line")
    return out


# ====================================================================== policies

def train_tokenizer(texts: Sequence[str], vocab_size: int = 3000, kind: str = "char"):
    """A byte-level BPE tokenizer trained on ``texts``, as a ``PreTrainedTokenizerFast``.

    Byte-level BPE never produces unknown tokens. ``kind="char"`` (default) keeps
    merges inside characters: the vocabulary is the ``vocab_size`` most useful
    Japanese characters and rarer ones fall back to bytes. A prompt then always ends
    on a token boundary seen in training (with merges across characters, a prompt
    such as 今日の天気は can end in a token that only ever appeared as part of
    は+とても, which derails tiny models). ``kind="bpe"`` merges across characters.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if kind not in ("char", "bpe"):
        raise ConfigError(f"config key 'tiny_tokenizer': {kind!r} is not one of char, bpe")
    tok = Tokenizer(models.BPE())
    # No whitespace splitting (Japanese has none); "char" isolates every character first.
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.pre_tokenizer = byte_level if kind == "bpe" else pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex("."), "isolated"), byte_level])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=BOS, pad_token=PAD,
                                   unk_token=None, padding_side="left", model_max_length=1024)


def build_tiny_policy(texts: Sequence[str], *, vocab_size: int = 3000, n_embd: int = 128, n_layer: int = 4,
                      n_head: int = 4, n_positions: int = 256, seed: int = 0, tokenizer: str = "char"):
    """A small randomly initialised GPT-2 and a tokenizer trained on ``texts``.

    Dropout is 0: PPO ratios and ILQL targets must not be noisy.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = train_tokenizer(texts, vocab_size, tokenizer)
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tok), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                        n_head=n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        pad_token_id=tok.pad_token_id)
    return GPT2LMHeadModel(config), tok


def _dtype(name: str, device):
    import torch

    if name == "auto":
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise ConfigError(f"config key 'dtype': {name!r} is not one of auto, float32, bfloat16, float16") from None


def load_policy(name_or_path: str, *, device=None, dtype: str = "auto", trust_remote_code: bool = False):
    """A causal LM and its tokenizer (left padding, a pad token) from a directory or Hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or resolve_device()
    if os.path.exists(name_or_path):
        from jprefs.modeldir import check_model_dir

        check_model_dir(name_or_path, want="policy")    # an rl run folder, an unfinished run, a reward model ...
    from jprefs.hub import hub_model

    try:
        with hub_model(name_or_path):  # a Hub id offline and not cached: one line naming it
            tok = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=_dtype(dtype, device),
                                                         use_safetensors=True, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise ConfigError(f"cannot load policy {name_or_path!r}: {e}\n  fix: give a local directory with "
                          "model.safetensors, a reachable Hub id, or policy=tiny") from e
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tok.eos_token is None:
        raise ConfigError(f"tokenizer of {name_or_path!r} has no EOS token; responses could never end")
    return model.to(device), tok


def encode_prompts(tok, prompts: Sequence[str], max_tokens: int, device):
    """Left-padded prompt ids ``(B, P)`` and mask; every prompt starts with BOS when the
    tokenizer has one, so that empty prompts still give the model a state."""
    import torch

    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    ids = [bos + tok(p, add_special_tokens=False)["input_ids"][-max_tokens:] for p in prompts]
    ids = [x if x else [tok.eos_token_id] for x in ids]
    P = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), P), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids), P), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, P - len(x):] = torch.tensor(x)
        mask[i, P - len(x):] = 1
    return input_ids.to(device), mask.to(device)


def position_ids_from_mask(mask):
    """Positions counted over real tokens only, so left padding does not shift them. (B, T)"""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


# ====================================================================== sampling

@dataclass
class Samples:
    """Output of :func:`sample`. ``sequences`` = prompt + response ids, left-padded prompt."""

    sequences: Any        # (B, P + R) long
    attention_mask: Any   # (B, P + R) 1 on real tokens (prompt and response up to EOS)
    response_mask: Any    # (B, R) 1 on response tokens up to and including the first EOS
    prompt_len: int       # P
    texts: list[str]      # decoded responses (without EOS / padding)
    logprobs: Any = None  # (B, R) log-prob of each token under the distribution it was drawn from


def filter_logits(scores, top_k: int = 0, top_p: float = 1.0):
    """Set scores outside the top-k / nucleus to -inf. scores: (B, V)."""
    import torch

    if top_k and top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, idx = torch.sort(scores, descending=True, dim=-1)
        probs = torch.softmax(sorted_scores, dim=-1)
        # drop a token when the mass before it already exceeds top_p (the first token always stays)
        drop = (probs.cumsum(-1) - probs) > top_p
        sorted_scores = sorted_scores.masked_fill(drop, float("-inf"))
        scores = torch.full_like(scores, float("-inf")).scatter(-1, idx, sorted_scores)
    return scores


def forbid_eos(logits, eos_id: int, min_new_tokens: int | None = None):
    """EOS logit -> -inf: for ``(B, V)`` logits of one step, or for the first ``min_new_tokens``
    positions of ``(B, R, V)`` response logits (the same rule :func:`sample` applies)."""
    import torch

    m = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    m[eos_id] = True
    if min_new_tokens is not None:
        pos = torch.arange(logits.shape[-2], device=logits.device) < min_new_tokens
        m = pos[:, None] & m[None, :]
    return logits.masked_fill(m, float("-inf"))


def sample(model, tok, prompts: Sequence[str], *, max_new_tokens: int = 24, temperature: float = 1.0,
           top_k: int = 0, top_p: float = 1.0, prompt_max_tokens: int = 64, seed: int | None = None,
           score_fn: Callable | None = None, min_new_tokens: int = 0) -> Samples:
    """Sample responses to ``prompts`` (same order) with a KV cache.

    ``score_fn(logits (B, V), hidden (B, H)) -> scores (B, V)`` replaces the plain
    ``log_softmax(logits)`` (ILQL adds ``beta_gen * (Q - V)`` there). Temperature 0
    is greedy. A sequence stops after its first EOS; later positions are padding.
    ``min_new_tokens``: EOS is forbidden (probability 0) for the first N response tokens,
    so responses cannot end early (N = max_new_tokens gives fixed-length responses).

    >>> s = sample(model, tok, ["今日は"], max_new_tokens=8)   # doctest: +SKIP
    >>> s.texts[0]                                             # doctest: +SKIP
    """
    import torch

    device = next(model.parameters()).device
    gen = torch.Generator(device=device)
    gen.manual_seed(seed if seed is not None else random.randrange(2**31))
    input_ids, mask = encode_prompts(tok, prompts, prompt_max_tokens, device)
    B, P = input_ids.shape
    eos = tok.eos_token_id
    was_training = model.training
    model.eval()
    out_tokens, out_lps = [], []
    done = torch.zeros(B, dtype=torch.bool, device=device)
    attn = mask.clone()
    with torch.no_grad():
        pos = position_ids_from_mask(attn)
        out = model(input_ids=input_ids, attention_mask=attn, position_ids=pos, use_cache=True,
                    output_hidden_states=score_fn is not None)
        for step in range(max_new_tokens):
            logits = out.logits[:, -1, :].float()                               # (B, V)
            if step < min_new_tokens:
                logits = forbid_eos(logits, eos)
            if score_fn is not None:
                scores = score_fn(logits, out.hidden_states[-1][:, -1, :])      # (B, V)
            else:
                scores = torch.log_softmax(logits, dim=-1)
            if temperature == 0:
                nxt = filter_logits(scores, top_k, top_p).argmax(-1)
                lp = torch.zeros(B, device=device)
            else:
                logp_s = torch.log_softmax(filter_logits(scores / temperature, top_k, top_p), dim=-1)
                nxt = torch.multinomial(logp_s.exp(), 1, generator=gen).squeeze(-1)
                lp = logp_s.gather(-1, nxt[:, None]).squeeze(-1)
            nxt = torch.where(done, torch.full_like(nxt, tok.pad_token_id), nxt)
            out_tokens.append(nxt)
            out_lps.append(torch.where(done, torch.zeros_like(lp), lp))
            attn = torch.cat([attn, (~done).long()[:, None]], dim=1)
            done = done | (nxt == eos)
            if bool(done.all()):
                break
            out = model(input_ids=nxt[:, None], attention_mask=attn, cache=out.cache,
                        position_ids=(attn.sum(-1, keepdim=True) - 1), use_cache=True,
                        output_hidden_states=score_fn is not None)
    model.train(was_training)
    resp = torch.stack(out_tokens, dim=1)                                       # (B, R)
    resp_mask = attn[:, P:]
    texts = [tok.decode([t for t, m in zip(r.tolist(), rm.tolist()) if m and t != eos], skip_special_tokens=True)
             for r, rm in zip(resp, resp_mask)]
    return Samples(torch.cat([input_ids, resp], dim=1), attn, resp_mask, P, texts, torch.stack(out_lps, dim=1))


def logprobs_from_logits(logits, tokens):
    """log p(tokens) under logits. logits (B, T, V), tokens (B, T) -> (B, T)."""
    import torch

    return torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


# ====================================================================== diversity

def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct n-grams / all n-grams over characters of all texts (Japanese has no spaces)."""
    grams, total = set(), 0
    for t in texts:
        for i in range(len(t) - n + 1):
            grams.add(t[i:i + n])
            total += 1
    return len(grams) / total if total else 0.0


# ====================================================================== run outputs

def _truncate_lines(path: Path, n: int) -> int:
    """Keep the first ``n`` lines of ``path`` (atomically); return how many there are."""
    from jprefs.data.io import atomic_write_text

    lines = path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []
    if len(lines) < n:
        from jprefs.errors import JprefsError

        raise JprefsError(f"{path} has {len(lines)} lines but the checkpoint needs {n}; the run folder was "
                          "edited. fix: add resume=false to start over, or use a new -o folder")
    atomic_write_text(path, "".join(lines[:n]))
    return n


class RunWriter:
    """The files every run writes under ``out``: config, metrics, samples, curves, policy, heads.

    ``dist`` (a :class:`jprefs.rl.dist.Dist`): in a data-parallel run every process opens the
    run (finds the checkpoint to resume from, or the completion marker), but only the main
    process writes; on the others every writing method does nothing.

    ``finished``: set when ``out`` holds a finished run of the same config (``done.json``);
    the writer then touches nothing and the caller returns ``finished["summary"]``.
    """

    def __init__(self, out: str | os.PathLike, cfg=None, dist=None):
        from jprefs.config import save_config
        from jprefs.data.io import eprint

        self.out = Path(out)
        self.write = dist is None or dist.is_main
        self.metrics_path = self.out / "metrics.jsonl"
        self.samples_path = self.out / "samples.jsonl"
        self.history: list[dict] = []
        self._t0 = time.time()
        self.cfg = cfg
        self.n_metrics = self.n_samples = 0
        # A checkpoint of the same config in ``out``: resume from it (see jprefs/rl/checkpoint.py).
        self.checkpoint: dict | None = None
        self.finished: dict | None = None
        if cfg is not None and getattr(cfg, "resume", False):
            from jprefs.rl.checkpoint import find_finished, find_resumable

            # Reads only, on every process (a changed config raises everywhere alike).
            self.finished = find_finished(self.out, cfg)
            if self.finished is None:
                self.checkpoint = find_resumable(self.out, cfg)
        if dist is not None:
            dist.barrier()                  # every process has read before the main one writes
        if self.finished is not None:
            if self.write:
                eprint(f"jprefs rl: run in {self.out} already finished at step {self.finished['step']}; "
                       f"use resume=false to start over or a new -o")
            return
        if not self.write:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        if self.checkpoint is not None:
            # Drop what was logged after the checkpoint so that no step appears twice.
            self.n_metrics = _truncate_lines(self.metrics_path, self.checkpoint["metrics_lines"])
            self.n_samples = _truncate_lines(self.samples_path, self.checkpoint["samples_lines"])
            self.history = [json.loads(x) for x in self.metrics_path.read_text(encoding="utf-8").splitlines()]
            self._t0 -= self.history[-1].get("time/elapsed_s", 0.0) if self.history else 0.0
            eprint(f"jprefs rl: resuming from step {self.checkpoint['step']} "
                   f"({self.checkpoint['dir']}; resume=false starts over)")
        else:
            # Fresh run: truncate logs, drop old checkpoints and the completion marker (a rerun replaces them).
            self.metrics_path.write_text("", encoding="utf-8")
            self.samples_path.write_text("", encoding="utf-8")
            import shutil

            from jprefs.rl.checkpoint import DONE

            (self.out / DONE).unlink(missing_ok=True)
            for d in list(self.out.glob("checkpoint-*")) + list(self.out.glob(".checkpoint-*.tmp")):
                shutil.rmtree(d, ignore_errors=True)
        if cfg is not None:
            save_config(cfg, self.out / "config.yaml")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.write:
            return
        row = {"step": step, "time/elapsed_s": round(time.time() - self._t0, 3)}
        row.update({k: (float(v) if v is not None else None) for k, v in metrics.items()})
        self.history.append(row)
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.n_metrics += 1

    def samples(self, step: int, prompts: Sequence[str], responses: Sequence[str], rewards=None, **extra) -> None:
        if not self.write:
            return
        with open(self.samples_path, "a", encoding="utf-8") as f:
            for i, (p, r) in enumerate(zip(prompts, responses)):
                row = {"step": step, "prompt": p, "response": r}
                if rewards is not None:
                    row["reward"] = float(rewards[i])
                row.update(extra)
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                self.n_samples += 1

    def plot(self, keys: Sequence[str], title: str) -> Path | None:
        """One panel per metric key against step, saved as ``curves.png``."""
        if not self.write:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        keys = [k for k in keys if any(r.get(k) is not None for r in self.history)]
        if not keys:
            return None
        ncol = min(3, len(keys))
        nrow = (len(keys) + ncol - 1) // ncol
        fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.0 * nrow), squeeze=False)
        for ax in axes.flat[len(keys):]:
            ax.axis("off")
        for ax, k in zip(axes.flat, keys):
            pts = [(r["step"], r[k]) for r in self.history if r.get(k) is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 50 else None)
            ax.set_title(k)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        fig.suptitle(title)
        fig.tight_layout()
        path = self.out / "curves.png"
        tmp = self.out / ".curves.tmp.png"
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        os.replace(tmp, path)
        return path

    def save_policy(self, model, tok, subdir: str = "policy") -> Path:
        """Policy weights (safetensors) and tokenizer; a LoRA model is merged first."""
        d = self.out / subdir
        if not self.write:
            return d
        if hasattr(model, "merge_and_unload"):
            import copy

            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(d, safe_serialization=True)
        tok.save_pretrained(d)
        return d

    def save_heads(self, heads, name: str, meta: dict | None = None) -> Path:
        """Heads (``torch.nn.Module``) as ``NAME.safetensors`` plus ``NAME.json`` describing them."""
        from safetensors.torch import save_file

        from jprefs.data.io import atomic_write_json

        path = self.out / f"{name}.safetensors"
        if not self.write:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in heads.state_dict().items()}
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(state, str(tmp))
        os.replace(tmp, path)
        atomic_write_json(self.out / f"{name}.json", meta or {})
        return path

    def summary(self, obj: dict) -> Path:
        from jprefs.data.io import atomic_write_json

        if not self.write:
            return self.out / "summary.json"
        return atomic_write_json(self.out / "summary.json", obj)

    def finish(self, step: int) -> None:
        """Write the completion marker ``done.json`` (atomically, after every other output): a
        rerun with the same config then stops at once instead of redoing the last steps."""
        if self.write:
            from jprefs.rl.checkpoint import write_done

            write_done(self, step)


def optimizer(params, cfg, lr: float | None = None):
    import torch

    return torch.optim.AdamW([p for p in params if p.requires_grad], lr=lr if lr is not None else cfg.lr,
                             betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.weight_decay)


def maybe_lora(model, cfg):
    """Wrap ``model`` with a LoRA adapter (peft) when ``cfg.lora_r > 0``."""
    if cfg.lora_r <= 0:
        return model
    from jprefs.errors import require

    peft = require("peft", "peft", "LoRA (lora_r > 0)")
    lcfg = peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
                           target_modules="all-linear")
    return peft.get_peft_model(model, lcfg)
