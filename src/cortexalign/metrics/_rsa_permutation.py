"""Permutation p-values of the ``rsa`` score (the runner's ``n_permutations`` for metrics that do
not compute their own p-value).

``PERMUTATION_TESTS``: metric name -> ``f(features_sd, target, *, n_permutations, seed,
**metric_options) -> p``. Metrics that take ``n_permutations`` themselves (``map_*``) get it
passed by the runner instead. ``rsa_permutation_p_from_rdm`` takes the model RDM instead of the
features (the streamed path).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import torch

from cortexalign.compute import gram_work, sized_by
from cortexalign.memo import Memo, array_digest
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


def _null_work(n_permutations: int, s: int) -> float:
    """Multiply-adds of a permutation null over an (s, s) RDM (thread policy)."""
    return float(n_permutations) * s * s


@sized_by(lambda features_sd, target, *, n_permutations, **_: gram_work(features_sd)
          + _null_work(n_permutations, len(features_sd)))
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


@sized_by(lambda model_rdm_ss, target, *, n_permutations, **_:
          _null_work(n_permutations, len(model_rdm_ss)))
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
    exact = _is_exact(rdm_ss.shape[0], n_permutations)
    if compare in ("pearson", "cosine"):
        # a relabelled RDM has the same entries, so the same mean and norm: its unit vector is
        # the relabelled unit vector, and each comparison is one product with the target's
        t_unit = _unit(target_kp, compare)
        null_n = torch.cat([(u_cp @ t_unit.T).clamp_(-1.0, 1.0) @ w_k for u_cp in
                            _null_units(rdm_ss, compare, int(seed), int(n_permutations), chunk)])
    else:
        null_n = torch.cat([compare_vectors(upper_tri(rdm_css), target_kp, compare) @ w_k
                            for rdm_css in _relabelled(rdm_ss, int(seed), int(n_permutations),
                                                       chunk)])
    return (enumerated_p_value if exact else exact_p_value)(observed, null_n.cpu().numpy(),
                                                            "greater")


def _relabelled(rdm_ss: torch.Tensor, seed: int, n_permutations: int, chunk: int):
    """Chunks (c, s, s) of ``rdm_ss`` relabelled: every relabelling when ``_is_exact`` (identity
    included), else ``n_permutations`` random ones drawn from ``seed``."""
    s, dev = rdm_ss.shape[0], rdm_ss.device
    exact = _is_exact(s, n_permutations)
    every = torch.as_tensor(all_permutations(s)) if exact else None
    total = len(every) if exact else n_permutations
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, total, chunk):
        c = min(chunk, total - start)
        perm_cs = (every[start:start + c] if exact else
                   torch.argsort(torch.rand(c, s, generator=gen), dim=1)).to(dev)
        yield rdm_ss[perm_cs[:, :, None], perm_cs[:, None, :]]


def _is_exact(s: int, n_permutations: int) -> bool:
    """Few stimuli: every relabelling (identity included) and the exact p; else Monte-Carlo."""
    return s <= 12 and math.factorial(s) <= max(int(n_permutations), EXACT_MAX)


def _unit(x_kp: torch.Tensor, compare: str) -> torch.Tensor:
    z = x_kp - x_kp.mean(dim=1, keepdim=True) if compare == "pearson" else x_kp
    return z / torch.linalg.vector_norm(z, dim=1, keepdim=True)


_NULL_MEMO = Memo(2**26)
"""The relabelled unit vectors of recent model RDMs (64 MB: 1,000 relabellings of a
64-stimulus RDM take 16 MB); larger nulls are streamed in chunks, never kept."""


def _null_units(rdm_ss: torch.Tensor, compare: str, seed: int, n_permutations: int,
                chunk: int) -> Iterable[torch.Tensor]:
    """Chunks (c, pairs) of the unit vectors (centred for Pearson) of the relabelled upper
    triangles, in ``_relabelled``'s order.

    They depend on the model RDM and the seed only, not on the target: the runner scores one
    model RDM against every group of a grid with the same seed, so they are kept
    (``_NULL_MEMO``, keyed by the RDM's bytes) and each further group costs one (P, pairs) x
    (pairs, k) product.
    """
    s, dev = rdm_ss.shape[0], rdm_ss.device

    iu = torch.triu_indices(s, s, 1, device=dev)
    unit_ss = torch.zeros_like(rdm_ss)
    unit_ss[iu[0], iu[1]] = _unit(upper_tri(rdm_ss)[None], compare)[0]
    chunks = (upper_tri(u) for u in _relabelled(unit_ss + unit_ss.T, seed, n_permutations,
                                                chunk))
    total = math.factorial(s) if _is_exact(s, n_permutations) else n_permutations
    if dev.type != "cpu" or total * s * (s - 1) // 2 * rdm_ss.element_size() > \
            _NULL_MEMO.max_bytes:
        return chunks  # streamed
    key = ("rsa_null", array_digest(rdm_ss), compare, seed, n_permutations, chunk)
    return _NULL_MEMO.get(key, lambda: tuple(chunks))


def rank_matrix(rdm_ss: torch.Tensor) -> torch.Tensor:
    """(s, s) symmetric matrix of the average ranks of the upper triangle (zero diagonal)."""
    s = rdm_ss.shape[0]
    iu = torch.triu_indices(s, s, 1, device=rdm_ss.device)
    ranks = torch.zeros_like(rdm_ss)
    ranks[iu[0], iu[1]] = average_ranks(upper_tri(rdm_ss)[None])[0].to(rdm_ss.device)
    return ranks + ranks.T


PERMUTATION_TESTS: dict[str, Callable[..., float]] = {"rsa": rsa_permutation_p}
