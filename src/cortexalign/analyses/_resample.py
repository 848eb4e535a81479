"""Comparisons of many RDMs with many, on the full data or on stimulus resamples.

One engine for alignment patterns and benchmark discriminability: every RDM of one set against
every RDM of another, with any ``metrics.RDM_COMPARISONS`` measure; under resampling, each
resample is a set of pair weights ``c_i c_j`` over the original upper triangles (pairs of two
copies of one stimulus left out, ``stats.pair_weights``) and the comparison is the weighted one
of ``stats.BOOTSTRAP_COMPARISONS``. Every set is compared on the same resamples, so differences
between models are paired.
"""

from __future__ import annotations

import numpy as np
import torch

from cortexalign.metrics import compare_rdms
from cortexalign.stats import BOOTSTRAP_COMPARISONS, bootstrap_indices

__all__ = ["comparisons", "resampled_comparisons", "stimulus_resamples", "upper_kp"]


def upper_kp(rdms_kss: np.ndarray) -> torch.Tensor:
    """(k, s, s) RDMs -> (k, p) float64 upper triangles (row-major)."""
    rdms = np.asarray(rdms_kss, dtype=np.float64)
    iu = np.triu_indices(rdms.shape[-1], 1)
    return torch.as_tensor(rdms[:, iu[0], iu[1]])


def comparisons(a_kss: np.ndarray, b_jss: np.ndarray, compare: str) -> np.ndarray:
    """(k, j) comparisons of every RDM of ``a`` with every RDM of ``b`` (on the CPU)."""
    return compare_rdms(np.asarray(a_kss), np.asarray(b_jss), compare, device="cpu")


def stimulus_resamples(n_stimuli: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """(B, s) draw counts of each stimulus in ``n_bootstrap`` resamples (``stats`` seeding)."""
    idx = bootstrap_indices(n_stimuli, n_bootstrap, seed).numpy()
    counts = np.zeros((idx.shape[0], n_stimuli))
    np.add.at(counts, (np.arange(idx.shape[0])[:, None], idx), 1.0)
    return counts


def _weights(counts_bs: np.ndarray) -> torch.Tensor:
    iu = np.triu_indices(counts_bs.shape[1], 1)
    return torch.as_tensor(counts_bs[:, iu[0]] * counts_bs[:, iu[1]])


def _weighted_ranks(x_p: np.ndarray, w_bp: np.ndarray) -> np.ndarray:
    """(B, p) average ranks of ``x_p`` expanded by each row of multiplicities (ties averaged):
    an entry drawn w times occupies w consecutive ranks and gets their mean."""
    order = np.argsort(x_p, kind="stable")
    xs = x_p[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])  # tie groups in sorted order
    group = np.cumsum(np.r_[True, xs[1:] != xs[:-1]]) - 1
    sums = np.add.reduceat(w_bp[:, order], starts, axis=1)  # (B, g) weight of each tie group
    before = np.cumsum(sums, axis=1) - sums
    ranks = np.empty_like(w_bp)
    ranks[:, order] = (before + (sums + 1.0) / 2.0)[:, group]
    return ranks


def _standardised(x_bkp: np.ndarray, w_bp: np.ndarray, center: bool) -> np.ndarray:
    sw = w_bp.sum(axis=1)[:, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):  # no pairs drawn (a fold): NaN
        if center:
            x_bkp = x_bkp - (x_bkp * w_bp[:, None]).sum(axis=2, keepdims=True) / sw
        norm = np.sqrt((x_bkp * x_bkp * w_bp[:, None]).sum(axis=2, keepdims=True))
        return np.where(norm > 1e-12, x_bkp / norm, np.nan)


def _fast(a_kp: np.ndarray, b_jp: np.ndarray, compare: str, w_bp: np.ndarray) -> np.ndarray:
    """Pearson, cosine and Spearman of every pair under weights: each vector standardised once
    (Spearman: its weighted ranks), then one weighted product per resample."""
    if compare == "spearman":
        a = np.stack([_weighted_ranks(x, w_bp) for x in a_kp], axis=1)
        b = np.stack([_weighted_ranks(x, w_bp) for x in b_jp], axis=1)
    else:
        a = np.broadcast_to(a_kp, (w_bp.shape[0], *a_kp.shape))
        b = np.broadcast_to(b_jp, (w_bp.shape[0], *b_jp.shape))
    za = _standardised(a, w_bp, compare != "cosine")
    zb = _standardised(b, w_bp, compare != "cosine")
    return np.clip(np.einsum("bkp,bp,bjp->bkj", za, w_bp, zb, optimize=True), -1.0, 1.0)


_FAST = ("pearson", "cosine", "spearman")


def resampled_comparisons(a_kp: torch.Tensor, b_jp: torch.Tensor, compare: str,
                          counts_bs: np.ndarray, chunk: int = 64) -> np.ndarray:
    """(B, k, j) comparisons of the (k, p) and (j, p) upper triangles on each resample given by
    its (B, s) draw counts (a count may be 0: e.g. the stimuli outside a fold). Pearson, cosine
    and Spearman take a vectorised path; the others ``stats.BOOTSTRAP_COMPARISONS``."""
    fn = BOOTSTRAP_COMPARISONS[compare]
    out = np.empty((counts_bs.shape[0], a_kp.shape[0], b_jp.shape[0]))
    for start in range(0, counts_bs.shape[0], chunk):
        c = counts_bs[start:start + chunk]
        w_bp = _weights(c)
        if compare in _FAST:
            out[start:start + chunk] = _fast(a_kp.numpy(), b_jp.numpy(), compare, w_bp.numpy())
            continue
        c_t = torch.as_tensor(c)
        for k in range(a_kp.shape[0]):
            out[start:start + chunk, k] = fn(a_kp[k], b_jp, w_bp, c_t).cpu().numpy()
    return out
