"""Noise ceilings of voxels from their noise-ceiling SNR (Allen et al. 2022, Nature Neuroscience,
"A massive 7T fMRI dataset to bridge cognitive neuroscience and artificial intelligence").

With betas z-scored per session, each voxel's noise variance is the mean over images of the
variance across an image's repetitions (ddof = 1), the signal variance is 1 - noise variance
(floored at 0), and ncsnr = signal sd / noise sd. The ceiling (% of variance explainable) of the
trial-averaged response is

    NC = 100 * ncsnr^2 / (ncsnr^2 + (A/3 + B/2 + C/1) / (A + B + C))

with A, B, C the numbers of images averaged over 3, 2 and 1 trials (in general the mean of 1/r over
images); with every image repeated n times this is 100 * ncsnr^2 / (ncsnr^2 + 1/n).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cortexalign.errors import InputError

__all__ = ["ncsnr_from_trials", "noise_ceiling_from_ncsnr"]


def ncsnr_from_trials(betas_nt: np.ndarray, image_t: Sequence) -> np.ndarray:
    """(n,) ncsnr of z-scored single-trial betas (voxels x trials) given each trial's image.

    Only images shown at least twice inform the noise variance; at least one is required.
    """
    betas_nt, image_t = np.asarray(betas_nt, np.float64), np.asarray(image_t)
    if betas_nt.ndim != 2 or betas_nt.shape[1] != len(image_t):
        raise InputError("image_t", f"one image id per trial ({betas_nt.shape[-1]} trials)",
                         f"{len(image_t)} ids", "pass the trial -> image mapping of these betas")
    images, inverse, counts = np.unique(image_t, return_inverse=True, return_counts=True)
    rep = counts >= 2
    if not rep.any():
        raise InputError("image_t", "some images shown at least twice", "no repeated image",
                         "ncsnr needs repetitions; pass the NSD ncsnr file instead")
    sums = np.zeros((len(images), betas_nt.shape[0]))
    sq = np.zeros_like(sums)
    np.add.at(sums, inverse, betas_nt.T)
    np.add.at(sq, inverse, betas_nt.T ** 2)
    c = counts[:, None].astype(np.float64)
    var_in = (sq[rep] - sums[rep] ** 2 / c[rep]) / (c[rep] - 1)  # unbiased, per image
    noise_var = var_in.mean(0)
    signal_var = np.clip(1.0 - noise_var, 0.0, None)
    return np.sqrt(signal_var) / np.sqrt(np.maximum(noise_var, 1e-300))


def noise_ceiling_from_ncsnr(ncsnr_n: np.ndarray, n_reps_s: Sequence[int]) -> np.ndarray:
    """(n,) noise ceiling in percent of variance, for responses averaged over ``n_reps_s`` trials
    per image (the NSD formula above)."""
    reps = np.asarray(n_reps_s, np.float64)
    if reps.ndim != 1 or len(reps) == 0 or (reps < 1).any():
        raise InputError("n_reps_s", "a positive trial count per image", f"{reps[:5]}",
                         "count the trials averaged for each image")
    ncsnr2 = np.asarray(ncsnr_n, np.float64) ** 2
    return 100.0 * ncsnr2 / (ncsnr2 + np.mean(1.0 / reps))
