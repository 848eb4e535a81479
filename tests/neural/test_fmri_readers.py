"""The NSD readers besides NIfTI volumes: hdf5 volume betas, fsaverage ``.mgh`` betas and labels,
and the NSD stimulus file (small files written in the NSD layout, checked against explicit loops)."""

from __future__ import annotations

from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from test_fmri_nsd import AFFINE, SHAPE, _reference, _write_nsd

from cortexalign.errors import InputError
from cortexalign.neural.fmri import (
    load_nsd,
    load_nsd_stimuli,
    nsd_id_from_stimulus_id,
    nsd_stimulus_id,
    read_nsd_design,
)

BETAS = Path("nsddata_betas/ppdata/subj01")


def _as_hdf5(beta_dir: Path, raw: list[np.ndarray]) -> None:
    """Write each session as NSD's hdf5 (dataset 'betas' (trials, z, y, x)) and drop the NIfTI."""
    for s, b in enumerate(raw, 1):
        with h5py.File(beta_dir / f"betas_session{s:02d}.hdf5", "w") as f:
            f.create_dataset("betas", data=np.ascontiguousarray(b.transpose(3, 2, 1, 0)),
                             chunks=(1, *b.shape[2::-1]))
        (beta_dir / f"betas_session{s:02d}.nii.gz").unlink()


def test_hdf5_betas_equal_the_nifti_betas_and_the_reference(tmp_path):
    raw, nsd_id_t, beta_dir = _write_nsd(tmp_path, sessions=2)
    from_nifti = load_nsd(tmp_path, sessions=[1, 2])
    _as_hdf5(beta_dir, raw)
    da = load_nsd(tmp_path, sessions=[1, 2], file_format="hdf5")
    np.testing.assert_array_equal(da.values, from_nifti.values)
    assert da["stimulus"].values.tolist() == from_nifti["stimulus"].values.tolist()
    voxels = list(zip(da["x"].values, da["y"].values, da["z"].values, strict=True))
    ref, _, _ = _reference(raw, nsd_id_t, voxels)
    for sid in list(ref)[:40]:
        np.testing.assert_allclose(da.sel(stimulus=sid).values, ref[sid], atol=1e-12)
    assert da.attrs["shape"] == list(SHAPE) and np.allclose(da.attrs["affine"], AFFINE)


def test_hdf5_betas_refuse_an_roi_of_another_shape(tmp_path):
    raw, _, beta_dir = _write_nsd(tmp_path, sessions=1)
    _as_hdf5(beta_dir, raw)
    roi = tmp_path / "nsddata/ppdata/subj01/func1pt8mm/roi/prf-visualrois.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((5, 4, 4), np.int16), AFFINE), roi)
    with pytest.raises(InputError, match=r"grid of the betas .*\(5, 4, 3\)"):
        load_nsd(tmp_path, file_format="hdf5")
    # a transposed grid (the hdf5 stores (z, y, x)) is refused too, not silently mis-indexed
    nib.save(nib.Nifti1Image(np.ones(SHAPE[::-1], np.int16), AFFINE), roi)
    with pytest.raises(InputError, match="ROI 'prf-visualrois'"):
        load_nsd(tmp_path, file_format="hdf5")


def test_hdf5_sessions_on_different_grids_are_refused(tmp_path):
    raw, _, beta_dir = _write_nsd(tmp_path, sessions=2)
    _as_hdf5(beta_dir, [raw[0], raw[1][:, :, :2]])
    with pytest.raises(InputError, match="grid of the first session"):
        load_nsd(tmp_path, sessions=[1, 2], file_format="hdf5")


def _write_fsaverage(root: Path, n_vertices=(12, 9), n_images=250, seed=1):
    """lh/rh betas (V, 1, 1, 750) float32, floc-faces labels, an nsdgeneral mask, the design."""
    g = np.random.default_rng(seed)
    _write_nsd(root, sessions=0, n_images=n_images, seed=seed)  # writes the design
    lab = root / "nsddata/freesurfer/fsaverage/label"
    betas = root / BETAS / "fsaverage/betas_fithrf_GLMdenoise_RR"
    lab.mkdir(parents=True)
    betas.mkdir(parents=True)
    (lab / "floc-faces.mgz.ctab").write_text("0 Unknown\n1 OFA\n2 FFA-1\n")
    raw, labels = {}, {}
    for hemi, n in zip(("lh", "rh"), n_vertices, strict=True):
        faces = g.integers(0, 3, n).astype(np.int32)
        general = (g.random(n) > 0.2).astype(np.int32)
        nib.save(nib.MGHImage(faces.reshape(n, 1, 1), np.eye(4)), lab / f"{hemi}.floc-faces.mgz")
        nib.save(nib.MGHImage(general.reshape(n, 1, 1), np.eye(4)), lab / f"{hemi}.nsdgeneral.mgz")
        b = (g.standard_normal((n, 1, 1, 750)) * 900).astype(np.float32)
        nib.save(nib.MGHImage(b, np.eye(4)), betas / f"{hemi}.betas_session01.mgh")
        raw[hemi], labels[hemi] = b[:, 0, 0], (faces, general)
    return raw, labels


def test_fsaverage_mgh_betas_and_labels(tmp_path):
    raw, labels = _write_fsaverage(tmp_path)
    da = load_nsd(tmp_path, rois=["floc-faces"], space="fsaverage", file_format="mgh")
    want_vertices, want_roi, rows = [], [], []
    names = {1: "OFA", 2: "FFA-1"}
    for hemi in ("lh", "rh"):  # explicit loop over vertices: labelled and inside nsdgeneral
        faces, general = labels[hemi]
        for v in range(len(faces)):
            if faces[v] > 0 and general[v] > 0:
                want_vertices.append((hemi, v))
                want_roi.append(names[int(faces[v])])
                rows.append(raw[hemi][v].astype(np.float64) / 300)
    assert list(zip(da["hemi"].values, da["vertex"].values, strict=True)) == want_vertices
    assert da["roi"].values.tolist() == want_roi
    z = np.stack([(r - r.mean()) / r.std() for r in rows])
    ids = read_nsd_design(tmp_path / "nsddata/experiments/nsd/nsd_expdesign.mat", 1)[:750]
    for im in list(dict.fromkeys(ids))[:30]:
        np.testing.assert_allclose(da.sel(stimulus=nsd_stimulus_id(im)).values,
                                   z[:, ids == im].mean(1), atol=1e-6)


def test_fsaverage_labels_of_another_mesh_are_refused(tmp_path):
    _write_fsaverage(tmp_path)
    lab = tmp_path / "nsddata/freesurfer/fsaverage/label"
    for atlas in ("floc-faces", "nsdgeneral"):
        nib.save(nib.MGHImage(np.ones((20, 1, 1), np.int32), np.eye(4)), lab / f"lh.{atlas}.mgz")
    with pytest.raises(InputError, match=r"ROI labels \(lh\).*12 vertices"):
        load_nsd(tmp_path, rois=["floc-faces"], space="fsaverage", file_format="mgh")


def _write_stimuli(path: Path, n=30, size=8, seed=0) -> np.ndarray:
    imgs = np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("imgBrick", data=imgs, chunks=(1, size, size, 3))
    return imgs


def test_nsd_stimuli_are_the_rows_of_the_73k_ids(tmp_path):
    imgs = _write_stimuli(tmp_path / "nsd_stimuli.hdf5")
    ids = ["nsd00007", "nsd00001", "nsd00030"]
    stim = load_nsd_stimuli(tmp_path / "nsd_stimuli.hdf5", ids)
    assert stim.ids == tuple(ids) and stim.metadata["nsd_id"].tolist() == [7, 1, 30]
    for k, i in enumerate([6, 0, 29]):  # 1-based 73k id i + 1 lives in row i
        np.testing.assert_array_equal(stim.image(k), imgs[i])
    by_int = load_nsd_stimuli(tmp_path / "nsd_stimuli.hdf5", [7, 1, 30])
    assert by_int.ids == stim.ids and by_int.content_hash == stim.content_hash
    whole = load_nsd_stimuli(tmp_path / "nsd_stimuli.hdf5")
    assert len(whole) == 30 and whole.ids[0] == "nsd00001"
    assert [nsd_id_from_stimulus_id(s) for s in ids] == [7, 1, 30]


def test_nsd_stimuli_match_the_responses_ids(tmp_path):
    _write_nsd(tmp_path, sessions=1, n_images=20)
    da = load_nsd(tmp_path, sessions=[1])
    ids = da["stimulus"].values.tolist()
    top = max(nsd_id_from_stimulus_id(s) for s in ids)
    imgs = _write_stimuli(tmp_path / "nsd_stimuli.hdf5", n=top, size=4)
    stim = load_nsd_stimuli(tmp_path / "nsd_stimuli.hdf5", ids)
    assert list(stim.ids) == ids
    np.testing.assert_array_equal(stim.image(ids[3]), imgs[nsd_id_from_stimulus_id(ids[3]) - 1])


def test_nsd_stimuli_bad_inputs(tmp_path):
    path = tmp_path / "nsd_stimuli.hdf5"
    _write_stimuli(path, n=5)
    with pytest.raises(InputError, match="nsd00006"):
        load_nsd_stimuli(path, ["nsd00006"])
    with pytest.raises(InputError, match="'img3'"):
        load_nsd_stimuli(path, ["img3"])
    with pytest.raises(InputError, match="imgBrick"):
        load_nsd_stimuli(path, dataset="images")
    with pytest.raises(InputError, match="nsd_stimuli.hdf5"):
        load_nsd_stimuli(tmp_path / "absent.hdf5")
    with h5py.File(tmp_path / "gray.hdf5", "w") as f:
        f.create_dataset("imgBrick", data=np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(InputError, match="uint8 images"):
        load_nsd_stimuli(tmp_path / "gray.hdf5")
