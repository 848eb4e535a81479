"""RDM computation: reference values from rsatoolbox and scipy, properties, and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rsatoolbox
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import pdist, squareform

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics import RDM_METHODS, compute_rdm, compute_rdms


def _rsa_rdm(x_sd: np.ndarray, method: str) -> np.ndarray:
    ds = rsatoolbox.data.Dataset(x_sd)
    return rsatoolbox.rdm.calc_rdm(ds, method=method).get_matrices()[0]


@pytest.mark.parametrize("method", ["correlation", "euclidean"])
@pytest.mark.parametrize("shape", [(12, 5), (30, 200)])
def test_matches_rsatoolbox(method, shape, rng):
    x = rng.normal(size=shape) * rng.uniform(0.5, 3, size=shape[1])
    np.testing.assert_allclose(compute_rdm(x, method, device="cpu"), _rsa_rdm(x, method),
                               rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("method,scipy_metric", [("correlation", "correlation"),
                                                 ("cosine", "cosine")])
def test_matches_scipy(method, scipy_metric, rng):
    x = rng.normal(size=(20, 7)) + 0.5
    np.testing.assert_allclose(compute_rdm(x, method, device="cpu"),
                               squareform(pdist(x, scipy_metric)), atol=1e-12)


def test_euclidean_is_squared_distance_over_features(rng):
    x = rng.normal(size=(6, 4))
    explicit = np.array([[np.sum((a - b) ** 2) / 4 for b in x] for a in x])
    np.testing.assert_allclose(compute_rdm(x, "euclidean", device="cpu"), explicit, atol=1e-12)


def _crossnobis_rsatoolbox(x_snr: np.ndarray, noise=None) -> np.ndarray:
    s, n, r = x_snr.shape
    meas = x_snr.transpose(2, 0, 1).reshape(r * s, n)  # repetition-major rows
    stim = np.tile([f"s{k:03d}" for k in range(s)], r)
    rep = np.repeat(np.arange(r), s)
    ds = rsatoolbox.data.Dataset(meas, obs_descriptors={"stim": stim, "rep": rep})
    with warnings.catch_warnings():  # rsatoolbox casts string labels through zeros_like
        warnings.simplefilter("ignore", RuntimeWarning)
        rdm = rsatoolbox.rdm.calc_rdm(ds, method="crossnobis", descriptor="stim",
                                      cv_descriptor="rep", noise=noise)
    return rdm.get_matrices()[0]


@pytest.mark.parametrize("r", [2, 3, 5])
def test_crossnobis_matches_rsatoolbox(r, rng):
    x = rng.normal(size=(9, 6, r)) + rng.normal(size=(9, 6, 1))
    np.testing.assert_allclose(compute_rdm(x, "crossnobis", device="cpu"),
                               _crossnobis_rsatoolbox(x), atol=1e-10)


def test_crossnobis_with_noise_precision_matches_rsatoolbox(rng):
    x = rng.normal(size=(8, 5, 4))
    a = rng.normal(size=(5, 5))
    prec = np.linalg.inv(a @ a.T + 5 * np.eye(5))
    np.testing.assert_allclose(compute_rdm(x, "crossnobis", device="cpu", noise_precision=prec),
                               _crossnobis_rsatoolbox(x, prec), atol=1e-10)


def test_crossnobis_is_unbiased_for_identical_patterns(rng):
    # same true pattern for every stimulus: expected distance 0, plain euclidean is positive
    x = np.repeat(rng.normal(size=(1, 50, 1)), 200, axis=0) + rng.normal(size=(200, 50, 4))
    cv = compute_rdm(x, "crossnobis", device="cpu")[np.triu_indices(200, 1)]
    eu = compute_rdm(x.mean(axis=2), "euclidean", device="cpu")[np.triu_indices(200, 1)]
    assert abs(cv.mean()) < 0.01 < eu.mean()


@pytest.mark.parametrize("method", ["correlation", "euclidean", "cosine"])
def test_chunked_equals_whole(method, rng):
    x = rng.normal(size=(23, 11))
    np.testing.assert_allclose(compute_rdm(x, method, device="cpu", chunk_size=5),
                               compute_rdm(x, method, device="cpu"), atol=1e-12)


def test_compute_rdms_stacks_feature_sets_of_different_width(rng):
    xs = [rng.normal(size=(10, 4)), rng.normal(size=(10, 9))]
    out = compute_rdms(xs, "correlation", device="cpu")
    assert out.shape == (2, 10, 10)
    for rdm, x in zip(out, xs, strict=True):
        np.testing.assert_allclose(rdm, compute_rdm(x, "correlation", device="cpu"), atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(s=st.integers(2, 15), d=st.integers(1, 8), seed=st.integers(0, 10_000),
       method=st.sampled_from(["correlation", "euclidean", "cosine"]))
def test_symmetric_zero_diagonal_nonnegative(s, d, seed, method):
    x = np.random.default_rng(seed).normal(size=(s, d))
    if method == "correlation" and d < 2:
        d, x = 2, np.random.default_rng(seed).normal(size=(s, 2))
    rdm = compute_rdm(x, method, device="cpu", chunk_size=4)
    assert np.array_equal(rdm, rdm.T)
    assert np.all(np.diag(rdm) == 0)
    assert rdm.min() >= -1e-12


def test_every_method_is_registered_as_a_plain_function():
    assert set(RDM_METHODS) == {"correlation", "euclidean", "cosine", "crossnobis"}
    assert all(callable(f) for f in RDM_METHODS.values())


@pytest.mark.parametrize("bad,match", [
    (np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0]]), "NaN"),
    (np.array([[0.0, np.inf], [1.0, 2.0], [1.0, 1.0]]), "NaN/Inf"),
    (np.ones((5, 3)), "vary across stimuli"),
    (np.zeros(5), "2-d"),
])
def test_bad_features_raise(bad, match):
    with pytest.raises(InputError, match=match) as err:
        compute_rdm(bad, "euclidean", device="cpu")
    assert err.value.parameter == "x_sd" and err.value.fix


def test_constant_stimulus_row_warns_and_is_uncorrelated_for_correlation():
    # correlation with a constant vector is undefined: taken as 0 (dissimilarity 1), with a warning
    x = np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0], [0.0, 5.0, 1.0]])
    with pytest.warns(UserWarning, match="row 1"):
        rdm = compute_rdm(x, "correlation", device="cpu")
    assert rdm[1, 0] == rdm[1, 2] == rdm[0, 1] == 1.0 and rdm[1, 1] == 0.0
    assert rdm[0, 2] == pytest.approx(1 - np.corrcoef(x[0], x[2])[0, 1])


def test_unknown_method_suggests_close_names():
    with pytest.raises(UnknownNameError, match="correlation"):
        compute_rdm(np.eye(3), "corelation", device="cpu")


def test_crossnobis_needs_repetitions(rng):
    with pytest.raises(InputError, match="3-d"):
        compute_rdm(rng.normal(size=(5, 3)), "crossnobis", device="cpu")
    with pytest.raises(InputError, match="r >= 2"):
        compute_rdm(rng.normal(size=(5, 3, 1)), "crossnobis", device="cpu")


def test_finite_values_whose_sum_overflows_are_accepted():
    # the finite check sums first: a sum of finite values may overflow to inf, yet nothing is bad
    import torch

    from cortexalign.rdm import as_tensor

    x = np.full((4, 2), 1.5e308)
    with np.errstate(over="ignore"):
        assert np.isinf(x.sum())
    t = as_tensor(x, "x_sd", torch.device("cpu"), ndim=(2,))
    assert np.array_equal(t.numpy(), x)
    x[2, 1] = np.nan
    with pytest.raises(InputError, match=r"1 NaN/Inf values \(first at index \(2, 1\)\)"):
        as_tensor(x, "x_sd", torch.device("cpu"), ndim=(2,))


def test_features_equal_in_the_first_rows_but_varying_later_are_accepted():
    x = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.0, 5.0, 1.0]])
    np.testing.assert_allclose(compute_rdm(x, "euclidean", device="cpu"),
                               squareform(pdist(x, "sqeuclidean")) / 3, atol=1e-12)


@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_constant_rows_are_found_whatever_their_level(offset):
    """Constant rows (centred norm ~ 0 relative to the raw norm) at any offset, and a row with a
    relative variation of 1e-9 is not constant (the raw norm comes from |x|^2 = |x - m|^2 + d m^2)."""
    base = np.array([[1.0, 2.0, 3.0], [0.0, 5.0, 1.0], [4.0, 4.0, 4.0]]) + offset
    with pytest.warns(UserWarning, match="row 2"):
        compute_rdm(base, "correlation", device="cpu")
    base[2, 0] += 1e-9 * max(offset, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no longer constant: no warning
        got = compute_rdm(base, "correlation", device="cpu")
    np.testing.assert_allclose(got, squareform(pdist(base, "correlation")), atol=1e-6)
