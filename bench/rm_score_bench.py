"""Scoring throughput: ``RewardModel.score`` vs ``transformers.pipeline("text-classification")``.

Same model, same Japanese (question, answer) pairs from ja_mt_bench (chosen and
rejected answers of each pair), same truncation (the questions fit in the prompt
budget, so ours equals the pipeline's ``truncation="only_second"``). Checks that
the scores agree to 1e-4, then times, interleaved in each repetition:

- ``pipeline`` with its default batch size (1),
- ``pipeline`` with ``batch_size=32``,
- ``RewardModel.score`` (length-sorted batches under ``inference_mode``),
- an fp32 ``torch.matmul`` (the machine's roof for fp32 on these cores),

and reports medians, ratios, and achieved GFLOP/s counted from the actual
token counts (no padding counted) against the measured matmul rate; per repetition
also the ceiling: the speed-up over pipeline batch 1 that a scorer at 100% of the
measured matmul rate would reach with the same FLOPs.

    python bench/rm_score_bench.py --model /work/artifacts/chabsa-rm --n 128 --reps 3

On a GPU (``--device cuda --dtype bf16``) the roof is a bf16 matmul (8192^3) and the
agreement check compares against the pipeline in the same dtype with ``--tol``
(default 1e-4 in fp32, 5e-2 in bf16, where batch composition changes rounding).
``--model config:DIR`` builds the architecture of DIR's ``config.json`` with random
(seeded) weights and DIR's tokenizer: the same FLOPs and shapes as the trained model,
for a machine that the 470 MB weights cannot travel to (``bench/gpu_checks.sh``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def model_flops(lengths, cfg) -> float:
    """Forward FLOPs of a BERT encoder over sequences of the given lengths (multiply-add = 2 FLOPs).

    Per layer and sequence of length L: Q, K, V, O projections 4 * 2*L*H*H, FFN 2 * 2*L*H*FF,
    attention scores and weighted values 2 * 2*L*L*H. The classifier head (pooler H*H, H*C) is added once.
    """
    H, FF, NL = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    total = 0.0
    for L in lengths:
        per_layer = 4 * 2 * L * H * H + 2 * 2 * L * H * FF + 2 * 2 * L * L * H
        total += NL * per_layer + 2 * H * H + 2 * H * cfg.num_labels
    return total


def matmul_rate(n: int = 1024, reps: int = 5, device: str = "cpu", dtype=None) -> float:
    """Measured GFLOP/s of an n x n matmul (best of ``reps``, after a warm-up; fp32 unless ``dtype``)."""
    import torch

    dtype = dtype or torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    torch.matmul(a, b)
    sync()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.matmul(a, b)
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="/work/artifacts/chabsa-rm",
                    help="reward model dir (default: the chABSA model); 'fresh' = untrained e5-small classifier")
    ap.add_argument("--data", default=str(SHARED / "ja_mt_bench" / "ja_mt_bench_turn1_pairs.jsonl"))
    ap.add_argument("--n", type=int, default=128, help="number of (question, answer) inputs")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32, help="RewardModel.score batch size")
    ap.add_argument("--max-tokens", type=int, default=0,
                    help="RewardModel.score padded-token budget per batch (0: its default, 1024 on CPU)")
    ap.add_argument("--dtype", default="fp32", help="fp32 | bf16 (the model's and the roof's dtype)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--tol", type=float, default=0.0, help="max |score diff| allowed (0: 1e-4 fp32, 5e-2 bf16)")
    ap.add_argument("--also-dtype", default="",
                    help="also time RewardModel.score in this dtype (e.g. bf16) in the same reps, on a copy of the "
                         "same weights; reports its speed-ups and its score agreement with the main dtype")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    from transformers import pipeline

    from jprefs.classifiers.reward_model import RewardConfig, RewardModel
    from jprefs.classifiers.data import load_rm_data

    from jprefs.classifiers.reward_model import resolve_dtype

    device, dtype = args.device, resolve_dtype(args.dtype, args.device)
    tol = args.tol or (1e-4 if dtype == torch.float32 else 5e-2)
    if args.model.startswith("config:"):
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        src = args.model[len("config:"):]
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(src))
        rcfg = RewardConfig.from_dict(json.loads((Path(src) / "jprefs_reward.json").read_text(encoding="utf-8"))) \
            if (Path(src) / "jprefs_reward.json").exists() else RewardConfig(objective="binary")
        # RewardModel applies the saved pooling and puts the model in eval mode
        rm = RewardModel(model.to(device=device, dtype=dtype), AutoTokenizer.from_pretrained(src), rcfg)
        model_name = f"{src} architecture, random weights (seed 0)"
    elif args.model == "fresh" or not Path(args.model).exists():
        from jprefs.classifiers.backbones import load_classifier

        torch.manual_seed(0)
        model, tok = load_classifier("e5-small-offline", 2)
        rm = RewardModel(model.to(device=device, dtype=dtype), tok,
                         RewardConfig(objective="binary", max_length=512, max_prompt_length=256))
        model_name = "e5-small-offline (fresh head)"
    else:
        rm = RewardModel.from_pretrained(args.model, device=device, dtype=args.dtype)
        model_name = args.model
    # prompts are kept whole (as truncation="only_second" does) so both truncate identically
    rm.config.max_length, rm.config.max_prompt_length = 512, 500
    rm.config.input = "pair"     # time sentence pairs even for a response-only model: the same work as the pipeline
    pairs = load_rm_data(args.data).pairs()      # rows with identical answers are rejected, not scored
    prompts, answers = [], []
    for p in pairs:
        for a in (p.chosen, p.rejected):
            prompts.append(p.prompt_text)
            answers.append(a)
    # a deterministic spread of lengths: every k-th input
    step = max(1, len(answers) // args.n)
    prompts, answers = prompts[::step][:args.n], answers[::step][:args.n]
    enc = rm.encode(prompts, answers)
    lengths = enc.lengths
    n_prompt_cut = sum(1 for p in prompts if len(rm.tokenizer(p, add_special_tokens=False)["input_ids"]) > 500)
    assert n_prompt_cut == 0, "a question exceeds the prompt budget: truncation would differ from the pipeline's"

    pipe = pipeline("text-classification", model=rm.model, tokenizer=rm.tokenizer, device=torch.device(device),
                    top_k=None, function_to_apply="none")
    # the model's input prefix (e5: "query: ") goes before the first segment, as RewardModel.encode puts it
    pre = rm.config.input_prefix or ""
    inputs = [{"text": pre + p, "text_pair": a} for p, a in zip(prompts, answers)]
    kw = dict(truncation="only_second", max_length=512)
    labels = rm.config.labels or [str(i) for i in range(rm.model.config.num_labels)]
    chosen = rm.model.config.id2label[rm.config.chosen_index]
    other = [rm.model.config.id2label[i] for i in range(rm.model.config.num_labels) if i != rm.config.chosen_index][0]

    def pipe_scores(bs):
        out = pipe(inputs, batch_size=bs, **kw)
        return np.array([{d["label"]: d["score"] for d in o}[chosen] - {d["label"]: d["score"] for d in o}[other]
                         for o in out], dtype=np.float32) - np.float32(rm.config.center)

    def ours():
        return rm.score(prompts, answers, batch_size=args.batch_size, max_tokens=args.max_tokens or None)

    # ---- agreement
    a, b1, b32 = ours(), pipe_scores(1), pipe_scores(32)
    diff = float(max(np.abs(a - b1).max(), np.abs(a - b32).max()))
    print(f"model {model_name}; {len(answers)} inputs, tokens mean {np.mean(lengths):.0f}, max {max(lengths)}; "
          f"labels {labels}; {device} {args.dtype}; max |score diff| vs pipeline = {diff:.2e}", file=sys.stderr)
    assert diff <= tol, f"scores differ by {diff} (> {tol})"

    # ---- the same weights in a second dtype (optional): agreement with the main dtype's scores
    also = None
    if args.also_dtype:
        import copy

        from scipy.stats import kendalltau, spearmanr

        also_dtype = resolve_dtype(args.also_dtype, device)
        rm2 = RewardModel(copy.deepcopy(rm.model).to(dtype=also_dtype), rm.tokenizer, rm.config)

        def also():
            return rm2.score(prompts, answers, batch_size=args.batch_size, max_tokens=args.max_tokens or None)

        c = also()
        # a reward model is used for its order: rank agreement matters more than the absolute difference
        agree = {"max_abs_diff": float(np.abs(c - a).max()), "mean_abs_diff": float(np.abs(c - a).mean()),
                 "score_std": float(a.std()), "spearman": float(spearmanr(a, c)[0]),
                 "kendall_tau": float(kendalltau(a, c)[0])}
        print(f"{args.also_dtype} vs {args.dtype}: {agree}", file=sys.stderr)

    # ---- timing, interleaved
    flops = model_flops(lengths, rm.model.config)
    times = {"pipeline_b1": [], "pipeline_b32": [], "ours": [], "matmul_gflops": []}
    if also:
        times["ours_" + args.also_dtype] = []
    for rep in range(args.reps):
        runs = [("pipeline_b1", lambda: pipe_scores(1)), ("ours", ours), ("pipeline_b32", lambda: pipe_scores(32)),
                ("matmul_gflops", None)] + ([("ours_" + args.also_dtype, also)] if also else [])
        for name, fn in runs:
            if fn is None:
                times[name].append(matmul_rate(8192 if device.startswith("cuda") else 1024, device=device,
                                               dtype=dtype))
                continue
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
        print(f"rep {rep + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in times.items()), file=sys.stderr)
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {
        "model": model_name, "inputs": len(answers), "tokens": int(sum(lengths)), "reps": args.reps,
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else f"cpu, {torch.get_num_threads()} threads",
        "dtype": args.dtype,
        "threads": torch.get_num_threads(), "batch_size": args.batch_size, "max_tokens": args.max_tokens,
        "median_s": {k: v for k, v in med.items() if k != "matmul_gflops"},
        "speedup_vs_pipeline_b1": med["pipeline_b1"] / med["ours"],
        "speedup_vs_pipeline_b32": med["pipeline_b32"] / med["ours"],
        "model_gflop": flops / 1e9,
        "gflops_ours": flops / med["ours"] / 1e9,
        "gflops_pipeline_b1": flops / med["pipeline_b1"] / 1e9,
        "matmul_gflops": med["matmul_gflops"],
        "max_abs_score_diff": diff,
    }
    res["fraction_of_matmul_roof"] = res["gflops_ours"] / res["matmul_gflops"]
    res["pipeline_b1_fraction_of_roof"] = res["gflops_pipeline_b1"] / res["matmul_gflops"]
    # per repetition (each rep's runs are neighbours in time, so load from other jobs hits them alike):
    # our speed-ups, our share of that rep's matmul rate, and the ceiling - the speed-up over pipeline
    # batch 1 that a scorer running at 100% of the measured matmul rate would reach with the same FLOPs
    per_rep = []
    for i in range(args.reps):
        g_ours, g_b1 = flops / times["ours"][i] / 1e9, flops / times["pipeline_b1"][i] / 1e9
        per_rep.append({"vs_b1": times["pipeline_b1"][i] / times["ours"][i],
                        "vs_b32": times["pipeline_b32"][i] / times["ours"][i],
                        "ours_fraction_of_roof": g_ours / times["matmul_gflops"][i],
                        "pipeline_b1_fraction_of_roof": g_b1 / times["matmul_gflops"][i],
                        "ceiling_vs_b1": times["matmul_gflops"][i] / g_b1})
    if also:
        k = "ours_" + args.also_dtype
        for i, r in enumerate(per_rep):
            r[f"{k}_vs_b1"] = times["pipeline_b1"][i] / times[k][i]
            r[f"{k}_vs_ours"] = times["ours"][i] / times[k][i]
        res[f"{k}_agreement"] = agree
    res["per_rep"] = per_rep
    res["median_per_rep"] = {k: statistics.median(r[k] for r in per_rep) for k in per_rep[0]}
    print(json.dumps(res, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
