"""``jprefs train-rm``: train a reward model (binary classifier, Bradley-Terry, or listwise).

Read top to bottom: data -> model -> batches -> loop (eval each epoch, best
checkpoint kept) -> centring -> save (model, reward config, metrics, plots, card).

Batches are *groups* of sequences so one loop serves every objective:

- binary: each example is one sequence with a 0/1 label; ``logits`` is ``(N, 2)``;
- pairwise: each pair is a group of 2 (chosen, rejected); one scalar head;
- listwise: each rank list is a group of K (best first); one scalar head.

``groups`` is a ``(G, K)`` index tensor into the flat batch of sequences, ``-1``
for padding, so ``rewards[groups]`` is ``(G, K)``. The loop uses
``accelerate.Accelerator``, so ``torchrun --nproc_per_node N -m jprefs.cli train-rm ...``
runs data-parallel on N GPUs or CPU processes (gloo); bf16 autocast is used where available.

Example::

    cfg = load_config(TrainRMConfig, "classifiers/recipes/tiny.yaml", ["epochs=1"])
    metrics = train_reward_model(cfg)
"""

from __future__ import annotations

import datetime
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jprefs.classifiers.config import TrainRMConfig
from jprefs.config import config_dict, refuse_config_change
from jprefs.errors import ConfigError, DataError

# The completion marker, written after every other output of a finished run.
DONE = "done.json"
# Keys that do not change the trained model: a resumed or rerun run may change them.
RESUME_IGNORE = ("resume", "output_dir", "plots", "eval_batch_size", "report_to")
# Fewer eval rows than this choose no epoch: on a handful of pairs the best epoch is noise (one pair of
# 5 moves accuracy by 0.2), so all `epochs` are trained and the last weights kept; the log and card say so.
MIN_SELECTION_ROWS = 50


# ------------------------------------------------------------------ data -> flat sequences + groups

@dataclass
class Items:
    """Training items over one flat list of encoded sequences.

    ``groups[i]`` are the sequence indices of item ``i`` (1 for binary, 2 for a
    pair, K for a rank list, best first); ``labels[i]`` the 0/1 label (binary);
    ``margins[i]`` the pair margin (pairwise).
    """

    enc: Any                    # jprefs.classifiers.inputs.Encoded, all sequences
    groups: list[list[int]]
    labels: list[int] | None = None
    margins: list[float] | None = None
    lengths: list[int] | None = None        # characters of each sequence's response (length debiasing)
    weights: list[float] | None = None      # per-item loss weights (length_balance)
    counterfactual: int = 0                 # items appended by `counterfactual` (the last ones)

    def __len__(self) -> int:
        return len(self.groups)

    def length(self, i: int) -> int:
        return max(len(self.enc.input_ids[j]) for j in self.groups[i])


def build_items(data, cfg: TrainRMConfig, tokenizer, max_length: int) -> Items:
    """Encode the data for ``cfg.objective``; errors say which objective needs which data."""
    from jprefs.classifiers.inputs import encode_pairs

    def enc(prompts, responses):
        return encode_pairs(tokenizer, prompts, responses, max_length=max_length,
                            max_prompt_length=cfg.max_prompt_length, prefix=cfg.input_prefix)

    if cfg.objective == "binary":
        ex = data.binary()
        e = enc([x.prompt for x in ex], [x.response for x in ex])
        return Items(e, [[i] for i in range(len(ex))], labels=[x.label for x in ex])
    if cfg.objective == "pairwise":
        from jprefs.classifiers.debias import counterfactual_pairs, length_balance_weights

        pairs = data.pairs()
        extra = counterfactual_pairs(pairs, cfg.counterfactual, cfg.counterfactual_fraction, cfg.seed)
        if extra:
            # a padded answer that the token limit cuts back to the original is no counterfactual
            ce = enc([p.prompt for p in extra] * 2, [p.chosen for p in extra] + [p.rejected for p in extra])
            m = len(extra)
            extra = [p for i, p in enumerate(extra) if ce.input_ids[i] != ce.input_ids[m + i]]
        n_real = len(pairs)
        pairs = pairs + extra
        n = len(pairs)
        e = enc([p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs])
        margins = [_pair_margin(p) if cfg.use_pair_margin else 0.0 for p in pairs]
        lengths = [len(p.chosen) for p in pairs] + [len(p.rejected) for p in pairs]
        weights = length_balance_weights(lengths[:n], lengths[n:]) if cfg.length_balance else None
        return Items(e, [[i, n + i] for i in range(n)], margins=margins, lengths=lengths, weights=weights,
                     counterfactual=n - n_real)
    lists = data.lists()
    prompts, responses, groups = [], [], []
    for rl in lists:
        groups.append(list(range(len(responses), len(responses) + len(rl.responses))))
        prompts.extend([rl.prompt] * len(rl.responses))
        responses.extend(rl.responses)
    return Items(enc(prompts, responses), groups)


def make_batches(items: Items, batch_size: int, *, seed: int, epoch: int, group_by_length: bool) -> list[list[int]]:
    """Shuffled batches of item indices; with ``group_by_length`` items of similar length share a batch.

    Like HF's LengthGroupedSampler: shuffle, cut into mega-batches of 50
    batches, sort each by length, split, then shuffle the batch order.
    """
    rng = random.Random(seed * 1000 + epoch)
    idx = list(range(len(items)))
    rng.shuffle(idx)
    if group_by_length:
        mega = batch_size * 50
        idx = [i for s in range(0, len(idx), mega)
               for i in sorted(idx[s:s + mega], key=lambda j: -items.length(j))]
    batches = [idx[s:s + batch_size] for s in range(0, len(idx), batch_size)]
    rng.shuffle(batches)
    return batches


class _BatchList:
    """A batch sampler over precomputed batches (Accelerate shards it across processes)."""

    def __init__(self, batches: list[list[int]]):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _cached_inputs(states, seqs):
    from jprefs.classifiers.layercache import pad_states

    x, mask = pad_states(states, seqs)
    return {"inputs_embeds": x, "attention_mask": mask}


def collate_items(items: Items, item_idx: list[int], pad_id: int, states=None) -> dict[str, Any]:
    """Tensors for a batch of items: model inputs ``(N, T)``, ``groups`` ``(G, K)`` (-1 = pad), labels/margins,
    the responses' ``lengths`` ``(N,)`` and loss ``weights`` ``(G,)`` when the items have them.

    ``states`` (the frozen-layer cache, :mod:`jprefs.classifiers.layercache`): the inputs are the cached
    lower-layer hidden states (``inputs_embeds`` ``(N, T, H)``) instead of token ids."""
    import torch

    from jprefs.classifiers.inputs import collate

    seqs: list[int] = []
    groups = []
    for i in item_idx:
        groups.append(list(range(len(seqs), len(seqs) + len(items.groups[i]))))
        seqs.extend(items.groups[i])
    K = max(len(g) for g in groups)
    g = torch.full((len(groups), K), -1, dtype=torch.long)
    for r, gi in enumerate(groups):
        g[r, :len(gi)] = torch.tensor(gi)
    batch = {"inputs": collate(items.enc, seqs, pad_id) if states is None else _cached_inputs(states, seqs),
             "groups": g}
    if items.lengths is not None:
        batch["lengths"] = torch.tensor([items.lengths[j] for j in seqs], dtype=torch.float)
    if items.weights is not None:
        batch["weights"] = torch.tensor([items.weights[i] for i in item_idx], dtype=torch.float)
    if items.labels is not None:
        batch["labels"] = torch.tensor([items.labels[i] for i in item_idx], dtype=torch.long)
    if items.margins is not None:
        batch["margins"] = torch.tensor([items.margins[i] for i in item_idx], dtype=torch.float)
    return batch


def compute_loss(cfg: TrainRMConfig, logits, batch: dict[str, Any], head_weight=None):
    """The objective's loss from ``(N, C)`` logits of the flat batch (see the module docstring).

    ``debias=odin``: ``logits`` is ``(N, 2)`` (quality, length) and ``head_weight`` the ``(2, H)``
    weight of the final linear layer (:mod:`jprefs.classifiers.losses.odin`).
    """
    from jprefs.classifiers.losses import (all_pairs_loss, binary_loss, bradley_terry_loss,
                                           length_correlation_penalty, odin_loss, plackett_luce_loss)

    if cfg.objective == "binary":
        return binary_loss(logits, batch["labels"])
    groups = batch["groups"]                                           # (G, K)
    mask = groups >= 0
    at = groups.clamp(min=0)
    if cfg.debias == "odin":
        q, ln = logits[:, 0][at], logits[:, 1][at]                     # (G, 2) each
        lens = batch["lengths"][at]                                    # (G, 2)
        loss, _ = odin_loss(q[:, 0], q[:, 1], ln[:, 0], ln[:, 1], lens[:, 0], lens[:, 1], head_weight,
                            length_weight=cfg.debias_weight, orth_weight=cfg.odin_orth_weight,
                            margin=batch["margins"] + cfg.margin, weights=batch.get("weights"))
        return loss
    r = logits[:, 0]                                                   # (N,) scalar rewards
    rg = r[at]                                                         # (G, K)
    if cfg.objective == "pairwise":
        margin = batch["margins"] + cfg.margin                         # (G,)
        loss = bradley_terry_loss(rg[:, 0], rg[:, 1], margin, weights=batch.get("weights"))
        if cfg.debias == "correlation":
            loss = loss + cfg.debias_weight * length_correlation_penalty(rg.reshape(-1),
                                                                         batch["lengths"][at].reshape(-1))
        return loss
    if cfg.listwise_loss == "all-pairs":
        return all_pairs_loss(rg, mask)
    return plackett_luce_loss(rg, mask)


# ------------------------------------------------------------------ model

def _apply_lora(model, cfg: TrainRMConfig):
    from jprefs.errors import require

    peft = require("peft", "peft", "LoRA (lora=true)")
    names = {n.split(".")[-1] for n, _ in model.named_modules()}
    targets = [t for t in cfg.lora_target_modules if t in names]
    if not targets:
        raise ConfigError(f"config key 'lora_target_modules': none of {cfg.lora_target_modules} is a module of this "
                          f"backbone; some names it has: {sorted(names)[:20]}")
    # the head and, for BERT, the pooler (e5 ships none: it starts random) are trained in full
    # (a parameter-free mean pooler, pooling=mean, needs no copy)
    heads = [m for m in ("classifier", "score", "pooler") if m in names
             and any(True for n, mod in model.named_modules() if n.split(".")[-1] == m
                     for _ in mod.parameters())]
    lcfg = peft.LoraConfig(task_type=peft.TaskType.SEQ_CLS, r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                           lora_dropout=cfg.lora_dropout, target_modules=targets, modules_to_save=heads)
    return peft.get_peft_model(model, lcfg)


def _freeze_embeddings(model) -> int:
    emb = model.get_input_embeddings()
    n = 0
    for p in emb.parameters():
        p.requires_grad_(False)
        n += p.numel()
    return n


def _freeze_lower_layers(model, keep: int) -> int:
    """Freeze all but the top ``keep`` layers of the encoder's layer list; return the frozen count.

    Frozen lower layers get no autograd graph (their inputs need no gradient), so
    a step costs one forward pass plus the backward pass of the top layers only.
    """
    import torch

    layers = None
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and name.endswith(("encoder.layer", "encoder.layers", "layers")):
            layers = mod
            break
    if layers is None:
        raise ConfigError("train_layers: cannot find the encoder's layer list in this backbone; use train_layers=0")
    if not 0 < keep <= len(layers):
        raise ConfigError(f"config key 'train_layers': must be between 1 and {len(layers)} (0: all), got {keep}")
    # everything below the kept layers: the embeddings module (word, position, type, LayerNorm) and
    # the lower layers; any trainable parameter down there would make backward run through all layers
    below = list(layers)[:len(layers) - keep]
    base = getattr(model, "base_model", model)
    emb = getattr(base, "embeddings", None)
    if emb is not None:
        below.insert(0, emb)
    n = 0
    for layer in below:
        for p in layer.parameters():
            n += p.numel() if p.requires_grad else 0
            p.requires_grad_(False)
    return n


def _mixed_precision(cfg: TrainRMConfig) -> str:
    import torch

    if cfg.mixed_precision == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return cfg.mixed_precision


# ------------------------------------------------------------------ the loop

def _pair_margin(p) -> float:
    """A pair's margin for ``use_pair_margin``: its ``margin``, else ``chosen_score - rejected_score`` when
    both are set (graded pairs, a rank list's scores), else 0 (with only the field read, a run over graded
    rank lists was plain Bradley-Terry, silently)."""
    if p.margin is not None:
        return float(p.margin)
    if p.chosen_score is not None and p.rejected_score is not None:
        return float(p.chosen_score - p.rejected_score)
    return 0.0


def _load_split(cfg: TrainRMConfig, log):
    from jprefs.classifiers.data import RMData, load_rm_data, split_by_group

    if not cfg.data:
        raise ConfigError("no training data: pass --data FILE or set `data:` in the recipe")
    files = [cfg.data, *cfg.extra_data]
    parts = [load_rm_data(f, data_format=cfg.data_format, source=cfg.data_source, limit=cfg.limit,
                          license=cfg.data_license) for f in files]
    if len({d.kind for d in parts}) > 1:
        raise DataError(f"{cfg.data} and extra_data mix labelled examples and preference pairs "
                        f"({', '.join(f'{f}: {d.kind}' for f, d in zip(files, parts))})",
                        fix="give files of one kind")
    if cfg.eval_data:
        ev = load_rm_data(cfg.eval_data, data_format=cfg.data_format, source=cfg.data_source,
                          limit=cfg.eval_limit, license=cfg.data_license)
        train = _concat(parts, files)
    elif cfg.eval_fraction == 0:   # refit on every row: nothing held out, nothing selected
        train = _concat(parts, files)
        ev = RMData(train.kind, [], [], 0, "(none: eval_fraction=0)", train.license)
    else:
        # each file is split by prompt on its own (every set is held out in the same proportion), and a
        # prompt that several files share is on one side in all of them (it leaked into training otherwise)
        seed = cfg.split_seed if cfg.split_seed >= 0 else cfg.seed
        sides: dict[str, bool] = {}
        splits = [split_by_group(d, cfg.eval_fraction, seed, near_duplicates=cfg.eval_near_duplicates, sides=sides)
                  for d in parts]
        train, ev = _concat([t for t, _ in splits], files), _concat([e for _, e in splits], files)
        if cfg.eval_limit:
            ev.records = ev.records[:cfg.eval_limit]
    test = load_rm_data(cfg.test_data, data_format=cfg.data_format, source=cfg.data_source,
                        limit=cfg.eval_limit, license=cfg.data_license) if cfg.test_data else None
    log(f"data: {len(train.records)} train / " + (f"{len(ev.records)} eval" if ev.records else "no eval")
        + (f" / {len(test.records)} test" if test else "")
        + f" {'preference' if train.kind == 'records' else 'labelled'} rows; "
        f"{len(train.rejects) + len(ev.rejects) + (len(test.rejects) if test else 0)} rejected")
    return train, ev, test


def _write_split_files(cfg: TrainRMConfig, out: Path, train, ev, test, *, write: bool = True) -> list:
    """``OUT/rejects.jsonl`` (every file's rejected rows) and ``OUT/eval_split.jsonl`` (the held-out rows
    themselves, so that `jprefs eval rm --data OUT/eval_split.jsonl` scores exactly what the model never
    trained on); then the check that a preference objective has preference data. Returns the rejects."""
    from jprefs.data.io import write_jsonl

    rejects = train.rejects + ev.rejects + (test.rejects if test else [])
    if rejects and write:
        write_jsonl(out / "rejects.jsonl", rejects)
    if ev.records and write:
        write_jsonl(out / "eval_split.jsonl", ev.records)
    if cfg.objective != "binary" and train.kind == "binary":
        raise DataError(f"{cfg.data}: objective={cfg.objective} needs preference pairs or rank lists, "
                        f"but the file holds labelled examples", fix="use objective=binary")
    return rejects


def _concat(parts, files):
    """One RMData of several files' records (rejects and row counts summed; licences joined); ``parts``
    keeps each file's own, named by the file ``files[i]`` it came from."""
    from jprefs.classifiers.data import RMData

    if len(parts) == 1:
        return parts[0]
    lic = sorted({d.license for d in parts if d.license})
    names = [Path(f).name for f in files]
    return RMData(parts[0].kind, [r for d in parts for r in d.records], [x for d in parts for x in d.rejects],
                  sum(d.rows_in for d in parts), " + ".join(d.path for d in parts), ", ".join(lic),
                  parts=list(zip(names, parts)))


def _selection_metric(cfg: TrainRMConfig, data) -> str:
    """The eval metric that picks the best epoch, or ``"none (why; the last epoch is kept)"``."""
    if not data.records:
        return "none (no eval split: the last epoch is kept)"
    if cfg.epochs == 1:
        return "none (one epoch: nothing to choose)"
    if len(data.records) < MIN_SELECTION_ROWS:
        return (f"none (the eval split has {len(data.records)} rows, fewer than the {MIN_SELECTION_ROWS} needed "
                f"to choose an epoch: the last epoch is kept)")
    return "accuracy" if data.kind == "binary" else "pairwise_accuracy"


def train_reward_model(cfg: TrainRMConfig, *, log=print, keep_layer_cache: bool = False) -> dict[str, Any]:
    """Train, evaluate and save a reward model to ``cfg.output_dir``; return the metrics dict.

    ``keep_layer_cache``: keep the frozen-layer memo (:mod:`jprefs.classifiers.layercache`) for the next
    training of the same backbone in this process (variants, seeds); by default it is dropped at the end.

    >>> train_reward_model(load_config(TrainRMConfig, "classifiers/recipes/tiny.yaml"))   # doctest: +SKIP
    """
    import torch
    from accelerate import Accelerator

    from jprefs.runlock import FolderBusyError, run_lock

    if not cfg.output_dir:
        raise ConfigError("no output directory: pass -o DIR (or output_dir=DIR)")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # cpu=True where no GPU exists: a plain Accelerator() under `accelerate launch`/torchrun on a CPU-only
    # machine does not join the launcher's (gloo) process group, so each process would train alone on
    # every batch and all of them would write the output folder (tests/classifiers/test_multiprocess.py).
    accelerator = Accelerator(mixed_precision=_mixed_precision(cfg), gradient_accumulation_steps=cfg.grad_accum,
                              cpu=not torch.cuda.is_available())
    if accelerator.num_processes == 1:
        from jprefs.launch import single_process_note

        note = single_process_note("train-rm")      # `accelerate launch --num_processes N` that started one
        if note:
            log(note)

    def rank0(msg):                         # the main process's lock outcome, on every process
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([msg], from_process=0)[0]

    # One writer per folder (jprefs.runlock): the main process holds OUT's lock for the whole run.
    try:
        with run_lock(out, "jprefs train-rm", is_main=accelerator.is_main_process,
                      broadcast=rank0 if accelerator.num_processes > 1 else None,
                      log=log if accelerator.is_main_process else None):
            return _train_locked(cfg, out, accelerator, log)
    except FolderBusyError:
        if accelerator.num_processes > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()      # leave the group before exiting
        raise
    finally:
        if not keep_layer_cache:
            from jprefs.classifiers.layercache import clear_memo

            clear_memo()


def _train_locked(cfg: TrainRMConfig, out: Path, accelerator, log) -> dict[str, Any]:
    """The run of :func:`train_reward_model`, while this process holds ``out``'s lock."""
    import torch
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader
    from transformers import get_linear_schedule_with_warmup

    from jprefs.classifiers.evaluate import evaluate_and_plot
    from jprefs.classifiers.inputs import model_max_length
    from jprefs.classifiers.reward_model import RewardConfig, RewardModel
    from jprefs.config import save_config
    from jprefs.data.io import atomic_write_json
    from jprefs.progress import progress

    is_main = accelerator.is_main_process
    if not is_main:
        log = lambda *a, **k: None  # noqa: E731
    set_seed(cfg.seed)
    finished = _finished_run(out, cfg) if cfg.resume else None   # read on every process; raises if changed
    accelerator.wait_for_everyone()
    if finished is not None:
        log(f"train-rm: {out} already holds this run, finished {finished['finished_at']}; nothing to do "
            f"(resume=false trains again)")
        return json.loads((out / "metrics.json").read_text(encoding="utf-8")) if is_main else {}
    from jprefs.trackers import check_installed

    check_installed(cfg.report_to)               # a missing tracker package stops the run before any work
    if is_main:
        (out / DONE).unlink(missing_ok=True)     # a new or changed run: the old marker no longer applies
        save_config(cfg, out / "config.yaml")

    # ---- data
    train_data, eval_data, test_data = _load_split(cfg, log)
    rejects = _write_split_files(cfg, out, train_data, eval_data, test_data, write=is_main)

    # ---- model
    from jprefs.classifiers.backbones import load_classifier, resolve_backbone

    # One-time setup that only some runs do (converting e5 into the cache, a first Hub download)
    # runs first; reseeding after it means nothing it draws can move the head init or the dropout
    # masks, so a fresh and a warm cache train the same model (tests/classifiers/test_reproducible.py).
    resolve_backbone(cfg.backbone)
    set_seed(cfg.seed)
    from jprefs.classifiers.losses.odin import HEADS

    num_labels = 2 if cfg.objective == "binary" or cfg.debias == "odin" else 1
    head_names = list(HEADS) if cfg.debias == "odin" else None
    model, tok = load_classifier(cfg.backbone, num_labels,
                                 label_names=head_names or (cfg.label_names if num_labels == 2 else ["reward"]),
                                 pooling=cfg.pooling)
    if cfg.pooling != "cls":
        from jprefs.classifiers.pooling import apply_pooling

        apply_pooling(model, cfg.pooling)
    max_length = model_max_length(model.config, cfg.max_length)
    if max_length < cfg.max_length:
        log(f"max_length {cfg.max_length} capped at the model's position limit: {max_length}")
        from jprefs.classifiers.config import prompt_room_warning

        # the config-time check saw the uncapped max_length: say it now if the cap starves the response
        note = prompt_room_warning(max_length, cfg.max_prompt_length)
        if note and not prompt_room_warning(cfg.max_length, cfg.max_prompt_length):
            log(f"warning: {note} (max_length as capped at the model's position limit)")
    frozen = _freeze_embeddings(model) if (cfg.freeze_embeddings or cfg.train_layers) and not cfg.lora else 0
    if cfg.train_layers and not cfg.lora:
        frozen += _freeze_lower_layers(model, cfg.train_layers)
    if cfg.lora:
        model = _apply_lora(model, cfg)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(f"model: {cfg.backbone} -> {type(model).__name__}, {n_train / 1e6:.2f}M trainable parameters"
        + (f" ({frozen / 1e6:.1f}M frozen)" if frozen else ""))

    # ---- batches
    t0 = time.time()
    items = build_items(train_data, cfg, tok, max_length)
    truncated = sum(items.enc.truncated)
    log(f"encoded {len(items.enc)} sequences in {time.time() - t0:.1f}s "
        f"({truncated} truncated to {max_length} tokens)"
        + (f"; {items.counterfactual} counterfactual pairs ({cfg.counterfactual}) added" if items.counterfactual
           else ""))
    pad_id = tok.pad_token_id
    states = None
    if cfg.train_layers and cfg.cache_frozen_layers and not cfg.lora:
        from jprefs.classifiers.layercache import lower_states

        t0 = time.time()
        states = lower_states(model, items.enc, cfg.train_layers, pad_id, show_progress=is_main)
        log(f"cached the frozen lower layers of {len(states)} sequences in {time.time() - t0:.1f}s; "
            f"training runs the top {cfg.train_layers} layer(s)")
    steps_per_epoch = math.ceil(math.ceil(len(items) / cfg.batch_size) / cfg.grad_accum)
    total_steps = max(1, steps_per_epoch * cfg.epochs)
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    reward_cfg = RewardConfig(objective=cfg.objective, input="response" if _prompt_less(train_data) else "pair",
                              chosen_index=1 if num_labels == 2 else 0, max_length=max_length,
                              max_prompt_length=cfg.max_prompt_length, base_model=cfg.backbone,
                              pooling=cfg.pooling, input_prefix=cfg.input_prefix,
                              labels=head_names or (list(cfg.label_names) if num_labels == 2 else ["reward"]),
                              heads=head_names or [],
                              reward_head=("blend" if cfg.odin_length_blend > 0 else "quality") if head_names else "",
                              length_blend=cfg.odin_length_blend if head_names else 0.0)
    select = _selection_metric(cfg, eval_data)
    if eval_data.records and cfg.epochs > 1 and select.startswith("none"):
        log(f"epoch selection: {select}; eval figures are still reported per epoch")
    best: dict[str, Any] = {"score": -math.inf, "epoch": -1, "state": None}
    history = []

    # ---- loop
    step, start = 0, 0
    ckpt = out / "checkpoint"
    if cfg.resume and (ckpt / "progress.json").exists():
        # resume at an epoch boundary: batches are seeded per epoch, so the run continues exactly
        prog = json.loads((ckpt / "progress.json").read_text(encoding="utf-8"))
        if "config" in prog:        # checkpoints written before configs were recorded resume as they are
            refuse_config_change(prog["config"], cfg, RESUME_IGNORE,
                                 holds=f"{ckpt} is the checkpoint (after epoch {prog['epochs_done']}) of a run",
                                 fix="write to a new folder (-o NEW_DIR), restore the old values to resume, "
                                     "or add resume=false to start over")
        _refuse_data_change(prog.get("data_files"), cfg, f"the checkpoint {ckpt}",
                            "restore the old file to resume, write to a new folder (-o NEW_DIR), or add "
                            "resume=false to start over")
        _load_checkpoint(accelerator, ckpt)
        start, step, history = prog["epochs_done"], prog["step"], prog["history"]
        best = {"score": prog["best_score"] if prog["best_score"] is not None else -math.inf,
                "epoch": prog["best_epoch"], "state": None}
        if (ckpt / "best.safetensors").exists():
            from safetensors.torch import load_file

            best["state"] = load_file(str(ckpt / "best.safetensors"))
        log(f"resuming from {ckpt} after epoch {start}")
    trackers = None
    if is_main and cfg.report_to:
        # report_to: each epoch's history entry also goes to the trackers (a resumed run: the epochs after
        # the checkpoint only, so no step is logged twice); metrics.json's history stays the record
        from jprefs.trackers import Trackers

        trackers = Trackers.open(cfg.report_to, out, config=config_dict(cfg), resume_step=step + 1 if start else None)
    for epoch in range(start, cfg.epochs):
        model.train()
        batches = make_batches(items, cfg.batch_size, seed=cfg.seed, epoch=epoch, group_by_length=cfg.group_by_length)
        loader = accelerator.prepare_data_loader(DataLoader(
            list(range(len(items))), batch_sampler=_BatchList(batches),
            collate_fn=lambda idx: collate_items(items, idx, pad_id, states)))
        bar = progress(total=len(items), desc=f"train-rm epoch {epoch + 1}/{cfg.epochs}", unit="ex",
                       disable=not is_main)
        run_loss, n_loss = 0.0, 0
        head_weight = _head_weight(accelerator.unwrap_model(model)) if cfg.debias == "odin" else None
        for batch in _top_layers(accelerator.unwrap_model(model), cfg.train_layers if states else 0, loader):
            with accelerator.accumulate(model):
                logits = model(**batch["inputs"]).logits                 # (N, C)
                loss = compute_loss(cfg, logits, batch, head_weight)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    if cfg.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    step += 1
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            run_loss += float(loss.detach())
            n_loss += 1
            bar.update(len(batch["groups"]) * accelerator.num_processes)
            bar.set_postfix(loss=f"{run_loss / n_loss:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        bar.close()
        # ---- evaluate, keep the best trainable weights in memory (frozen ones never change)
        unwrapped = accelerator.unwrap_model(model)
        ev = {}
        if is_main and cfg.epochs > 1 and eval_data.records:   # one epoch: nothing to select
            rm = RewardModel(_plain(unwrapped), tok, RewardConfig(**{**reward_cfg.to_dict(), "center": 0.0}))
            rm.frozen_layer_cache = cfg.train_layers if states is not None else 0
            ev = evaluate_and_plot(rm, eval_data, out, name="eval", batch_size=cfg.eval_batch_size, plots=False,
                                   intervals=False)     # picks an epoch: the point estimate is what counts
        entry = {"epoch": epoch + 1, "step": step, "losses/train": run_loss / max(1, n_loss),
                 **{f"eval/{k}": v for k, v in ev.items() if isinstance(v, (int, float))}}
        history.append(entry)
        log(json.dumps(entry, ensure_ascii=False))
        if trackers is not None:
            trackers.log(step, {k: v for k, v in entry.items() if k != "step"})
        if is_main and ev and ev.get(select, -math.inf) > best["score"]:
            best = {"score": ev[select], "epoch": epoch + 1,
                    "state": {n: p.detach().cpu().clone() for n, p in unwrapped.named_parameters() if p.requires_grad}}
        accelerator.wait_for_everyone()
        if epoch + 1 < cfg.epochs:
            _save_checkpoint(accelerator, ckpt, epoch + 1, step, history, best, is_main, cfg)

    if trackers is not None:
        trackers.close()
    if not is_main:
        return {}
    # ---- best checkpoint, centring, save
    unwrapped = accelerator.unwrap_model(model)
    if best["state"] is not None:
        with torch.no_grad():
            params = dict(unwrapped.named_parameters())
            for n, v in best["state"].items():
                params[n].copy_(v)
    final = _plain(unwrapped, merge=True)
    rm = RewardModel(final, tok, reward_cfg)
    rm.frozen_layer_cache = cfg.train_layers if states is not None else 0
    rm.config.center, rm.config.head_centers = _centre(rm, train_data, cfg)
    if best["state"] is None:
        best["epoch"] = cfg.epochs
        why = select[len("none ("):-1] if select.startswith("none (") else select
        log(f"trained {cfg.epochs} epoch(s) and kept the last ({why}); centring constant {rm.config.center:.4f}")
    else:
        log(f"best epoch {best['epoch']} ({select} {best['score']:.4f}); centring constant {rm.config.center:.4f}")
    rm.save_pretrained(out)
    metrics: dict[str, Any] = {
        "objective": cfg.objective, "backbone": cfg.backbone, "best_epoch": best["epoch"], "selected_by": select,
        "data": {"train": len(train_data.records), "eval": len(eval_data.records),
                 "test": len(test_data.records) if test_data else 0, "rows_in": train_data.rows_in,
                 "rejected": len(rejects), "truncated_train_sequences": truncated,
                 # source -> licence -> training rows: what `jprefs push model` derives the model's licence from
                 "sources": _source_licenses(train_data.records, cfg.data_license)},
        "center": rm.config.center, "history": history,
        # what decides bit-for-bit repeats besides config and data: CPU kernels sum in another order
        # with another thread count (classifiers/README.md, "Reproducibility")
        "runtime": {"processes": accelerator.num_processes, "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "device": str(accelerator.device)},
        "eval": evaluate_and_plot(rm, eval_data, out, name="eval", batch_size=cfg.eval_batch_size,
                                  plots=cfg.plots, label_names=cfg.label_names) if eval_data.records else {},
    }
    if test_data is not None:
        metrics["test"] = evaluate_and_plot(rm, test_data, out, name="test", batch_size=cfg.eval_batch_size,
                                            plots=cfg.plots, label_names=cfg.label_names)
    _length_figures(rm, metrics, eval_data, test_data, cfg, out)
    atomic_write_json(out / "metrics.json", metrics)
    if ckpt.exists():
        import shutil

        shutil.rmtree(ckpt, ignore_errors=True)   # the final model supersedes it
    from jprefs.classifiers.card import write_model_card

    write_model_card(out, cfg, metrics, license=train_data.license)
    # the completion marker, written last: a rerun of the same config finds it and does nothing
    atomic_write_json(out / DONE, {"finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"), "config": config_dict(cfg), "data_files": data_fingerprint(cfg)})
    log(f"saved reward model to {out}")
    return metrics


def _source_licenses(records, stated: str = "") -> dict[str, dict[str, int]]:
    """``{source: {licence: rows}}`` of the training records (``stated``: the recipe's data_license, for
    rows that name none; load_rm_data refuses rows that name another)."""
    out: dict[str, dict[str, int]] = {}
    for r in records:
        d = out.setdefault(getattr(r, "source", "") or "(none)", {})
        own = getattr(r, "license", "") or ""
        lic = own if own and own != "unknown" else (stated or own)
        d[lic] = d.get(lic, 0) + 1
    return out


def data_fingerprint(cfg: TrainRMConfig) -> dict[str, dict]:
    """``{role: {file, bytes, sha256}}`` of the run's data files (``data``, ``extra_data[i]``, ``eval_data``,
    ``test_data``; local files only; the file by name, no local path): a finished run or a checkpoint of the
    same config but other data is not this run."""
    from jprefs.data.io import file_sha256

    out = {}
    roles = [("data", cfg.data), *((f"extra_data[{i}]", f) for i, f in enumerate(cfg.extra_data)),
             ("eval_data", cfg.eval_data), ("test_data", cfg.test_data)]
    for role, f in roles:
        p = Path(f) if f else None
        if p is None or not p.is_file():
            continue
        out[role] = {"file": p.name, "bytes": p.stat().st_size, "sha256": file_sha256(p)}
    return out


def _refuse_data_change(saved: dict | None, cfg: TrainRMConfig, what: str, fix: str) -> None:
    """A run recorded with other data files than the config's are now: an error naming the first."""
    if not isinstance(saved, dict):         # written before fingerprints were kept
        return
    now = data_fingerprint(cfg)
    for role, fp in now.items():
        old = saved.get(role)
        if isinstance(old, dict) and old.get("sha256") != fp["sha256"]:
            raise ConfigError(f"{what} was trained on another version of its {role} {fp['file']} "
                              f"({old.get('bytes', 0):,} bytes then, {fp['bytes']:,} now): the same config with "
                              f"changed data is not the same run\n  fix: {fix}")


def _finished_run(out: Path, cfg: TrainRMConfig) -> dict | None:
    """``OUT/done.json`` of a finished run of the same config, or None; raises if the config differs."""
    path = out / DONE
    if not path.is_file():
        return None
    try:
        done = json.loads(path.read_text(encoding="utf-8"))
        saved, _ = done["config"], done["finished_at"]
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is not a completion marker written by jprefs train-rm ({e}).\n"
                          f"  fix: delete it, or add resume=false to train again") from e
    refuse_config_change(saved, cfg, RESUME_IGNORE, holds=f"{out} holds a finished reward model trained",
                         consequence="",
                         fix=f"write to a new folder (-o NEW_DIR), or add resume=false to train again in "
                             f"{out} (its model is replaced); to score another test file use `jprefs score`")
    _refuse_data_change(done.get("data_files"), cfg, f"the finished reward model in {out}",
                        f"write to a new folder (-o NEW_DIR), or add resume=false to train again in {out}")
    if not (out / "metrics.json").is_file():
        raise ConfigError(f"{path} says the run finished, but {out / 'metrics.json'} is missing.\n"
                          f"  fix: add resume=false to train again")
    return done


def _save_checkpoint(accelerator, ckpt: Path, epochs_done: int, step: int, history: list, best: dict,
                     is_main: bool, cfg: TrainRMConfig) -> None:
    """Everything needed to resume after ``epochs_done`` epochs; progress.json is written last."""
    from safetensors.torch import save_file

    from jprefs.data.io import atomic_write_json

    accelerator.save_state(str(ckpt))
    if is_main:
        if best["state"] is not None:
            save_file({k: v.contiguous() for k, v in best["state"].items()}, str(ckpt / "best.safetensors"))
        atomic_write_json(ckpt / "progress.json", {
            "epochs_done": epochs_done, "step": step, "history": history, "best_epoch": best["epoch"],
            "best_score": best["score"] if math.isfinite(best["score"]) else None, "config": config_dict(cfg),
            "data_files": data_fingerprint(cfg)})


def _load_checkpoint(accelerator, ckpt: Path) -> None:
    """``accelerator.load_state(ckpt)`` with nothing unpickled that could run code.

    ``save_state`` writes the model as safetensors but the optimizer, scheduler and RNG states
    as torch pickles (``optimizer.bin``, ``scheduler.bin``, ``random_states_N.pkl``). They are
    read only here, on resume, from this run's own ``OUT/checkpoint``, and only through torch's
    ``weights_only`` loader (accelerate >= 1.1 passes ``weights_only=True`` with numpy arrays as
    the one extra type allowed): tensors, numbers, strings and containers, no code. A file that
    loader refuses (not written by train-rm, or corrupt) stops the resume with its name; the RNG
    file is checked first because accelerate would skip it silently, and the resume would then
    no longer repeat the uninterrupted run.
    """
    import pickle

    from accelerate.utils import load

    from jprefs.errors import JprefsError

    def refuse(path, e):
        lines = [x.strip() for x in str(e).splitlines() if x.strip()]
        why = next((x for x in lines if "Unsupported global" in x or "WeightsUnpickler" in x), lines[0] if lines else "")
        return JprefsError(f"cannot resume from {ckpt}: {path} does not load with torch's weights_only loader "
                           f"({type(e).__name__}: {why}); it was not written by jprefs train-rm or is damaged, "
                           f"and is not unpickled.\n  fix: add resume=false to start over (or delete {ckpt} "
                           f"and rerun)")

    # the small state files first, by name (accelerate skips an unreadable RNG file silently)
    small = [ckpt / f"random_states_{accelerator.process_index}.pkl", *sorted(ckpt.glob("scheduler*.bin")),
             *sorted(ckpt.glob("scaler.pt"))]
    for path in small:
        try:
            load(path, weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
            raise refuse(path, e) from e
    try:
        accelerator.load_state(str(ckpt), load_kwargs={"weights_only": True})
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise refuse(ckpt / "optimizer.bin", e) from e   # the one large state file not checked above


def _top_layers(model, keep: int, loader):
    """Iterate ``loader`` with the model cut to its top ``keep`` layers (0: the whole model), restored after."""
    if not keep:
        yield from loader
        return
    from jprefs.classifiers.layercache import top_only

    with top_only(model, keep):
        yield from loader


def _head_weight(model):
    """The ``(2, H)`` weight of the final linear layer of a two-output head (ODIN: quality, length)."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for name in ("classifier", "score"):
        mod = getattr(base, name, None)
        # LoRA: peft wraps the trained head in a ModulesToSaveWrapper; its trained copy is the one to read
        saved = getattr(mod, "modules_to_save", None)
        mod = saved["default"] if saved is not None and "default" in saved else mod
        mod = getattr(mod, "out_proj", mod)           # XLM-R: classifier.dense -> classifier.out_proj
        if isinstance(mod, torch.nn.Linear) and mod.out_features == 2:
            return mod.weight
    raise ConfigError(f"debias=odin: cannot find the two-output linear head of {type(base).__name__}")


def _prompt_less(data) -> bool:
    return data.kind == "binary" and all(getattr(r, "prompt", None) is None for r in data.records)


def _plain(model, merge: bool = False):
    """The transformers model under a peft wrapper (merged into the base weights when ``merge``)."""
    if hasattr(model, "merge_and_unload") and merge:
        return model.merge_and_unload()
    if hasattr(model, "get_base_model") and not merge:
        return model   # a PeftModel forwards like the base model; keep adapters live for evaluation
    return model


def _length_figures(rm, metrics: dict, eval_data, test_data, cfg: TrainRMConfig, out: Path) -> None:
    """Per-head and per-file figures into ``metrics``; the length sensitivity into ``jprefs_reward.json``.

    Multi-head models (ODIN) get ``eval_heads`` / ``test_heads``: the pairwise figures of every head
    (quality, length, full). Several training files get ``eval_by_file``: each file's held-out pairs
    on their own. ``RewardConfig.length_stats`` (what :attr:`RewardModel.length_sensitivity` and the
    card show) comes from the eval split, else the test file.
    """
    from jprefs.classifiers.evaluate import evaluate_heads, evaluate_pairs, length_stats, pair_logits
    from jprefs.classifiers.reward_model import REWARD_CONFIG_NAME
    from jprefs.data.io import atomic_write_json

    for name, data in (("eval", eval_data), ("test", test_data)):
        if data is None or not data.records or data.kind != "records":
            continue
        pairs = data.pairs()
        if rm.heads:
            metrics[f"{name}_heads"] = evaluate_heads(rm, pairs, batch_size=cfg.eval_batch_size)
        if len(data.parts) > 1:
            by_file = {}
            for label, part in data.parts:
                pp = part.pairs()
                logits = pair_logits(rm, pp, batch_size=cfg.eval_batch_size)     # one pass for every head
                by_file[label] = {"all": evaluate_pairs(rm, pp, logits=logits)[0],
                                  **({"heads": evaluate_heads(rm, pp, logits=logits)} if rm.heads else {})}
            metrics[f"{name}_by_file"] = by_file
    source = "eval" if metrics.get("eval", {}).get("pairs") else "test" if metrics.get("test", {}).get("pairs") \
        else None
    if source is None:
        return
    stats = {h: length_stats(m) for h, m in metrics[f"{source}_heads"].items()} if rm.heads \
        else {"reward": length_stats(metrics[source])}
    rm.config.length_stats = {**stats, "measured_on": f"{source} split ({metrics[source]['pairs']} pairs)"}
    atomic_write_json(out / REWARD_CONFIG_NAME, rm.config.to_dict())
    metrics["length_sensitivity"] = rm.config.length_stats


def _centre(rm, data, cfg: TrainRMConfig) -> tuple[float, dict[str, float]]:
    """Mean reward over (a seeded sample of) the training responses: subtracting it centres rewards on 0.

    Returns the default reward's constant and, for a multi-head model, every head's."""
    import numpy as np

    if data.kind == "binary":
        ex = data.binary()
        prompts, responses = [e.prompt for e in ex], [e.response for e in ex]
    else:
        pairs = data.pairs()
        prompts = [p.prompt for p in pairs] * 2
        responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    idx = list(range(len(responses)))
    if cfg.center_samples and len(idx) > cfg.center_samples:
        idx = sorted(random.Random(cfg.seed).sample(idx, cfg.center_samples))
    saved = rm.config.center, rm.config.head_centers
    rm.config.center, rm.config.head_centers = 0.0, {}
    logits = rm.logits([prompts[i] for i in idx], [responses[i] for i in idx], batch_size=cfg.eval_batch_size)
    centre = float(np.mean(rm.rewards_from_logits(logits)))
    heads = {h: float(np.mean(rm.rewards_from_logits(logits, head=h))) for h in rm.heads}
    rm.config.center, rm.config.head_centers = saved
    return centre, heads
