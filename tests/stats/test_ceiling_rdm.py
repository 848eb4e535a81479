"""Noise ceilings of RDM sets against rsatoolbox and an explicit loop; split-half ceilings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rsatoolbox
import scipy.stats
import torch

from cortexalign.errors import UnknownNameError
from cortexalign.metrics import RDM_COMPARISONS
from cortexalign.neural import RDMSet, load_neural
from cortexalign.stats import rdm_noise_ceiling, spearman_brown, split_half_ceiling

RSA_NAMES = {"spearman": "spearman", "kendall_tau_a": "tau-a", "pearson": "corr", "cosine": "cosine",
             "rho_a": "rho-a", "cosine_cov": "cosine_cov", "corr_cov": "corr_cov"}


@pytest.fixture(scope="module")
def human_it() -> RDMSet:
    return load_neural("kriegeskorte92.human_IT")


def _rsatoolbox_ceiling(rdm_set: RDMSet, method: str, by: str):
    rdms = rsatoolbox.rdm.RDMs(rdm_set.rdms, rdm_descriptors={"subject": rdm_set.descriptors["subject"]})
    with warnings.catch_warnings():  # rsatoolbox warns that tau ceilings pool ranks
        warnings.simplefilter("ignore", UserWarning)
        return rsatoolbox.inference.boot_noise_ceiling(rdms, method=RSA_NAMES[method],
                                                       rdm_descriptor=by)


@pytest.mark.parametrize("method", list(RDM_COMPARISONS))
@pytest.mark.parametrize("by", ["subject", "index"])
def test_kriegeskorte92_matches_rsatoolbox(method, by, human_it):
    low, high = rdm_noise_ceiling(human_it, method, by=None if by == "index" else by, device="cpu")
    ref_low, ref_high = _rsatoolbox_ceiling(human_it, method, by)
    assert low == pytest.approx(ref_low, abs=1e-6)
    assert high == pytest.approx(ref_high, abs=1e-6)
    assert low < high


def _explicit_spearman_ceiling(rdms: np.ndarray, groups: np.ndarray):
    iu = np.triu_indices(rdms.shape[1], 1)
    vecs = np.array([r[iu] for r in rdms])
    ranks = np.array([scipy.stats.rankdata(v) for v in vecs])
    lows, highs = [], []
    for g in np.unique(groups):
        out, inn = groups == g, groups != g
        pooled_others, pooled_all = ranks[inn].mean(0), ranks.mean(0)
        lows.append(np.mean([scipy.stats.spearmanr(pooled_others, v)[0] for v in vecs[out]]))
        highs.append(np.mean([scipy.stats.spearmanr(pooled_all, v)[0] for v in vecs[out]]))
    return np.mean(lows), np.mean(highs)


def test_subject_grouping_matches_explicit_loop(rng):
    s, iu = 15, np.triu_indices(15, 1)
    truth = rng.uniform(size=len(iu[0]))
    rdms = np.zeros((6, s, s))
    for k in range(6):
        rdms[k][iu] = truth + 0.5 * rng.normal(size=len(iu[0]))
        rdms[k] += rdms[k].T
    groups = np.array([1, 1, 2, 2, 3, 3])
    rdm_set = RDMSet(rdms, [f"s{i}" for i in range(s)], {"subject": groups})
    ours = rdm_noise_ceiling(rdm_set, "spearman", by="subject", device="cpu")
    np.testing.assert_allclose(ours, _explicit_spearman_ceiling(rdms, groups), atol=1e-12)


def test_single_group_has_no_ceiling(human_it):
    one = RDMSet(human_it.rdms[:2], human_it.stimulus_ids, {"subject": np.array([1, 1])})
    assert all(np.isnan(rdm_noise_ceiling(one, "spearman", by="subject", device="cpu")))


def test_unknown_comparison(human_it):
    with pytest.raises(UnknownNameError, match="spearman"):
        rdm_noise_ceiling(human_it, "spearmen", device="cpu")


def test_spearman_brown_closed_form():
    assert spearman_brown(0.5) == pytest.approx(2 / 3)
    assert spearman_brown(0.5, 3.0) == pytest.approx(0.75)


def test_split_half_ceiling_against_explicit_split(rng):
    resp = rng.normal(size=(12, 20, 1)) + 0.7 * rng.normal(size=(12, 20, 4))
    t = torch.as_tensor(resp)
    r_half, r_full = split_half_ceiling(t, "correlation", "pearson", n_splits=1, seed=3)
    perm = torch.randperm(4, generator=torch.Generator().manual_seed(3)).numpy()
    iu = np.triu_indices(12, 1)
    halves = [1 - np.corrcoef(resp[:, :, perm[sl]].mean(2))[iu] for sl in (slice(0, 2), slice(2, 4))]
    expected = np.corrcoef(*halves)[0, 1]
    assert r_half == pytest.approx(expected, abs=1e-12)
    assert r_full == pytest.approx(2 * expected / (1 + expected), abs=1e-12)


def test_split_half_grows_with_signal(rng):
    signal = rng.normal(size=(15, 30, 1))
    noisy = torch.as_tensor(signal + 2.0 * rng.normal(size=(15, 30, 6)))
    clean = torch.as_tensor(signal + 0.2 * rng.normal(size=(15, 30, 6)))
    assert split_half_ceiling(clean)[1] > split_half_ceiling(noisy)[1]
    assert np.isnan(split_half_ceiling(clean[:, :, :1])[0])
