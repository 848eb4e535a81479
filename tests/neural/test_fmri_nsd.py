"""NSD loader on small files written in the NSD layout (planted values, explicit references)."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.io import savemat

from cortexalign.errors import InputError
from cortexalign.neural.fmri import (
    load_nsd,
    ncsnr_from_trials,
    noise_ceiling_from_ncsnr,
    nsd_stimulus_id,
    read_nsd_design,
)

SHAPE = (5, 4, 3)
AFFINE = np.diag([1.8, 1.8, 1.8, 1.0])
T = 750


def _write_nsd(root: Path, sessions=2, subject=1, n_images=500, seed=0, constant_voxel=None):
    """Tiny NSD: label volumes, int16 betas, an expdesign .mat; returns what was written."""
    g = np.random.default_rng(seed)
    subj = f"subj{subject:02d}"
    roi_dir = root / "nsddata" / "ppdata" / subj / "func1pt8mm" / "roi"
    lab_dir = root / "nsddata" / "freesurfer" / subj / "label"
    beta_dir = root / "nsddata_betas" / "ppdata" / subj / "func1pt8mm" / "betas_fithrf_GLMdenoise_RR"
    for d in (roi_dir, lab_dir, beta_dir, root / "nsddata" / "experiments" / "nsd"):
        d.mkdir(parents=True, exist_ok=True)
    prf = np.zeros(SHAPE, np.int16)
    prf[0, :2, 0], prf[1, :2, 0], prf[2, 0, 1] = 1, 2, 7  # V1v x2, V1d x2, hV4 x1
    prf[4, 3, 2] = -1                                     # outside the brain
    nib.save(nib.Nifti1Image(prf, AFFINE), roi_dir / "prf-visualrois.nii.gz")
    (lab_dir / "prf-visualrois.mgz.ctab").write_text(
        "0 Unknown 0 0 0 0\n1 V1v 1 1 1 0\n2 V1d 2 2 2 0\n7 hV4 7 7 7 0\n")
    general = np.ones(SHAPE, np.int16)
    general[1, 1, 0] = 0  # one V1d voxel outside nsdgeneral
    nib.save(nib.Nifti1Image(general, AFFINE), roi_dir / "nsdgeneral.nii.gz")
    # design: 30000 trials over 10000 subject images; the first sessions cycle n_images images
    order = np.tile(np.arange(1, n_images + 1), 30000 // n_images + 1)[:30000]
    subjectim = np.stack([g.permutation(73000)[:10000] for _ in range(8)]) + 1
    savemat(root / "nsddata" / "experiments" / "nsd" / "nsd_expdesign.mat",
            {"masterordering": order[None], "subjectim": subjectim})
    raw = []
    for s in range(1, sessions + 1):
        b = g.integers(-3000, 3000, size=(*SHAPE, T)).astype(np.int16)
        if constant_voxel is not None:
            b[constant_voxel] = 42
        nib.save(nib.Nifti1Image(b, AFFINE), beta_dir / f"betas_session{s:02d}.nii.gz")
        raw.append(b)
    nsd_id_t = subjectim[subject - 1, order - 1]
    return raw, nsd_id_t, beta_dir


def _reference(raw, nsd_id_t, voxels):
    """Explicit per-session z-score, then a loop average per image (the documented pipeline)."""
    z = []
    for b in raw:
        v = np.stack([b[x, y, zz].astype(np.float64) / 300 for x, y, zz in voxels])
        z.append((v - v.mean(1, keepdims=True)) / v.std(1, keepdims=True))
    z = np.concatenate(z, 1)
    ids = nsd_id_t[: z.shape[1]]
    out = {}
    for im in dict.fromkeys(ids):
        out[nsd_stimulus_id(im)] = z[:, ids == im].mean(1)
    return out, z, ids


def test_load_nsd_recovers_planted_betas(tmp_path):
    raw, nsd_id_t, _ = _write_nsd(tmp_path)
    da = load_nsd(tmp_path, subject=1, sessions=[1, 2])
    voxels = [(0, 0, 0), (0, 1, 0), (1, 0, 0), (2, 0, 1)]  # (1,1,0) is outside nsdgeneral
    assert list(zip(da["x"].values, da["y"].values, da["z"].values, strict=True)) == voxels
    assert da["roi"].values.tolist() == ["V1v", "V1v", "V1d", "hV4"]
    ref, z, ids = _reference(raw, nsd_id_t, voxels)
    assert da.sizes["stimulus"] == len(ref) == 500
    for sid in list(ref)[:50]:
        np.testing.assert_allclose(da.sel(stimulus=sid).values, ref[sid], atol=1e-12)
    assert da.attrs["excluded_zero_variance"] == 0
    np.testing.assert_allclose(da["ncsnr"].values, ncsnr_from_trials(z, ids))
    assert (da["subject"].values == "subj01").all()


def test_load_nsd_keeps_repetitions_when_asked(tmp_path):
    raw, nsd_id_t, _ = _write_nsd(tmp_path, sessions=1, n_images=300)
    da = load_nsd(tmp_path, sessions=[1], average=False)
    assert da.dims == ("stimulus", "neuroid", "repetition") and da.sizes["repetition"] == 3
    # images 251-300 of the cycle were shown twice in 750 trials: the third repetition is NaN
    assert np.isnan(da.values[-1, :, 2]).all() and np.isfinite(da.values[0]).all()
    np.testing.assert_allclose(np.nanmean(da.values, 2), load_nsd(tmp_path, sessions=[1]).values)


def test_ncsnr_file_is_used_and_regions_select_labels(tmp_path):
    _, _, beta_dir = _write_nsd(tmp_path, sessions=1)
    ncsnr = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE) / 10
    nib.save(nib.Nifti1Image(ncsnr, AFFINE), beta_dir / "ncsnr.nii.gz")
    da = load_nsd(tmp_path, regions={"prf-visualrois": ["hV4"]}, within=None)
    assert da["roi"].values.tolist() == ["hV4"]
    assert da["ncsnr"].values[0] == pytest.approx(ncsnr[2, 0, 1])
    n_reps = np.asarray(da.attrs["n_repetitions"])
    want = 100 * ncsnr[2, 0, 1] ** 2 / (ncsnr[2, 0, 1] ** 2 + np.mean(1 / n_reps))
    assert da["noise_ceiling"].values[0] == pytest.approx(want)
    with pytest.raises(InputError, match="FFA"):
        load_nsd(tmp_path, regions={"prf-visualrois": ["FFA"]})


def test_zero_variance_voxels_are_excluded_with_a_count(tmp_path):
    _write_nsd(tmp_path, sessions=1, constant_voxel=(0, 1, 0))
    with pytest.warns(RuntimeWarning, match="1 of 4 voxels have zero variance"):
        da = load_nsd(tmp_path)
    assert da.attrs["excluded_zero_variance"] == 1 and da.sizes["neuroid"] == 3


def test_roi_in_another_space_is_refused(tmp_path):
    _write_nsd(tmp_path, sessions=1)
    roi = tmp_path / "nsddata" / "ppdata" / "subj01" / "func1pt8mm" / "roi" / "prf-visualrois.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((5, 4, 4), np.int16), AFFINE), roi)
    with pytest.raises(InputError, match="grid"):
        load_nsd(tmp_path)
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.int16), np.diag([1.0, 1, 1, 1])), roi)
    with pytest.raises(InputError, match="affine"):
        load_nsd(tmp_path)


def test_betas_and_design_of_different_lengths_are_refused(tmp_path):
    _write_nsd(tmp_path, sessions=1)
    short = tmp_path / "design.npz"
    np.savez(short, nsd_id=np.arange(1, 700))
    with pytest.raises(InputError, match="750 trials"):
        load_nsd(tmp_path, design=short)


def test_design_readers_agree(tmp_path):
    _, nsd_id_t, _ = _write_nsd(tmp_path, sessions=1)
    mat = read_nsd_design(tmp_path / "nsddata/experiments/nsd/nsd_expdesign.mat", 1)
    np.testing.assert_array_equal(mat, nsd_id_t)
    csv = tmp_path / "d.csv"
    csv.write_text("trial,nsd_id\n" + "\n".join(f"{t},{i}" for t, i in enumerate(nsd_id_t[:20])))
    np.testing.assert_array_equal(read_nsd_design(csv, 1), nsd_id_t[:20])


def test_ncsnr_against_an_explicit_loop_and_ceiling_closed_form():
    g = np.random.default_rng(0)
    ids = np.repeat(np.arange(40), 3)
    b = g.standard_normal((6, 120))
    noise = [np.mean([np.var(b[v, ids == i], ddof=1) for i in range(40)]) for v in range(6)]
    want = np.sqrt(np.clip(1 - np.array(noise), 0, None)) / np.sqrt(noise)
    np.testing.assert_allclose(ncsnr_from_trials(b, ids), want)
    nc = noise_ceiling_from_ncsnr(np.array([0.0, 1.0, 2.0]), [3] * 10)
    np.testing.assert_allclose(nc, 100 * np.array([0, 1, 4]) / (np.array([0, 1, 4]) + 1 / 3))
    # a voxel with planted signal (sd 1) and noise (sd 0.5) over 3 repeats: ncsnr near 2 before
    # z-scoring; after z-scoring the formula's assumption (total variance 1) holds
    sig = np.repeat(g.standard_normal(2000), 3)
    x = sig + 0.5 * g.standard_normal(6000)
    x = (x - x.mean()) / x.std()
    est = ncsnr_from_trials(x[None], np.repeat(np.arange(2000), 3))[0]
    assert est == pytest.approx(2.0, rel=0.05)


def test_ncsnr_needs_repetitions():
    with pytest.raises(InputError, match="twice"), warnings.catch_warnings():
        ncsnr_from_trials(np.ones((2, 3)), [1, 2, 3])
