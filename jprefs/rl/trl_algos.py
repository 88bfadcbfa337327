"""``algo: dpo | kto | grpo | rloo``: trl's maintained trainers inside a ``jprefs rl`` run.

trl (>= 1.16) trains; jprefs supplies the policy (``policy: tiny`` or a model folder, with
the optional SFT warm start of :func:`jprefs.rl.prepare.prepare_policy`), the data
(canonical pairs through :mod:`jprefs.data.export`, binary sets, prompt files), the reward
sources (:func:`jprefs.rl.rewards.make_reward`: RewardModel, classifier, ``module:function``)
and the run folder of every ``jprefs rl`` run (:class:`jprefs.rl.runwriter.RunWriter`):

- ``reference/``: the starting policy (after the warm start), safetensors. The run trains
  from it and (DPO, KTO, GRPO/RLOO with ``trl_beta > 0``) uses it as the frozen reference;
  a resumed run reloads it, so the reference is the same after a kill.
- ``metrics.jsonl``: trl's logged keys every step, plus jprefs' names where they mean the
  same thing (:data:`SAME_AS`: ``objective/score`` is the mean training reward as in PPO)
  and ``eval/reward`` / ``eval/length`` / ``eval/distinct2`` of fixed-prompt samples every
  ``eval_every`` steps (``samples.jsonl``) and at step 0.
- ``checkpoint-N/``: transformers Trainer checkpoints (``save_every``); jprefs adds
  ``checkpoint-N/resume/state.json`` (config, step, log line counts) once trl has written
  the rest, so that a rerun of the same command continues through
  ``trainer.train(resume_from_checkpoint=...)`` and a changed config is refused.
- ``policy/`` (safetensors, LoRA merged), ``curves.png``, ``summary.json``, ``done.json``.

Data layouts (trl's dataset formats): a tokenizer with a chat template gets the
conversational rows (``trl-conversational`` / ``trl-unpaired-conversational``), one
without (the tiny policy) trl's standard rows with the prompt rendered as every other algo
samples it for that policy (``render_prompt``: a single user turn is its bare text), not the
assistant-cue form of ``jprefs data export --format trl``: a policy is trained on the contexts
it is sampled from. KTO also takes a binary set (``prompt``/``response``/``label``).

Example::

    cfg = load_config(RLConfig, "rl/recipes/dpo-tiny-cpu.yaml")
    summary = train_trl(cfg, "runs/dpo")
"""

from __future__ import annotations

from pathlib import Path

# trl's logged key -> jprefs' name for the same quantity (PPO's metrics.jsonl); both are written. trl's GRPO /
# RLOO `kl` is a mean per completion token, PPO's `objective/kl` a sum over the response: the per-token one
# keeps its own name (under PPO's it read about 10x low at 11 tokens a completion)
SAME_AS = {
    "grpo": {"reward": "objective/score", "reward_std": "objective/score_std", "kl": "objective/kl_per_token",
             "completions/mean_length": "objective/response_tokens", "entropy": "policy/entropy"},
    "dpo": {"entropy": "policy/entropy"},
    "kto": {"entropy": "policy/entropy"},
}
SAME_AS["rloo"] = SAME_AS["grpo"]
# Panels of curves.png per algorithm.
PLOTS = {
    "dpo": ["loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected", "eval/reward"],
    "kto": ["loss", "rewards/margins", "rewards/chosen", "rewards/rejected", "kl", "eval/reward"],
    "grpo": ["objective/score", "objective/kl_per_token", "loss", "policy/entropy", "objective/response_tokens",
             "eval/reward"],
}
PLOTS["rloo"] = PLOTS["grpo"]
TRL_STATE = "trl"            # state.json "trainer" of a trl checkpoint


def _data_files(spec: str) -> list[Path]:
    from jprefs.rl.texts import expand_paths

    return expand_paths(spec)


def _first_row(path: Path) -> dict:
    from jprefs.data.io import iter_table

    for row in iter_table(path):
        if row.data is not None:
            return row.data
    return {}


def preference_rows(cfg, tok) -> list[dict]:
    """DPO rows (``prompt``/``chosen``/``rejected``) or KTO rows (``prompt``/``completion``/``label``)
    from ``cfg.data``: canonical pairs (every algo) or a binary set (KTO)."""
    from jprefs.data.export import export_rows
    from jprefs.data.io import load_binary, load_pairs
    from jprefs.data.schema import render_prompt
    from jprefs.errors import ConfigError

    conv = bool(getattr(tok, "chat_template", None))
    rows: list[dict] = []
    for path in _data_files(cfg.data):
        first = _first_row(path)
        if "chosen" in first and "rejected" in first or "responses" in first:
            fmt = ("trl" if cfg.algo == "dpo" else "trl-unpaired") + ("-conversational" if conv else "")
            keep = ("prompt", "chosen", "rejected") if cfg.algo == "dpo" else ("prompt", "completion", "label")
            # No chat template: cue=False, the prompt text every other algo samples this policy from
            # (render_prompt, as jprefs.rl.texts renders prompt files), not the export's assistant-cue
            # form, so that DPO/KTO train on the contexts their eval samples and a later PPO run use.
            rows += [{k: r[k] for k in keep} for r in export_rows(load_pairs(path), fmt, cue=False)]
        elif cfg.algo == "kto" and "label" in first and ("response" in first or "text" in first):
            for b in load_binary(path):
                msgs = [m.to_dict() for m in b.prompt or []]
                prompt = msgs if conv else (render_prompt(b.prompt) if b.prompt else "")
                completion = [{"role": "assistant", "content": b.response}] if conv else b.response
                rows.append({"prompt": prompt, "completion": completion, "label": bool(b.label)})
        else:
            raise ConfigError(f"algo={cfg.algo}: {path} holds neither canonical pairs (prompt/chosen/rejected)"
                              + (" nor a binary set (prompt/response/label)" if cfg.algo == "kto" else "")
                              + f" (first row's keys: {sorted(first)})\n  fix: give data= a canonical pairs "
                              "JSONL (`jprefs data convert` writes one), e.g. data=builtin:ja-tiny-pairs")
    if len(rows) < 2:
        from jprefs.errors import DataError

        raise DataError(f"algo={cfg.algo} needs at least 2 rows; {cfg.data!r} gave {len(rows)}")
    bos = "" if conv else bos_text(tok)
    for r in rows:
        r["prompt"] = bos + _last_tokens(tok, r["prompt"], cfg.prompt_max_tokens) if not conv else r["prompt"]
    if cfg.algo == "kto":
        # KTOTrainer reads its data in order (its KL term pairs neighbours): shuffle once, seeded.
        import random

        random.Random(cfg.seed).shuffle(rows)
    return rows


def bos_text(tok) -> str:
    """The tokenizer's BOS as text, when it has one and does not add it itself ("" otherwise). jprefs'
    sampler starts every prompt with BOS (:func:`jprefs.rl.policies.encode_prompts`: PPO, the eval samples,
    the SFT warm start); trl tokenizes a standard prompt with the tokenizer's defaults, which for such a
    tokenizer add none, so DPO/KTO/GRPO/RLOO trained on contexts the policy is never sampled from."""
    bos, bid = getattr(tok, "bos_token", None), getattr(tok, "bos_token_id", None)
    if not bos or bid is None:
        return ""
    return "" if tok("a")["input_ids"][:1] == [bid] else bos


def prompt_rows(cfg, tok) -> list[dict]:
    """GRPO/RLOO rows: ``{"prompt": str}`` (with the BOS text :func:`bos_text` gives) or, for a chat
    tokenizer, a one-message conversation."""
    from jprefs.rl.texts import load_prompts

    conv = bool(getattr(tok, "chat_template", None))
    bos = "" if conv else bos_text(tok)
    return [{"prompt": [{"role": "user", "content": p}] if conv else bos + _last_tokens(tok, p, cfg.prompt_max_tokens)}
            for p in load_prompts(cfg.prompts)]


def eval_contexts(tok, prompts: list[str]) -> list[str]:
    """The texts the eval samples of a trl run are drawn from: for a chat tokenizer each prompt as the
    one-turn conversation trl trained on (:func:`prompt_rows`, :func:`preference_rows`), rendered through
    its chat template with the generation prompt, as ``jprefs eval policy`` renders it; else the prompt
    text. (The eval samples were drawn from the bare text, a context a chat policy never trained on.)"""
    if not getattr(tok, "chat_template", None):
        return list(prompts)
    from jprefs.eval.policy import render_prompt_for
    from jprefs.eval.prompts import EvalPrompt

    return [render_prompt_for(tok, EvalPrompt(id="", text=p), True) for p in prompts]


def _last_tokens(tok, text: str, n: int) -> str:
    """``text`` cut to its last ``n`` tokens, as jprefs' sampler cuts every prompt (``prompt_max_tokens``):
    trl's GRPO/RLOO take prompts whole (a long one ran past the model's positions: IndexError) and its DPO
    drops rows whose prompt fills max_length, without a word."""
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= n else tok.decode(ids[-n:], skip_special_tokens=False)


def _text(x, bos: str = "") -> str:
    """A trl prompt/completion (a string or a message list) as text for a jprefs reward (a leading BOS text,
    added for trl's tokenizer, taken off)."""
    if isinstance(x, str):
        return x[len(bos):] if bos and x.startswith(bos) else x
    return "".join(m.get("content", "") for m in x if m.get("role") != "system") if x else ""


def trl_reward_funcs(cfg, device=None, main=None, bos: str = "") -> list:
    """trl reward functions (``(prompts, completions, **kw) -> list[float]``) for the run's
    reward sources: the main one (``reward_type``/``reward_model``; ``main`` if already built)
    and ``extra_rewards``, each with ``reward_sign``. trl sums them with ``reward_weights``."""
    from jprefs.errors import ConfigError
    from jprefs.rl.prepare import reward_for
    from jprefs.rl.rewards import make_reward

    sources = [(cfg.reward_model.rsplit(":", 1)[-1] if cfg.reward_type == "callable" else cfg.reward_type,
                main or reward_for(cfg, device))]
    for spec in cfg.extra_rewards:
        kind, _, what = spec.partition(":")
        if kind not in ("rm", "classifier", "callable") or not what:
            raise ConfigError(f"extra_rewards entry {spec!r} is not 'TYPE:SPEC' with TYPE rm, classifier or "
                              "callable (e.g. 'callable:jprefs.rl.rewards:lexicon_sentiment')")
        sources.append((what.rsplit(":", 1)[-1] if kind == "callable" else Path(what).name or kind,
                        make_reward(kind, what, label=cfg.reward_label, device=device,
                                    batch_size=cfg.reward_batch_size, sign=cfg.reward_sign,
                                    trust_remote_code=cfg.trust_remote_code, reward_input=cfg.reward_input)))
    funcs = []
    for i, (name, fn) in enumerate(sources):
        def trl_fn(prompts, completions, _fn=fn, **kwargs):
            return _fn([_text(p, bos) for p in prompts], [_text(c) for c in completions])

        # trl logs rewards/<__name__>/mean; keep the names distinct.
        trl_fn.__name__ = name if all(n != name for n, _ in sources[:i]) else f"{name}_{i}"
        funcs.append(trl_fn)
    return funcs


def trl_args(cfg, out: Path, use_cpu: bool, shared_state: bool = False):
    """The trl config (DPOConfig, KTOConfig, GRPOConfig, RLOOConfig) for ``cfg``."""
    import dataclasses

    import trl

    from jprefs.trackers import trl_report_to

    # transformers >= 5.2x renamed gradient_checkpointing (a deprecated alias now) to activation_checkpointing.
    names = {f.name for f in dataclasses.fields(trl.DPOConfig)}
    ckpt = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    common = dict(
        output_dir=str(out), report_to=trl_report_to(cfg.report_to), seed=cfg.seed, data_seed=cfg.seed, use_cpu=use_cpu,
        # trl defaults bf16=True and gradient_checkpointing=True; jprefs runs in the policy's dtype.
        bf16=False, fp16=False, **{ckpt: False},
        max_steps=cfg.total_steps, per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.lr,
        adam_beta1=cfg.adam_beta1, adam_beta2=cfg.adam_beta2, weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm if cfg.max_grad_norm > 0 else 1e9, lr_scheduler_type="constant",
        logging_steps=1, save_strategy="steps" if cfg.save_every else "no", save_steps=cfg.save_every or 500,
        # No rotation by transformers: it deletes the previous checkpoint inside _save_checkpoint, before
        # on_save marks the new one complete, so a kill between the two left no resumable checkpoint.
        # JprefsRunCallback.on_save removes the older ones once the new one is marked.
        save_total_limit=None, dataloader_num_workers=0,
        accelerator_config={"use_configured_state": True} if shared_state else None, disable_tqdm=False, trust_remote_code=cfg.trust_remote_code,
    )
    extra = {}
    if cfg.trl_beta >= 0:
        extra["beta"] = cfg.trl_beta
    if cfg.trl_loss_type:
        extra["loss_type"] = cfg.trl_loss_type
    if cfg.algo == "dpo":
        return trl.DPOConfig(**common, **extra, max_length=cfg.max_length)
    if cfg.algo == "kto":
        return trl.KTOConfig(**common, **extra, max_length=cfg.max_length)
    gen = dict(num_generations=cfg.num_generations, max_completion_length=cfg.max_new_tokens,
               temperature=cfg.temperature if cfg.temperature > 0 else 1.0, top_k=cfg.top_k, top_p=cfg.top_p,
               reward_weights=list(cfg.reward_weights) or None)
    if cfg.min_new_tokens:
        # EOS forbidden for the first N tokens of every rollout, as in PPO. trl's logprobs (and its
        # clipped ratios) read the full distribution, not the EOS-masked one it sampled from: with
        # trl's default one update per generation batch the ratio is 1 and only the gradient's
        # normalisation differs.
        gen["generation_kwargs"] = {"min_new_tokens": cfg.min_new_tokens}
    cls = trl.GRPOConfig if cfg.algo == "grpo" else trl.RLOOConfig
    return cls(**common, **extra, **gen)


def _peft_config(cfg):
    if cfg.lora_r <= 0:
        return None
    from jprefs.errors import require

    peft = require("peft", "peft", "LoRA (lora_r > 0)")
    return peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
                           target_modules="all-linear")


def jprefs_trainer(cls):
    """``cls`` (one of trl's four trainers) as a jprefs run uses it:

    - no model card: trl 1.16 writes ``OUT/README.md`` ("fine-tuned version of None") with every
      checkpoint; the run folder has its config and summary, ``jprefs push`` writes cards;
    - no usage ping: trl 1.16 sends telemetry from every trainer it builds unless
      ``HF_HUB_DISABLE_TELEMETRY=1``; a jprefs run sends nothing it was not asked to
      (as ``report_to="none"``);
    - GRPO/RLOO: a prompt order that depends on (seed, epoch) only. trl 1.16's ``RepeatSampler``
      draws each epoch's permutation from one generator seeded once, so a run resumed in
      epoch e > 0 (a fresh sampler) would replay epoch 0's order. With ``set_epoch`` (which
      Trainer and accelerate call every epoch, resumed or not) reseeding it to ``seed + epoch``,
      a resumed run sees the prompts an uninterrupted run sees.
    """
    import trl

    class JprefsTrainer(cls):
        def create_model_card(self, *args, **kwargs):
            return None

        def _send_telemetry(self):
            return None

    if issubclass(cls, (trl.GRPOTrainer, trl.RLOOTrainer)):
        from trl.trainer.utils import RepeatSampler

        class EpochSeededRepeatSampler(RepeatSampler):
            def set_epoch(self, epoch: int) -> None:
                if self.shuffle:
                    self.generator.manual_seed((self.seed or 0) + int(epoch))

        def _get_train_sampler(self, dataset=None):
            sampler = cls._get_train_sampler(self, dataset)
            sampler.__class__ = EpochSeededRepeatSampler
            return sampler

        JprefsTrainer._get_train_sampler = _get_train_sampler
    JprefsTrainer.__name__ = JprefsTrainer.__qualname__ = cls.__name__
    return JprefsTrainer


def _callback(cfg, writer, tok, evaluate, dist):
    """A ``transformers.TrainerCallback`` that feeds trl's logs to ``writer`` and marks trl's
    checkpoints resumable for jprefs."""
    from transformers import TrainerCallback

    import shutil

    from jprefs.rl.checkpoint import FORMAT, checkpoint_dirs
    from jprefs.config import config_dict
    from jprefs.data.io import atomic_write_json

    same = SAME_AS[cfg.algo]

    class JprefsRunCallback(TrainerCallback):
        final: dict = {}

        def on_log(self, args, state, control, logs=None, model=None, **kwargs):
            logs = dict(logs or {})
            if "train_runtime" in logs:            # trl's end-of-training totals: the summary keeps them
                self.final = logs
                return
            step = state.global_step
            row = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            row.update({mine: row[theirs] for theirs, mine in same.items() if theirs in row})
            if dist.is_main and (step % cfg.eval_every == 0 or step == cfg.total_steps):
                row.update(evaluate(model, step))
            writer.log(step, row)

        def on_save(self, args, state, control, **kwargs):
            # After trl wrote checkpoint-N: state.json last, so a checkpoint with it is complete.
            if not dist.is_main:
                return
            d = writer.out / f"checkpoint-{state.global_step}"
            (d / "resume").mkdir(parents=True, exist_ok=True)
            atomic_write_json(d / "resume" / "state.json", {
                "format": FORMAT, "trainer": TRL_STATE, "step": state.global_step,
                "metrics_lines": writer.n_metrics, "samples_lines": writer.n_samples,
                "config": config_dict(writer.cfg), "extra": {}})
            for step, old in checkpoint_dirs(writer.out):      # complete now: the older ones can go
                if step < state.global_step:
                    shutil.rmtree(old, ignore_errors=True)

    return JprefsRunCallback()


def _quiet_progress(trainer) -> None:
    """Keep transformers' progress bar but not its dump of every step's log dict (metrics.jsonl has them)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class BarOnly(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            return None

    for cb in (ProgressCallback, PrinterCallback):
        if trainer.pop_callback(cb) is not None and cb is ProgressCallback:
            trainer.add_callback(BarOnly())


def _tensorboard_dir(trainer, writer) -> None:
    """report_to=tensorboard: transformers' TensorBoardCallback writes under ``OUT/tb/`` (as jprefs' own
    loops do) instead of ``OUT/runs/DATE_HOST``; a resumed run hides what an interrupted one logged
    after the checkpoint (``purge_step``)."""
    from transformers.integrations import TensorBoardCallback

    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, TensorBoardCallback):
            cb.logging_dir = str(writer.out / "tb")
            if writer.checkpoint is not None and writer.write:
                cb.tb_writer = cb._SummaryWriter(log_dir=cb.logging_dir, purge_step=writer.checkpoint["step"] + 1)


def train_trl(cfg, out, *, dist=None) -> dict:
    """Run ``cfg.algo`` (dpo, kto, grpo, rloo) through trl's trainer; returns the summary.

    A rerun into the same folder resumes from the newest ``checkpoint-N`` (``save_every``)
    and stops at once when the run finished with the same config."""
    import numpy as np

    from jprefs.errors import require
    from jprefs.eval.textmetrics import distinct_n
    from jprefs.rl.policies import load_policy
    from jprefs.rl.prepare import eval_reward_for, open_run, prepare_policy
    from jprefs.rl.processors import get_sampler
    from jprefs.rl.texts import load_prompts

    trl = require("trl", "trl", f"algo={cfg.algo}")
    from datasets import Dataset

    dist, writer, finished = open_run(cfg, out, dist)
    if finished is not None:                        # a finished run: nothing to do
        return finished
    out = writer.out
    device = dist.device(cfg.device)
    ref_dir = out / "reference"
    if writer.checkpoint is None:
        model, tok = prepare_policy(cfg, writer, dist=dist)
        writer.save_policy(model, tok, "reference")
        del model
    if dist.enabled:
        dist.barrier()
    elif cfg.torch_threads > 0:
        import torch

        torch.set_num_threads(cfg.torch_threads)
    # Fresh and resumed runs alike start from the saved reference (the same weights and tokenizer).
    model, tok = load_policy(str(ref_dir), device=device, dtype=cfg.dtype)
    ref = None
    if cfg.algo in ("dpo", "kto") and cfg.lora_r <= 0:
        ref, _ = load_policy(str(ref_dir), device=device, dtype=cfg.dtype)
    # GRPO/RLOO build their reference (trl_beta > 0) from the model's own path: the saved reference.
    model.config._name_or_path = str(ref_dir)

    # One reward model in memory: GRPO/RLOO's main training reward also scores the eval samples.
    rfn = eval_reward_for(cfg, device) if cfg.reward_type != "none" else None
    eval_prompts = load_prompts(cfg.eval_prompts) * max(1, cfg.eval_samples)
    eval_texts = eval_contexts(tok, eval_prompts)

    def evaluate(m, step: int) -> dict:
        m = m if m is not None else trainer.model
        was = m.training
        m.eval()
        s = get_sampler(cfg.sampler)(m, tok, eval_texts, max_new_tokens=cfg.max_new_tokens,
                                     temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
                                     prompt_max_tokens=cfg.prompt_max_tokens, seed=cfg.seed + 7,
                                     min_new_tokens=cfg.min_new_tokens)
        m.train(was)
        rw = rfn(eval_prompts, s.texts) if rfn else None
        writer.samples(step, eval_prompts, s.texts, rw)
        ev = {"eval/length": float(np.mean([len(t) for t in s.texts])), "eval/distinct2": distinct_n(s.texts)}
        if rw is not None:
            ev["eval/reward"] = float(np.mean(rw))
        return ev

    # Under a launcher the Trainer reuses the process group jprefs' Dist set up (accelerate's configured
    # state); without that, transformers resets it and each CPU process would train alone.
    args = trl_args(cfg, out, use_cpu=str(device) == "cpu", shared_state=dist.enabled)
    callback = _callback(cfg, writer, tok, evaluate, dist)
    kw = dict(args=args, processing_class=tok, callbacks=[callback], peft_config=_peft_config(cfg))
    if cfg.algo in ("dpo", "kto"):
        ds = Dataset.from_list(preference_rows(cfg, tok))
        cls = jprefs_trainer(trl.DPOTrainer if cfg.algo == "dpo" else trl.KTOTrainer)
        trainer = cls(model=model, ref_model=ref, train_dataset=ds, **kw)
    else:
        funcs = trl_reward_funcs(cfg, device, main=rfn,
                                 bos="" if getattr(tok, "chat_template", None) else bos_text(tok))
        ds = Dataset.from_list(prompt_rows(cfg, tok))
        cls = jprefs_trainer(trl.GRPOTrainer if cfg.algo == "grpo" else trl.RLOOTrainer)
        trainer = cls(model=model, reward_funcs=funcs, train_dataset=ds, **kw)

    _quiet_progress(trainer)
    _tensorboard_dir(trainer, writer)
    if writer.checkpoint is not None:
        first_eval = {k: v for k, v in writer.history[0].items() if k.startswith("eval/")} if writer.history else {}
        trainer.train(resume_from_checkpoint=writer.checkpoint["dir"])
    else:
        first_eval = evaluate(trainer.model, 0) if dist.is_main else {}
        writer.log(0, first_eval)
        trainer.train()
    processes = trainer.args.world_size
    dist.close()                                    # no collective after this point
    if not dist.is_main:
        return {}
    writer.save_policy(trainer.model, tok)
    writer.plot(PLOTS[cfg.algo], f"{cfg.algo.upper()} via trl {trl.__version__} ({cfg.total_steps} steps x "
                                 f"{cfg.batch_size})")
    hist = [h for h in writer.history if h["step"] > 0]
    main = "objective/score" if cfg.algo in ("grpo", "rloo") else "rewards/margins"
    summary = {"algo": cfg.algo, "trainer": f"trl {trl.__version__} {cls.__name__}", "steps": cfg.total_steps,
               "rows": len(ds), "processes": processes, "eval_before": first_eval,
               "eval_after": {k: writer.history[-1].get(k) for k in first_eval},
               f"{main}_first": hist[0].get(main) if hist else None,
               f"{main}_last": hist[-1].get(main) if hist else None,
               "trl_totals": {k: v for k, v in callback.final.items() if isinstance(v, (int, float))}}
    writer.summary(summary)
    writer.finish(cfg.total_steps)
    return summary

