"""Permutation tests with exact p-values, and paired comparisons of two models.

Two kinds of p-value, and each result says which (``PermutationResult.exact``):

- **exact (enumerated)**: when every pattern fits (all ``2**k`` sign patterns of k paired items,
  all ``s!`` orderings of s stimuli, at most ``max(n_perm, EXACT_MAX)`` of them), the null is the
  whole permutation distribution, identity included, and ``p = #{null at least as extreme} / N``.
  With k = 8 paired items the smallest two-sided p is 2/256.
- **Monte-Carlo**: otherwise ``n_perm`` random patterns and Phipson & Smyth's (2010)
  ``p = (1 + #{null at least as extreme}) / (1 + n_perm)``, never below ``1 / (n_perm + 1)`` and
  valid at every level under exchangeability.

The null of an RDM comparison permutes the stimuli of one RDM (rows and columns together; Mantel
1967; Nili et al. 2014), all permutations at once as an (n_perm, p) array.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.stats._budget import MAX_RESAMPLES

__all__ = ["PermutationResult", "exact_p_value", "enumerated_p_value", "permutation_test",
           "rdm_permutation_test", "paired_comparison", "PAIRED_METHODS", "ALTERNATIVES",
           "EXACT_MAX", "all_permutations", "all_sign_patterns"]

#: Enumerate every pattern when there are at most ``max(n_perm, EXACT_MAX)`` of them.
EXACT_MAX = 2 ** 16


@dataclass(frozen=True)
class PermutationResult:
    """observed statistic, its p-value, and the null distribution.

    ``exact``: the null is every pattern (``len(null)`` of them, the observed one included) and
    ``p = #{at least as extreme} / len(null)``; otherwise ``len(null)`` random patterns and the
    Monte-Carlo ``(1 + #) / (1 + len(null))``. ``description`` says which, in words.
    """

    observed: float
    p_value: float
    null: np.ndarray
    alternative: str
    exact: bool = False

    @property
    def description(self) -> str:
        n = len(self.null)
        if self.exact:
            return f"exact: all {n} patterns enumerated"
        return f"Monte-Carlo: {n} random patterns, p >= 1/{n + 1}"


def _greater(obs, null):
    return null >= obs


def _less(obs, null):
    return null <= obs


def _two_sided(obs, null):
    return np.abs(null) >= np.abs(obs)


ALTERNATIVES: dict[str, Callable] = {"greater": _greater, "less": _less, "two-sided": _two_sided}


def exact_p_value(observed: float, null: np.ndarray, alternative: str = "greater") -> float:
    """The Monte-Carlo permutation p-value ``(1 + #{null at least as extreme}) / (1 +
    len(null))`` (Phipson & Smyth 2010: exact in the sense of valid at every level for random
    patterns, never below ``1 / (len(null) + 1)``); two-sided compares |values|. For a null that
    holds every pattern use :func:`enumerated_p_value`."""
    return float((1 + _n_extreme(observed, null, alternative)) / (1 + len(null)))


def _n_extreme(observed: float, null: np.ndarray, alternative: str) -> int:
    """How many of ``null`` are at least as extreme as ``observed``."""
    if alternative not in ALTERNATIVES:
        raise UnknownNameError("alternative", alternative, ALTERNATIVES)
    null = np.asarray(null, dtype=np.float64)
    # a tiny tolerance so ties from floating-point noise count as ties
    tol = 1e-12 * max(1.0, abs(float(observed)))
    obs = observed - tol if alternative != "less" else observed + tol
    if alternative == "two-sided":
        obs = abs(observed) - tol
    return int(ALTERNATIVES[alternative](obs, null).sum())


def enumerated_p_value(observed: float, null_all: np.ndarray, alternative: str = "greater"
                       ) -> float:
    """``#{null at least as extreme} / len(null)`` for a null holding every pattern (the
    observed one included): the exact permutation p-value, no +1 correction."""
    return float(_n_extreme(observed, null_all, alternative) / len(null_all))


def all_sign_patterns(k: int) -> np.ndarray:
    """Every (2**k, k) pattern of +-1 signs, the all-plus pattern first."""
    bits = (np.arange(2 ** k)[:, None] >> np.arange(k)[None, :]) & 1
    return 1.0 - 2.0 * bits


def all_permutations(s: int) -> np.ndarray:
    """Every (s!, s) ordering of ``range(s)``, the identity first."""
    return np.array(list(itertools.permutations(range(s))), dtype=np.int64).reshape(-1, s)


def _enumerable(n_patterns: int, n_perm: int) -> bool:
    return n_patterns <= max(int(n_perm), EXACT_MAX)


def _check_n(n_perm: int) -> int:
    if int(n_perm) < 1:
        raise InputError("n_perm", "a positive number of permutations", repr(n_perm),
                         "e.g. n_perm=1000 (p-values resolve down to 1 / (n_perm + 1))")
    if int(n_perm) > MAX_RESAMPLES:
        raise InputError("n_perm", f"at most {MAX_RESAMPLES:,} permutations (p-values then "
                         "resolve 1e-5; stats._budget)", f"{int(n_perm):,}", "lower n_perm")
    return int(n_perm)


def permutation_test(statistic: Callable, x, y, *, n_perm: int = 1000, seed: int = 0,
                     alternative: str = "greater", vectorized: bool = False) -> PermutationResult:
    """Test ``statistic(x, y)`` against stimulus-label shuffles of ``y`` (its axis 0).

    Parameters
    ----------
    statistic : ``f(x, y) -> float``; with ``vectorized``, ``f(x, y_p...) -> (P,)`` for a stack of
        permuted ``y`` of shape (P, s, ...).
    x, y : arrays whose axis 0 is the stimulus (s rows each).

    Notes
    -----
    With ``s!`` at most ``max(n_perm, EXACT_MAX)`` every ordering is used and the p-value is
    exact (``result.exact``); otherwise ``n_perm`` random orderings (Monte-Carlo).
    """
    n_perm = _check_n(n_perm)
    x, y = np.asarray(x), np.asarray(y)
    if x.shape[0] != y.shape[0]:
        raise InputError("y", f"{x.shape[0]} stimuli (rows), as many as x", f"{y.shape[0]}",
                         "align both by stimulus id")
    exact = y.shape[0] <= 12 and _enumerable(math.factorial(y.shape[0]), n_perm)
    if exact:  # every ordering, the identity included
        perms = all_permutations(y.shape[0])
    else:
        rng = np.random.default_rng(seed)
        perms = np.argsort(rng.random((n_perm, y.shape[0])), axis=1)
    observed = float(statistic(x, y[None])[0] if vectorized else statistic(x, y))
    if vectorized:
        null = np.asarray(statistic(x, y[perms]), dtype=np.float64)
    else:
        null = np.array([statistic(x, y[p]) for p in perms], dtype=np.float64)
    p = (enumerated_p_value if exact else exact_p_value)(observed, null, alternative)
    return PermutationResult(observed, p, null, alternative, exact)


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

    Notes
    -----
    Exact (every relabelling) when ``s!`` is at most ``max(n_perm, EXACT_MAX)``.
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
    exact = s <= 12 and _enumerable(math.factorial(s), n_perm)
    if exact:  # every relabelling, the identity included
        perms = all_permutations(s)
    else:
        rng = np.random.default_rng(seed)
        perms = np.argsort(rng.random((n_perm, s)), axis=1)
    va = a[iu, ju]
    vb_kp = np.concatenate([b[iu, ju][None], b[perms[:, iu], perms[:, ju]]])  # row 0: observed
    if compare == "spearman":
        va, vb_kp = rankdata(va), rankdata(vb_kp, axis=1)
    r = _corr_rows(va, vb_kp)
    p = (enumerated_p_value if exact else exact_p_value)(r[0], r[1:], alternative)
    return PermutationResult(float(r[0]), p, r[1:], alternative, exact)


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
    """Is model A's mean per-item score different from model B's? (items: subjects, stimuli or
    neuroids: the independent units of the comparison)

    ``observed`` is mean(a - b); the null comes from sign flips of the paired differences (valid
    under symmetry; Good 2005) or from a bootstrap-t of the differences (``bootstrap``). Sign
    flips enumerate all ``2**k`` patterns when that is at most ``max(n_perm, EXACT_MAX)``: the
    p-value is then exact (``result.exact``; with k = 8 items no two-sided p is below 2/256),
    otherwise Monte-Carlo over ``n_perm`` random patterns, never below ``1 / (n_perm + 1)``.
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
    if method == "sign_flip" and len(d) <= 24 and _enumerable(2 ** len(d), n):
        null = (all_sign_patterns(len(d)) * d).mean(1)  # every pattern; row 0 is the observed
        return PermutationResult(float(d.mean()), enumerated_p_value(d.mean(), null, alternative),
                                 null, alternative, exact=True)
    null = PAIRED_METHODS[method](d, n, np.random.default_rng(seed))
    return PermutationResult(float(d.mean()), exact_p_value(d.mean(), null, alternative), null,
                             alternative)
