"""PPO for language models (InstructGPT-style RLHF; Ziegler et al. 2019), readable top to bottom.

Blocks: GAE (:func:`compute_gae`, public, checked against hand-computed values),
the adaptive KL controller, the value head, the rollout (sample, recompute
logprobs/values with the same masks, score, per-token KL penalty), the PPO update
(clipped policy and value losses, minibatch epochs) and the loop.

Design choices:
- The value head is an MLP ``h -> 2h -> 1`` on the policy's last hidden state
  (shared trunk, as in trlx): one forward pass gives logprobs and values.
- The reference is a frozen copy of the policy at the start of PPO (after any SFT
  warm start); with LoRA it is the same model with the adapter disabled.
- Rollouts sample the full distribution (temperature 1, no top-k/top-p) by default,
  so that ``logp - logp_ref`` on the samples is an unbiased KL estimate.
- Dropout is switched off (``model.eval()``) for rollouts and updates alike, so the
  old and new logprobs of an unchanged policy agree and ratios start at exactly 1.

Shapes: B rollouts, P prompt tokens (left-padded), R response tokens, V vocabulary.

Example::

    cfg = load_config(RLConfig, "rl/recipes/ppo-tiny-cpu.yaml")
    summary = train_ppo(cfg, out="runs/ppo")
"""

from __future__ import annotations

import copy
import contextlib
import time

from jprefs.rl.rewards import checked_reward


# ====================================================================== GAE

def compute_gae(rewards, values, mask, *, gamma, lam):
    """Generalised advantage estimation, backwards over the tokens of each row.

    ``rewards``, ``values``, ``mask``: ``(B, T)``; the mask is 1 on response tokens.
    A step whose successor is masked is terminal (no bootstrap). Returns
    ``(advantages, returns)``, both zero where ``mask == 0``; ``returns = advantages + values``.

    >>> import torch
    >>> adv, ret = compute_gae(torch.tensor([[1., 0., 2.]]), torch.tensor([[.5, .2, .1]]),
    ...                        torch.ones(1, 3), gamma=1.0, lam=0.5)
    >>> [round(x, 4) for x in adv[0].tolist()]   # deltas 0.7, -0.1, 1.9
    [1.125, 0.85, 1.9]
    """
    import torch

    mask = mask.to(rewards.dtype)
    B, T = rewards.shape
    adv = torch.zeros_like(rewards)
    last = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(T)):
        next_mask = mask[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        next_value = values[:, t + 1] * next_mask if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * next_mask * last
        adv[:, t] = last * mask[:, t]
    returns = (adv + values) * mask
    return adv, returns


def masked_mean(x, mask, dim=None):
    m = mask.to(x.dtype)
    if dim is None:
        return (x * m).sum() / m.sum().clamp(min=1)
    return (x * m).sum(dim) / m.sum(dim).clamp(min=1)


def masked_whiten(x, mask, shift_mean: bool = True, eps: float = 1e-8):
    """``(x - mean) / std`` over the masked entries (mean restored when ``shift_mean=False``)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * (var + eps).rsqrt()
    return (out if shift_mean else out + mean) * mask.to(x.dtype)


# ====================================================================== KL controller

class KLController:
    """Adaptive KL coefficient (Ziegler et al.); fixed when ``target`` is 0/None.

    ``e = clip(KL / target - 1, -0.2, 0.2)``; ``coef <- coef * (1 + e * n / horizon)``.

    >>> c = KLController(0.1, target=6.0, horizon=100)
    >>> c.update(12.0, n=10); round(c.value, 4)   # e = 0.2 -> * 1.02
    0.102
    """

    def __init__(self, init: float, target: float | None = None, horizon: int = 10000):
        self.value, self.target, self.horizon = float(init), target, horizon

    def update(self, kl: float, n: int) -> None:
        if not self.target:
            return
        e = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + e * n / self.horizon


class RunningMoments:
    """Running mean/std of scores (Chan et al. parallel update), for ``scale_reward=running``."""

    def __init__(self):
        self.mean, self.var, self.count = 0.0, 1.0, 1e-8

    def update(self, xs) -> float:
        import numpy as np

        xs = np.asarray(xs, dtype=np.float64)
        n, m, v = len(xs), float(xs.mean()), float(xs.var())
        delta, tot = m - self.mean, self.count + n
        self.var = (self.var * self.count + v * n + delta ** 2 * self.count * n / tot) / tot
        self.mean += delta * n / tot
        self.count = tot
        return float(np.sqrt(self.var))


# ====================================================================== value head

def make_value_head(hidden: int):
    """MLP ``h -> 2h -> 1`` on the policy's last hidden state."""
    import torch.nn as nn

    return nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, 1))


def forward_response(model, value_head, sequences, attention_mask, prompt_len: int, *, need_values=True,
                     min_new=None):
    """Logits, logprobs and values of the response tokens, with the rollout's masks.

    ``min_new=(N, eos_id)``: EOS is forbidden for the first N response tokens, as in the
    sampler (``min_new_tokens``), so policy, old and reference logprobs are those of the
    distribution the rollouts were actually drawn from.

    Returns ``logits (B, R, V)``, ``logprobs (B, R)``, ``values (B, R)`` (None without a head).
    The hidden state at position ``t - 1`` predicts token ``t``, so the response
    (positions ``P .. P+R-1``) is read from positions ``P-1 .. P+R-2``.
    """
    from jprefs.rl.policies import position_ids_from_mask
    from jprefs.rl.sampling import forbid_eos, logprobs_from_logits

    out = model(input_ids=sequences, attention_mask=attention_mask,
                position_ids=position_ids_from_mask(attention_mask), output_hidden_states=need_values)
    logits = out.logits[:, prompt_len - 1:-1].float()                      # (B, R, V)
    if min_new is not None and min_new[0] > 0:
        logits = forbid_eos(logits, min_new[1], min_new[0])
    logprobs = logprobs_from_logits(logits, sequences[:, prompt_len:])     # (B, R)
    values = None
    if need_values and value_head is not None:
        hs = out.hidden_states[-1][:, prompt_len - 1:-1]                    # (B, R, H)
        values = value_head(hs.to(next(value_head.parameters()).dtype)).squeeze(-1).float()
    return logits, logprobs, values


# ====================================================================== rollout

def reference_context(policy, ref):
    """Context for the reference forward: the frozen copy, or the LoRA base (adapter off)."""
    if ref is None:
        return policy.disable_adapter()
    return contextlib.nullcontext()


def rollout(cfg, policy, ref, value_head, tok, prompts, reward_fn, kl_ctl, score_scaler, seed, dist=None):
    """Sample, score and turn one batch of prompts into PPO training tensors.

    ``policy``/``value_head`` are the plain modules (no DDP: no gradients here). With ``dist``
    (N processes), each process samples and scores its own prompts; reward scaling
    (``running``/``whiten``) uses the scores of all processes, so every process scales alike.
    """
    import torch

    from jprefs.rl.processors import get_sampler

    sample = get_sampler(cfg.sampler)
    s = sample(policy, tok, prompts, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
               top_k=cfg.top_k, top_p=cfg.top_p, prompt_max_tokens=cfg.prompt_max_tokens, seed=seed,
               min_new_tokens=cfg.min_new_tokens)
    mask = s.response_mask.float()                                             # (B, R)
    min_new = (cfg.min_new_tokens, tok.eos_token_id)
    with torch.no_grad():
        _, logprobs, values = forward_response(policy, value_head, s.sequences, s.attention_mask, s.prompt_len,
                                               min_new=min_new)
        with reference_context(policy, ref):
            _, ref_logprobs, _ = forward_response(ref if ref is not None else policy, None, s.sequences,
                                                  s.attention_mask, s.prompt_len, need_values=False,
                                                  min_new=min_new)
    raw = torch.tensor(reward_fn(prompts, s.texts), dtype=torch.float32, device=mask.device)   # (B,) finite
    scores = raw.clamp(-cfg.cliprange_reward, cfg.cliprange_reward)
    gather = dist.gather if dist is not None else (lambda t: t)
    if cfg.scale_reward == "running":
        scores = scores / max(score_scaler.update(gather(scores).tolist()), 1e-8)
    elif cfg.scale_reward == "whiten":
        everyone = gather(scores)                                              # (N * B,)
        if len(everyone) > 1:
            scores = (scores - everyone.mean()) / (everyone.std() + 1e-8)

    # Per-token reward: -kl_coef * (logp - logp_ref), plus the score on the last response token.
    kl = (logprobs - ref_logprobs) * mask                                      # (B, R)
    rewards = -kl_ctl.value * kl
    last = (mask.sum(1).long() - 1).clamp(min=0)                               # (B,)
    rewards[torch.arange(len(last)), last] += scores
    values = values * mask
    adv, returns = compute_gae(rewards, values, mask, gamma=cfg.ppo_gamma, lam=cfg.lam)
    adv = masked_whiten(adv, mask)
    return {
        "sequences": s.sequences, "attention_mask": s.attention_mask, "prompt_len": s.prompt_len,
        "min_new": min_new, "mask": mask, "logprobs": logprobs, "values": values, "advantages": adv, "returns": returns,
        "texts": s.texts, "raw_scores": raw, "scores": scores, "kl": kl, "rewards": rewards,
    }


# ====================================================================== PPO update

def ppo_minibatch_loss(cfg, policy, value_head, mb):
    """Clipped policy loss + vf_coef * clipped value loss on one minibatch, and stats."""
    import torch

    mask = mb["mask"]
    logits, logprobs, values = forward_response(policy, value_head, mb["sequences"], mb["attention_mask"],
                                                mb["prompt_len"], min_new=mb.get("min_new"))
    adv, ret, old_lp, old_v = mb["advantages"], mb["returns"], mb["logprobs"], mb["values"]

    log_ratio = (logprobs - old_lp) * mask
    ratio = torch.exp(log_ratio)
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1.0 - cfg.cliprange, 1.0 + cfg.cliprange)
    pg_loss = masked_mean(torch.max(pg1, pg2), mask)

    v_clip = old_v + torch.clamp(values - old_v, -cfg.cliprange_value, cfg.cliprange_value)
    vf_loss = 0.5 * masked_mean(torch.max((values - ret) ** 2, (v_clip - ret) ** 2), mask)
    loss = pg_loss + cfg.vf_coef * vf_loss

    with torch.no_grad():
        logp_all = torch.log_softmax(logits, dim=-1)
        p_all = logp_all.exp()
        # xlogy: 0 * log 0 = 0 for tokens masked to -inf (EOS under min_new_tokens), not NaN
        entropy = masked_mean(-torch.special.xlogy(p_all, p_all).sum(-1), mask)
        stats = {
            "losses/policy": pg_loss.item(), "losses/value": vf_loss.item(), "losses/total": loss.item(),
            # (ratio - 1) - log ratio >= 0: the low-variance estimator of KL(old || new)
            "policy/approx_kl": masked_mean((ratio - 1) - log_ratio, mask).item(),
            "policy/clip_frac": masked_mean((torch.abs(ratio - 1) > cfg.cliprange).float(), mask).item(),
            "policy/entropy": entropy.item(),
            "val/clip_frac": masked_mean((torch.abs(values - old_v) > cfg.cliprange_value).float(), mask).item(),
            "val/error": masked_mean((values - ret) ** 2, mask).item(),
        }
    return loss, stats


def ppo_update(cfg, policy, value_head, opt, batch, rng):
    """``ppo_epochs`` passes over the rollout batch in shuffled minibatches; mean stats."""
    import torch

    params = [p for p in list(policy.parameters()) + list(value_head.parameters()) if p.requires_grad]
    B = batch["sequences"].shape[0]
    keys = ("sequences", "attention_mask", "mask", "logprobs", "values", "advantages", "returns")
    acc: dict[str, list[float]] = {}
    for _ in range(cfg.ppo_epochs):
        perm = rng.permutation(B)
        for i in range(0, B, cfg.minibatch_size):
            idx = torch.as_tensor(perm[i:i + cfg.minibatch_size], device=batch["sequences"].device)
            mb = {k: batch[k][idx] for k in keys}
            mb["prompt_len"], mb["min_new"] = batch["prompt_len"], batch.get("min_new")
            loss, stats = ppo_minibatch_loss(cfg, policy, value_head, mb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm > 0:
                stats["policy/grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
            opt.step()
            for k, v in stats.items():
                acc.setdefault(k, []).append(v)
    return {k: sum(v) / len(v) for k, v in acc.items()}


# ====================================================================== loop

def run_name(out) -> str:
    """The name of a run's rollouts in a human-reward database: the folder's name and a hash of its path."""
    import hashlib
    from pathlib import Path

    p = Path(out).resolve()
    return f"{p.name}-{hashlib.sha256(str(p).encode()).hexdigest()[:8]}"


def train_ppo(cfg, out, *, model=None, tok=None, reward_fn=None, prompts=None, dist=None) -> dict:
    """Run PPO as ``cfg`` says and write every artefact under ``out``; return the summary.

    ``model``/``tok``/``reward_fn``/``prompts`` override what the config would load;
    ``dist``: the run's :class:`jprefs.rl.dist.Dist` (default: :func:`get_dist`).

    Under ``accelerate launch`` (N processes) each process draws its own ``batch_size`` prompts
    per step (N x ``batch_size`` rollouts in all), samples, scores them with its own reward
    model and computes its advantages; the policy and value head train through DDP. Scores,
    KL and the other objective metrics are gathered over all processes before logging, and
    the adaptive KL controller steps on the global mean KL with n = N x ``batch_size``, so
    every process holds the same coefficient. The reference stays a plain frozen copy per
    process. The main process alone evaluates and writes.
    """
    import numpy as np

    from jprefs.eval.textmetrics import distinct_n
    from jprefs.progress import progress
    from jprefs.rl.checkpoint import save_checkpoint
    from jprefs.rl.dist import data_parallel_record, weights_digest
    from jprefs.rl.optim import maybe_lora, optimizer
    from jprefs.rl.prepare import eval_reward_for, open_run, prepare_policy, reward_for
    from jprefs.rl.processors import get_sampler
    from jprefs.rl.texts import load_prompts

    # ---------------------------------------------------------------- setup
    dist, writer, finished = open_run(cfg, out, dist)
    if finished is not None:                        # a finished run: nothing to do
        return finished
    policy, tok = prepare_policy(cfg, writer, model=model, tok=tok, dist=dist)
    device = next(policy.parameters()).device
    if cfg.lora_r > 0:
        policy = maybe_lora(policy, cfg)
        ref = None                                   # reference = adapter disabled
    else:
        ref = copy.deepcopy(policy).eval().requires_grad_(False)
    policy.eval()                                    # no dropout: see the module docstring
    hidden = policy.get_output_embeddings().weight.shape[1]
    value_head = make_value_head(hidden).to(device)
    opt = optimizer(list(policy.parameters()) + list(value_head.parameters()), cfg)
    reward_fn = checked_reward(reward_fn or reward_for(cfg, device, run=run_name(out)))
    # people score training rollouts only: evaluation samples are scored by a model, when there is one
    eval_fn = checked_reward(eval_reward_for(cfg, device)) if cfg.reward_type == "human" else reward_fn
    train_prompts = prompts or load_prompts(cfg.prompts)
    eval_prompts = load_prompts(cfg.eval_prompts) * max(1, cfg.eval_samples)
    kl_ctl = KLController(cfg.init_kl_coef, cfg.target_kl or None, cfg.kl_horizon)
    scaler = RunningMoments()
    rng = np.random.default_rng(cfg.seed)

    def evaluate(step: int) -> dict:
        sample = get_sampler(cfg.sampler)
        s = sample(policy, tok, eval_prompts, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                   top_k=cfg.top_k, top_p=cfg.top_p, prompt_max_tokens=cfg.prompt_max_tokens, seed=cfg.seed + 7,
                   min_new_tokens=cfg.min_new_tokens)
        rw = eval_fn(eval_prompts, s.texts) if eval_fn is not None else None
        writer.samples(step, eval_prompts, s.texts, rw)
        return {**({"eval/reward": float(np.mean(rw))} if rw is not None else {}),
                "eval/length": float(np.mean([len(t) for t in s.texts])), "eval/distinct2": distinct_n(s.texts)}

    start = 1
    if writer.checkpoint is not None:
        from jprefs.rl.checkpoint import restore

        st = restore(writer.checkpoint, model=policy, opt=opt, heads=value_head, ref=ref)
        start = st["step"] + 1
        rng.bit_generator.state = st["data_rng"]
        kl_ctl.value = st["extra"]["kl_coef"]
        scaler.mean, scaler.var, scaler.count = st["extra"]["score_moments"]
        first_eval = {k: v for k, v in writer.history[0].items() if k.startswith("eval/")} if writer.write else {}
    elif dist.is_main:
        first_eval = evaluate(0)
        writer.log(0, first_eval)
    else:
        first_eval = {}
    # Updates go through the DDP wrappers (the modules themselves in one process); rollouts,
    # the reference and saving use the plain modules.
    ddp_policy, ddp_value_head = dist.wrap(policy), dist.wrap(value_head)
    n_all = cfg.batch_size * dist.world               # rollouts per step over all processes

    # ---------------------------------------------------------------- loop
    with progress(total=cfg.total_steps * n_all, initial=(start - 1) * n_all, desc="ppo",
                  unit="sample", disable=not dist.is_main) as bar:
        for step in range(start, cfg.total_steps + 1):
            t0 = time.time()
            # The same draw on every process (one generator state to checkpoint); each takes its share.
            picks = dist.share(rng.integers(0, len(train_prompts), n_all), cfg.batch_size)
            prompts_b = [train_prompts[i] for i in picks]
            # ---- rollout: sample, recompute logprobs/values, score, KL-penalised rewards, GAE
            batch = rollout(cfg, policy, ref, value_head, tok, prompts_b, reward_fn, kl_ctl, scaler,
                            seed=cfg.seed * 100003 + step + 1_000_003 * dist.rank, dist=dist)
            t_roll = time.time() - t0
            # ---- PPO epochs over the batch
            stats = dist.mean(ppo_update(cfg, ddp_policy, ddp_value_head, opt, batch, rng))
            # ---- KL controller and metrics, over the rollouts of all processes
            mask = batch["mask"]
            seq_kl = dist.gather(batch["kl"].sum(1))                           # (N * B,) sum over tokens
            mean_kl = float(seq_kl.mean())
            raw_scores = dist.gather(batch["raw_scores"])                      # (N * B,)
            texts = [t for part in dist.gather_object(batch["texts"]) for t in part]
            n_tok = dist.sum(mask.sum())
            stats.update({
                "objective/score": float(raw_scores.mean()),
                "objective/score_std": float(raw_scores.std()) if n_all > 1 else 0.0,
                "objective/scaled_score": float(dist.gather(batch["scores"]).mean()),
                "objective/kl": mean_kl,
                "objective/kl_coef": kl_ctl.value,
                "objective/non_score_reward": float(dist.gather((-kl_ctl.value * batch["kl"]).sum(1)).mean()),
                "objective/response_tokens": float(dist.gather(mask.sum(1)).mean()),
                "objective/distinct2": distinct_n(texts),
                "val/mean": float(dist.sum((batch["values"] * mask).sum()) / n_tok),
                "returns/mean": float(dist.sum((batch["returns"] * mask).sum()) / n_tok),
                "time/rollout_s": t_roll,
                "time/samples_per_s": n_all / max(1e-6, time.time() - t0),
            })
            kl_ctl.update(mean_kl, n=n_all)
            if dist.is_main and (step % cfg.eval_every == 0 or step == cfg.total_steps):
                stats.update(evaluate(step))
            writer.log(step, stats)
            bar.update(n_all)
            bar.set_postfix(score=f"{stats['objective/score']:.3f}", kl=f"{mean_kl:.3f}",
                            samples_s=f"{stats['time/samples_per_s']:.1f}")
            if cfg.save_every and step % cfg.save_every == 0 and step < cfg.total_steps:
                save_checkpoint(writer, step, model=policy, tok=tok, opt=opt, heads=value_head,
                                heads_name="value_head", ref=ref, objects={"data_rng": rng.bit_generator.state},
                                extra={"kl_coef": kl_ctl.value,
                                       "score_moments": [scaler.mean, scaler.var, scaler.count]})

    # ---------------------------------------------------------------- outputs
    del ddp_policy, ddp_value_head
    digests = dist.gather_object([weights_digest([policy]), weights_digest([value_head]), kl_ctl.value]) \
        if dist.enabled else None
    dist.close()                                    # no collective after this point
    if not dist.is_main:
        return {}
    writer.save_policy(policy, tok)
    writer.save_heads(value_head, "value_head", {"hidden": hidden, "layout": "h->2h->1 on the last hidden state"})
    writer.plot(["objective/score", "objective/kl", "objective/kl_coef", "policy/entropy", "losses/value",
                 "eval/reward"], f"PPO ({cfg.total_steps} x {cfg.batch_size} samples)")
    hist = writer.history[1:]
    summary = {"algo": "ppo", "steps": cfg.total_steps, "eval_before": first_eval,
               "eval_after": {k: writer.history[-1].get(k) for k in first_eval},
               "score_first": hist[0]["objective/score"] if hist else None,
               "score_last": hist[-1]["objective/score"] if hist else None,
               "kl_last": hist[-1]["objective/kl"] if hist else None,
               "min_kl": min(h["objective/kl"] for h in hist) if hist else None}
    if dist.enabled:
        summary["data_parallel"] = data_parallel_record(dist, [d[0] for d in digests],
                                                        value_head_digests=[d[1] for d in digests],
                                                        kl_coef=[d[2] for d in digests])
    writer.summary(summary)
    writer.finish(cfg.total_steps)
    return summary
