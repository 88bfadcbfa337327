"""The interval machinery of jprefs eval: cluster bootstrap by prompt, win/tie/loss, sign test."""

import math

import numpy as np
import pytest

from jprefs.eval.stats import bootstrap_ci, paired_bootstrap_ci, sign_test, win_tie_loss


def test_interval_contains_the_estimate_and_narrows_with_four_times_the_data():
    rng = np.random.default_rng(0)
    x = (rng.random(200) < 0.7).astype(float)
    est, (lo, hi) = bootstrap_ci(x, seed=1)
    assert est == pytest.approx(x.mean()) and lo <= est <= hi
    x4 = np.tile(x, 4)
    est4, (lo4, hi4) = bootstrap_ci(x4, seed=1)
    assert est4 == pytest.approx(est)
    # the width scales like 1/sqrt(n): four times the rows, about half the width
    assert (hi4 - lo4) == pytest.approx((hi - lo) / 2, rel=0.2)
    # and it matches the normal approximation sqrt(p(1-p)/n) * 1.96 * 2
    assert (hi - lo) == pytest.approx(2 * 1.96 * math.sqrt(est * (1 - est) / 200), rel=0.15)


def test_grouped_interval_is_wider_when_rows_of_a_group_agree():
    """Pairs sharing a prompt are not independent: 50 prompts x 4 identical outcomes carry the
    information of 50 rows, not 200."""
    rng = np.random.default_rng(0)
    per_prompt = (rng.random(50) < 0.7).astype(float)
    x = np.repeat(per_prompt, 4)
    groups = np.repeat(np.arange(50), 4)
    _, (lo_i, hi_i) = bootstrap_ci(x, seed=0)
    _, (lo_g, hi_g) = bootstrap_ci(x, groups, seed=0)
    assert (hi_g - lo_g) > 1.7 * (hi_i - lo_i)
    # equal to the ungrouped interval of the 50 prompt means
    _, (lo_p, hi_p) = bootstrap_ci(per_prompt, seed=0)
    assert (hi_g - lo_g) == pytest.approx(hi_p - lo_p, rel=0.15)


def test_custom_statistic_and_determinism():
    x = np.arange(30, dtype=float)
    a = bootstrap_ci(x, stat=np.median, seed=3, n_boot=300)
    assert a == bootstrap_ci(x, stat=np.median, seed=3, n_boot=300)
    assert a[0] == 14.5 and a[1][0] < 14.5 < a[1][1]
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([1.0, float("nan")])
    assert math.isnan(bootstrap_ci([])[0])


def test_paired_difference():
    a = [1, 1, 1, 0, 1, 1, 1, 1, 0, 1]
    b = [0, 1, 0, 0, 1, 0, 1, 0, 0, 1]
    est, (lo, hi) = paired_bootstrap_ci(a, b, seed=0)
    assert est == pytest.approx(0.4) and lo <= 0.4 <= hi and lo > 0


def test_sign_test_against_the_binomial():
    from scipy.stats import binomtest

    for w, l in [(30, 16), (5, 5), (10, 0), (0, 3), (54, 46)]:
        assert sign_test(w, l) == pytest.approx(binomtest(w, w + l, 0.5).pvalue)


def test_win_tie_loss_the_84_of_100_form():
    o = [1] * 30 + [0] * 54 + [-1] * 16
    r = win_tie_loss(o)
    assert (r["wins"], r["ties"], r["losses"], r["n"]) == (30, 54, 16, 100)
    assert r["at_least_as_good"] == pytest.approx(0.84)
    lo, hi = r["at_least_as_good_ci95"]
    assert lo < 0.84 < hi and hi - lo < 0.2
    assert r["sign_test_p"] == pytest.approx(sign_test(30, 16))
    with pytest.raises(ValueError, match="-1, 0 or 1"):
        win_tie_loss([2, 0])


def test_chunked_resampling_gives_the_same_interval(monkeypatch):
    """Memory is bounded by drawing the resamples in chunks; a seed gives the same interval whatever
    the chunk size (the draws come from one generator in the same order)."""
    import jprefs.eval.stats as st

    rng = np.random.default_rng(0)
    x, g = rng.random(3000), rng.integers(0, 700, 3000)
    whole = st.bootstrap_ci(x, g, seed=5)
    monkeypatch.setattr(st, "CHUNK_CELLS", 700 * 37)          # 37 resamples per chunk
    assert st.bootstrap_ci(x, g, seed=5) == whole


def test_one_prompt_or_no_resampling_gives_no_interval_not_a_zero_width_one():
    """One group has nothing to resample: the interval was (est, est), which reports read as certainty."""
    est, (lo, hi) = bootstrap_ci([1, 0, 1, 1, 1, 0, 1, 1], groups=["q"] * 8)
    assert est == 0.75 and math.isnan(lo) and math.isnan(hi)
    est, (lo, hi) = bootstrap_ci([1, 0, 1, 1], groups=[0, 1, 2, 3], n_boot=0)
    assert est == 0.75 and math.isnan(lo)
    d, (lo, hi) = paired_bootstrap_ci([1, 0, 1], [0, 0, 1], groups=["q"] * 3)
    assert d == pytest.approx(1 / 3) and math.isnan(lo)
    from jprefs.eval.metrics import agreement

    assert agreement([1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 1], n_boot=0)["agreement"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("bad", [[0.5, 1], [0.9, -1], [2, 0], [True, False]])
def test_win_tie_loss_refuses_outcomes_that_are_not_minus_one_zero_or_one(bad):
    with pytest.raises(ValueError, match="must be -1, 0 or 1"):          # 0.5 and 0.9 were cast to a tie
        win_tie_loss(bad)
    assert win_tie_loss([1.0, 0.0, -1.0])["wins"] == 1
