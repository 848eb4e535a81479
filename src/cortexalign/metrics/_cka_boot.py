"""CKA of a bootstrap resample with the copies of one stimulus never paired with each other.

Drawing s stimuli with replacement puts copies of one stimulus side by side. Computed on the
resampled rows as if they were distinct, every pair of copies adds a self-similarity term
(``K_ii L_ii``: a stimulus always matches itself in both spaces), so resampled CKA sits above
the estimate it should scatter around: with no shared signal the point estimate fell below the
whole 95% interval in 20 of 20 simulations (biased and debiased CKA alike). rsatoolbox drops
the dissimilarities between copies for the same reason.

Here a resample is its stimulus counts ``c`` (``stats.stimulus_counts``), on the Grams of the
original s stimuli:

- biased CKA (``linear``, ``rbf``): centring by the resample's mean (``c``-weighted), then the
  HSIC sum over the resample's pairs of positions that are not two copies: weight ``c_i c_j``
  for i != j and ``c_i`` (its own positions) on the diagonal. The rbf bandwidth is the median
  squared distance over those same pairs (``cka``'s rule on the resample, copies left out).
- debiased CKA: Song et al.'s U-statistic over tuples of *distinct stimuli*, weighted by the
  product of their counts: ``HSIC = A / N2 + C / N4 - 2 B / N3`` over ordered pairs, quadruples
  and triples (pairs ``k_ij l_ij``, disjoint pairs ``k_ij l_qr``, paths ``k_ij l_jq``), with
  the overlaps of the product ``(c' K~ c)(c' L~ c)`` removed by inclusion-exclusion. With every
  count 1 it is Song et al.'s estimator (tested).

With all counts 1 both are exactly the point estimates.
"""

from __future__ import annotations

import torch

__all__ = ["resampled_cka", "pair_weights", "resample_centre", "rbf_from_linear", "u_hsic",
           "u_norms"]


def pair_weights(c_s: torch.Tensor) -> torch.Tensor:
    """(s, s) pairs of resample positions mapping to (i, j), copies excluded."""
    w = c_s[:, None] * c_s[None, :]
    w.diagonal().copy_(c_s)
    return w


def resample_centre(k_ss: torch.Tensor, c_s: torch.Tensor) -> torch.Tensor:
    """``H K H`` of the resample (its rows mean-centred), written on the original stimuli."""
    p = c_s / c_s.sum()
    kp = k_ss @ p
    return k_ss - kp[:, None] - kp[None, :] + p @ kp


def _weighted_median(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """numpy's median of the multiset holding each value ``weights`` (integer) times."""
    order = torch.argsort(values)
    v, cum = values[order], torch.cumsum(weights[order], 0)
    n = int(cum[-1].item())
    lo = v[torch.searchsorted(cum, torch.tensor((n - 1) // 2 + 1.0, dtype=cum.dtype,
                                                device=cum.device))]
    hi = v[torch.searchsorted(cum, torch.tensor(n // 2 + 1.0, dtype=cum.dtype, device=cum.device))]
    return 0.5 * (lo + hi)


def rbf_from_linear(k_ss: torch.Tensor, w_ss: torch.Tensor, sigma_frac: float) -> torch.Tensor:
    """Gaussian kernel of the linear Gram's distances, bandwidth from their median over the
    resample's pairs: the upper triangle counted twice, the zero diagonal once per position, and
    undrawn stimuli (weight 0) dropped before the sort (a fifth of the s^2 values remain)."""
    sq = torch.diagonal(k_ss)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * k_ss).clamp_(min=0.0)
    d2.fill_diagonal_(0.0)
    off = torch.triu(w_ss > 0, diagonal=1)
    values = torch.cat([d2[off], d2.new_zeros(1)])
    weights = torch.cat([2.0 * w_ss[off], torch.diagonal(w_ss).sum().reshape(1)])
    med = _weighted_median(values, weights)
    return torch.exp(-d2 / (2.0 * sigma_frac**2 * med))


def _biased(k_ss, l_ss, c_s, kind: str, sigma_frac: float) -> torch.Tensor:
    w = pair_weights(c_s)
    if kind == "rbf":
        k_ss, l_ss = rbf_from_linear(k_ss, w, sigma_frac), rbf_from_linear(l_ss, w, sigma_frac)
    kc, lc = resample_centre(k_ss, c_s), resample_centre(l_ss, c_s)
    kl, kk, ll = (w * kc * lc).sum(), (w * kc * kc).sum(), (w * lc * lc).sum()
    return kl / torch.sqrt(kk * ll)


def u_hsic(k0: torch.Tensor, l0: torch.Tensor, c_s: torch.Tensor, norms: tuple) -> torch.Tensor:
    """Weighted U-statistic HSIC over distinct stimuli (``k0``, ``l0``: zero diagonals)."""
    n2, n3, n4 = norms
    c2 = c_s * c_s
    kc, lc = k0 @ c_s, l0 @ c_s
    kl = k0 * l0
    a = c_s @ kl @ c_s
    a2 = c2 @ kl @ c2
    b = (c_s * kc * lc).sum() - c2 @ kl @ c_s
    b2 = (c2 * kc * lc).sum() - a2
    quads = (c_s @ kc) * (c_s @ lc) - 4.0 * b2 - 2.0 * a2
    return a / n2 + quads / n4 - 2.0 * b / n3


def u_norms(c_s: torch.Tensor) -> tuple[float, float, float] | None:
    """Total weights of the ordered pairs, triples and quadruples of distinct stimuli (from the
    power sums of the counts), or None with fewer than 4 distinct stimuli drawn."""
    p1, p2, p3, p4 = (float((c_s**k).sum()) for k in (1, 2, 3, 4))
    norms = (p1**2 - p2, p1**3 - 3 * p1 * p2 + 2 * p3,
             p1**4 - 6 * p1**2 * p2 + 3 * p2**2 + 8 * p1 * p3 - 6 * p4)
    return None if min(norms) <= 0 else norms


def _debiased(k_ss, l_ss, c_s) -> torch.Tensor:
    norms = u_norms(c_s)
    if norms is None:
        return torch.tensor(float("nan"), dtype=k_ss.dtype, device=k_ss.device)
    k0, l0 = k_ss.clone(), l_ss.clone()
    k0.fill_diagonal_(0.0)
    l0.fill_diagonal_(0.0)
    hxy, hxx, hyy = u_hsic(k0, l0, c_s, norms), u_hsic(k0, k0, c_s, norms), u_hsic(l0, l0, c_s, norms)
    denom = hxx * hyy
    return hxy / torch.sqrt(denom) if bool(denom > 0) else torch.full_like(hxy, float("nan"))


def resampled_cka(k_ss: torch.Tensor, l_ss: torch.Tensor, c_s: torch.Tensor, kind: str,
                  sigma_frac: float = 1.0) -> torch.Tensor:
    """CKA of ``kind`` on the resample with stimulus counts ``c_s`` (float64, summing to the
    resample size), from the linear Grams of the original stimuli (centred or not: row offsets
    cancel). 0-d tensor; NaN where a self-HSIC is <= 0."""
    if kind == "linear_debiased":
        centre = torch.ones_like(c_s)  # Song's estimator on centred features, as the point estimate
        return _debiased(resample_centre(k_ss, centre), resample_centre(l_ss, centre), c_s)
    return _biased(k_ss, l_ss, c_s, kind, sigma_frac)
