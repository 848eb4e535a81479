"""Stimulus bootstrap: each weighted sample equals rsatoolbox's resampled comparison, seeds
reproduce, and the percentile interval covers a known population value at about the nominal rate."""

from __future__ import annotations

import numpy as np
import pytest
import rsatoolbox
import torch

from cortexalign.errors import InputError
from cortexalign.metrics import RDM_COMPARISONS
from cortexalign.stats import (
    bootstrap_indices,
    bootstrap_rdm_comparison,
    pair_weights,
    percentile_interval,
)

RSA_NAMES = {"spearman": "spearman", "kendall_tau_a": "tau-a", "pearson": "corr", "cosine": "cosine",
             "rho_a": "rho-a", "cosine_cov": "cosine_cov", "corr_cov": "corr_cov"}


def _rdms(rng, r, s, decimals=None):
    iu = np.triu_indices(s, 1)
    out = np.zeros((r, s, s))
    for k in range(r):
        v = rng.uniform(0, 1, len(iu[0]))
        out[k][iu] = np.round(v, decimals) if decimals else v
        out[k] += out[k].T
    return out


@pytest.mark.parametrize("method", list(RDM_COMPARISONS))
def test_each_sample_equals_rsatoolbox_resampled_comparison(method, rng):
    s, n_boot = 11, 6
    model, targets = _rdms(rng, 1, s, decimals=1), _rdms(rng, 3, s, decimals=1)
    iu = np.triu_indices(s, 1)
    ours = bootstrap_rdm_comparison(torch.as_tensor(model[0][iu]),
                                    torch.as_tensor(targets[:, iu[0], iu[1]]), method, n_boot,
                                    seed=5).numpy()
    idx = bootstrap_indices(s, n_boot, seed=5).numpy()
    rm, rt = rsatoolbox.rdm.RDMs(model), rsatoolbox.rdm.RDMs(targets)
    for b in range(n_boot):
        ref = rsatoolbox.rdm.compare(rm.subsample_pattern("index", idx[b]),
                                     rt.subsample_pattern("index", idx[b]), RSA_NAMES[method])[0]
        np.testing.assert_allclose(ours[b], ref, atol=1e-9)


def test_pair_weights_count_pairs_of_distinct_draws():
    idx = torch.tensor([[0, 0, 2, 3, 3, 3]])
    w = pair_weights(idx, 4).numpy()[0]
    iu = np.triu_indices(4, 1)
    expected = {(0, 2): 2, (0, 3): 6, (2, 3): 3}
    for k, (i, j) in enumerate(zip(*iu, strict=True)):
        assert w[k] == expected.get((i, j), 0)


def test_seeded_and_reproducible(rng):
    model, target = _rdms(rng, 1, 15), _rdms(rng, 1, 15)
    iu = np.triu_indices(15, 1)
    m, t = torch.as_tensor(model[0][iu]), torch.as_tensor(target[:, iu[0], iu[1]])
    a = bootstrap_rdm_comparison(m, t, "spearman", 50, seed=1)
    assert torch.equal(a, bootstrap_rdm_comparison(m, t, "spearman", 50, seed=1))
    assert not torch.equal(a, bootstrap_rdm_comparison(m, t, "spearman", 50, seed=2))
    # chunking the samples changes nothing
    assert torch.allclose(a, bootstrap_rdm_comparison(m, t, "spearman", 50, seed=1,
                                                      max_elements=300), atol=1e-12)


def test_percentile_interval_closed_form():
    assert percentile_interval(np.arange(101.0), 0.9) == pytest.approx((5.0, 95.0))
    assert percentile_interval([np.nan, 1.0, 3.0], 0.5) == pytest.approx((1.5, 2.5))
    with pytest.raises(InputError, match="ci_level"):
        percentile_interval([1.0], 1.5)
    with pytest.raises(InputError, match="n_bootstrap"):
        bootstrap_indices(5, 0)


def _population(rng, n, noise=0.6):
    u = rng.uniform(size=(n, 2))
    return u, u + noise * rng.normal(size=(n, 2))


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_coverage_of_known_population_value(method):
    """Stimuli u ~ U(0,1)^2, neural v = u + noise; model RDM from u, target RDM from v. The
    population value is the comparison over independent pairs of stimuli (Monte Carlo, 400k
    pairs: its error, ~0.002, is small beside the interval widths, ~0.15)."""
    rng = np.random.default_rng(0)
    (u1, v1), (u2, v2) = _population(rng, 400_000), _population(rng, 400_000)
    dm, dt = ((u1 - u2) ** 2).sum(1), ((v1 - v2) ** 2).sum(1)
    truth = float(RDM_COMPARISONS[method](torch.as_tensor(dm)[None], torch.as_tensor(dt)[None]))
    s, n_sim = 40, 200
    iu = np.triu_indices(s, 1)
    covered = 0
    for k in range(n_sim):
        u, v = _population(rng, s)
        m = ((u[:, None] - u[None]) ** 2).sum(-1)[iu]
        t = ((v[:, None] - v[None]) ** 2).sum(-1)[iu]
        samples = bootstrap_rdm_comparison(torch.as_tensor(m), torch.as_tensor(t)[None], method,
                                           300, seed=k)[:, 0]
        lo, hi = percentile_interval(samples, 0.95)
        covered += lo <= truth <= hi
    assert 0.85 <= covered / n_sim <= 0.99


def test_draws_of_two_distinct_stimuli_give_nan_not_rounding(rng):
    """Two distinct stimuli drawn: every pair of the resampled RDM has one dissimilarity, so a
    centred comparison is undefined. It must be NaN (dropped by percentile_interval), not the
    +-1 that 0/0 in rounding becomes after clamping."""
    import itertools

    from cortexalign.stats._bootstrap import BOOTSTRAP_COMPARISONS, pair_weights, stimulus_counts

    s = 4
    draws = torch.tensor([i for i in itertools.product(range(s), repeat=s) if len(set(i)) == 2])
    w, c = pair_weights(draws, s), stimulus_counts(draws, s)
    for _ in range(5):
        x, y = torch.as_tensor(rng.random(6)), torch.as_tensor(rng.random((2, 6)))
        for method in ("pearson", "spearman", "corr_cov"):
            out = BOOTSTRAP_COMPARISONS[method](x, y, w, c)
            assert torch.isnan(out).all(), (method, out[~torch.isnan(out)])
