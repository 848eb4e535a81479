"""A tiny NSD on disk for the runner tests: stimulus HDF5, design, ROI volumes, one session of
int16 betas (in the layout documented in ``cortexalign.neural.fmri.nsd``)."""

from __future__ import annotations

from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
from scipy.io import savemat

SHAPE = (4, 3, 2)
AFFINE = np.diag([1.8, 1.8, 1.8, 1.0])
T = 750
#: The selected voxels (x, y, z) and their ROI: V1v in prf-visualrois, FFA-1 in floc-faces.
VOXELS = {(0, 0, 0): "V1v", (1, 0, 0): "V1v", (2, 1, 1): "FFA-1", (3, 2, 1): "FFA-1"}
BETAS_DIR = "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR"


def write_nsd(root: Path, n_images: int = 48, n_73k: int = 60, size: int = 32, seed: int = 0
              ) -> np.ndarray:
    """Write everything but the betas; return the (750,) 1-based 73k id of each trial.

    The subject saw ``n_images`` of the ``n_73k`` images, each 750 / n_images times or so.
    """
    g = np.random.default_rng(seed)
    roi_dir = root / "nsddata/ppdata/subj01/func1pt8mm/roi"
    lab_dir = root / "nsddata/freesurfer/subj01/label"
    for d in (roi_dir, lab_dir, root / BETAS_DIR, root / "nsddata/experiments/nsd",
              root / "nsddata_stimuli/stimuli/nsd"):
        d.mkdir(parents=True, exist_ok=True)
    prf, faces = np.zeros(SHAPE, np.int16), np.zeros(SHAPE, np.int16)
    for ijk, roi in VOXELS.items():
        (prf if roi == "V1v" else faces)[ijk] = 1 if roi == "V1v" else 2
    for atlas, vol in (("prf-visualrois", prf), ("floc-faces", faces),
                       ("nsdgeneral", np.ones(SHAPE, np.int16))):
        nib.save(nib.Nifti1Image(vol, AFFINE), roi_dir / f"{atlas}.nii.gz")
    (lab_dir / "prf-visualrois.mgz.ctab").write_text("0 Unknown\n1 V1v\n2 V1d\n")
    (lab_dir / "floc-faces.mgz.ctab").write_text("0 Unknown\n1 OFA\n2 FFA-1\n")
    subjectim = np.ones((8, 10000), np.int64)
    subjectim[0, :n_images] = g.permutation(n_73k)[:n_images] + 1
    order = np.tile(np.arange(1, n_images + 1), 30000 // n_images + 1)[:30000]
    savemat(root / "nsddata/experiments/nsd/nsd_expdesign.mat",
            {"masterordering": order[None], "subjectim": subjectim})
    with h5py.File(root / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5", "w") as f:
        f.create_dataset("imgBrick", data=g.integers(0, 256, (n_73k, size, size, 3), np.uint8),
                         chunks=(1, size, size, 3))
    return subjectim[0, order[:T] - 1]


def write_betas(root: Path, nsd_id_t: np.ndarray, planted: dict[tuple, dict[int, float]] | None
                = None, seed: int = 1) -> None:
    """Session 1 betas: noise everywhere; a planted voxel's trial t is ``values[nsd_id_t[t]]``
    (standardised, x 3000 as int16, plus 1% noise)."""
    g = np.random.default_rng(seed)
    b = g.normal(0, 1000, (*SHAPE, T))
    for ijk, values in (planted or {}).items():
        v = np.array([values[int(i)] for i in nsd_id_t], np.float64)
        b[ijk] = 3000 * (v - v.mean()) / v.std() + g.normal(0, 30, T)
    nib.save(nib.Nifti1Image(np.round(b).astype(np.int16), AFFINE),
             root / BETAS_DIR / "betas_session01.nii.gz")
