"""Whitened RDM comparisons (``cosine_cov``, ``corr_cov``) and their resampled form.

The whitened comparisons (Diedrichsen et al. 2021, Neurons, Behavior, Data analysis and Theory
5(3), "Comparing representational geometries using whitened unbiased-distance-matrix similarity")
weight the dissimilarity vectors by ``V^-1``, V (p x p) the covariance of distance estimates under
iid noise, ``V = (C C^T) o (C C^T)`` with C the (p, s) pair-contrast matrix. V is never formed: for
iid noise ``x^T V^-1 y`` is proportional to ``<H X H, H Y H>_F`` with X, Y the full (s, s) RDMs and
H the centring matrix (rsatoolbox's fast path, there written as a linear CKA of the
double-centred second-moment matrices; the equivalence with a dense V solve is tested), and
``tr(H X H Y) = <X, Y>_F - 2 r_x . r_y / s + (1^T X 1)(1^T Y 1) / s^2`` with r the row sums. So a
comparison costs one (m, p) x (p, k) product plus O(p) row sums per RDM, and needs no memory beyond
the vectors: there is no stimulus limit other than the vectors fitting on the device.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["n_stimuli_of", "pair_row_sums", "whitened_gram", "whitened_norms", "compare_cosine_cov",
           "compare_corr_cov", "resampled_cosine_cov"]


def n_stimuli_of(p: int) -> int:
    """The s of an upper triangle of length p = s (s - 1) / 2."""
    s = int(round((1 + np.sqrt(1 + 8 * p)) / 2))
    assert s * (s - 1) // 2 == p, f"{p} is not a triangle length"
    return s


def pair_row_sums(x_mp: torch.Tensor, counts_bs: torch.Tensor | None = None,
                  block: int = 2**20) -> torch.Tensor:
    """Row sums ``R_i = sum_j c_j X_ij`` of the full symmetric (s, s) RDMs (zero diagonal).

    Parameters
    ----------
    x_mp : (m, p) upper triangles, row-major.
    counts_bs : (b, s) stimulus multiplicities (bootstrap draws); ``None``: all ones.
    block : pairs handled at once (bounds the temporaries; no (s, s) matrix is built).

    Returns
    -------
    (m, s) row sums, or (b, m, s) with ``counts_bs``. O(b m p) time.
    """
    m, p = x_mp.shape
    s, dev = n_stimuli_of(p), x_mp.device
    out = torch.zeros((m, s) if counts_bs is None else (counts_bs.shape[0], m, s),
                      dtype=x_mp.dtype, device=dev)
    starts = np.concatenate([[0], np.cumsum(np.arange(s - 1, 0, -1))])  # first pair of each row
    r0 = 0
    while r0 < s - 1:  # blocks of whole rows: their pairs are contiguous in the vector
        r1 = min(s - 1, int(np.searchsorted(starts, starts[r0] + block, side="right")) - 1)
        r1 = max(r1, r0 + 1)
        lo, hi = int(starts[r0]), int(starts[r1])
        rows = torch.repeat_interleave(torch.arange(r0, r1, device=dev),
                                       torch.arange(s - 1 - r0, s - 1 - r1, -1, device=dev))
        first = torch.as_tensor(starts[r0:r1], device=dev).repeat_interleave(
            torch.arange(s - 1 - r0, s - 1 - r1, -1, device=dev))
        cols = torch.arange(lo, hi, device=dev) - first + rows + 1
        seg = x_mp[:, lo:hi]
        if counts_bs is None:
            out.index_add_(1, rows, seg).index_add_(1, cols, seg)
        else:
            c = counts_bs.to(x_mp.dtype)
            out.index_add_(2, rows, c[:, None, cols] * seg).index_add_(2, cols,
                                                                       c[:, None, rows] * seg)
        r0 = r1
    return out


def whitened_gram(a_mp: torch.Tensor, b_kp: torch.Tensor, ra_ms: torch.Tensor | None = None,
                  rb_ks: torch.Tensor | None = None) -> torch.Tensor:
    """(m, k) inner products ``a^T V^-1 b`` up to one positive factor (V: iid-noise covariance of
    the distances): ``a.b - r_a.r_b / s + (sum r_a)(sum r_b) / (2 s^2)`` = half of
    ``<H A H, H B H>_F``. O((m + k) p + m k p) time, O((m + k) s) extra memory. ``ra_ms``,
    ``rb_ks``: the ``pair_row_sums`` of ``a_mp``, ``b_kp`` when the caller holds them."""
    s = n_stimuli_of(a_mp.shape[1])
    ra = pair_row_sums(a_mp) if ra_ms is None else ra_ms
    rb = pair_row_sums(b_kp) if rb_ks is None else rb_ks
    return (a_mp @ b_kp.T - (ra @ rb.T) / s
            + ra.sum(1)[:, None] * rb.sum(1)[None, :] / (2.0 * s * s))


def whitened_norms(x_mp: torch.Tensor, r_ms: torch.Tensor | None = None) -> torch.Tensor:
    """(m,) ``sqrt(x^T V^-1 x)`` up to the factor of ``whitened_gram`` (``r_ms``: the
    ``pair_row_sums`` of ``x_mp`` when the caller holds them)."""
    s = n_stimuli_of(x_mp.shape[1])
    r = pair_row_sums(x_mp) if r_ms is None else r_ms
    sq = (x_mp * x_mp).sum(1) - (r * r).sum(1) / s + r.sum(1) ** 2 / (2.0 * s * s)
    return torch.sqrt(sq.clamp_min(0.0))


def compare_cosine_cov(a_mp: torch.Tensor, b_kp: torch.Tensor) -> torch.Tensor:
    """Whitened cosine (rsatoolbox ``compare_cosine_cov_weighted``, ``sigma_k=None``):
    ``a^T V^-1 b / sqrt(a^T V^-1 a  b^T V^-1 b)``. Invariant to scaling either RDM; not to adding
    a constant (a constant RDM is not orthogonal to the others under V^-1). See the module
    docstring for the V-free closed form and its cost."""
    ra_ms, rb_ks = pair_row_sums(a_mp), pair_row_sums(b_kp)  # once each, for all three terms
    return (whitened_gram(a_mp, b_kp, ra_ms, rb_ks) / whitened_norms(a_mp, ra_ms)[:, None]
            / whitened_norms(b_kp, rb_ks)[None, :]).clamp_(-1.0, 1.0)


def compare_corr_cov(a_mp: torch.Tensor, b_kp: torch.Tensor) -> torch.Tensor:
    """Whitened correlation (rsatoolbox ``compare_correlation_cov_weighted``, ``sigma_k=None``):
    ``cosine_cov`` of the mean-centred vectors. Invariant to scaling and to adding a constant."""
    return compare_cosine_cov(a_mp - a_mp.mean(dim=1, keepdim=True),
                              b_kp - b_kp.mean(dim=1, keepdim=True))


def _resampled_gamma(r_bms: torch.Tensor, counts_bs: torch.Tensor) -> torch.Tensor:
    """Row effects of the additive model fitted to a resampled RDM (see ``resampled_cosine_cov``):
    solves ``d_i g_i + c.g = R_i``, ``d_i = S - 2 c_i + 2``, by Sherman-Morrison in O(s); a
    sample with some ``d_i = 0`` (a stimulus drawn S/2 + 1 times) is solved densely."""
    c = counts_bs.to(r_bms.dtype)
    d = (c.sum(1, keepdim=True) - 2 * c + 2).masked_fill(c == 0, 1.0)
    singular = (d == 0).any(1)
    d = d.masked_fill(d == 0, 1.0)[:, None, :]
    cw = c[:, None, :]
    t = (cw * r_bms / d).sum(2, keepdim=True) / (1 + (cw / d).sum(2, keepdim=True))
    gamma = (r_bms - t) / d
    for b in torch.nonzero(singular).flatten().tolist():
        m_ss = torch.diag(counts_bs[b].to(r_bms.dtype).sum() - 2 * c[b] + 2).masked_fill(
            torch.diag(c[b] == 0), 1.0) + c[b][None, :]
        gamma[b] = torch.linalg.solve(m_ss, r_bms[b].T).T
    return gamma


def resampled_cosine_cov(x_p: torch.Tensor, y_kp: torch.Tensor, counts_bs: torch.Tensor,
                         center: bool = False, w_bp: torch.Tensor | None = None) -> torch.Tensor:
    """``cosine_cov`` (``corr_cov`` with ``center``) of stimulus-resampled RDMs, as rsatoolbox
    computes it on ``subsample_pattern`` RDMs, without building them.

    A bootstrap draw repeats stimuli; rsatoolbox sets the pairs of two copies of one stimulus to
    NaN and whitens by a least-squares fit of row effects ``X_uv ~ g_u + g_v`` to the full resampled
    matrix (diagonal included, NaN pairs left out) in place of double centring. With multiplicities
    c (S draws) the copies of a stimulus share their effect, pair (i, j) counts ``c_i c_j`` times
    and the fit reduces to ``(S - 2 c_i + 2) g_i + c.g = R_i``, ``R_i = sum_j c_j X_ij``; the
    whitened inner product is then ``sum_ij c_i c_j x_ij y_ij - sum_i c_i g_i(x) R_i(y)``.

    Parameters
    ----------
    x_p : (p,) model RDM vector; y_kp : (k, p) target vectors (upper triangles over s stimuli).
    counts_bs : (B, s) how often each stimulus was drawn in each of B resamples.
    center : subtract each resampled vector's mean first (``corr_cov``).
    w_bp : the (B, p) pair multiplicities ``c_i c_j`` (i < j) when the caller holds them (the
        bootstrap does); ``None``: computed from ``counts_bs``.

    Returns
    -------
    (B, k) similarities; NaN where a resample leaves a vector with zero whitened norm (below
    ``1e-10`` of its weighted sum of squares: what is left then is rounding, e.g. a ``corr_cov``
    sample of two distinct stimuli, whose centred vector is zero). O(B (k + 1) p) time.
    """
    c = counts_bs.to(x_p.dtype)
    s = c.shape[1]
    if w_bp is None:
        iu = torch.triu_indices(s, s, 1, device=x_p.device)
        w_bp = c[:, iu[0]] * c[:, iu[1]]
    r_x = pair_row_sums(x_p[None], c)  # (B, 1, s)
    r_y = pair_row_sums(y_kp, c)  # (B, k, s)
    wx, wy = w_bp @ x_p, w_bp @ y_kp.T  # (B,), (B, k)
    xx, yy, xy = w_bp @ (x_p * x_p), w_bp @ (y_kp * y_kp).T, (w_bp * x_p) @ y_kp.T
    xx0, yy0 = xx.clone(), yy.clone()  # scales for the zero-norm test below
    if center:  # moments of x - mean_x, y - mean_y; row sums lose mean * (S - c_i)
        sw = w_bp.sum(1)
        mx, my = wx / sw, wy / sw[:, None]
        xx, yy, xy = xx - mx * wx, yy - my * wy, xy - mx[:, None] * wy
        other = c.sum(1, keepdim=True) - c  # (B, s)
        r_x = r_x - mx[:, None, None] * other[:, None]
        r_y = r_y - my[:, :, None] * other[:, None]
    g_x, g_y = _resampled_gamma(r_x, c), _resampled_gamma(r_y, c)
    xy = xy - (c[:, None] * g_x * r_y).sum(2)
    xx = xx - (c * g_x[:, 0] * r_x[:, 0]).sum(1)
    yy = yy - (c[:, None] * g_y * r_y).sum(2)
    nan = torch.tensor(float("nan"), dtype=xx.dtype, device=xx.device)
    xx = torch.where(xx > 1e-10 * xx0, xx, nan)  # else rounding: NaN, not a +-1 after clamp
    yy = torch.where(yy > 1e-10 * yy0, yy, nan)
    return (xy / torch.sqrt(xx[:, None] * yy)).clamp_(-1.0, 1.0)
