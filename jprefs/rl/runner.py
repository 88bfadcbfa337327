"""Glue between a config and the algorithms: policy set-up, data, rewards, the SFT run.

:func:`run` dispatches on ``cfg.algo``; ILQL and PPO call :func:`prepare_policy`
(build or load the policy, then the optional SFT warm start) so that every
algorithm file keeps only its own math and loop.

Example::

    cfg = load_config(RLConfig, "rl/recipes/sft-tiny-cpu.yaml")
    summary = run(cfg, "runs/sft")
"""

from __future__ import annotations

import json
from pathlib import Path

from jprefs.data.io import RejectsWriter, eprint, write_jsonl


def _sft_rows(cfg, out: Path, write: bool = True):
    from jprefs.rl.common import TextRow, load_text_rows

    rej = RejectsWriter(out / "sft_data.rejects.jsonl")
    rows = load_text_rows(cfg.sft_data, text_field=cfg.text_field, prompt_field=cfg.prompt_field,
                          reward_field="", rejects=rej)
    # Pairs give chosen (1) and rejected (0) rows: SFT only on the chosen responses.
    rows = [r for r in rows if r.reward is None or r.reward >= 1.0]
    if cfg.sft_max_texts:
        rows = rows[:cfg.sft_max_texts]
    if len(rej) and write:
        rej.save()
        eprint(f"jprefs rl: {len(rej)} SFT rows rejected -> {rej.path} ({rej.by_reason})")
    if not rows:
        from jprefs.errors import DataError

        raise DataError(f"no SFT texts in {cfg.sft_data!r}", fix=f"check text_field={cfg.text_field!r}")
    return [TextRow(r.prompt, r.text) for r in rows]


def prepare_policy(cfg, writer, *, model=None, tok=None, force_sft: bool = False, dist=None):
    """The policy for a run: given objects, ``policy=tiny`` (built here) or a loaded model,
    followed by ``sft_steps`` of SFT when asked (losses in ``sft_metrics.jsonl``).

    ``dist`` (data-parallel runs): the policy goes to the process's device, every process
    starts from rank 0's weights, and the warm start is data-parallel too."""
    from jprefs.rl.common import build_tiny_policy, load_policy
    from jprefs.rl.dist import Dist
    from jprefs.rl.sft import train_sft

    dist = dist or Dist()
    device = dist.device(cfg.device)
    if cfg.torch_threads > 0:
        import torch

        torch.set_num_threads(cfg.torch_threads)
    rows = None
    if model is None:
        if cfg.policy == "tiny":
            rows = _sft_rows(cfg, writer.out, write=dist.is_main)
            model, tok = build_tiny_policy([r.prompt + r.text for r in rows], vocab_size=cfg.tiny_vocab_size,
                                           n_embd=cfg.tiny_n_embd, n_layer=cfg.tiny_n_layer,
                                           n_head=cfg.tiny_n_head, n_positions=cfg.tiny_n_positions,
                                           seed=cfg.seed, tokenizer=cfg.tiny_tokenizer)
        else:
            model, tok = load_policy(cfg.policy, device=device, dtype=cfg.dtype,
                                     trust_remote_code=cfg.trust_remote_code)
    model.to(device)
    if dist.enabled:
        # Each process trained its own tiny tokenizer (or loaded one): they must be the same.
        import hashlib

        vocab = json.dumps(sorted(tok.get_vocab().items()), ensure_ascii=False).encode("utf-8")
        dist.check_same(hashlib.sha256(vocab).hexdigest(), "the policy's tokenizer vocabulary")
        dist.sync_module(model)
    # A resumed run loads the trained weights from its checkpoint: no warm start to redo.
    if cfg.sft_steps > 0 and (force_sft or cfg.algo != "sft") and getattr(writer, "checkpoint", None) is None:
        rows = rows or _sft_rows(cfg, writer.out, write=dist.is_main)
        losses = train_sft(model, tok, rows, steps=cfg.sft_steps, lr=cfg.sft_lr, batch_size=cfg.sft_batch_size,
                           max_length=cfg.max_length, seed=cfg.seed, desc="sft warm start", dist=dist)
        if dist.is_main:
            write_jsonl(writer.out / "sft_metrics.jsonl",
                        ({"step": i + 1, "sft/loss": x} for i, x in enumerate(losses)))
    model.eval()
    return model, tok


def load_ilql_rows(cfg, out: Path, reward_fn=None, dist=None):
    """ILQL rows from ``cfg.data``: dataset rewards (``reward_type=labels``) or texts to score.

    With ``dist``, each process scores a contiguous share of the texts and the scores are
    gathered, so every process ends with all rows and all rewards."""
    from jprefs.rl.common import load_text_rows
    from jprefs.rl.dist import Dist

    dist = dist or Dist()
    rej = RejectsWriter(out / "data.rejects.jsonl")
    field = cfg.reward_field if cfg.reward_type == "labels" else ""
    rows = load_text_rows(cfg.data, text_field=cfg.text_field, prompt_field=cfg.prompt_field,
                          reward_field=field, rejects=rej)
    if len(rej) and dist.is_main:
        rej.save()
        eprint(f"jprefs rl: {len(rej)} data rows rejected -> {rej.path} ({rej.by_reason}); {len(rows)} kept")
    if cfg.reward_type != "labels":
        # Texts (pair rows included) are scored by the reward model; drop dataset labels.
        for r in rows:
            r.reward = None
        if reward_fn is None:
            reward_fn = reward_for(cfg, dist.device(cfg.device) if dist.enabled else None)
        from jprefs.progress import progress

        share = -(-len(rows) // dist.world)                       # ceil: rows per process
        mine = dist.share(rows, share)
        scores: list[float] = []
        with progress(total=len(mine), desc="scoring ILQL data", unit="text", disable=not dist.is_main) as bar:
            bs = max(1, cfg.reward_batch_size)
            for i in range(0, len(mine), bs):
                chunk = mine[i:i + bs]
                scores += [float(x) for x in reward_fn([r.prompt for r in chunk], [r.text for r in chunk])]
                bar.update(len(chunk))
        all_scores = [x for part in dist.gather_object(scores) for x in part]   # rank order = row order
        for r, x in zip(rows, all_scores):
            r.reward = x
    elif cfg.reward_sign != 1.0:
        for r in rows:
            r.reward = cfg.reward_sign * r.reward
    if len(rows) < 2:
        from jprefs.errors import DataError

        raise DataError(f"ILQL needs at least 2 rows with rewards; {cfg.data!r} gave {len(rows)}")
    return rows


def reward_for(cfg, device=None):
    """The training reward function a config asks for (PPO; ILQL with a scoring reward)."""
    from jprefs.rl.rewards import make_reward

    return make_reward(cfg.reward_type, cfg.reward_model, label=cfg.reward_label, device=device,
                       batch_size=cfg.reward_batch_size, sign=cfg.reward_sign,
                       trust_remote_code=cfg.trust_remote_code, reward_input=cfg.reward_input)


def eval_reward_for(cfg, device=None):
    """Reward for evaluation samples: the training reward, or for ``labels`` the
    ``reward_model`` callable/model when one is configured (else None)."""
    from jprefs.rl.rewards import make_reward

    if cfg.reward_type in ("rm", "classifier", "callable"):
        return reward_for(cfg, device)
    if cfg.reward_model:
        kind = "callable" if ":" in cfg.reward_model and not Path(cfg.reward_model).exists() else "rm"
        return make_reward(kind, cfg.reward_model, label=cfg.reward_label, device=device,
                           batch_size=cfg.reward_batch_size, trust_remote_code=cfg.trust_remote_code,
                           reward_input=cfg.reward_input)
    return None


def run_sft(cfg, out, *, dist=None) -> dict:
    """``algo: sft``: build/load the policy, train it, save it with samples and a loss curve.

    Data-parallel under ``accelerate launch``: each process takes its own ``sft_batch_size``
    texts per step; the main process alone samples and writes."""
    import numpy as np

    from jprefs.rl.common import RunWriter, distinct_n, load_prompts, sample, set_seed
    from jprefs.rl.dist import get_dist, weights_digest
    from jprefs.rl.sft import train_sft

    dist = dist or get_dist(cfg)
    set_seed(cfg.seed)
    writer = RunWriter(out, cfg, dist=dist)
    if writer.finished is not None:                 # a finished run: nothing to do
        dist.close()
        return writer.finished["summary"]
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
    s = sample(model, tok, prompts, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
               top_k=cfg.top_k, top_p=cfg.top_p, prompt_max_tokens=cfg.prompt_max_tokens, seed=cfg.seed)
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


def data_parallel_record(dist, policy_digests, **per_rank) -> dict:
    """``summary["data_parallel"]`` of an N-process run: the process count and, per process, a
    digest of its final weights (and any other per-process values given) -- all equal when the
    processes stayed in sync; a warning on stderr when they did not."""
    rec = {"processes": dist.world, "policy_digests": policy_digests, **per_rank}
    rec["in_sync"] = all(len(set(map(str, v))) == 1 for k, v in rec.items() if k != "processes")
    if not rec["in_sync"]:
        eprint(f"jprefs rl: WARNING: the {dist.world} processes ended with different weights or state: {rec}")
    return rec


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
    else:
        from jprefs.rl.ppo import train_ppo as train
    try:
        with run_lock(out, "jprefs rl", is_main=dist.is_main,
                      broadcast=(lambda msg: dist.gather_object(msg)[0]) if dist.enabled else None):
            return train(cfg, out, dist=dist)
    except FolderBusyError:
        dist.close()                                # every process leaves the group before exiting
        raise
