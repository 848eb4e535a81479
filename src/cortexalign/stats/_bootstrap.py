"""Bootstrap over stimuli: resample stimuli with replacement, recompute, take percentiles.

For RDM comparisons the resampled RDM has a row and column per drawn stimulus; entries between two
draws of the *same* stimulus are trivially zero and are dropped, as rsatoolbox's
``bootstrap_sample_pattern`` / ``subsample_pattern`` do (Schuett et al. 2023, eLife 12:e82566).
Every other pair (i, j) of distinct stimuli then appears ``c_i c_j`` times, where ``c`` counts how
often each stimulus was drawn. So the resampled comparison is a *weighted* comparison of the
original upper triangles with weights ``c_i c_j``: no resampled matrix is built, and a whole batch
of bootstrap samples is a few matmuls (Pearson, cosine) or one weighted ranking (Spearman, ties
averaged over the expanded vector exactly; rho-a from the same ranks). Kendall's tau-a expands each
sample explicitly. The whitened ``cosine_cov`` / ``corr_cov`` need the draw counts themselves
(``rdm.resampled_cosine_cov``: rsatoolbox's NaN-aware whitening of the resampled RDM,
solved in O(s) per sample), so every entry is called with the counts as well as the pair weights.

Indices come from a seeded CPU ``torch.Generator``, so a seed gives the same samples on any device.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.rdm import (
    centred_weighted_ranks,
    compare_kendall_tau_a,
    resampled_cosine_cov,
    row_dots,
)
from cortexalign.stats._budget import check_resamples
from cortexalign.stats._memo import DrawKey, pair_weights_for, target_ranks

__all__ = ["bootstrap_indices", "pair_weights", "percentile_interval", "bootstrap_rdm_comparison",
           "bootstrap_statistic", "BOOTSTRAP_COMPARISONS"]


def bootstrap_indices(n: int, n_bootstrap: int, seed: int = 0,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """(n_bootstrap, n) stimulus indices drawn with replacement, reproducible for a seed."""
    if int(n_bootstrap) < 1:
        raise InputError("n_bootstrap", "a positive number of bootstrap samples",
                         repr(n_bootstrap), "use e.g. n_bootstrap=1000 (0 switches bootstrap off)")
    check_resamples(n_bootstrap, n, parameter="n_bootstrap")  # before the (B, n) allocation
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randint(0, n, (int(n_bootstrap), n), generator=gen).to(device)


def stimulus_counts(idx_bs: torch.Tensor, s: int) -> torch.Tensor:
    """(B, s) resampled indices -> (B, s) float64 count ``c_i`` of draws of each stimulus."""
    counts = torch.zeros(idx_bs.shape[0], s, dtype=torch.float64, device=idx_bs.device)
    return counts.scatter_add_(1, idx_bs, torch.ones_like(idx_bs, dtype=torch.float64))


def pair_weights(idx_bs: torch.Tensor, s: int) -> torch.Tensor:
    """(B, s) resampled indices -> (B, s(s-1)/2) multiplicities ``c_i c_j`` of each pair i < j."""
    return _pair_weights_of(stimulus_counts(idx_bs, s))


def _pair_weights_of(counts_bs: torch.Tensor) -> torch.Tensor:
    """(B, s) draw counts -> (B, s(s-1)/2) pair multiplicities ``c_i c_j``, i < j."""
    s = counts_bs.shape[1]
    iu = torch.triu_indices(s, s, 1, device=counts_bs.device)
    return counts_bs[:, iu[0]] * counts_bs[:, iu[1]]


def check_ci_level(level) -> None:
    """A confidence level must be a number in (0, 1): ``InputError`` (parameter ``ci_level``)."""
    try:
        ok = 0.0 < float(level) < 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError("ci_level", "a coverage level in (0, 1)", repr(level), "use e.g. 0.95")


def percentile_interval(samples_b, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap samples (NaN samples ignored)."""
    check_ci_level(level)
    x = np.asarray(samples_b.cpu() if isinstance(samples_b, torch.Tensor) else samples_b, float)
    if not np.isfinite(x).any():
        return float("nan"), float("nan")
    a = (1.0 - float(level)) / 2.0
    lo, hi = np.nanquantile(x, [a, 1.0 - a])
    return float(lo), float(hi)


def _moments(x_p: torch.Tensor, y_kp: torch.Tensor, w_bp: torch.Tensor, center: bool) -> torch.Tensor:
    sw = w_bp.sum(dim=1, keepdim=True)
    sx, sxx = w_bp @ x_p, w_bp @ (x_p * x_p)
    sy, syy, sxy = w_bp @ y_kp.T, w_bp @ (y_kp * y_kp).T, w_bp @ (x_p * y_kp).T
    if center:
        sxx0, syy0 = sxx, syy
        sxy = sxy - sx[:, None] * sy / sw
        sxx = sxx - sx * sx / sw[:, 0]
        syy = syy - sy * sy / sw
        # a sample whose drawn pairs all have one value (two distinct stimuli drawn) has zero
        # variance: what is left is rounding, NaN rather than a +-1 after clamping
        nan = torch.tensor(float("nan"), dtype=sxx.dtype, device=sxx.device)
        sxx = torch.where(sxx > 1e-10 * sxx0, sxx, nan)
        syy = torch.where(syy > 1e-10 * syy0, syy, nan)
    return (sxy / torch.sqrt(sxx[:, None] * syy)).clamp_(-1.0, 1.0)


def _boot_pearson(x_p, y_kp, w_bp, counts_bs=None):
    # centring by the unweighted means first changes nothing but avoids cancellation
    return _moments(x_p - x_p.mean(), y_kp - y_kp.mean(dim=1, keepdim=True), w_bp, center=True)


def _boot_cosine(x_p, y_kp, w_bp, counts_bs=None):
    return _moments(x_p, y_kp, w_bp, center=False)


def _ranked_products(x_p, y_kp, w_bp, memo: DrawKey | None = None,
                     cubes_b: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted products of centred weighted ranks: ``sum w rx ry`` (b, k), ``sum w rx^2`` (b,),
    ``sum w ry^2`` (b, k). The model's ranks are weighted once; each target costs one ranking
    (kept between calls under the draws ``memo``: ``_memo``) and one row-wise dot
    (the sums of squares come from the tie groups: ``centred_weighted_ranks``)."""
    if cubes_b is None:
        cubes_b = (w_bp * w_bp * w_bp).sum(1)
    rx_bp, ssx_b = centred_weighted_ranks(x_p, w_bp, cubes_b)
    wrx_bp = rx_bp.mul_(w_bp)
    sxy_bk = torch.empty(w_bp.shape[0], y_kp.shape[0], dtype=w_bp.dtype, device=w_bp.device)
    ssy_bk = torch.empty_like(sxy_bk)
    for j, y_p in enumerate(y_kp):
        ry_bp, ssy_bk[:, j] = target_ranks(
            y_p, memo, lambda y_p=y_p: centred_weighted_ranks(y_p, w_bp, cubes_b))
        sxy_bk[:, j] = row_dots(wrx_bp, ry_bp)
    return sxy_bk, ssx_b, ssy_bk


def _boot_spearman(x_p, y_kp, w_bp, counts_bs=None, memo=None, cubes_b=None):
    # Pearson of the weighted ranks; a constant resample (ssx or ssy exactly 0) gives 0/0 = NaN
    sxy_bk, ssx_b, ssy_bk = _ranked_products(x_p, y_kp, w_bp, memo, cubes_b)
    return (sxy_bk / torch.sqrt(ssx_b[:, None] * ssy_bk)).clamp_(-1.0, 1.0)


def _boot_kendall(x_p, y_kp, w_bp, counts_bs=None):
    out = torch.empty(w_bp.shape[0], y_kp.shape[0], dtype=torch.float64)
    for i, w in enumerate(w_bp.long()):
        keep = w > 0
        xs = torch.repeat_interleave(x_p[keep], w[keep])
        ys = torch.repeat_interleave(y_kp[:, keep], w[keep], dim=1)
        out[i] = compare_kendall_tau_a(xs[None], ys)[0].cpu()
    return out.to(w_bp.device)


def _boot_rho_a(x_p, y_kp, w_bp, counts_bs=None, memo=None, cubes_b=None):
    # rho-a of the expanded vector of n = sum(w) entries: 12 sum(w rx ry) / (n^3 - n)
    sxy_bk, _, _ = _ranked_products(x_p, y_kp, w_bp, memo, cubes_b)
    n_b1 = w_bp.sum(dim=1, keepdim=True)
    return (sxy_bk * (12.0 / (n_b1**3 - n_b1))).clamp_(-1.0, 1.0)


def _boot_cosine_cov(x_p, y_kp, w_bp, counts_bs):
    return resampled_cosine_cov(x_p, y_kp, counts_bs, center=False, w_bp=w_bp)


def _boot_corr_cov(x_p, y_kp, w_bp, counts_bs):
    return resampled_cosine_cov(x_p, y_kp, counts_bs, center=True, w_bp=w_bp)


BOOTSTRAP_COMPARISONS: dict[str, Callable[..., torch.Tensor]] = {
    "spearman": _boot_spearman,
    "kendall_tau_a": _boot_kendall,
    "pearson": _boot_pearson,
    "cosine": _boot_cosine,
    "rho_a": _boot_rho_a,
    "cosine_cov": _boot_cosine_cov,
    "corr_cov": _boot_corr_cov,
}
"""Comparison name -> ``fn(x_p, y_kp, w_bp, counts_bs) -> (B, k)``: the comparison of the
resampled vectors, given the (B, p) pair weights and the (B, s) draw counts."""

#: The comparisons that rank the target vectors under each draw: ``bootstrap_rdm_comparison``
#: keeps those ranks between calls (``_memo``).
_RANKED = ("spearman", "rho_a")


def bootstrap_rdm_comparison(model_p: torch.Tensor, targets_kp: torch.Tensor,
                             method: str = "spearman", n_bootstrap: int = 1000, seed: int = 0,
                             max_elements: int = 2**23) -> torch.Tensor:
    """Bootstrap distribution of the comparison of one model RDM with k target RDMs.

    Parameters
    ----------
    model_p : (p,) upper triangle of the model RDM, p = s (s - 1) / 2, float64.
    targets_kp : (k, p) upper triangles of the target RDMs, same stimuli and order.
    method : a key of ``BOOTSTRAP_COMPARISONS`` (same names as ``RDM_COMPARISONS``).
    n_bootstrap, seed : number of stimulus resamples and the seed of their draw.
    max_elements : bootstrap samples are processed in chunks of about this many pair weights.

    Returns
    -------
    samples_bk : (n_bootstrap, k) tensor; NaN where a resample left a constant vector.
    """
    if method not in BOOTSTRAP_COMPARISONS:
        raise UnknownNameError("RDM comparison", str(method), BOOTSTRAP_COMPARISONS)
    p = model_p.shape[0]
    s = int(round((1 + np.sqrt(1 + 8 * p)) / 2))
    assert s * (s - 1) // 2 == p and targets_kp.shape[1] == p, (p, tuple(targets_kp.shape))
    idx = bootstrap_indices(s, n_bootstrap, seed, model_p.device)
    fn = BOOTSTRAP_COMPARISONS[method]
    chunk = max(1, int(max_elements) // max(p, 1))
    parts = []
    for i in range(0, idx.shape[0], chunk):
        rows = idx[i:i + chunk]
        key = (s, int(n_bootstrap), int(seed), i, i + rows.shape[0])

        def make(rows=rows):
            counts_bs = stimulus_counts(rows, s)  # once: the pair weights come from it
            return _pair_weights_of(counts_bs), counts_bs

        w_bp, counts_bs, cubes_b = pair_weights_for(key, model_p.device, make)
        if method in _RANKED:
            parts.append(fn(model_p, targets_kp, w_bp, counts_bs, memo=key, cubes_b=cubes_b))
        else:
            parts.append(fn(model_p, targets_kp, w_bp, counts_bs))
    return torch.cat(parts, dim=0)


def bootstrap_statistic(stat: Callable[[torch.Tensor], float], n: int, n_bootstrap: int = 1000,
                        seed: int = 0, device: torch.device | str = "cpu") -> np.ndarray:
    """``stat(idx_s)`` for each of ``n_bootstrap`` resamples of ``n`` stimuli (for statistics
    without a weighted closed form). Returns an (n_bootstrap,) float array.

    A statistic of *pairs* of stimuli must not pair two copies of one stimulus: they match
    perfectly and bias the samples upward. RDM comparisons use ``pair_weights``, CKA
    ``metrics._cka_boot.resampled_cka``."""
    idx = bootstrap_indices(n, n_bootstrap, seed, device)
    return np.asarray([stat(i) for i in idx], dtype=float)
