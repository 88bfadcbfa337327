"""min_new_tokens: EOS is forbidden for the first N response tokens, in the sampler and in the
PPO logprobs alike, so a PPO policy cannot raise its reward by stopping early."""

import json
import math

import pytest

torch = pytest.importorskip("torch")

from jprefs.config import load_config  # noqa: E402
from jprefs.errors import ConfigError  # noqa: E402
from jprefs.rl.sampling import sample  # noqa: E402
from jprefs.rl.config import RLConfig  # noqa: E402
from jprefs.rl.ppo import forward_response, train_ppo  # noqa: E402

from .conftest import count_a, tiny_gpt2  # noqa: E402

PROMPTS = ["abc", "h", "defgabc", ""] * 8


def eos_loving_model(tok):
    model = tiny_gpt2(tok)
    with torch.no_grad():                       # EOS likely at every step
        model.transformer.wte.weight[tok.eos_token_id] += 0.5 * model.transformer.wte.weight.abs().max()
        model.lm_head.weight.copy_(model.transformer.wte.weight)
    return model


def test_sampler_forbids_eos_before_min_new_tokens_and_logprobs_agree(tok):
    model = eos_loving_model(tok)
    eos = tok.eos_token_id
    free = sample(model, tok, PROMPTS, max_new_tokens=10, seed=0)
    assert free.response_mask.sum(1).float().mean() < 9            # without the rule, responses end early
    for n in (4, 10):
        s = sample(model, tok, PROMPTS, max_new_tokens=10, seed=0, min_new_tokens=n)
        resp = s.sequences[:, s.prompt_len:]
        assert not (resp[:, :n] == eos).any()
        assert (s.response_mask.sum(1) >= n).all()
        if n == 10:
            assert s.response_mask.all()                           # fixed length
        # forward_response with the same rule gives the sampler's logprobs (PPO ratios and KL start exact)
        with torch.no_grad():
            _, lp, _ = forward_response(model, None, s.sequences, s.attention_mask, s.prompt_len,
                                        need_values=False, min_new=(n, eos))
        m = s.response_mask.bool()
        assert torch.allclose(lp[m], s.logprobs[m], atol=1e-4)
        assert torch.isfinite(lp[m]).all()


def test_ppo_with_min_new_tokens_has_fixed_length_rollouts(tmp_path, tok):
    cfg = load_config(RLConfig, dict(algo="ppo", reward_type="callable", reward_model="tests.rl.conftest:count_a",
                                     total_steps=2, batch_size=8, minibatch_size=4, ppo_epochs=1,
                                     max_new_tokens=6, min_new_tokens=6, eval_every=100, eval_samples=1,
                                     eval_prompts="builtin:ja-tiny-eval", seed=0))
    train_ppo(cfg, tmp_path / "run", model=eos_loving_model(tok), tok=tok, reward_fn=count_a,
              prompts=["", "b", "cd", "efg"])
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl", encoding="utf-8")]
    steps = [r for r in rows if "objective/response_tokens" in r]
    assert [r["objective/response_tokens"] for r in steps] == [6.0, 6.0]
    assert steps[0]["objective/kl"] == pytest.approx(0.0, abs=1e-5)   # policy == reference at the start
    # EOS has probability 0 (logit -inf) in the first min_new_tokens positions: 0 * log 0 counts as 0,
    # so the logged entropy stays finite and positive (it was NaN)
    ent = [r["policy/entropy"] for r in rows if "policy/entropy" in r]
    assert ent and all(math.isfinite(e) and e > 0 for e in ent)


def test_min_new_tokens_is_validated():
    with pytest.raises(ConfigError, match="min_new_tokens"):
        load_config(RLConfig, dict(algo="ppo", reward_type="callable", max_new_tokens=8, min_new_tokens=9))


def test_ilql_eval_samples_and_beta_gen_sweep_keep_min_new_tokens(tmp_path, tok, monkeypatch):
    """The help says every algo's eval samples follow min_new_tokens: ILQL's sampled without it (EOS first)."""
    import jprefs.rl.processors as P
    from jprefs.rl.ilql import train_ilql
    from jprefs.rl.texts import TextRow

    seen, real = [], P.get_sampler

    def spy(name="native"):
        fn = real(name)

        def wrapped(*a, **k):
            seen.append(k.get("min_new_tokens", 0))
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(P, "get_sampler", spy)
    cfg = load_config(RLConfig, dict(algo="ilql", reward_type="labels", total_steps=2, batch_size=2,
                                     max_new_tokens=6, min_new_tokens=5, eval_every=1, eval_samples=1,
                                     beta_gen_sweep=[0.0, 1.0], eval_prompts="builtin:ja-tiny-eval", seed=0))
    rows = [TextRow("", "abab", 1.0), TextRow("", "cdcd", 0.0), TextRow("", "efef", 0.5)]
    train_ilql(cfg, tmp_path / "run", model=eos_loving_model(tok), tok=tok, rows=rows, eval_reward_fn=count_a)
    assert len(seen) >= 4 and set(seen) == {5}           # every eval and every sweep sample


def test_lora_is_refused_where_it_would_be_ignored():
    for algo, extra in (("ilql", dict(reward_type="labels")), ("sft", dict(reward_type="none"))):
        with pytest.raises(ConfigError, match="trains the full model"):
            load_config(RLConfig, dict(algo=algo, lora_r=4, **extra))
