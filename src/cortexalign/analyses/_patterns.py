"""Alignment pattern analysis: does a model of region r align with the other regions as r does?

After Höfling, Tangemann, Piefke, Keller, Franke & Bethge (2026), "Only Brains Align with Brains:
Cross-Region Alignment Patterns Expose Limits of Normative Models" (arXiv 2604.21780, ICLR 2026).
Their full method text was not available to us; the definitions below follow their abstract
(each region's *alignment pattern* is its profile of alignment to every other region, stable
across subjects; a model of region r, put in r's place, should reproduce r's profile) and are
otherwise ours:

- the comparisons ``C[k, k']`` of every (subject, region) RDM with every other (``compare``, one
  of ``metrics.RDM_COMPARISONS``);
- the brain's region x region matrix ``A[r, q]``: the mean of ``C`` over pairs of *different*
  subjects, one with region r and one with region q (between subjects, so that noise shared
  within one subject's recording cannot make two regions look alike; the diagonal is then r's
  between-subject consistency);
- a model layer's profile ``M[q]``: the mean over subjects of its comparison with region q;
- the alignment pattern similarity of a layer put in r's place: ``sim(M[q], A[r, q])`` over the
  regions q != r (``similarity``: Pearson by default, a comparison of shape, not level);
- the noise ceiling of r's pattern, leave one subject out: subject i's own profile of r
  (its r against the other subjects' regions) against the profile from the other subjects alone
  (lower bound) and from all subjects (upper bound), averaged over subjects. A model that were
  one more subject would score about the lower bound;
- the layer assigned to r: given by the user, or the layer with the best pointwise score
  ``M_l[r]`` (then the permutation test repeats the choice in every permutation);
- the permutation test, ``null="stimuli"``: the stimulus labels of every model layer permuted
  together (H0: the model is unrelated to the brain data), p = (1 + #{null >= observed}) /
  (1 + n); ``null="regions"``: the layer's profile entries permuted over the regions q != r
  (H0: its profile has no region-specific shape);
- the bootstrap interval: stimuli resampled (pairs of copies of one stimulus left out, as in
  ``stats.pair_weights``) and, with ``bootstrap_subjects`` and at least 3 subjects, subjects
  resampled too (pairs of copies of one subject left out), everything recomputed on each sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cortexalign.analyses._regions import RegionRDMs, as_region_rdms
from cortexalign.analyses._resample import comparisons
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics import RDM_COMPARISONS

__all__ = ["PATTERN_SIMILARITIES", "PATTERN_NULLS", "BrainPatterns", "PatternScore",
           "PatternAnalysis", "brain_alignment_patterns"]


def _pearson(a_nq: np.ndarray, b_nq: np.ndarray) -> np.ndarray:
    if a_nq.shape[-1] < 2:
        return np.full(np.broadcast_shapes(a_nq.shape, b_nq.shape)[:-1], np.nan)
    a = a_nq - a_nq.mean(axis=-1, keepdims=True)
    b = b_nq - b_nq.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))


def _ranks(x_nq: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x_nq, axis=-1)


def _spearman(a_nq, b_nq):
    return _pearson(_ranks(a_nq), _ranks(b_nq))


def _cosine(a_nq, b_nq):
    if a_nq.shape[-1] < 1:
        return np.full(np.broadcast_shapes(a_nq.shape, b_nq.shape)[:-1], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a_nq * b_nq).sum(-1) / np.sqrt((a_nq * a_nq).sum(-1) * (b_nq * b_nq).sum(-1))


PATTERN_SIMILARITIES = {"pearson": _pearson, "spearman": _spearman, "cosine": _cosine}
"""Name -> ``f(a_nq, b_nq) -> (n,)``: similarity of two alignment profiles (higher: closer)."""

PATTERN_NULLS = ("stimuli", "regions")


@dataclass(frozen=True)
class BrainPatterns:
    """The brain's region x region alignment matrix and the noise ceiling of each region's pattern.

    Attributes
    ----------
    regions : r region names. matrix_rr : (r, r) between-subject alignment ``A``.
    ceiling_low_r, ceiling_high_r : (r,) leave-one-subject-out pattern similarity bounds.
    n_subjects_r : subjects per region. compare, similarity : the measures used.
    """

    regions: tuple[str, ...]
    matrix_rr: np.ndarray
    ceiling_low_r: np.ndarray
    ceiling_high_r: np.ndarray
    n_subjects_r: np.ndarray
    compare: str
    similarity: str


@dataclass(frozen=True)
class PatternScore:
    """One layer put in one region's place.

    Attributes
    ----------
    region, layer : where, and which layer (``assigned_by``: ``user`` or ``best_score``).
    value : alignment pattern similarity (over the other regions). pointwise : the layer's
        alignment to ``region`` itself. profile_r, brain_profile_r : the layer's and the
        region's alignment to every region (``region`` included, for display).
    ci_low, ci_high : bootstrap interval. p_value : permutation p-value (``null``).
    ceiling_low, ceiling_high : the region's pattern noise ceiling.
    """

    region: str
    layer: str
    assigned_by: str
    value: float
    pointwise: float
    profile_r: np.ndarray
    brain_profile_r: np.ndarray
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    p_value: float = float("nan")
    ceiling_low: float = float("nan")
    ceiling_high: float = float("nan")
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PatternAnalysis:
    """The brain's patterns and the scores of a model's layers put in each region's place."""

    brain: BrainPatterns
    scores: tuple[PatternScore, ...]


def _matrix(c_bkk: np.ndarray, subjects_k, regions_k, n_regions, c_bS) -> np.ndarray:
    """(b, r, r) between-subject alignment matrix of comparisons ``c_bkk`` for subject counts
    ``c_bS``: pairs of one subject, or of two copies of one subject, get weight 0."""
    ck = c_bS[:, subjects_k]  # (b, k)
    w_bkk = ck[:, :, None] * ck[:, None, :] * (subjects_k[:, None] != subjects_k[None, :])
    onehot = np.eye(n_regions)[regions_k]  # (k, r)
    num = onehot.T @ (w_bkk * np.nan_to_num(c_bkk)) @ onehot
    den = onehot.T @ w_bkk @ onehot
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def _profiles(cm_blk: np.ndarray, subjects_k, regions_k, n_regions, c_bS) -> np.ndarray:
    """(b, l, r) model profiles: subject-weighted mean comparison with each region."""
    w = c_bS[:, subjects_k][:, :, None] * np.eye(n_regions)[regions_k][None]  # (b, k, r)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.einsum("blk,bkr->blr", cm_blk, w) / w.sum(axis=1)[:, None, :]


def _similarity(model_nr: np.ndarray, brain_nr: np.ndarray, r: int, fn,
                keep_r: np.ndarray | None = None) -> np.ndarray:
    """Similarity over the regions q != r where the brain's entry is defined (``keep_r``: those
    columns, fixed by the full-data matrix; by default where every row of ``brain_nr`` is)."""
    if keep_r is None:
        keep_r = np.isfinite(brain_nr.reshape(-1, brain_nr.shape[-1])).all(axis=0)
    keep = keep_r.copy()
    keep[r] = False
    return fn(model_nr[..., keep], brain_nr[..., keep])


def _ceiling(c_kk, subjects_k, regions_k, n_regions, fn) -> tuple[np.ndarray, np.ndarray]:
    n_subj = subjects_k.max() + 1
    args = (subjects_k, regions_k, n_regions)
    full = _matrix(c_kk[None], *args, np.ones((1, n_subj)))[0]
    leave_out = 1.0 - np.eye(n_subj)  # row i: every subject but i
    others_irr = _matrix(np.broadcast_to(c_kk, (n_subj, *c_kk.shape)), *args, leave_out)
    own_ikr = _profiles(np.broadcast_to(c_kk, (n_subj, *c_kk.shape)), *args, leave_out)
    low, high = np.full(n_regions, np.nan), np.full(n_regions, np.nan)
    for r in range(n_regions):
        lo, hi = [], []
        for k in np.flatnonzero(regions_k == r):  # subject i's RDM of region r
            i = subjects_k[k]
            if np.isfinite(others_irr[i, r]).sum() > 3:
                lo.append(_similarity(own_ikr[i, k], others_irr[i, r], r, fn))
                hi.append(_similarity(own_ikr[i, k], full[r], r, fn))
        if lo:
            low[r], high[r] = np.nanmean(lo), np.nanmean(hi)
    return low, high


def _check_names(compare: str, similarity: str, null: str) -> None:
    if compare not in RDM_COMPARISONS:
        raise UnknownNameError("RDM comparison (compare)", compare, RDM_COMPARISONS)
    if similarity not in PATTERN_SIMILARITIES:
        raise UnknownNameError("pattern similarity", similarity, PATTERN_SIMILARITIES)
    if null not in PATTERN_NULLS:
        raise UnknownNameError("pattern null", null, PATTERN_NULLS)


def _brain(data: RegionRDMs, compare: str, similarity: str) -> tuple[BrainPatterns, dict]:
    if len(data.regions) < 4:
        raise InputError("regions", ">= 4 regions (a profile over >= 3 other regions)",
                         f"{len(data.regions)}: {data.regions}", "add regions, or split them "
                         "finer (e.g. region_by=['area', 'cre_line'])")
    subjects = np.unique(data.subjects_k)
    subjects_k = np.searchsorted(subjects, data.subjects_k)
    regions_k = np.asarray([data.regions.index(r) for r in data.regions_k])
    c_kk = comparisons(data.rdms_kss, data.rdms_kss, compare)
    n_reg = len(data.regions)
    matrix = _matrix(c_kk[None], subjects_k, regions_k, n_reg, np.ones((1, len(subjects))))[0]
    low, high = _ceiling(c_kk, subjects_k, regions_k, n_reg, PATTERN_SIMILARITIES[similarity])
    n_subj = np.asarray([len(set(subjects_k[regions_k == r])) for r in range(n_reg)])
    brain = BrainPatterns(data.regions, matrix, low, high, n_subj, compare, similarity)
    return brain, {"c_kk": c_kk, "rdms_kss": data.rdms_kss, "subjects_k": subjects_k,
                   "regions_k": regions_k, "n_subjects": len(subjects)}


def brain_alignment_patterns(regions, *, compare: str = "spearman", similarity: str = "pearson",
                             subject_by: str = "subject", **options) -> BrainPatterns:
    """The brain's region x region alignment matrix with its between-subject noise ceiling.

    Parameters
    ----------
    regions : responses with region and subject coordinates (``region_rdms`` options:
        ``region_by``, ``rdm_method``, ``min_neuroids``), a ``RegionRDMs``, or a mapping
        region -> ``RDMSet`` of per-subject RDMs.
    compare : how two RDMs are compared (``metrics.RDM_COMPARISONS``).
    similarity : how two profiles are compared (``PATTERN_SIMILARITIES``).
    """
    _check_names(compare, similarity, "stimuli")
    return _brain(as_region_rdms(regions, subject_by=subject_by, **options), compare,
                  similarity)[0]
