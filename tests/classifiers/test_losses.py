"""Each loss against a value computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from jprefs.classifiers.losses import all_pairs_loss, binary_loss, bradley_terry_loss, plackett_luce_loss


def _lse(*xs):
    return math.log(sum(math.exp(x) for x in xs))


def test_binary_loss_hand_computed():
    logits = torch.tensor([[0.0, 0.0], [1.0, 3.0], [2.0, -1.0]])
    labels = torch.tensor([1, 1, 1])
    # CE = lse(l0, l1) - l_label
    expect = ((_lse(0, 0) - 0) + (_lse(1, 3) - 3) + (_lse(2, -1) - (-1))) / 3
    assert binary_loss(logits, labels).item() == pytest.approx(expect, rel=1e-6)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        binary_loss(torch.zeros(3, 1), labels)


def test_bradley_terry_hand_computed():
    rc, rr = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 3.0])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expect = -(math.log(sig(1.0)) + math.log(sig(0.0)) + math.log(sig(-1.0))) / 3
    assert bradley_terry_loss(rc, rr).item() == pytest.approx(expect, rel=1e-6)
    m = torch.tensor([0.5, 0.0, 1.0])
    expect_m = -(math.log(sig(0.5)) + math.log(sig(0.0)) + math.log(sig(-2.0))) / 3
    assert bradley_terry_loss(rc, rr, m).item() == pytest.approx(expect_m, rel=1e-6)


def test_plackett_luce_hand_computed_with_padding():
    r = torch.tensor([[2.0, 1.0, 0.0], [0.5, -0.5, 9.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    g1 = (_lse(2, 1, 0) - 2) + (_lse(1, 0) - 1)
    g2 = _lse(0.5, -0.5) - 0.5            # a 2-list: the Bradley-Terry loss
    assert plackett_luce_loss(r, mask).item() == pytest.approx((g1 + g2) / 2, rel=1e-6)
    assert g2 == pytest.approx(bradley_terry_loss(torch.tensor([0.5]), torch.tensor([-0.5])).item(), rel=1e-6)


def test_all_pairs_hand_computed_with_padding():
    r = torch.tensor([[2.0, 1.0, 0.0], [0.5, -0.5, 9.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    bt = lambda a, b: -math.log(1 / (1 + math.exp(-(a - b))))  # noqa: E731
    g1 = (bt(2, 1) + bt(2, 0) + bt(1, 0)) / 3
    g2 = bt(0.5, -0.5)
    assert all_pairs_loss(r, mask).item() == pytest.approx((g1 + g2) / 2, rel=1e-6)


def test_losses_have_gradients_that_push_the_right_way():
    rc = torch.tensor([0.0], requires_grad=True)
    rr = torch.tensor([0.0], requires_grad=True)
    bradley_terry_loss(rc, rr).backward()
    assert rc.grad.item() < 0 < rr.grad.item()      # descending the loss raises r_chosen
