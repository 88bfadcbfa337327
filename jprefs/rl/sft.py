"""SFT: warm-start (or pretrain) a causal LM on plain text or on chosen responses.

The ILQL seed run skipped this step and blamed its incoherent output on that, so
``jprefs rl`` can run it on its own (``algo: sft``) or before ILQL/PPO
(``sft_steps > 0``). The loss is next-token cross-entropy on the response tokens
(all tokens of a plain text; only the response when a prompt is given), and every
text ends with EOS so that the policy learns to stop.

Example::

    model, tok = build_tiny_policy(texts)
    train_sft(model, tok, [TextRow("", t) for t in texts], steps=200, lr=1e-3)
"""

from __future__ import annotations

import math
import random
from typing import Sequence

from jprefs.rl.texts import TextRow


def encode_rows(tok, rows: Sequence[TextRow], max_length: int):
    """``(ids, n_prompt)`` per row: BOS + prompt + text + EOS, truncated to ``max_length``.

    Long prompts are cut from the left (keep the end that the response follows).
    """
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    out = []
    for r in rows:
        p = bos + (tok(r.prompt, add_special_tokens=False)["input_ids"] if r.prompt else [])
        t = tok(r.text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        if len(p) > max_length // 2:
            p = p[-(max_length // 2):]
        t = t[: max_length - len(p)]
        out.append((p + t, len(p)))
    return out


def collate_lm(batch, pad_id: int):
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 on prompt and padding)."""
    import torch

    T = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), T), dtype=torch.long)
    labels = torch.full((len(batch), T), -100, dtype=torch.long)
    for i, (x, n_prompt) in enumerate(batch):
        ids[i, :len(x)] = torch.tensor(x)
        mask[i, :len(x)] = 1
        labels[i, n_prompt:len(x)] = torch.tensor(x[n_prompt:])
    return ids, mask, labels


def train_sft(model, tok, rows: Sequence[TextRow], *, steps: int, lr: float = 1e-3, batch_size: int = 32,
              max_length: int = 64, seed: int = 0, writer=None, desc: str = "sft",
              save_every: int = 0, dist=None) -> list[float]:
    """Train ``model`` in place for ``steps`` AdamW steps; return the loss per step.

    Metrics ``sft/loss`` and ``sft/tokens_per_s`` go to ``writer`` (a RunWriter) when given;
    with a writer, a checkpoint every ``save_every`` steps, and a resume from
    ``writer.checkpoint`` when the writer found one.

    ``dist`` (:class:`jprefs.rl.dist.Dist`, data-parallel runs): every process draws the same
    shuffled order and trains on its own ``batch_size`` slice of each ``N * batch_size`` block,
    through DDP; the logged loss is the mean over processes.
    """
    import time

    import torch

    from jprefs.progress import progress
    from jprefs.rl.dist import Dist

    dist = dist or Dist()
    if not rows:
        raise ValueError("train_sft: no training texts")
    data = encode_rows(tok, rows, max_length)
    device = next(model.parameters()).device
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, betas=(0.9, 0.95),
                            weight_decay=0.01)
    # linear warmup (5%) then cosine decay to 10%
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * (
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, steps))))))
    rng = random.Random(seed)
    order: list[int] = []
    losses = []
    start = 0
    if writer is not None and writer.checkpoint is not None:
        from jprefs.rl.checkpoint import restore

        st = restore(writer.checkpoint, model=model, opt=opt, sched=sched)
        start, losses, order = st["step"], list(st["extra"]["losses"]), list(st["order"])
        rng.setstate(st["data_rng"])
    ddp = dist.wrap(model)                 # the model itself in one process
    gbs = batch_size * dist.world          # texts per step over all processes
    model.train()
    with progress(total=steps, initial=start, desc=desc, unit="step", disable=not dist.is_main) as bar:
        for step in range(start, steps):
            if len(order) < gbs:
                more = list(range(len(data)))
                rng.shuffle(more)
                order += more
                while dist.enabled and len(order) < gbs:   # fewer texts than N batches: repeat them
                    more = more[:]
                    rng.shuffle(more)
                    order += more
            batch = [data[i] for i in dist.share(order[:gbs], batch_size)]
            del order[:gbs]
            ids, mask, labels = (t.to(device) for t in collate_lm(batch, tok.pad_token_id))
            t0 = time.time()
            # HF shifts labels inside the model: position t predicts labels[t + 1].
            loss = ddp(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            m = dist.mean({"loss": loss.item(), "ntok": int((labels != -100).sum())})   # as is in one process
            losses.append(m["loss"])
            ntok = round(m["ntok"] * dist.world)
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", tok_s=f"{ntok / max(1e-6, time.time() - t0):.0f}")
            if writer is not None:
                writer.log(step, {"sft/loss": losses[-1], "sft/lr": sched.get_last_lr()[0],
                                  "sft/tokens_per_s": ntok / max(1e-6, time.time() - t0)})
                if save_every and (step + 1) % save_every == 0 and step + 1 < steps:
                    from jprefs.rl.checkpoint import save_checkpoint

                    # logged steps are 0-based here: checkpoint "N" = N steps done
                    save_checkpoint(writer, step + 1, model=model, tok=tok, opt=opt, sched=sched,
                                    extra={"losses": losses}, objects={"order": order, "data_rng": rng.getstate()})
    del ddp                                # drop DDP's gradient hooks before the model is trained again
    model.eval()
    return losses
