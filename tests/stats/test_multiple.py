"""Benjamini-Hochberg and Bonferroni vs scipy and the written-out formulas."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import false_discovery_control

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.stats._multiple import CORRECTIONS, adjust_p_values, reject


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=40))
def test_bh_matches_scipy(p):
    np.testing.assert_allclose(adjust_p_values(p, "fdr_bh"), false_discovery_control(p, method="bh"),
                               atol=1e-12)


def test_bh_step_up_rule_written_out(rng):
    p = rng.uniform(0, 0.1, 25)
    m, alpha = len(p), 0.05
    srt = np.sort(p)
    passing = np.flatnonzero(srt <= alpha * np.arange(1, m + 1) / m)
    k = passing.max() + 1 if passing.size else 0  # reject the k smallest
    expected = p <= (srt[k - 1] if k else -1)
    np.testing.assert_array_equal(reject(p, alpha, "fdr_bh"), expected)


def test_bonferroni_and_grid_shape_with_nan():
    grid = np.array([[0.01, 0.2], [np.nan, 0.004]])
    bon = adjust_p_values(grid, "bonferroni")
    np.testing.assert_allclose(bon, [[0.03, 0.6], [np.nan, 0.012]])
    bh = adjust_p_values(grid, "fdr_bh")
    assert bh.shape == (2, 2) and np.isnan(bh[1, 0])
    np.testing.assert_allclose(bh[~np.isnan(grid)], false_discovery_control([0.01, 0.2, 0.004]))
    np.testing.assert_array_equal(reject(grid, 0.05), [[True, False], [False, True]])


@pytest.mark.parametrize("method", sorted(CORRECTIONS))
def test_adjusted_at_least_raw_and_monotone(rng, method):
    p = rng.uniform(size=30)
    q = adjust_p_values(p, method)
    assert (q >= p - 1e-15).all() and (q <= 1).all()
    order = np.argsort(p)
    assert (np.diff(q[order]) >= -1e-15).all()


def test_bad_inputs():
    with pytest.raises(InputError, match="probabilities"):
        adjust_p_values([0.1, 1.5])
    with pytest.raises(UnknownNameError):
        adjust_p_values([0.1], "holm")
    with pytest.raises(InputError, match="alpha"):
        reject([0.1], alpha=0)
