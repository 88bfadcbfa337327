"""Calibration bins against scikit-learn's ``calibration_curve`` and at exact bin edges."""

from __future__ import annotations

import numpy as np
import pytest

from jprefs.eval.metrics import expected_calibration_error, pair_calibration


def test_bins_equal_sklearn_calibration_curve_off_the_edges():
    calibration_curve = pytest.importorskip("sklearn.calibration").calibration_curve
    rng = np.random.default_rng(0)
    for n_bins in (5, 10, 15):
        p = rng.uniform(0, 1, 2000) ** 1.5
        y = (rng.uniform(0, 1, 2000) < p).astype(float)
        _, bins = expected_calibration_error(p, y, n_bins)
        acc, conf = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
        full = [b for b in bins if b["n"]]
        assert np.allclose([b["acc"] for b in full], acc) and np.allclose([b["conf"] for b in full], conf)
        # the ECE from sklearn's curve and our counts
        counts = np.array([b["n"] for b in full])
        assert expected_calibration_error(p, y, n_bins)[0] == pytest.approx(
            float((counts / counts.sum() * np.abs(acc - conf)).sum()))


def test_a_probability_on_an_edge_falls_in_the_bin_that_starts_there():
    for k in range(10):
        _, bins = expected_calibration_error([k / 10], [1.0], 10)
        assert [b["n"] for b in bins].index(1) == k, k
    _, bins = expected_calibration_error([0.3, 0.7, 1.0], [1.0, 1.0, 1.0], 10)
    assert [b["lo"] for b in bins if b["n"]] == [0.3, 0.7, 0.9]


def test_ties_count_half_where_sklearn_refuses_them():
    calibration_curve = pytest.importorskip("sklearn.calibration").calibration_curve
    ece, bins = pair_calibration([1.0, 0.0], [1.0, 2.0])     # one tie (p = 1/2), one wrong at p ~ 0.88
    assert bins[0]["n"] == 1 and bins[0]["acc"] == 0.5 and bins[0]["conf"] == 0.5
    with pytest.raises(ValueError):
        calibration_curve(np.array([0.5, 0.0]), np.array([0.5, 0.88]), n_bins=10)
