"""Multiple-comparison corrections across a grid of tests (e.g. layer x area x Cre line).

Adjusted p-values keep the input's shape; NaN entries (tests not run) are left out of the family
and stay NaN. Benjamini & Hochberg (1995) controls the false discovery rate; Bonferroni the
family-wise error rate.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cortexalign.errors import InputError, UnknownNameError

__all__ = ["CORRECTIONS", "adjust_p_values", "reject", "benjamini_hochberg", "bonferroni"]


def benjamini_hochberg(p_m: np.ndarray) -> np.ndarray:
    """BH adjusted p-values: ``q_(i) = min_{j >= i} m p_(j) / j``, capped at 1."""
    m = len(p_m)
    order = np.argsort(p_m)
    scaled = p_m[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum.accumulate(scaled[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(q_sorted, 1.0)
    return q


def bonferroni(p_m: np.ndarray) -> np.ndarray:
    return np.minimum(p_m * len(p_m), 1.0)


CORRECTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "fdr_bh": benjamini_hochberg, "bonferroni": bonferroni}


def adjust_p_values(p_values, method: str = "fdr_bh") -> np.ndarray:
    """Adjusted p-values, same shape as ``p_values`` (any shape; NaN = not tested)."""
    if method not in CORRECTIONS:
        raise UnknownNameError("correction", method, CORRECTIONS)
    p = np.asarray(p_values, dtype=np.float64)
    ok = ~np.isnan(p)
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise InputError("p_values", "probabilities in [0, 1] (NaN for tests not run)",
                         f"values in [{p[ok].min():.3g}, {p[ok].max():.3g}]", "pass p-values")
    out = np.full(p.shape, np.nan)
    if ok.any():
        out[ok] = CORRECTIONS[method](p[ok])
    return out


def reject(p_values, alpha: float = 0.05, method: str = "fdr_bh") -> np.ndarray:
    """Boolean mask of the rejected nulls at level ``alpha`` after correction (NaN -> False)."""
    if not 0 < alpha < 1:
        raise InputError("alpha", "a level in (0, 1)", repr(alpha), "e.g. alpha=0.05")
    q = adjust_p_values(p_values, method)
    return np.where(np.isnan(q), False, q <= alpha)
