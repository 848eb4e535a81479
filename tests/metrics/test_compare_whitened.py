"""rho-a and the whitened comparisons (cosine_cov, corr_cov): rsatoolbox at several sizes, a dense
V^-1 solve, closed forms, invariances, resampled RDMs, and the rsa metric end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rsatoolbox
import scipy.stats
import torch
from scipy.spatial.distance import squareform

from cortexalign.metrics import compare_rdms, compute_rdm, score
from cortexalign.metrics._rsa_metric import rsa_from_rdm
from cortexalign.neural import load_neural, make_responses
from cortexalign.rdm import pair_row_sums, resampled_cosine_cov

NEW = {"rho_a": "rho-a", "cosine_cov": "cosine_cov", "corr_cov": "corr_cov"}


def _rdms(rng, r: int, s: int, decimals: int | None = None) -> np.ndarray:
    v = rng.uniform(0, 2, size=(r, s * (s - 1) // 2))
    if decimals is not None:
        v = np.round(v, decimals)
    return np.stack([squareform(x) for x in v])


def _ref(a, b, method):
    return rsatoolbox.rdm.compare(rsatoolbox.rdm.RDMs(a), rsatoolbox.rdm.RDMs(b), NEW[method])


@pytest.mark.parametrize("method", list(NEW))
@pytest.mark.parametrize("s", [3, 5, 23, 120])  # 120: rsatoolbox's sparse-indicator branch
@pytest.mark.parametrize("decimals", [None, 1])
def test_match_rsatoolbox_at_several_sizes(method, s, decimals, rng):
    a, b = _rdms(rng, 2, s, decimals), _rdms(rng, 3, s, decimals)
    np.testing.assert_allclose(compare_rdms(a, b, method, device="cpu"), _ref(a, b, method),
                               atol=1e-6)


def _dense_v(s: int) -> np.ndarray:
    """V = (C C^T) o (C C^T), C the (p, s) pair-contrast matrix (Diedrichsen et al. 2021)."""
    iu = np.triu_indices(s, 1)
    c = np.zeros((len(iu[0]), s))
    c[np.arange(len(iu[0])), iu[0]], c[np.arange(len(iu[0])), iu[1]] = 1.0, -1.0
    xi = c @ c.T
    return xi * xi


@pytest.mark.parametrize("s", [4, 7, 12])
def test_cosine_cov_equals_dense_inverse_covariance_weighting(s, rng):
    a, b = _rdms(rng, 2, s), _rdms(rng, 2, s)
    iu = np.triu_indices(s, 1)
    va, vb = a[:, iu[0], iu[1]], b[:, iu[0], iu[1]]
    v = _dense_v(s)
    ia, ib = np.linalg.solve(v, va.T).T, np.linalg.solve(v, vb.T).T
    cos = (va @ ib.T) / np.sqrt((va * ia).sum(1))[:, None] / np.sqrt((vb * ib).sum(1))[None]
    np.testing.assert_allclose(compare_rdms(a, b, "cosine_cov", device="cpu"), cos, atol=1e-10)
    vc, wc = va - va.mean(1, keepdims=True), vb - vb.mean(1, keepdims=True)
    ic, jc = np.linalg.solve(v, vc.T).T, np.linalg.solve(v, wc.T).T
    corr = (vc @ jc.T) / np.sqrt((vc * ic).sum(1))[:, None] / np.sqrt((wc * jc).sum(1))[None]
    np.testing.assert_allclose(compare_rdms(a, b, "corr_cov", device="cpu"), corr, atol=1e-10)


def test_rho_a_closed_forms(rng):
    s = 15
    iu = np.triu_indices(s, 1)
    p = len(iu[0])
    a, b = _rdms(rng, 1, s), _rdms(rng, 1, s)
    d = scipy.stats.rankdata(a[0][iu]) - scipy.stats.rankdata(b[0][iu])
    assert compare_rdms(a, b, "rho_a", device="cpu")[0, 0] == pytest.approx(
        1 - 6 * (d**2).sum() / (p**3 - p), abs=1e-12)
    # with ties: the textbook formula on average ranks exceeds rho-a by (T_a + T_b) / (2 (p^3 - p))
    ta, tb = _rdms(rng, 1, s, decimals=1), _rdms(rng, 1, s, decimals=1)
    ra, rb = scipy.stats.rankdata(ta[0][iu]), scipy.stats.rankdata(tb[0][iu])
    tie = [sum(t**3 - t for t in np.unique(r, return_counts=True)[1]) for r in (ra, rb)]
    textbook = 1 - 6 * ((ra - rb) ** 2).sum() / (p**3 - p)
    assert compare_rdms(ta, tb, "rho_a", device="cpu")[0, 0] == pytest.approx(
        textbook - sum(tie) / (2 * (p**3 - p)), abs=1e-12)
    assert compare_rdms(ta, ta, "rho_a", device="cpu")[0, 0] == pytest.approx(
        1 - tie[0] / (p**3 - p), abs=1e-12)
    assert compare_rdms(a, b, "rho_a", device="cpu")[0, 0] == pytest.approx(
        compare_rdms(a, b, "spearman", device="cpu")[0, 0], abs=1e-12)


def test_invariances(rng):
    a, b = _rdms(rng, 2, 11), _rdms(rng, 3, 11)
    off = 1.0 - np.eye(11)
    base_cos = compare_rdms(a, b, "cosine_cov", device="cpu")
    np.testing.assert_allclose(compare_rdms(7.5 * a, 0.2 * b, "cosine_cov", device="cpu"),
                               base_cos, atol=1e-12)
    # not invariant to a constant: a constant RDM is not orthogonal to the others under V^-1
    assert np.abs(compare_rdms(a + 3 * off, b, "cosine_cov", device="cpu") - base_cos).max() > 1e-3
    base_corr = compare_rdms(a, b, "corr_cov", device="cpu")
    np.testing.assert_allclose(compare_rdms(3.0 * a + 5 * off, 0.5 * b - 0.2 * off, "corr_cov",
                                            device="cpu"), base_corr, atol=1e-12)
    for method in NEW:
        np.testing.assert_allclose(np.diag(compare_rdms(a, a, method, device="cpu")), 1.0,
                                   atol=1e-12)


@pytest.mark.parametrize("block", [1, 7, 2**20])
def test_pair_row_sums_against_square_matrices(block, rng):
    s = 13
    a = _rdms(rng, 2, s)
    iu = np.triu_indices(s, 1)
    x = torch.as_tensor(a[:, iu[0], iu[1]])
    np.testing.assert_allclose(pair_row_sums(x, block=block).numpy(), a.sum(2), atol=1e-12)
    c = rng.integers(0, 4, size=(3, s))
    np.testing.assert_allclose(pair_row_sums(x, torch.as_tensor(c), block=block).numpy(),
                               np.einsum("kij,bj->bki", a, c), atol=1e-12)


@pytest.mark.parametrize("center", [False, True])
def test_resampled_including_a_stimulus_drawn_s_over_2_plus_1_times(center, rng):
    """idx below draws stimulus 0 four times of six (S - 2 c + 2 = 0): the dense fallback."""
    s = 6
    model, targets = _rdms(rng, 1, s, 1), _rdms(rng, 2, s, 1)
    iu = np.triu_indices(s, 1)
    idx = np.array([[0, 0, 0, 0, 1, 2], [0, 1, 2, 3, 4, 5], [1, 1, 3, 3, 5, 2]])
    counts = torch.as_tensor(np.stack([np.bincount(i, minlength=s) for i in idx]))
    ours = resampled_cosine_cov(torch.as_tensor(model[0][iu]),
                                torch.as_tensor(targets[:, iu[0], iu[1]]), counts, center).numpy()
    rm, rt = rsatoolbox.rdm.RDMs(model), rsatoolbox.rdm.RDMs(targets)
    name = "corr_cov" if center else "cosine_cov"
    for b, i in enumerate(idx):
        ref = rsatoolbox.rdm.compare(rm.subsample_pattern("index", i),
                                     rt.subsample_pattern("index", i), name)[0]
        np.testing.assert_allclose(ours[b], ref, atol=1e-9)


@pytest.mark.parametrize("s", [3, 4])
def test_resampled_every_draw_at_tiny_s(s, rng):
    """Every draw of s = 3 and 4 stimuli (s ** s of them) against rsatoolbox's subsample_pattern
    RDMs. With two distinct stimuli drawn, every non-NaN pair of the resampled RDM is the same
    dissimilarity: corr_cov is undefined (rsatoolbox: 0 from a zero vector), ours NaN, which
    percentile_interval drops; rounding must not turn it into +-1 or noise."""
    import itertools

    iu = np.triu_indices(s, 1)
    for _ in range(3):
        model, targets = _rdms(rng, 1, s), _rdms(rng, 2, s)
        rm, rt = rsatoolbox.rdm.RDMs(model), rsatoolbox.rdm.RDMs(targets)
        draws = np.array([i for i in itertools.product(range(s), repeat=s) if len(set(i)) > 1])
        counts = torch.as_tensor(np.stack([np.bincount(i, minlength=s) for i in draws]))
        for center, name in ((False, "cosine_cov"), (True, "corr_cov")):
            ours = resampled_cosine_cov(torch.as_tensor(model[0][iu]),
                                        torch.as_tensor(targets[:, iu[0], iu[1]]), counts,
                                        center).numpy()
            for b, i in enumerate(draws):
                if center and len(set(i)) == 2:
                    assert np.isnan(ours[b]).all(), (i, ours[b])
                    continue
                ref = rsatoolbox.rdm.compare(rm.subsample_pattern("index", i),
                                             rt.subsample_pattern("index", i), name)[0]
                np.testing.assert_allclose(ours[b], ref, atol=1e-9, err_msg=f"{name} {i}")


@pytest.fixture(scope="module")
def human_it():
    return load_neural("kriegeskorte92.human_IT")


@pytest.mark.parametrize("method", list(NEW))
def test_rsa_metric_end_to_end(method, human_it, rng):
    feats = rng.normal(size=(92, 12))
    sc = score("rsa", feats, human_it, compare=method, n_bootstrap=20, seed=3, device="cpu")
    model = compute_rdm(feats, "correlation", device="cpu")[None]
    per_rdm = _ref(model, human_it.rdms, method)[0]
    subj = np.asarray(human_it.descriptors["subject"])
    expected = np.mean([per_rdm[subj == g].mean() for g in np.unique(subj)])
    assert sc.value == pytest.approx(expected, abs=1e-9)
    assert sc.extra["compare"] == method
    assert math.isfinite(sc.ceiling_low) and sc.ceiling_low < sc.ceiling_high
    assert math.isfinite(sc.ci_low) and sc.ci_low <= sc.ci_high
    again = rsa_from_rdm(model[0], human_it, compare=method, n_bootstrap=20, seed=3, device="cpu")
    assert (again.value, again.ci_low, again.ci_high) == (sc.value, sc.ci_low, sc.ci_high)
    # responses with repetitions: split-half ceiling through the same comparison
    resp = make_responses(rng.normal(size=(10, 6, 4)) + rng.normal(size=(10, 6, 1)),
                          [f"s{i}" for i in range(10)])
    sr = score("rsa", rng.normal(size=(10, 5)), resp, compare=method, n_bootstrap=10,
               device="cpu")
    assert math.isfinite(sr.value) and math.isfinite(sr.ceiling_low)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", list(NEW))
def test_cuda_matches_cpu(method, rng):
    a, b = _rdms(rng, 2, 40, 1), _rdms(rng, 3, 40, 1)
    np.testing.assert_allclose(compare_rdms(a, b, method, device="cuda"),
                               compare_rdms(a, b, method, device="cpu"), atol=1e-10)
