"""CKA against the published formulas written out in numpy, and the invariances CKA promises."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ortho_group

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics import CKA_KINDS, cka


def _hsic_biased(k, l_):
    """Gretton et al. 2005: tr(K H L H) / (n - 1)^2 with the explicit centring matrix H."""
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ l_ @ h) / (n - 1) ** 2


def _hsic_song(k, l_):
    """Song et al. 2012, eq. 5, term by term."""
    n = k.shape[0]
    kt, lt = k - np.diag(np.diag(k)), l_ - np.diag(np.diag(l_))
    one = np.ones(n)
    return (np.trace(kt @ lt) + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * one @ kt @ lt @ one) / (n * (n - 3))


def _unbiased_centering(gram):
    """The 'unbiased centring' of Kornblith's reference code (a second, independent route)."""
    g = gram.copy()
    n = g.shape[0]
    np.fill_diagonal(g, 0)
    means = g.sum(axis=0) / (n - 2)
    means -= means.sum() / (2 * (n - 1))
    g -= means[:, None]
    g -= means[None, :]
    np.fill_diagonal(g, 0)
    return g


def _cka_from(hsic, k, l_):
    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


def _rbf_loops(x, frac):
    n = x.shape[0]
    d2 = np.array([[np.sum((x[i] - x[j]) ** 2) for j in range(n)] for i in range(n)])
    sigma2 = frac**2 * np.median(d2)
    return np.exp(-d2 / (2 * sigma2))


@pytest.mark.parametrize("s,dx,dy", [(15, 4, 6), (8, 40, 30)])  # feature-space and Gram paths
def test_linear_matches_biased_hsic_formula(s, dx, dy, rng):
    x, y = rng.normal(size=(s, dx)), rng.normal(size=(s, dy))
    x[:, 0] += 3.0  # a mean offset: CKA centres
    assert cka(x, y, "linear", device="cpu") == pytest.approx(
        _cka_from(_hsic_biased, x @ x.T, y @ y.T), abs=1e-10)


@pytest.mark.parametrize("s,dx,dy", [(15, 4, 6), (9, 40, 30)])
def test_debiased_matches_song_formula_and_unbiased_centring(s, dx, dy, rng):
    x = rng.normal(size=(s, dx))
    y = x[:, :1] @ rng.normal(size=(1, dy)) + rng.normal(size=(s, dy))
    xc, yc = x - x.mean(0), y - y.mean(0)
    song = _cka_from(_hsic_song, xc @ xc.T, yc @ yc.T)
    kx, ky = _unbiased_centering(xc @ xc.T), _unbiased_centering(yc @ yc.T)
    kornblith = (kx.ravel() @ ky.ravel()) / np.sqrt((kx.ravel() @ kx.ravel()) * (ky.ravel() @ ky.ravel()))
    ours = cka(x, y, "linear_debiased", device="cpu")
    assert ours == pytest.approx(song, abs=1e-10)
    assert ours == pytest.approx(kornblith, abs=1e-10)


@pytest.mark.parametrize("frac", [0.5, 1.0])
def test_rbf_matches_explicit_kernel(frac, rng):
    x, y = rng.normal(size=(10, 3)), rng.normal(size=(10, 5))
    expected = _cka_from(_hsic_biased, _rbf_loops(x, frac), _rbf_loops(y, frac))
    assert cka(x, y, "rbf", device="cpu", sigma_frac=frac) == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("kind", list(CKA_KINDS))
def test_invariances(kind, rng):
    x = rng.normal(size=(30, 6))
    y = x @ rng.normal(size=(6, 8)) + 0.5 * rng.normal(size=(30, 8))
    base = cka(x, y, kind, device="cpu")
    q = ortho_group.rvs(6, random_state=1)
    assert cka(x @ q, y, kind, device="cpu") == pytest.approx(base, abs=1e-10)
    assert cka(7.5 * x, y, kind, device="cpu") == pytest.approx(base, abs=1e-10)
    assert cka(x, y, kind, device="cpu") == pytest.approx(cka(y, x, kind, device="cpu"), abs=1e-12)
    assert cka(x, x, kind, device="cpu") == pytest.approx(1.0, abs=1e-12)
    stretch = np.diag([1.0, 1.0, 1.0, 1.0, 1.0, 25.0])  # invertible, not orthogonal x scale
    assert abs(cka(x @ stretch, y, kind, device="cpu") - base) > 1e-3


@settings(max_examples=20, deadline=None)
@given(s=st.integers(5, 20), d=st.integers(1, 6), seed=st.integers(0, 1000),
       kind=st.sampled_from(["linear", "rbf"]))
def test_biased_cka_lies_in_unit_interval(s, d, seed, kind):
    r = np.random.default_rng(seed)
    v = cka(r.normal(size=(s, d)), r.normal(size=(s, d + 1)), kind, device="cpu")
    assert -1e-12 <= v <= 1 + 1e-12


def test_debiased_is_near_zero_for_independent_data(rng):
    # biased CKA of independent wide features is far from 0 at small s; the debiased one is not
    x, y = rng.normal(size=(40, 200)), rng.normal(size=(40, 200))
    assert cka(x, y, "linear", device="cpu") > 0.5
    assert abs(cka(x, y, "linear_debiased", device="cpu")) < 0.05


def test_bad_inputs(rng):
    x = rng.normal(size=(6, 3))
    with pytest.raises(UnknownNameError, match="linear"):
        cka(x, x, "lineer", device="cpu")
    with pytest.raises(InputError, match="5 stimuli") as err:
        cka(x, x[:5], device="cpu")
    assert err.value.parameter == "x_sd"
    with pytest.raises(InputError, match="vary"):
        cka(x, np.ones((6, 2)), device="cpu")
    with pytest.raises(InputError, match="sigma_frac"):
        cka(x, x, "linear", device="cpu", sigma_frac=0.5)
    with pytest.raises(InputError, match="NaN"):
        cka(np.where(x > 1, np.nan, x), x, device="cpu")


@pytest.mark.parametrize("n", [1, 2, 7, 10, 1001])
def test_both_median_routes_equal_numpy(n, rng):
    """The CPU route (NumPy) and the GPU route (one sort, exercised here on the CPU) give
    ``np.median``, for odd and even counts and with ties."""
    from cortexalign.metrics._cka import _median, _median_by_sort

    x = np.round(rng.normal(size=n), 1)  # ties
    t = torch.as_tensor(x)
    assert float(_median(t)) == np.median(x)
    assert float(_median_by_sort(t)) == np.median(x)
