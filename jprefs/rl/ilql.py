"""ILQL: Implicit Language Q-Learning (Snell et al. 2022), offline RL from (text, reward).

One file, top to bottom: the loss (:func:`ilql_loss`, the public function checked
against hand-computed values), the heads (V, Q, target Q with Polyak sync), the
data shaping, the decoding rule, then the training loop in marked blocks. The
math follows ``RL_SPEC.md`` (trlx semantics); the code is ours.

Shapes: B batch, T tokens, A action (response) tokens, V vocabulary, H hidden.

Example::

    from jprefs.config import load_config
    from jprefs.rl.config import RLConfig
    cfg = load_config(RLConfig, "rl/recipes/ilql-tiny-cpu.yaml")
    summary = train_ilql(cfg, out="runs/ilql")
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Sequence

from jprefs.rl.texts import TextRow
from jprefs.rl.rewards import checked_reward, finite_rewards


# ====================================================================== loss

def ilql_loss(logits, qs, target_qs, vs, actions, rewards, nonterminal, *, tau, gamma, cql_scale, awac_scale,
              beta):
    """The ILQL loss and its parts.

    Args (B batch, A actions, V vocabulary):
        logits: ``(B, A, V)`` LM logits at the action-predicting positions.
        qs: sequence of ``(B, A, V)``, one per Q head.
        target_qs: sequence of ``(B, A, V)`` from the target Q heads.
        vs: ``(B, A + 1)`` V at the states (action states + final state).
        actions: ``(B, A)`` long, the taken tokens.
        rewards: ``(B, A)`` per-action rewards (the return sits on the last action).
        nonterminal: ``(B, A + 1)`` 1 = not terminal, 0 = terminal or padding.

    Returns ``(loss, stats)`` with ``loss = L_Q + L_V + cql_scale * L_CQL + awac_scale * L_AWAC``.

    >>> import torch
    >>> B, A, V = 1, 2, 3
    >>> z = torch.zeros(B, A, V)
    >>> loss, stats = ilql_loss(z, [z], [z], torch.zeros(B, A + 1), torch.zeros(B, A, dtype=torch.long),
    ...     torch.tensor([[0., 1.]]), torch.tensor([[1., 1., 0.]]), tau=0.7, gamma=0.99, cql_scale=0.1,
    ...     awac_scale=1.0, beta=0.0)
    >>> round(stats["losses/q"], 4)   # ((0 - 0)^2 + (0 - 1)^2) / 2
    0.5
    """
    import torch
    import torch.nn.functional as F

    m = nonterminal[:, :-1].float()                                    # (B, A) 1 on real actions
    n = m.sum().clamp(min=1.0)
    V = vs[:, :-1]                                                     # (B, A) V(s_t)
    Vnext = vs[:, 1:] * nonterminal[:, 1:]                             # (B, A) V(s_t+1), 0 after the end

    def at_actions(x):                                                 # (B, A, V) -> (B, A)
        return x.gather(-1, actions.unsqueeze(-1)).squeeze(-1)

    Q = [at_actions(q) for q in qs]
    # Qhat: the pessimistic (min over heads) target value of the taken action; no gradient.
    Qhat = torch.stack([at_actions(tq) for tq in target_qs], dim=0).min(dim=0).values.detach()  # (B, A)

    # Bellman targets use the *current* V of the next state, detached (V learns from Qhat instead).
    q_target = rewards + gamma * Vnext.detach()
    loss_q = sum(((q - q_target) * m).pow(2).sum() / n for q in Q)

    # Expectile regression of V towards Qhat: weight tau above, 1 - tau below.
    w = torch.abs(tau - (Qhat < V).float())
    loss_v = (m * w * (Qhat - V).pow(2)).sum() / n

    # CQL: cross-entropy of each Q head's "logits" on the taken action (keeps Q of unseen tokens low).
    def ce(x):                                                         # (B, A, V) -> (B, A)
        return F.cross_entropy(x.reshape(-1, x.shape[-1]).float(), actions.reshape(-1),
                               reduction="none").view(actions.shape)

    loss_cql = sum((m * ce(q)).sum() / n for q in qs)

    # AWAC: LM cross-entropy weighted by exp(beta * advantage); beta = 0 is behaviour cloning.
    awac_w = torch.exp(beta * (Qhat - V)).detach()
    loss_awac = (m * ce(logits) * awac_w).sum() / n

    loss = loss_q + loss_v + cql_scale * loss_cql + awac_scale * loss_awac
    stats = {
        "losses/total": loss.item(), "losses/q": float(loss_q.detach()), "losses/v": loss_v.item(),
        "losses/cql": float(loss_cql.detach()), "losses/awac": loss_awac.item(),
        "values/v_mean": ((V * m).sum() / n).item(),
        "values/awac_weight": ((awac_w * m).sum() / n).item(),
    }
    for i, q in enumerate(Q):
        stats[f"values/q{i + 1}_mean"] = ((q * m).sum() / n).item()
    return loss, stats


# ====================================================================== heads

def _mlp(h: int, out: int):
    import torch.nn as nn

    return nn.Sequential(nn.Linear(h, 2 * h), nn.ReLU(), nn.Linear(2 * h, out))


def make_heads(hidden: int, vocab: int, two_qs: bool = True):
    """V head ``h -> 2h -> 1``, Q heads ``h -> 2h -> V`` and frozen target copies."""
    import torch.nn as nn

    class ILQLHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.v_head = _mlp(hidden, 1)
            self.q_heads = nn.ModuleList([_mlp(hidden, vocab) for _ in range(2 if two_qs else 1)])
            self.target_q_heads = copy.deepcopy(self.q_heads)
            self.target_q_heads.requires_grad_(False)

        def forward(self, hs, states_ixs, actions_ixs):
            """hs (B, T, H) -> qs [(B, A, V)], target_qs [(B, A, V)], vs (B, A + 1)."""
            H = hs.shape[-1]
            s_hs = hs.gather(1, states_ixs.unsqueeze(-1).expand(-1, -1, H))   # (B, A + 1, H)
            a_hs = hs.gather(1, actions_ixs.unsqueeze(-1).expand(-1, -1, H))  # (B, A, H)
            qs = [q(a_hs) for q in self.q_heads]
            target_qs = [q(a_hs) for q in self.target_q_heads]
            vs = self.v_head(s_hs).squeeze(-1)
            return qs, target_qs, vs

        def advantage(self, h):
            """``min_i target_q_i(h) - v(h)`` for decoding. h (B, H) -> (B, V)."""
            q = self.target_q_heads[0](h)
            for head in self.target_q_heads[1:]:
                q = torch_min(q, head(h))
            return q - self.v_head(h)

        def sync_target_q_heads(self, alpha: float):
            """Polyak: ``target <- alpha * q + (1 - alpha) * target``."""
            import torch

            with torch.no_grad():
                for q, tq in zip(self.q_heads, self.target_q_heads):
                    for p, tp in zip(q.parameters(), tq.parameters()):
                        tp.mul_(1 - alpha).add_(p, alpha=alpha)

    return ILQLHeads()


def torch_min(a, b):
    import torch

    return torch.minimum(a, b)


def ilql_score_fn(heads, beta_gen: float):
    """Decoding rule: ``log_softmax(logits) + beta_gen * (min_i target_q_i - v)``.

    With ``beta_gen = 0`` this is exactly the LM's log-distribution (behaviour cloning).
    """
    import torch

    def score(logits, h):                                    # (B, V), (B, H) -> (B, V)
        logp = torch.log_softmax(logits.float(), dim=-1)
        if beta_gen == 0:
            return logp
        return logp + beta_gen * heads.advantage(h.to(next(heads.parameters()).dtype)).float()

    return score


def ilql_processor(heads, beta_gen: float):
    """:func:`ilql_score_fn` as a logits processor for ``generate``
    (:class:`jprefs.rl.processors.ScoreFnProcessor`); ``beta_gen = 0`` needs no hidden state."""
    from jprefs.rl.processors import ScoreFnProcessor

    proc = ScoreFnProcessor(ilql_score_fn(heads, beta_gen))
    proc.needs_hidden = beta_gen != 0
    return proc


# ====================================================================== data shaping

@dataclass
class ILQLBatch:
    input_ids: object      # (B, T) right-padded
    attention_mask: object  # (B, T)
    actions_ixs: object    # (B, A) hidden-state positions that predict the actions
    states_ixs: object     # (B, A + 1) action states + the final (terminal) state
    actions: object        # (B, A) taken tokens
    rewards: object        # (B, A) return on the last action, 0 elsewhere
    nonterminal: object    # (B, A + 1) 1 except the final state; padding 0

    def to(self, device):
        return ILQLBatch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def make_ilql_batch(encoded: Sequence[tuple[list[int], int]], returns: Sequence[float], pad_id: int) -> ILQLBatch:
    """Shape ``(ids, n_prompt)`` samples (from :func:`jprefs.rl.sft.encode_rows`) and their returns.

    Actions are the tokens after the prompt (the text and its EOS). The hidden state
    at position ``t - 1`` predicts token ``t``, so ``actions_ixs = positions - 1``;
    the states add the last position (the terminal state after the final action).
    """
    import torch

    B = len(encoded)
    T = max(len(x) for x, _ in encoded)
    A = max(len(x) - n for x, n in encoded)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    a_ixs = torch.zeros((B, A), dtype=torch.long)
    s_ixs = torch.zeros((B, A + 1), dtype=torch.long)
    actions = torch.full((B, A), pad_id, dtype=torch.long)
    rewards = torch.zeros((B, A))
    nonterm = torch.zeros((B, A + 1))
    for i, ((x, n_prompt), r) in enumerate(zip(encoded, returns)):
        L, a = len(x), len(x) - n_prompt
        ids[i, :L] = torch.tensor(x)
        mask[i, :L] = 1
        a_ixs[i, :a] = torch.arange(n_prompt - 1, L - 1)
        s_ixs[i, :a + 1] = torch.arange(n_prompt - 1, L)
        actions[i, :a] = torch.tensor(x[n_prompt:])
        rewards[i, a - 1] = r
        nonterm[i, :a] = 1.0
    return ILQLBatch(ids, mask, a_ixs, s_ixs, actions, rewards, nonterm)


def zscore(values: Sequence[float], eps: float = 1e-8) -> tuple[list[float], float, float]:
    """``(r - mean) / (std + eps)`` over the dataset; returns (scaled, mean, std)."""
    import numpy as np

    a = np.asarray(values, dtype=np.float64)
    mean, std = float(a.mean()), float(a.std())
    return ((a - mean) / (std + eps)).tolist(), mean, std


# ====================================================================== model forward

def ilql_forward(model, heads, batch: ILQLBatch):
    """LM logits at the actions ``(B, A, V)`` and the heads' outputs, from one LM pass."""
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True)
    hs = out.hidden_states[-1]                                              # (B, T, H)
    Vv = out.logits.shape[-1]
    logits = out.logits.gather(1, batch.actions_ixs.unsqueeze(-1).expand(-1, -1, Vv))  # (B, A, V)
    qs, target_qs, vs = heads(hs.to(next(heads.parameters()).dtype), batch.states_ixs, batch.actions_ixs)
    return logits, qs, target_qs, vs


# ====================================================================== evaluation

def evaluate_beta_gen(model, heads, tok, prompts: Sequence[str], reward_fn, beta_gens: Sequence[float], *,
                      max_new_tokens: int, top_k: int, temperature: float, prompt_max_tokens: int, seed: int,
                      n_per_prompt: int = 1, sampler: str = "native", min_new_tokens: int = 0) -> dict:
    """Per ``beta_gen``: mean reward (when ``reward_fn``), mean length, distinct-2, and the samples."""
    import numpy as np

    from jprefs.eval.textmetrics import distinct_n
    from jprefs.rl.processors import get_sampler

    sample = get_sampler(sampler)
    ps = [p for p in prompts for _ in range(n_per_prompt)]
    out = {}
    for b in beta_gens:
        s = sample(model, tok, ps, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                   prompt_max_tokens=prompt_max_tokens, seed=seed, score_fn=ilql_score_fn(heads, b),
                   min_new_tokens=min_new_tokens)
        row = {"length": float(np.mean([len(t) for t in s.texts])), "distinct2": distinct_n(s.texts, 2),
               "samples": s.texts}
        if reward_fn is not None:
            row["reward"] = float(np.mean(reward_fn(ps, s.texts)))
        out[str(float(b))] = row
    return out


# ====================================================================== training loop

def train_ilql(cfg, out, *, model=None, tok=None, rows: Sequence[TextRow] | None = None, reward_fn=None,
               eval_reward_fn=None, dist=None) -> dict:
    """Run ILQL as ``cfg`` says and write every artefact under ``out``; return the summary.

    ``model``/``tok``/``rows``/``reward_fn`` override what the config would load
    (tests pass tiny objects). ``rows`` without rewards are scored with ``reward_fn``.
    ``dist``: the run's :class:`jprefs.rl.dist.Dist` (default: :func:`get_dist`).

    Under ``accelerate launch`` (N processes) the LM and the heads train through DDP, each
    process on its own ``batch_size`` rows per step (N x ``batch_size`` in all); the Polyak
    sync runs on the plain heads of every process alike; the main process alone evaluates
    and writes.
    """
    import numpy as np
    import torch

    from jprefs.progress import progress
    from jprefs.rl.checkpoint import save_checkpoint
    from jprefs.rl.dist import data_parallel_record, weights_digest
    from jprefs.rl.optim import optimizer
    from jprefs.rl.prepare import eval_reward_for, load_ilql_rows, open_run, prepare_policy
    from jprefs.rl.processors import get_sampler
    from jprefs.rl.sft import encode_rows
    from jprefs.rl.texts import load_prompts

    # ---------------------------------------------------------------- setup
    dist, writer, finished = open_run(cfg, out, dist)
    if finished is not None:                        # a finished run: nothing to do
        return finished
    model, tok = prepare_policy(cfg, writer, model=model, tok=tok, dist=dist)
    device = next(model.parameters()).device
    if rows is None:
        rows = load_ilql_rows(cfg, writer.out, reward_fn, dist=dist)
    missing = [i for i, r in enumerate(rows) if r.reward is None]
    if missing:
        if reward_fn is None:
            raise ValueError(f"{len(missing)} rows have no reward and no reward function was given")
        scores = reward_fn([rows[i].prompt for i in missing], [rows[i].text for i in missing])
        for i, s in zip(missing, scores):
            rows[i].reward = s
    returns, r_mean, r_std = zscore(finite_rewards([r.reward for r in rows], [r.text for r in rows], "of the ILQL rows"))
    encoded = encode_rows(tok, rows, cfg.max_length)
    if eval_reward_fn is None and dist.is_main:
        eval_reward_fn = eval_reward_for(cfg, device)
    eval_reward_fn = checked_reward(eval_reward_fn)
    eval_prompts = load_prompts(cfg.eval_prompts)

    hidden = model.get_output_embeddings().weight.shape[1]
    heads = make_heads(hidden, model.get_output_embeddings().weight.shape[0], cfg.two_qs).to(device)
    opt = optimizer(list(model.parameters()) + list(heads.parameters()), cfg)
    rng = np.random.default_rng(cfg.seed)
    order: list[int] = []
    gen_kw = dict(max_new_tokens=cfg.max_new_tokens, top_k=cfg.ilql_top_k, temperature=cfg.temperature,
                  prompt_max_tokens=cfg.prompt_max_tokens, min_new_tokens=cfg.min_new_tokens)

    def evaluate(step: int) -> dict:
        s = get_sampler(cfg.sampler)(model, tok, eval_prompts * cfg.eval_samples, seed=cfg.seed + step,
                   score_fn=ilql_score_fn(heads, cfg.beta_gen), **gen_kw)
        rw = eval_reward_fn(eval_prompts * cfg.eval_samples, s.texts) if eval_reward_fn else None
        writer.samples(step, eval_prompts * cfg.eval_samples, s.texts, rw, beta_gen=cfg.beta_gen)
        return {"eval/reward": float(np.mean(rw)) if rw is not None else None,
                "eval/length": float(np.mean([len(t) for t in s.texts]))}

    start = 1
    if writer.checkpoint is not None:
        from jprefs.rl.checkpoint import restore

        st = restore(writer.checkpoint, model=model, opt=opt, heads=heads)
        start, order = st["step"] + 1, list(st["order"])
        rng.bit_generator.state = st["data_rng"]
    # Training goes through the DDP wrappers (the modules themselves in one process); sampling,
    # the Polyak sync and saving use the plain modules.
    ddp_model, ddp_heads = dist.wrap(model), dist.wrap(heads)
    gbs = cfg.batch_size * dist.world                 # rows per step over all processes

    # ---------------------------------------------------------------- loop
    model.train()
    with progress(total=cfg.total_steps, initial=start - 1, desc="ilql", unit="step",
                  disable=not dist.is_main) as bar:
        for step in range(start, cfg.total_steps + 1):
            t0 = time.time()
            if len(order) < gbs:
                order += rng.permutation(len(encoded)).tolist()
                while dist.enabled and len(order) < gbs:       # fewer rows than N batches: repeat them
                    order += rng.permutation(len(encoded)).tolist()
            idx, order = dist.share(order[:gbs], cfg.batch_size), order[gbs:]
            batch = make_ilql_batch([encoded[i] for i in idx], [returns[i] for i in idx], tok.pad_token_id).to(device)

            logits, qs, target_qs, vs = ilql_forward(ddp_model, ddp_heads, batch)
            loss, stats = ilql_loss(logits, qs, target_qs, vs, batch.actions, batch.rewards, batch.nonterminal,
                                    tau=cfg.tau, gamma=cfg.gamma, cql_scale=cfg.cql_scale,
                                    awac_scale=cfg.awac_scale, beta=cfg.beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm > 0:
                stats["policy/grad_norm"] = float(torch.nn.utils.clip_grad_norm_(
                    list(model.parameters()) + list(heads.parameters()), cfg.max_grad_norm))
            opt.step()
            if step % cfg.steps_for_target_q_sync == 0:
                heads.sync_target_q_heads(cfg.alpha)       # the plain heads: identical on every process

            stats = dist.mean(stats)                        # the loss terms averaged over processes
            stats["time/samples_per_s"] = len(idx) * dist.world / max(1e-6, time.time() - t0)
            if dist.is_main and (step % cfg.eval_every == 0 or step == cfg.total_steps):
                model.eval()
                stats.update(evaluate(step))
                model.train()
            writer.log(step, stats)
            bar.update(1)
            bar.set_postfix(loss=f"{stats['losses/total']:.3f}", samples_s=f"{stats['time/samples_per_s']:.1f}")
            if cfg.save_every and step % cfg.save_every == 0 and step < cfg.total_steps:
                save_checkpoint(writer, step, model=model, tok=tok, opt=opt, heads=heads, heads_name="ilql_heads",
                                objects={"order": order, "data_rng": rng.bit_generator.state})

    # ---------------------------------------------------------------- outputs
    del ddp_model, ddp_heads
    model.eval()
    digests = dist.gather_object([weights_digest([model]), weights_digest([heads])]) if dist.enabled else None
    dist.close()                                    # no collective after this point
    if not dist.is_main:
        return {}
    sweep = evaluate_beta_gen(model, heads, tok, eval_prompts, eval_reward_fn, cfg.beta_gen_sweep,
                              seed=cfg.seed, n_per_prompt=max(1, cfg.eval_samples), sampler=cfg.sampler,
                              **gen_kw)
    for b, row in sweep.items():
        writer.samples(cfg.total_steps, eval_prompts * max(1, cfg.eval_samples), row["samples"], beta_gen=float(b),
                       kind="beta_gen_sweep")
    writer.save_policy(model, tok)
    writer.save_heads(heads, "ilql_heads", {"hidden": hidden, "two_qs": cfg.two_qs, "beta_gen": cfg.beta_gen,
                                            "layout": "v_head: h->2h->1; q_heads/target_q_heads: h->2h->V"})
    writer.plot(["losses/total", "losses/q", "losses/v", "losses/awac", "values/v_mean", "eval/reward"],
                f"ILQL ({cfg.total_steps} steps)")
    summary = {"algo": "ilql", "steps": cfg.total_steps, "rows": len(rows), "reward_mean": r_mean,
               "reward_std": r_std, "beta_gen_sweep": {b: {k: v for k, v in row.items() if k != "samples"}
                                                       for b, row in sweep.items()},
               "final": writer.history[-1] if writer.history else {}}
    if dist.enabled:
        summary["data_parallel"] = data_parallel_record(dist, [d[0] for d in digests],
                                                        heads_digests=[d[1] for d in digests])
    writer.summary(summary)
    writer.finish(cfg.total_steps)
    return summary
