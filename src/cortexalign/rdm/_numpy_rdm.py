"""``compute_rdm`` on the CPU in NumPy, from input to output (``compute.numpy_kernel``).

At the sizes of most brain datasets (92-1,000 stimuli) an RDM is one Gram product and a few
passes over an (s, s) matrix; each torch operation's dispatch (5-10 us) and the conversions around
it then cost more than the arithmetic. Here the features are validated as a NumPy array
(``as_array``; finiteness from the row means or squared norms the RDM needs anyway), and the
Gram matrix ``Z Z^T`` is one BLAS ``syrk`` (NumPy's ``a @ a.T``), which computes one triangle and
mirrors it: exactly symmetric, and its diagonal gives the squared norms without another pass over
the features. Every other step is an exactly symmetric (s, s) operation (the outer product and
outer sum of a vector), so the RDM is exactly symmetric with a zero diagonal, as the blocked torch
path's; the two agree to rounding (tested to 1e-12).
"""

from __future__ import annotations

import numpy as np

from cortexalign.rdm._validate import check_finite, warn_constant

__all__ = ["NUMPY_RDM_METHODS", "RAW_GRAM_KEEP", "numpy_rdm"]

_ROWS = 512  # (s, s) work is done this many rows at a time: no second s x s buffer


def _gram(z_sd: np.ndarray) -> np.ndarray:
    """``z @ z.T``, exactly symmetric: for a C-contiguous ``z`` NumPy calls BLAS syrk for a
    product with its own transpose and mirrors the triangle (``test_numpy_paths`` holds it to
    that); any other layout is checked (one comparison pass) and mirrored if needed."""
    g = z_sd @ z_sd.T
    if z_sd.flags.c_contiguous:
        return g
    if not np.array_equal(g, g.T):  # pragma: no cover - a BLAS path without syrk
        upper = np.triu(g)
        g = upper + np.triu(upper, 1).T
    return g


#: A centred Gram matrix is derived from the raw one (one syrk, no centred copy of the features)
#: when its centred part keeps at least this fraction of the raw: per row here (|mean| under ~10
#: standard deviations), over the trace for CKA's kernels (``metrics._cka_numpy``). Rounding then
#: stays within ``eps / RAW_GRAM_KEEP`` of the centred values (~2e-14).
RAW_GRAM_KEEP = 1e-2


def _centred_gram(x_sd: np.ndarray, mean_s1: np.ndarray) -> np.ndarray:
    """``(x - m)(x - m)^T`` for row means ``m``: as ``x x^T - d m m^T`` (one syrk, no centred
    copy of the features, exactly symmetric) when that keeps the precision (``RAW_GRAM_KEEP``), else
    the syrk of explicitly centred rows (large offsets, constant rows)."""
    if x_sd.flags.c_contiguous:
        g_ss = x_sd @ x_sd.T  # syrk (see _gram)
        offset_ss = np.multiply.outer(mean_s1[:, 0], mean_s1[:, 0])
        offset_ss *= x_sd.shape[1]
        if (g_ss.diagonal() - offset_ss.diagonal() > RAW_GRAM_KEEP * g_ss.diagonal()).all():
            g_ss -= offset_ss
            return g_ss
    return _gram(x_sd - mean_s1)


def _unit_gram_rdm(x_sd: np.ndarray, center: bool, name: str) -> np.ndarray:
    """``1 - <z_i, z_j> / (|z_i| |z_j|)`` for rows ``z`` (centred when ``center``)."""
    mean_s1 = None
    if center:  # np.mean's arithmetic (sum, then divide) without its Python layer
        mean_s1 = x_sd.sum(axis=1, keepdims=True)
        mean_s1 /= x_sd.shape[1]
    g_ss = _centred_gram(x_sd, mean_s1) if center else _gram(x_sd)
    sq_s = g_ss.diagonal().copy()
    check_finite(mean_s1 if center else sq_s, x_sd, name)
    norm_s = np.sqrt(sq_s)
    raw_s = norm_s if not center else np.sqrt(sq_s + x_sd.shape[1] * mean_s1[:, 0] ** 2)
    zero = norm_s <= 1e-12 * np.maximum(raw_s, 1e-300)
    if zero.any():  # a constant (all-zero) row: uncorrelated with every other, dissimilarity 1
        warn_constant(zero, center, stacklevel=7)
        g_ss[zero] = 0.0
        g_ss[:, zero] = 0.0
        norm_s[zero] = 1.0
    for i in range(0, len(g_ss), _ROWS):
        block = g_ss[i:i + _ROWS]
        block /= np.multiply.outer(norm_s[i:i + _ROWS], norm_s)  # n_i n_j: exactly symmetric
        np.subtract(1.0, block, out=block)
    np.fill_diagonal(g_ss, 0.0)
    return g_ss


def _correlation(x_sd: np.ndarray, name: str) -> np.ndarray:
    return _unit_gram_rdm(x_sd, True, name)


def _cosine(x_sd: np.ndarray, name: str) -> np.ndarray:
    return _unit_gram_rdm(x_sd, False, name)


def _euclidean(x_sd: np.ndarray, name: str) -> np.ndarray:
    """``(|x_i|^2 + |x_j|^2 - 2 <x_i, x_j>) / d``, clamped at 0 (rsatoolbox's convention)."""
    g_ss = _gram(x_sd)
    sq_s = g_ss.diagonal().copy()
    check_finite(sq_s, x_sd, name)
    for i in range(0, len(g_ss), _ROWS):
        block = g_ss[i:i + _ROWS]
        block *= -2.0
        block += np.add.outer(sq_s[i:i + _ROWS], sq_s)  # sq_i + sq_j: exactly symmetric
        np.maximum(block, 0.0, out=block)
        block /= x_sd.shape[1]
    np.fill_diagonal(g_ss, 0.0)
    return g_ss


NUMPY_RDM_METHODS = {"correlation": _correlation, "cosine": _cosine, "euclidean": _euclidean}
"""The ``RDM_METHODS`` with a NumPy path: name -> ``fn(x_sd, name) -> (s, s)``."""


def numpy_rdm(x_sd: np.ndarray, method: str, name: str = "x_sd") -> np.ndarray:
    """The (s, s) RDM of validated float64 (s, d) features (NaN/Inf raise ``InputError``)."""
    return NUMPY_RDM_METHODS[method](x_sd, name)
