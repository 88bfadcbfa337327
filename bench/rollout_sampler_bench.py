"""Rollout sampler bench: the hand-written KV-cache loop (jprefs.rl.sampling.sample) against
transformers' generate with logits processors (jprefs.rl.processors.sample_generate).

PPO-shaped rollouts: batch 32, prompts of 16 tokens (BOS + 15), 32 new tokens, temperature 1,
min_new_tokens = max_new_tokens = 32 (fixed-length responses, as the PPO runs of
bench/rl_sentiment_bench.py); and ILQL decoding (beta_gen = 1, top-k 20, the bench's ilql_top_k)
with random Q/V heads. Two policy sizes: the RL bench's tiny GPT-2 (3 layers, 128 hidden,
4 heads, vocabulary 3000) and a larger one (6 layers, 512 hidden, 8 heads, vocabulary 3000).
One torch thread. The two samplers run interleaved (A B A B ..., the order alternating per
repetition) with the same seed, so both see the same load on a busy machine and draw the same
tokens (the bench checks the sequences are identical); the figures that matter are the ratios.

    python bench/rollout_sampler_bench.py -o bench/results/rollout-sampler            # ~5 min
    python bench/rollout_sampler_bench.py -o /tmp/rs --reps 3 --sizes small          # smoke test

Writes OUT/results.json and OUT/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = {"small": dict(n_layer=3, n_embd=128, n_head=4), "large": dict(n_layer=6, n_embd=512, n_head=8)}
VOCAB = 3000


def make_tokenizer(vocab_size: int = VOCAB):
    """A character tokenizer with ``vocab_size`` entries (BOS/EOS, pad, CJK characters)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "<pad>": 1, **{chr(0x4E00 + i): i + 2 for i in range(vocab_size - 2)}}
    t = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    t.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
    t.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=t, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<pad>", unk_token="<pad>", padding_side="left")


def make_model(tok, n_layer, n_embd, n_head, seed=0):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=tok.bos_token_id,
                     eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return GPT2LMHeadModel(cfg).eval()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--out", default="bench/results/rollout-sampler")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--sizes", default="small,large")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=32)
    args = ap.parse_args(argv)

    import random

    import torch
    import transformers

    from jprefs.rl.ilql import ilql_score_fn, make_heads
    from jprefs.rl.processors import sample_generate
    from jprefs.rl.sampling import sample

    torch.set_num_threads(1)
    tok = make_tokenizer()
    rnd = random.Random(0)
    prompts = ["".join(chr(0x4E00 + rnd.randrange(VOCAB - 2)) for _ in range(args.prompt_tokens - 1))
               for _ in range(args.batch)]
    samplers = {"native": sample, "generate": sample_generate}
    rows = []
    for size in args.sizes.split(","):
        model = make_model(tok, **SIZES[size])
        heads = make_heads(model.config.n_embd, len(tok))
        cases = {
            "ppo": dict(temperature=1.0, min_new_tokens=args.new_tokens),
            "ilql": dict(temperature=1.0, top_k=20, score_fn=ilql_score_fn(heads, 1.0)),
        }
        for case, kw in cases.items():
            kw = dict(kw, max_new_tokens=args.new_tokens, prompt_max_tokens=64)
            for name, fn in samplers.items():                          # warm-up
                fn(model, tok, prompts[:4], seed=0, **dict(kw, max_new_tokens=4))
            times = {n: [] for n in samplers}
            tokens, same = {}, True
            for rep in range(args.reps):
                order = list(samplers) if rep % 2 == 0 else list(samplers)[::-1]
                got = {}
                for name in order:
                    t0 = time.perf_counter()
                    s = samplers[name](model, tok, prompts, seed=rep, **kw)
                    times[name].append(time.perf_counter() - t0)
                    got[name] = s
                    tokens[name] = int(s.response_mask.sum())
                same &= torch.equal(got["native"].sequences, got["generate"].sequences)
            med = {n: statistics.median(v) for n, v in times.items()}
            paired = [g / n for g, n in zip(times["generate"], times["native"])]
            row = {"size": size, "case": case, **{f"{n}_s": [round(x, 4) for x in v] for n, v in times.items()},
                   **{f"{n}_median_s": round(m, 4) for n, m in med.items()},
                   **{f"{n}_tokens_per_s": round(tokens[n] / med[n], 1) for n in samplers},
                   "ratio_generate_over_native": round(med["generate"] / med["native"], 3),
                   "paired_ratio_median": round(statistics.median(paired), 3),
                   "paired_ratio_min": round(min(paired), 3), "paired_ratio_max": round(max(paired), 3),
                   "identical_sequences": bool(same), "response_tokens": tokens["native"]}
            rows.append(row)
            print(f"{size:5s} {case:4s} native {med['native']:.3f}s  generate {med['generate']:.3f}s  "
                  f"ratio {row['ratio_generate_over_native']:.3f} (paired {row['paired_ratio_min']:.2f}-"
                  f"{row['paired_ratio_max']:.2f})  identical={same}", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
            "threads": 1, "cpus": os.cpu_count(), "loadavg_end": os.getloadavg(), "reps": args.reps,
            "batch": args.batch, "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
            "sizes": {k: SIZES[k] for k in args.sizes.split(",")}, "vocab": VOCAB}
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    lines = ["# Rollout sampler: hand-written KV-cache loop vs transformers generate + logits processors", "",
             f"batch {args.batch}, prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens, 1 torch thread, "
             f"{args.reps} interleaved repetitions, median; torch {torch.__version__}, transformers "
             f"{transformers.__version__}.", "",
             "| policy | decoding | native s | generate s | native tok/s | generate tok/s | generate / native "
             "| paired ratio range | same tokens |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sz = SIZES[r["size"]]
        lines.append(f"| {sz['n_layer']}L {sz['n_embd']}H | {r['case']} | {r['native_median_s']:.3f} | "
                     f"{r['generate_median_s']:.3f} | {r['native_tokens_per_s']:.0f} | {r['generate_tokens_per_s']:.0f} "
                     f"| **{r['ratio_generate_over_native']:.2f}** | {r['paired_ratio_min']:.2f}-"
                     f"{r['paired_ratio_max']:.2f} | {r['identical_sequences']} |")
    (out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"-> {out}/results.json, results.md")


if __name__ == "__main__":
    main()
