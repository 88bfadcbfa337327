"""The ``jprefs rl`` stage config: one dataclass for SFT, ILQL and PPO.

A recipe (``rl/recipes/*.yaml``) is a flat mapping of these field names; any
field can be overridden on the command line (``jprefs rl R.yaml ppo_epochs=2``).
Fields are grouped by the algorithm that reads them; ``algo`` picks the loop.

Example::

    from jprefs.config import load_config
    cfg = load_config(RLConfig, "rl/recipes/ppo-tiny-cpu.yaml", ["total_steps=4"])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from jprefs.config import check_ranges
from jprefs.errors import ConfigError

ALGOS = ("sft", "ilql", "ppo", "dpo", "kto", "grpo", "rloo")
TRL_ALGOS = ("dpo", "kto", "grpo", "rloo")
REWARD_TYPES = ("none", "rm", "classifier", "callable", "labels")


def _h(text: str) -> dict:
    return {"help": text}


# trl 1.16's loss_type values per trainer (DPOConfig, KTOConfig, GRPOConfig; RLOOConfig has none): a value
# outside them was a TypeError or an UnboundLocalError at the first step, after the warm start
TRL_LOSS_TYPES = {
    "dpo": ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
            "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"),
    "kto": ("kto", "apo_zero_unpaired"),
    "grpo": ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"),
}

@dataclass
class RLConfig:
    # ------------------------------------------------------------ what to run
    algo: Literal["sft", "ilql", "ppo", "dpo", "kto", "grpo", "rloo"] = field(default="ppo", metadata=_h(
        "sft: warm-start/pretrain the policy on text or chosen responses; ilql: offline RL on "
        "(text, reward) data; ppo: online RL against a reward; dpo / kto (preference pairs; kto also "
        "a binary set) and grpo / rloo (prompts + reward): trl's trainers (jprefs/rl/trl_algos.py)"))
    seed: int = field(default=0, metadata=_h("random seed (torch, sampling, data order)"))
    device: str = field(default="auto", metadata=_h("auto | cpu | cuda | cuda:N"))
    torch_threads: int = field(default=0, metadata=_h(
        "CPU threads for torch (0 = torch's default). Small models on a busy machine run much faster with 1. "
        "The thread count changes the order of float sums: runs with another count (or 0 on a machine with "
        "other cores) agree to about 1e-6, not bit for bit; set it to resume or repeat a run exactly"))

    # ------------------------------------------------------------ policy
    policy: str = field(default="tiny", metadata=_h(
        "'tiny' (a small GPT-2 built here, with a byte-level BPE tokenizer trained on `sft_data`; "
        "no download), or a Hugging Face causal LM: Hub id or local directory (safetensors only)"))
    tiny_vocab_size: int = field(default=3000, metadata=_h("tiny policy: tokenizer vocabulary size"))
    tiny_tokenizer: Literal["char", "bpe"] = field(default="char", metadata=_h(
        "tiny policy: 'char' = byte-level BPE with merges kept inside characters (one token per "
        "Japanese character; robust prompt boundaries), 'bpe' = merges across characters"))
    tiny_n_embd: int = field(default=128, metadata=_h("tiny policy: hidden size"))
    tiny_n_layer: int = field(default=4, metadata=_h("tiny policy: transformer layers"))
    tiny_n_head: int = field(default=4, metadata=_h("tiny policy: attention heads"))
    tiny_n_positions: int = field(default=256, metadata=_h("tiny policy: context length"))
    dtype: str = field(default="auto", metadata=_h("policy dtype: auto (float32 on CPU) | float32 | bfloat16 | float16"))
    trust_remote_code: bool = field(default=False, metadata=_h(
        "allow custom model code from the Hub (off by default: it runs code you have not read)"))

    # ------------------------------------------------------------ SFT / pretraining
    sft_data: str = field(default="builtin:ja-tiny", metadata=_h(
        "text for SFT: 'builtin:ja-tiny' (bundled original sentences), a .txt file (one text per line), "
        "JSONL/CSV/TSV with `text_field` (e.g. ../shared/data/aozora/*.jsonl.gz, comma-separated globs), "
        "or canonical pairs (SFT on prompt + chosen, loss on the response only)"))
    sft_steps: int = field(default=0, metadata=_h(
        "optimizer steps of SFT; with algo=ilql/ppo, a warm start before RL (0 = none)"))
    sft_lr: float = field(default=1e-3, metadata=_h("SFT learning rate (AdamW, linear decay)"))
    sft_batch_size: int = field(default=32, metadata=_h("SFT batch size (sequences)"))
    sft_max_texts: int = field(default=0, metadata=_h("use at most this many SFT texts (0 = all)"))

    # ------------------------------------------------------------ data (ILQL) and prompts (PPO, eval)
    data: str = field(default="builtin:ja-tiny", metadata=_h(
        "ILQL data: canonical pairs (chosen -> 1, rejected -> 0), a JSONL/CSV/TSV of `text_field` + "
        "`reward_field`, or texts scored by the reward (`reward_type`); 'builtin:ja-tiny' is the bundled "
        "labelled set. DPO/KTO: canonical pairs (KTO also a binary set of prompt/response/label); "
        "'builtin:ja-tiny-pairs' is the bundled pairs set"))
    text_field: str = field(default="text", metadata=_h("column holding the text (ILQL data, SFT data)"))
    prompt_field: str = field(default="", metadata=_h("optional column with a prompt that precedes the text"))
    reward_field: str = field(default="reward", metadata=_h("ILQL: column with the reward or label"))
    max_length: int = field(default=64, metadata=_h("max tokens of prompt + response in training"))
    prompts: str = field(default="builtin:ja-tiny", metadata=_h(
        "PPO/GRPO/RLOO training prompts: a .txt file (one per line), a JSONL with `prompt`/`text`, canonical "
        "pairs (their prompts) or 'builtin:ja-tiny'"))
    eval_prompts: str = field(default="builtin:ja-tiny-eval", metadata=_h(
        "fixed evaluation prompts: samples are written for them every `eval_every` steps"))
    prompt_max_tokens: int = field(default=16, metadata=_h("truncate prompts to their last N tokens"))

    # ------------------------------------------------------------ reward
    reward_type: Literal["none", "rm", "classifier", "callable", "labels", "human"] = field(default="callable", metadata=_h(
        "rm: a jprefs RewardModel (dir or Hub id); classifier: a transformers text-classification "
        "model, reward = logit[reward_label] - logit[other]; callable: `module:function` taking "
        "(prompts, responses) -> list[float]; labels: dataset rewards (ILQL only); human: people score "
        "each rollout in `jprefs label serve --mode reward` (PPO only; `human_db`); none (SFT)"))
    reward_model: str = field(default="jprefs.rl.rewards:lexicon_sentiment", metadata=_h(
        "path/Hub id of the reward model or classifier, or `module:function` for callable"))
    reward_label: str = field(default="1", metadata=_h(
        "classifier: the label (name or index) whose logit margin is the reward"))
    reward_input: Literal["pair", "concat", "response"] = field(default="pair", metadata=_h(
        "what the reward scores: pair = (prompt, response); concat = prompt + response as one text "
        "(prompts that begin a sentence); response = the response alone. reward_type=classifier reads one "
        "text: pair and response give it the response alone, concat gives it prompt + response"))
    reward_head: str = field(default="", metadata=_h(
        "reward_type=rm: the head of a multi-head reward model (train-rm debias=odin: quality, the default "
        "and the length-debiased one; full = quality + length; length)"))
    human_db: str = field(default="", metadata=_h(
        "reward_type=human: the labelling database of `jprefs label serve --mode reward`"))
    human_timeout_s: float = field(default=600.0, metadata=_h(
        "reward_type=human: how long a PPO step waits for its batch's scores before the run stops "
        "(resumable: rerun the same command)"))
    human_labels: int = field(default=1, metadata=_h(
        "reward_type=human: scores wanted per rollout (their mean is the reward)"))
    reward_batch_size: int = field(default=32, metadata=_h("batch size when scoring with a model"))
    reward_sign: float = field(default=1.0, metadata=_h("multiply rewards by this (-1 to minimise)"))

    # ------------------------------------------------------------ generation (PPO rollouts, samples)
    max_new_tokens: int = field(default=24, metadata=_h("response length limit"))
    min_new_tokens: int = field(default=0, metadata=_h(
        "PPO: EOS is forbidden for the first N response tokens (in rollouts and in the logprobs of "
        "policy and reference alike); = max_new_tokens gives fixed-length responses, so the policy "
        "cannot raise the reward by stopping early. grpo/rloo: the same rule in trl's rollouts "
        "(generation_kwargs); every algo: the same rule in the eval samples"))
    temperature: float = field(default=1.0, metadata=_h(
        "sampling temperature (PPO: keep 1.0, or the KL estimate is biased); 0 = greedy"))
    top_k: int = field(default=0, metadata=_h("top-k sampling (0 = off; PPO should sample the full distribution)"))
    top_p: float = field(default=1.0, metadata=_h("nucleus sampling (1.0 = off)"))
    sampler: str = field(default="generate", metadata=_h(
        "every sampling in a run (PPO rollouts, eval samples of every algo, ILQL decoding): generate = "
        "transformers' generate with logits processors "
        "(jprefs.rl.processors); native = the hand-written KV-cache loop (jprefs.rl.sampling.sample). Same "
        "tokens for the same seed; speed within a few % (BENCHMARKS.md)"))

    # ------------------------------------------------------------ optimisation (ILQL, PPO)
    total_steps: int = field(default=100, metadata=_h(
        "ILQL: optimizer steps; PPO: rollout iterations (each = batch_size samples); dpo/kto/grpo/rloo: "
        "trl's max_steps"))
    lr: float = field(default=5e-5, metadata=_h("learning rate (AdamW)"))
    adam_beta1: float = field(default=0.9, metadata=_h("AdamW beta1"))
    adam_beta2: float = field(default=0.95, metadata=_h("AdamW beta2"))
    weight_decay: float = field(default=0.0, metadata=_h("AdamW weight decay"))
    max_grad_norm: float = field(default=1.0, metadata=_h("gradient clipping (0 = off)"))
    batch_size: int = field(default=32, metadata=_h(
        "ILQL: batch size; PPO: rollouts per iteration; dpo/kto: rows a step, grpo/rloo: completions a step "
        "(batch_size / num_generations prompts), per process"))
    eval_every: int = field(default=20, metadata=_h("write samples and eval metrics every N steps"))
    eval_samples: int = field(default=2, metadata=_h("samples per evaluation prompt"))
    lora_r: int = field(default=0, metadata=_h(
        "LoRA rank (peft); 0 = full fine-tuning. ppo, dpo, kto, grpo, rloo (ilql and sft refuse it). With "
        "LoRA the PPO reference is the adapter-disabled base"))
    lora_alpha: float = field(default=16.0, metadata=_h("LoRA alpha"))

    # ------------------------------------------------------------ ILQL (defaults: trlx)
    tau: float = field(default=0.7, metadata=_h("ILQL expectile for the V loss"))
    gamma: float = field(default=0.99, metadata=_h("ILQL discount"))
    cql_scale: float = field(default=0.1, metadata=_h("ILQL weight of the CQL (cross-entropy on Q) term"))
    awac_scale: float = field(default=1.0, metadata=_h("ILQL weight of the AWAC (weighted LM) term"))
    alpha: float = field(default=0.001, metadata=_h("ILQL Polyak rate: target <- alpha*q + (1-alpha)*target"))
    beta: float = field(default=0.0, metadata=_h("ILQL AWAC temperature (0 = plain behaviour cloning)"))
    steps_for_target_q_sync: int = field(default=5, metadata=_h("ILQL: Polyak update every N steps"))
    two_qs: bool = field(default=True, metadata=_h("ILQL: two Q heads (min of the targets)"))
    beta_gen: float = field(default=1.0, metadata=_h("ILQL decoding: logp + beta_gen * (Q - V)"))
    beta_gen_sweep: list[float] = field(default_factory=lambda: [0.0, 1.0, 2.0, 4.0], metadata=_h(
        "ILQL: beta_gen values evaluated at the end (reward, length, distinct-2 per value)"))
    ilql_top_k: int = field(default=20, metadata=_h("ILQL decoding top-k"))

    # ------------------------------------------------------------ PPO (defaults: trlx, InstructGPT)
    ppo_epochs: int = field(default=4, metadata=_h("PPO epochs over each rollout batch"))
    minibatch_size: int = field(default=8, metadata=_h("PPO minibatch size"))
    cliprange: float = field(default=0.2, metadata=_h("PPO policy ratio clip"))
    cliprange_value: float = field(default=0.2, metadata=_h("PPO value clip"))
    vf_coef: float = field(default=1.0, metadata=_h("PPO value-loss weight"))
    lam: float = field(default=0.95, metadata=_h("GAE lambda"))
    ppo_gamma: float = field(default=1.0, metadata=_h("PPO discount"))
    init_kl_coef: float = field(default=0.05, metadata=_h("initial KL penalty coefficient"))
    target_kl: float = field(default=0.0, metadata=_h(
        "adaptive KL controller target (nats per sequence); 0 = fixed coefficient"))
    kl_horizon: int = field(default=10000, metadata=_h("adaptive KL controller horizon (samples)"))
    cliprange_reward: float = field(default=10.0, metadata=_h("clip scores to +-this"))
    scale_reward: Literal["none", "running", "whiten"] = field(default="none", metadata=_h(
        "none | running (divide by a running std) | whiten (batch z-score)"))

    # ------------------------------------------------------------ trl's trainers (dpo, kto, grpo, rloo)
    trl_beta: float = field(default=-1.0, metadata=_h(
        "trl's beta: DPO/KTO deviation from the reference (trl default 0.1); GRPO/RLOO KL coefficient "
        "(trl defaults: GRPO 0.0, RLOO 0.05); negative = trl's default"))
    num_generations: int = field(default=4, metadata=_h(
        "GRPO/RLOO: completions per prompt (the group); batch_size must be a multiple of it"))
    trl_loss_type: str = field(default="", metadata=_h(
        "trl's loss_type (DPO: sigmoid, ipo, hinge, ...; KTO: kto, apo_zero_unpaired; GRPO: dapo, grpo, "
        "dr_grpo, ...); empty = trl's default"))
    reward_weights: list[float] = field(default_factory=list, metadata=_h(
        "GRPO/RLOO: weights of several reward sources (with `extra_rewards`); empty = 1 each"))
    extra_rewards: list[str] = field(default_factory=list, metadata=_h(
        "GRPO/RLOO: further reward sources summed with the main one, each 'TYPE:SPEC' with TYPE rm, "
        "classifier or callable (e.g. 'callable:jprefs.rl.rewards:lexicon_sentiment', 'rm:runs/rm'); an rm "
        "source scores with its model's default head (ODIN: quality), reward_head being the main model's"))

    # ------------------------------------------------------------ output
    save_every: int = field(default=0, metadata=_h(
        "save a resumable checkpoint (OUT/checkpoint-N: policy, heads, optimizer, RNG states) every N steps; "
        "0 = none, only the final outputs"))
    report_to: str = field(default="", metadata=_h(
        "experiment trackers that also get every step of metrics.jsonl (which stays the record): '' (none) | "
        "tensorboard (OUT/tb/) | wandb (offline unless WANDB_MODE is set) | trackio (local); comma-separated "
        "for several. dpo/kto/grpo/rloo: passed to trl's report_to (trl's own log names)"))
    resume: bool = field(default=True, metadata=_h(
        "rerunning into the same -o folder continues from its newest checkpoint (the config must match); "
        "false = start over, deleting the folder's checkpoints and logs"))

    def validate(self) -> None:
        from jprefs.trackers import parse_report_to

        parse_report_to(self.report_to)
        if self.lora_r > 0 and self.algo in ("ilql", "sft"):
            raise ConfigError(f"lora_r={self.lora_r}: algo={self.algo} trains the full model (LoRA is wired for "
                              f"ppo and the trl algorithms dpo, kto, grpo, rloo); fix: set lora_r=0, or use one "
                              f"of those algorithms")
        if self.algo == "ilql" and self.reward_type == "none":
            raise ConfigError("algo=ilql needs rewards: set reward_type=labels (dataset column "
                              "`reward_field`) or rm/classifier/callable to score the texts")
        if self.algo == "ppo" and self.reward_type in ("none", "labels"):
            raise ConfigError(f"algo=ppo cannot use reward_type={self.reward_type!r}: PPO scores fresh "
                              "samples; use rm, classifier or callable")
        if self.reward_type == "human":
            if self.algo != "ppo":
                raise ConfigError(f"reward_type=human works with algo=ppo (the step waits for people), not "
                                  f"algo={self.algo}")
            if not self.human_db:
                raise ConfigError("reward_type=human needs human_db: the database of `jprefs label serve --db "
                                  "FILE --mode reward`")
            if self.human_timeout_s <= 0 or self.human_labels < 1:
                raise ConfigError("human_timeout_s must be > 0 and human_labels >= 1")
        if self.algo == "ppo" and self.minibatch_size > self.batch_size:
            raise ConfigError(f"minibatch_size={self.minibatch_size} is larger than batch_size={self.batch_size}; "
                              "fix: make minibatch_size <= batch_size")
        if self.algo in ("dpo", "kto") and self.data in ("builtin:ja-tiny", ""):
            raise ConfigError(f"algo={self.algo} needs preference data: set data= a canonical pairs JSONL "
                              "(e.g. data=builtin:ja-tiny-pairs, or the output of `jprefs data convert`)"
                              + (" or a binary set (prompt/response/label rows)" if self.algo == "kto" else "")
                              + f"; data={self.data!r} is the ILQL text set")
        if self.algo in ("grpo", "rloo"):
            if self.reward_type in ("none", "labels"):
                raise ConfigError(f"algo={self.algo} cannot use reward_type={self.reward_type!r}: it scores fresh "
                                  "samples; use rm, classifier or callable")
            if self.num_generations < 2 or self.batch_size % self.num_generations:
                raise ConfigError(f"algo={self.algo}: batch_size={self.batch_size} must be a multiple of "
                                  f"num_generations={self.num_generations} (>= 2: the group baseline needs two)")
            n_src = 1 + len(self.extra_rewards)
            if self.reward_weights and len(self.reward_weights) != n_src:
                raise ConfigError(f"reward_weights has {len(self.reward_weights)} values for {n_src} reward "
                                  "source(s) (reward_model + extra_rewards); fix: one weight per source")
            for spec in self.extra_rewards:
                kind, _, what = str(spec).partition(":")
                if kind not in ("rm", "classifier", "callable") or not what:
                    raise ConfigError(f"extra_rewards entry {spec!r} is not 'TYPE:SPEC' with TYPE rm, classifier "
                                      "or callable (e.g. 'callable:jprefs.rl.rewards:lexicon_sentiment')")
            if self.temperature == 0:
                # trl samples its rollouts: a greedy group of identical completions has no advantage to learn from
                raise ConfigError(f"algo={self.algo} samples its groups: temperature=0 (greedy) would make every "
                                  f"completion of a group the same\n  fix: temperature > 0 (1.0 is trl's default)")
        elif self.extra_rewards or self.reward_weights:
            raise ConfigError(f"extra_rewards / reward_weights are for grpo and rloo (they sum reward sources over "
                              f"fresh samples); algo={self.algo} would ignore them\n  fix: drop them")
        losses = TRL_LOSS_TYPES.get(self.algo)
        if self.trl_loss_type and (losses is None or self.trl_loss_type not in losses):
            raise ConfigError(f"trl_loss_type={self.trl_loss_type!r}: " + (
                f"algo={self.algo} has no loss_type in trl" if not losses else
                f"trl's {self.algo} takes one of {', '.join(losses)}") + "\n  fix: leave trl_loss_type empty (trl's "
                "default) or pick one of those")
        if self.algo in ("dpo", "kto") and self.prompt_max_tokens >= self.max_length:
            raise ConfigError(f"algo={self.algo}: prompt_max_tokens={self.prompt_max_tokens} leaves no room in "
                              f"max_length={self.max_length} for the answer (trl drops such rows, silently)\n"
                              f"  fix: prompt_max_tokens < max_length")
        if self.algo == "kto" and self.batch_size < 2:
            raise ConfigError("algo=kto needs batch_size >= 2 (its KL estimate pairs each row with another "
                              "of the batch)")
        for name in ("total_steps", "batch_size", "max_new_tokens", "eval_every", "max_length"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"config key '{name}' must be positive, got {getattr(self, name)}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ConfigError(f"config key 'min_new_tokens' must be in [0, max_new_tokens={self.max_new_tokens}], "
                              f"got {self.min_new_tokens}")
        if self.sampler not in ("native", "generate"):
            raise ConfigError(f"config key 'sampler': {self.sampler!r} is not one of native, generate")
        check_ranges(self, {"tau": "(0, 1)", "lr": "> 0", "sft_lr": "> 0", "temperature": ">= 0", "top_p": "(0, 1]",
                            "adam_beta1": "[0, 1)", "adam_beta2": "[0, 1)", "weight_decay": ">= 0",
                            "max_grad_norm": ">= 0", "lora_alpha": "> 0", "gamma": "[0, 1]", "cql_scale": ">= 0",
                            "awac_scale": ">= 0", "alpha": "(0, 1]", "beta": ">= 0", "beta_gen": ">= 0",
                            "cliprange": "> 0", "cliprange_value": "> 0", "vf_coef": ">= 0", "lam": "[0, 1]",
                            "ppo_gamma": "[0, 1]", "init_kl_coef": ">= 0", "target_kl": ">= 0",
                            "cliprange_reward": "> 0"})
        if self.reward_sign == 0:
            raise ConfigError("config key 'reward_sign': 0 would make every reward 0; use 1 (maximise) or -1 "
                              "(minimise)")
        if self.algo == "sft" and self.sft_steps <= 0:
            raise ConfigError("algo=sft needs sft_steps > 0 (e.g. sft_steps=500)")
