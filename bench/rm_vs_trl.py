"""``jprefs train-rm`` beside trl's ``RewardTrainer``: the same encoder, pairs, batch and epochs through both.

Issue #16, item 5: is jprefs' own pairwise reward-model loop needed for encoders, or does trl's
maintained ``RewardTrainer`` do the same job? Both arms train a Bradley-Terry reward model on the
same training pairs of ja_mt_bench (held out BY QUESTION with train-rm's own split,
:func:`jprefs.classifiers.data.split_by_group`) and are scored on the same held-out pairs.

- **jprefs**: :func:`jprefs.classifiers.train.train_reward_model` (what ``jprefs train-rm`` runs)
  on the training file, ``eval_fraction=0`` (nothing selected: both arms keep their last weights).
- **trl**: ``trl.RewardTrainer(model=AutoModelForSequenceClassification(num_labels=1),
  args=trl.RewardConfig(...), train_dataset=datasets.Dataset, processing_class=tokenizer)``,
  the model loaded from the same converted backbone with the same seed, given the same mean
  pooler as train-rm (:func:`jprefs.classifiers.pooling.apply_pooling`: e5 ships no ``[CLS]``
  pooler) and the same frozen word embeddings. The data is trl's standard layout
  (``prompt`` / ``chosen`` / ``rejected`` plain text: an encoder tokenizer has no chat template).
  trl does not truncate: it DROPS every pair with a side over ``max_length`` tokens (at 256: 237
  of the 682 training pairs, and 113 of the first 160, the recorded run's subset). So the texts
  are cut beforehand the way train-rm cuts them (the prompt's last ``max_prompt_length`` tokens,
  the response's first ones to fill ``max_length``) and the bench checks that trl kept every pair:
  both see the same pairs per epoch.

Each arm runs in its own subprocess; its peak RSS is the child's ``ru_maxrss`` from ``os.wait4``
(the whole child: imports, model load, tokenisation, training, held-out scoring). Time per epoch
is the training loop alone: train-rm's per-epoch progress bar from open to close (batches, forward,
backward, optimizer steps; not the checkpoint it saves between epochs), trl's
``on_epoch_begin`` -> ``on_epoch_end`` callback. Held-out accuracy is ``P(r_chosen > r_rejected)``
(ties count half), each model fed the input layout it was trained on (train-rm: the
``RewardModel`` it saved; trl: a plain forward of its trained model on trl's own tokenisation of
the held-out pairs), with a bootstrap interval over questions.

    PYTHONPATH=. .venv/bin/python bench/rm_vs_trl.py --limit 160 --epochs 1   # the recorded run: ~21 min, 2 busy cores
    PYTHONPATH=. .venv/bin/python bench/rm_vs_trl.py            # all 682 training pairs, 2 epochs: hours on 2 cores

Writes ``bench/results/rm-vs-trl.json`` and ``bench/results/rm-vs-trl.md``. Skips (exit 0, a
message) when ``../shared/data/ja_mt_bench`` is absent.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ja_mt_bench" / "ja_mt_bench_turn1_pairs.jsonl"
RESULTS = ROOT / "bench" / "results"

# The settings both arms share (the e5-small-ja-mt-bench recipe's, epochs and batch as in the brief).
SETTINGS = {
    "backbone": "e5-small-offline",
    "pooling": "mean",
    "input_prefix": "query: ",
    "max_length": 256,
    "max_prompt_length": 64,
    "epochs": 2,
    "batch_size": 8,
    "lr": 5e-5,
    "weight_decay": 0.01,
    "warmup_ratio": 0.1,
    "max_grad_norm": 1.0,
    "seed": 42,
    "freeze_embeddings": True,
    "group_by_length": False,     # trl's group_by_length sampler needs an input_ids/length column it lacks
    "threads": 2,
    "eval_batch_size": 32,
}


# ------------------------------------------------------------------ data

def split_pairs(path, eval_fraction: float = 0.2, seed: int = 42, limit: int = 0):
    """(train, held-out) PreferencePairs of ``path``, held out by prompt (= by question) with train-rm's
    own split; ``limit``: keep the first N training pairs (the held-out pairs stay whole)."""
    from jprefs.classifiers.data import load_rm_data, split_by_group

    train, held = split_by_group(load_rm_data(path), eval_fraction, seed)
    tr = train.pairs()
    return (tr[:limit] if limit else tr), held.pairs()


def _fit_text(tok, prompt: str, response: str, max_length: int, max_prompt_length: int, sep: str = "\n"):
    """``(prompt_text, response_text)`` cut so that trl's tokenisation of ``prompt + response + eos``
    has at most ``max_length`` tokens: the prompt keeps its last ``max_prompt_length`` tokens, the
    response its first ones (train-rm's rule in :func:`jprefs.classifiers.inputs.encode_pairs`)."""
    def n_tokens(text):
        return len(tok(text=text).input_ids)

    ep = tok(prompt, add_special_tokens=False, return_offsets_mapping=True)
    if len(ep.input_ids) > max_prompt_length:
        prompt = prompt[ep.offset_mapping[-max_prompt_length][0]:]
    prompt = prompt + sep
    eos = tok.eos_token or ""
    room = max_length - n_tokens(prompt + eos)
    er = tok(response, add_special_tokens=False, return_offsets_mapping=True)
    keep = max(1, min(len(er.input_ids), room))
    while True:
        cut = response if keep >= len(er.input_ids) else response[:er.offset_mapping[keep - 1][1]]
        if n_tokens(prompt + cut + eos) <= max_length or keep <= 1:
            return prompt, cut
        keep -= 1


def trl_tokenizer(tok):
    """A tokenizer that trl's RewardTrainer can use with an encoder: no chat template (plain text), and an
    ``eos_token`` (trl appends it to every text): a BERT tokenizer has none, so its ``[SEP]`` serves."""
    tok.chat_template = None
    if tok.eos_token is None:
        tok.eos_token = tok.sep_token
    return tok


def trl_rows(tok, pairs, settings: dict) -> dict[str, list[str]]:
    """trl's standard explicit-prompt preference layout (``prompt`` / ``chosen`` / ``rejected`` text)."""
    from jprefs.classifiers.inputs import prompt_to_text

    rows = {"prompt": [], "chosen": [], "rejected": []}
    for i, p in enumerate(pairs):
        text = settings["input_prefix"] + (prompt_to_text(p.prompt, index=i) or "")
        pc, c = _fit_text(tok, text, p.chosen, settings["max_length"], settings["max_prompt_length"])
        pr, r = _fit_text(tok, text, p.rejected, settings["max_length"], settings["max_prompt_length"])
        # one prompt text for both sides: the shorter cut (they differ only when the prompt alone is long)
        prompt = pc if len(pc) <= len(pr) else pr
        rows["prompt"].append(prompt)
        rows["chosen"].append(c)
        rows["rejected"].append(r)
    return rows


# ------------------------------------------------------------------ the two arms

def _epoch_timer():
    """A wrapper of :func:`jprefs.progress.progress` that times each train-rm epoch bar (open -> close)."""
    import jprefs.progress as jp

    spans: list[float] = []
    real = jp.progress

    def timed(*a, **kw):
        bar = real(*a, **kw)
        if not str(kw.get("desc", "")).startswith("train-rm epoch"):
            return bar
        t0 = time.perf_counter()
        close = bar.close

        def done():
            if len(spans) < int(str(kw["desc"]).split()[-1].split("/")[0]):
                spans.append(time.perf_counter() - t0)
            close()

        bar.close = done
        return bar

    jp.progress = timed
    return spans, lambda: setattr(jp, "progress", real)


def train_jprefs(train_file, heldout, out_dir, settings: dict, *, log=print) -> dict:
    """Train with ``jprefs train-rm`` (its library function) on ``train_file``; score ``heldout`` pairs.

    Returns ``epoch_s``, ``losses`` (per epoch), ``pairs_per_epoch``, ``chosen`` / ``rejected`` held-out
    rewards and ``score_s``."""
    import torch

    from jprefs.classifiers.config import TrainRMConfig
    from jprefs.classifiers.reward_model import RewardModel
    from jprefs.classifiers.train import train_reward_model

    torch.set_num_threads(settings["threads"])
    cfg = TrainRMConfig(
        data=str(train_file), output_dir=str(out_dir), objective="pairwise", backbone=settings["backbone"],
        pooling=settings["pooling"], input_prefix=settings["input_prefix"], max_length=settings["max_length"],
        max_prompt_length=settings["max_prompt_length"], epochs=settings["epochs"],
        batch_size=settings["batch_size"], lr=settings["lr"], weight_decay=settings["weight_decay"],
        warmup_ratio=settings["warmup_ratio"], max_grad_norm=settings["max_grad_norm"], seed=settings["seed"],
        freeze_embeddings=settings["freeze_embeddings"], group_by_length=settings["group_by_length"],
        eval_fraction=0.0, train_layers=0, mixed_precision="no", eval_batch_size=settings["eval_batch_size"],
        center_samples=256, plots=False, resume=False)
    cfg.validate()
    spans, restore = _epoch_timer()
    try:
        metrics = train_reward_model(cfg, log=log)
    finally:
        restore()
    rm = RewardModel.from_pretrained(out_dir, device="cpu")
    t0 = time.perf_counter()
    prompts = [p.prompt for p in heldout]
    rc = rm.score(prompts, [p.chosen for p in heldout], batch_size=settings["eval_batch_size"])
    rr = rm.score(prompts, [p.rejected for p in heldout], batch_size=settings["eval_batch_size"])
    return {"epoch_s": spans, "losses": [h["losses/train"] for h in metrics["history"]],
            "pairs_per_epoch": metrics["data"]["train"], "chosen": [float(x) for x in rc],
            "rejected": [float(x) for x in rr], "score_s": time.perf_counter() - t0,
            "truncated_train_sequences": metrics["data"]["truncated_train_sequences"]}


def train_trl(train_pairs, heldout, out_dir, settings: dict, *, log=print) -> dict:
    """Train with trl's ``RewardTrainer`` on ``train_pairs``; score ``heldout`` pairs (plain forward).

    Returns what :func:`train_jprefs` does plus ``train_accuracy`` (trl's logged batch accuracy, last epoch)."""
    import datasets
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback, set_seed
    from trl import RewardConfig, RewardTrainer

    from jprefs.classifiers.backbones import resolve_backbone
    from jprefs.classifiers.pooling import apply_pooling

    torch.set_num_threads(settings["threads"])
    src = resolve_backbone(settings["backbone"])
    set_seed(settings["seed"])       # as train-rm: seed, then load (the same head init draw)
    tok = trl_tokenizer(AutoTokenizer.from_pretrained(src))
    model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=1, use_safetensors=True)
    model.config.pad_token_id = tok.pad_token_id
    if settings["pooling"] != "cls":
        apply_pooling(model, settings["pooling"])
    if settings["freeze_embeddings"]:
        model.get_input_embeddings().requires_grad_(False)

    class Timer(TrainerCallback):
        def __init__(self):
            self.spans, self.t0, self.logs = [], 0.0, []

        def on_epoch_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, args, state, control, **kw):
            self.spans.append(time.perf_counter() - self.t0)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.logs.append({"epoch": state.epoch, "loss": float(logs["loss"]),
                                  "accuracy": float(logs.get("accuracy", float("nan")))})

    timer = Timer()
    total_steps = math.ceil(len(train_pairs) / settings["batch_size"]) * settings["epochs"]
    train_ds = datasets.Dataset.from_dict(trl_rows(tok, train_pairs, settings))
    args = RewardConfig(
        output_dir=str(out_dir), num_train_epochs=settings["epochs"],
        per_device_train_batch_size=settings["batch_size"], learning_rate=settings["lr"],
        # train-rm's warmup: int(warmup_ratio * total steps) (a float warmup_steps would be ceil'ed)
        weight_decay=settings["weight_decay"], warmup_steps=int(settings["warmup_ratio"] * total_steps),
        lr_scheduler_type="linear", max_grad_norm=settings["max_grad_norm"], seed=settings["seed"],
        max_length=settings["max_length"],
        # trl's defaults that train-rm does not share, set to train-rm's: fp32 on CPU (bf16 defaults on),
        # no activation (gradient) checkpointing (defaults on), dropout kept (trl disables it by default)
        bf16=False, activation_checkpointing=False, disable_dropout=False,
        logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none", dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(), disable_tqdm=True)
    trainer = RewardTrainer(model=model, args=args, train_dataset=train_ds, processing_class=tok, callbacks=[timer])
    kept = len(trainer.train_dataset)
    if kept != len(train_pairs):
        log(f"trl dropped {len(train_pairs) - kept} of {len(train_pairs)} pairs over max_length")
    trainer.train()
    trainer.save_model(str(out_dir / "model"))
    # held-out: trl's own tokenisation of the held-out pairs, one plain forward per side
    held = trainer._prepare_dataset(datasets.Dataset.from_dict(trl_rows(tok, heldout, settings)), tok, args,
                                    "heldout")
    if len(held) != len(heldout):
        raise RuntimeError(f"trl dropped {len(heldout) - len(held)} held-out pairs over max_length")
    t0 = time.perf_counter()
    m = trainer.model.eval()
    dev = next(m.parameters()).device

    def forward(seqs):
        out = [0.0] * len(seqs)
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        bs = settings["eval_batch_size"]
        with torch.no_grad():
            for s in range(0, len(order), bs):
                idx = order[s:s + bs]
                T = max(len(seqs[i]) for i in idx)
                ids = torch.full((len(idx), T), tok.pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(idx), T), dtype=torch.long)
                for r, i in enumerate(idx):
                    ids[r, :len(seqs[i])] = torch.tensor(seqs[i])
                    mask[r, :len(seqs[i])] = 1
                logits = m(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits[:, 0]
                for r, i in enumerate(idx):
                    out[i] = float(logits[r])
        return out

    rc, rr = forward(held["chosen_ids"]), forward(held["rejected_ids"])
    epochs = settings["epochs"]
    by_epoch = [[x for x in timer.logs if e < x["epoch"] <= e + 1 + 1e-9] for e in range(epochs)]
    last = by_epoch[-1] if by_epoch and by_epoch[-1] else timer.logs
    return {"epoch_s": timer.spans, "losses": [sum(x["loss"] for x in b) / max(1, len(b)) for b in by_epoch],
            "pairs_per_epoch": kept, "chosen": rc, "rejected": rr, "score_s": time.perf_counter() - t0,
            "train_accuracy": sum(x["accuracy"] for x in last) / max(1, len(last)),
            "first_loss": timer.logs[0]["loss"] if timer.logs else None,
            "steps": trainer.state.global_step}


def pair_accuracy(chosen, rejected) -> list[float]:
    """Per pair: 1 if the chosen reward is higher, 0.5 on a tie, else 0 (:func:`jprefs.eval.metrics.wins`)."""
    from jprefs.eval.metrics import wins

    return wins(chosen, rejected).tolist()


# ------------------------------------------------------------------ subprocess runner

def _child(args) -> int:
    from jprefs.classifiers.data import load_rm_data

    work = Path(args.work)
    settings = json.loads((work / "settings.json").read_text())
    train, held = (load_rm_data(work / f).pairs() for f in ("train.jsonl", "heldout.jsonl"))
    out = work / args.child
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.child == "jprefs":
        res = train_jprefs(work / "train.jsonl", held, out, settings)
    else:
        res = train_trl(train, held, out, settings)
    res["wall_s"] = time.perf_counter() - t0
    (out / "result.json").write_text(json.dumps(res))
    return 0


def run_arm(arm: str, work: Path, timeout: float) -> dict:
    """Run one arm in a child process; its result plus ``peak_rss_mib`` (the child's ru_maxrss)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JPREFS_NO_PROGRESS": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = open(work / f"{arm}.log", "w")
    p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", arm, "--work", str(work)],
                         env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT))
    t0 = time.time()
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.time() - t0 > timeout:
            p.kill()
            pid, status, ru = os.wait4(p.pid, 0)
            break
        time.sleep(0.5)
    p.returncode = os.waitstatus_to_exitcode(status)
    log.close()
    if p.returncode != 0:
        tail = (work / f"{arm}.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"arm {arm} failed (exit {p.returncode}):\n{tail}")
    res = json.loads((work / arm / "result.json").read_text())
    res["peak_rss_mib"] = ru.ru_maxrss / 1024          # Linux: KiB
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--limit", type=int, default=0, help="first N training pairs (0: all)")
    ap.add_argument("--epochs", type=int, default=SETTINGS["epochs"])
    ap.add_argument("--threads", type=int, default=SETTINGS["threads"])
    ap.add_argument("--order", default="jprefs,trl", help="arms in run order")
    ap.add_argument("--work", default="", help="work folder (default: a temporary one)")
    ap.add_argument("--out", default=str(RESULTS / "rm-vs-trl.json"))
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per arm")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(args)
    if not Path(args.data).is_file():
        print(f"skipped: {args.data} is absent (the shared ja_mt_bench data; see ../shared/data/README.md)")
        return 0
    import tempfile

    from jprefs.classifiers.data import group_key
    from jprefs.data.io import atomic_write_json, atomic_write_text, write_jsonl
    from jprefs.eval.stats import bootstrap_ci

    settings = {**SETTINGS, "epochs": args.epochs, "threads": args.threads}
    work = Path(args.work or tempfile.mkdtemp(prefix="rm-vs-trl-"))
    work.mkdir(parents=True, exist_ok=True)
    train, held = split_pairs(args.data, 0.2, settings["seed"], args.limit)
    write_jsonl(work / "train.jsonl", train)
    write_jsonl(work / "heldout.jsonl", held)
    atomic_write_text(work / "settings.json", json.dumps(settings))
    groups = [group_key(p) for p in held]
    print(f"{len(train)} training pairs on {len({group_key(p) for p in train})} questions, {len(held)} held-out "
          f"pairs on {len(set(groups))} questions; work folder {work}", flush=True)
    res = {}
    for arm in args.order.split(","):
        t0 = time.time()
        res[arm] = run_arm(arm, work, args.timeout)
        print(f"{arm}: {time.time() - t0:.0f}s, epochs {[round(x, 1) for x in res[arm]['epoch_s']]}s, "
              f"losses {[round(x, 4) for x in res[arm]['losses']]}, peak RSS {res[arm]['peak_rss_mib']:.0f} MiB",
              flush=True)
    longer = pair_accuracy([len(p.chosen) for p in held], [len(p.rejected) for p in held])
    base = res["jprefs"]
    table = {}
    for arm, r in res.items():
        acc = pair_accuracy(r["chosen"], r["rejected"])
        est, (lo, hi) = bootstrap_ci(acc, groups, seed=0)
        s_ep = sum(r["epoch_s"]) / len(r["epoch_s"])
        table[arm] = {"s_per_epoch": s_ep, "epoch_s": r["epoch_s"],
                      "s_per_epoch_ratio": s_ep / (sum(base["epoch_s"]) / len(base["epoch_s"])),
                      "peak_rss_mib": r["peak_rss_mib"], "peak_rss_ratio": r["peak_rss_mib"] / base["peak_rss_mib"],
                      "heldout_accuracy": est, "heldout_ci95": [lo, hi], "losses": r["losses"],
                      "pairs_per_epoch": r["pairs_per_epoch"], "wall_s": r["wall_s"], "score_s": r["score_s"],
                      **{k: r[k] for k in ("train_accuracy", "first_loss", "steps", "truncated_train_sequences")
                         if k in r}}
    if "trl" in res and "jprefs" in res:
        diff = [a - b for a, b in zip(pair_accuracy(res["trl"]["chosen"], res["trl"]["rejected"]),
                                      pair_accuracy(base["chosen"], base["rejected"]))]
        est, (lo, hi) = bootstrap_ci(diff, groups, seed=0)
        paired = {"trl_minus_jprefs": est, "ci95": [lo, hi]}
    else:
        paired = None
    import torch
    import transformers
    import trl

    out = {"data": str(args.data), "train_pairs": len(train), "heldout_pairs": len(held),
           "heldout_questions": len(set(groups)), "limit": args.limit, "settings": settings, "order": args.order,
           "longer_wins_heldout": sum(longer) / len(longer), "arms": table, "paired_accuracy_difference": paired,
           "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                        "trl": trl.__version__},
           "measured": {"time_per_epoch": "training loop only (train-rm: epoch progress bar open->close; trl: "
                                          "on_epoch_begin->on_epoch_end)",
                        "peak_rss": "os.wait4 ru_maxrss of each arm's own child process (whole run)",
                        "heldout_accuracy": "P(r_chosen > r_rejected), ties 1/2; 95% bootstrap over questions"}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, out)
    atomic_write_text(Path(args.out).with_suffix(".md"), markdown(out))
    print(markdown(out))
    return 0


def markdown(out: dict) -> str:
    s = out["settings"]
    lines = [f"# train-rm beside trl's RewardTrainer ({s['backbone']}, ja_mt_bench)", "",
             f"{out['train_pairs']} training pairs, {out['heldout_pairs']} held-out pairs on "
             f"{out['heldout_questions']} questions (split by question); {s['epochs']} epoch(s), batch "
             f"{s['batch_size']} pairs, max_length {s['max_length']}, lr {s['lr']}, seed {s['seed']}, "
             f"{s['threads']} torch threads; run order {out['order']}.", "",
             "| trainer | s/epoch | ratio | peak RSS MiB | ratio | held-out accuracy (95% CI, by question) | "
             "train loss per epoch |",
             "|---|---|---|---|---|---|---|"]
    for arm, r in out["arms"].items():
        lo, hi = r["heldout_ci95"]
        lines.append(f"| {arm} | {r['s_per_epoch']:.0f} | {r['s_per_epoch_ratio']:.2f} | {r['peak_rss_mib']:.0f} | "
                     f"{r['peak_rss_ratio']:.2f} | {r['heldout_accuracy']:.3f} ({lo:.3f}-{hi:.3f}) | "
                     f"{', '.join(f'{x:.3f}' for x in r['losses'])} |")
    lines.append(f"| longer answer wins | | | | | {out['longer_wins_heldout']:.3f} | |")
    if out.get("paired_accuracy_difference"):
        d = out["paired_accuracy_difference"]
        lines += ["", f"trl minus jprefs, held-out accuracy: {d['trl_minus_jprefs']:+.3f} "
                      f"(95% CI {d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f}, paired, by question)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
