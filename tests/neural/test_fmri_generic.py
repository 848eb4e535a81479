"""Generic NIfTI / table loaders and fsaverage surface maps on small synthetic volumes."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from cortexalign.errors import InputError
from cortexalign.neural.fmri import load_nifti_responses, load_voxel_table, plot_voxel_values

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _volumes(tmp_path, s=6):
    g = np.random.default_rng(0)
    betas = g.standard_normal((4, 3, 2, s))
    labels = np.zeros((4, 3, 2), np.int16)
    labels[0, 0, 0], labels[1, 2, 1], labels[3, 1, 0] = 1, 2, 2
    nib.save(nib.Nifti1Image(betas, AFFINE), tmp_path / "betas.nii.gz")
    nib.save(nib.Nifti1Image(labels, AFFINE), tmp_path / "rois.nii.gz")
    return betas


def test_nifti_responses_recover_planted_values(tmp_path):
    betas = _volumes(tmp_path)
    ids = [f"im{i}" for i in range(6)]
    da = load_nifti_responses(tmp_path / "betas.nii.gz", ids, tmp_path / "rois.nii.gz",
                              label_table={1: "FFA", 2: "V1"})
    assert da["roi"].values.tolist() == ["FFA", "V1", "V1"]
    np.testing.assert_allclose(da.values[:, 1], betas[1, 2, 1])
    np.testing.assert_allclose(da.values[:, 2], betas[3, 1, 0])
    z = load_nifti_responses(tmp_path / "betas.nii.gz", ids, tmp_path / "rois.nii.gz", zscore=True)
    ref = (betas[0, 0, 0] - betas[0, 0, 0].mean()) / betas[0, 0, 0].std()
    np.testing.assert_allclose(z.values[:, 0], ref)
    assert z["roi"].values.tolist() == ["roi-1", "roi-2", "roi-2"]


def test_nifti_bad_inputs(tmp_path):
    _volumes(tmp_path)
    with pytest.raises(InputError, match="one per volume"):
        load_nifti_responses(tmp_path / "betas.nii.gz", ["a"] * 5, tmp_path / "rois.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((4, 3, 2), np.int16), np.eye(4)), tmp_path / "other.nii.gz")
    with pytest.raises(InputError, match="affine"):
        load_nifti_responses(tmp_path / "betas.nii.gz", list("abcdef"), tmp_path / "other.nii.gz")


def test_voxel_table_with_roi_map_and_constant_voxel(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("stimulus_id,v1,v2,v3\na,1,5,0\nb,2,5,1\nc,4,5,3\n")
    with pytest.warns(RuntimeWarning, match="1 of 2 voxels"):
        da = load_voxel_table(table, rois={"v1": "FFA", "v2": "PPA"})
    assert da["neuroid"].values.tolist() == ["v1"] and da.attrs["excluded_zero_variance"] == 1
    np.testing.assert_allclose(da.values[:, 0], [1, 2, 4])
    with pytest.raises(InputError, match="v9"):
        load_voxel_table(table, rois={"v9": "FFA"})


def test_surface_png_is_written_from_an_mni_volume(tmp_path):
    pytest.importorskip("nilearn")
    # a 4 mm MNI-like grid covering the brain; a slab of voxels across posterior cortex
    affine = np.array([[4, 0, 0, -90], [0, 4, 0, -126], [0, 0, 4, -72], [0, 0, 0, 1]], float)
    shape = (46, 55, 46)
    ijk = np.array([(i, j, k) for i in range(2, 44, 2) for j in range(2, 20, 2) for k in range(10, 30, 2)])
    values = np.linspace(0, 1, len(ijk))
    out = plot_voxel_values(values, ijk, affine, shape, tmp_path / "best_r.png", title="best r",
                            views=("ventral",))
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match="inside the volume"):
        plot_voxel_values(values, ijk + 100, affine, shape, tmp_path / "x.png")
