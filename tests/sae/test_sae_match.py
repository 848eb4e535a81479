"""Unit-voxel matching against np.corrcoef and explicit loops; planted voxels are recovered."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.neural import make_responses
from cortexalign.sae import SAEConfig, build_sae
from cortexalign.sae.match import (
    SIMILARITIES,
    image_unit_activations,
    match_units_to_voxels,
    one_to_one_dictionary,
    permutation_test_best_match,
    similarity,
    voxel_dictionary,
)


def _units(seed=0, s=60, ks=(20, 30, 25)):
    g = np.random.default_rng(seed)
    return {f"blocks.{i}": g.gamma(1.0, 1.0, (s, k)) * (g.random((s, k)) < 0.5)
            for i, k in enumerate(ks)}


def test_similarity_matches_corrcoef_and_cosine():
    g = np.random.default_rng(0)
    u, v = g.standard_normal((40, 6)) + 2, g.standard_normal((40, 9)) - 1
    ref = np.corrcoef(u.T, v.T)[:6, 6:]
    np.testing.assert_allclose(similarity(u, v, device="cpu"), ref, atol=1e-6)
    cos = np.array([[a @ b / np.linalg.norm(a) / np.linalg.norm(b) for b in v.T] for a in u.T])
    np.testing.assert_allclose(similarity(u, v, "cosine", device="cpu"), cos, atol=1e-6)
    assert set(SIMILARITIES) == {"pearson", "cosine"}
    with pytest.raises(UnknownNameError, match="pearson"):
        similarity(u, v, "pearsn")


@settings(max_examples=25, deadline=None)
@given(st.floats(0.1, 100), st.floats(-50, 50), st.integers(0, 10_000))
def test_pearson_is_invariant_to_affine_maps_of_voxels(scale, shift, seed):
    g = np.random.default_rng(seed)
    u, v = g.standard_normal((15, 3)), g.standard_normal((15, 4))
    np.testing.assert_allclose(similarity(u, v, device="cpu"),
                               similarity(u, scale * v + shift, device="cpu"), atol=1e-5)


def test_match_reductions_against_the_full_matrix_in_tiny_chunks():
    units = _units()
    g = np.random.default_rng(1)
    vox = g.standard_normal((60, 17))
    roi = np.array(["FFA"] * 5 + ["V1"] * 7 + [""] * 5)
    m = match_units_to_voxels(units, vox, roi=roi, top_m=4, unit_chunk=7, voxel_chunk=5, device="cpu")
    full = [np.corrcoef(units[k].T, vox.T)[: units[k].shape[1], units[k].shape[1]:] for k in units]
    stacked = np.concatenate(full)  # (sum k, n)
    layer_of = np.concatenate([np.full(a.shape[0], i) for i, a in enumerate(full)])
    unit_of = np.concatenate([np.arange(a.shape[0]) for a in full])
    best = stacked.argmax(0)
    np.testing.assert_array_equal(m.best_layer_n, layer_of[best])
    np.testing.assert_array_equal(m.best_unit_n, unit_of[best])
    np.testing.assert_allclose(m.best_r_n, stacked.max(0), atol=1e-6)
    np.testing.assert_allclose(m.max_r_ln, np.stack([a.max(0) for a in full]), atol=1e-6)
    np.testing.assert_allclose(m.mean_r_ln, np.stack([a.mean(0) for a in full]), atol=1e-6)
    order = np.argsort(-stacked, axis=0)[:4].T
    np.testing.assert_allclose(m.top_r_nm, np.take_along_axis(stacked.T, order, 1), atol=1e-6)
    np.testing.assert_array_equal(m.top_unit_nm, unit_of[order])
    assert m.roi_names == ("FFA", "V1")
    for li, a in enumerate(full):
        np.testing.assert_allclose(m.roi_mean_r[li][:, 0], a[:, :5].mean(1), atol=1e-6)
        np.testing.assert_allclose(m.roi_mean_r[li][:, 1], a[:, 5:12].mean(1), atol=1e-6)


def test_planted_voxels_recover_their_units_and_layers():
    units = _units(seed=3, s=120)
    g = np.random.default_rng(4)
    chosen = [("blocks.0", 3), ("blocks.2", 11), ("blocks.1", 29), ("blocks.2", 0), ("blocks.1", 5)]
    vox = np.stack([2.5 * units[lay][:, j] + 7 + 0.1 * g.standard_normal(120) for lay, j in chosen], 1)
    resp = make_responses(vox, [f"img{i}" for i in range(120)], coords={"roi": ["a"] * 5})
    m = match_units_to_voxels(units, resp, unit_chunk=8, voxel_chunk=2, device="cpu")
    d = voxel_dictionary(m)
    assert d.layer_names() == [lay for lay, _ in chosen]
    assert d.unit_n.tolist() == [j for _, j in chosen]
    assert (d.r_n > 0.95).all()
    o2o = one_to_one_dictionary(units, resp, m, device="cpu")
    assert o2o.layer_names() == [lay for lay, _ in chosen] and o2o.unit_n.tolist() == [j for _, j in chosen]


def test_one_to_one_gives_each_unit_at_most_one_voxel():
    units = {"a": np.random.default_rng(0).standard_normal((50, 4))}
    base = units["a"][:, 0]
    vox = np.stack([base + 0.05 * np.random.default_rng(i).standard_normal(50) for i in range(3)], 1)
    m = match_units_to_voxels(units, vox, top_m=4, device="cpu")
    assert (voxel_dictionary(m).unit_n == 0).all()  # argmax: the same unit serves every voxel
    o2o = one_to_one_dictionary(units, vox, m, device="cpu")
    assert sorted(o2o.unit_n.tolist()) == sorted(set(o2o.unit_n.tolist()))
    assert 0 in o2o.unit_n


def test_constant_units_get_zero_and_are_counted_constant_voxels_raise():
    units = _units()
    units["blocks.0"][:, 4] = 0.0  # a dead latent
    vox = np.random.default_rng(0).standard_normal((60, 3))
    m = match_units_to_voxels(units, vox, device="cpu")
    assert m.n_constant_units_l.tolist()[0] >= 1
    vox[:, 1] = 5.0
    with pytest.raises(InputError, match="1 constant voxels"):
        match_units_to_voxels(units, vox, device="cpu")
    with pytest.raises(InputError, match="same s images"):
        match_units_to_voxels(units, vox[:50], device="cpu")


def test_permutation_test_detects_planted_and_is_uniform_under_null():
    units = _units(seed=5, s=80)
    g = np.random.default_rng(6)
    planted = units["blocks.1"][:, 2] + 0.3 * g.standard_normal(80)
    noise = g.standard_normal((80, 40))
    res = permutation_test_best_match(units, np.column_stack([planted, noise]), n_permutations=99,
                                      device="cpu", unit_chunk=16)
    assert res.p_n[0] == pytest.approx(0.01) and res.p_fwe_n[0] == pytest.approx(0.01)
    null_p = res.p_n[1:]
    assert 0.25 < null_p.mean() < 0.75  # uniform on (0, 1] under the null: mean about 0.5
    assert (res.p_fwe_n >= res.p_n).all()
    best = max(similarity(units[k], planted[:, None], device="cpu").max() for k in units)
    assert res.observed_n[0] == pytest.approx(best, abs=1e-6)


def test_image_unit_activations_mean_over_patch_tokens():
    sae = build_sae(SAEConfig(d_in=4, expansion=2))
    with torch.no_grad():
        sae.b_lat.fill_(0.1)
    acts = np.random.default_rng(0).standard_normal((5, 3, 4)).astype(np.float32)
    got = image_unit_activations(sae, acts, num_prefix_tokens=1, images_per_batch=2, device="cpu")
    ref = np.stack([sae.encode(torch.from_numpy(acts[i, 1:])).detach().numpy().mean(0)
                    for i in range(5)])
    np.testing.assert_allclose(got, ref, atol=1e-6)
