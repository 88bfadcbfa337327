"""``RewardModel``: score (prompt, response) pairs with a jprefs or plain Hugging Face classifier.

The scoring API comes first and is one call that returns a numpy array::

    from jprefs import RewardModel
    rm = RewardModel.from_pretrained("out/chabsa-rm")            # a jprefs model dir or Hub id
    rm.score(["日本の首都は?"], ["東京です。"])                     # array([1.23], dtype=float32)
    reward_func = rm.as_reward_func()                              # trl GRPO/RLOO reward function

What a reward is, per head (``logits`` is ``(B, C)``):

- ``C == 1`` (Bradley-Terry, pairwise/listwise objectives): ``logits[:, 0]``;
- ``C == 2`` (binary classifier, the seed's setup): ``logits[:, chosen] - logits[:, other]``,
  never "logit 0", which is the *rejected* class when chosen = 1;
- ``C > 2`` (a plain classifier with a chosen label): the log-odds
  ``logits[:, chosen] - logsumexp(other logits)``, which equals the 2-label rule for C = 2;

minus the model's centring constant (the mean training reward, so rewards are
centred on 0). A jprefs model directory holds safetensors weights, the
tokenizer and ``jprefs_reward.json`` (:class:`RewardConfig`): input layout,
objective, which logit, centring constant, maximum lengths, pooling (``cls`` or
``mean``, see :mod:`jprefs.classifiers.pooling`) and input prefix. A directory or
Hub id without that file is loaded as a plain sequence-classification model.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

from jprefs.errors import ConfigError, DataError, JprefsError

REWARD_CONFIG_NAME = "jprefs_reward.json"
CPU_MAX_TOKENS = 1024        # default padded-token budget per batch when scoring on CPU
FORMAT = "jprefs-reward/1"


@dataclass
class RewardConfig:
    """How to turn a classifier's logits into a reward (saved as ``jprefs_reward.json``)."""

    format: str = FORMAT
    objective: str = "classifier"       # binary | pairwise | listwise | classifier (plain HF model)
    input: str = "pair"                 # pair: (prompt, response) sentence pair; response: prompts ignored
    chosen_index: int = 1               # the logit of the chosen/positive class (0 for one-logit heads)
    center: float = 0.0                 # subtracted from every reward (mean training reward)
    max_length: int = 512               # tokens per input, capped at the model's position limit
    max_prompt_length: int = 256        # prompt budget; prompts are cut from the left
    prompt_style: str = "plain"         # jprefs.data.schema.render_prompt style
    pooling: str = "cls"                # cls: the model's own head | mean: masked mean of the last hidden states
    input_prefix: str = ""              # put before the first segment (prompt, or response without one)
    base_model: str = ""                # the backbone the model was trained from
    labels: list[str] = field(default_factory=list)
    # multi-head rewards (train-rm debias=odin): one logit per head, e.g. ["quality", "length"];
    # the reward is the ``reward_head`` logit, "full" is the sum of all heads (what training ranked)
    heads: list[str] = field(default_factory=list)
    reward_head: str = ""
    head_centers: dict[str, float] = field(default_factory=dict)    # centring constant of every head
    length_blend: float = 0.0           # > 0: a "blend" head = quality + length_blend * length
    # measured on the held-out split at training time, per head: reward change per 100 characters,
    # accuracy where the chosen answer is the shorter one, Spearman with length (card and RL warnings)
    length_stats: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "RewardConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)


# Label names that mean "the good one" when a plain two-label classifier names its labels and the
# caller named none: matched after NFKC and case folding, exactly (not as substrings: "not good" is no
# match). Exactly one of the two labels must match; otherwise the caller must say which is the reward.
POSITIVE_LABELS = ("positive", "pos", "chosen", "good", "preferred", "better", "acceptable", "accepted",
                   "yes", "true", "1", "ポジティブ", "肯定")
LABEL_FIX = ("--label NAME (jprefs score, jprefs eval rm), label=NAME (RewardModel.from_pretrained), "
             "reward_label=NAME (jprefs rl reward_type=classifier)")


def _norm_label(name: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFKC", str(name)).strip().casefold()


def label_names(model_config: Any) -> dict[int, str]:
    """``{index: name}`` of a transformers config's ``id2label`` (keys may be strings in a saved config)."""
    return {int(k): str(v) for k, v in (getattr(model_config, "id2label", None) or {}).items()}


def generic_labels(id2label: dict[int, str], n: int) -> bool:
    """Whether the labels carry no meaning: absent or transformers' own ``LABEL_0 .. LABEL_{n-1}``."""
    return all(_norm_label(id2label.get(i, f"LABEL_{i}")) == f"label_{i}" for i in range(n))


def default_label(model_config: Any, *, fix: str = LABEL_FIX) -> int:
    """The chosen label of a plain classifier whose caller named none (no catalogue entry either).

    One logit: 0. Two labels named ``LABEL_0`` / ``LABEL_1`` (or unnamed): 1, the chosen = 1 /
    rejected = 0 convention of preference classifiers. Two labels with real names: the one named in
    :data:`POSITIVE_LABELS` (``{0: "positive", 1: "negative"}`` -> 0), never index 1 blindly; a
    ConfigError listing the labels when neither or both match. More labels: a ConfigError (say which).

    >>> from types import SimpleNamespace as C
    >>> default_label(C(num_labels=2, id2label={0: "LABEL_0", 1: "LABEL_1"}))
    1
    >>> default_label(C(num_labels=2, id2label={0: "good", 1: "bad"}))
    0
    """
    n = int(getattr(model_config, "num_labels", 1))
    id2label = label_names(model_config)
    shown = {i: id2label.get(i, f"LABEL_{i}") for i in range(n)}
    if n == 1:
        return 0
    if n > 2:
        raise ConfigError(f"the model has {n} labels {list(shown.values())}: say which one is the reward, "
                          f"e.g. label='{shown[n - 1]}'\n  fix: {fix}")
    if generic_labels(id2label, n):
        return 1
    hits = [i for i in range(n) if _norm_label(shown[i]) in POSITIVE_LABELS]
    if len(hits) == 1:
        return hits[0]
    raise ConfigError(f"the model's two labels are {shown}: "
                      f"{'both' if hits else 'neither'} of them is a name jprefs reads as the good one "
                      f"({', '.join(POSITIVE_LABELS)}), so it cannot tell which label is the reward (label 1 "
                      f"is not assumed for named labels: it is often the bad one)\n  fix: name the reward "
                      f"label: {fix}")


def _resolve_label(label: int | str | None, model_config: Any, default: int | None) -> int:
    """The index of the chosen label: an index, a label name, or ``default`` (``None``:
    :func:`default_label`, from the label names)."""
    n = int(getattr(model_config, "num_labels", 1))
    id2label = label_names(model_config)
    if label is None:
        if default is not None:
            return default
        return default_label(model_config)
    if isinstance(label, str) and not label.lstrip("-").isdigit():
        names = {v: k for k, v in id2label.items()}
        lower = {v.lower(): k for k, v in id2label.items()}
        if label in names:
            return names[label]
        if label.lower() in lower:
            return lower[label.lower()]
        raise ConfigError(f"label {label!r} is not a label of this model; its labels are {list(id2label.values())}",
                          )
    idx = int(label)
    if not 0 <= idx < n:
        raise ConfigError(f"label index {idx} is out of range for a model with {n} label(s)")
    return idx


def _unique_inputs(enc):
    """``(the distinct inputs of enc, in first-seen order; each input's index among them)``, or ``(enc,
    None)`` when all are distinct. Inputs are the same when their token ids (and token types) are."""
    import numpy as np

    from jprefs.classifiers.inputs import Encoded

    types = enc.token_type_ids
    seen: dict = {}
    first: list[int] = []                    # the first row of each distinct input
    inv = []
    for i, ids in enumerate(enc.input_ids):
        j = seen.setdefault((tuple(ids), tuple(types[i]) if types is not None else ()), len(first))
        if j == len(first):
            first.append(i)
        inv.append(j)
    if len(first) == len(inv):
        return enc, None
    sub = Encoded([enc.input_ids[i] for i in first], None if types is None else [types[i] for i in first],
                  [enc.truncated[i] for i in first] if enc.truncated else [])
    return sub, np.asarray(inv, dtype=np.int64)


def logits_to_reward(logits, chosen_index: int):
    """``(B, C)`` logits -> ``(B,)`` rewards (see the module docstring for the rule per C).

    >>> import torch
    >>> logits_to_reward(torch.tensor([[0.5, 2.0]]), 1)
    tensor([1.5000])
    """
    import torch

    C = logits.shape[-1]
    if C == 1:
        return logits[:, 0]
    chosen = logits[:, chosen_index]                                  # (B,)
    others = torch.cat([logits[:, :chosen_index], logits[:, chosen_index + 1:]], dim=-1)  # (B, C-1)
    return chosen - torch.logsumexp(others, dim=-1)


def _read_reward_config(path_or_id: str, revision: str | None = None) -> dict | None:
    """``jprefs_reward.json`` of a model folder or Hub repo, or None when the model has none.

    Hub ids go through huggingface_hub's cache. "The repo has no such file" (on the Hub, or known
    absent in the cache) is a quiet None; a repo that is neither cached nor reachable
    (``HF_HUB_OFFLINE=1``, no network) is a :class:`jprefs.hub.ModelNotCachedError` naming it.
    """
    p = Path(path_or_id)
    if p.is_dir():
        f = p / REWARD_CONFIG_NAME
        return json.loads(f.read_text(encoding="utf-8")) if f.exists() else None
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import (LocalEntryNotFoundError, RemoteEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    from jprefs.hub import ModelNotCachedError, is_offline_miss

    try:
        local = hf_hub_download(path_or_id, REWARD_CONFIG_NAME, revision=revision)
    except RemoteEntryNotFoundError:            # the repo exists and has no jprefs config: a plain classifier
        return None
    except (RepositoryNotFoundError, RevisionNotFoundError):
        return None                             # the model load that follows says what is wrong, in full
    except Exception as e:  # noqa: BLE001 - inspected: an offline miss is decided below, the rest re-raised
        if not (isinstance(e, LocalEntryNotFoundError) or is_offline_miss(e)):
            raise
        # Offline. The file may be known absent (a `.no_exist` marker from an earlier online load), or the
        # repo may be cached without it (`hf download` of a repo that has none): both mean "no jprefs config".
        if try_to_load_from_cache(path_or_id, REWARD_CONFIG_NAME, revision=revision) is not None:
            return None
        if isinstance(try_to_load_from_cache(path_or_id, "config.json", revision=revision), str):
            return None
        raise ModelNotCachedError(path_or_id, revision) from None
    return json.loads(Path(local).read_text(encoding="utf-8"))


INPUT_LAYOUTS = ("pair", "response", "chat")


def _refuse_label(src: str, label: Any, what: str) -> None:
    """``label`` picks the reward logit of a PLAIN classifier. A jprefs reward model (and an ensemble
    or stack of them) has its reward fixed at training time: ``jprefs_reward.json`` names the logit and
    the centring constant measured for it, so another label gave a mis-centred reward of a class it was
    never trained to rank (and an ensemble or a stack dropped the label without a word)."""
    if label is None:
        return
    raise ConfigError(f"{src} is {what}: its reward is fixed by the model (the logit and centring constant "
                      f"it was trained and measured with), so label={label!r} (--label) does not apply\n  "
                      f"fix: drop label / --label; for another head of a multi-head model use head= / --head; "
                      f"for the opposite direction negate the reward (jprefs rl: reward_sign=-1)")


def _config_from_entry(entry, src: str, model_config: Any, *, label=None, input=None, max_length=None) -> RewardConfig:
    """The reward config of a catalogued plain classifier; explicit arguments win, with one warning
    listing where they contradict the entry."""
    n = int(getattr(model_config, "num_labels", 1))
    if n != entry.num_labels:
        raise ConfigError(f"{src}: the jprefs catalogue says {entry.id} has {entry.num_labels} logit(s), the loaded "
                          f"model has {n}\n  fix: the entry is out of date; correct jprefs/resources/rm_catalogue.yaml")
    chosen = _resolve_label(label, model_config, entry.chosen_index)
    conflicts = []
    if label is not None and chosen != entry.chosen_index:
        conflicts.append(f"label={label!r} (index {chosen}) instead of the entry's chosen index {entry.chosen_index}")
    if input is not None and input != entry.input:
        conflicts.append(f"input={input!r} instead of the entry's {entry.input!r}")
    if max_length is not None and entry.max_length is not None and int(max_length) != entry.max_length:
        conflicts.append(f"max_length={max_length} instead of the entry's {entry.max_length}")
    if conflicts:
        import warnings

        warnings.warn(f"{src}: overriding the jprefs catalogue entry of {entry.id}: " + "; ".join(conflicts)
                      + f" (the entry follows {entry.card_url})", UserWarning, stacklevel=3)
    cfg = RewardConfig(objective=entry.objective, input=entry.input, chosen_index=chosen, base_model=entry.id)
    if entry.max_length is not None:
        cfg.max_length = entry.max_length
        cfg.max_prompt_length = entry.max_length // 2
    return cfg


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: Any) -> Any:
    """``device`` unchanged, or a ConfigError for a CUDA device this machine lacks (torch's own error is
    an AssertionError: "Torch not compiled with CUDA enabled")."""
    import torch

    name = str(device)
    if name.startswith("cuda"):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        idx = int(name.split(":", 1)[1]) if ":" in name and name.split(":", 1)[1].isdigit() else 0
        if idx >= n:
            raise ConfigError(f"device {name!r}: this machine has {n} CUDA device(s)"
                              + ("" if n else " (or this torch is the CPU build)")
                              + "\n  fix: --device cpu, or leave --device out to use a GPU when there is one")
    return device


def resolve_dtype(dtype: Any, device: str):
    """``None`` -> fp32 on CPU, bf16 on a GPU that supports it; strings like ``"bf16"`` accepted."""
    import torch

    if dtype is None or dtype == "auto":
        if str(device).startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}
    if str(dtype) not in names:
        raise ConfigError(f"dtype {dtype!r} is not one of {sorted(names)}")
    return names[str(dtype)]


def _mean_pooled_loader(config):
    """The model class for ``config`` with its ``[CLS]`` pooler keys marked as expected-missing.

    A ``pooling: mean`` model saved before jprefs marked such folders (see
    :mod:`jprefs.classifiers.pooling`) has no pooler weights, so a plain load
    reports ``bert.pooler.dense.* MISSING, newly initialized``. Harmless here (the
    pooler is replaced before any use) but alarming: a subclass that lists those
    keys in ``_keys_to_ignore_on_load_missing`` loads the same weights without
    the report. Any other missing key is still reported.
    """
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    base = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING[type(config)]
    ignore = list(base._keys_to_ignore_on_load_missing or []) + [r"(^|\.)pooler\.dense\.(weight|bias)$"]
    return type(base.__name__, (base,), {"_keys_to_ignore_on_load_missing": ignore, "__module__": base.__module__})


def _refuse_untrained_head(src: str, info: dict) -> None:
    """A checkpoint without the classification head's weights (a bare backbone, an encoder saved for
    embeddings) loads with a random head: its scores change on every load and mean nothing."""
    missing = [k for k in info.get("missing_keys", []) if re.match(r"^(classifier|score)\.", k)]
    if missing:
        raise JprefsError(f"{src} has no trained reward head (transformers would initialise {', '.join(missing[:4])}"
                          f"{' ...' if len(missing) > 4 else ''} at random, so every load would score differently)\n"
                          f"  fix: pass a reward model (a jprefs train-rm folder or a sequence-classification "
                          f"checkpoint with its head); to train one on this backbone: jprefs train-rm --backbone {src}")


def _warn_unmarked(src: str) -> None:
    import warnings

    warnings.warn(f"{src}: this mean-pooled reward model was saved without the marker that makes plain "
                  f"transformers refuse it, so AutoModelForSequenceClassification, pipeline() and trl's "
                  f"reward_funcs='{src}' load it with a random [CLS] pooler and score randomly (jprefs "
                  f"scores it correctly).\n  fix: re-save it to a new folder with "
                  f"RewardModel.from_pretrained('{src}').save_pretrained(NEW_DIR) and share NEW_DIR",
                  UserWarning, stacklevel=3)


def head_stats(length_stats: dict, head: str | None) -> dict | None:
    """One head's entry of a ``length_stats`` mapping (``{head or "reward": figures, "measured_on": ...}``)
    with ``measured_on`` filled in from the mapping; None when that head was not measured."""
    ls = length_stats.get(head or "reward")
    if not isinstance(ls, dict):
        return None
    return {"measured_on": length_stats.get("measured_on", "held-out pairs"), **ls}


class RewardModel:
    """A sequence classifier plus the rule that turns its logits into a scalar reward.

    Build one with :meth:`from_pretrained` (a jprefs model directory, a Hub id, or
    a plain Hugging Face sequence-classification model with a chosen ``label``),
    or wrap an in-memory model: ``RewardModel(model, tokenizer, RewardConfig(...))``.

    >>> rm = RewardModel.from_pretrained("out/rm")                   # doctest: +SKIP
    >>> rm.score(["質問"], ["回答"]).shape                              # doctest: +SKIP
    (1,)
    """

    # Score through the frozen-layer memo (jprefs.classifiers.layercache): when the model's lower layers
    # are its backbone's, frozen (train-rm train_layers=N), set this to N and only the top N layers run
    # for sequences whose lower states are memoised (train-rm's own evaluations; bench/rm_debias.py).
    frozen_layer_cache: int = 0
    # score each distinct (prompt, response) input once (its logits copied to the repeats); False scores
    # every row as given (only the batches differ, so the numbers agree to float rounding)
    dedupe_inputs: bool = True

    def __init__(self, model, tokenizer, config: RewardConfig | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config or RewardConfig()
        if self.config.pooling != "cls":
            from jprefs.classifiers.pooling import apply_pooling

            apply_pooling(self.model, self.config.pooling)
        self.config.max_length = self._cap(self.config.max_length)
        if getattr(self.model.config, "pad_token_id", None) is None and self.tokenizer.pad_token_id is not None:
            # decoder classifiers (Llama, Mistral) read the last non-pad token: they must know the pad id
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.eval()

    def _cap(self, n: int) -> int:
        from jprefs.classifiers.inputs import model_max_length

        return model_max_length(self.model.config, int(n))

    @property
    def device(self):
        return next(self.model.parameters()).device

    # ------------------------------------------------------------ loading / saving

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | os.PathLike, device: str | None = None, dtype: Any = None,
                        label: int | str | None = None, max_length: int | None = None, revision: str | None = None,
                        input: str | None = None, catalogue_id: str | None = None,
                        subfolder: str | None = None) -> "RewardModel":
        """Load a jprefs reward model or a plain HF sequence classifier (safetensors only).

        ``label`` picks the chosen class of a plain classifier by name (``"positive"``) or index.
        Without it (and without a catalogue entry) a two-label classifier whose labels are the
        generic ``LABEL_0`` / ``LABEL_1`` (or unnamed) is scored with label 1 (chosen = 1); one whose
        labels have names is scored with the one named in :data:`POSITIVE_LABELS` (positive, chosen,
        good, ...), and is an error listing the labels when neither or both are (:func:`default_label`).
        A jprefs reward model, ensemble or stack refuses ``label``: its reward is fixed by training.
        ``input`` sets its layout: ``pair`` (prompt, response
        sentence pair), ``response`` (the response alone) or ``chat`` (the tokenizer's chat template).
        ``revision`` (branch, tag or commit) is used for every file of a Hub model.

        A Hub repo that ``jprefs push model`` filled with a reward stack or a seed ensemble (its root
        holds ``jprefs_stack.json`` / ``jprefs_ensemble.json``) is downloaded whole (safetensors and
        configs only, through the Hub cache) and loaded as the folder it was. ``subfolder`` loads one
        folder of a repo or local folder, e.g. a stack's fine-tuned reward model (``"reward"``) or an
        ensemble member (``"seed-42"``).

        A model in the jprefs catalogue (``jprefs rm list``) without ``jprefs_reward.json`` is scored
        the way its entry says (chosen label, input layout, maximum length, revision); explicit
        ``label`` / ``input`` / ``max_length`` / ``revision`` win, with one warning where they
        contradict the entry. ``catalogue_id`` applies the entry of that Hub id to another source,
        e.g. a local copy of a catalogued model.

        >>> rm = RewardModel.from_pretrained("out/rm", device="cpu")     # doctest: +SKIP
        >>> rm = RewardModel.from_pretrained("OpenAssistant/reward-model-deberta-v3-large-v2")   # doctest: +SKIP
        """
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        src = str(path_or_hub_id)
        from jprefs.classifiers.ensemble import ENSEMBLE_NAME, is_ensemble
        from jprefs.classifiers.stack import STACK_NAME
        from jprefs.hub import folder_snapshot

        hub_id = not Path(src).exists() and src.count("/") == 1 and not src.startswith((".", "/", "~"))
        if revision and revision != "main" and Path(src).exists():
            # a local folder has one version: a revision asked for would be ignored, and the scores said to be
            # of that revision would be of whatever the folder holds ("main", the default, is no request)
            raise ConfigError(f"{src} is a local folder, and a local folder has no revisions (revision={revision!r})"
                              f"\n  fix: drop the revision (--revision), or give the Hub id to load that revision")
        if subfolder:
            src = folder_snapshot(src, revision, subfolder) if hub_id else str(Path(src) / subfolder)
        elif hub_id:                  # a pushed stack or ensemble: the repo is the folder it was
            src = folder_snapshot(src, revision, markers=(STACK_NAME, ENSEMBLE_NAME)) or src

        if is_ensemble(src):          # a seed ensemble (train-rm ensemble_seeds=[...]): the mean of its members
            from jprefs.classifiers.ensemble import RewardEnsemble

            _refuse_label(src, label, "a jprefs reward ensemble")
            return RewardEnsemble.from_pretrained(src, device=device, dtype=dtype, max_length=max_length)
        from jprefs.classifiers.stack import is_stack

        if is_stack(src):             # a reward stack (train-rm stack=[...]): reward model + probe + relevance
            from jprefs.classifiers.stack import RewardStack

            _refuse_label(src, label, "a jprefs reward stack")
            return RewardStack.from_pretrained(src, device=device, dtype=dtype, max_length=max_length)
        if not Path(src).exists() and (src.startswith((".", "/", "~")) or src.count("/") > 1):
            raise JprefsError(f"reward model not found: {src}\n  fix: pass a local model directory or a Hub id "
                              f"like 'org/name'")
        if input is not None and input not in INPUT_LAYOUTS:
            raise ConfigError(f"input={input!r} is not one of {list(INPUT_LAYOUTS)}")
        local = Path(src).exists()
        if local:
            from jprefs.modeldir import check_model_dir

            # an unfinished run, a checkpoint, an rl or translate folder, a truncated file: say so
            check_model_dir(src, want="reward model")
        from jprefs.classifiers.catalogue import lookup

        entry = lookup(catalogue_id) if catalogue_id else (None if local else lookup(src))
        if catalogue_id and entry is None:
            raise ConfigError(f"catalogue_id={catalogue_id!r} is not in the jprefs reward-model catalogue\n"
                              f"  fix: `jprefs rm list` shows the catalogued Hub ids (exact case)")
        if entry is None and not local and not catalogue_id:
            from jprefs.classifiers.catalogue import lookup_other_case

            other = lookup_other_case(src)
            if other is not None:   # the Hub would load it, without the catalogue's label and input layout
                raise ConfigError(f"{src!r} is the catalogued {other.id!r} in another case: the Hub loads the same "
                                  f"model, but without its catalogue entry it would be scored with the default "
                                  f"label and input layout (not {other.input!r})\n  fix: pass {other.id!r}")
        rev = revision if revision is not None else (entry.revision if entry and not local else None)
        device = check_device(device or default_device())
        torch_dtype = resolve_dtype(dtype, device)
        raw = _read_reward_config(src, rev)
        if raw:
            entry = None                # a jprefs model carries its own reward config
            _refuse_label(src, label, f"a jprefs reward model ({REWARD_CONFIG_NAME})")
        if entry is not None and not entry.supported:
            raise ConfigError(f"{src}: the jprefs catalogue lists {entry.id} as not scorable by RewardModel: "
                              f"{entry.reason}\n  fix: pick a supported model (`jprefs rm list`)")
        from jprefs.hub import hub_model

        try:
            with hub_model(src, rev):  # a Hub id offline and not cached: one line naming it (and the revision)
                loader, kw = AutoModelForSequenceClassification, {}
                if rev is not None and not local:
                    kw["revision"] = rev
                if raw and raw.get("pooling") == "mean":
                    from jprefs.classifiers.pooling import saved_model_config

                    kw["config"], marked = saved_model_config(src)      # model_type jprefs-mean-pooled undone
                    if not marked:
                        _warn_unmarked(src)
                    loader = _mean_pooled_loader(kw["config"])
                # the cards' own snippets pass num_labels (ca-reward-3b-ja: num_labels=1)
                mkw = {"num_labels": entry.num_labels} if entry is not None else {}
                model, info = loader.from_pretrained(
                    src, trust_remote_code=False, use_safetensors=True, dtype=torch_dtype, output_loading_info=True,
                    **kw, **mkw)
                _refuse_untrained_head(src, info)
                tokenizer = AutoTokenizer.from_pretrained(src, trust_remote_code=False, **kw)
        except OSError as e:
            raise JprefsError(f"cannot load a sequence-classification model from {src}"
                              f"{f' (revision {rev})' if rev else ''}: {e}\n"
                              f"  fix: check the path or Hub id; jprefs loads safetensors weights only") from e
        except ValueError as e:
            if "Unrecognized model" not in str(e):
                raise
            # a Hub repo (or revision) with no usable config.json: an empty repo, a branch without the model
            raise JprefsError(f"{src}{f' (revision {rev})' if rev else ''} holds no model transformers can read "
                              f"(no config.json with a model_type)\n  fix: check the Hub id and --revision (the "
                              f"branch the model was pushed to), or pass a local model directory") from None
        except Exception as e:
            if type(e).__name__ != "SafetensorError":
                raise
            raise JprefsError(f"{src}: its safetensors weights are truncated or corrupt ({e}).\n"
                              f"  fix: re-save or retrain the model (or download it again)") from e
        if raw and raw.get("format") != FORMAT:
            raise JprefsError(f"{src}/{REWARD_CONFIG_NAME}: unknown format {raw.get('format')!r} (expected {FORMAT})")
        if raw:
            cfg = RewardConfig.from_dict(raw)          # its chosen_index stands (label refused above)
        elif entry is not None:
            cfg = _config_from_entry(entry, src, model.config, label=label, input=input, max_length=max_length)
        else:
            cfg = RewardConfig(objective="classifier", base_model=src)
            cfg.chosen_index = _resolve_label(label, model.config, None)
        if input is not None:
            cfg.input = input
        if not cfg.labels:
            id2label = getattr(model.config, "id2label", None) or {}
            cfg.labels = [str(id2label.get(i, id2label.get(str(i), i))) for i in range(model.config.num_labels)]
        if max_length is not None:
            cfg.max_length = int(max_length)
        model.to(device)
        return cls(model, tokenizer, cfg)

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write safetensors weights, the tokenizer and ``jprefs_reward.json`` to ``path``.

        A mean-pooled model is saved so that plain transformers refuses it rather than
        scoring it with a random pooler (:mod:`jprefs.classifiers.pooling`).
        """
        from jprefs.data.io import atomic_write_json

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        if self.config.pooling == "mean":
            from jprefs.classifiers.pooling import nan_pooler, refuse_plain_loading

            with nan_pooler(self.model):
                self.model.save_pretrained(out, safe_serialization=True)
            refuse_plain_loading(out)
        else:
            self.model.save_pretrained(out, safe_serialization=True)
        self.tokenizer.save_pretrained(out)
        atomic_write_json(out / REWARD_CONFIG_NAME, self.config.to_dict())
        return out

    # ------------------------------------------------------------ scoring

    def encode(self, prompts: Sequence[Any] | None, responses: Sequence[str]):
        """Token ids for ``score``; prompts are dropped for ``input: response`` models, and ``input: chat``
        models get the tokenizer's chat template over (user prompt, assistant response)."""
        from jprefs.classifiers.inputs import encode_chat, encode_pairs

        if self.config.input == "chat":
            return encode_chat(self.tokenizer, prompts, responses, max_length=self.config.max_length)
        if self.config.input == "response":
            prompts = None
        return encode_pairs(self.tokenizer, prompts, responses, max_length=self.config.max_length,
                            max_prompt_length=self.config.max_prompt_length, prompt_style=self.config.prompt_style,
                            prefix=self.config.input_prefix)

    def logits(self, prompts: Sequence[Any] | None, responses: Sequence[str], batch_size: int = 32,
               max_tokens: int | None = None, show_progress: bool = False):
        """Raw ``(N, C)`` float32 logits in input order (length-sorted batches under ``inference_mode``).

        A batch holds at most ``batch_size`` inputs and ``max_tokens`` padded tokens
        (default on CPU: ``CPU_MAX_TOKENS``; no token budget on GPU).
        """
        import numpy as np
        import torch

        from jprefs.classifiers.inputs import collate, length_batches

        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        enc = self.encode(prompts, responses)
        inv = None
        if self.dedupe_inputs:
            # identical inputs (a judged set pairs each answer with several others) run once
            enc, inv = _unique_inputs(enc)
        n = len(enc)
        if max_tokens is None and self.device.type == "cpu":
            # Measured (bench/rm_score_bench.py, 2 cores): on CPU, batches of ~1k padded tokens run
            # faster per token than batch 1 or 16 long sequences, whose activations outgrow the caches.
            max_tokens = CPU_MAX_TOKENS
        C = int(self.model.config.num_labels)
        out = np.zeros((n, C), dtype=np.float32)
        if n == 0:
            return out
        # the id the model's head treats as padding (a decoder classifier scores the last non-pad token): a
        # tokenizer without a pad token padded with 0, which the head read as text, so scores moved with the batch
        pad_id = next((x for x in (getattr(self.model.config, "pad_token_id", None), self.tokenizer.pad_token_id)
                       if isinstance(x, int)), 0)
        batches = length_batches(enc.lengths, batch_size=batch_size, max_tokens=max_tokens)
        dev = self.device
        bar = None
        if show_progress:
            from jprefs.progress import progress

            bar = progress(total=n, desc="score", unit="pair")
        states = None
        if self.frozen_layer_cache:
            # the lower layers are the frozen backbone's: their states come from the in-process memo
            from jprefs.classifiers.layercache import lower_states, pad_states, top_only

            states = lower_states(self.model, enc, self.frozen_layer_cache, pad_id, show_progress=show_progress)
        with torch.inference_mode(), (top_only(self.model, self.frozen_layer_cache) if states else nullcontext()):
            for idx in batches:
                if states is not None:
                    x, mask = pad_states(states, idx)
                    batch = {"inputs_embeds": x.to(dev), "attention_mask": mask.to(dev)}
                else:
                    batch = {k: v.to(dev) for k, v in collate(enc, idx, pad_id).items()}
                if bool(batch["attention_mask"].all()):
                    # no padding in this batch: let SDPA take its unmasked fast path
                    batch.pop("attention_mask")
                logits = self.model(**batch).logits.float()          # (B, C)
                out[idx] = logits.cpu().numpy()
                if bar is not None:
                    bar.update(len(idx))
        if bar is not None:
            bar.close()
        return out if inv is None else out[inv]

    def score(self, prompts: Sequence[Any] | str | None, responses: Sequence[str], batch_size: int = 32,
              max_tokens: int | None = None, show_progress: bool = False, head: str | None = None):
        """Rewards of (prompt, response) pairs as a float32 array of ``len(responses)``, in input order.

        ``prompts``: strings, message lists, ``None`` (prompt-less text), or one
        string for all responses. ``head`` (multi-head models, ``train-rm debias=odin``):
        ``quality`` (the default reward), ``length``, ``full`` (their sum, what training ranked), or
        ``blend`` (quality + ``length_blend`` x length, where the model was saved with one); see :attr:`heads`.

        >>> rm.score(["日本の首都は?", "日本の首都は?"], ["東京です。", "大阪です。"])   # doctest: +SKIP
        array([ 2.1, -1.7], dtype=float32)
        """
        import numpy as np

        name = self._head(head)
        logits = self.logits(prompts, responses, batch_size=batch_size, max_tokens=max_tokens,
                             show_progress=show_progress)
        if len(logits) == 0:
            return np.zeros(0, dtype=np.float32)
        return self.rewards_from_logits(logits, head=name)

    def score_heads(self, prompts: Sequence[Any] | str | None, responses: Sequence[str], heads: Sequence[str],
                    batch_size: int = 32, show_progress: bool = False) -> dict:
        """``{head: rewards}`` for several ``heads`` (names as :meth:`score` takes them) from ONE forward
        pass: every head is a function of the same logits."""
        import numpy as np

        logits = self.logits(prompts, responses, batch_size=batch_size, show_progress=show_progress)
        if len(logits) == 0:
            return {h: np.zeros(0, dtype=np.float32) for h in heads}
        return {h: self.rewards_from_logits(logits, head=None if h in ("", "reward") else h) for h in heads}

    @property
    def heads(self) -> list[str]:
        """The reward heads ``score(head=...)`` takes: ``[]`` for a one-reward model, else the
        model's heads and ``full``; the first is the default reward."""
        c = self.config
        if not c.heads:
            return []
        default = c.reward_head or c.heads[0]
        derived = ["full"] + (["blend"] if c.length_blend > 0 and "length" in c.heads else [])
        return [default] + [h for h in [*c.heads, *derived] if h != default]

    def _head(self, head: str | None) -> str | None:
        if not self.config.heads:
            if head not in (None, "", "reward", "full"):
                raise ConfigError(f"head {head!r}: this reward model has one reward (no heads); leave head unset")
            return None
        name = head or self.config.reward_head or self.config.heads[0]
        if name not in self.heads:
            raise ConfigError(f"head {name!r} is not one of this reward model's heads {self.heads}")
        return name

    def rewards_from_logits(self, logits, head: str | None = None):
        """``(N, C)`` logits -> centred float32 rewards of ``head`` (the model's rule; see :meth:`score`)."""
        import numpy as np
        import torch

        name = self._head(head)
        c = self.config
        if name is None:
            r = logits_to_reward(torch.from_numpy(np.asarray(logits, dtype=np.float32)), c.chosen_index).numpy()
            return (r - np.float32(c.center)).astype(np.float32)
        lg = np.asarray(logits, dtype=np.float32)
        if name == "full":
            r = lg.sum(axis=1)
        elif name == "blend":
            r = lg[:, c.heads.index("quality")] + np.float32(c.length_blend) * lg[:, c.heads.index("length")]
        else:
            r = lg[:, c.heads.index(name)]
        default = c.reward_head or c.heads[0]
        centre = c.head_centers.get(name, c.center if name == default else 0.0)
        return (r - np.float32(centre)).astype(np.float32)

    def as_reward_func(self, batch_size: int = 32, use_prompt: bool | None = None,
                       head: str | None = None) -> Callable[..., list[float]]:
        """A trl reward function ``(prompts, completions, **kwargs) -> list[float]`` (GRPO, RLOO).

        Prompts and completions may be strings or conversational message lists. A string prompt
        in the ``trl`` export layout (role markers, ending with the assistant cue ``アシスタント:``)
        is read back into its conversation, so the model sees the prompt rendered as in training.
        ``use_prompt`` defaults to the model's input layout (``pair`` uses the prompt).

        >>> trainer = GRPOTrainer(model, reward_funcs=rm.as_reward_func(), ...)   # doctest: +SKIP
        """
        from jprefs.classifiers.inputs import completion_to_text
        from jprefs.data.schema import parse_cue_prompt

        if use_prompt is None:
            use_prompt = self.config.input != "response"

        def reward_func(prompts=None, completions=None, **kwargs) -> list[float]:
            if completions is None:
                raise DataError("reward function called without completions")
            responses = [completion_to_text(c) for c in completions]
            ps = None
            if use_prompt and prompts is not None:
                ps = [[m.to_dict() for m in msgs] if (msgs := parse_cue_prompt(p)) is not None else p for p in prompts]
            return [float(x) for x in self.score(ps, responses, batch_size=batch_size, head=head)]

        self._head(head)        # an unknown head fails now, not at the first RL step
        reward_func.__name__ = "jprefs_reward"
        return reward_func

    @property
    def length_sensitivity(self) -> dict | None:
        """How much the default reward follows length, measured on held-out pairs when it was trained:
        ``per_100_chars`` (reward change per 100 characters, least squares), ``length_controlled_accuracy``
        (accuracy where the chosen answer is the shorter one) and ``spearman_length``; None if not measured."""
        c = self.config
        key = (c.reward_head or c.heads[0]) if c.heads else "reward"
        return c.length_stats.get(key)

    def length_stats_for(self, head: str | None = None) -> dict | None:
        """The length figures of ``head`` (None: the default reward) with ``measured_on``; None if not
        measured (an unknown head raises, as in :meth:`score`)."""
        return head_stats(self.config.length_stats, self._head(head))

    def __repr__(self) -> str:
        c = self.config
        # a plain classifier's chosen label by name too, so `jprefs score` shows which class it rewards
        name = f" ({c.labels[c.chosen_index]})" if c.objective == "classifier" and len(c.labels) > max(
            c.chosen_index, 1) else ""
        return (f"RewardModel({type(self.model).__name__}, objective={c.objective}, input={c.input}, "
                f"chosen_index={c.chosen_index}{name}, center={c.center:.4f}, max_length={c.max_length})")
