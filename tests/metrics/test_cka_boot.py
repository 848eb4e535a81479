"""Bootstrap CKA with copies of a stimulus never paired (``metrics._cka_boot``).

References: the point estimates (all counts 1), the resampled rows themselves with the entries
between two copies masked (biased linear and rbf, ``np.median`` for the bandwidth), and the
weighted U-statistic enumerated over tuples of distinct stimuli (debiased).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from cortexalign.metrics import score
from cortexalign.metrics._cka import cka_tensor
from cortexalign.metrics._cka_boot import resampled_cka
from cortexalign.neural import make_responses
from cortexalign.stats import bootstrap_indices

KINDS = ("linear", "linear_debiased", "rbf")


def _data(s: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(s, 6, generator=g, dtype=torch.float64)
    y = 0.6 * x[:, :4] + torch.randn(s, 4, generator=g, dtype=torch.float64)
    return x, y


def _counts(idx: torch.Tensor, s: int) -> torch.Tensor:
    return torch.bincount(idx, minlength=s).to(torch.float64)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("s", [5, 12, 40])
def test_counts_of_one_give_the_point_estimate(kind, s):
    x, y = _data(s)
    got = resampled_cka(x @ x.T, y @ y.T, torch.ones(s, dtype=torch.float64), kind)
    torch.testing.assert_close(got, cka_tensor(x, y, kind), atol=1e-12, rtol=1e-10)


def _masked_resample_cka(x, y, idx, kind):
    """CKA on the resampled rows, the entries between two copies of a stimulus masked out."""
    n = len(idx)
    copies = (idx[:, None] == idx[None, :]) & ~torch.eye(n, dtype=torch.bool)
    keep = (~copies).double()
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n

    def kernel(z):
        if kind == "linear":
            return z @ z.T
        sq = (z * z).sum(1)
        d2 = (sq[:, None] + sq[None, :] - 2 * z @ z.T).clamp(min=0).fill_diagonal_(0)
        return torch.exp(-d2 / (2 * float(np.median(d2[~copies].numpy()))))

    kc, lc = h @ kernel(x[idx]) @ h, h @ kernel(y[idx]) @ h
    return float((keep * kc * lc).sum() / torch.sqrt((keep * kc * kc).sum() * (keep * lc * lc).sum()))


@pytest.mark.parametrize("kind", ["linear", "rbf"])
def test_biased_kinds_equal_the_masked_resample(kind):
    x, y = _data(15)
    for idx in bootstrap_indices(15, 5, seed=3):
        got = resampled_cka(x @ x.T, y @ y.T, _counts(idx, 15), kind)
        assert float(got) == pytest.approx(_masked_resample_cka(x, y, idx, kind), rel=1e-10)


def _u_statistic(k, l_, c):
    """Weighted U-statistic HSIC: pairs, paths and disjoint pairs of distinct stimuli."""
    s = len(c)
    sums = {}
    for order, term in ((2, lambda i, j: k[i, j] * l_[i, j]),
                        (3, lambda i, j, q: k[i, j] * l_[j, q]),
                        (4, lambda i, j, q, r: k[i, j] * l_[q, r])):
        num = den = 0.0
        for t in itertools.permutations(range(s), order):
            w = float(np.prod([c[i] for i in t]))
            num, den = num + w * float(term(*t)), den + w
        sums[order] = num / den
    return sums[2] + sums[4] - 2 * sums[3]


def test_debiased_equals_the_u_statistic_over_distinct_stimuli():
    x, y = _data(7, seed=1)
    xc, yc = x - x.mean(0), y - y.mean(0)
    k, l_ = xc @ xc.T, yc @ yc.T
    for c in (torch.ones(7, dtype=torch.float64), _counts(torch.tensor([0, 0, 1, 2, 2, 2, 4]), 7),
              _counts(torch.tensor([1, 3, 3, 5, 6, 6, 6]), 7)):
        want = _u_statistic(k, l_, c) / np.sqrt(_u_statistic(k, k, c) * _u_statistic(l_, l_, c))
        got = resampled_cka(x @ x.T, y @ y.T, c, "linear_debiased")
        assert float(got) == pytest.approx(want, rel=1e-9)


def test_debiased_is_nan_with_fewer_than_four_distinct_stimuli():
    x, y = _data(6)
    c = _counts(torch.tensor([0, 0, 1, 1, 2, 2]), 6)
    assert torch.isnan(resampled_cka(x @ x.T, y @ y.T, c, "linear_debiased"))


@pytest.mark.parametrize("kind", ["cka_linear", "cka_rbf"])
def test_score_interval_is_the_percentile_of_masked_resamples(kind):
    x, y = _data(20, seed=4)
    resp = make_responses(y.numpy(), [f"s{i}" for i in range(20)])
    got = score(kind, x.numpy(), resp, n_bootstrap=30, seed=5, device="cpu")
    samples = [_masked_resample_cka(x, y, idx, kind.removeprefix("cka_"))
               for idx in bootstrap_indices(20, 30, seed=5)]
    assert (got.ci_low, got.ci_high) == pytest.approx(tuple(np.quantile(samples, [0.025, 0.975])),
                                                      rel=1e-9)


@pytest.mark.parametrize("kind", ["cka_linear", "cka_linear_debiased", "cka_rbf"])
def test_with_no_shared_signal_the_interval_holds_the_estimate(kind):
    """Resampled as distinct rows, CKA sat above its estimate: the estimate fell below the whole
    interval in 20 of 20 simulations. Without copy pairs it lies inside."""
    rng = np.random.default_rng(0)
    inside = []
    for rep in range(8):
        x, y = rng.normal(size=(60, 15)), rng.normal(size=(60, 20))
        sc = score(kind, x, make_responses(y, [f"s{i}" for i in range(60)]), n_bootstrap=100,
                   seed=rep, device="cpu")
        inside.append(sc.ci_low <= sc.value <= sc.ci_high)
    assert sum(inside) >= 7, inside
