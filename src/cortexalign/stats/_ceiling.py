"""Noise ceilings: how well the true model could score, given the noise in the neural data.

RDM sets (Nili et al. 2014, PLoS Comput Biol 10:e1003553; rsatoolbox's ``boot_noise_ceiling``):
subjects are left out one at a time. The *lower* bound compares each left-out subject's RDMs with
the pooled RDM of the other subjects; the *upper* bound with the pooled RDM of all subjects
(the left-out one included). Within a subject, the comparisons with each of its RDMs (sessions) are
averaged, then the subjects are averaged: exactly rsatoolbox with ``rdm_descriptor=by``. With
``by=None`` every RDM is its own group (rsatoolbox's default ``'index'``). The ``rsa`` metric
averages its comparisons the same way, so score and ceiling are on the same scale.

Pooling ("the RDM that scores best under the comparison"), as rsatoolbox's ``pool_rdm``: mean of
ranks for ``spearman``, ``rho_a`` and ``kendall_tau_a``; mean of z-scored vectors for ``pearson``;
mean of vectors scaled to unit root-mean-square for ``cosine``. The whitened ``cosine_cov`` and
``corr_cov`` pool like ``cosine`` and ``pearson``, as rsatoolbox's ``boot_noise_ceiling`` does
(``rsatoolbox.util.inference_util.pool_rdm``; its other ``util.pooling.pool_rdm`` scales by the
whitened norm instead, which moves the 92-object ceiling by ~0.005).

Responses with repetitions: ``split_half_ceiling`` correlates the RDMs of two random halves of the
repetitions and applies the Spearman-Brown correction to the full number of repetitions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cortexalign.device import resolve_device
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.neural import RDMSet
from cortexalign.rdm import (
    RANK_COMPARISONS,
    RDM_COMPARISONS,
    RDM_METHODS,
    average_ranks,
    compare_vectors,
    rdm_tensor,
    rdm_vectors,
    upper_tri,
)
from cortexalign.stats._memo import kept_result

__all__ = ["RDM_POOLING", "rdm_noise_ceiling", "noise_ceiling_vectors", "split_half_ceiling",
           "spearman_brown", "group_weights"]


def _pool_ranks(vec_rp: torch.Tensor) -> torch.Tensor:
    return average_ranks(vec_rp).mean(dim=0, keepdim=True)


def _pool_zscore(vec_rp: torch.Tensor) -> torch.Tensor:
    z = vec_rp - vec_rp.mean(dim=1, keepdim=True)
    z = z / z.std(dim=1, correction=0, keepdim=True)
    return z.mean(dim=0, keepdim=True)


def _pool_rms(vec_rp: torch.Tensor) -> torch.Tensor:
    return (vec_rp / torch.sqrt((vec_rp**2).mean(dim=1, keepdim=True))).mean(dim=0, keepdim=True)


RDM_POOLING: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "spearman": _pool_ranks,
    "kendall_tau_a": _pool_ranks,
    "pearson": _pool_zscore,
    "cosine": _pool_rms,
    "rho_a": _pool_ranks,
    "cosine_cov": _pool_rms,
    "corr_cov": _pool_zscore,
}
"""Comparison name -> ``fn(vec_rp) -> (1, p)`` pooled RDM vector (one entry per comparison)."""


def group_weights(groups_r: np.ndarray) -> np.ndarray:
    """(r,) weights that average within each group, then over groups (they sum to 1)."""
    labels, inverse, counts = np.unique(np.asarray(groups_r), return_inverse=True,
                                        return_counts=True)
    return 1.0 / (len(labels) * counts[inverse])


def noise_ceiling_vectors(vec_rp: torch.Tensor, groups_r: np.ndarray,
                          method: str = "spearman") -> tuple[float, float]:
    """Lower and upper noise-ceiling bounds of (r, p) RDM vectors grouped by ``groups_r``.

    Returns (nan, nan) when there are fewer than two groups (nothing to leave out). A target's
    ceiling is kept between calls (``_memo``, by the vectors' digest): every layer of a
    run is scored against the same target.
    """
    if method not in RDM_POOLING:
        raise UnknownNameError("RDM comparison", str(method), RDM_POOLING)
    groups_r = np.asarray(groups_r)
    labels = np.unique(groups_r)
    if len(labels) < 2:
        return float("nan"), float("nan")
    return kept_result(("ceiling", method, tuple(groups_r.tolist())), vec_rp,
                       lambda: _ceiling(vec_rp, groups_r, labels, method))


def _ceiling(vec_rp: torch.Tensor, groups_r: np.ndarray, labels: np.ndarray,
             method: str) -> tuple[float, float]:
    pool = RDM_POOLING[method]
    if method in RANK_COMPARISONS:  # rank every vector once: pools are means of ranks
        ranks_rp = average_ranks(vec_rp)
        ranked = RANK_COMPARISONS[method]

        def compare(pooled_1p: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
            return ranked(average_ranks(pooled_1p), ranks_rp[test])

        def pool_of(test: torch.Tensor) -> torch.Tensor:
            return ranks_rp[test].mean(dim=0, keepdim=True)
    else:
        def compare(pooled_1p: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
            return compare_vectors(pooled_1p, vec_rp[test], method)

        def pool_of(test: torch.Tensor) -> torch.Tensor:
            return pool(vec_rp[test])
    every = torch.ones(vec_rp.shape[0], dtype=torch.bool, device=vec_rp.device)
    upper_r = compare(pool_of(every), every)[0]
    lows, highs = [], []
    for g in labels:
        test = torch.as_tensor(groups_r == g, device=vec_rp.device)
        lows.append(float(compare(pool_of(~test), test).mean()))
        highs.append(float(upper_r[test].mean()))
    return float(np.mean(lows)), float(np.mean(highs))


def rdm_noise_ceiling(rdms, method: str = "spearman", by: str | None = "subject",
                      device: str | torch.device | None = None) -> tuple[float, float]:
    """Leave-one-group-out noise ceiling of a set of RDMs.

    Parameters
    ----------
    rdms : ``RDMSet`` or (r, s, s) array of target RDMs.
    method : a key of ``RDM_COMPARISONS``, the comparison the models will be scored with.
    by : descriptor grouping RDMs (``"subject"``: sessions of a subject are left out together).
        ``None`` (the caller's word that every RDM is one subject) makes every RDM its own group;
        a descriptor an RDMSet of several RDMs lacks is refused (they may be areas or
        conditions, whose agreement is not a noise ceiling).
    device : where to compute.

    Returns
    -------
    (lower, upper) : floats; NaN when there are fewer than two groups.
    """
    if method not in RDM_COMPARISONS:
        raise UnknownNameError("RDM comparison", str(method), RDM_COMPARISONS)
    vec = rdm_vectors(rdms, "rdms", resolve_device(device))
    if isinstance(rdms, RDMSet) and by is not None:
        if by not in rdms.descriptors and rdms.n_rdms > 1:
            raise InputError("by", f"a descriptor of the {rdms.n_rdms} RDMs of {rdms.name!r} "
                             f"naming their {by}s", f"{by!r}; the set has "
                             f"{sorted(rdms.descriptors) or 'no descriptors'}",
                             f"give the RDMSet descriptors={{'{by}': [...]}}, or pass by=None "
                             "if each RDM really is one subject")
        groups = rdms.groups(by)
    else:
        groups = np.arange(vec.shape[0])
    return noise_ceiling_vectors(vec, groups, method)


def spearman_brown(r: float, factor: float = 2.0) -> float:
    """Reliability of a measure ``factor`` times longer: ``factor r / (1 + (factor - 1) r)``."""
    return factor * r / (1.0 + (factor - 1.0) * r)


def split_half_ceiling(responses_snr: torch.Tensor, rdm_method: str = "correlation",
                       method: str = "spearman", n_splits: int = 10,
                       seed: int = 0) -> tuple[float, float]:
    """Split-half reliability of the neural RDM over repetitions, Spearman-Brown corrected.

    Parameters
    ----------
    responses_snr : (s, n, r) float64 tensor with r >= 2 repetitions (crossnobis needs r >= 4).
    rdm_method, method : the neural RDM method and the comparison.
    n_splits : random half splits averaged (seeded with ``seed``).

    Returns
    -------
    (r_half, r_full) : mean split-half comparison, and its Spearman-Brown correction to r
        repetitions (the ceiling). NaN when the halves are too small.
    """
    if rdm_method not in RDM_METHODS:
        raise UnknownNameError("RDM method", str(rdm_method), RDM_METHODS)
    r = responses_snr.shape[2]
    min_half = 2 if rdm_method == "crossnobis" else 1
    if r // 2 < min_half:
        return float("nan"), float("nan")
    gen = torch.Generator().manual_seed(int(seed))
    vals = []
    for _ in range(int(n_splits)):
        perm = torch.randperm(r, generator=gen).to(responses_snr.device)
        halves = [responses_snr[:, :, perm[: r // 2]], responses_snr[:, :, perm[r // 2:]]]
        if rdm_method != "crossnobis":
            halves = [h.mean(dim=2) for h in halves]
        v1, v2 = (upper_tri(rdm_tensor(h, rdm_method))[None] for h in halves)
        vals.append(float(compare_vectors(v1, v2, method)[0, 0]))
    r_half = float(np.nanmean(vals))
    return r_half, spearman_brown(r_half, 2.0)

