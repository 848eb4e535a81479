"""Subject-space volumes on the subject's own FreeSurfer surfaces, checked against an independent
computation: a planted blob appears at the vertices whose cortical samples lie inside it, and
vertices whose samples lie off the brain mask have no value (NaN)."""

from __future__ import annotations

import numpy as np
import pytest

from cortexalign.errors import InputError

pytest.importorskip("nilearn")

GRID = (20, 24, 20)  # the grid the surfaces were written for
VOL = (24, 28, 24)  # the sampled volume: that grid with 2 voxels of margin on every side
AFFINE = np.array([[1.8, 0, 0, -3.6], [0, 1.8, 0, -3.6], [0, 0, 1.8, -3.6], [0, 0, 0, 1.0]])


@pytest.fixture(scope="module")
def surfaces(tmp_path_factory):
    from cortexalign.neural.fmri.subject_surface import load_subject_surfaces
    from cortexalign.studies.sae_brainmap._nsd_layout import write_subject_surfaces

    root = tmp_path_factory.mktemp("fs")
    write_subject_surfaces(root, GRID, subdivisions=4)
    return load_subject_surfaces(root / "nsddata/freesurfer/subj01")


def _to_voxels(xyz, affine):
    return xyz @ np.linalg.inv(affine)[:3, :3].T + np.linalg.inv(affine)[:3, 3]


def _planted(surfaces, affine):
    """Mask: voxels with x < 9 (most of the left hemisphere's half, not its medial face); blob:
    radius 3.5 voxels around the lateral-most left white vertex."""
    mask = np.zeros(VOL, bool)
    mask[:9] = True
    white = _to_voxels(surfaces.world("white", "left"), affine)
    centre = white[np.argmin(white[:, 0])]
    ijk_all = np.argwhere(mask)
    blob = np.zeros(VOL, bool)
    blob[tuple(ijk_all[np.linalg.norm(ijk_all - centre, axis=1) <= 3.5].T)] = True
    return mask, blob


def _neighbours(surfaces, affine, hemi, depths):
    """(V, samples * 8, 3) voxel indices touched by each vertex's trilinear samples (numpy only)."""
    pial = _to_voxels(surfaces.world("pial", hemi), affine)
    white = _to_voxels(surfaces.world("white", hemi), affine)
    pts = np.stack([pial + t * (white - pial) for t in depths], 1)  # (V, S, 3) voxel coordinates
    base = np.floor(pts).astype(int)
    corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    return (base[:, :, None, :] + corners).reshape(len(pts), -1, 3)


def _lookup(vol, idx_v83):
    inside = ((idx_v83 >= 0) & (idx_v83 < np.array(VOL))).all(-1)
    out = np.zeros(idx_v83.shape[:2], bool)
    out[inside] = vol[tuple(idx_v83[inside].T)]
    return out


def test_a_planted_blob_appears_at_the_vertices_inside_it(surfaces):
    from cortexalign.neural.fmri.subject_surface import SURFACE_DEPTHS, volume_to_subject_surface

    affine = AFFINE
    mask, blob = _planted(surfaces, affine)
    ijk = np.argwhere(mask)
    values = np.where(blob[tuple(ijk.T)], 5.0, 1.0)
    got = volume_to_subject_surface(values, ijk, affine, VOL, surfaces)
    labels = volume_to_subject_surface(np.where(values == 5, 3.0, 1.0), ijk, affine, VOL,
                                       surfaces, categorical=True)
    nb = _neighbours(surfaces, affine, "left", SURFACE_DEPTHS)
    in_blob, in_mask = _lookup(blob, nb), _lookup(mask, nb)
    all_blob = in_blob.all(1)  # every voxel any sample touches is in the blob
    off_brain = ~in_mask.any(1)  # no sample touches a voxel with a value
    plain = in_mask.all(1) & ~in_blob.any(1)
    assert all_blob.sum() >= 3 and off_brain.sum() >= 100 and plain.sum() >= 100
    left = got["left"]
    np.testing.assert_allclose(left[all_blob], 5.0, rtol=1e-6)
    np.testing.assert_allclose(left[plain], 1.0, rtol=1e-6)
    assert np.isnan(left[off_brain]).all()
    off_right = ~_lookup(mask, _neighbours(surfaces, affine, "right", SURFACE_DEPTHS)).any(1)
    assert off_right.all() and np.isnan(got["right"]).all()  # the right hemisphere: no mask
    finite = np.isfinite(left)
    assert ((left[finite] >= 1 - 1e-6) & (left[finite] <= 5 + 1e-6)).all()
    # labels are never averaged: the blob's vertices get 3, the rest 1, mixed ones one of them
    lab = labels["left"]
    assert (lab[all_blob] == 3).all() and (lab[plain] == 1).all() and np.isnan(lab[off_brain]).all()
    assert set(np.unique(lab[np.isfinite(lab)])) <= {1.0, 3.0}


def test_the_surface_to_world_map_moves_the_sampling(surfaces):
    from dataclasses import replace

    from cortexalign.neural.fmri.subject_surface import volume_to_subject_surface

    affine = AFFINE
    mask, _ = _planted(surfaces, affine)
    ijk = np.argwhere(mask)
    base = volume_to_subject_surface(np.ones(len(ijk)), ijk, affine, VOL, surfaces)
    shift = surfaces.surface_to_world.copy()
    shift[0, 3] -= 1.8 * 10  # ten voxels to the left: the right hemisphere lands on the mask
    moved = volume_to_subject_surface(np.ones(len(ijk)), ijk, affine, VOL,
                                      replace(surfaces, surface_to_world=shift))
    assert np.isnan(base["right"]).all() and np.isfinite(moved["right"]).sum() > 100


def test_surfaces_must_be_complete_and_of_one_reconstruction(tmp_path, surfaces):
    import shutil

    from nibabel.freesurfer import read_geometry, write_geometry

    from cortexalign.neural.fmri.subject_surface import load_subject_surfaces

    with pytest.raises(InputError, match="lh.white"):
        load_subject_surfaces(tmp_path)
    shutil.copytree(surfaces.directory, tmp_path / "s")
    coords, faces, meta = read_geometry(str(tmp_path / "s/surf/rh.inflated"), read_metadata=True)
    write_geometry(str(tmp_path / "s/surf/rh.inflated"), coords[:-1],
                   faces[faces.max(1) < len(coords) - 1], volume_info=meta)
    with pytest.raises(InputError, match="same vertices"):
        load_subject_surfaces(tmp_path / "s")


def test_the_simulated_surfaces_carry_freesurfer_volume_info(surfaces):
    from nibabel.freesurfer import read_geometry

    *_, meta = read_geometry(str(surfaces.directory / "surf/lh.pial"), read_metadata=True)
    cras = 1.8 * (np.asarray(GRID) - 1) / 2  # the volume centre
    np.testing.assert_allclose(meta["cras"], cras)
    np.testing.assert_allclose(surfaces.surface_to_world[:3, 3], cras)
    # tkr + cras lands inside the grid
    w = surfaces.world("pial", "left") / 1.8
    assert (w > -0.5).all() and (w < np.asarray(GRID) - 0.5).all()
