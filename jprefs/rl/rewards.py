"""Reward sources: ``(prompts: list[str], responses: list[str]) -> list[float]``.

- ``rm``: a jprefs reward model (local directory or Hub id), scored through the
  same :class:`jprefs.classifiers.reward_model.RewardModel` API that users import.
- ``classifier``: any transformers text-classification model; the reward is
  ``logit[label] - logit[other]`` for a two-label model (never "logit 0": that is
  the rejected class in the chosen=1 / rejected=0 convention), and
  ``logit[label] - logsumexp(other logits)`` with more labels. Label 1 is taken for the generic
  ``LABEL_0`` / ``LABEL_1`` only; named labels are read by name (``{0: "good", 1: "bad"}``
  rewards ``good``), see :func:`classifier_reward`.
- ``callable``: ``module:function`` with the signature above.
- ``labels``: rewards stored in the dataset (ILQL only; handled by the loader).

:func:`lexicon_sentiment` is a small programmatic reward used by the tiny CPU
recipes: positive minus negative lexicon hits.

Example::

    fn = make_reward("callable", "jprefs.rl.rewards:lexicon_sentiment")
    fn(["今日は"], ["とても楽しかった。"])   # -> [1.0]
"""

from __future__ import annotations

import importlib
from typing import Callable, Sequence

from jprefs.errors import ConfigError

RewardFn = Callable[[Sequence[str], Sequence[str]], list]


def finite_rewards(values, responses: Sequence[str], source: str) -> list[float]:
    """``values`` as floats, or a :class:`DataError` when any is not a finite number: a NaN reward turns
    every loss NaN (the weights too, before anything fails), an inf one is clipped to the reward clip
    without a word, and trl's multi-reward sum (nansum) reads NaN as 0. Names how many, which and
    what they were, with the responses they scored.

    >>> finite_rewards([1, 2.5], ["a", "b"], "r")
    [1.0, 2.5]
    """
    import math

    from jprefs.errors import DataError

    out, bad = [], []
    for i, v in enumerate(values):
        try:
            x = float(v)
        except (TypeError, ValueError):
            x = None
        if x is None or not math.isfinite(x):
            bad.append(i)
        out.append(x)
    if bad:
        shown = "; ".join(f"#{i}: {values[i]!r} for {str(responses[i])[:60]!r}" for i in bad[:3])
        raise DataError(f"reward {source} returned {len(bad)} non-finite or non-numeric value(s) among "
                        f"{len(out)} ({shown}{'; ...' if len(bad) > 3 else ''})",
                        fix="make the reward return a finite float for every response (an empty or degenerate "
                            "response included); a reward model in fp16 can overflow: score it in fp32 or bf16")
    return out


def checked_reward(fn: RewardFn | None, source: str = "function") -> RewardFn | None:
    """``fn`` with every value it returns checked by :func:`finite_rewards` (None stays None): what the
    training loops wrap a reward in, for training and evaluation scores alike."""
    if fn is None or getattr(fn, "_jprefs_checked", False):
        return fn

    def reward(prompts, responses):
        return finite_rewards(fn(prompts, responses), responses, source)

    reward._jprefs_checked = True
    reward.__name__ = getattr(fn, "__name__", "reward")
    return reward


# Words of the bundled tiny corpus (jprefs/resources/rl/ja_tiny.jsonl), matched as substrings.
POSITIVE = ("楽し", "素晴らし", "温か", "最高", "笑顔", "嬉し", "明る", "良か", "幸せ", "気持ちがいい", "また行きたい")
NEGATIVE = ("残念", "ひど", "悲し", "最悪", "退屈", "つまらな", "嫌", "期待外れ", "寂し", "つら", "腹が立", "たくない")


def lexicon_sentiment(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    """Positive minus negative lexicon hits in each response (prompt ignored).

    >>> lexicon_sentiment([""], ["とても楽しかった。でも残念だった。"])
    [0.0]
    """
    return [float(sum(r.count(w) for w in POSITIVE) - sum(r.count(w) for w in NEGATIVE)) for r in responses]


def _join(prompt: str | None, response: str) -> str:
    return response if not prompt else prompt + response


def load_callable(spec: str) -> RewardFn:
    """``module:function`` -> the function."""
    if ":" not in spec:
        raise ConfigError(f"reward_model={spec!r} is not of the form module:function "
                          "(e.g. jprefs.rl.rewards:lexicon_sentiment)")
    mod, name = spec.split(":", 1)
    try:
        fn = getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"cannot import reward callable {spec!r}: {e}\n  fix: check the module is importable "
                          "(on PYTHONPATH) and defines that function") from e
    if not callable(fn):
        raise ConfigError(f"reward {spec!r} is not callable")
    return fn


def _refuse_mean_pooled(path: str) -> None:
    """A mean-pooled jprefs model has no transformers head that pools its way (jprefs.classifiers.pooling)."""
    import json
    from pathlib import Path

    cfg = Path(path) / "jprefs_reward.json"
    if cfg.is_file() and json.loads(cfg.read_text(encoding="utf-8")).get("pooling") == "mean":
        raise ConfigError(f"{path} is a mean-pooled jprefs reward model: a plain transformers classifier would "
                          f"read it through a random [CLS] pooler\n  fix: use reward_type=rm (it loads the model "
                          f"with jprefs' RewardModel)")


def _classifier_label(path: str, label: str | None, model_config) -> int:
    """The index of the reward label of a transformers classifier (see :func:`classifier_reward`)."""
    from jprefs.classifiers.reward_model import default_label, generic_labels, label_names

    n = int(model_config.num_labels)
    fix = "reward_label=NAME (a label name, or an index)"
    if n < 2:
        raise ConfigError(f"{path} has one output; use it as a jprefs reward model (reward_type=rm)")
    label2id = {str(k): int(v) for k, v in (model_config.label2id or {}).items()}
    if label in (None, ""):                 # not named: what RewardModel does with no label
        try:
            return default_label(model_config, fix=fix)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    if label in label2id:
        return label2id[label]
    if not (str(label).lstrip("-").isdigit() and -n <= int(label) < n):
        raise ConfigError(f"reward_label={label!r} is not a label of {path} (labels: {sorted(label2id)}, "
                          f"or an index 0..{n - 1})")
    idx = int(label) % n
    names = label_names(model_config)
    if str(label) == "1" and n == 2 and not generic_labels(names, n):
        # "1" is every caller's default (jprefs rl, eval policy --reward-label, data rm-pairs), so it cannot
        # be told from a deliberate 1: with named labels it stands only when label 1 is the good-named one
        try:
            auto = default_label(model_config, fix=fix)
        except ConfigError:
            auto = None
        if auto != 1:
            shown = {i: names.get(i, f"LABEL_{i}") for i in range(n)}
            guess = f"reward_label={shown[auto]} (the good-named label)" if auto is not None else \
                f"reward_label={shown[0]} or reward_label={shown[1]}"
            raise ConfigError(f"reward_label=1 (the default) would reward label {shown[1]!r} of {path}, whose "
                              f"labels are {shown}: label 1 is not assumed to be the good one when the labels "
                              f"have names\n  fix: name the reward label: {guess}"
                              + (f", or reward_label={shown[1]} if {shown[1]!r} is the reward you want"
                                 if auto is not None else ""))
    return idx


def classifier_reward(path: str, label: str | None = None, *, device=None, batch_size: int = 32,
                      trust_remote_code: bool = False, score_prompt: bool = False) -> RewardFn:
    """Reward = logit margin of ``label`` of a transformers sequence-classification model.

    ``label`` is a label name (``config.label2id``) or an index. Unnamed (None or ``""``), it is
    chosen as :class:`~jprefs.classifiers.reward_model.RewardModel` chooses it: label 1 of the generic
    ``LABEL_0`` / ``LABEL_1``, else the label with a good name (``positive``, ``chosen``, ``good``, ...:
    ``jprefs.classifiers.reward_model.POSITIVE_LABELS``), else an error listing the labels. ``"1"``,
    every config's default, is accepted on a model with named labels only when label 1 is that
    good-named one: ``{0: "positive", 1: "negative"}`` with ``reward_label=1`` is an error, not a
    reward for negative text (name the label, ``reward_label=negative``, if that is what you want).
    The text scored is the response alone, or prompt + response when ``score_prompt`` is true.
    """
    import os

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if os.path.exists(path):
        from jprefs.modeldir import check_model_dir

        check_model_dir(path, want="reward model")
        _refuse_mean_pooled(path)
    from jprefs.hub import hub_model

    try:
        with hub_model(path):  # a Hub id offline and not cached: one line naming it
            tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True,
                                                                       trust_remote_code=trust_remote_code)
    except OSError as e:
        raise ConfigError(f"cannot load reward classifier {path!r}: {e}\n  fix: give a local model folder "
                          "(config.json + model.safetensors) or a reachable Hub id") from e
    model.eval()
    if device is not None:
        model.to(device)
    idx = _classifier_label(path, label, model.config)

    def fn(prompts, responses):
        out: list[float] = []
        texts = [_join(p if score_prompt else None, r) for p, r in zip(prompts, responses)]
        dev = next(model.parameters()).device
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                enc = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=512,
                          return_tensors="pt").to(dev)
                logits = model(**enc).logits.float()                               # (b, n)
                others = torch.cat([logits[:, :idx], logits[:, idx + 1:]], dim=1)  # (b, n-1)
                out += (logits[:, idx] - torch.logsumexp(others, dim=1)).tolist()
        return out

    return fn


def length_warning(rm, path: str, head: str | None = None) -> str | None:
    """A warning when the reward model's own length figures (saved by train-rm) say it mostly measures
    length: it rises with length and is right on fewer than 35% of the pairs whose better answer is
    the shorter one. A policy trained against it learns to write longer, not better."""
    ls = rm.length_stats_for(head)      # the figures of the scorer that gives the reward: model, ensemble or stack
    if not ls:
        return None
    lc, slope = ls.get("length_controlled_accuracy"), ls.get("per_100_chars")
    if lc is None or slope is None or not (lc < 0.35 and slope > 0):
        return None
    fix = ("use its quality head (reward_head=quality)" if "quality" in (rm.heads or [])
           and (head or (rm.heads or [""])[0]) != "quality"
           else "train a length-debiased one (jprefs train-rm classifiers/recipes/e5-small-ja-debiased.yaml)")
    return (f"reward model {path}{f' (head {head})' if head else ''} follows length: +{slope:.3f} reward per 100 "
            f"characters, right on {lc:.0%} of held-out pairs whose better answer is the shorter one "
            f"({ls['measured_on']}); a policy "
            f"trained against it learns to write longer. fix: {fix}, and compare the policy with "
            f"`jprefs eval policy --judge`")


def rm_reward(path: str, *, device=None, batch_size: int = 32, score_prompt: bool = True,
              head: str | None = None) -> RewardFn:
    """A jprefs :class:`RewardModel` (issue 4) as a reward function; ``head`` picks one head of a
    multi-head model (ODIN: ``quality``, the default, ``full`` or ``length``)."""
    try:
        from jprefs.classifiers.reward_model import RewardModel
    except ImportError as e:
        raise ConfigError("reward_type=rm needs jprefs.classifiers.reward_model.RewardModel, which this "
                          f"installation lacks ({e}); fix: use reward_type=classifier with a transformers "
                          "classifier, or update jprefs") from e
    rm = RewardModel.from_pretrained(path, device=device)
    rm._head(head or None)          # an unknown head is a ConfigError now, not at the first step
    note = length_warning(rm, path, head or None)
    if note:
        import warnings

        warnings.warn(note, UserWarning, stacklevel=2)

    def fn(prompts, responses):
        ps = list(prompts) if score_prompt and any(prompts) else None
        return [float(x) for x in rm.score(ps, list(responses), batch_size=batch_size, head=head or None)]

    return fn


def make_reward(reward_type: str, reward_model: str, *, label: str | None = None, device=None, batch_size: int = 32,
                sign: float = 1.0, trust_remote_code: bool = False, reward_input: str = "pair",
                head: str = "") -> RewardFn:
    """Build the reward function a config asks for; ``sign=-1`` negates it.

    ``head``: the head of a multi-head jprefs reward model (``reward_type=rm``; default: its own).
    ``label``: the reward label of a ``classifier`` (None: chosen from its label names, see
    :func:`classifier_reward`).
    ``reward_input``: ``pair`` passes (prompt, response); ``concat`` scores the text
    prompt + response with no prompt (a sentence the prompt begins); ``response``
    scores the response alone.

    >>> fn = make_reward("callable", "jprefs.rl.rewards:lexicon_sentiment", sign=-1.0)
    >>> fn([""], ["最高だった。"])
    [-1.0]
    """
    if reward_type == "callable":
        base = load_callable(reward_model)
    elif reward_type == "classifier":
        base = classifier_reward(reward_model, label, device=device, batch_size=batch_size,
                                 trust_remote_code=trust_remote_code)
    elif reward_type == "rm":
        base = rm_reward(reward_model, device=device, batch_size=batch_size, head=head or None)
    else:
        raise ConfigError(f"reward_type={reward_type!r} cannot score new text; use rm, classifier or callable")

    def reward(prompts, responses):
        if len(prompts) != len(responses):
            raise ValueError(f"reward: {len(prompts)} prompts but {len(responses)} responses")
        ps, rs = list(prompts), list(responses)
        if reward_input == "concat":
            ps, rs = [""] * len(rs), [p + r for p, r in zip(ps, rs)]
        elif reward_input == "response":
            ps = [""] * len(rs)
        elif reward_input != "pair":
            raise ConfigError(f"reward_input={reward_input!r} is not one of pair, concat, response")
        vals = list(base(ps, rs))
        if len(vals) != len(responses):
            raise ValueError(f"reward {reward_model!r} returned {len(vals)} values for {len(responses)} responses")
        return [sign * v for v in finite_rewards(vals, responses, repr(reward_model))]

    reward._jprefs_checked = True           # checked_reward leaves it as it is
    return reward
