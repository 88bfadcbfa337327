"""Frozen-layer cache: with ``train_layers=N`` the lower layers never change, so their output is
computed once per training sequence and every epoch runs only the top N layers.

``train_layers=N`` freezes the embeddings and all but the top N encoder layers. Their output for a
given sequence is then the same in every epoch, so :func:`lower_states` runs them once over the
training sequences (under ``inference_mode``, in length-sorted batches) and keeps each sequence's
``(T_i, H)`` hidden states; :func:`top_only` swaps, for the duration of a with-block, the encoder's
layer list for its top N layers and the embedding module for a pass-through, so
``model(inputs_embeds=STATES, attention_mask=MASK)`` runs exactly the top of the network (attention
mask, pooler and head as usual). A step then costs the top N layers' forward and backward pass
instead of a forward pass through all 12 layers plus the top N's backward (BENCHMARKS.md has the
measured ratio).

What changes against recomputing: the lower layers run once in eval mode, so they apply no dropout
(the top layers, pooler and head still do); nothing else. :func:`top_only` restores the full model
on exit (evaluation and saving always see the whole network), and
``tests/classifiers/test_layercache.py`` checks that, in eval mode, cached + top layers give the
logits of the full model.

BERT-style encoders (BERT, e5, XLM-R / bge-m3): ``model.<base>.embeddings`` and
``model.<base>.encoder.layer``. Other layouts raise a ConfigError naming ``cache_frozen_layers=false``.

Example::

    states = lower_states(model, enc, keep=4, pad_id=0)
    with top_only(model, keep=4):
        logits = model(inputs_embeds=pad_states(states, idx), attention_mask=mask).logits
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

from jprefs.errors import ConfigError


def _parts(model):
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if base is None and hasattr(model, "embeddings") and hasattr(model, "encoder"):
        base = model                      # the encoder itself (AutoModel: the probe's embedder)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if base is None or getattr(base, "embeddings", None) is None or layers is None:
        raise ConfigError(f"cache_frozen_layers: {type(model).__name__} is not a BERT-style encoder "
                          f"(embeddings + encoder.layer); set cache_frozen_layers=false")
    return base, layers


def _passthrough_class():
    import torch

    class PassThroughEmbeddings(torch.nn.Module):
        """Stands in for the embedding module: the cached hidden states come in as ``inputs_embeds``."""

        def forward(self, input_ids=None, inputs_embeds=None, **kwargs):
            if inputs_embeds is None:
                raise RuntimeError("top_only(): call the model with inputs_embeds=<cached lower-layer states>")
            return inputs_embeds

    return PassThroughEmbeddings


@contextmanager
def top_only(model, keep: int):
    """Within the block, ``model`` is its top ``keep`` layers fed by ``inputs_embeds``; restored on exit."""
    import torch

    base, layers = _parts(model)
    if not 0 < keep <= len(layers):
        raise ConfigError(f"config key 'train_layers': must be between 1 and {len(layers)}, got {keep}")
    emb, full = base.embeddings, base.encoder.layer
    base.embeddings = _passthrough_class()()
    base.encoder.layer = torch.nn.ModuleList(list(full)[len(full) - keep:])
    try:
        yield model
    finally:
        base.embeddings, base.encoder.layer = emb, full


@contextmanager
def _lower_only(model, keep: int):
    import torch

    base, layers = _parts(model)
    full = base.encoder.layer
    base.encoder.layer = torch.nn.ModuleList(list(full)[:len(full) - keep])
    try:
        yield base
    finally:
        base.encoder.layer = full


# In-process memo of the last backbone's cached states, by token ids: several trainings of one
# backbone in one process (bench/rm_debias.py's variants, a seed ensemble) compute each sequence once.
_MEMO: dict[str, Any] = {"key": None, "states": {}}


def clear_memo() -> None:
    """Drop the memoised states (train-rm does at the end of a run unless asked to keep them)."""
    _MEMO.update(key=None, states={})


def _model_key(model, keep: int) -> str:
    """Which frozen lower network produced a state: its class, its number of layers and a checksum of its
    weights (not the model's name: a saved reward model and its backbone share frozen lower layers)."""
    import torch

    base, layers = _parts(model)
    lower = [base.embeddings, *list(layers)[:len(layers) - keep]]
    with torch.no_grad():
        check = sum(float(p.double().sum()) + float(p.double().abs().sum()) * (i + 1)
                    for i, p in enumerate(q for m in lower for q in m.parameters()))
    return f"{type(base).__name__}|{len(lower) - 1}|{check!r}"


def lower_states(model, enc: Any, keep: int, pad_id: int, *, max_tokens: int = 4096, batch_size: int = 32,
                 show_progress: bool = True, memo: bool = True) -> list:
    """The output of everything below the top ``keep`` layers, one ``(T_i, H)`` float tensor per sequence.

    With ``memo`` the states of the last lower network seen in this process are kept by token ids
    (and token types), so a second training of the same backbone reuses them."""
    import torch

    from jprefs.classifiers.inputs import collate, length_batches

    key = _model_key(model, keep) if memo else None
    if key != _MEMO["key"]:
        _MEMO.update(key=key, states={})
    known = _MEMO["states"] if memo else {}

    def seq_key(i):
        types = enc.token_type_ids[i] if enc.token_type_ids is not None else ()
        return (tuple(enc.input_ids[i]), tuple(types))

    out: list = [known.get(seq_key(i)) for i in range(len(enc))]
    todo = [i for i, x in enumerate(out) if x is None]
    was_training = model.training
    model.eval()
    bar = None
    if show_progress and todo:
        from jprefs.progress import progress

        bar = progress(total=len(todo), desc="cache frozen layers", unit="seq")
    dev = next(model.parameters()).device
    try:
        with torch.inference_mode(), _lower_only(model, keep) as base:
            for b in length_batches([enc.lengths[i] for i in todo], batch_size=batch_size, max_tokens=max_tokens):
                idx = [todo[j] for j in b]
                batch = {k: v.to(dev) for k, v in collate(enc, idx, pad_id).items()}
                h = base(**batch).last_hidden_state.float().cpu()          # (B, T, H)
                for row, i in enumerate(idx):
                    out[i] = h[row, :len(enc.input_ids[i])].clone()
                    if memo:
                        known[seq_key(i)] = out[i]
                if bar is not None:
                    bar.update(len(idx))
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    return out


def pad_states(states: list, seqs: list[int]):
    """``(N, T, H)`` zero-padded hidden states and the ``(N, T)`` attention mask of sequences ``seqs``."""
    import torch

    T = max(states[i].shape[0] for i in seqs)
    H = states[seqs[0]].shape[1]
    x = torch.zeros(len(seqs), T, H)
    mask = torch.zeros(len(seqs), T, dtype=torch.long)
    for row, i in enumerate(seqs):
        n = states[i].shape[0]
        x[row, :n] = states[i]
        mask[row, :n] = 1
    return x, mask
