"""Mutual information between the representations of different time steps (TDFormer's analysis).

Estimators, in nats, gathered in ``MI_ESTIMATORS`` (each ``f(a_sn, b_sn) -> float`` with
``s`` samples and ``n`` units, unit ``i`` of ``a`` paired with unit ``i`` of ``b``):

``binned``   plug-in (maximum-likelihood) MI of the joint histogram, per unit, averaged
             over units. Integer-valued data (spikes, spike counts) are used as they
             are; real values are first cut into ``bins`` equal-width bins. Biased
             upwards by about (bins_a - 1)(bins_b - 1) / (2 s) per unit (Miller 1955).
``gaussian`` MI of jointly Gaussian vectors from the sample covariances,
             ``0.5 (log det S_a + log det S_b - log det S_ab)``, in float64 with a small
             ridge on the diagonal; for one unit each this is ``-0.5 log(1 - rho^2)``.
             With ``n_a + n_b >= s`` (dimensions at least the samples) the joint sample
             covariance is singular and the estimate is the ridge's artefact (about 40
             nats whatever the data): refused, unless ``shrinkage="ledoit_wolf"``, which
             uses the Ledoit & Wolf (2004) shrunk covariance (towards a scaled identity)
             for every determinant; that is a different, stated estimator, biased towards
             0 nats, not the plug-in one.

``time_step_mi`` applies one to every pair of time steps of (T, s, n) features.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cortexalign.errors import InputError, UnknownNameError

__all__ = ["MI_ESTIMATORS", "mi_binned", "mi_gaussian", "time_step_mi", "mutual_information",
           "ledoit_wolf_cov"]


def _as_2d(x, name: str) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] < 2:
        raise InputError(name, "an array (samples, units) with >= 2 samples", f"shape {a.shape}",
                         "flatten the representation to (samples, units)")
    if not np.isfinite(a).all():
        raise InputError(name, "finite values", "NaN or Inf", "drop or fix the bad samples")
    return a.astype(np.float64)


def _discretise(col: np.ndarray, bins: int) -> np.ndarray:
    if np.array_equal(col, np.round(col)):
        return np.unique(col, return_inverse=True)[1]
    lo, hi = col.min(), col.max()
    if hi == lo:
        return np.zeros(col.shape, dtype=np.int64)
    return np.minimum(((col - lo) / (hi - lo) * bins).astype(np.int64), bins - 1)


def _plugin_mi(i: np.ndarray, j: np.ndarray) -> float:
    joint = np.zeros((i.max() + 1, j.max() + 1))
    np.add.at(joint, (i, j), 1.0)
    p = joint / joint.sum()
    pi, pj = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return float(max((p[nz] * np.log(p[nz] / (pi @ pj)[nz])).sum(), 0.0))


def mi_binned(a_sn, b_sn, bins: int = 8) -> float:
    """Unit-wise plug-in MI of ``a`` (s, n) and ``b`` (s, n), averaged over units, in nats."""
    a, b = _as_2d(a_sn, "a_sn"), _as_2d(b_sn, "b_sn")
    if a.shape != b.shape:
        raise InputError("b_sn", f"the shape of a_sn {a.shape} (units paired)", f"{b.shape}",
                         "pass the same units at both time steps")
    if bins < 2:
        raise InputError("bins", "an integer >= 2", repr(bins), "use bins=8")
    return float(np.mean([_plugin_mi(_discretise(a[:, u], bins), _discretise(b[:, u], bins))
                          for u in range(a.shape[1])]))


def ledoit_wolf_cov(x_sp: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit & Wolf (2004) shrunk covariance of (s, p) samples and its shrinkage intensity.

    ``(1 - d) S + d mu I`` with ``S`` the maximum-likelihood covariance (divided by s), ``mu =
    tr(S) / p`` and ``d = min(b2, d2) / d2`` from the paper's Lemma 3.2 estimates (the same
    formula as ``sklearn.covariance.ledoit_wolf``).
    """
    x = x_sp - x_sp.mean(axis=0)
    s, p = x.shape
    cov = x.T @ x / s
    mu = np.trace(cov) / p
    d2 = float(((cov - mu * np.eye(p)) ** 2).sum())
    if d2 <= 0:
        return cov, 0.0
    x2 = x ** 2
    b2 = float(((x2.T @ x2) / s - cov ** 2).sum() / s)
    shrink = min(b2, d2) / d2
    return (1.0 - shrink) * cov + shrink * mu * np.eye(p), shrink


def mi_gaussian(a_sn, b_sn, ridge: float = 1e-6, shrinkage: str | None = None) -> float:
    """Gaussian MI ``0.5 (logdet S_a + logdet S_b - logdet S_ab)`` of (s, n_a) and (s, n_b).

    Parameters
    ----------
    ridge : relative ridge on the sample covariance's diagonal (numerical safety only).
    shrinkage : None (the sample covariance; refused when ``n_a + n_b >= s``, where it is
        singular) or ``"ledoit_wolf"`` (the shrunk covariance, ``ledoit_wolf_cov``, at any size).
    """
    a, b = _as_2d(a_sn, "a_sn"), _as_2d(b_sn, "b_sn")
    if a.shape[0] != b.shape[0]:
        raise InputError("b_sn", f"{a.shape[0]} samples (as a_sn)", f"{b.shape[0]}",
                         "pair the same samples")
    if shrinkage not in (None, "ledoit_wolf"):
        raise InputError("shrinkage", "None or 'ledoit_wolf'", repr(shrinkage),
                         "pass shrinkage='ledoit_wolf' or leave it None")
    ab = np.concatenate([a, b], axis=1)
    s, dims = ab.shape
    if shrinkage is None and dims >= s:
        raise InputError("a_sn, b_sn", f"fewer dimensions than samples for the Gaussian MI "
                         f"(n_a + n_b < s; here s = {s})", f"n_a + n_b = {a.shape[1]} + "
                         f"{b.shape[1]} = {dims} dimensions for {s} samples: the joint "
                         "covariance is singular and the estimate would be the ridge's "
                         "artefact (tens of nats whatever the data)",
                         "pass shrinkage='ledoit_wolf' (a stated shrinkage estimate, biased "
                         "towards 0), reduce the units (e.g. PCA to well under s/2 each), add "
                         "samples, or use estimator='binned'")
    if shrinkage == "ledoit_wolf":
        cov = ledoit_wolf_cov(ab)[0]
    else:
        cov = np.cov(ab, rowvar=False).reshape(dims, dims)
    cov = cov + ridge * np.eye(len(cov)) * max(np.trace(cov) / len(cov), 1e-12)
    na = a.shape[1]

    def logdet(m):
        return np.linalg.slogdet(m)[1]

    return float(max(0.5 * (logdet(cov[:na, :na]) + logdet(cov[na:, na:]) - logdet(cov)), 0.0))


MI_ESTIMATORS: dict[str, Callable[..., float]] = {
    "binned": mi_binned,
    "gaussian": mi_gaussian,
}


def mutual_information(a_sn, b_sn, estimator: str = "binned", **options) -> float:
    """MI in nats between two representations with the named estimator."""
    if estimator not in MI_ESTIMATORS:
        raise UnknownNameError("MI estimator", estimator, MI_ESTIMATORS)
    return MI_ESTIMATORS[estimator](a_sn, b_sn, **options)


def time_step_mi(feats_T, estimator: str = "binned", **options) -> np.ndarray:
    """(T, T) matrix of MI between every pair of time steps' representations.

    Parameters
    ----------
    feats_T : (T, s, ...) per-time-step features (e.g. ``extract_features(...,
        time_reduce="none")``); trailing axes are flattened into units.
    """
    x = feats_T.detach().cpu().numpy() if isinstance(feats_T, torch.Tensor) else np.asarray(feats_T)
    if x.ndim < 3:
        raise InputError("feats_T", "an array (T, samples, units...)", f"shape {x.shape}",
                         "extract features with time_reduce='none'")
    x = x.reshape(x.shape[0], x.shape[1], -1)
    T = x.shape[0]
    out = np.zeros((T, T))
    for i in range(T):
        for j in range(i, T):
            out[i, j] = out[j, i] = mutual_information(x[i], x[j], estimator, **options)
    return out
