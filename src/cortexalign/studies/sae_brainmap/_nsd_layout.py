"""Writing a simulated NSD in NSD's own file layouts (those ``cortexalign.neural.fmri.nsd`` reads).

- ``nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5``: ``imgBrick`` (n_73k, side, side, 3) uint8;
- ``nsddata/experiments/nsd/nsd_expdesign.mat``: ``masterordering`` (1, 30000), 1-based indices
  into ``subjectim`` (8, 10000), the 1-based 73k ids each subject saw;
- subject space: ``nsddata/ppdata/subj01/func1pt8mm/roi/{prf-visualrois,floc-faces,nsdgeneral}
  .nii.gz`` and ``nsddata/freesurfer/subj01/label/*.mgz.ctab``; betas
  ``nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_sessionNN.nii.gz``
  (x, y, z, 750) int16, percent signal change x 300;
- the subject's FreeSurfer surfaces ``nsddata/freesurfer/subj01/surf/{lh,rh}.{white,pial,
  inflated,sulc}`` (``write_subject_surfaces``): per hemisphere a closed, rounded-box cortex filling
  that half of the volume, in tkr coordinates with the volume centre as ``cras``, so that
  tkr + cras lands on the betas' voxels through their affine;
- fsaverage: ``nsddata/freesurfer/fsaverage/label/{lh,rh}.<atlas>.mgz`` and betas
  ``nsddata_betas/ppdata/subj01/fsaverage/betas_fithrf_GLMdenoise_RR/{lh,rh}.betas_sessionNN.mgh``
  (vertices, 1, 1, 750) float32.

Atomic writes: each file goes to a temporary name (same suffix, so nibabel picks the same
format) and is renamed when complete.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from cortexalign.atomic import write_atomic as _atomic

__all__ = ["TRIALS", "BETAS", "write_stimuli", "write_design", "write_volume_rois",
           "write_volume_betas", "write_surface_rois", "write_surface_betas", "ROI_TABLES",
           "write_subject_surfaces", "icosphere"]

TRIALS = 750  # trials per NSD session
BETAS = "betas_fithrf_GLMdenoise_RR"
AFFINE = np.diag([1.8, 1.8, 1.8, 1.0])
#: label value -> name of the two atlases simulated (NSD's own numbering)
ROI_TABLES = {"prf-visualrois": {1: "V1v", 2: "V1d", 3: "V2v", 4: "V2d", 5: "V3v", 6: "V3d",
                                 7: "hV4"},
              "floc-faces": {1: "OFA", 2: "FFA-1", 3: "FFA-2", 4: "mTL-faces", 5: "aTL-faces"}}


def write_stimuli(root: Path, images: Callable[[int], np.ndarray], n_73k: int, side: int) -> Path:
    """``imgBrick`` (n_73k, side, side, 3) uint8, written image by image (chunks of one image)."""
    import h5py

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            brick = f.create_dataset("imgBrick", (n_73k, side, side, 3), np.uint8,
                                     chunks=(1, side, side, 3))
            for i in range(n_73k):
                brick[i] = images(i)

    return _atomic(root / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5", write)


def write_design(root: Path, seen_73k: np.ndarray, n_sessions: int) -> np.ndarray:
    """The design file; subject 1 saw ``seen_73k`` (0-based 73k indices), each about equally often
    over ``n_sessions`` x 750 trials. Returns the (n_sessions * 750,) 1-based 73k id per trial."""
    from scipy.io import savemat

    n = len(seen_73k)
    subjectim = np.ones((8, 10000), np.int64)
    subjectim[0, :n] = np.asarray(seen_73k) + 1
    rng = np.random.default_rng(len(seen_73k))
    reps = -(-30000 // n)
    order = np.concatenate([rng.permutation(n) for _ in range(reps)])[:30000] + 1
    _atomic(root / "nsddata/experiments/nsd/nsd_expdesign.mat",
            lambda p: savemat(p, {"masterordering": order[None], "subjectim": subjectim}))
    return subjectim[0, order[:n_sessions * TRIALS] - 1]


def write_volume_rois(root: Path, rois: dict[str, np.ndarray], general: np.ndarray) -> None:
    """ROI volumes (``rois``: atlas -> int16 label volume) and ``nsdgeneral``, with ctab files."""
    import nibabel as nib

    roi_dir = root / "nsddata/ppdata/subj01/func1pt8mm/roi"
    lab_dir = root / "nsddata/freesurfer/subj01/label"
    for atlas, vol in {**rois, "nsdgeneral": general}.items():
        _atomic(roi_dir / f"{atlas}.nii.gz",
                lambda p, v=vol: nib.save(nib.Nifti1Image(v.astype(np.int16), AFFINE), p))
    for atlas in rois:
        table = "0 Unknown\n" + "".join(f"{k} {v}\n" for k, v in ROI_TABLES[atlas].items())
        _atomic(lab_dir / f"{atlas}.mgz.ctab", lambda p, t=table: p.write_text(t))


def write_volume_betas(root: Path, session: int, betas_xyzt: np.ndarray) -> Path:
    """One session of subject-space betas, int16 (percent signal change x 300)."""
    import nibabel as nib

    path = root / f"nsddata_betas/ppdata/subj01/func1pt8mm/{BETAS}/betas_session{session:02d}.nii.gz"
    return _atomic(path, lambda p: nib.save(nib.Nifti1Image(betas_xyzt.astype(np.int16), AFFINE), p))


def write_surface_rois(root: Path, labels: dict[str, dict[str, np.ndarray]]) -> None:
    """fsaverage labels: ``labels[hemi][atlas]`` (vertices,) int, as ``{hemi}.{atlas}.mgz``."""
    import nibabel as nib

    lab_dir = root / "nsddata/freesurfer/fsaverage/label"
    for hemi, atlases in labels.items():
        for atlas, lab in atlases.items():
            img = nib.MGHImage(lab.astype(np.int32).reshape(-1, 1, 1), np.eye(4))
            _atomic(lab_dir / f"{hemi}.{atlas}.mgz", lambda p, i=img: nib.save(i, p))
    for atlas in ROI_TABLES:
        table = "0 Unknown\n" + "".join(f"{k} {v}\n" for k, v in ROI_TABLES[atlas].items())
        _atomic(lab_dir / f"{atlas}.mgz.ctab", lambda p, t=table: p.write_text(t))


def write_surface_betas(root: Path, session: int, hemi: str, betas_vt: np.ndarray) -> Path:
    """One session, one hemisphere of fsaverage betas (vertices, 1, 1, trials) float32."""
    import nibabel as nib

    path = root / f"nsddata_betas/ppdata/subj01/fsaverage/{BETAS}/{hemi}.betas_session{session:02d}.mgh"
    img = nib.MGHImage(betas_vt.astype(np.float32)[:, None, None, :], np.eye(4))
    return _atomic(path, lambda p: nib.save(img, p))


def _middle(verts: list, mid: dict, a: int, b: int) -> int:
    """Index of the unit vertex halfway between vertices a and b (added once per edge)."""
    key = (min(a, b), max(a, b))
    if key not in mid:
        m = verts[a] + verts[b]
        verts.append(m / np.linalg.norm(m))
        mid[key] = len(verts) - 1
    return mid[key]


def icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit sphere: (10 * 4**n + 2, 3) vertices and (20 * 4**n, 3) faces (outward-facing)."""
    t = (1 + 5 ** 0.5) / 2
    v = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t),
         (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    f = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4),
         (11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8),
         (3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    verts = [np.asarray(p, np.float64) / np.linalg.norm(p) for p in v]
    faces = f
    for _ in range(subdivisions):
        mid: dict[tuple[int, int], int] = {}
        new = []
        for a, b, c in faces:
            ab, bc, ca = (_middle(verts, mid, i, j) for i, j in ((a, b), (b, c), (c, a)))
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    return np.stack(verts), np.asarray(faces, np.int32)


def _rounded_box(u_v3: np.ndarray, half_3: np.ndarray, power: float = 8.0) -> np.ndarray:
    """Points on |x/a|^p + |y/b|^p + |z/c|^p = 1 along the unit directions ``u_v3``."""
    scale = (np.abs(u_v3 / half_3) ** power).sum(1) ** (-1 / power)
    return u_v3 * scale[:, None]


def _turn(u_v3: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotate the rows of ``u_v3`` by the rotation taking unit vector ``a`` to unit vector ``b``."""
    v, c = np.cross(a, b), float(a @ b)
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return u_v3 @ (np.eye(3) + k + k @ k / (1 + c)).T


def write_subject_surfaces(root: Path, grid: tuple[int, int, int], subdivisions: int = 4) -> None:
    """FreeSurfer surfaces of the simulated subject, aligned with its func1pt8mm volumes.

    Each hemisphere (lh: x below the middle of the grid, rh: above, as in RAS) is a rounded box
    filling its half of the volume: white 1.5 voxels inside the half's faces, pial 0.3 voxels
    inside, so each vertex's white -> pial segment crosses about 1.2 voxels of "cortex"; the
    corners of the grid (where the simulated ROIs lie) are reached. Vertex coordinates are
    tkr (world minus ``cras``, the world position of the volume centre), with ``cras`` in each
    file's volume info, as FreeSurfer writes them. ``inflated`` is an ellipsoid of the half's
    proportions; ``sulc`` the white surface's distance from the half's centre, centred.
    """
    from nibabel.freesurfer import write_geometry, write_morph_data

    g = np.asarray(grid, np.float64)
    vox = float(AFFINE[0, 0])
    cras = vox * (g - 1) / 2
    u, faces = icosphere(subdivisions)
    half = np.array([g[0] / 4, g[1] / 2, g[2] / 2])
    info = {"head": np.array([2, 0, 20], np.int32), "valid": "1  # volume info valid",
            "filename": "../mri/filled-pretess255.mgz", "volume": np.asarray(grid, np.int64),
            "voxelsize": np.full(3, vox), "xras": np.array([1.0, 0, 0]),
            "yras": np.array([0, 1.0, 0]), "zras": np.array([0, 0, 1.0]), "cras": cras}
    surf = root / "nsddata/freesurfer/subj01/surf"
    for short, x0, sign in (("lh", 0.0, -1.0), ("rh", g[0] / 2, 1.0)):
        corner, lateral = np.full(3, sign) / 3 ** 0.5, np.array([sign, 0.0, 0.0])
        centre = np.array([x0 + g[0] / 4 - 0.5, g[1] / 2 - 0.5, g[2] / 2 - 0.5])  # voxels
        shapes = {"white": _rounded_box(u, half - 1.5), "pial": _rounded_box(u, half - 0.3)}
        world = {k: vox * (centre + v) for k, v in shapes.items()}
        world["inflated"] = vox * (centre + _turn(u, corner, lateral) * half * 1.2)
        for name, xyz in world.items():
            _atomic(surf / f"{short}.{name}",
                    lambda p, xyz=xyz: write_geometry(str(p), xyz - cras, faces,
                                                      volume_info=info))
        depth = np.linalg.norm(shapes["white"], axis=1)
        _atomic(surf / f"{short}.sulc",
                lambda p, d=depth: write_morph_data(str(p), (d - d.mean()).astype(np.float32)))
