"""A model's layers put in each region's place: alignment pattern similarity, its permutation
test and bootstrap interval (definitions in ``_patterns``)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from cortexalign.analyses._patterns import (
    PATTERN_SIMILARITIES,
    PatternAnalysis,
    PatternScore,
    _brain,
    _check_names,
    _matrix,
    _profiles,
    _similarity,
)
from cortexalign.analyses._regions import as_region_rdms
from cortexalign.analyses._resample import (
    comparisons,
    resampled_comparisons,
    stimulus_resamples,
    upper_kp,
)
from cortexalign.errors import InputError
from cortexalign.metrics import compute_rdm
from cortexalign.stats import check_ci_level, percentile_interval

__all__ = ["alignment_patterns", "model_rdms"]


def model_rdms(features: Mapping[str, np.ndarray], rdm_method: str, n_stimuli: int,
               ) -> tuple[list[str], np.ndarray]:
    """Layer names and their (l, s, s) RDMs from (s, d) features (or (s, s) RDMs when
    ``rdm_method="precomputed"``), rows in the neural data's stimulus order."""
    if not isinstance(features, Mapping) or not features:
        raise InputError("features", "a non-empty mapping layer -> (s, d) features",
                         type(features).__name__, "pass e.g. {'layer3': feats_sd}")
    rdms = []
    for layer, x in features.items():
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != n_stimuli:
            raise InputError(f"features[{layer!r}]", f"an (s, d) array with s = {n_stimuli} "
                             "(the neural data's stimuli, same order)", f"shape {x.shape}",
                             "align the rows to the neural stimulus ids")
        rdms.append(x if rdm_method == "precomputed" else compute_rdm(x, rdm_method,
                                                                      device="cpu"))
    return [str(k) for k in features], np.stack(rdms)


def _assignment(assign, layers: list[str], regions: tuple[str, ...]) -> dict[str, int | None]:
    if assign is None:
        return {r: None for r in regions}
    if not isinstance(assign, Mapping):
        raise InputError("assign", "None (each region gets the layer with the best pointwise "
                         "score) or a mapping region -> layer", repr(assign)[:60],
                         "pass e.g. {'V4': 'layer3'}")
    out = {}
    for region, layer in assign.items():
        if region not in regions:
            raise InputError("assign", f"regions among {list(regions)}", repr(region),
                             "name a region of the neural data")
        if layer not in layers:
            raise InputError(f"assign[{region!r}]", f"a layer among {layers}", repr(layer),
                             "name a layer of the features")
        out[str(region)] = layers.index(layer)
    return out


def _scores_of(m_blr: np.ndarray, a_brr: np.ndarray, regions, assignment, fn,
               keep: np.ndarray | None = None) -> np.ndarray:
    """(b, n_assigned) similarity of the assigned (or best) layer's profile with each region's."""
    out = np.empty((m_blr.shape[0], len(assignment)))
    for j, (region, fixed) in enumerate(assignment.items()):
        r = regions.index(region)
        layer = np.nanargmax(m_blr[:, :, r], axis=1) if fixed is None else \
            np.full(m_blr.shape[0], fixed)
        prof = m_blr[np.arange(m_blr.shape[0]), layer]  # (b, r)
        out[:, j] = _similarity(prof, a_brr[:, r], r, fn, keep_r=np.isfinite(a_brr[0, r]) if
                                keep is None else keep[r])
    return out


def _unit_vectors(model_lss, target_kss, compare: str):
    """Upper triangles as unit vectors (centred; ranked first for Spearman) whose dot products
    are the ``compare`` comparison, or None for comparisons without that form."""
    if compare not in ("pearson", "spearman", "cosine"):
        return None
    from scipy.stats import rankdata

    out = []
    for rdms in (model_lss, target_kss):
        v = upper_kp(rdms).numpy()
        if compare == "spearman":
            v = rankdata(v, axis=1)
        if compare != "cosine":
            v = v - v.mean(axis=1, keepdims=True)
        out.append(v / np.linalg.norm(v, axis=1, keepdims=True))
    return tuple(out)


def _permutation_null(model_lss, parts, brain, assignment, fn, null, n_perm, seed,
                      chunk: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ones = np.ones((1, parts["n_subjects"]))
    args = (parts["subjects_k"], parts["regions_k"], len(brain.regions))
    if null == "regions":
        cm = comparisons(model_lss, parts["rdms_kss"], brain.compare)
        m_lr = _profiles(cm[None], *args, ones)[0]
        out = np.empty((n_perm, len(assignment)))
        for j, (region, fixed) in enumerate(assignment.items()):
            r = brain.regions.index(region)
            layer = int(np.nanargmax(m_lr[:, r])) if fixed is None else fixed
            others = np.flatnonzero(np.arange(len(brain.regions)) != r)
            prof = np.repeat(m_lr[layer][None], n_perm, axis=0)
            for p in range(n_perm):
                prof[p, others] = prof[p, rng.permutation(others)]
            out[:, j] = _similarity(prof, brain.matrix_rr[r][None], r, fn)
        return out
    s, n_layers = model_lss.shape[1], model_lss.shape[0]
    fast = _unit_vectors(model_lss, parts["rdms_kss"], brain.compare)
    iu = np.triu_indices(s, 1)
    pair = np.zeros((s, s), dtype=np.int64)
    pair[iu] = pair.T[iu] = np.arange(len(iu[0]))
    parts_null = []
    for start in range(0, n_perm, chunk):
        perms = [rng.permutation(s) for _ in range(min(chunk, n_perm - start))]
        if fast is not None:  # a permuted RDM's entries are its entries permuted: no re-ranking
            model_lp, target_kp = fast
            cm = np.concatenate([model_lp[:, pair[p[iu[0]], p[iu[1]]]] @ target_kp.T
                                 for p in perms])
        else:
            stack = np.concatenate([model_lss[:, p][:, :, p] for p in perms])
            cm = comparisons(stack, parts["rdms_kss"], brain.compare)
        m_blr = _profiles(cm.reshape(len(perms), n_layers, -1), *args,
                          np.ones((len(perms), parts["n_subjects"])))
        a_brr = np.broadcast_to(brain.matrix_rr, (len(perms), *brain.matrix_rr.shape))
        parts_null.append(_scores_of(m_blr, a_brr, brain.regions, assignment, fn))
    return np.concatenate(parts_null)


def _bootstrap(model_lss, parts, brain, assignment, fn, n_boot, seed, subjects: bool):
    counts = stimulus_resamples(model_lss.shape[1], n_boot, seed)
    n_subj = parts["n_subjects"]
    if subjects and n_subj >= 3:
        rng = np.random.default_rng([seed, 1])
        c_bS = np.stack([np.bincount(rng.integers(0, n_subj, n_subj), minlength=n_subj)
                         for _ in range(n_boot)]).astype(float)
    else:
        c_bS = np.ones((n_boot, n_subj))
    vec_k, vec_l = upper_kp(parts["rdms_kss"]), upper_kp(model_lss)
    c_bkk = resampled_comparisons(vec_k, vec_k, brain.compare, counts)
    cm_blk = resampled_comparisons(vec_l, vec_k, brain.compare, counts)
    args = (parts["subjects_k"], parts["regions_k"], len(brain.regions))
    a_brr = _matrix(c_bkk, *args, c_bS)
    return _scores_of(_profiles(cm_blk, *args, c_bS), a_brr, brain.regions, assignment, fn,
                      keep=np.isfinite(brain.matrix_rr))


def alignment_patterns(features: Mapping[str, np.ndarray], regions, *, assign=None,
                       rdm_method: str = "correlation", compare: str = "spearman",
                       similarity: str = "pearson", null: str = "stimuli",
                       n_permutations: int = 1000, n_bootstrap: int = 0,
                       bootstrap_subjects: bool = True, seed: int = 0, ci_level: float = 0.95,
                       subject_by: str = "subject", **region_options) -> PatternAnalysis:
    """Alignment pattern analysis of one model: each region's pattern beside the profile of the
    layer put in its place (Höfling et al. 2026; definitions in ``analyses._patterns``).

    Parameters
    ----------
    features : layer -> (s, d) features, rows in the neural data's stimulus order (or (s, s)
        RDMs with ``rdm_method="precomputed"``).
    regions : responses with region and subject coordinates (with ``region_by``,
        ``min_neuroids`` and the ``rdm_method`` for the neural RDMs as ``region_options``
        ``neural_rdm_method``), a ``RegionRDMs``, or a mapping region -> ``RDMSet``.
    assign : None (every region gets the layer with the best pointwise score, chosen again in
        every permutation and resample) or a mapping region -> layer (only those regions).
    rdm_method : model RDM method. compare : RDM comparison. similarity : profile comparison.
    null : ``stimuli`` or ``regions`` (``PATTERN_NULLS``). n_permutations : 0 for no test.
    n_bootstrap : stimulus (and subject) resamples for the interval; 0 for none.
    bootstrap_subjects : resample subjects too (when there are >= 3).

    Returns
    -------
    PatternAnalysis : the brain's matrix and ceilings, one ``PatternScore`` per region scored.
    """
    _check_names(compare, similarity, null)
    check_ci_level(ci_level)
    for name, v in (("n_permutations", n_permutations), ("n_bootstrap", n_bootstrap)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
            raise InputError(name, "a non-negative int", repr(v), f"e.g. {name}=1000")
    neural_method = region_options.pop("neural_rdm_method", rdm_method if rdm_method !=
                                       "precomputed" else "correlation")
    data = as_region_rdms(regions, subject_by=subject_by, rdm_method=neural_method,
                          **region_options)
    brain, parts = _brain(data, compare, similarity)
    layers, model_lss = model_rdms(features, rdm_method, len(data.stimulus_ids))
    assignment = _assignment(assign, layers, brain.regions)
    fn = PATTERN_SIMILARITIES[similarity]
    args = (parts["subjects_k"], parts["regions_k"], len(brain.regions))
    cm_lk = comparisons(model_lss, data.rdms_kss, compare)
    m_lr = _profiles(cm_lk[None], *args, np.ones((1, parts["n_subjects"])))[0]
    observed = _scores_of(m_lr[None], brain.matrix_rr[None], brain.regions, assignment, fn)[0]
    null_pn = (_permutation_null(model_lss, parts, brain, assignment, fn, null, n_permutations,
                                 seed) if n_permutations else None)
    boot_bn = (_bootstrap(model_lss, parts, brain, assignment, fn, n_bootstrap, seed,
                          bootstrap_subjects) if n_bootstrap else None)
    scores = []
    for j, (region, fixed) in enumerate(assignment.items()):
        r = brain.regions.index(region)
        layer = int(np.nanargmax(m_lr[:, r])) if fixed is None else fixed
        p = np.nan if null_pn is None else \
            float((1 + np.sum(null_pn[:, j] >= observed[j] - 1e-12)) / (1 + len(null_pn)))
        lo, hi = (np.nan, np.nan) if boot_bn is None else percentile_interval(boot_bn[:, j],
                                                                              ci_level)
        scores.append(PatternScore(
            region=region, layer=layers[layer], assigned_by="best_score" if fixed is None
            else "user", value=float(observed[j]), pointwise=float(m_lr[layer, r]),
            profile_r=m_lr[layer].copy(), brain_profile_r=brain.matrix_rr[r].copy(),
            ci_low=lo, ci_high=hi, p_value=p, ceiling_low=float(brain.ceiling_low_r[r]),
            ceiling_high=float(brain.ceiling_high_r[r]),
            extra={"null": null, "n_permutations": int(n_permutations),
                   "n_bootstrap": int(n_bootstrap), "ci_level": ci_level,
                   "rdm_method": rdm_method, "compare": compare, "similarity": similarity,
                   "bootstrap_subjects": bool(bootstrap_subjects and parts["n_subjects"] >= 3)}))
    return PatternAnalysis(brain, tuple(scores))
