"""Differentiable ranks: the soft rank of Blondel, Teboul, Berthet & Djolonga (2020, ICML, "Fast
differentiable sorting and ranking"), with quadratic regularisation.

``soft_rank(x, strength)`` is the Euclidean projection of ``x / strength`` onto the permutahedron
of ``(1, 2, ..., p)`` (the convex hull of its permutations). With ``w = (p, p - 1, ..., 1)`` and
``sigma`` the permutation sorting ``x`` in decreasing order (Blondel et al., Prop. 3)::

    P(z) = z - v(z_sigma - w)_{sigma^-1},   v(y) = argmin_{v_1 >= ... >= v_p} ||v - y||^2

where ``v`` is a decreasing isotonic regression, solved exactly by pool-adjacent-violators (PAV) in
O(p). PAV decides the blocks of pooled positions (piecewise constant in ``x``); the values are block
means computed with torch operations, so autograd gives the exact Jacobian (block averaging)
wherever the blocks do not change, which is almost everywhere.

``strength`` (the temperature epsilon) is in the units of ``x``. When every gap between
neighbouring sorted values exceeds ``strength``, nothing is pooled and the soft rank *is* the hard
rank (1 for the smallest, p for the largest; ties share their average rank, as
``scipy.stats.rankdata``); as ``strength`` grows the ranks shrink towards their mean
``(p + 1) / 2``. The sum of the soft ranks is always ``p (p + 1) / 2``.
"""

from __future__ import annotations

import numpy as np
import torch

from cortexalign.errors import InputError

__all__ = ["soft_rank", "isotonic_decreasing_blocks"]


def isotonic_decreasing_blocks(y_p: np.ndarray) -> np.ndarray:
    """Block ids (0, 1, ...) of the decreasing isotonic regression of ``y_p`` by PAV.

    The fit is the mean of ``y`` over each block; consecutive blocks have strictly decreasing
    means. O(p) amortised: each position is merged at most once.
    """
    y = np.asarray(y_p, dtype=np.float64)
    sums: list[float] = []
    counts: list[int] = []
    for value in y:
        s, c = float(value), 1
        # a violation: the previous block's mean is not above the new one's -> pool them
        while sums and sums[-1] * c <= s * counts[-1]:
            s += sums.pop()
            c += counts.pop()
        sums.append(s)
        counts.append(c)
    return np.repeat(np.arange(len(counts)), counts)


def _segment_mean(y_p: torch.Tensor, ids_p: torch.Tensor, n: int) -> torch.Tensor:
    sums = torch.zeros(n, dtype=y_p.dtype, device=y_p.device).index_add(0, ids_p, y_p)
    counts = torch.bincount(ids_p, minlength=n).to(y_p.dtype)
    return (sums / counts)[ids_p]


def soft_rank(x_bp: torch.Tensor, strength: float) -> torch.Tensor:
    """Soft ranks of each row (Blondel et al. 2020, quadratic regularisation).

    Parameters
    ----------
    x_bp : (b, p) or (p,) floating tensor; gradients flow through it.
    strength : the regularisation strength epsilon > 0, in the units of ``x``; the hard rank
        is reached once every gap between sorted neighbours exceeds it.

    Returns
    -------
    Tensor of the shape of ``x_bp``: ranks from 1 (smallest) to p (largest), ties averaged in the
    hard limit; every row sums to ``p (p + 1) / 2``.
    """
    if not isinstance(x_bp, torch.Tensor) or not x_bp.is_floating_point() or x_bp.ndim not in (1, 2):
        raise InputError("x_bp", "a floating (p,) or (b, p) tensor",
                         f"{type(x_bp).__name__} {tuple(getattr(x_bp, 'shape', ()))}",
                         "pass the vectors to rank as a float tensor")
    if isinstance(strength, bool) or not float(strength) > 0 or not np.isfinite(float(strength)):
        raise InputError("strength", "a finite regularisation strength > 0", repr(strength),
                         "e.g. strength=0.1 (smaller: closer to the hard rank)")
    one = x_bp.ndim == 1
    x = x_bp[None] if one else x_bp
    p = x.shape[1]
    w = torch.arange(p, 0, -1, dtype=x.dtype, device=x.device)  # (p, p - 1, ..., 1)
    rows = []
    for row in x / float(strength):
        order = torch.argsort(row.detach(), descending=True, stable=True)
        s = row[order]
        y = s - w
        ids = torch.as_tensor(isotonic_decreasing_blocks(y.detach().cpu().numpy()),
                              device=x.device)
        mu_sorted = s - _segment_mean(y, ids, int(ids[-1]) + 1)
        rows.append(torch.empty_like(mu_sorted).scatter(0, order, mu_sorted))
    out = torch.stack(rows)
    return out[0] if one else out
