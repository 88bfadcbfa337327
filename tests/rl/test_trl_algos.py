"""``algo: dpo | kto | grpo | rloo`` through trl's trainers on the tests' character-level GPT-2:

- GRPO and RLOO raise the count of the letter a (``tests.rl.conftest:count_a``) in fixed-prompt
  samples against the starting policy, and lower it with ``reward_sign: -1``;
- DPO and KTO raise the implicit reward margin (policy-vs-reference log-ratio of chosen minus
  that of rejected) on their training pairs, and swapping chosen/rejected lowers it;
- the run folder is the one every ``jprefs rl`` run writes; a finished run is left alone;
- a run killed after a checkpoint and rerun with the same command ends with the weights of an
  uninterrupted run;
- bad configs are one clear ConfigError.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from jprefs.config import load_config  # noqa: E402
from jprefs.errors import ConfigError, JprefsError  # noqa: E402
from jprefs.rl.config import RLConfig  # noqa: E402
from jprefs.rl.runner import run  # noqa: E402

from .conftest import CHARS, char_tokenizer, count_a, tiny_gpt2  # noqa: E402

PROMPTS = ["ab", "cd", "ef", "gh", "bc", "de", "fg", "ha"]
# Chosen answers heavy in a, rejected heavy in h, sharing a tail: the preference is learnable.
PAIRS = [(p, "aa" + CHARS[i % 8] + "a", "hh" + CHARS[i % 8] + "g") for i, p in enumerate(PROMPTS)]
BASE = dict(torch_threads=1, seed=0, eval_samples=4, max_new_tokens=8, prompt_max_tokens=8,
            reward_type="callable", reward_model="tests.rl.conftest:count_a", temperature=1.0)
ONLINE = dict(BASE, total_steps=12, batch_size=16, num_generations=4, lr=0.01, eval_every=6)
OFFLINE = dict(BASE, total_steps=12, batch_size=8, lr=0.01, eval_every=6, trl_beta=0.1, max_length=48)
_CRASH = {"at": 0, "calls": 0}


def crashing_count_a(prompts, responses):
    """count_a; with _CRASH['at'] = K the K-th call raises (a kill mid-run, after a checkpoint)."""
    _CRASH["calls"] += 1
    if _CRASH["at"] and _CRASH["calls"] == _CRASH["at"]:
        raise KeyboardInterrupt("simulated kill")
    return count_a(prompts, responses)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The char policy saved as a model folder, a prompt file and two pairs files (one swapped)."""
    d = tmp_path_factory.mktemp("trl_inputs")
    tok = char_tokenizer()
    model = tiny_gpt2(tok)
    model.save_pretrained(d / "policy", safe_serialization=True)
    tok.save_pretrained(d / "policy")
    (d / "prompts.txt").write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    # 12 prompts, 4 a step: 3 steps an epoch, so checkpoint-4 falls inside an epoch (8: at its end).
    (d / "prompts12.txt").write_text("\n".join(PROMPTS + ["aa", "bb", "cc", "dd"]) + "\n", encoding="utf-8")
    # The same policy with a chat template: trl's conversational layouts.
    tok.chat_template = ("{% for m in messages %}{% if m['role'] == 'user' %}{{ 'q' + m['content'] }}{% else %}"
                         "{{ m['content'] }}{% endif %}{% endfor %}")
    model.save_pretrained(d / "chat_policy", safe_serialization=True)
    tok.save_pretrained(d / "chat_policy")
    with open(d / "binary.jsonl", "w", encoding="utf-8") as f:          # the pairs as a binary set
        for i, (p, c, r) in enumerate(PAIRS):
            for resp, label in ((c, 1), (r, 0)):
                f.write(json.dumps({"prompt": [{"role": "user", "content": p}], "response": resp,
                                    "label": label}) + "\n")
    for name, swap in (("pairs.jsonl", False), ("swapped.jsonl", True)):
        with open(d / name, "w", encoding="utf-8") as f:
            for i, (p, c, r) in enumerate(PAIRS):
                c, r = (r, c) if swap else (c, r)
                f.write(json.dumps({"id": f"p{i}", "prompt": [{"role": "user", "content": p}],
                                    "chosen": c, "rejected": r}) + "\n")
    return d


def _cfg(files, **over):
    base = dict(policy=str(files / "policy"), prompts=str(files / "prompts.txt"),
                eval_prompts=str(files / "prompts.txt"), data=str(files / "pairs.jsonl"))
    return load_config(RLConfig, {**base, **over})


def _samples(out):
    return [json.loads(x) for x in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]


def _a_count(out, step):
    rows = [r for r in _samples(out) if r["step"] == step]
    assert rows, step
    return sum(r["response"].count("a") for r in rows) / len(rows)


def _margin(out, pairs_file):
    """Mean implicit reward margin (no beta) of the saved policy vs the saved reference on the
    pairs of ``pairs_file``, oriented as that file's chosen/rejected; tokenised as trl does
    (standard layout: prompt ids + answer ids + EOS), the prompt as the policy is sampled from."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jprefs.data.io import load_pairs
    from jprefs.data.schema import render_prompt

    tok = AutoTokenizer.from_pretrained(out / "reference")
    pol = AutoModelForCausalLM.from_pretrained(out / "policy").eval()
    ref = AutoModelForCausalLM.from_pretrained(out / "reference").eval()

    def logp(m, prompt, answer):
        p = tok(prompt)["input_ids"]
        a = tok(answer)["input_ids"] + [tok.eos_token_id]
        ids = torch.tensor([p + a])
        with torch.no_grad():
            lp = torch.log_softmax(m(ids).logits[0, :-1].float(), -1)
        tgt = ids[0, 1:]
        return float(lp[torch.arange(len(tgt)), tgt][len(p) - 1:].sum())

    out_m = []
    for r in load_pairs(pairs_file):
        prompt = render_prompt(r.prompt)
        c = logp(pol, prompt, r.chosen) - logp(ref, prompt, r.chosen)
        j = logp(pol, prompt, r.rejected) - logp(ref, prompt, r.rejected)
        out_m.append(c - j)
    return sum(out_m) / len(out_m)


@pytest.fixture(scope="module")
def grpo_run(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("grpo") / "run"
    summary = run(_cfg(files, algo="grpo", **ONLINE), out)
    return out, summary


# ---------------------------------------------------------------- online: GRPO, RLOO

def test_grpo_raises_the_reward(grpo_run):
    out, summary = grpo_run
    before, after = _a_count(out, 0), _a_count(out, 12)
    print(f"grpo count_a: {before:.3f} -> {after:.3f}")
    assert after > before + 0.5, (before, after)
    assert summary["objective/score_last"] > summary["objective/score_first"]


@pytest.mark.parametrize("algo,sign", [("grpo", -1.0), ("rloo", 1.0), ("rloo", -1.0)])
def test_online_algos_follow_the_reward_sign(files, tmp_path, algo, sign):
    over = dict(ONLINE, reward_sign=sign)
    if algo == "rloo":
        over["trl_beta"] = 0.05                         # RLOO's reference: the saved starting policy
    out = tmp_path / "run"
    run(_cfg(files, algo=algo, **over), out)
    before, after = _a_count(out, 0), _a_count(out, 12)
    print(f"{algo} reward_sign={sign} count_a: {before:.3f} -> {after:.3f}")
    if sign > 0:
        assert after > before + 0.5, (before, after)
    else:
        assert after <= before / 3, (before, after)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    if algo == "rloo":
        assert any(r.get("objective/kl_per_token", 0) > 0 for r in rows)    # the KL term is live


# ---------------------------------------------------------------- offline: DPO, KTO

@pytest.mark.parametrize("algo", ["dpo", "kto"])
def test_preference_algos_raise_the_margin_and_swapping_lowers_it(files, tmp_path, algo):
    up, down = tmp_path / "up", tmp_path / "down"
    run(_cfg(files, algo=algo, **OFFLINE), up)
    run(_cfg(files, algo=algo, **dict(OFFLINE, data=str(files / "swapped.jsonl"))), down)
    m_up, m_down = _margin(up, files / "pairs.jsonl"), _margin(down, files / "pairs.jsonl")
    print(f"{algo} margin on the pairs: trained {m_up:+.3f}, trained on swapped {m_down:+.3f}")
    assert m_up > 1.0 and m_down < -1.0, (m_up, m_down)
    rows = [json.loads(x) for x in (up / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    if algo == "dpo":                                    # trl's own margin agrees in sign
        assert rows[-1]["rewards/margins"] > 0 and rows[-1]["rewards/accuracies"] > 0.5


@pytest.mark.parametrize("algo", ["dpo", "grpo"])
def test_lora_trains_an_adapter_and_saves_the_merged_policy(files, tmp_path, algo):
    pytest.importorskip("peft")
    from safetensors.torch import load_file

    out = tmp_path / "run"
    over = dict(OFFLINE if algo == "dpo" else ONLINE, lora_r=8, lora_alpha=16.0, lr=0.05 if algo == "dpo" else 0.2)
    run(_cfg(files, algo=algo, **over), out)
    w = load_file(str(out / "policy" / "model.safetensors"))
    assert not any("lora" in k for k in w)                        # merged into plain GPT-2 weights
    if algo == "dpo":
        m = _margin(out, files / "pairs.jsonl")
        print(f"dpo lora margin {m:+.3f}")
        assert m > 1.0, m
    else:
        # LoRA on this 32-wide model learns slowly: measured 0.375 -> ~0.7 training reward in 12 steps.
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
        first, last4 = rows[1]["objective/score"], sum(r["objective/score"] for r in rows[-4:]) / 4
        before, after = _a_count(out, 0), _a_count(out, 12)
        print(f"grpo lora training reward {first:.3f} -> {last4:.3f} (last 4 steps); eval count_a {before:.3f} -> {after:.3f}")
        assert last4 > first + 0.2 and after > before, (first, last4, before, after)


def test_chat_template_policies_get_the_conversational_layouts(files, tmp_path):
    """DPO and GRPO with a tokenizer that has a chat template: trl applies it (conversational rows)."""
    from jprefs.rl.trl_algos import preference_rows, prompt_rows
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(files / "chat_policy")
    cfg = _cfg(files, algo="dpo", **OFFLINE)
    assert preference_rows(cfg, tok)[0]["chosen"] == [{"role": "assistant", "content": PAIRS[0][1]}]
    assert prompt_rows(cfg, tok)[0]["prompt"] == [{"role": "user", "content": PROMPTS[0]}]
    dpo, grpo = tmp_path / "dpo", tmp_path / "grpo"
    run(_cfg(files, algo="dpo", **dict(OFFLINE, policy=str(files / "chat_policy"))), dpo)
    last = [json.loads(x) for x in (dpo / "metrics.jsonl").read_text(encoding="utf-8").splitlines()][-1]
    print(f"dpo chat-template: trl rewards/margins {last['rewards/margins']:.3f}, accuracy {last['rewards/accuracies']}")
    assert last["rewards/margins"] > 1.0 and last["rewards/accuracies"] == 1.0
    run(_cfg(files, algo="grpo", **dict(ONLINE, policy=str(files / "chat_policy"))), grpo)
    rows = [json.loads(x) for x in (grpo / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    first, last4 = rows[1]["objective/score"], sum(r["objective/score"] for r in rows[-4:]) / 4
    print(f"grpo chat-template: training reward {first:.3f} -> {last4:.3f}")
    assert last4 > first + 1.0, (first, last4)


def test_chat_policies_eval_samples_come_from_the_chat_context(files, tmp_path, monkeypatch):
    """A chat policy trains (trl's conversational rows) on its template's rendering of each prompt; its
    eval samples must be drawn from that context too, as `jprefs eval policy` draws them, not from the
    bare prompt text it never trained on."""
    import jprefs.rl.processors as processors
    from transformers import AutoTokenizer

    from jprefs.eval.policy import render_prompt_for
    from jprefs.eval.prompts import EvalPrompt
    from jprefs.rl.trl_algos import eval_contexts

    seen: list[list[str]] = []
    real = processors.get_sampler

    def recording(name="native"):
        fn = real(name)

        def sampler(model, tok, texts, **kw):
            seen.append(list(texts))
            return fn(model, tok, texts, **kw)
        return sampler

    monkeypatch.setattr(processors, "get_sampler", recording)
    chat = AutoTokenizer.from_pretrained(files / "chat_policy")
    want = ["q" + p for p in PROMPTS]                        # the test template: 'q' + the user turn
    assert eval_contexts(chat, PROMPTS) == want
    assert want == [render_prompt_for(chat, EvalPrompt(id="", text=p), True) for p in PROMPTS]
    assert eval_contexts(AutoTokenizer.from_pretrained(files / "policy"), PROMPTS) == PROMPTS
    out = tmp_path / "dpo"
    run(_cfg(files, algo="dpo", **dict(OFFLINE, total_steps=2, eval_every=2, eval_samples=1,
                                       policy=str(files / "chat_policy"))), out)
    assert seen and all(t == want for t in seen), seen[:1]
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["prompt"] for r in samples} <= set(PROMPTS)    # the record keeps the prompt as given


def test_several_reward_sources_are_summed_with_weights(files, tmp_path):
    """count_a (weight 1) + neg_count_a (weight 2) = -count_a: GRPO lowers the letter a."""
    out = tmp_path / "run"
    run(_cfg(files, algo="grpo", **dict(ONLINE, extra_rewards=["callable:tests.rl.conftest:neg_count_a"],
                                        reward_weights=[1.0, 2.0])), out)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert "rewards/count_a/mean" in rows[1] and "rewards/neg_count_a/mean" in rows[1]
    assert rows[1]["rewards/neg_count_a/mean"] == -rows[1]["rewards/count_a/mean"]
    before, after = _a_count(out, 0), _a_count(out, 12)
    print(f"grpo count_a x1 + neg_count_a x2: count_a {before:.3f} -> {after:.3f}")
    assert after <= before / 3, (before, after)
    with pytest.raises(ConfigError, match="reward_weights has 1 values for 2"):
        _cfg(files, algo="grpo", **dict(ONLINE, extra_rewards=["callable:tests.rl.conftest:neg_count_a"],
                                        reward_weights=[1.0]))


def test_kto_takes_a_binary_set(files, tmp_path):
    from jprefs.rl.trl_algos import preference_rows

    cfg = _cfg(files, algo="kto", **dict(OFFLINE, data=str(files / "binary.jsonl")))
    rows = preference_rows(cfg, char_tokenizer())
    assert len(rows) == 16 and sum(r["label"] for r in rows) == 8
    assert {r["completion"] for r in rows if r["label"]} == {c for _, c, _ in PAIRS}
    run(cfg, tmp_path / "run")
    m = _margin(tmp_path / "run", files / "pairs.jsonl")
    print(f"kto on the binary set: margin {m:+.3f}")
    assert m > 1.0, m


# ---------------------------------------------------------------- run folder, finished run

def test_run_folder_layout_and_a_finished_run_is_left_alone(grpo_run, files):
    out, summary = grpo_run
    for name in ("config.yaml", "metrics.jsonl", "samples.jsonl", "curves.png", "summary.json", "done.json",
                 "policy/model.safetensors", "policy/tokenizer.json", "reference/model.safetensors"):
        assert (out / name).is_file(), name
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in rows] == list(range(13))
    assert "eval/reward" in rows[0] and "eval/reward" in rows[6] and "eval/reward" in rows[12]
    for r in rows[1:]:
        assert r["objective/score"] == r["reward"]             # jprefs' name beside trl's
        assert "loss" in r and "rewards/count_a/mean" in r and "time/elapsed_s" in r
    assert sorted({r["step"] for r in _samples(out)}) == [0, 6, 12]
    assert summary["trainer"].startswith("trl 1.16")

    # jprefs' trainers send no usage ping and write no model card (jprefs/rl/trl_algos.py:jprefs_trainer)
    import trl

    from jprefs.rl.trl_algos import jprefs_trainer

    for cls in (trl.DPOTrainer, trl.KTOTrainer, trl.GRPOTrainer, trl.RLOOTrainer):
        t = jprefs_trainer(cls)
        assert issubclass(t, cls) and t.__name__ == cls.__name__
        assert t._send_telemetry(None) is None and t.create_model_card(None) is None
    stamp = (out / "metrics.jsonl").stat().st_mtime_ns
    again = run(_cfg(files, algo="grpo", **ONLINE), out)
    assert again == summary and (out / "metrics.jsonl").stat().st_mtime_ns == stamp


# ---------------------------------------------------------------- resume after a kill

@pytest.mark.parametrize("algo,prompts", [("grpo", "prompts.txt"), ("grpo", "prompts12.txt"), ("dpo", "")])
def test_resume_after_a_kill_equals_an_uninterrupted_run(files, tmp_path, algo, prompts):
    from safetensors.torch import load_file

    over = dict(ONLINE if algo == "grpo" else OFFLINE, total_steps=8, save_every=4, eval_every=4,
                reward_model="tests.rl.test_trl_algos:crashing_count_a")
    if prompts:
        over["prompts"] = str(files / prompts)
    cfg = _cfg(files, algo=algo, **over)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    _CRASH.update(at=0, calls=0)
    run(cfg, whole)
    # The reward is called once per eval (step 0, 4, 8) and, in GRPO, once per step: die past step 4.
    _CRASH.update(at=9 if algo == "grpo" else 3, calls=0)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, killed)
    assert (killed / "checkpoint-4" / "resume" / "state.json").is_file() and not (killed / "done.json").exists()
    assert not (killed / "README.md").exists()                     # no trl model card in the run folder
    _CRASH.update(at=0, calls=0)
    with pytest.raises(JprefsError, match="holds a checkpoint"):           # another config: refused
        run(_cfg(files, algo=algo, **dict(over, lr=0.02)), killed)
    run(cfg, killed)                                    # the same command again: continues from step 4
    a, b = load_file(str(whole / "policy" / "model.safetensors")), load_file(str(killed / "policy" / "model.safetensors"))
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"{algo} resume: max abs weight difference {diff:.3g}")
    assert a.keys() == b.keys() and diff == 0.0
    rows_w = [json.loads(x) for x in (whole / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    rows_k = [json.loads(x) for x in (killed / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in rows_k] == list(range(9))
    assert [r.get("loss") for r in rows_k] == [r.get("loss") for r in rows_w]
    assert [r.get("eval/reward") for r in rows_k] == [r.get("eval/reward") for r in rows_w]


# ---------------------------------------------------------------- bad configs

def test_a_kill_while_trl_saves_a_checkpoint_keeps_the_previous_one(files, tmp_path, monkeypatch):
    """transformers deletes older checkpoints (save_total_limit) inside _save_checkpoint, before jprefs'
    on_save marks the new one complete: a kill between the two left no resumable checkpoint and the rerun
    started again from step 0. The older one stays until the new one is marked."""
    from transformers import Trainer

    over = dict(ONLINE, total_steps=8, save_every=4, eval_every=4)
    out = tmp_path / "run"
    real, calls = Trainer._save_checkpoint, {"n": 0}

    def save_then_die(self, model, trial):
        real(self, model, trial)
        calls["n"] += 1
        if calls["n"] == 2:                                  # checkpoint-8 written, not yet marked
            raise KeyboardInterrupt("killed after transformers' save")

    monkeypatch.setattr(Trainer, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(_cfg(files, algo="grpo", **over), out)
    assert (out / "checkpoint-4" / "resume" / "state.json").is_file()
    assert not (out / "checkpoint-8" / "resume" / "state.json").exists()
    monkeypatch.setattr(Trainer, "_save_checkpoint", real)
    run(_cfg(files, algo="grpo", **over), out)              # continues from step 4
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in rows] == list(range(9))
    assert sorted(d.name for d in out.glob("checkpoint-*")) == ["checkpoint-8"]      # one kept, as before


def test_bad_configs_are_one_clear_error(files, tmp_path):
    with pytest.raises(ConfigError, match="algo=dpo needs preference data"):
        load_config(RLConfig, dict(algo="dpo"))
    with pytest.raises(ConfigError, match="neither canonical pairs"):
        run(_cfg(files, algo="dpo", **dict(OFFLINE, data=str(files / "prompts.txt"))), tmp_path / "a")
    with pytest.raises(ConfigError, match="multiple of num_generations"):
        load_config(RLConfig, dict(algo="grpo", batch_size=6, num_generations=4))
    with pytest.raises(ConfigError, match="cannot use reward_type='labels'"):
        load_config(RLConfig, dict(algo="rloo", reward_type="labels"))
    # errors trl raised only at the first step, after the warm start (TypeError, UnboundLocalError), or ignored
    for over, msg in ((dict(algo="rloo", trl_loss_type="grpo"), "has no loss_type"),
                      (dict(algo="kto", trl_loss_type="sigmoid", data=str(files / "pairs.jsonl")), "kto, apo_zero"),
                      (dict(algo="dpo", trl_loss_type="bogus", data=str(files / "pairs.jsonl")), "sigmoid, hinge"),
                      (dict(algo="grpo", temperature=0.0), "temperature=0"),
                      (dict(algo="grpo", extra_rewards=["callable"]), "is not 'TYPE:SPEC'"),
                      (dict(algo="dpo", extra_rewards=["callable:a:b"], data=str(files / "pairs.jsonl")),
                       "are for grpo and rloo")):
        with pytest.raises(ConfigError, match=msg):
            load_config(RLConfig, over)
    assert load_config(RLConfig, dict(algo="grpo", trl_loss_type="dr_grpo")).trl_loss_type == "dr_grpo"


def test_every_trl_recipe_loads():
    from tests.conftest import REPO

    names = sorted(p.name for p in (REPO / "rl" / "recipes").glob("*.yaml")
                   if p.name.split("-")[0] in ("dpo", "kto", "grpo", "rloo"))
    assert names == ["dpo-hh-gpu.yaml", "dpo-tiny-cpu.yaml", "grpo-hh-gpu.yaml", "grpo-tiny-cpu.yaml",
                     "kto-tiny-cpu.yaml", "rloo-tiny-cpu.yaml"]
    for n in names:
        cfg = load_config(RLConfig, str(REPO / "rl" / "recipes" / n))
        assert cfg.algo == n.split("-")[0] and not cfg.trust_remote_code


# ---------------------------------------------------------------- the tiny recipes through the CLI

@pytest.mark.parametrize("algo", ["dpo", "kto", "grpo", "rloo"])
def test_tiny_recipes_run_through_the_cli(tmp_path, algo):
    """Each tiny recipe, shrunk (fewer warm-start and trl steps, a smaller batch), via `jprefs rl`."""
    from jprefs.cli import main
    from tests.conftest import REPO

    out = tmp_path / algo
    small = ["sft_steps=20", "total_steps=2", "eval_every=2", "eval_samples=1", "max_new_tokens=6",
             "batch_size=8", "tiny_vocab_size=300", "tiny_n_embd=32"]
    assert main(["rl", str(REPO / f"rl/recipes/{algo}-tiny-cpu.yaml"), "-o", str(out), *small]) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["algo"] == algo and summary["trainer"].split()[2].lower().startswith(algo)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2] and "loss" in rows[1]
    assert (out / "policy" / "model.safetensors").is_file() and (out / "done.json").is_file()


@pytest.mark.slow
def test_two_processes_train_one_data_parallel_run(tmp_path):
    """`torchrun --nproc_per_node 2` (gloo, CPU): trl's Trainer joins jprefs' process group (2 processes,
    twice the tokens a step), the main process alone writes the run folder. ~20 s: marked slow."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO
    from tests.distributed import free_port

    out = tmp_path / "mp"
    args = [str(REPO / "rl/recipes/grpo-tiny-cpu.yaml"), "tiny_n_embd=16", "tiny_n_layer=1", "tiny_n_head=2",
            "tiny_vocab_size=300", "sft_steps=4", "total_steps=4", "batch_size=8", "eval_every=2", "device=cpu",
            "eval_samples=1", "max_new_tokens=4", "reward_model=tests.rl.conftest:count_a"]
    env = dict(os.environ, OMP_NUM_THREADS="1", JPREFS_NO_PROGRESS="1", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                        str(free_port()), "-m", "jprefs.cli", "rl", *args, "-o", str(out)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["processes"] == 2
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]            # one writer, no step twice
    one = tmp_path / "one"
    run(load_config(RLConfig, str(REPO / "rl/recipes/grpo-tiny-cpu.yaml"), args[1:]), one)
    rows1 = [json.loads(x) for x in (one / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows[1]["num_tokens"] > 1.5 * rows1[1]["num_tokens"]     # 2 x batch_size completions a step


def test_grpo_with_a_jprefs_reward_model(files, tmp_path):
    """reward_type=rm: the RewardModel scores trl's completions (the same make_reward as PPO); the
    eval samples' logged reward is the model's own score of them."""
    from jprefs.classifiers.reward_model import RewardModel
    from tests.classifiers.conftest import train_tiny_rm

    rm_dir = train_tiny_rm(tmp_path / "rm")
    out = tmp_path / "run"
    run(_cfg(files, algo="grpo", **dict(ONLINE, total_steps=2, eval_every=2, reward_type="rm",
                                        reward_model=str(rm_dir))), out)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert "rewards/rm/mean" in rows[1] and rows[1]["objective/score"] == rows[1]["rewards/rm/mean"]
    final = [r for r in _samples(out) if r["step"] == 2]
    rm = RewardModel.from_pretrained(str(rm_dir))
    again = rm.score([r["prompt"] for r in final], [r["response"] for r in final])
    assert max(abs(a - r["reward"]) for a, r in zip(again, final)) < 1e-4


@pytest.mark.parametrize("algo", ["grpo", "rloo"])
def test_min_new_tokens_holds_in_trl_rollouts(files, tmp_path, algo):
    """min_new_tokens = max_new_tokens: every training rollout trl generates has full length (EOS is
    forbidden there, as in PPO), so a policy cannot win by stopping early; without it some stop."""
    over = dict(ONLINE, total_steps=2, eval_every=2)
    lengths = {}
    for mn in (0, 8):
        out = tmp_path / f"run{mn}"
        run(_cfg(files, algo=algo, min_new_tokens=mn, **over), out)
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
        lengths[mn] = [r["completions/min_length"] for r in rows if "completions/min_length" in r]
        assert lengths[mn], rows
    assert all(v == 8 for v in lengths[8]), lengths
    assert min(lengths[0]) < 8, lengths          # the char policy does stop early on its own


def test_preference_prompts_are_the_contexts_the_policy_is_sampled_from(files):
    """A policy without a chat template is sampled from the bare prompt text (PPO, GRPO, eval samples);
    DPO and KTO must train on that same text, not on an assistant-cue rendering it never sees."""
    from transformers import AutoTokenizer

    from jprefs.rl.texts import load_prompts
    from jprefs.rl.trl_algos import preference_rows

    import torch

    from jprefs.rl.policies import encode_prompts
    from jprefs.rl.trl_algos import bos_text, prompt_rows

    tok = AutoTokenizer.from_pretrained(files / "policy")
    sampled = load_prompts(str(files / "prompts.txt"))
    bos = bos_text(tok)
    assert bos and tok.bos_token_id is not None          # this tokenizer adds no BOS of its own
    for algo in ("dpo", "kto"):
        rows = preference_rows(_cfg(files, algo=algo, **OFFLINE), tok)
        assert sorted({r["prompt"] for r in rows}) == sorted(bos + p for p in sampled), (algo, rows[:2])
    # trl tokenizes a standard prompt with the tokenizer's defaults: the ids are the sampler's, BOS first
    for r in prompt_rows(_cfg(files, algo="grpo", **ONLINE), tok):
        ids, mask = encode_prompts(tok, [r["prompt"][len(bos):]], 64, torch.device("cpu"))
        assert tok(text=r["prompt"])["input_ids"] == ids[0][mask[0].bool()].tolist()
    conv = preference_rows(_cfg(files, algo="dpo", **OFFLINE), AutoTokenizer.from_pretrained(files / "chat_policy"))
    assert conv[0]["prompt"] == [{"role": "user", "content": PROMPTS[0]}]


def test_trl_rows_cut_prompts_to_prompt_max_tokens_as_the_sampler_does(files, tmp_path):
    """prompt_max_tokens reached no trl trainer: a long prompt ran GRPO past the model's positions
    (IndexError) and made DPO drop rows silently."""
    from transformers import AutoTokenizer

    from jprefs.rl.trl_algos import bos_text, preference_rows, prompt_rows

    tok = AutoTokenizer.from_pretrained(files / "policy")
    bos = bos_text(tok)
    long = tmp_path / "long.txt"
    text, short = PROMPTS[0] * 6, PROMPTS[1][:2]
    long.write_text(text + "\n" + short + "\n", encoding="utf-8")
    rows = prompt_rows(_cfg(files, algo="grpo", **dict(ONLINE, prompts=str(long), prompt_max_tokens=8)), tok)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok(rows[0]["prompt"][len(bos):], add_special_tokens=False)["input_ids"] == ids[-8:] and len(ids) > 8
    assert rows[1]["prompt"] == bos + short
    for r in preference_rows(_cfg(files, algo="dpo", **dict(OFFLINE, prompt_max_tokens=4)), tok):
        assert len(tok(r["prompt"][len(bos):], add_special_tokens=False)["input_ids"]) <= 4
    with pytest.raises(ConfigError, match="leaves no room"):
        load_config(RLConfig, dict(algo="dpo", data=str(files / "pairs.jsonl"), max_length=16, prompt_max_tokens=16))
