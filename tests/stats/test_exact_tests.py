"""Exact and honest tests (issue 20, case 5): sign-flip and permutation tests enumerate every
pattern when there are few enough and say "exact"; otherwise the Monte-Carlo p has its +1 and
never goes below 1/(n_perm + 1). Each is checked against a brute-force enumeration written here.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from cortexalign.metrics import rsa_permutation_p
from cortexalign.neural import RDMSet
from cortexalign.rdm import compute_rdm
from cortexalign.stats import (
    MAX_RESAMPLES,
    paired_comparison,
    permutation_test,
    rdm_permutation_test,
)


def _brute_sign_flip(d: np.ndarray) -> float:
    """Two-sided p over all 2**k sign patterns, counted one by one."""
    obs = abs(d.mean())
    hits = sum(abs((np.array(signs) * d).mean()) >= obs - 1e-12
               for signs in itertools.product((1.0, -1.0), repeat=len(d)))
    return hits / 2 ** len(d)


@pytest.mark.parametrize("k", [4, 8, 11])
def test_sign_flips_enumerate_every_pattern_and_equal_brute_force(k):
    rng = np.random.default_rng(k)
    a, b = rng.normal(0.3, 0.2, k), rng.normal(0.2, 0.2, k)
    res = paired_comparison(a, b, n_perm=2000, seed=0)
    assert res.exact and len(res.null) == 2 ** k and "exact" in res.description
    assert res.p_value == pytest.approx(_brute_sign_flip(a - b), abs=1e-15)
    assert res.p_value >= 2 / 2 ** k  # the identity and the all-flipped pattern always count


def test_eight_units_can_never_reach_below_2_over_256():
    """The issue's numbers: 8 paired units all favouring A give p = 2/256 = 0.0078, not the
    0.006 that 2,000 random flips without enumeration reported."""
    d = np.linspace(0.1, 0.8, 8)
    res = paired_comparison(d, np.zeros(8), n_perm=2000, seed=0)
    assert res.exact and res.p_value == 2 / 256


def test_many_units_use_monte_carlo_with_plus_one_never_below_its_floor():
    rng = np.random.default_rng(1)
    d = rng.normal(1.0, 0.1, 40)  # every random flip is far below the observed mean
    res = paired_comparison(d, np.zeros(40), n_perm=999, seed=0)
    assert not res.exact and len(res.null) == 999 and "Monte-Carlo" in res.description
    assert res.p_value == 1 / 1000  # (1 + 0) / (1 + 999): the floor, never 0 or below


def _brute_rdm_perm(a: np.ndarray, b: np.ndarray) -> float:
    s = len(a)
    iu = np.triu_indices(s, 1)
    from scipy.stats import spearmanr

    obs = spearmanr(a[iu], b[iu])[0]
    hits = [spearmanr(a[iu], b[np.ix_(p, p)][iu])[0] >= obs - 1e-12
            for p in itertools.permutations(range(s))]
    return float(np.mean(hits))


def test_rdm_permutation_test_is_exact_for_few_stimuli():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 4))
    a, b = compute_rdm(x), compute_rdm(x + rng.normal(0, 0.5, x.shape))
    res = rdm_permutation_test(a, b, n_perm=500, seed=0)
    assert res.exact and len(res.null) == math.factorial(6)
    assert res.p_value == pytest.approx(_brute_rdm_perm(a, b), abs=1e-12)
    big = rdm_permutation_test(compute_rdm(rng.normal(size=(20, 4))),
                               compute_rdm(rng.normal(size=(20, 4))), n_perm=200, seed=0)
    assert not big.exact and big.p_value >= 1 / 201


def test_generic_permutation_test_enumerates_small_sets():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    y = np.array([1.2, 1.9, 3.3, 3.8, 5.1])
    res = permutation_test(lambda u, v: float(np.corrcoef(u, v)[0, 1]), x, y, n_perm=100)
    assert res.exact and len(res.null) == 120
    assert res.p_value == 1 / 120  # only the identity reaches the observed correlation


def test_rsa_permutation_p_of_a_run_is_exact_for_few_stimuli():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 3))
    target = RDMSet(compute_rdm(x + rng.normal(0, 0.3, x.shape))[None], [f"s{i}" for i in range(5)],
                    name="t")
    p = rsa_permutation_p(x, target, n_permutations=50, seed=0)
    assert p * 120 == pytest.approx(round(p * 120))  # a multiple of 1/5!: every relabelling
    assert p == pytest.approx(_brute_rdm_perm(compute_rdm(x), target.rdms[0]), abs=1e-12)


def test_permutation_counts_above_the_limit_are_refused_at_once():
    with pytest.raises(ValueError, match="at most 100,000"):
        paired_comparison(np.ones(30), np.zeros(30), n_perm=MAX_RESAMPLES + 1)
