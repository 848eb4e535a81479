"""Centered kernel alignment (Kornblith, Norouzi, Lee & Hinton 2019, ICML, "Similarity of neural
network representations revisited").

``CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` for Gram matrices K, L over the same s stimuli.

- ``linear``: biased HSIC ``tr(K H L H) / (s - 1)^2`` with linear kernels; computed in feature space
  (``||X^T Y||_F^2``) or from Gram matrices, whichever costs fewer flops.
- ``linear_debiased``: the unbiased HSIC estimator of Song, Smola, Gretton, Bedo & Borgwardt 2012
  (JMLR 13:1393), as used for "debiased CKA" by Nguyen, Raghu & Kornblith 2021 (ICLR); written in
  feature space so no s x s matrix is formed.
- ``rbf``: biased HSIC with Gaussian kernels ``exp(-d^2 / (2 sigma^2))`` where
  ``sigma = sigma_frac * sqrt(median(d^2))`` over all pairs (the diagonal included, as in the
  authors' reference code); ``sigma_frac`` defaults to 1.0 (the paper also reports 0.2-0.8).

Every function takes float64 (s, d) tensors and returns a 0-d tensor; ``cka`` validates.
``cka_from_grams`` computes the same three kinds from the linear Gram matrices ``X X^T`` and
``Y Y^T`` alone (``CKA_GRAM_KINDS``), sharing every formula with the feature-space functions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cortexalign.compute import gram_work, numpy_input, sized_by
from cortexalign.device import resolve_device
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics._cka_numpy import gram_is_cheaper, hsic_unbiased, numpy_cka
from cortexalign.rdm import as_array, as_tensor, check_features, check_n_stimuli, mm_nt

__all__ = ["CKA_KINDS", "CKA_GRAM_KINDS", "cka", "cka_tensor", "cka_from_grams"]


def _center(x_sd: torch.Tensor) -> torch.Tensor:
    return x_sd - x_sd.mean(dim=0, keepdim=True)


def _linear_dots(x_sd: torch.Tensor, y_sd: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """tr(KL), tr(KK), tr(LL) for centred linear kernels K = X X^T, L = Y Y^T."""
    s, dx, dy = x_sd.shape[0], x_sd.shape[1], y_sd.shape[1]
    if gram_is_cheaper(s, dx, dy):
        k, l_ = mm_nt(x_sd, x_sd), mm_nt(y_sd, y_sd)
        return (k * l_).sum(), (k * k).sum(), (l_ * l_).sum()
    xt, yt = x_sd.T, y_sd.T
    return (mm_nt(xt, yt) ** 2).sum(), (mm_nt(xt, xt) ** 2).sum(), (mm_nt(yt, yt) ** 2).sum()


def _biased_cka(kl: torch.Tensor, kk: torch.Tensor, ll: torch.Tensor) -> torch.Tensor:
    """CKA from tr(KL), tr(KK), tr(LL) of centred kernels (biased HSIC: the 1/(s-1)^2 cancels)."""
    return kl / torch.sqrt(kk * ll)


def cka_linear(x_sd: torch.Tensor, y_sd: torch.Tensor) -> torch.Tensor:
    """Linear CKA with the biased HSIC estimator."""
    xc, yc = _center(x_sd), _center(y_sd)
    return _biased_cka(*_linear_dots(xc, yc))


def _debiased_cka(kl: torch.Tensor, kk: torch.Tensor, ll: torch.Tensor, dk_s: torch.Tensor,
                  dl_s: torch.Tensor, s: int) -> torch.Tensor:
    """Debiased CKA from the traces and diagonals of *centred* linear Grams (NaN if a self-HSIC
    is <= 0)."""
    hxy, hxx, hyy = (hsic_unbiased(kl, dk_s, dl_s, s), hsic_unbiased(kk, dk_s, dk_s, s),
                     hsic_unbiased(ll, dl_s, dl_s, s))
    denom = hxx * hyy
    return hxy / torch.sqrt(denom) if bool(denom > 0) else torch.full_like(hxy, float("nan"))


def cka_linear_debiased(x_sd: torch.Tensor, y_sd: torch.Tensor) -> torch.Tensor:
    """Linear CKA with Song et al.'s unbiased HSIC (needs s >= 4; NaN if a self-HSIC is <= 0)."""
    xc, yc = _center(x_sd), _center(y_sd)
    dk, dl = (xc * xc).sum(dim=1), (yc * yc).sum(dim=1)
    return _debiased_cka(*_linear_dots(xc, yc), dk, dl, x_sd.shape[0])


def _median_by_sort(flat: torch.Tensor) -> torch.Tensor:
    n = flat.numel()
    sorted_ = torch.sort(flat).values
    return sorted_[n // 2] if n % 2 else 0.5 * (sorted_[n // 2 - 1] + sorted_[n // 2])


def _median(x: torch.Tensor) -> torch.Tensor:
    """numpy's median (mean of the two middle values for an even count).

    On the CPU through NumPy's introselect (4x faster than two torch ``kthvalue`` calls on 6.25 M
    values here); on a GPU by one radix sort: torch's CUDA ``kthvalue`` selects within one thread
    block per slice, 20x slower than a sort on large 1-d tensors (pytorch/pytorch#75599).
    """
    flat = x.reshape(-1)
    if flat.device.type == "cpu" and not flat.requires_grad:
        return torch.as_tensor(np.median(flat.numpy()), dtype=flat.dtype)
    return _median_by_sort(flat)


def _rbf_kernel(sq_s: torch.Tensor, dots_ss: torch.Tensor, sigma_frac: float) -> torch.Tensor:
    """Gaussian kernel from squared norms and dot products: ``d2_ij = sq_i + sq_j - 2 dot_ij``
    (clamped at 0, diagonal 0), bandwidth ``sigma_frac * sqrt(median d2)``."""
    d2 = (sq_s[:, None] + sq_s[None, :] - 2.0 * dots_ss).clamp_(min=0.0)
    d2.fill_diagonal_(0.0)
    return torch.exp(-d2 / (2.0 * sigma_frac**2 * _median(d2)))


def rbf_gram(x_sd: torch.Tensor, sigma_frac: float = 1.0) -> torch.Tensor:
    """(s, s) Gaussian kernel with bandwidth ``sigma_frac * sqrt(median squared distance)``."""
    return _rbf_kernel((x_sd * x_sd).sum(dim=1), mm_nt(x_sd, x_sd), sigma_frac)


def _center_gram(k_ss: torch.Tensor) -> torch.Tensor:
    return k_ss - k_ss.mean(dim=0, keepdim=True) - k_ss.mean(dim=1, keepdim=True) + k_ss.mean()


def _centred_traces(kc_ss: torch.Tensor, lc_ss: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (kc_ss * lc_ss).sum(), (kc_ss * kc_ss).sum(), (lc_ss * lc_ss).sum()


def cka_rbf(x_sd: torch.Tensor, y_sd: torch.Tensor, sigma_frac: float = 1.0) -> torch.Tensor:
    """RBF-kernel CKA with the biased HSIC estimator."""
    kc, lc = _center_gram(rbf_gram(x_sd, sigma_frac)), _center_gram(rbf_gram(y_sd, sigma_frac))
    return _biased_cka(*_centred_traces(kc, lc))


CKA_KINDS: dict[str, Callable[..., torch.Tensor]] = {
    "linear": cka_linear,
    "linear_debiased": cka_linear_debiased,
    "rbf": cka_rbf,
}
"""Name -> ``fn(x_sd, y_sd, **options) -> 0-d tensor`` on float64 tensors."""


def gram_cka_linear(k_ss: torch.Tensor, l_ss: torch.Tensor, sigma_frac: float = 1.0):
    """``cka_linear`` from linear Grams (``sigma_frac`` is unused: rbf only)."""
    return _biased_cka(*_centred_traces(_center_gram(k_ss), _center_gram(l_ss)))


def gram_cka_linear_debiased(k_ss: torch.Tensor, l_ss: torch.Tensor, sigma_frac: float = 1.0):
    """``cka_linear_debiased`` from linear Grams: ``diag(H K H)`` are the centred squared norms."""
    kc, lc = _center_gram(k_ss), _center_gram(l_ss)
    return _debiased_cka(*_centred_traces(kc, lc), torch.diagonal(kc), torch.diagonal(lc),
                         k_ss.shape[0])


def gram_cka_rbf(k_ss: torch.Tensor, l_ss: torch.Tensor, sigma_frac: float = 1.0):
    """``cka_rbf`` from linear Grams: squared distances ``K_ii + K_jj - 2 K_ij``."""
    kc = _center_gram(_rbf_kernel(torch.diagonal(k_ss), k_ss, sigma_frac))
    lc = _center_gram(_rbf_kernel(torch.diagonal(l_ss), l_ss, sigma_frac))
    return _biased_cka(*_centred_traces(kc, lc))


CKA_GRAM_KINDS: dict[str, Callable[..., torch.Tensor]] = {
    "linear": gram_cka_linear,
    "linear_debiased": gram_cka_linear_debiased,
    "rbf": gram_cka_rbf,
}
"""Name -> ``fn(k_ss, l_ss, sigma_frac) -> 0-d tensor`` from float64 linear Gram matrices; the
same estimators as ``CKA_KINDS`` (same keys)."""


def cka_from_grams(k_ss: torch.Tensor, l_ss: torch.Tensor, kind: str = "linear",
                   sigma_frac: float = 1.0) -> torch.Tensor:
    """CKA of ``kind`` from the linear Gram matrices of two representations (internal fast path).

    Parameters
    ----------
    k_ss, l_ss : (s, s) float64 ``K = X X^T``, ``L = Y Y^T``, validated by the caller. Features
        shifted by a constant row give the same CKA (the Grams are centred; rbf uses distances),
        so centred Grams (``streaming_gram``'s default, which avoids cancellation) and raw ones
        are both fine. A bootstrap resample is ``K[idx][:, idx]``.
    kind : a key of ``CKA_GRAM_KINDS``; sigma_frac : rbf bandwidth as in ``cka``.

    Returns
    -------
    0-d tensor, equal to ``cka_tensor(x, y, kind)`` up to rounding.
    """
    if kind not in CKA_GRAM_KINDS:
        raise UnknownNameError("CKA kind", str(kind), CKA_GRAM_KINDS)
    return CKA_GRAM_KINDS[kind](k_ss, l_ss, sigma_frac)


def cka_tensor(x_sd: torch.Tensor, y_sd: torch.Tensor, kind: str = "linear",
               **options) -> torch.Tensor:
    """Dispatch on ``CKA_KINDS`` for validated tensors (internal fast path)."""
    if kind not in CKA_KINDS:
        raise UnknownNameError("CKA kind", str(kind), CKA_KINDS)
    return CKA_KINDS[kind](x_sd, y_sd, **options)


@sized_by(lambda x_sd, y_sd, *_, **__: gram_work(x_sd) + gram_work(y_sd))
def cka(x_sd, y_sd, kind: str = "linear", device: str | torch.device | None = None,
        **options) -> float:
    """Centered kernel alignment between two representations of the same stimuli.

    Parameters
    ----------
    x_sd : (s, dx) features; y_sd : (s, dy) features or responses, rows in the same stimulus order.
    kind : a key of ``CKA_KINDS``: ``linear``, ``linear_debiased`` or ``rbf``.
    device : where to compute (``None``: CUDA when available).
    **options : ``sigma_frac``, for ``rbf`` the bandwidth as a fraction of the median pairwise distance.

    Returns
    -------
    float in [0, 1] for the biased kinds (debiased CKA can dip slightly below 0).
    """
    if kind not in CKA_KINDS:
        raise UnknownNameError("CKA kind", str(kind), CKA_KINDS)
    if kind != "rbf" and options:
        raise InputError("options", f"no extra options for CKA kind {kind!r}", f"{sorted(options)}",
                         "remove them (sigma_frac is for kind='rbf')")
    if "sigma_frac" in options and not float(options["sigma_frac"]) > 0:
        raise InputError("sigma_frac", "a positive fraction of the median distance",
                         repr(options["sigma_frac"]), "use e.g. 0.5 or 1.0")
    dev = resolve_device(device)
    need = 4 if kind == "linear_debiased" else 3
    if dev.type == "cpu" and numpy_input(x_sd) and numpy_input(y_sd):  # compute.numpy_kernel
        x, y = as_array(x_sd, "x_sd", ndim=(2,)), as_array(y_sd, "y_sd", ndim=(2,))
        check_n_stimuli(x.shape[0], y.shape[0], "x_sd")
        check_features(x, "x_sd", min_stimuli=need)
        check_features(y, "y_sd", min_stimuli=need)
        return numpy_cka(x, y, kind, **options)
    x, y = as_tensor(x_sd, "x_sd", dev, ndim=(2,)), as_tensor(y_sd, "y_sd", dev, ndim=(2,))
    check_n_stimuli(x.shape[0], y.shape[0], "x_sd")
    check_features(x, "x_sd", min_stimuli=need)
    check_features(y, "y_sd", min_stimuli=need)
    return float(cka_tensor(x, y, kind, **options))
