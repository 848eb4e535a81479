"""Searchlight RSA: spheres, per-sphere RDMs and maps against rsatoolbox 0.3 and explicit loops;
a planted signal is found; NIfTI maps round-trip with their affine; bad inputs write nothing."""

from __future__ import annotations

import contextlib
import io

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rsatoolbox.inference import eval_fixed
from rsatoolbox.model import ModelFixed
from rsatoolbox.rdm import RDMs
from rsatoolbox.util.searchlight import (
    evaluate_models_searchlight,
    get_searchlight_RDMs,
    get_volume_searchlight,
)

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics import (
    SEARCHLIGHT_RDM_METHODS,
    compare_rdms,
    compute_rdm,
    searchlight_centers,
    searchlight_rdms,
    searchlight_rsa,
)
from cortexalign.rdm import RDM_COMPARISONS
from cortexalign.stats import adjust_p_values, rdm_permutation_test

AFFINE = np.array([[2.0, 0, 0, -10], [0, 2.0, 0, -12], [0, 0, 2.5, 4], [0, 0, 0, 1]])


def _mask(seed=0, shape=(8, 9, 7)):
    """A random mask with a solid core, so that radius 3 keeps whole spheres at threshold 1."""
    g = np.random.default_rng(seed)
    mask = g.random(shape) < 0.85
    mask[1:7, 1:8, 1:6] = True
    return mask


def _model_rdm(s, seed=1):
    x = np.random.default_rng(seed).standard_normal((s, 4))
    return compute_rdm(x, "euclidean", device="cpu")


def _rsatoolbox_neighbours(sl):
    flat = np.flatnonzero(sl.mask_xyz)
    return [flat[sl.neighbors(i)] for i in range(sl.n_centers)]


@pytest.mark.parametrize("radius", [2, 3, 2.5])
@pytest.mark.parametrize("threshold", [0.5, 1.0])
def test_centres_and_neighbourhoods_equal_rsatoolbox(radius, threshold, capsys):
    mask = _mask()
    centres, neighbours = get_volume_searchlight(mask, radius, threshold)
    sl = searchlight_centers(mask, radius, threshold=threshold)
    np.testing.assert_array_equal(sl.flat_centers(), centres)
    flat = np.flatnonzero(mask)
    assert sl.n_centers == len(neighbours)
    for i, nb in enumerate(neighbours):  # rsatoolbox's sphere restricted to the mask
        np.testing.assert_array_equal(flat[sl.neighbors(i)], np.intersect1d(nb, flat))
    np.testing.assert_array_equal(flat[sl.center_voxel_c], centres)
    assert (sl.neighbors_ck[np.arange(sl.n_centers), sl.sizes_c - 1] >= 0).all()
    assert (sl.neighbors_ck == -1).sum() == sl.neighbors_ck.size - sl.sizes_c.sum()


@settings(max_examples=25, deadline=None)
@given(shape=st.tuples(*[st.integers(1, 6)] * 3), radius=st.floats(0.5, 3.5),
       threshold=st.floats(0.0, 1.0), density=st.floats(0.3, 1.0), seed=st.integers(0, 99))
def test_centres_equal_rsatoolbox_on_random_masks(shape, radius, threshold, density, seed):
    mask = np.random.default_rng(seed).random(shape) < density
    mask.flat[0] = True
    try:
        ours = searchlight_centers(mask, radius, threshold=threshold).flat_centers()
    except InputError:  # no centre: rsatoolbox then fails on its empty array
        ours = np.array([], dtype=np.int64)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            ref, _ = get_volume_searchlight(mask, radius, threshold)
        except ValueError:
            ref = np.array([], dtype=np.int64)
    np.testing.assert_array_equal(ours, ref)


def test_min_voxels_drops_small_spheres_and_sizes_are_the_sphere():
    mask = _mask()
    full = searchlight_centers(mask, 2, threshold=0.0)
    some = searchlight_centers(mask, 2, threshold=0.0, min_voxels=20)
    assert set(some.flat_centers()) == set(full.flat_centers()[full.sizes_c >= 20])
    whole = searchlight_centers(np.ones((5, 5, 5), bool), 2, threshold=1.0)
    assert whole.sizes_c[whole.flat_centers() == np.ravel_multi_index((2, 2, 2), (5, 5, 5))] == 27


def _loop_rdm(x_sk, method):
    """One sphere's RDM the textbook way (rsatoolbox's conventions)."""
    if method == "correlation":
        return 1.0 - np.corrcoef(x_sk)
    if method == "cosine":
        u = x_sk / np.linalg.norm(x_sk, axis=1, keepdims=True)
        return 1.0 - u @ u.T
    d = x_sk[:, None, :] - x_sk[None, :, :]
    return (d**2).sum(-1) / x_sk.shape[1]


@pytest.mark.parametrize("method", list(SEARCHLIGHT_RDM_METHODS))
@pytest.mark.parametrize("batch", [None, 1, 7])
def test_rdms_equal_an_explicit_loop(method, batch):
    mask, s = _mask(), 10
    vol = np.random.default_rng(2).standard_normal(mask.shape + (s,))
    sl = searchlight_centers(mask, 2, threshold=0.5)  # spheres of several sizes: padding
    assert len(set(sl.sizes_c)) > 3
    rdms = searchlight_rdms(vol, sl, method, device="cpu", batch=batch)
    iu = np.triu_indices(s, 1)
    betas_sn = vol[mask].T
    for i in range(sl.n_centers):
        ref = _loop_rdm(betas_sn[:, sl.neighbors(i)], method)[iu]
        np.testing.assert_allclose(rdms[i], ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("method", ["correlation", "euclidean"])
def test_rdms_equal_rsatoolbox(method, capsys):
    mask, s = _mask(), 9
    vol = np.random.default_rng(3).standard_normal(mask.shape + (s,))
    sl = searchlight_centers(mask, 3, threshold=0.5)
    ref = get_searchlight_RDMs(vol.reshape(-1, s).T, sl.flat_centers(), _rsatoolbox_neighbours(sl),
                               np.arange(s), method=method, verbose=False)
    ours = searchlight_rdms(vol[mask].T, sl, method, device="cpu")  # (s, n) betas input
    np.testing.assert_allclose(ours, ref.dissimilarities, rtol=0, atol=1e-10)


def test_map_equals_rsatoolbox_evaluate_models_searchlight(capsys):
    mask, s = _mask(), 12
    vol = np.random.default_rng(4).standard_normal(mask.shape + (s,))
    model = _model_rdm(s)
    res = searchlight_rsa(vol, mask, 2, model_rdm_ss=model, device="cpu")
    sl = res.searchlights
    ref_rdms = get_searchlight_RDMs(vol.reshape(-1, s).T, sl.flat_centers(),
                                    _rsatoolbox_neighbours(sl), np.arange(s), verbose=False)
    evals = evaluate_models_searchlight(ref_rdms, ModelFixed("m", RDMs(model[None])), eval_fixed,
                                        method="spearman")
    ref = np.array([e.evaluations[0, 0, 0] for e in evals])
    np.testing.assert_allclose(res.values_c, ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("compare", list(RDM_COMPARISONS))
def test_map_equals_a_loop_of_compare_rdms(compare):
    mask, s = _mask(seed=5), 8
    vol = np.random.default_rng(5).standard_normal(mask.shape + (s,))
    model = _model_rdm(s)
    res = searchlight_rsa(vol, mask, 2, model_rdm_ss=model, compare=compare, threshold=0.6,
                          device="cpu", batch=16)
    rdms = searchlight_rdms(vol, res.searchlights, device="cpu")
    for i in range(0, res.searchlights.n_centers, 7):
        full = np.zeros((s, s))
        full[np.triu_indices(s, 1)] = rdms[i]
        ref = compare_rdms(model, full + full.T, compare, device="cpu")[0, 0]
        assert res.values_c[i] == pytest.approx(ref, abs=1e-10)


def test_features_model_equals_its_rdm_and_spearman_ignores_monotone_maps():
    mask, s = _mask(), 10
    g = np.random.default_rng(6)
    vol, feats = g.standard_normal(mask.shape + (s,)), g.standard_normal((s, 5))
    a = searchlight_rsa(vol, mask, 2, features_sd=feats, device="cpu")
    b = searchlight_rsa(torch.as_tensor(vol[mask].T), mask, 2, device="cpu",
                        model_rdm_ss=compute_rdm(feats, "correlation", device="cpu"))
    np.testing.assert_array_equal(a.values_c, b.values_c)
    c = searchlight_rsa(vol, mask, 2, model_rdm_ss=np.sqrt(compute_rdm(feats, device="cpu")),
                        device="cpu")
    np.testing.assert_allclose(c.values_c, a.values_c, atol=1e-12)


def test_planted_signal_peaks_at_the_planted_sphere():
    g = np.random.default_rng(7)
    shape, s, centre = (11, 11, 11), 20, np.array([5, 4, 6])
    vol = g.standard_normal(shape + (s,))
    ijk = np.argwhere(np.ones(shape, bool))
    planted = np.linalg.norm(ijk - centre, axis=1) < 2  # the 27 voxels of the centre's sphere
    feats = g.standard_normal((s, planted.sum()))  # their patterns carry the model's RDM
    vol[tuple(ijk[planted].T)] = feats.T + 0.3 * g.standard_normal((planted.sum(), s))
    res = searchlight_rsa(vol, np.ones(shape, bool), 2, features_sd=feats, device="cpu")
    dist = np.linalg.norm(res.searchlights.centers_c3 - centre, axis=1)
    top = res.values_c[dist == 0][0]
    assert top > 0.8 and top > res.values_c[dist > 0].max() + 0.1
    ring1, far = res.values_c[dist == 1], res.values_c[dist >= 4]
    assert ring1.min() > far.max() and far.max() < top / 2
    assert abs(np.mean(far)) < 0.05  # noise-only spheres: about no correlation


def test_permutation_p_values_equal_the_single_rdm_test_and_fdr():
    mask, s = _mask(), 9
    vol = np.random.default_rng(8).standard_normal(mask.shape + (s,))
    model = _model_rdm(s)
    res = searchlight_rsa(vol, mask, 3, model_rdm_ss=model, n_perm=99, seed=3, device="cpu")
    rdms = searchlight_rdms(vol, res.searchlights, device="cpu")
    for i in range(res.searchlights.n_centers):
        full = np.zeros((s, s))
        full[np.triu_indices(s, 1)] = rdms[i]
        ref = rdm_permutation_test(full + full.T, model, n_perm=99, seed=3)
        assert res.values_c[i] == pytest.approx(ref.observed, abs=1e-10)
        assert res.p_values_c[i] == ref.p_value
    np.testing.assert_array_equal(res.q_values_c, adjust_p_values(res.p_values_c))
    assert (res.p_values_c >= 1 / 100).all() and (res.q_values_c >= res.p_values_c).all()


def test_nifti_inputs_and_map_round_trip_with_the_affine(tmp_path):
    mask, s = _mask(), 8
    vol = np.random.default_rng(9).standard_normal(mask.shape + (s,))
    vol[~mask] = np.nan  # only mask voxels need be finite
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), AFFINE), tmp_path / "mask.nii.gz")
    nib.save(nib.Nifti1Image(vol, AFFINE), tmp_path / "betas.nii.gz")
    res = searchlight_rsa(tmp_path / "betas.nii.gz", tmp_path / "mask.nii.gz", 2,
                          model_rdm_ss=_model_rdm(s), n_perm=19, device="cpu")
    np.testing.assert_array_equal(res.affine, AFFINE)
    for what in ("values", "p_values", "q_values"):
        out = res.save(tmp_path / "maps" / f"{what}.nii.gz", what)
        img = nib.load(out)
        np.testing.assert_array_equal(img.affine, AFFINE)
        np.testing.assert_array_equal(np.asarray(img.dataobj), res.map_xyz(what))
    back = np.asarray(nib.load(tmp_path / "maps" / "values.nii.gz").dataobj)
    np.testing.assert_array_equal(back[tuple(res.searchlights.centers_c3.T)], res.values_c)
    assert np.isnan(back[~mask]).all()
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == [
        "p_values.nii.gz", "q_values.nii.gz", "values.nii.gz"]  # no temporary left


def test_bad_outputs_write_nothing(tmp_path):
    mask = _mask()
    vol = np.random.default_rng(10).standard_normal(mask.shape + (6,))
    res = searchlight_rsa(vol, mask, 2, model_rdm_ss=_model_rdm(6), device="cpu")
    with pytest.raises(InputError, match="affine"):
        res.save(tmp_path / "v.nii.gz")  # a bare-array mask has no affine
    with pytest.raises(InputError, match=".nii"):
        res.save(tmp_path / "v.png", affine=AFFINE)
    with pytest.raises(InputError, match="n_perm"):
        res.map_xyz("p_values")
    with pytest.raises(UnknownNameError, match="did you mean|Did you mean"):
        res.map_xyz("value")
    assert list(tmp_path.iterdir()) == []
    assert nib.load(res.save(tmp_path / "v.nii", affine=AFFINE)).shape == mask.shape


def test_undefined_spheres_are_nan_with_a_warning():
    mask, s = np.ones((6, 6, 6), bool), 7
    vol = np.random.default_rng(11).standard_normal(mask.shape + (s,))
    vol[:2, :2, :2, 3] = 1.5  # stimulus 3 is flat over the spheres inside this corner
    with pytest.warns(RuntimeWarning, match="undefined RDM"):
        res = searchlight_rsa(vol, mask, 2, model_rdm_ss=_model_rdm(s), threshold=0.0,
                              device="cpu")
    corner = (res.searchlights.centers_c3 == 0).all(1)
    assert np.isnan(res.values_c[corner]).all() and np.isfinite(res.values_c[~corner]).all()


def _bad_cases():
    mask, s = _mask(), 6
    vol = np.random.default_rng(12).standard_normal(mask.shape + (s,))
    model = _model_rdm(s)
    nan_vol = vol.copy()
    nan_vol[2, 2, 2, 0] = np.nan
    return [
        (dict(betas=vol[:, :, :-1], mask=mask, radius=2, model_rdm_ss=model), "mask's grid"),
        (dict(betas=vol, mask=mask, radius=0, model_rdm_ss=model), "radius"),
        (dict(betas=vol, mask=mask, radius=-1.5, model_rdm_ss=model), "radius"),
        (dict(betas=vol, mask=mask, radius=2, model_rdm_ss=_model_rdm(s + 1)), "stimuli"),
        (dict(betas=nan_vol, mask=mask, radius=2, model_rdm_ss=model), "finite"),
        (dict(betas=vol, mask=mask, radius=2), "exactly one"),
        (dict(betas=vol, mask=mask, radius=2, model_rdm_ss=model, features_sd=np.ones((s, 2))),
         "exactly one"),
        (dict(betas=vol, mask=mask, radius=2, model_rdm_ss=1.0 - model), "zero diagonal"),
        (dict(betas=vol, mask=mask, radius=2, model_rdm_ss=1.0 - np.eye(s)), "vary"),
        (dict(betas=vol, mask=mask, radius=2, model_rdm_ss=np.triu(model)), "symmetric"),
        (dict(betas=vol, mask=np.zeros(mask.shape), radius=2, model_rdm_ss=model), "empty"),
        (dict(betas=vol, mask=mask, radius=2, threshold=1.5, model_rdm_ss=model), "threshold"),
        (dict(betas=vol, mask=mask, radius=9, model_rdm_ss=model), "no centre"),
        (dict(betas=vol, mask=mask, radius=2, n_perm=-1, model_rdm_ss=model), "n_perm"),
        (dict(betas=vol[mask].T[:, :-1], mask=mask, radius=2, model_rdm_ss=model), "one column"),
        (dict(betas=vol, mask=mask[..., None], radius=2, model_rdm_ss=model), "3-D"),
        (dict(betas=vol, mask=mask, radius=2, min_voxels=0, model_rdm_ss=model), "min_voxels"),
        (dict(betas=vol, mask=mask, radius=1, model_rdm_ss=model), "one voxel"),
        (dict(betas=vol, mask=mask, radius=2, model_rdm_ss=model, affine=np.eye(3)), "affine"),
    ]


@pytest.mark.parametrize("case", range(19))
def test_bad_inputs_raise_input_error(case):
    kwargs, match = _bad_cases()[case]
    with pytest.raises(InputError, match=match):
        searchlight_rsa(device="cpu", **kwargs)


@pytest.mark.parametrize("option", [dict(rdm_method="crossnobis"), dict(compare="spearmann"),
                                    dict(correction="fdr"), dict(alternative="bigger"),
                                    dict(model_rdm_method="corelation")])
def test_unknown_names_raise_with_choices(option):
    mask = _mask()
    vol = np.random.default_rng(13).standard_normal(mask.shape + (6,))
    with pytest.raises(UnknownNameError):
        searchlight_rsa(vol, mask, 2, model_rdm_ss=_model_rdm(6), device="cpu", **option)


def test_betas_image_with_another_affine_is_refused(tmp_path):
    mask = _mask()
    vol = np.random.default_rng(14).standard_normal(mask.shape + (6,))
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), AFFINE), tmp_path / "mask.nii.gz")
    with pytest.raises(InputError, match="affine"):
        searchlight_rsa(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "mask.nii.gz", 2,
                        model_rdm_ss=_model_rdm(6), device="cpu")
