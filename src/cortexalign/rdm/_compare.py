"""Comparison of RDMs: every model RDM against every target RDM in one call.

Each comparison is a plain function in ``RDM_COMPARISONS`` taking the upper triangles (row-major,
``np.triu_indices(s, 1)`` order) of m model RDMs and k target RDMs as float64 tensors and returning
the (m, k) matrix of similarities. Definitions follow rsatoolbox 0.3 (``rsatoolbox.rdm.compare``):
``spearman`` (Spearman's rho with average ranks for ties = 'spearman'), ``kendall_tau_a``
(Kendall's tau-a, recommended when models predict tied dissimilarities; Nili et al. 2014 = 'tau-a'),
``pearson`` (= 'corr'), ``cosine``, ``rho_a`` (Spearman's rho-a = 'rho-a'), and the whitened
``cosine_cov`` and ``corr_cov`` (= 'cosine_cov', 'corr_cov' with iid noise, ``sigma_k=None``).

The whitened comparisons and their resampled form live in ``_whitened`` (their derivation is
there), the ranks in ``_ranks``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.stats
import torch

from cortexalign.compute import sized_by, sort_work
from cortexalign.device import resolve_device
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.rdm._compute import upper_tri
from cortexalign.rdm._ranks import average_ranks
from cortexalign.rdm._validate import as_tensor, check_varies
from cortexalign.rdm._whitened import compare_corr_cov, compare_cosine_cov

__all__ = ["RDM_COMPARISONS", "RANK_COMPARISONS", "compare_rdms", "compare_vectors", "rdm_vectors",
           "compare_pearson", "compare_cosine", "compare_spearman", "compare_kendall_tau_a",
           "compare_rho_a"]


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
        computed without the (p, p) covariance (``rdm._whitened``).
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
