"""Permutation tests with exact p-values, and paired comparisons of two models.

p-values follow Phipson & Smyth (2010): ``p = (1 + #{null >= observed}) / (1 + n_perm)``, never 0,
and exact (valid at every level) under exchangeability of the stimulus labels. The null of an RDM
comparison permutes the stimuli of one RDM (rows and columns together; Mantel 1967; Nili et al.
2014), all permutations at once as an (n_perm, p) array.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from cortexalign.errors import InputError, UnknownNameError

__all__ = ["PermutationResult", "exact_p_value", "permutation_test", "rdm_permutation_test",
           "paired_comparison", "PAIRED_METHODS", "ALTERNATIVES"]


@dataclass(frozen=True)
class PermutationResult:
    """observed statistic, its p-value, and the (n_perm,) null distribution."""

    observed: float
    p_value: float
    null: np.ndarray
    alternative: str


def _greater(obs, null):
    return null >= obs


def _less(obs, null):
    return null <= obs


def _two_sided(obs, null):
    return np.abs(null) >= np.abs(obs)


ALTERNATIVES: dict[str, Callable] = {"greater": _greater, "less": _less, "two-sided": _two_sided}


def exact_p_value(observed: float, null: np.ndarray, alternative: str = "greater") -> float:
    """``(1 + #{null at least as extreme}) / (1 + len(null))``; two-sided compares |values|."""
    if alternative not in ALTERNATIVES:
        raise UnknownNameError("alternative", alternative, ALTERNATIVES)
    null = np.asarray(null, dtype=np.float64)
    # a tiny tolerance so ties from floating-point noise count as ties
    tol = 1e-12 * max(1.0, abs(float(observed)))
    obs = observed - tol if alternative != "less" else observed + tol
    if alternative == "two-sided":
        obs = abs(observed) - tol
    return float((1 + ALTERNATIVES[alternative](obs, null).sum()) / (1 + len(null)))


def _check_n(n_perm: int) -> int:
    if int(n_perm) < 1:
        raise InputError("n_perm", "a positive number of permutations", repr(n_perm),
                         "e.g. n_perm=1000 (p-values resolve down to 1 / (n_perm + 1))")
    return int(n_perm)


def permutation_test(statistic: Callable, x, y, *, n_perm: int = 1000, seed: int = 0,
                     alternative: str = "greater", vectorized: bool = False) -> PermutationResult:
    """Test ``statistic(x, y)`` against stimulus-label shuffles of ``y`` (its axis 0).

    Parameters
    ----------
    statistic : ``f(x, y) -> float``; with ``vectorized``, ``f(x, y_p...) -> (P,)`` for a stack of
        permuted ``y`` of shape (P, s, ...).
    x, y : arrays whose axis 0 is the stimulus (s rows each).
    """
    n_perm = _check_n(n_perm)
    x, y = np.asarray(x), np.asarray(y)
    if x.shape[0] != y.shape[0]:
        raise InputError("y", f"{x.shape[0]} stimuli (rows), as many as x", f"{y.shape[0]}",
                         "align both by stimulus id")
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((n_perm, y.shape[0])), axis=1)
    observed = float(statistic(x, y[None])[0] if vectorized else statistic(x, y))
    if vectorized:
        null = np.asarray(statistic(x, y[perms]), dtype=np.float64)
    else:
        null = np.array([statistic(x, y[p]) for p in perms], dtype=np.float64)
    return PermutationResult(observed, exact_p_value(observed, null, alternative), null,
                             alternative)


def _corr_rows(a_p: np.ndarray, b_kp: np.ndarray) -> np.ndarray:
    a = (a_p - a_p.mean()) / np.linalg.norm(a_p - a_p.mean())
    b = b_kp - b_kp.mean(1, keepdims=True)
    return (b @ a) / np.linalg.norm(b, axis=1)


def rdm_permutation_test(rdm_a_ss, rdm_b_ss, *, compare: str = "spearman", n_perm: int = 1000,
                         seed: int = 0, alternative: str = "greater") -> PermutationResult:
    """Correlation of two RDMs' upper triangles against stimulus relabelings of ``rdm_b``.

    Parameters
    ----------
    rdm_a_ss, rdm_b_ss : (s, s) symmetric RDMs over the same stimuli, same order.
    compare : ``"spearman"`` or ``"pearson"``.
    """
    n_perm = _check_n(n_perm)
    a, b = np.asarray(rdm_a_ss, dtype=np.float64), np.asarray(rdm_b_ss, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape != b.shape:
        raise InputError("rdm_b_ss", f"a square RDM of the same shape as rdm_a_ss {a.shape}",
                         f"shape {b.shape}", "compare RDMs over the same stimuli")
    if compare not in ("spearman", "pearson"):
        raise UnknownNameError("RDM comparison", compare, ["spearman", "pearson"])
    s = a.shape[0]
    iu, ju = np.triu_indices(s, 1)
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((n_perm, s)), axis=1)
    va = a[iu, ju]
    vb_kp = np.concatenate([b[iu, ju][None], b[perms[:, iu], perms[:, ju]]])  # row 0: observed
    if compare == "spearman":
        va, vb_kp = rankdata(va), rankdata(vb_kp, axis=1)
    r = _corr_rows(va, vb_kp)
    return PermutationResult(float(r[0]), exact_p_value(r[0], r[1:], alternative), r[1:],
                             alternative)


def _sign_flip(d_k: np.ndarray, n: int, rng) -> np.ndarray:
    signs = rng.integers(0, 2, (n, len(d_k))) * 2.0 - 1.0
    return (signs * d_k).mean(1)


def _bootstrap_t(d_k: np.ndarray, n: int, rng) -> np.ndarray:
    # bootstrap-t (Efron & Tibshirani 1993, sec. 12.5): t* = (mean* - mean) / se*, returned in
    # units of the mean (t* x se) so it compares with the observed mean difference; the plain
    # percentile bootstrap of the mean is anti-conservative for small k
    idx = rng.integers(0, len(d_k), (n, len(d_k)))
    boot = d_k[idx]
    se_b = boot.std(1, ddof=1) / np.sqrt(len(d_k))
    se = d_k.std(ddof=1) / np.sqrt(len(d_k))
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(se_b > 0, (boot.mean(1) - d_k.mean()) / se_b, 0.0)
    return t * se


PAIRED_METHODS: dict[str, Callable] = {"sign_flip": _sign_flip, "bootstrap": _bootstrap_t}


def paired_comparison(scores_a_k, scores_b_k, *, method: str = "sign_flip", n_perm: int = 10000,
                      seed: int = 0, alternative: str = "two-sided") -> PermutationResult:
    """Is model A's mean per-item score different from model B's? (items: stimuli or neuroids)

    ``observed`` is mean(a - b); the null comes from random sign flips of the paired differences
    (exact under symmetry; Good 2005) or from a bootstrap-t of the differences (``bootstrap``).
    """
    n = _check_n(n_perm)
    if method not in PAIRED_METHODS:
        raise UnknownNameError("paired method", method, PAIRED_METHODS)
    a, b = np.asarray(scores_a_k, dtype=np.float64), np.asarray(scores_b_k, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise InputError("scores_b_k", f"(k,) scores paired with scores_a_k {a.shape}, k >= 2",
                         f"shape {b.shape}", "pass one score per stimulus (or neuroid) per model")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise InputError("scores", "finite per-item scores", "NaN/Inf", "drop those items")
    d = a - b
    null = PAIRED_METHODS[method](d, n, np.random.default_rng(seed))
    return PermutationResult(float(d.mean()), exact_p_value(d.mean(), null, alternative), null,
                             alternative)
