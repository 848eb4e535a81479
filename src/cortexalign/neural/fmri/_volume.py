"""Shared pieces of the fMRI loaders: reading images, checking spaces, z-scoring, averaging.

Arrays follow the voxel-major layout ``betas_nt`` (voxels x trials) once voxels are selected.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cortexalign.errors import InputError

__all__ = ["load_image", "check_same_space", "zscore_trials", "average_repetitions",
           "drop_constant_voxels"]


def _nib():
    try:
        import nibabel
    except ImportError as exc:  # an optional dependency of the fMRI loaders
        raise ImportError("the fMRI loaders need nibabel: pip install nibabel") from exc
    return nibabel


def load_image(path: str | Path, what: str):
    """A nibabel image (NIfTI or MGH), with a clear error for a missing file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(what, "an existing NIfTI/MGH file", repr(str(path)),
                         "check the dataset root and the NSD layout (see the loader's docstring)")
    return _nib().load(str(path))


def check_same_space(img, ref, what: str, ref_what: str, atol: float = 1e-3) -> None:
    """Raise unless ``img`` has ``ref``'s 3-D grid shape and affine."""
    shape, ref_shape = tuple(img.shape[:3]), tuple(ref.shape[:3])
    if shape != ref_shape:
        raise InputError(what, f"a volume on the grid of {ref_what} (shape {ref_shape})",
                         f"shape {shape}", "resample it to the betas' space (e.g. nilearn.image."
                         "resample_to_img with interpolation='nearest') or use the mask of the same "
                         "space (func1pt8mm vs func1mm)")
    a, b = np.asarray(img.affine), np.asarray(ref.affine)
    if not np.allclose(a, b, atol=atol):
        raise InputError(what, f"the affine of {ref_what}",
                         f"an affine differing by up to {np.abs(a - b).max():.3g} mm",
                         "use a mask in the same space as the betas, or resample it")


def zscore_trials(betas_nt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z-score each voxel over the trials of one session (float64 moments, ddof=0).

    Returns the z-scored betas and the (n,) mask of voxels with zero variance (left at 0).
    """
    b = np.asarray(betas_nt, dtype=np.float64)
    mean, sd = b.mean(1, keepdims=True), b.std(1, keepdims=True)
    constant = (sd[:, 0] <= 1e-12 * np.maximum(np.abs(mean[:, 0]), 1.0))
    return np.where(constant[:, None], 0.0, (b - mean) / np.where(constant[:, None], 1.0, sd)), constant


def drop_constant_voxels(constant_n: np.ndarray, what: str) -> np.ndarray:
    """Warn with the count of zero-variance voxels; return the mask of voxels to keep."""
    n_bad = int(np.sum(constant_n))
    if n_bad:
        warnings.warn(f"{what}: {n_bad} of {len(constant_n)} voxels have zero variance (e.g. "
                      "outside the brain or masked); they are excluded", RuntimeWarning,
                      stacklevel=3)
    keep = ~np.asarray(constant_n, bool)
    if not keep.any():
        raise InputError(what, "at least one voxel whose response varies",
                         f"all {len(keep)} voxels constant", "check the mask and the betas")
    return keep


def average_repetitions(betas_nt: np.ndarray, image_t: Sequence) -> tuple[np.ndarray, list, np.ndarray]:
    """Average trials of the same image.

    Returns ``(mean_sn, images, n_reps_s)``: the (s, n) mean per image (images in order of first
    appearance), the image ids, and the number of trials averaged per image.
    """
    image_t = np.asarray(image_t)
    images, first, inverse, counts = np.unique(image_t, return_index=True, return_inverse=True,
                                               return_counts=True)
    order = np.argsort(first)  # keep the presentation order of first appearance
    sums_sn = np.zeros((len(images), betas_nt.shape[0]))
    np.add.at(sums_sn, inverse, np.asarray(betas_nt, np.float64).T)
    mean_sn = sums_sn / counts[:, None]
    return mean_sn[order], [images[i] for i in order], counts[order]
