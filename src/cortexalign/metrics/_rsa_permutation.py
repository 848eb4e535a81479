"""Permutation p-values of the ``rsa`` score (the runner's ``n_permutations`` for metrics that do
not compute their own p-value).

``PERMUTATION_TESTS``: metric name -> ``f(features_sd, target, *, n_permutations, seed,
**metric_options) -> p``. Metrics that take ``n_permutations`` themselves (``map_*``) get it
passed by the runner instead. ``rsa_permutation_p_from_rdm`` takes the model RDM instead of the
features (the streamed path).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from cortexalign.metrics._rsa_metric import _model_rdm_tensor, _neural_vectors, ceiling_groups
from cortexalign.rdm import average_ranks, compare_vectors, rdm_tensor, upper_tri
from cortexalign.stats import (
    EXACT_MAX,
    all_permutations,
    check_resamples,
    enumerated_p_value,
    exact_p_value,
    group_weights,
)

__all__ = ["PERMUTATION_TESTS", "rsa_permutation_p", "rsa_permutation_p_from_rdm", "rank_matrix"]


def rsa_permutation_p(features_sd, target, *, n_permutations: int, seed: int = 0,
                      rdm_method: str = "correlation", compare: str = "spearman",
                      neural_rdm_method: str | None = None, ceiling_by: str | None = "subject",
                      chunk: int = 128, **_other) -> float:
    """Permutation p-value of the ``rsa`` score: the model RDM's stimuli (rows and columns
    together) are relabelled ``n_permutations`` times (Mantel 1967; Nili et al. 2014) and the
    subject-weighted comparison recomputed; one-sided (greater), ``(1 + #null >= obs) / (1 + P)``;
    with few stimuli (``s!`` at most ``max(P, stats.EXACT_MAX)``) every relabelling is used and
    the p-value is exact, ``#{null >= obs} / s!``. Other ``rsa`` options (``ci_level``, ``n_splits``) do not change the statistic.
    """
    x = torch.as_tensor(np.asarray(features_sd, dtype=np.float64))
    return _permutation_p(rdm_tensor(x, rdm_method), target, n_permutations=n_permutations,
                          seed=seed, compare=compare,
                          neural_rdm_method=neural_rdm_method or rdm_method,
                          ceiling_by=ceiling_by, chunk=chunk)


def rsa_permutation_p_from_rdm(model_rdm_ss, target, *, n_permutations: int, seed: int = 0,
                               rdm_method: str = "correlation", compare: str = "spearman",
                               neural_rdm_method: str | None = None,
                               ceiling_by: str | None = "subject", chunk: int = 128,
                               **_other) -> float:
    """``rsa_permutation_p`` for an (s, s) model RDM computed beforehand (``rsa_from_rdm``'s
    input, validated the same way); the same permutations, so the same p-value for
    ``compute_rdm(features_sd, rdm_method)``. ``rdm_method`` only sets the default
    ``neural_rdm_method``. The upper triangle is mirrored before permuting, as ``rsa_from_rdm``
    reads only it.
    """
    r = _model_rdm_tensor(model_rdm_ss, torch.device("cpu"))
    upper = torch.triu(r, 1)
    return _permutation_p(upper + upper.T, target, n_permutations=n_permutations, seed=seed,
                          compare=compare, neural_rdm_method=neural_rdm_method or rdm_method,
                          ceiling_by=ceiling_by, chunk=chunk)


def _permutation_p(rdm_ss: torch.Tensor, target, *, n_permutations: int, seed: int,
                   compare: str, neural_rdm_method: str, ceiling_by: str | None,
                   chunk: int) -> float:
    dev = rdm_ss.device
    check_resamples(n_permutations, rdm_ss.shape[0], parameter="n_permutations")
    target_kp, source = _neural_vectors(target, rdm_ss.shape[0], neural_rdm_method, dev)
    groups, _ = ceiling_groups(source, ceiling_by, target_kp.shape[0])
    w_k = torch.as_tensor(group_weights(groups), device=dev)
    observed = float(compare_vectors(upper_tri(rdm_ss)[None], target_kp, compare)[0] @ w_k)
    if compare == "spearman":  # relabelling permutes the ranks: rank once, then Pearson
        rdm_ss, target_kp, compare = rank_matrix(rdm_ss), average_ranks(target_kp), "pearson"
    gen = torch.Generator().manual_seed(int(seed))
    s = rdm_ss.shape[0]
    # few stimuli: every relabelling (identity included) and the exact p; else Monte-Carlo
    exact = s <= 12 and math.factorial(s) <= max(int(n_permutations), EXACT_MAX)
    every = torch.as_tensor(all_permutations(s)) if exact else None
    total = len(every) if exact else int(n_permutations)
    null = []
    for start in range(0, total, chunk):
        c = min(chunk, total - start)
        perm_cs = (every[start:start + c] if exact else
                   torch.argsort(torch.rand(c, s, generator=gen), dim=1)).to(dev)
        rdm_css = rdm_ss[perm_cs[:, :, None], perm_cs[:, None, :]]
        null.append(compare_vectors(upper_tri(rdm_css), target_kp, compare) @ w_k)
    null_n = torch.cat(null).cpu().numpy()
    return (enumerated_p_value if exact else exact_p_value)(observed, null_n, "greater")


def rank_matrix(rdm_ss: torch.Tensor) -> torch.Tensor:
    """(s, s) symmetric matrix of the average ranks of the upper triangle (zero diagonal)."""
    s = rdm_ss.shape[0]
    iu = torch.triu_indices(s, s, 1, device=rdm_ss.device)
    ranks = torch.zeros_like(rdm_ss)
    ranks[iu[0], iu[1]] = average_ranks(upper_tri(rdm_ss)[None])[0].to(rdm_ss.device)
    return ranks + ranks.T


PERMUTATION_TESTS: dict[str, Callable[..., float]] = {"rsa": rsa_permutation_p}
