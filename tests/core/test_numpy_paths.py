"""The NumPy paths of the CPU (``compute.numpy_kernel``) give the torch paths' numbers.

Small CPU problems run in NumPy from input to output (RDMs, CKA) and the bootstrap ranks share
work between calls (``stats._memo``); each is checked against the torch path or an
explicit reference to 1e-12, with the same errors and warnings.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from cortexalign.errors import InputError
from cortexalign.metrics import cka, compute_rdm, compute_rdms
from cortexalign.metrics._cka import cka_tensor
from cortexalign.rdm import ConstantFeaturesWarning, centred_weighted_ranks, weighted_ranks
from cortexalign.stats import _memo, bootstrap_indices, bootstrap_rdm_comparison
from cortexalign.stats._bootstrap import pair_weights

METHODS = ("correlation", "cosine", "euclidean")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(5, 3), (92, 1000), (300, 40), (700, 9)])
def test_rdm_numpy_path_equals_blocked_torch_path(method, shape, rng):
    x = rng.normal(size=shape) * rng.uniform(0.5, 3.0, size=(shape[0], 1)) + 2.0
    ref = compute_rdm(torch.as_tensor(x), method, chunk_size=128)  # the blocked torch path
    for layout in (x, np.asfortranarray(x), x[:, ::-1]):  # C order, Fortran order, strided
        fast = compute_rdm(layout, method)
        assert isinstance(fast, np.ndarray)
        np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-12 * max(1.0, np.abs(ref).max()))
        assert np.array_equal(fast, fast.T) and not np.diagonal(fast).any()


def test_rdm_numpy_path_takes_every_input_kind(rng):
    x = rng.normal(size=(20, 7))
    ref = compute_rdm(x)
    read_only = x.copy()
    read_only.flags.writeable = False
    for same in (read_only, x.tolist(), torch.as_tensor(x), x.astype(np.float32).astype(float)):
        np.testing.assert_allclose(compute_rdm(same), ref, atol=1e-12)
    out = compute_rdm(x, return_tensor=True)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    stacked = compute_rdms([x, x[:, :3]])
    np.testing.assert_allclose(stacked[1], compute_rdm(x[:, :3], chunk_size=8), atol=1e-12)


def test_rdm_numpy_path_errors_and_warnings_match_torch_path(rng):
    x = rng.normal(size=(10, 6))
    x[4, 2] = np.nan
    for kwargs in ({}, {"chunk_size": 4}):
        with pytest.raises(InputError, match=r"x_sd.*1 NaN/Inf values \(first at index \(4, 2\)\)"):
            compute_rdm(x, **kwargs)
    with pytest.raises(InputError, match="real-valued"):
        compute_rdm(np.ones((4, 3), dtype=complex))
    with pytest.raises(InputError, match="numeric array"):
        compute_rdm(np.array([["a", "b"], ["c", "d"]]))
    x = rng.normal(size=(10, 6))
    x[3] = 1.5  # a constant row: dissimilarity 1 to every other, with a warning
    with pytest.warns(ConstantFeaturesWarning, match="first at row 3"):
        fast = compute_rdm(x)
    with pytest.warns(ConstantFeaturesWarning):
        ref = compute_rdm(x, chunk_size=4)
    np.testing.assert_allclose(fast, ref, atol=1e-12)
    assert np.all(np.delete(fast[3], 3) == 1.0)


@pytest.mark.parametrize("kind", ["linear", "linear_debiased", "rbf"])
@pytest.mark.parametrize("shape", [(92, 1000, 200), (300, 20, 8), (40, 5, 900)])
def test_cka_numpy_path_equals_torch_path(kind, shape, rng):
    s, dx, dy = shape
    x = rng.normal(size=(s, dx)) + 3.0
    y = x[:, :min(dx, dy)] @ rng.normal(size=(min(dx, dy), dy)) + rng.normal(size=(s, dy))
    options = {"sigma_frac": 0.6} if kind == "rbf" else {}
    fast = cka(x, y, kind, **options)
    ref = float(cka_tensor(torch.as_tensor(x), torch.as_tensor(y), kind, **options))
    assert abs(fast - ref) <= 1e-12, (fast, ref)
    assert cka(torch.as_tensor(x), torch.as_tensor(y), kind, **options) == fast


@pytest.mark.parametrize("offset", [0.0, 30.0, 1e6])  # kernel from the raw syrk; at 1e6 from a centred copy
@pytest.mark.parametrize("kind", ["linear", "linear_debiased"])
def test_cka_numpy_path_keeps_precision_under_offsets(kind, offset, rng):
    x = rng.normal(size=(40, 500)) + offset * rng.uniform(0.5, 1.0, size=500)
    y = x[:, :60] @ rng.normal(size=(60, 90)) + rng.normal(size=(40, 90)) + offset
    ref = float(cka_tensor(torch.as_tensor(x), torch.as_tensor(y), kind))
    # at offset 1e6 both paths centre explicitly; the debiased estimator's differences of large
    # sums then round at ~1e-12 in either summation order
    tol = 1e-12 if offset < 1e3 else 1e-10
    assert abs(cka(x, y, kind) - ref) <= tol
    assert abs(cka(np.asfortranarray(x), y, kind) - ref) <= tol


@pytest.mark.parametrize("offset", [0.0, 5.0, 1e6])  # Gram from the raw syrk; at 1e6 from a centred copy
def test_rdm_correlation_keeps_precision_under_offsets(offset, rng):
    x = rng.normal(size=(60, 300)) + offset * rng.uniform(0.5, 1.0, size=(60, 1))
    ref = compute_rdm(torch.as_tensor(x), chunk_size=16)  # explicitly centred rows
    fast = compute_rdm(x)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-12)
    assert np.array_equal(fast, fast.T) and not np.diagonal(fast).any()


def test_cka_numpy_path_names_the_bad_input(rng):
    x, y = rng.normal(size=(12, 5)), rng.normal(size=(12, 4))
    y[2, 1] = np.inf
    for kind in ("linear", "rbf"):
        with pytest.raises(InputError, match="y_sd"):
            cka(x, y, kind)
    wide_x, wide_y = rng.normal(size=(12, 40)), rng.normal(size=(12, 30))  # kernels from the raw syrk
    wide_y[4, 7] = np.nan
    for kind in ("linear", "linear_debiased"):
        with pytest.raises(InputError, match="y_sd"):
            cka(wide_x, wide_y, kind)
    with pytest.raises(InputError, match="x_sd"):
        cka(np.ones((12, 5)), y[:, :1], "linear")


def _expanded_ranks(x_p, w_p):
    """Average ranks of each element in the vector where element k is repeated w_k times."""
    expanded = np.repeat(x_p, w_p.astype(int))
    ranks = scipy.stats.rankdata(expanded)
    starts = np.concatenate([[0], np.cumsum(w_p.astype(int))[:-1]])
    return np.array([ranks[a] if n else np.nan for a, n in zip(starts, w_p.astype(int),
                                                                 strict=True)]), ranks


@pytest.mark.parametrize("ties", [False, True])
def test_centred_weighted_ranks_equal_ranks_of_the_expanded_vector(ties, rng):
    s = 12
    x = rng.random(s * (s - 1) // 2)
    if ties:
        x = np.round(x * 6) / 6
    w = pair_weights(bootstrap_indices(s, 20, seed=3), s)
    rc, sumsq = centred_weighted_ranks(torch.as_tensor(x), w)
    ranks = weighted_ranks(torch.as_tensor(x), w).numpy()
    for b in range(w.shape[0]):
        wb = w[b].numpy()
        ref, expanded = _expanded_ranks(x, wb)
        keep = wb > 0
        np.testing.assert_array_equal(ranks[b][keep], ref[keep])
        centred = expanded - (len(expanded) + 1) / 2
        np.testing.assert_array_equal(rc[b].numpy()[keep], ref[keep] - (len(expanded) + 1) / 2)
        assert float(sumsq[b]) == pytest.approx((centred**2).sum(), rel=1e-14, abs=1e-9)


@pytest.mark.parametrize("method", ["spearman", "rho_a"])
def test_bootstrap_ranks_kept_between_calls_change_nothing(method, rng):
    """The second call takes the targets' ranks and the pair weights from the memo; the samples
    equal the first call's bit for bit, and an explicit Spearman of the expanded vectors."""
    s = 14
    p = s * (s - 1) // 2
    model, targets = torch.as_tensor(rng.random(p)), torch.as_tensor(np.round(rng.random((3, p)), 1))
    _memo.clear()
    cold = bootstrap_rdm_comparison(model, targets, method, 40, seed=7)
    warm = bootstrap_rdm_comparison(model, targets, method, 40, seed=7)
    assert torch.equal(cold.nan_to_num(9.0), warm.nan_to_num(9.0))
    other = torch.as_tensor(rng.random(p))
    _memo.clear()
    fresh = bootstrap_rdm_comparison(other, targets, method, 40, seed=7)
    bootstrap_rdm_comparison(model, targets, method, 40, seed=7)
    assert torch.equal(fresh.nan_to_num(9.0),
                       bootstrap_rdm_comparison(other, targets, method, 40, seed=7).nan_to_num(9.0))
    if method == "spearman":
        w = pair_weights(bootstrap_indices(s, 40, seed=7), s).numpy()
        for b in range(5):
            xs = np.repeat(model.numpy(), w[b].astype(int))
            for j in range(3):
                ys = np.repeat(targets[j].numpy(), w[b].astype(int))
                ref = scipy.stats.spearmanr(xs, ys).statistic
                assert abs(float(cold[b, j]) - ref) <= 1e-12
