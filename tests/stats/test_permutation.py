"""Permutation tests: exact p-values, references by explicit loops, calibration under the null."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import spearmanr

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.stats._permutation import (
    PAIRED_METHODS,
    exact_p_value,
    paired_comparison,
    permutation_test,
    rdm_permutation_test,
)


def _rdm(x):
    return np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))


def test_exact_p_value_formula():
    null = np.array([0.1, 0.5, 0.5, 0.9])
    assert exact_p_value(0.5, null) == (1 + 3) / 5
    assert exact_p_value(0.5, null, "less") == (1 + 3) / 5
    assert exact_p_value(-0.9, null, "two-sided") == (1 + 1) / 5
    assert exact_p_value(2.0, null) == 1 / 5  # never zero
    with pytest.raises(UnknownNameError):
        exact_p_value(0.5, null, "bigger")


def test_rdm_test_matches_loop_reference(rng):
    a, b = _rdm(rng.normal(size=(9, 3))), _rdm(rng.normal(size=(9, 3)))
    res = rdm_permutation_test(a, b, n_perm=50, seed=4)
    iu = np.triu_indices(9, 1)
    gen = np.random.default_rng(4)
    perms = np.argsort(gen.random((50, 9)), axis=1)
    ref = np.array([spearmanr(a[iu], b[p][:, p][iu])[0] for p in perms])
    np.testing.assert_allclose(res.null, ref, atol=1e-12)
    assert res.observed == pytest.approx(spearmanr(a[iu], b[iu])[0])
    assert res.p_value == (1 + (ref >= res.observed).sum()) / 51


def test_rdm_test_detects_shared_structure(rng):
    x = rng.normal(size=(15, 4))
    res = rdm_permutation_test(_rdm(x), _rdm(x + 0.1 * rng.normal(size=x.shape)), n_perm=200)
    assert res.p_value == 1 / 201


def test_generic_and_vectorized_agree(rng):
    x, y = rng.normal(size=20), rng.normal(size=20)

    def stat(a, b):
        return np.corrcoef(a, b)[0, 1]

    def stat_v(a, b_p):
        b = b_p - b_p.mean(1, keepdims=True)
        ac = a - a.mean()
        return (b @ ac) / (np.linalg.norm(b, axis=1) * np.linalg.norm(ac))

    loop = permutation_test(stat, x, y, n_perm=100, seed=2)
    vec = permutation_test(stat_v, x, y, n_perm=100, seed=2, vectorized=True)
    np.testing.assert_allclose(loop.null, vec.null)
    assert loop.p_value == vec.p_value


def test_null_p_values_are_calibrated():
    """Independent RDMs: false positives at alpha = 0.05 within [0.03, 0.07] over 1,000 datasets,
    and p-values roughly uniform (each decile holds 6-14%)."""
    rng = np.random.default_rng(123)
    p = np.array([rdm_permutation_test(_rdm(rng.normal(size=(8, 2))), _rdm(rng.normal(size=(8, 2))),
                                       n_perm=99, seed=k).p_value for k in range(1000)])
    assert 0.03 <= (p <= 0.05).mean() <= 0.07
    hist = np.histogram(p, bins=10, range=(0, 1))[0] / len(p)
    assert hist.min() > 0.06 and hist.max() < 0.14


@pytest.mark.parametrize("method", sorted(PAIRED_METHODS))
def test_paired_comparison_calibrated_and_powerful(method):
    rng = np.random.default_rng(7)
    null_p = np.array([paired_comparison(rng.normal(size=30), rng.normal(size=30), method=method,
                                         n_perm=199, seed=k).p_value for k in range(2000)])
    assert 0.03 <= (null_p <= 0.05).mean() <= 0.07
    a = rng.normal(size=40)
    res = paired_comparison(a + 0.8, a + 0.1 * rng.normal(size=40), method=method, n_perm=999)
    assert res.p_value == 1 / 1000 and res.observed > 0


def test_sign_flip_matches_enumeration_for_small_k():
    d = np.array([0.3, -0.1, 0.5, 0.2, 0.4])
    exact = np.array([np.mean(np.array(s) * d) for s in itertools.product([-1, 1], repeat=5)])
    p_exact = (np.abs(exact) >= abs(d.mean()) - 1e-12).mean()
    res = paired_comparison(d, np.zeros(5), n_perm=20000, seed=0)
    assert res.p_value == pytest.approx(p_exact, abs=0.01)


def test_bad_inputs(rng):
    a = _rdm(rng.normal(size=(5, 2)))
    with pytest.raises(InputError, match="same shape"):
        rdm_permutation_test(a, a[:4, :4])
    with pytest.raises(UnknownNameError):
        rdm_permutation_test(a, a, compare="kendall")
    with pytest.raises(InputError, match="n_perm"):
        rdm_permutation_test(a, a, n_perm=0)
    with pytest.raises(InputError, match="rows"):
        permutation_test(lambda x, y: 0.0, np.zeros(5), np.zeros(4))
    with pytest.raises(InputError, match="paired"):
        paired_comparison(np.zeros(5), np.zeros(4))
    with pytest.raises(UnknownNameError):
        paired_comparison(np.zeros(5), np.ones(5), method="wilcoxon")
