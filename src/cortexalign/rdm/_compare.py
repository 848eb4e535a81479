"""Comparison of RDMs: every model RDM against every target RDM in one call.

Each comparison is a plain function in ``RDM_COMPARISONS`` taking the upper triangles (row-major,
``np.triu_indices(s, 1)`` order) of m model RDMs and k target RDMs as float64 tensors and returning
the (m, k) matrix of similarities. Definitions follow rsatoolbox 0.3 (``rsatoolbox.rdm.compare``):
``spearman`` (Spearman's rho with average ranks for ties = 'spearman'), ``kendall_tau_a``
(Kendall's tau-a, recommended when models predict tied dissimilarities; Nili et al. 2014 = 'tau-a'),
``pearson`` (= 'corr'), ``cosine``, ``rho_a`` (Spearman's rho-a = 'rho-a'), and the whitened
``cosine_cov`` and ``corr_cov`` (= 'cosine_cov', 'corr_cov' with iid noise, ``sigma_k=None``).

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

from collections.abc import Callable

import numpy as np
import scipy.stats
import torch

from cortexalign.compute import numpy_kernel, sized_by, sort_work
from cortexalign.device import resolve_device
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.rdm._compute import upper_tri
from cortexalign.rdm._validate import as_tensor, check_varies

__all__ = ["RDM_COMPARISONS", "compare_rdms", "compare_vectors", "average_ranks",
           "weighted_ranks", "centred_weighted_ranks", "row_dots", "RANK_COMPARISONS", "rdm_vectors", "n_stimuli_of", "pair_row_sums", "whitened_gram",
           "whitened_norms", "resampled_cosine_cov", "compare_pearson", "compare_cosine",
           "compare_spearman", "compare_kendall_tau_a", "compare_rho_a", "compare_cosine_cov",
           "compare_corr_cov"]


def _sort_rows(x_bp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted rows and their order. Tie order is irrelevant (ties share their average rank), so
    on the CPU NumPy's introsort is used: about 2x faster than torch's sort on 3 M values."""
    if x_bp.device.type == "cpu" and not x_bp.requires_grad:
        order = np.argsort(x_bp.numpy(), axis=1)
        order_bp = torch.from_numpy(order)
        return torch.gather(x_bp, 1, order_bp), order_bp
    return torch.sort(x_bp, dim=1)


def average_ranks(x_bp: torch.Tensor) -> torch.Tensor:
    """(b, p) -> (b, p) ranks along the last dim, ties averaged (``scipy.stats.rankdata``)."""
    b, p = x_bp.shape
    sorted_bp, order_bp = _sort_rows(x_bp)
    new = torch.ones(b, p, dtype=torch.bool, device=x_bp.device)
    new[:, 1:] = sorted_bp[:, 1:] != sorted_bp[:, :-1]
    pos = torch.arange(1, p + 1, dtype=x_bp.dtype, device=x_bp.device)
    if bool(new.all()):  # no ties (continuous dissimilarities): the rank is the sorted position
        rank_sorted = pos.expand(b, p)
    else:
        gid = torch.cumsum(new.reshape(-1), 0) - 1  # every row starts a new group: ids are global
        n_groups = int(gid[-1]) + 1
        gsum = torch.zeros(n_groups, dtype=x_bp.dtype, device=x_bp.device).index_add_(
            0, gid, pos.repeat(b))
        count = torch.bincount(gid, minlength=n_groups).to(x_bp.dtype)
        rank_sorted = (gsum / count)[gid].view(b, p)
    return torch.empty((b, p), dtype=x_bp.dtype, device=x_bp.device).scatter_(1, order_bp,
                                                                              rank_sorted)


def centred_weighted_ranks(x_p: torch.Tensor, weights_bp: torch.Tensor,
                           cubes_b: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Average ranks of one vector under b sets of multiplicities, centred, and their spread.

    Element k counts ``w[b, k]`` times (a bootstrap draw): in the expanded vector of
    ``n_b = sum_k w[b, k]`` entries its copies, and those of equal values, form one tie group,
    whose average rank is the total weight of smaller values plus (group weight + 1) / 2, what
    ``scipy.stats.rankdata`` gives on that vector. The sort is shared by all rows, and the ranks
    are integers or halves, so they and their centring on the mean rank ``(n_b + 1) / 2`` are
    exact in float64.

    Parameters
    ----------
    x_p : (p,) values; weights_bp : (b, p) non-negative integer multiplicities (float64).
    cubes_b : ``(weights_bp ** 3).sum(1)`` when the caller holds it (the sum of squares below
        then costs nothing for a vector without ties).

    Returns
    -------
    ranks_bp : (b, p) ranks minus ``(n_b + 1) / 2``.
    sumsq_b : (b,) their weighted sum of squares over the expanded vector,
        ``(n^3 - n - sum_g (t_g^3 - t_g)) / 12`` with ``t_g`` the weight of each tie group: the
        textbook tie correction, exact integer arithmetic below ``n = 2e5``.
    """
    cpu = numpy_kernel(x_p, weights_bp)
    if cpu:  # NumPy's introsort is ~2x torch's sort, its column gather 1.5x index_select
        order = np.argsort(x_p.numpy())
        order_p, sorted_p = torch.from_numpy(order), torch.from_numpy(x_p.numpy()[order])
        w_bp = torch.from_numpy(np.take(weights_bp.numpy(), order, axis=1))
    else:
        sorted_p, order_p = torch.sort(x_p)
        w_bp = weights_bp.index_select(1, order_p)
    new = torch.ones_like(sorted_p, dtype=torch.bool)
    new[1:] = sorted_p[1:] != sorted_p[:-1]
    if bool(new.all()):  # no ties: every element is its own group
        cum_bp = torch.cumsum(w_bp, dim=1)
        n_b1 = cum_bp[:, -1:].clone()
        ties_b = (cubes_b if cubes_b is not None else (w_bp * w_bp * w_bp).sum(1)) - n_b1[:, 0]
        rank_bp = cum_bp.add_(w_bp, alpha=-0.5).sub_(0.5 * n_b1)
    else:
        gid_p = torch.cumsum(new, 0) - 1
        gsum_bg = torch.zeros(w_bp.shape[0], int(gid_p[-1]) + 1, dtype=w_bp.dtype,
                              device=w_bp.device).index_add_(1, gid_p, w_bp)
        cum_bg = torch.cumsum(gsum_bg, dim=1)
        n_b1 = cum_bg[:, -1:].clone()
        ties_b = (gsum_bg * gsum_bg * gsum_bg).sum(1) - n_b1[:, 0]
        rank_bp = cum_bg.add_(gsum_bg, alpha=-0.5).sub_(0.5 * n_b1).index_select(1, gid_p)
    n_b = n_b1[:, 0]
    sumsq_b = (n_b * n_b * n_b - n_b - ties_b) / 12.0
    if cpu:  # back to the input order: a gather by the inverse permutation (NumPy)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return torch.from_numpy(np.take(rank_bp.numpy(), inverse, axis=1)), sumsq_b
    return torch.empty_like(rank_bp).index_copy_(1, order_p, rank_bp), sumsq_b


def row_dots(a_bp: torch.Tensor, b_bp: torch.Tensor) -> torch.Tensor:
    """(b,) row-wise dot products ``(a * b).sum(1)`` without a (b, p) temporary (NumPy's einsum on
    the CPU: 3x torch's there), in ``a``'s dtype (``b`` may be narrower: it is widened as read)."""
    if numpy_kernel(a_bp, b_bp):
        return torch.from_numpy(np.einsum("bp,bp->b", a_bp.numpy(), b_bp.numpy(),
                                          dtype=a_bp.numpy().dtype))
    return torch.einsum("bp,bp->b", a_bp, b_bp.to(a_bp.dtype))


def weighted_ranks(x_p: torch.Tensor, weights_bp: torch.Tensor) -> torch.Tensor:
    """(b, p) average ranks of one vector under b sets of multiplicities (bootstrap weights),
    ties averaged over the expanded vector: ``centred_weighted_ranks`` plus the mean rank
    ``(n_b + 1) / 2``."""
    rank_bp, _ = centred_weighted_ranks(x_p, weights_bp)
    return rank_bp.add_((weights_bp.sum(1, keepdim=True) + 1.0) * 0.5)


def _unit(x_mp: torch.Tensor, center: bool) -> torch.Tensor:
    z = x_mp - x_mp.mean(dim=1, keepdim=True) if center else x_mp
    return z / torch.linalg.vector_norm(z, dim=1, keepdim=True)


def compare_pearson(a_mp: torch.Tensor, b_kp: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of dissimilarities."""
    return (_unit(a_mp, True) @ _unit(b_kp, True).T).clamp_(-1.0, 1.0)


def compare_cosine(a_mp: torch.Tensor, b_kp: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of dissimilarity vectors (no centring)."""
    return (_unit(a_mp, False) @ _unit(b_kp, False).T).clamp_(-1.0, 1.0)


def compare_spearman(a_mp: torch.Tensor, b_kp: torch.Tensor) -> torch.Tensor:
    """Spearman's rho: Pearson correlation of average ranks."""
    return compare_pearson(average_ranks(a_mp), average_ranks(b_kp))


def _tie_pairs(x_p: np.ndarray) -> int:
    _, counts = np.unique(x_p, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


def compare_kendall_tau_a(a_mp: torch.Tensor, b_kp: torch.Tensor) -> torch.Tensor:
    """Kendall's tau-a: (concordant - discordant) / (p (p - 1) / 2), ties counted as neither.

    The one comparison done pair by pair: scipy's O(p log p) merge sort gives tau-b, and
    ``C - D = tau_b * sqrt((P - T_a)(P - T_b))`` with ``P = p(p-1)/2`` and ``T`` the tied pairs.
    An O(p^2) torch version would not scale to thousands of stimuli (p grows as s^2).
    """
    a, b = a_mp.cpu().numpy(), b_kp.cpu().numpy()
    p = a.shape[1]
    total = p * (p - 1) / 2
    ties_a, ties_b = [_tie_pairs(v) for v in a], [_tie_pairs(v) for v in b]
    out = np.empty((a.shape[0], b.shape[0]))
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            tau_b = scipy.stats.kendalltau(a[i], b[j], variant="b").statistic
            out[i, j] = tau_b * np.sqrt((total - ties_a[i]) * (total - ties_b[j])) / total
    return torch.as_tensor(np.clip(out, -1.0, 1.0), device=a_mp.device)


def compare_rho_a(a_mp: torch.Tensor, b_kp: torch.Tensor) -> torch.Tensor:
    """Spearman's rho-a (Nili et al. 2014; rsatoolbox ``compare_rho_a``): the expected Spearman
    correlation when ties are broken at random, ``12 sum(ra_c rb_c) / (p^3 - p)`` with ``r_c`` the
    average ranks minus their mean ``(p + 1) / 2``.

    Without ties this is ``1 - 6 sum(d^2) / (p^3 - p)`` and equals ``spearman``. With ties it is
    *not* the textbook formula on average ranks, which exceeds it by ``(T_a + T_b) / (2 (p^3 - p))``
    (``T = sum(t^3 - t)`` over tie groups of size t): rsatoolbox's definition is used, so an RDM with
    ties compared with itself gives ``1 - T / (p^3 - p)`` < 1, which is the point of rho-a (a model
    predicting ties is not rewarded for them).
    """
    return _rho_a_of_ranks(average_ranks(a_mp), average_ranks(b_kp))


def _rho_a_of_ranks(ra_mp: torch.Tensor, rb_kp: torch.Tensor) -> torch.Tensor:
    p = ra_mp.shape[1]
    mid = (p + 1) / 2.0
    return ((ra_mp - mid) @ (rb_kp - mid).T).mul_(12.0 / (float(p) ** 3 - p)).clamp_(-1.0, 1.0)


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


RDM_COMPARISONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "spearman": compare_spearman,
    "kendall_tau_a": compare_kendall_tau_a,
    "pearson": compare_pearson,
    "cosine": compare_cosine,
    "rho_a": compare_rho_a,
    "cosine_cov": compare_cosine_cov,
    "corr_cov": compare_corr_cov,
}
"""Name -> ``fn(a_mp, b_kp) -> (m, k)`` on float64 upper-triangle vectors."""


RANK_COMPARISONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "spearman": compare_pearson,
    "rho_a": _rho_a_of_ranks,
}
"""The comparisons that are a function of the two vectors' ``average_ranks`` alone: name ->
``fn(ranks_mp, ranks_kp) -> (m, k)``, so a caller comparing one set many times ranks it once
(``RANK_COMPARISONS[m](average_ranks(a), average_ranks(b)) == RDM_COMPARISONS[m](a, b)``, bit for
bit)."""


def compare_vectors(a_mp: torch.Tensor, b_kp: torch.Tensor, method: str = "spearman") -> torch.Tensor:
    """Dispatch on ``RDM_COMPARISONS`` for already validated vectors (internal fast path)."""
    if method not in RDM_COMPARISONS:
        raise UnknownNameError("RDM comparison", str(method), RDM_COMPARISONS)
    return RDM_COMPARISONS[method](a_mp, b_kp)


def rdm_vectors(x, name: str, device: torch.device) -> torch.Tensor:
    """An RDM set (anything with an ``.rdms`` array, e.g. ``neural.RDMSet``), an (s, s) or an
    (r, s, s) array as (r, p) upper-triangle vectors, checked."""
    if hasattr(x, "rdms") and not isinstance(x, (np.ndarray, torch.Tensor)):
        x = x.rdms
    t = as_tensor(x, name, device, ndim=(2, 3))
    if t.ndim == 2:
        t = t[None]
    if t.shape[1] != t.shape[2] or t.shape[1] < 3:
        raise InputError(name, "square RDMs over at least 3 stimuli, shape (s, s) or (r, s, s)",
                         f"shape {tuple(t.shape)}", "pass RDMs, not features (see compute_rdm)")
    scale = float(t.abs().amax().clamp_min(1.0))
    # one subtraction and a max: allclose's isclose builds several full-size temporaries
    if float((t - t.transpose(1, 2)).abs_().amax()) > 1e-6 * scale:
        raise InputError(name, "symmetric RDMs", "an asymmetric matrix",
                         "symmetrise with (R + R.T) / 2 if it is a rounding issue")
    vec = upper_tri(t)
    check_varies(vec, name)
    return vec


@sized_by(lambda a, b, *_, **__: sort_work(a, b))
def compare_rdms(a, b, method: str = "spearman", device: str | torch.device | None = None,
                 return_tensor: bool = False) -> np.ndarray | torch.Tensor:
    """Similarity of every RDM in ``a`` with every RDM in ``b``.

    Parameters
    ----------
    a, b : ``RDMSet``, (s, s) or (r, s, s) arrays or torch tensors over the same s stimuli in the
        same order. Float64 tensors already on ``device`` (e.g. ``compute_rdm(...,
        return_tensor=True)``) are used as they are: no host round trip.
    method : a key of ``RDM_COMPARISONS`` (``spearman``, ``kendall_tau_a``, ``pearson``,
        ``cosine``, ``rho_a``, ``cosine_cov``, ``corr_cov``), computed on the upper triangles;
        the last two are the whitened comparisons of Diedrichsen et al. (2021) for iid noise,
        computed without the (p, p) covariance (module docstring).
    device : where to compute (``None``: the device of a tensor ``a``, else CUDA when available).
    return_tensor : return the (ra, rb) result as a float64 tensor on ``device``.

    Returns
    -------
    sim_ab : (ra, rb) float64 numpy array (a tensor with ``return_tensor``).
    """
    if method not in RDM_COMPARISONS:
        raise UnknownNameError("RDM comparison", str(method), RDM_COMPARISONS)
    dev = a.device if device is None and isinstance(a, torch.Tensor) else resolve_device(device)
    va, vb = rdm_vectors(a, "a", dev), rdm_vectors(b, "b", dev)
    if va.shape[1] != vb.shape[1]:
        sa, sb = (int(round((1 + np.sqrt(1 + 8 * v.shape[1])) / 2)) for v in (va, vb))
        raise InputError("b", f"RDMs over {sa} stimuli, like a", f"RDMs over {sb} stimuli",
                         "compare RDMs over the same stimuli (RDMSet.reorder aligns ids)")
    sim_ab = compare_vectors(va, vb, method)
    return sim_ab if return_tensor else sim_ab.cpu().numpy()
