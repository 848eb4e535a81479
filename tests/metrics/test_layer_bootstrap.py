"""Bootstrap intervals of ``layer_similarity``: every entry against ``resampled_cka`` of its pair
alone on the same resamples (the all-layers engine with one layer a side, checked against masked
resamples and an enumerated U-statistic in test_cka_boot.py), and the requests it refuses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortexalign.errors import InputError
from cortexalign.metrics import layer_similarity
from cortexalign.metrics._cka_boot import resampled_cka
from cortexalign.stats import bootstrap_indices


def _feats(rng, prefix: str, widths, s: int = 24, shared=None) -> dict:
    out = {}
    for i, d in enumerate(widths):
        x = rng.normal(size=(s, d))
        if shared is not None:
            x[:, :3] += shared
        out[f"{prefix}{i}"] = x
    return out


@pytest.mark.parametrize("metric", ["cka_linear", "cka_linear_debiased", "cka_rbf"])
@pytest.mark.parametrize("self_compare", [False, True])
def test_intervals_are_the_percentiles_of_each_pairs_resampled_cka(metric, self_compare):
    rng = np.random.default_rng(0)
    shared = rng.normal(size=(24, 3))
    a = _feats(rng, "a", (5, 9, 16), shared=shared)
    b = None if self_compare else _feats(rng, "b", (4, 30), shared=shared)
    options = {"sigma_frac": 0.8} if metric == "cka_rbf" else {}
    da = layer_similarity(a, b, metric, device="cpu", n_bootstrap=40, seed=7, ci_level=0.9,
                          **options)
    other = a if b is None else b
    kind = metric.removeprefix("cka_")
    for i, la in enumerate(a):
        for j, lb in enumerate(other):
            x, y = (torch.as_tensor(v, dtype=torch.float64) for v in (a[la], other[lb]))
            samples = [float(resampled_cka(x @ x.T, y @ y.T,
                                           torch.bincount(idx, minlength=24).double(), kind,
                                           **options))
                       for idx in bootstrap_indices(24, 40, seed=7)]
            want = np.nanquantile(samples, [0.05, 0.95])
            got = (float(da.ci_low[i, j]), float(da.ci_high[i, j]))
            assert got == pytest.approx(tuple(want), rel=1e-8, abs=1e-12), (la, lb)
    assert da.attrs["n_bootstrap"] == 40 and da.attrs["ci_level"] == 0.9
    if self_compare:
        np.testing.assert_allclose(da.ci_low.values, da.ci_low.values.T, rtol=1e-10)


def test_no_bootstrap_adds_no_interval_coordinates():
    rng = np.random.default_rng(1)
    da = layer_similarity(_feats(rng, "a", (4, 6)), device="cpu")
    assert "ci_low" not in da.coords and "n_bootstrap" not in da.attrs


@pytest.mark.parametrize(("metric", "options", "parameter"), [
    ("rsa", {"n_bootstrap": 10}, "n_bootstrap"),
    ("cka_linear", {"n_bootstrap": -1}, "n_bootstrap"),
    ("cka_linear", {"n_bootstrap": 2.5}, "n_bootstrap"),
    ("cka_linear", {"n_bootstrap": 10, "ci_level": 1.5}, "ci_level"),
    ("cka_linear", {"n_bootstrap": 10, "seed": -2}, "seed")])
def test_bad_bootstrap_requests_are_refused_naming_the_parameter(metric, options, parameter):
    rng = np.random.default_rng(2)
    with pytest.raises(InputError) as err:
        layer_similarity(_feats(rng, "a", (4, 6)), metric=metric, device="cpu", **options)
    assert err.value.parameter == parameter
