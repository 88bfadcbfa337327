"""ILQL loss, GAE, Polyak sync and the KL controller against hand-computed values."""

import math

import pytest

torch = pytest.importorskip("torch")

from jprefs.rl.ilql import ilql_loss, make_heads, zscore, make_ilql_batch  # noqa: E402
from jprefs.rl.ppo import KLController, compute_gae, masked_whiten  # noqa: E402

KW = dict(tau=0.7, gamma=0.9, cql_scale=0.1, awac_scale=1.0)


def _case():
    # B=1, A=2, V=2, one Q head; see the hand computation in each test.
    logits = torch.zeros(1, 2, 2)
    q = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    vs = torch.tensor([[0.5, 1.5, 9.0]])            # the final (terminal) state's 9 must not count
    actions = torch.tensor([[0, 1]])
    rewards = torch.tensor([[0.0, 1.0]])
    nonterminal = torch.tensor([[1.0, 1.0, 0.0]])
    return logits, [q], [q.clone()], vs, actions, rewards, nonterminal


def test_ilql_loss_hand_computed():
    loss, stats = ilql_loss(*_case(), beta=0.0, **KW)
    # Q = [1, 2]; Vnext = [1.5, 0]; targets = [0 + 0.9 * 1.5, 1 + 0] = [1.35, 1]
    l_q = ((1 - 1.35) ** 2 + (2 - 1) ** 2) / 2                       # 0.56125
    # Qhat - V = [0.5, 0.5] >= 0 -> weight tau = 0.7
    l_v = (0.7 * 0.25 + 0.7 * 0.25) / 2                              # 0.175
    l_cql = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-2))) / 2
    l_awac = math.log(2)                                             # uniform LM logits, weight 1
    assert stats["losses/q"] == pytest.approx(l_q, abs=1e-6)
    assert stats["losses/v"] == pytest.approx(l_v, abs=1e-6)
    assert stats["losses/cql"] == pytest.approx(l_cql, abs=1e-6)
    assert stats["losses/awac"] == pytest.approx(l_awac, abs=1e-6)
    assert loss.item() == pytest.approx(l_q + l_v + 0.1 * l_cql + l_awac, abs=1e-6)
    assert stats["values/q1_mean"] == pytest.approx(1.5)
    assert stats["values/v_mean"] == pytest.approx(1.0)


def test_ilql_loss_awac_weight_and_expectile_below():
    logits, qs, tqs, vs, actions, rewards, nt = _case()
    _, stats = ilql_loss(logits, qs, tqs, vs, actions, rewards, nt, beta=1.0, **KW)
    assert stats["values/awac_weight"] == pytest.approx(math.exp(0.5), abs=1e-6)
    assert stats["losses/awac"] == pytest.approx(math.log(2) * math.exp(0.5), abs=1e-6)
    # V above Qhat: weight 1 - tau = 0.3 on (Qhat - V)^2 = [1, 1]
    _, stats = ilql_loss(logits, qs, tqs, torch.tensor([[2.0, 3.0, 0.0]]), actions, rewards, nt, beta=0.0, **KW)
    assert stats["losses/v"] == pytest.approx(0.3, abs=1e-6)


def test_ilql_loss_uses_min_of_target_heads_and_ignores_padding():
    logits, qs, tqs, vs, actions, rewards, nt = _case()
    low = tqs[0] - 1.0
    _, one = ilql_loss(logits, qs, [low], vs, actions, rewards, nt, beta=0.0, **KW)
    _, two = ilql_loss(logits, qs + qs, [tqs[0], low], vs, actions, rewards, nt, beta=0.0, **KW)
    assert two["losses/v"] == pytest.approx(one["losses/v"])
    # A padded second row changes nothing, whatever its values.
    pad = lambda x, v: torch.cat([x, torch.full_like(x, v)], 0)  # noqa: E731
    loss1, _ = ilql_loss(logits, qs, tqs, vs, actions, rewards, nt, beta=0.0, **KW)
    loss2, _ = ilql_loss(pad(logits, 3.0), [pad(qs[0], 5.0)], [pad(tqs[0], -4.0)], pad(vs, 7.0),
                         pad(actions, 1), pad(rewards, 2.0), pad(nt, 0.0), beta=0.0, **KW)
    assert loss2.item() == pytest.approx(loss1.item(), abs=1e-6)


def test_ilql_batch_shaping():
    # ids: BOS p1 | t1 t2 EOS  -> actions t1 t2 EOS predicted from positions 1, 2, 3; final state 4
    b = make_ilql_batch([([0, 5, 6, 7, 0], 2), ([0, 8, 0], 1)], [1.5, -1.0], pad_id=1)
    assert b.actions_ixs.tolist() == [[1, 2, 3], [0, 1, 0]]
    assert b.states_ixs.tolist() == [[1, 2, 3, 4], [0, 1, 2, 0]]
    assert b.actions.tolist() == [[6, 7, 0], [8, 0, 1]]
    assert b.rewards.tolist() == [[0, 0, 1.5], [0, -1.0, 0]]
    assert b.nonterminal.tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]
    z, mean, std = zscore([1.0, 3.0])
    assert z == pytest.approx([-1.0, 1.0]) and mean == 2.0 and std == 1.0


def test_polyak_sync():
    heads = make_heads(4, 6, two_qs=True)
    with torch.no_grad():
        for p in heads.q_heads.parameters():
            p.fill_(1.0)
        for p in heads.target_q_heads.parameters():
            p.fill_(0.0)
    heads.sync_target_q_heads(0.25)
    heads.sync_target_q_heads(0.25)
    for p in heads.target_q_heads.parameters():
        assert torch.allclose(p, torch.full_like(p, 0.4375))        # 1 - 0.75^2
        assert not p.requires_grad
    assert len(heads.q_heads) == 2 and len(heads.target_q_heads) == 2


def test_gae_hand_computed():
    adv, ret = compute_gae(torch.tensor([[1.0, 0.0, 2.0]]), torch.tensor([[0.5, 0.2, 0.1]]), torch.ones(1, 3),
                           gamma=1.0, lam=0.5)
    assert adv[0].tolist() == pytest.approx([1.125, 0.85, 1.9])
    assert ret[0].tolist() == pytest.approx([1.625, 1.05, 2.0])


def test_gae_masked_end_does_not_bootstrap():
    adv, ret = compute_gae(torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[0.5, 0.1, 7.0]]),
                           torch.tensor([[1.0, 1.0, 0.0]]), gamma=0.9, lam=0.8)
    # t=1: 2 - 0.1 = 1.9 (next is padding); t=0: 1 + 0.9*0.1 - 0.5 + 0.9*0.8*1.9 = 1.958
    assert adv[0].tolist() == pytest.approx([1.958, 1.9, 0.0])
    assert ret[0].tolist() == pytest.approx([2.458, 2.0, 0.0])


def test_masked_whiten():
    x = torch.tensor([[1.0, 3.0, 100.0]])
    m = torch.tensor([[1.0, 1.0, 0.0]])
    w = masked_whiten(x, m)
    assert w[0].tolist() == pytest.approx([-1.0, 1.0, 0.0], abs=1e-4)


def test_kl_controller():
    fixed = KLController(0.2, target=None)
    fixed.update(100.0, n=64)
    assert fixed.value == 0.2
    c = KLController(0.1, target=6.0, horizon=100)
    c.update(3.0, n=10)                                              # e = -0.5 -> clipped -0.2
    assert c.value == pytest.approx(0.1 * (1 - 0.2 * 10 / 100))
    c2 = KLController(0.1, target=6.0, horizon=100)
    c2.update(6.6, n=10)                                             # e = 0.1
    assert c2.value == pytest.approx(0.1 * (1 + 0.1 * 10 / 100))


def test_docstring_examples_run():
    import doctest

    import jprefs.rl.ilql
    import jprefs.rl.ppo
    import jprefs.rl.rewards

    for mod in (jprefs.rl.ilql, jprefs.rl.ppo, jprefs.rl.rewards):
        res = doctest.testmod(mod)
        assert res.failed == 0 and res.attempted > 0, mod.__name__
