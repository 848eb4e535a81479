"""RDM comparisons: reference values from rsatoolbox and scipy, ranks with ties, properties."""

from __future__ import annotations

import numpy as np
import pytest
import rsatoolbox
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics import RDM_COMPARISONS, compare_rdms
from cortexalign.neural import load_neural
from cortexalign.rdm import average_ranks

RSA_NAMES = {"spearman": "spearman", "kendall_tau_a": "tau-a", "pearson": "corr", "cosine": "cosine",
             "rho_a": "rho-a", "cosine_cov": "cosine_cov", "corr_cov": "corr_cov"}


def _random_rdms(rng, r: int, s: int, decimals: int | None = None) -> np.ndarray:
    out = np.zeros((r, s, s))
    iu = np.triu_indices(s, 1)
    for k in range(r):
        v = rng.uniform(0, 2, size=len(iu[0]))
        if decimals is not None:
            v = np.round(v, decimals)  # many ties
        out[k][iu] = v
        out[k] = out[k] + out[k].T
    return out


def _rsa_compare(a, b, method):
    return rsatoolbox.rdm.compare(rsatoolbox.rdm.RDMs(a), rsatoolbox.rdm.RDMs(b), RSA_NAMES[method])


@pytest.mark.parametrize("method", list(RDM_COMPARISONS))
@pytest.mark.parametrize("decimals", [None, 1])
def test_random_rdms_match_rsatoolbox(method, decimals, rng):
    a, b = _random_rdms(rng, 3, 14, decimals), _random_rdms(rng, 4, 14, decimals)
    ours = compare_rdms(a, b, method, device="cpu")
    assert ours.shape == (3, 4)
    np.testing.assert_allclose(ours, _rsa_compare(a, b, method), atol=1e-6)


@pytest.fixture(scope="module")
def human_it():
    return load_neural("kriegeskorte92.human_IT")


@pytest.mark.parametrize("method", list(RDM_COMPARISONS))
def test_kriegeskorte92_human_it_matches_rsatoolbox(method, human_it):
    ours = compare_rdms(human_it, human_it.rdms[:3], method, device="cpu")
    np.testing.assert_allclose(ours, _rsa_compare(human_it.rdms, human_it.rdms[:3], method),
                               atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=30), min_size=1, max_size=4)
       .filter(lambda rows: len({len(r) for r in rows}) == 1))
def test_average_ranks_match_scipy(rows):
    x = np.array(rows, dtype=float)
    ours = average_ranks(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(ours, scipy.stats.rankdata(x, axis=1), atol=1e-12)


def test_average_ranks_without_ties_and_with_ties_in_one_row_only(rng):
    """Continuous rows take the no-tie path; one tied row sends the batch down the tie path."""
    x = rng.normal(size=(3, 500))
    np.testing.assert_array_equal(average_ranks(torch.as_tensor(x)).numpy(),
                                  scipy.stats.rankdata(x, axis=1))
    x[1, :10] = x[1, 0]
    np.testing.assert_array_equal(average_ranks(torch.as_tensor(x)).numpy(),
                                  scipy.stats.rankdata(x, axis=1))


@pytest.mark.parametrize("method", list(RDM_COMPARISONS))
def test_identity_gives_one_and_symmetry(method, rng):
    a, b = _random_rdms(rng, 2, 10), _random_rdms(rng, 3, 10)
    np.testing.assert_allclose(np.diag(compare_rdms(a, a, method, device="cpu")), 1.0, atol=1e-12)
    np.testing.assert_allclose(compare_rdms(a, b, method, device="cpu"),
                               compare_rdms(b, a, method, device="cpu").T, atol=1e-12)


@pytest.mark.parametrize("method", ["spearman", "kendall_tau_a"])
@pytest.mark.parametrize("transform", [np.exp, np.sqrt, lambda v: v**3 + 2 * v])
def test_rank_comparisons_invariant_to_monotone_transforms(method, transform, rng):
    a, b = _random_rdms(rng, 1, 12), _random_rdms(rng, 2, 12)
    ta = transform(a)
    np.fill_diagonal(ta[0], 0)
    np.testing.assert_allclose(compare_rdms(ta, b, method, device="cpu"),
                               compare_rdms(a, b, method, device="cpu"), atol=1e-12)


def test_kendall_tau_a_against_explicit_pair_count(rng):
    a, b = _random_rdms(rng, 1, 8, decimals=1), _random_rdms(rng, 1, 8, decimals=1)
    iu = np.triu_indices(8, 1)
    x, y = a[0][iu], b[0][iu]
    p = len(x)
    num = sum(np.sign(x[i] - x[j]) * np.sign(y[i] - y[j]) for i in range(p) for j in range(i + 1, p))
    assert compare_rdms(a, b, "kendall_tau_a", device="cpu")[0, 0] == pytest.approx(
        num / (p * (p - 1) / 2), abs=1e-12)


def test_uses_row_major_upper_triangle(rng):
    # an asymmetric weighting would expose a column-major order: compare with the explicit vectors
    a, b = _random_rdms(rng, 1, 9), _random_rdms(rng, 1, 9)
    iu = np.triu_indices(9, 1)
    assert compare_rdms(a, b, "pearson", device="cpu")[0, 0] == pytest.approx(
        np.corrcoef(a[0][iu], b[0][iu])[0, 1], abs=1e-12)


def test_bad_inputs(rng):
    a = _random_rdms(rng, 1, 6)
    with pytest.raises(UnknownNameError, match="spearman"):
        compare_rdms(a, a, "spearmann", device="cpu")
    with pytest.raises(InputError, match="over 6 stimuli") as err:
        compare_rdms(a, _random_rdms(rng, 1, 7), device="cpu")
    assert err.value.parameter == "b"
    with pytest.raises(InputError, match="constant RDM"):
        compare_rdms(a, np.ones((6, 6)) - np.eye(6), device="cpu")
    bad = a.copy()
    bad[0, 0, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        compare_rdms(bad, a, device="cpu")
    asym = a.copy()
    asym[0, 0, 1] += 1
    with pytest.raises(InputError, match="symmetric"):
        compare_rdms(asym, a, device="cpu")
