"""Short training runs on a tiny model with a programmatic reward (count of the letter a):
PPO and ILQL raise the reward, and the same runs with the reward negated lower it."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jprefs.config import load_config  # noqa: E402
from jprefs.rl.texts import TextRow  # noqa: E402
from jprefs.rl.config import RLConfig  # noqa: E402
from jprefs.rl.ilql import evaluate_beta_gen, train_ilql  # noqa: E402
from jprefs.rl.ppo import train_ppo  # noqa: E402

from .conftest import CHARS, count_a, neg_count_a, tiny_gpt2  # noqa: E402

PPO = dict(algo="ppo", reward_type="callable", reward_model="tests.rl.conftest:count_a", total_steps=10,
           batch_size=16, minibatch_size=8, ppo_epochs=4, lr=3e-3, max_new_tokens=8, init_kl_coef=0.01,
           eval_every=100, eval_samples=1, eval_prompts="builtin:ja-tiny-eval", seed=0)


def _ppo(tmp_path, tok, reward, name):
    cfg = load_config(RLConfig, dict(PPO))
    return train_ppo(cfg, tmp_path / name, model=tiny_gpt2(tok), tok=tok, reward_fn=reward,
                     prompts=["", "b", "cd", "efg"])


def _scores(path):
    rows = [json.loads(line) for line in open(path / "metrics.jsonl", encoding="utf-8")]
    return [r["objective/score"] for r in rows if "objective/score" in r], rows


def test_ppo_raises_reward_and_negated_reward_lowers_it(tmp_path, tok):
    _ppo(tmp_path, tok, count_a, "up")
    _ppo(tmp_path, tok, neg_count_a, "down")
    up, rows = _scores(tmp_path / "up")
    down, _ = _scores(tmp_path / "down")
    # count of a: ~0.6 per response at random init
    assert np.mean(up[-3:]) > np.mean(up[:3]) + 0.5, up
    assert np.mean(down[-3:]) > np.mean(down[:3]) + 0.2, down          # -count rises = count falls
    assert -np.mean(down[-3:]) < 0.5 * -np.mean(down[:3]) + 1e-9, down
    kls = [r["objective/kl"] for r in rows if "objective/kl" in r]
    assert kls[0] == pytest.approx(0.0, abs=1e-5)                      # policy == reference at the start
    assert min(kls) > -0.1 and np.mean(kls) > 0                       # never persistently negative
    for key in ("objective/kl_coef", "policy/entropy", "policy/clip_frac", "losses/value", "losses/policy",
                "policy/approx_kl", "time/samples_per_s"):
        assert key in rows[-1]


def test_ppo_adaptive_kl_controller_follows_the_rule(tmp_path, tok):
    cfg = load_config(RLConfig, dict(PPO, total_steps=4, target_kl=0.05, kl_horizon=32, init_kl_coef=0.1))
    train_ppo(cfg, tmp_path / "akl", model=tiny_gpt2(tok), tok=tok, reward_fn=count_a, prompts=["", "b"])
    _, rows = _scores(tmp_path / "akl")
    steps = [r for r in rows if "objective/kl_coef" in r]
    assert steps[0]["objective/kl_coef"] == pytest.approx(0.1)
    for a, b in zip(steps, steps[1:]):          # coef <- coef * (1 + clip(KL / target - 1, +-0.2) * n / H)
        e = min(max(a["objective/kl"] / 0.05 - 1, -0.2), 0.2)
        assert b["objective/kl_coef"] == pytest.approx(a["objective/kl_coef"] * (1 + e * 16 / 32), rel=1e-5)
    assert len({round(r["objective/kl_coef"], 8) for r in steps}) > 1


ILQL_STEPS = 120


def _ilql_rows(n=400, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        text = "".join(rng.choice(list(CHARS), size=int(rng.integers(3, 8))))
        rows.append(TextRow("", text, float(text.count("a"))))
    return rows


def _ilql(tmp_path, tok, sign, name):
    cfg = load_config(RLConfig, dict(algo="ilql", reward_type="labels", reward_model="", total_steps=ILQL_STEPS,
                                     batch_size=32, lr=3e-3, alpha=0.2, steps_for_target_q_sync=1,
                                     max_new_tokens=8, eval_every=1000, eval_samples=1, beta_gen_sweep=[0.0],
                                     eval_prompts="builtin:ja-tiny-eval", seed=0))
    model = tiny_gpt2(tok)
    rows = [TextRow(r.prompt, r.text, sign * r.reward) for r in _ilql_rows()]
    heads = {}

    # capture the trained heads through make_heads
    import jprefs.rl.ilql as ilql

    orig = ilql.make_heads

    def spy(*a, **k):
        heads["h"] = orig(*a, **k)
        return heads["h"]

    ilql.make_heads = spy
    try:
        train_ilql(cfg, tmp_path / name, model=model, tok=tok, rows=rows, eval_reward_fn=count_a)
    finally:
        ilql.make_heads = orig
    return evaluate_beta_gen(model, heads["h"], tok, [""] * 64, count_a, [0.0, 4.0], max_new_tokens=8, top_k=20,
                             temperature=1.0, prompt_max_tokens=8, seed=11)


def test_ilql_steers_towards_reward_and_away_when_negated(tmp_path, tok):
    up = _ilql(tmp_path, tok, 1.0, "up")
    down = _ilql(tmp_path, tok, -1.0, "down")
    base = (up["0.0"]["reward"] + down["0.0"]["reward"]) / 2             # behaviour cloning: ~1/8 a per char
    assert up["4.0"]["reward"] > base + 0.3, (up, down)
    assert down["4.0"]["reward"] < base - 0.2, (up, down)
    assert (tmp_path / "up" / "ilql_heads.safetensors").exists()
