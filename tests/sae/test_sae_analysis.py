"""Dictionary analyses: hierarchy, ROI ranking, selectivity/consistency, ROI RSA vs scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from cortexalign.errors import UnknownNameError
from cortexalign.sae.analysis import (
    best_layer,
    category_selectivity,
    rank_roi_units,
    roi_consistency,
    roi_rsa,
    top_images,
)
from cortexalign.sae.match import match_units_to_voxels, voxel_dictionary


def _setup(seed=0, s=80):
    g = np.random.default_rng(seed)
    labels = np.array(["faces"] * 30 + ["places"] * 30 + [""] * 20)
    units = {"L0": g.random((s, 10)), "L1": g.random((s, 10))}
    units["L1"][:, 3] = (labels == "faces") * 3 + 0.1 * g.random(s)   # a face unit in L1
    units["L0"][:, 7] = (labels == "places") * 3 + 0.1 * g.random(s)  # a place unit in L0
    vox = np.column_stack([units["L1"][:, 3] + 0.2 * g.standard_normal(s) for _ in range(4)]
                          + [units["L0"][:, 7] + 0.2 * g.standard_normal(s) for _ in range(4)])
    roi = np.array(["FFA-1"] * 4 + ["RSC"] * 4)
    return units, vox, roi, labels


def test_hierarchy_best_layer_by_max_and_mean():
    units, vox, roi, _ = _setup()
    m = match_units_to_voxels(units, vox, roi=roi, device="cpu")
    assert best_layer(m, "max").tolist() == [1] * 4 + [0] * 4
    np.testing.assert_array_equal(best_layer(m, "mean"), np.argmax(m.mean_r_ln, 0))
    with pytest.raises(UnknownNameError):
        best_layer(m, "median")


def test_roi_ranking_selectivity_and_consistency():
    units, vox, roi, labels = _setup()
    m = match_units_to_voxels(units, vox, roi=roi, device="cpu")
    ranked = rank_roi_units(m, top=3)
    assert len(ranked) == 2 * 2 * 3
    top_ffa = ranked[(ranked.roi == "FFA-1") & (ranked.layer == "L1") & (ranked["rank"] == 0)]
    assert top_ffa.unit.item() == 3
    table = roi_consistency(m, units, labels, top_units=1)
    row = table[(table.roi == "FFA-1") & (table.layer == "L1")].iloc[0]
    assert (row.category, row.expected, bool(row.consistent)) == ("faces", "faces", True)
    row = table[(table.roi == "RSC") & (table.layer == "L0")].iloc[0]
    assert (row.category, row.expected, bool(row.consistent)) == ("places", "places", True)


def test_top_images_and_category_threshold_against_explicit_counts():
    acts = np.arange(30, dtype=float)[:, None] * np.array([1.0, -1.0])
    top = top_images(acts, [0, 1], n=20)
    assert top[0].tolist() == list(range(29, 9, -1)) and top[1].tolist() == list(range(20))
    labels = np.array(["a"] * 11 + ["b"] * 19)
    # unit 1's top 20 = images 0-19: 11 'a' (> 10: selective); unit 0's: 19 'b'
    assert category_selectivity(top, labels).tolist() == ["b", "a"]
    assert category_selectivity(top, labels, threshold=11).tolist() == ["b", ""]


def test_roi_rsa_matches_scipy_on_corrcoef_upper_triangles():
    g = np.random.default_rng(2)
    mix = g.standard_normal((3, 12))  # correlated units, so both matrices vary
    units = {"L0": g.standard_normal((90, 3)) @ mix}
    vox = units["L0"][:, :6] + 0.8 * g.standard_normal((90, 6))
    roi = np.array(["V1"] * 6)
    d = voxel_dictionary(match_units_to_voxels(units, vox, roi=roi, device="cpu"))
    assert len(set(d.unit_n.tolist())) >= 3
    got = roi_rsa(vox, d, units, roi)
    dict_sv = units["L0"][:, d.unit_n]
    iu = np.triu_indices(6, 1)
    a, b = np.corrcoef(vox.T)[iu], np.corrcoef(dict_sv.T)[iu]
    assert got["V1"] == pytest.approx(spearmanr(a, b)[0])
    assert roi_rsa(units["L0"][:, d.unit_n], d, units, roi)["V1"] == pytest.approx(1.0)
