"""What a run prepares from its config before an algorithm's loop: the policy (built or
loaded, then the optional SFT warm start), the SFT and ILQL rows, and the reward functions.

Below the algorithms (:mod:`jprefs.rl.ilql`, :mod:`jprefs.rl.ppo` and the SFT run import it)
and above :mod:`jprefs.rl.sft` (the warm start's loop), so nothing here imports the runner.

Example::

    model, tok = prepare_policy(cfg, writer)
    reward = reward_for(cfg)
"""

from __future__ import annotations

import json
from pathlib import Path

from jprefs.data.io import RejectsWriter, eprint, write_jsonl
from jprefs.rl.rewards import finite_rewards


def _sft_rows(cfg, out: Path, write: bool = True):
    from jprefs.rl.texts import TextRow, load_text_rows

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



def open_run(cfg, out, dist=None):
    """The start of every run: its :class:`jprefs.rl.dist.Dist` (default :func:`jprefs.rl.dist.get_dist`),
    the seed set, and the :class:`jprefs.rl.runwriter.RunWriter` of ``out``. Returns ``(dist, writer,
    finished)``; ``finished`` is the summary of a finished run of the same config (its ``dist`` then
    closed), which the caller returns as is, else None."""
    from jprefs.rl.device import set_seed
    from jprefs.rl.dist import get_dist
    from jprefs.rl.runwriter import RunWriter

    dist = dist or get_dist(cfg)
    set_seed(cfg.seed)
    writer = RunWriter(out, cfg, dist=dist)
    if writer.finished is not None:                 # a finished run: nothing to do
        dist.close()
        return dist, writer, writer.finished["summary"]
    return dist, writer, None


def prepare_policy(cfg, writer, *, model=None, tok=None, force_sft: bool = False, dist=None):
    """The policy for a run: given objects, ``policy=tiny`` (built here) or a loaded model,
    followed by ``sft_steps`` of SFT when asked (losses in ``sft_metrics.jsonl``).

    ``dist`` (data-parallel runs): the policy goes to the process's device, every process
    starts from rank 0's weights, and the warm start is data-parallel too."""
    from jprefs.rl.dist import Dist
    from jprefs.rl.policies import build_tiny_policy, load_policy
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
    from jprefs.rl.dist import Dist
    from jprefs.rl.texts import load_text_rows

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
                texts = [r.text for r in chunk]
                scores += finite_rewards(reward_fn([r.prompt for r in chunk], texts), texts, "function")
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



def reward_for(cfg, device=None, *, run: str = ""):
    """The training reward function a config asks for (PPO; ILQL with a scoring reward);
    ``run`` names the run's rollouts in the labelling database of ``reward_type=human``."""
    from jprefs.rl.rewards import make_reward

    if cfg.reward_type == "human":
        from jprefs.label.human_reward import human_reward

        return human_reward(cfg.human_db, run=run or "run", timeout_s=cfg.human_timeout_s, need=cfg.human_labels)

    return make_reward(cfg.reward_type, cfg.reward_model, label=cfg.reward_label, device=device,
                       batch_size=cfg.reward_batch_size, sign=cfg.reward_sign,
                       trust_remote_code=cfg.trust_remote_code, reward_input=cfg.reward_input,
                       head=cfg.reward_head)



def eval_reward_for(cfg, device=None):
    """Reward for evaluation samples: the training reward, or for ``labels`` the
    ``reward_model`` callable/model when one is configured (else None)."""
    from jprefs.rl.rewards import make_reward

    if cfg.reward_type in ("rm", "classifier", "callable"):
        return reward_for(cfg, device)
    if cfg.reward_type == "human":          # a model only when the recipe names one (not the default)
        import dataclasses

        default = {f.name: f.default for f in dataclasses.fields(cfg)}["reward_model"]
        if cfg.reward_model == default:
            return None
    if cfg.reward_model:
        kind = "callable" if ":" in cfg.reward_model and not Path(cfg.reward_model).exists() else "rm"
        # the training rewards' direction (reward_sign), so eval/reward rises when training works
        return make_reward(kind, cfg.reward_model, label=cfg.reward_label, device=device,
                           batch_size=cfg.reward_batch_size, sign=cfg.reward_sign,
                           trust_remote_code=cfg.trust_remote_code,
                           reward_input=cfg.reward_input, head=cfg.reward_head if kind == "rm" else "")
    return None

