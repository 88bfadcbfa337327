"""The top of ``jprefs rl``: :func:`run` dispatches on ``cfg.algo`` to the SFT run (here),
:func:`jprefs.rl.ilql.train_ilql`, :func:`jprefs.rl.ppo.train_ppo` or, for dpo / kto / grpo /
rloo, :func:`jprefs.rl.trl_algos.train_trl` (trl's trainers).

Layers (each imports only those below it): ``runner`` -> ``ilql`` / ``ppo`` / ``trl_algos`` -> ``prepare``
(policy set-up, data, rewards) -> ``sft`` / ``rewards`` / ``runwriter`` / ``checkpoint`` /
``dist`` -> ``sampling`` -> ``policies`` / ``texts`` / ``device`` / ``optim``. No algorithm
imports the runner (tests/rl/test_structure.py checks it).

Example::

    cfg = load_config(RLConfig, "rl/recipes/sft-tiny-cpu.yaml")
    summary = run(cfg, "runs/sft")
"""

from __future__ import annotations


def run_sft(cfg, out, *, dist=None) -> dict:
    """``algo: sft``: build/load the policy, train it, save it with samples and a loss curve.

    Data-parallel under ``accelerate launch``: each process takes its own ``sft_batch_size``
    texts per step; the main process alone samples and writes."""
    import numpy as np

    from jprefs.eval.textmetrics import distinct_n
    from jprefs.rl.dist import data_parallel_record, weights_digest
    from jprefs.rl.prepare import _sft_rows, eval_reward_for, open_run, prepare_policy
    from jprefs.rl.processors import get_sampler
    from jprefs.rl.sft import train_sft
    from jprefs.rl.texts import load_prompts

    dist, writer, finished = open_run(cfg, out, dist)
    if finished is not None:                        # a finished run: nothing to do
        return finished
    model, tok = prepare_policy(cfg, writer, dist=dist)
    rows = _sft_rows(cfg, writer.out, write=dist.is_main)
    losses = train_sft(model, tok, rows, steps=cfg.sft_steps, lr=cfg.sft_lr, batch_size=cfg.sft_batch_size,
                       max_length=cfg.max_length, seed=cfg.seed, writer=writer, save_every=cfg.save_every,
                       dist=dist)
    digests = dist.gather_object(weights_digest([model])) if dist.enabled else None
    dist.close()                                    # no collective after this point
    if not dist.is_main:
        return {}
    prompts = load_prompts(cfg.eval_prompts) * max(1, cfg.eval_samples)
    s = get_sampler(cfg.sampler)(model, tok, prompts, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                 top_k=cfg.top_k, top_p=cfg.top_p, prompt_max_tokens=cfg.prompt_max_tokens,
                                 seed=cfg.seed, min_new_tokens=cfg.min_new_tokens)
    rfn = eval_reward_for(cfg, dist.device(cfg.device) if dist.enabled else None) if cfg.reward_type != "none" else None
    rw = rfn(prompts, s.texts) if rfn else None
    writer.samples(cfg.sft_steps, prompts, s.texts, rw)
    writer.save_policy(model, tok)
    writer.plot(["sft/loss", "sft/lr"], f"SFT ({cfg.sft_steps} steps, {len(rows)} texts)")
    summary = {"algo": "sft", "steps": cfg.sft_steps, "texts": len(rows), "final_loss": losses[-1],
               "first_loss": losses[0], "eval/length": float(np.mean([len(t) for t in s.texts])),
               "eval/distinct2": distinct_n(s.texts), "eval/reward": float(np.mean(rw)) if rw else None}
    if dist.enabled:
        summary["data_parallel"] = data_parallel_record(dist, digests)
    writer.summary(summary)
    writer.finish(cfg.sft_steps)
    return summary



def run(cfg, out) -> dict:
    """Run ``cfg.algo`` and return its summary (also written to ``OUT/summary.json``).

    The run holds ``OUT``'s lock (:mod:`jprefs.runlock`) from start to end: a second run
    into the same folder is refused with the pid of this one. In a data-parallel run the
    main process holds it and every process stops alike when it is refused."""
    from jprefs.rl.dist import get_dist
    from jprefs.runlock import FolderBusyError, run_lock

    dist = get_dist(cfg)
    if cfg.algo == "sft":
        train = run_sft
    elif cfg.algo == "ilql":
        from jprefs.rl.ilql import train_ilql as train
    elif cfg.algo in ("dpo", "kto", "grpo", "rloo"):
        from jprefs.rl.trl_algos import train_trl as train
    else:
        from jprefs.rl.ppo import train_ppo as train
    try:
        with run_lock(out, "jprefs rl", is_main=dist.is_main,
                      broadcast=(lambda msg: dist.gather_object(msg)[0]) if dist.enabled else None):
            return train(cfg, out, dist=dist)
    except FolderBusyError:
        dist.close()                                # every process leaves the group before exiting
        raise

