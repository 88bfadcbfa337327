"""Length debiasing: each loss against hand-computed values, the data-side options, and a constructed
data set where plain Bradley-Terry learns length and the debiased objectives do not."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jprefs.classifiers.debias import counterfactual_pairs, length_balance_weights
from jprefs.classifiers.losses import bradley_terry_loss, length_correlation_penalty, odin_loss, pearson
from jprefs.classifiers.losses.correlation import REWARD_VAR_FLOOR

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sig(x):
    return 1 / (1 + math.exp(-x))


def _pearson_floor(x, y, floor=REWARD_VAR_FLOOR):
    x, y = np.asarray(x, float) - np.mean(x), np.asarray(y, float) - np.mean(y)
    return float((x * y).sum() / math.sqrt(((x ** 2).sum() + floor * len(x)) * (y ** 2).sum()))


def test_weighted_bradley_terry_hand_computed():
    rc, rr, w = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]), torch.tensor([3.0, 1.0])
    expect = (3 * -math.log(_sig(1.0)) + 1 * -math.log(_sig(0.0))) / 4
    assert bradley_terry_loss(rc, rr, weights=w).item() == pytest.approx(expect, rel=1e-6)
    assert bradley_terry_loss(rc, rr, weights=torch.ones(2)).item() == pytest.approx(bradley_terry_loss(rc, rr).item())


def test_correlation_penalty_hand_computed():
    r, lengths = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 100.0, 1000.0])
    L = [math.log(11), math.log(101), math.log(1001)]
    # by hand: mean(L) = 4.6405; centred r = -1, 0, 1; centred L = -2.2426, -0.0253, 2.2680
    cov = -1 * (L[0] - sum(L) / 3) + 1 * (L[2] - sum(L) / 3)
    var_l = sum((x - sum(L) / 3) ** 2 for x in L)
    expect = cov / math.sqrt((2 + REWARD_VAR_FLOOR * 3) * var_l)
    assert length_correlation_penalty(r, lengths).item() == pytest.approx(expect, rel=1e-5)
    assert expect == pytest.approx(0.9925, abs=1e-4)
    # the sign does not matter (absolute value); without the floor it is Pearson's r
    assert length_correlation_penalty(-r, lengths).item() == pytest.approx(expect, rel=1e-5)
    assert pearson(r, torch.log1p(lengths), floor=0.0).item() == pytest.approx(
        float(np.corrcoef([1, 2, 3], np.log1p([10, 100, 1000]))[0, 1]), rel=1e-5)
    # constant lengths or one response: nothing to decorrelate, and the graph survives
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    z = length_correlation_penalty(x, torch.tensor([5.0, 5.0]))
    assert z.item() == 0.0
    z.backward()
    assert x.grad is not None
    with pytest.raises(ValueError, match="differ in shape"):
        length_correlation_penalty(r, lengths[:2])


def test_the_variance_floor_keeps_the_gradient_bounded_for_rewards_that_barely_vary():
    lengths = torch.tensor([10.0, 50.0, 200.0, 900.0])
    for scale in (1e-4, 1.0):
        r = (torch.tensor([0.3, -0.1, 0.4, 0.2]) * scale).requires_grad_(True)
        length_correlation_penalty(r, lengths).backward()
        g = r.grad.abs().max().item()
        assert g < 5.0, (scale, g)                  # without the floor: ~1/scale = 1e4 at scale 1e-4


def test_odin_loss_hand_computed():
    rq_c, rq_r = torch.tensor([1.0, 0.5]), torch.tensor([0.0, 0.7])
    rl_c, rl_r = torch.tensor([0.2, 0.1]), torch.tensor([0.3, -0.2])
    lc, lr = torch.tensor([100.0, 20.0]), torch.tensor([300.0, 10.0])
    W = torch.tensor([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0]])      # w_q . w_l = 0.5 - 2 = -1.5
    rank = -(math.log(_sig(1.2 - 0.3)) + math.log(_sig(0.6 - 0.5))) / 2
    L = np.log1p([100, 20, 300, 10])
    rho_q = _pearson_floor([1.0, 0.5, 0.0, 0.7], L)
    rho_l = _pearson_floor([0.2, 0.1, 0.3, -0.2], L)
    expect = rank + 2.0 * (abs(rho_q) - rho_l) + 0.5 * 1.5
    loss, parts = odin_loss(rq_c, rq_r, rl_c, rl_r, lc, lr, W, length_weight=2.0, orth_weight=0.5)
    assert loss.item() == pytest.approx(expect, rel=1e-5)
    assert parts["rank"] == pytest.approx(rank, rel=1e-5) and parts["orth"] == pytest.approx(1.5)
    assert parts["rho_quality"] == pytest.approx(rho_q, rel=1e-5)
    # no head weight: no orthogonality term
    loss2, _ = odin_loss(rq_c, rq_r, rl_c, rl_r, lc, lr, None, length_weight=2.0, orth_weight=0.5)
    assert loss2.item() == pytest.approx(expect - 0.75, rel=1e-5)


def test_length_balance_weights_hand_computed():
    # chosen longer in pairs 1 and 2, shorter in pair 0, equal in pair 3
    w = length_balance_weights([10, 50, 30, 7], [20, 10, 5, 7])
    assert w == [1.5, 0.75, 0.75, 1.0]
    lc, lr = np.array([10, 50, 30]), np.array([20, 10, 5])
    ww = np.array(w[:3])
    # on the weighted pairs, "the longer answer wins" scores exactly 0.5
    assert float((ww * (lc > lr)).sum() / ww.sum()) == 0.5
    assert length_balance_weights([5, 6], [1, 2]) == [1.0, 1.0]      # one kind only: nothing to balance


def test_counterfactual_pairs_are_longer_worse_seeded_and_marked():
    from jprefs.data.schema import PreferencePair

    pairs = [PreferencePair(id=f"p{i}", prompt=f"質問{i}", chosen=f"良い答え{i}。", rejected=f"悪い{i}")
             for i in range(8)]
    for kind in ("repeat", "filler"):
        cf = counterfactual_pairs(pairs, kind, 0.5, seed=3)
        assert len(cf) == 4 and cf == counterfactual_pairs(pairs, kind, 0.5, seed=3)
        by_id = {p.id: p for p in pairs}
        for c in cf:
            orig = by_id[c.meta["of"]]
            assert c.chosen == orig.chosen and c.rejected.startswith(orig.chosen + "\n\n")
            assert len(c.rejected) > len(c.chosen) and c.source == "counterfactual"
            assert c.meta["counterfactual"] == kind and c.prompt == orig.prompt
            tail = c.rejected[len(orig.chosen) + 2:]
            if kind == "repeat":
                assert tail == orig.chosen
            else:
                assert tail in {p.chosen for p in pairs} and tail != orig.chosen
        assert len({c.id for c in cf}) == 4
    assert counterfactual_pairs(pairs, "none", 0.5, seed=3) == []
    # many pairs per prompt (a judged set, an expanded rank list): the filler is always another prompt's answer
    many = [PreferencePair(id=f"q{i}-{j}", prompt=f"質問{i}", chosen=f"答え{i}-{j}。", rejected=f"悪い{i}-{j}")
            for i in range(3) for j in range(10)]
    by_id = {p.id: p for p in many}
    for c in counterfactual_pairs(many, "filler", 1.0, seed=0):
        orig = by_id[c.meta["of"]]
        tail = c.rejected[len(orig.chosen) + 2:]
        assert not tail.startswith(f"答え{orig.id[1]}-"), (orig.id, tail)
    one = [PreferencePair(id=f"o{j}", prompt="一つの質問", chosen=f"答え{j}", rejected=f"悪い{j}") for j in range(4)]
    assert all(c.rejected == c.chosen + "\n\n" + c.chosen for c in counterfactual_pairs(one, "filler", 1.0, seed=0))


# ------------------------------------------------------------------ constructed: BT learns length

def _constructed(n=600, seed=0, judge_length_bias=1.5):
    """Responses with a true quality q independent of their length; the model sees both through
    features [log length, q + noise]. The judge prefers longer answers on top of quality (label =
    the higher ``q + judge_length_bias * log length + noise``), as GPT-4 judges do; ``judge_length_bias=0``
    labels by true quality alone (the test pairs)."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, 2))
    log_len = 5.0 + rng.normal(size=(n, 2))
    q_obs = q + 0.3 * rng.normal(size=(n, 2))
    judged = q + judge_length_bias * (log_len - 5.0) + 0.3 * rng.normal(size=(n, 2))
    c = np.argmax(judged, axis=1)
    r_ = 1 - c
    idx = np.arange(n)
    feats = np.stack([log_len - 5.0, q_obs], axis=-1)                           # (n, 2, 2): [length, quality]
    xc, xr = feats[idx, c], feats[idx, r_]
    lc, lr = np.exp(log_len[idx, c]), np.exp(log_len[idx, r_])
    return (torch.tensor(xc, dtype=torch.float), torch.tensor(xr, dtype=torch.float),
            torch.tensor(lc, dtype=torch.float), torch.tensor(lr, dtype=torch.float))


def _fit(objective, data, steps=400, seed=0):
    """A linear reward (one head, or ODIN's two) fit full-batch with Adam on ``objective``."""
    xc, xr, lc, lr = data
    torch.manual_seed(seed)
    W = torch.zeros(2 if objective == "odin" else 1, 2, requires_grad=True)
    with torch.no_grad():
        W.normal_(0, 0.01)
    opt = torch.optim.Adam([W], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        oc, orj = xc @ W.T, xr @ W.T
        if objective == "odin":
            loss, _ = odin_loss(oc[:, 0], orj[:, 0], oc[:, 1], orj[:, 1], lc, lr, W)
        else:
            loss = bradley_terry_loss(oc[:, 0], orj[:, 0])
            if objective == "correlation":
                loss = loss + length_correlation_penalty(torch.cat([oc[:, 0], orj[:, 0]]), torch.cat([lc, lr]))
        loss.backward()
        opt.step()
    return W.detach()


def _report(W, data, head=0):
    from jprefs.eval.metrics import accuracy_metrics, correlation

    xc, xr, lc, lr = data
    rc, rr = (xc @ W.T)[:, head].numpy(), (xr @ W.T)[:, head].numpy()
    m = accuracy_metrics(rc, rr, lc.numpy(), lr.numpy(), n_boot=0)
    rho = correlation(np.concatenate([rc, rr]), np.concatenate([lc.numpy(), lr.numpy()]))["spearman"]
    return m, rho


def test_on_constructed_data_bradley_terry_learns_length_and_the_debiased_objectives_do_not():
    # trained on a length-biased judge's labels; tested on labels of true quality
    train, test = _constructed(seed=0), _constructed(seed=1, judge_length_bias=0.0)
    W_bt, W_corr, W_odin = _fit("bt", train), _fit("correlation", train), _fit("odin", train)
    bt, bt_rho = _report(W_bt, test)
    corr, corr_rho = _report(W_corr, test)
    odin_q, odin_rho = _report(W_odin, test, head=0)
    _, odin_len_rho = _report(W_odin, test, head=1)
    # plain BT learns the judge's length bias: a large weight on length, a reward that tracks it
    assert W_bt[0, 0] > 0.5 * W_bt[0, 1] and bt_rho > 0.4, (W_bt, bt_rho)
    # the debiased rewards do not track length (ODIN: its quality head) ...
    assert abs(corr_rho) < 0.1 and abs(odin_rho) < 0.1, (corr_rho, odin_rho)
    assert abs(W_corr[0, 0]) < 0.2 * W_corr[0, 1] and abs(W_odin[0, 0]) < 0.2 * W_odin[0, 1], (W_corr, W_odin)
    # ... ODIN's length head took the length instead ...
    assert odin_len_rho > 0.8, odin_len_rho
    # ... so on true quality they are more accurate, most of all where the better answer is the shorter one
    assert corr["pairwise_accuracy"] > bt["pairwise_accuracy"] + 0.05
    assert odin_q["pairwise_accuracy"] > bt["pairwise_accuracy"] + 0.05
    lc = bt["length_controlled_accuracy"]
    assert corr["length_controlled_accuracy"] > lc + 0.15 and odin_q["length_controlled_accuracy"] > lc + 0.15


def test_use_pair_margin_falls_back_to_the_score_difference():
    from jprefs.classifiers.train import _pair_margin
    from jprefs.data.schema import PreferencePair, RankList

    assert _pair_margin(PreferencePair.create("q", "a", "b", margin=1.5, chosen_score=9.0, rejected_score=1.0)) == 1.5
    assert _pair_margin(PreferencePair.create("q", "a", "b", chosen_score=8.0, rejected_score=3.0)) == 5.0
    assert _pair_margin(PreferencePair.create("q", "a", "b")) == 0.0
    assert [_pair_margin(p) for p in RankList.create("q", ["a", "b", "c"], scores=[9, 5, 1]).to_pairs()] == [4, 8, 4]
