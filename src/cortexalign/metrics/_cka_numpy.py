"""``CKA_KINDS`` on the CPU in NumPy, for ``cka`` and the CKA metrics (``compute.numpy_kernel``).

The same estimators as ``_cka`` (Kornblith et al. 2019; Song et al. 2012 for the unbiased HSIC),
sharing the formulas that are plain arithmetic (``gram_is_cheaper``, ``hsic_unbiased``), for the
sizes of most brain datasets, where a CKA is two Gram products and a few passes
over (s, s) matrices and torch's per-operation dispatch would cost more than the arithmetic:

- each Gram matrix is one BLAS ``syrk`` (``a @ a.T``), whose diagonal gives the squared norms;
- traces of products are BLAS dots of the flattened matrices (``vdot``), with no (s, s)
  temporary;
- finiteness is read off the column means (linear kinds) or the squared norms (rbf) the
  estimator computes anyway (``rdm.check_finite``): no extra pass over the features.

Equal to the torch functions up to summation order (tested to 1e-12).
"""

from __future__ import annotations

import numpy as np

from cortexalign.rdm import RAW_GRAM_KEEP, check_finite

__all__ = ["NUMPY_CKA_KINDS", "numpy_cka", "gram_is_cheaper", "hsic_unbiased"]


def gram_is_cheaper(s: int, dx: int, dy: int) -> bool:
    """Whether the s x s Gram matrices cost fewer flops than the d x d feature products."""
    return s * s * (dx + dy + 3) < s * (dx * dy + dx * dx + dy * dy)


def hsic_unbiased(tr_kl, dk_s, dl_s, s: int):
    """Song et al. 2012, eq. 5, for Gram matrices of *centred* features (so ``K 1 = 0``):
    with ``K~ = K - diag(K)``, ``1^T K~ 1 = -tr K`` and ``K~ 1 = -diag K``. Plain arithmetic on
    0-d and (s,) tensors or arrays (the torch and NumPy paths share it)."""
    term1 = tr_kl - dk_s @ dl_s  # tr(K~ L~)
    term2 = dk_s.sum() * dl_s.sum() / ((s - 1) * (s - 2))
    term3 = 2.0 / (s - 2) * (dk_s @ dl_s)
    return (term1 + term2 - term3) / (s * (s - 3))


def _centred(x_sd: np.ndarray, name: str) -> np.ndarray:
    mean_d = x_sd.mean(axis=0)
    check_finite(mean_d, x_sd, name)
    return x_sd - mean_d


def _centred_kernel(x_sd: np.ndarray, name: str) -> np.ndarray:
    """``H X X^T H`` (H the centring matrix): double-centred from one syrk of the raw features
    when the features are wider than twice the stimuli (three passes over (s, s) cost less than
    a centred copy of (s, d)) and the offset keeps the precision (``rdm.RAW_GRAM_KEEP``), else the syrk of
    the centred features."""
    s, d = x_sd.shape
    if x_sd.flags.c_contiguous and d >= 2 * s:
        k = x_sd @ x_sd.T
        r = k.sum(axis=1)
        check_finite(r, x_sd, name)  # a NaN or Inf in a row reaches its kernel row's sum
        r /= s
        grand = r.mean()
        if np.trace(k) - s * grand > RAW_GRAM_KEEP * np.trace(k):  # tr(HKH) = tr K - 1^T K 1 / s
            k -= r[:, None]
            k -= r[None, :]
            k += grand
            return k
    xc = _centred(x_sd, name)
    return xc @ xc.T


def _linear_terms(x_sd: np.ndarray, y_sd: np.ndarray, names, diagonals: bool):
    """tr(KL), tr(KK), tr(LL) of the centred linear kernels, in feature or stimulus space
    (whichever costs fewer flops, as ``_cka._linear_dots``), and their diagonals when asked."""
    s, dx, dy = x_sd.shape[0], x_sd.shape[1], y_sd.shape[1]
    if gram_is_cheaper(s, dx, dy):
        k, l_ = _centred_kernel(x_sd, names[0]), _centred_kernel(y_sd, names[1])
        diag = (k.diagonal().copy(), l_.diagonal().copy()) if diagonals else None
        return np.vdot(k, l_), np.vdot(k, k), np.vdot(l_, l_), diag
    xc, yc = _centred(x_sd, names[0]), _centred(y_sd, names[1])
    xy, xx, yy = xc.T @ yc, xc.T @ xc, yc.T @ yc
    diag = (np.einsum("ij,ij->i", xc, xc), np.einsum("ij,ij->i", yc, yc)) if diagonals else None
    return np.vdot(xy, xy), np.vdot(xx, xx), np.vdot(yy, yy), diag


def _linear(x_sd, y_sd, names) -> float:
    kl, kk, ll, _ = _linear_terms(x_sd, y_sd, names, False)
    return float(kl / np.sqrt(kk * ll))


def _linear_debiased(x_sd, y_sd, names) -> float:
    s = x_sd.shape[0]
    kl, kk, ll, (dk, dl) = _linear_terms(x_sd, y_sd, names, True)
    hxy, hxx, hyy = (hsic_unbiased(kl, dk, dl, s), hsic_unbiased(kk, dk, dk, s),
                     hsic_unbiased(ll, dl, dl, s))
    denom = hxx * hyy
    return float(hxy / np.sqrt(denom)) if denom > 0 else float("nan")


def _centred_rbf(x_sd: np.ndarray, sigma_frac: float, name: str) -> np.ndarray:
    """The centred Gaussian kernel of ``_cka.rbf_gram``: ``d2 = |x_i|^2 + |x_j|^2 - 2 x_i.x_j``
    clamped at 0 with a zero diagonal, bandwidth ``sigma_frac * sqrt(median d2)``."""
    g = x_sd @ x_sd.T
    sq = g.diagonal().copy()
    check_finite(sq, x_sd, name)
    g *= -2.0
    g += np.add.outer(sq, sq)
    np.maximum(g, 0.0, out=g)
    np.fill_diagonal(g, 0.0)
    g *= -1.0 / (2.0 * sigma_frac**2 * np.median(g))
    np.exp(g, out=g)
    g -= g.mean(axis=0, keepdims=True)
    g -= g.mean(axis=1, keepdims=True)  # K - col means - row means + grand mean
    return g


def _rbf(x_sd, y_sd, names, sigma_frac: float = 1.0) -> float:
    kc, lc = _centred_rbf(x_sd, sigma_frac, names[0]), _centred_rbf(y_sd, sigma_frac, names[1])
    return float(np.vdot(kc, lc) / np.sqrt(np.vdot(kc, kc) * np.vdot(lc, lc)))


NUMPY_CKA_KINDS = {"linear": _linear, "linear_debiased": _linear_debiased, "rbf": _rbf}
"""``CKA_KINDS`` in NumPy: name -> ``fn(x_sd, y_sd, names, **options) -> float``."""


def numpy_cka(x_sd: np.ndarray, y_sd: np.ndarray, kind: str, names=("x_sd", "y_sd"),
              **options) -> float:
    """CKA of ``kind`` between validated float64 (s, dx) and (s, dy) arrays; ``names`` are the
    parameters a NaN/Inf error names."""
    return NUMPY_CKA_KINDS[kind](x_sd, y_sd, names, **options)
