"""Writing a simulated NSD in NSD's own file layouts (those ``cortexalign.neural.fmri.nsd`` reads).

- ``nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5``: ``imgBrick`` (n_73k, side, side, 3) uint8;
- ``nsddata/experiments/nsd/nsd_expdesign.mat``: ``masterordering`` (1, 30000), 1-based indices
  into ``subjectim`` (8, 10000), the 1-based 73k ids each subject saw;
- subject space: ``nsddata/ppdata/subj01/func1pt8mm/roi/{prf-visualrois,floc-faces,nsdgeneral}
  .nii.gz`` and ``nsddata/freesurfer/subj01/label/*.mgz.ctab``; betas
  ``nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_sessionNN.nii.gz``
  (x, y, z, 750) int16, percent signal change x 300;
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
           "write_volume_betas", "write_surface_rois", "write_surface_betas", "ROI_TABLES"]

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
