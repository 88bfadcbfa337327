"""How a sequence classifier pools its token states: the backbone's own head (``cls``) or ``mean``.

``pooling: cls`` (the default) leaves the transformers model as it is: a BERT
classifier reads ``[CLS]`` through its pooler (``dense`` + ``tanh``), an XLM-R one
reads ``<s>``. Sentence-embedding encoders such as e5 were trained with MEAN
pooling and ship no pooler, so their ``[CLS]`` pooler starts random;
``pooling: mean`` replaces the pooler of a BERT-style model with the mean of the
last hidden states over the real (unpadded) tokens, which feeds the dropout and
the classifier unchanged. The mean pooler has no parameters, so a saved model
is a plain transformers checkpoint; ``jprefs_reward.json`` records
``pooling: mean`` and :class:`~jprefs.classifiers.reward_model.RewardModel`
re-applies it on load (a plain ``AutoModelForSequenceClassification`` load
would read ``[CLS]`` through a fresh random pooler instead).

Padding is ignored: the attention mask of each forward call is handed to the
pooler by a pre-forward hook on the encoder; without a mask (no padding) every
token counts.

>>> model = apply_pooling(model, "mean")          # doctest: +SKIP
"""

from __future__ import annotations

from jprefs.errors import ConfigError

POOLINGS = ("cls", "mean")


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
