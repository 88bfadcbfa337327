"""How a sequence classifier pools its token states: the backbone's own head (``cls``) or ``mean``.

``pooling: cls`` (the default) leaves the transformers model as it is: a BERT
classifier reads ``[CLS]`` through its pooler (``dense`` + ``tanh``), an XLM-R one
reads ``<s>``. Sentence-embedding encoders such as e5 were trained with MEAN
pooling and ship no pooler, so their ``[CLS]`` pooler starts random;
``pooling: mean`` replaces the pooler of a BERT-style model with the mean of the
last hidden states over the real (unpadded) tokens, which feeds the dropout and
the classifier unchanged. ``jprefs_reward.json`` records ``pooling: mean`` and
:class:`~jprefs.classifiers.reward_model.RewardModel` re-applies it on load.

Plain transformers has no mean-pooling head for BERT-style models (its
``BertForSequenceClassification`` always reads ``[CLS]`` through the pooler), so
a mean-pooled model cannot score correctly outside jprefs without remote code.
It must not score *randomly* either (a plain load would build a fresh random
pooler on every load), so a saved mean-pooled folder refuses plain loading:

- ``config.json`` says ``model_type: jprefs-mean-pooled`` (the real one is kept
  under ``jprefs_base_model_type``): ``AutoConfig``, hence every
  ``AutoModel*.from_pretrained``, ``pipeline(...)``, sentence-transformers and
  trl's ``reward_funcs="PATH"``, raises ``does not recognize this architecture``;
- the pooler weights are saved as NaN: an explicit
  ``BertForSequenceClassification.from_pretrained(PATH)`` (which only warns about
  the model type) scores NaN, never a plausible random number.

:func:`~jprefs.classifiers.reward_model.RewardModel.from_pretrained` undoes the
marker with ``trust_remote_code=False`` and replaces the NaN pooler by the mean.

Padding is ignored: the attention mask of each forward call is handed to the
pooler by a pre-forward hook on the encoder; without a mask (no padding) every
token counts.

>>> model = apply_pooling(model, "mean")          # doctest: +SKIP
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

from jprefs.errors import ConfigError

POOLINGS = ("cls", "mean")
# config.json of a saved mean-pooled model: a model type no transformers release knows, so plain loading fails
MEAN_MODEL_TYPE = "jprefs-mean-pooled"
BASE_TYPE_KEY = "jprefs_base_model_type"          # the backbone's real model_type (bert, xlm-roberta, ...)
NOTE_KEY = "jprefs_note"
NOTE = ("A mean-pooled jprefs reward model: transformers has no head that pools this way, so model_type is "
        "set to refuse plain loading (it would score with a random [CLS] pooler) and the pooler weights are NaN. "
        "Load it with: from jprefs import RewardModel; RewardModel.from_pretrained(PATH)")


def _mean_pooler_class():
    import torch

    class MeanPooler(torch.nn.Module):
        """Masked mean of ``(B, T, H)`` hidden states -> ``(B, H)``; the mask is set per call by a hook."""

        def __init__(self):
            super().__init__()
            self.mask = None                     # (B, T) attention mask of the current forward call

        def forward(self, hidden_states):
            m = self.mask
            if m is None:
                return hidden_states.mean(dim=1)
            m = m[:, :hidden_states.shape[1]].unsqueeze(-1).to(hidden_states.dtype)     # (B, T, 1)
            return (hidden_states * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)

    return MeanPooler


def is_mean_pooled(model) -> bool:
    return any(type(m).__name__ == "MeanPooler" for m in model.modules())


def apply_pooling(model, pooling: str):
    """Make ``model`` pool with ``pooling`` (in place; idempotent); returns ``model``."""
    if pooling not in POOLINGS:
        raise ConfigError(f"config key 'pooling': {pooling!r} is not one of {list(POOLINGS)}")
    if pooling == "cls" or is_mean_pooled(model):
        return model
    encoder = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if encoder is None or not hasattr(encoder, "pooler"):
        raise ConfigError(f"pooling=mean needs a BERT-style backbone with a pooler (e5, BERT); "
                          f"{type(model).__name__} has none. Use pooling=cls")
    encoder.pooler = _mean_pooler_class()()

    # The hooks reach the pooler through the encoder they are called on, not a captured object, so
    # a copy of the model (copy.deepcopy: a PPO reference, a bf16 twin) masks its own pooler.
    def set_mask(module, args, kwargs):
        mask = kwargs.get("attention_mask")
        if mask is None and len(args) > 1:
            mask = args[1]
        module.pooler.mask = mask

    def clear_mask(module, args, output):
        module.pooler.mask = None

    encoder.register_forward_pre_hook(set_mask, with_kwargs=True)
    encoder.register_forward_hook(clear_mask)
    return model


@contextmanager
def nan_pooler(model):
    """While saving a mean-pooled ``model``: a ``[CLS]`` pooler of NaN weights in the mean pooler's place.

    ``save_pretrained`` then writes ``pooler.dense.weight`` ``(H, H)`` and ``.bias`` ``(H,)``
    as NaN, so a plain class that reads ``[CLS]`` through them scores NaN (not random).
    """
    import torch

    encoder = getattr(model, model.base_model_prefix)
    mean = encoder.pooler
    ref = next(model.parameters())
    h = int(model.config.hidden_size)
    stub = torch.nn.Module()
    stub.dense = torch.nn.Linear(h, h, device=ref.device, dtype=ref.dtype)
    with torch.no_grad():
        stub.dense.weight.fill_(float("nan"))
        stub.dense.bias.fill_(float("nan"))
    encoder.pooler = stub
    try:
        yield model
    finally:
        encoder.pooler = mean


def refuse_plain_loading(model_dir) -> None:
    """Rewrite ``model_dir/config.json`` so transformers' Auto classes refuse it (see the module docstring)."""
    from jprefs.data.io import atomic_write_text

    path = Path(model_dir) / "config.json"
    d = json.loads(path.read_text(encoding="utf-8"))
    if d.get("model_type") != MEAN_MODEL_TYPE:
        d[BASE_TYPE_KEY] = d["model_type"]
        d["model_type"] = MEAN_MODEL_TYPE
    d[NOTE_KEY] = NOTE
    atomic_write_text(path, json.dumps(d, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def saved_model_config(src: str):
    """The transformers config of a saved mean-pooled model (marker undone), and whether it had the marker.

    Folders saved before the marker existed have their real ``model_type`` (and no
    pooler weights); they load as they are and the caller warns.
    """
    from transformers import CONFIG_MAPPING, PretrainedConfig

    d, _ = PretrainedConfig.get_config_dict(src)
    d = dict(d)
    marked = d.get("model_type") == MEAN_MODEL_TYPE
    if marked:
        d["model_type"] = d.pop(BASE_TYPE_KEY)
    d.pop(NOTE_KEY, None)
    return CONFIG_MAPPING[d["model_type"]].from_dict(d), marked
