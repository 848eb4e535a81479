"""Split-half reliability (vs an explicit loop and the Spearman-Brown theory) and selection."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.neural import make_responses
from cortexalign.neural._reliability import spearman_brown, split_half_reliability
from cortexalign.neural._selection import balanced_sample, select_neuroids


def _loop_reliability(values, n_splits, seed):
    """Reference: the same random splits, half means and correlations by explicit loops."""
    s, n, r = values.shape
    rng = np.random.default_rng(seed)
    acc = np.zeros(n)
    for _ in range(n_splits):
        order = np.argsort(rng.random((s, r)), axis=1)
        for j in range(n):
            a = np.array([np.nanmean(values[i, j, order[i, : r // 2]]) for i in range(s)])
            b = np.array([np.nanmean(values[i, j, order[i, r // 2:]]) for i in range(s)])
            ok = np.isfinite(a) & np.isfinite(b)
            acc[j] += np.corrcoef(a[ok], b[ok])[0, 1]
    m = acc / n_splits
    return 2 * m / (1 + m)


def _simulate(rng, s=60, n=5, r=6, sig=1.0, noise=1.0):
    signal = rng.normal(0, sig, (s, n, 1))
    return signal + rng.normal(0, noise, (s, n, r))


def test_matches_explicit_loop(rng):
    values = _simulate(rng, s=20, n=4, r=5)
    values[3, 1, 4] = np.nan  # a missing repetition
    np.testing.assert_allclose(split_half_reliability(values, 7, seed=3),
                               _loop_reliability(values, 7, 3), rtol=1e-10)


def test_spearman_brown_theory(rng):
    """Half-mean reliability s2 / (s2 + n2/(r/2)) steps up to s2 / (s2 + n2/r)."""
    r, sig2, noise2 = 8, 1.0, 4.0
    values = _simulate(rng, s=4000, n=3, r=r, sig=np.sqrt(sig2), noise=np.sqrt(noise2))
    expected = sig2 / (sig2 + noise2 / r)
    np.testing.assert_allclose(split_half_reliability(values, 20), expected, atol=0.03)
    half = split_half_reliability(values, 20, corrected=False)
    np.testing.assert_allclose(half, sig2 / (sig2 + noise2 / (r / 2)), atol=0.03)


def test_noise_free_and_pure_noise(rng):
    clean = np.repeat(rng.normal(size=(30, 3, 1)), 4, axis=2)
    np.testing.assert_allclose(split_half_reliability(clean, 5), 1.0)
    noise = rng.normal(size=(3000, 4, 4))
    assert np.abs(split_half_reliability(noise, 5)).max() < 0.1


@settings(max_examples=30, deadline=None)
@given(st.floats(-0.99, 0.99))
def test_spearman_brown_roundtrip(r):
    # stepping up by 2 then down by 1/2 returns the input
    assert spearman_brown(spearman_brown(r, 2.0), 0.5) == pytest.approx(r, abs=1e-9)


def test_reliability_needs_repetitions(rng):
    da = make_responses(rng.normal(size=(5, 3)), [f"s{i}" for i in range(5)])
    with pytest.raises(InputError, match="repetition"):
        split_half_reliability(da)
    with pytest.raises(InputError, match="two repetitions"):
        split_half_reliability(rng.normal(size=(5, 3, 1)))


def _population(rng):
    n = 12
    values = _simulate(rng, s=40, n=n, r=4, noise=np.r_[np.full(6, 0.2), np.full(6, 20.0)][:, None])
    coords = {"area": np.array(["VISp", "VISl", "VISal"] * 4),
              "cre_line": np.array(["Cux2-CreERT2"] * 4 + ["Sst-IRES-Cre"] * 4 + ["Vip-IRES-Cre"] * 4),
              "cell_class": np.array(["excitatory"] * 4 + ["inhibitory"] * 8),
              "depth": np.arange(n) * 50.0}
    return make_responses(values, [f"s{i}" for i in range(40)], coords=coords)


def test_select_by_each_criterion(rng):
    da = _population(rng)
    assert set(select_neuroids(da, area="VISp").area.values) == {"VISp"}
    assert select_neuroids(da, area=["VISp", "VISl"]).sizes["neuroid"] == 8
    assert set(select_neuroids(da, cre_line="Sst").cre_line.values) == {"Sst-IRES-Cre"}
    assert select_neuroids(da, cell_class="inhibitory").sizes["neuroid"] == 8
    np.testing.assert_array_equal(select_neuroids(da, depth=(100, 200)).depth.values,
                                  [100, 150, 200])
    reliable = select_neuroids(da, min_reliability=0.8)
    assert sorted(reliable.neuroid.values) == [f"n{k:04d}" for k in range(6)]
    both = select_neuroids(da, area="VISl", cell_class="inhibitory", min_reliability=0.8)
    assert list(both.neuroid.values) == ["n0004"]


def test_unknown_values_list_the_valid_ones(rng):
    da = _population(rng)
    with pytest.raises(UnknownNameError, match="VISal, VISl, VISp") as err:
        select_neuroids(da, area="VISpp")
    assert "VISp" in err.value.matches
    with pytest.raises(UnknownNameError, match="Cux2-CreERT2"):
        select_neuroids(da, cre_line="Pvalb")
    with pytest.raises(InputError, match="0 of 12"):
        select_neuroids(da, area="VISp", depth=(1000, 2000))
    with pytest.raises(InputError, match="coordinate"):
        select_neuroids(da.drop_vars("depth"), depth=(0, 100))


def test_balanced_sample(rng):
    da = _population(rng)
    bal = balanced_sample(da, by="cell_class", seed=1)
    assert list(bal.cell_class.values) == ["excitatory"] * 4 + ["inhibitory"] * 4
    again = balanced_sample(da, by="cell_class", seed=1)
    xr.testing.assert_identical(bal, again)
    assert balanced_sample(da, "area", n_per_group=2).sizes["neuroid"] == 6
    with pytest.raises(InputError, match="smallest group"):
        balanced_sample(da, "cell_class", n_per_group=5)
    with pytest.raises(UnknownNameError):
        balanced_sample(da, "cell_class", groups=["exc"])
