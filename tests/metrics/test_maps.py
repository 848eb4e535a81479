"""Map-to-map measures vs scipy on every pair, and their promised properties."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics._maps import MAP_MEASURES, MAP_SCALINGS, compare_maps, map_score


def _ref(a, b, measure, scaling):
    a, b = a.ravel(), b.ravel()
    if measure == "pearson":
        return pearsonr(a, b)[0]
    if measure == "spearman":
        return spearmanr(a, b)[0]
    if scaling == "minmax":
        a, b = (a - a.min()) / np.ptp(a), (b - b.min()) / np.ptp(b)
    else:
        a, b = (a - a.mean()) / a.std(), (b - b.mean()) / b.std()
    return np.sqrt(np.mean((a - b) ** 2))


@pytest.mark.parametrize("measure", sorted(MAP_MEASURES))
@pytest.mark.parametrize("scaling", sorted(MAP_SCALINGS))
def test_matches_pairwise_reference(rng, measure, scaling):
    model = rng.normal(size=(3, 5, 6))
    neuron = rng.normal(size=(4, 5, 6))
    neuron[0, 0, :3] = neuron[0, 1, :3]  # ties for Spearman
    got = compare_maps(model, neuron, measure, scaling)
    ref = np.array([[_ref(a, b, measure, scaling) for b in neuron] for a in model])
    np.testing.assert_allclose(got, ref, atol=1e-10)


def test_identity_and_invariances(rng):
    m = rng.normal(size=(2, 6, 6))
    assert np.allclose(np.diag(compare_maps(m, m, "rmse")), 0, atol=1e-7)
    assert np.allclose(np.diag(compare_maps(m, m, "pearson")), 1)
    affine = 3.0 * m + 2.0  # scaled maps give the same RMSE under both scalings
    for scaling in MAP_SCALINGS:
        np.testing.assert_allclose(compare_maps(m, affine, "rmse", scaling),
                                   compare_maps(m, m, "rmse", scaling), atol=1e-7)
    np.testing.assert_allclose(compare_maps(m, np.exp(m), "spearman"),
                               compare_maps(m, m, "spearman"))
    z = compare_maps(m, rng.normal(size=(3, 6, 6)), "rmse", "zscore")
    r = compare_maps(m, rng.normal(size=(3, 6, 6)), "pearson")
    assert z.shape == r.shape == (2, 3)


def test_zscore_rmse_is_pearson_identity(rng):
    a, b = rng.normal(size=(3, 4, 4)), rng.normal(size=(5, 4, 4))
    np.testing.assert_allclose(compare_maps(a, b, "rmse", "zscore") ** 2,
                               2 * (1 - compare_maps(a, b, "pearson")), atol=1e-10)


def test_score_and_bad_inputs(rng):
    a, b = rng.normal(size=(3, 4, 4)), rng.normal(size=(5, 4, 4))
    s = map_score(a, b, "pearson")
    assert s.value == pytest.approx(np.median(s.extra["matrix"]))
    assert s.extra["per_neuroid"].shape == (5,) and s.extra["higher_is_better"]
    with pytest.raises(UnknownNameError):
        compare_maps(a, b, "mse")
    with pytest.raises(UnknownNameError):
        compare_maps(a, b, "rmse", "l2")
    with pytest.raises(InputError, match="grid"):
        compare_maps(a, rng.normal(size=(5, 4, 5)))
    with pytest.raises(InputError, match="constant"):
        compare_maps(np.ones((1, 4, 4)), b)
    with pytest.raises(InputError, match="finite"):
        compare_maps(np.full((1, 4, 4), np.nan), b)
