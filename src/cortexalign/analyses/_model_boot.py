"""Every model's score on the same stimulus (and subject) resamples, under a layer rule.

The samples feed ``stats.discriminability``: how often one model ranks above another, which
pairs the benchmark separates, rank intervals. Each model is represented by its layers' (s, d)
features (from a run's feature cache, or given in Python); on each resample every layer of every
model is compared with the target's RDMs with the pair weights of that resample
(``_resample``), so the models' scores are paired. The score of a layer is that of the ``rsa``
metric: the mean over subjects of the mean over each subject's RDMs of the comparison (responses:
one RDM, of the mean over repetitions). With at least 3 subjects the subjects are resampled too
(each drawn subject's weight counts its draws).

Other measures (CKA, encoding, any registered metric) are resampled on the same stimulus
count vectors by ``_measure_boot`` and go through the same layer rules.

Layer rules (``LAYER_RULES``): ``best`` takes the best layer on each resample, the same data it
is scored on; ``cv`` chooses on each stimulus fold's complement and scores on the fold's own
pairs (stimuli of a fold keep all their copies in it, so no pair is both chosen on and scored
on), averaging the folds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import xarray as xr

from cortexalign.analyses._layer_choice import LAYER_RULES, stimulus_folds
from cortexalign.analyses._measure_boot import layer_scores, measure_family
from cortexalign.analyses._resample import resampled_comparisons, stimulus_resamples, upper_kp
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics import METRICS, RDM_COMPARISONS, compute_rdm
from cortexalign.neural import RDMSet
from cortexalign.stats import Discriminability, discriminability

__all__ = ["ModelScoreSamples", "bootstrap_model_scores", "benchmark_discriminability"]


@dataclass(frozen=True)
class ModelScoreSamples:
    """Paired resampled scores of several models.

    Attributes
    ----------
    names : m models. scores_m : (m,) score on the full data under ``rule``.
    samples_bm : (B, m) scores on each resample. layers : model -> layer(s) chosen on the full
        data (one for ``best``; one per fold for ``cv``). rule, compare : the settings.
    subjects_resampled : whether subjects were resampled with the stimuli.
    """

    names: tuple[str, ...]
    scores_m: np.ndarray
    samples_bm: np.ndarray
    layers: dict[str, tuple[str, ...]]
    rule: str
    compare: str
    subjects_resampled: bool


def _target_rdms(target, neural_rdm_method: str, subject_by: str) -> tuple[np.ndarray, np.ndarray]:
    """(k, s, s) target RDMs and the (k,) subject index of each."""
    if isinstance(target, RDMSet):
        labels = target.groups(subject_by).astype(str)
        return target.rdms, np.unique(labels, return_inverse=True)[1]
    if isinstance(target, xr.DataArray):
        x = target.mean("repetition") if "repetition" in target.dims else target
        return compute_rdm(np.asarray(x.values), neural_rdm_method, device="cpu")[None], \
            np.zeros(1, dtype=int)
    raise InputError("target", "an RDMSet or responses DataArray", type(target).__name__,
                     "load it with cortexalign.neural.load_neural")


def _layer_features(models, n: int, ndim: int = 2
                    ) -> tuple[list[tuple[str, str]], list[np.ndarray]]:
    """(model, layer) of every layer and its (s, d) float64 features (``ndim=3``: (s, gh, gw)
    maps), checked."""
    if not isinstance(models, Mapping) or len(models) < 2:
        raise InputError("models", ">= 2 models: a mapping model -> {layer: (s, d) features}",
                         repr(type(models).__name__), "pass e.g. {'a': {'l1': x}, 'b': ...}")
    index, feats = [], []
    for model, layers in models.items():
        if not isinstance(layers, Mapping) or not layers:
            raise InputError(f"models[{model!r}]", "a non-empty mapping layer -> features",
                             type(layers).__name__, "give each model its layers' features")
        for layer, x in layers.items():
            x = np.asarray(x, dtype=np.float64)
            if x.ndim != ndim or x.shape[0] != n:
                raise InputError(f"models[{model!r}][{layer!r}]",
                                 f"{'(s, d) features' if ndim == 2 else '(s, gh, gw) maps'}, "
                                 f"s = {n}",
                                 f"shape {x.shape}", "align the rows to the target's stimuli")
            index.append((str(model), str(layer)))
            feats.append(x)
    return index, feats


def _layer_rdms(models, rdm_method: str, n: int) -> tuple[list[tuple[str, str]], np.ndarray]:
    index, feats = _layer_features(models, n)
    return index, np.stack([compute_rdm(x, rdm_method, device="cpu") for x in feats])


def _count_sets(counts_bs: np.ndarray, folds: np.ndarray | None) -> np.ndarray:
    """(B * (1 + 2F), s): each resample, then per fold its training and held-out parts."""
    if folds is None:
        return counts_bs
    sets = [counts_bs]
    for f in range(folds.max() + 1):
        sets += [counts_bs * (folds != f), counts_bs * (folds == f)]
    return np.stack(sets, axis=1).reshape(-1, counts_bs.shape[1])


def _rule_scores(layer_bl: np.ndarray, index, names, rule: str, n_folds: int,
                 ) -> tuple[np.ndarray, list[list[int]]]:
    """(B, m) model scores from (N, l) layer scores laid out as ``_count_sets``, and the chosen
    layer indices of the first resample (per fold for ``cv``)."""
    model_of = np.asarray([names.index(m) for m, _ in index])
    per = 1 if rule == "best" else 1 + 2 * n_folds
    x = layer_bl.reshape(-1, per, layer_bl.shape[1])
    out = np.empty((x.shape[0], len(names)))
    chosen: list[list[int]] = []
    for j in range(len(names)):
        cols = np.flatnonzero(model_of == j)
        if rule == "best":
            pick = np.nanargmax(np.nan_to_num(x[:, 0, cols], nan=-np.inf), axis=1)
            out[:, j] = x[np.arange(len(x)), 0, cols[pick]]
            chosen.append([int(cols[pick[0]])])
            continue
        held = np.empty((x.shape[0], n_folds))
        picks = []
        for f in range(n_folds):
            train, test = x[:, 1 + 2 * f, cols], x[:, 2 + 2 * f, cols]
            pick = np.argmax(np.nan_to_num(train, nan=-np.inf), axis=1)
            held[:, f] = test[np.arange(len(x)), pick]
            picks.append(int(cols[pick[0]]))
        with np.errstate(invalid="ignore"):
            out[:, j] = np.nanmean(held, axis=1)
        chosen.append(picks)
    return out, chosen


def bootstrap_model_scores(models: Mapping[str, Mapping[str, np.ndarray]], target, *,
                           rule: str = "best", rdm_method: str = "correlation",
                           compare: str = "spearman", neural_rdm_method: str | None = None,
                           subject_by: str = "subject", n_folds: int = 5,
                           n_bootstrap: int = 1000, bootstrap_subjects: bool = True,
                           seed: int = 0, metric: str = "rsa",
                           metric_options: Mapping | None = None, generic_n_bootstrap: int = 50,
                           max_seconds: float = 600.0) -> ModelScoreSamples:
    """Paired stimulus (and subject) bootstrap of every model's score under a layer rule.

    Parameters
    ----------
    models : model -> layer -> (s, d) features, rows in the target's stimulus order ((s, gh, gw)
        maps for the ``map_*`` metrics, whose ``metric_options`` hold ``stimuli`` and
        ``pad_square``: a bool or a mapping model -> bool).
    target : ``RDMSet`` (per-subject RDMs; ``subject_by`` descriptor) or responses.
    rule : ``best`` or ``cv`` (``LAYER_RULES``); ``n_folds`` and ``seed`` set the folds.
    rdm_method, compare, neural_rdm_method : as for the ``rsa`` metric.
    n_bootstrap, seed : resamples (>= 2) and their seed (the same for every model: paired).
    bootstrap_subjects : resample subjects too, when the target has >= 3.
    metric, metric_options : the measure (a key of ``metrics.METRICS``) and its options; ``rsa``
        takes the arguments above instead. Other measures are resampled by their family
        (``_measure_boot``: CKA, encoding and map measures exactly; others with ``metrics.score`` on each
        resample, at most ``generic_n_bootstrap`` resamples, refused when estimated above
        ``max_seconds``); responses have no subjects to resample.
    """
    if rule not in LAYER_RULES:
        raise UnknownNameError("layer selection rule", str(rule), LAYER_RULES)
    if compare not in RDM_COMPARISONS:
        raise UnknownNameError("RDM comparison (compare)", str(compare), RDM_COMPARISONS)
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 2:
        raise InputError("n_bootstrap", "an int >= 2", repr(n_bootstrap), "e.g. 1000")
    options = dict(metric_options or {})
    if measure_family(str(metric), options) != "rsa":
        return _measure_scores(models, target, str(metric), options, rule=rule, n_folds=n_folds,
                               n_bootstrap=n_bootstrap, seed=seed, max_seconds=max_seconds,
                               generic_n_bootstrap=generic_n_bootstrap)
    target_kss, subj_k = _target_rdms(target, neural_rdm_method or rdm_method, subject_by)
    s = target_kss.shape[1]
    index, layer_lss = _layer_rdms(models, rdm_method, s)
    names = list(dict.fromkeys(m for m, _ in index))
    folds = stimulus_folds(s, n_folds, seed) if rule == "cv" else None
    counts = np.concatenate([np.ones((1, s)), stimulus_resamples(s, n_bootstrap, seed)])
    comps = resampled_comparisons(upper_kp(layer_lss), upper_kp(target_kss), compare,
                                  _count_sets(counts, folds))  # (N, l, k)
    n_subj = subj_k.max() + 1
    resample_subjects = bool(bootstrap_subjects and n_subj >= 3)
    c_bS = np.ones((len(counts), n_subj))
    if resample_subjects:
        rng = np.random.default_rng([seed, 2])
        c_bS[1:] = [np.bincount(rng.integers(0, n_subj, n_subj), minlength=n_subj)
                    for _ in range(n_bootstrap)]
    per_subject = np.bincount(subj_k, minlength=n_subj)
    g_bk = c_bS[:, subj_k] / per_subject[subj_k]
    g_bk /= g_bk.sum(axis=1, keepdims=True)
    per = 1 if folds is None else 1 + 2 * n_folds
    layer_nl = np.einsum("nlk,nk->nl", comps, np.repeat(g_bk, per, axis=0))
    scores, chosen = _rule_scores(layer_nl, index, names, rule, n_folds)
    return ModelScoreSamples(
        names=tuple(names), scores_m=scores[0], samples_bm=scores[1:],
        layers={m: tuple(index[i][1] for i in chosen[j]) for j, m in enumerate(names)},
        rule=rule, compare=compare, subjects_resampled=resample_subjects)


def _n_stimuli(target) -> int:
    if isinstance(target, RDMSet):
        return len(target.stimulus_ids)
    if isinstance(target, xr.DataArray) and "stimulus" in target.dims:
        return int(target.sizes["stimulus"])
    raise InputError("target", "an RDMSet or responses DataArray", type(target).__name__,
                     "load it with cortexalign.neural.load_neural")


def _measure_scores(models, target, metric: str, options: dict, *, rule: str, n_folds: int,
                    n_bootstrap: int, seed: int, max_seconds: float,
                    generic_n_bootstrap: int) -> ModelScoreSamples:
    """``bootstrap_model_scores`` for a measure other than ``rsa`` (``_measure_boot``)."""
    if metric not in METRICS:
        raise UnknownNameError("metric", metric, METRICS)
    s = _n_stimuli(target)
    family = measure_family(metric, options)
    index, feats = _layer_features(models, s, 3 if family == "maps" else 2)
    names = list(dict.fromkeys(m for m, _ in index))
    if isinstance(options.get("pad_square"), Mapping):  # per model -> per layer
        options = {**options, "pad_square": [bool(options["pad_square"].get(m, False))
                                             for m, _ in index]}
    if family == "generic":
        n_bootstrap = max(2, min(n_bootstrap, int(generic_n_bootstrap)))
    folds = stimulus_folds(s, n_folds, seed) if rule == "cv" else None
    counts = np.concatenate([np.ones((1, s)), stimulus_resamples(s, n_bootstrap, seed)])
    layer_nl = layer_scores(metric, feats, target, _count_sets(counts, folds), seed=seed,
                            options=options, max_seconds=max_seconds)
    scores, chosen = _rule_scores(layer_nl, index, names, rule, n_folds)
    return ModelScoreSamples(
        names=tuple(names), scores_m=scores[0], samples_bm=scores[1:],
        layers={m: tuple(index[i][1] for i in chosen[j]) for j, m in enumerate(names)},
        rule=rule, compare=metric, subjects_resampled=False)


def benchmark_discriminability(models: Mapping[str, Mapping[str, np.ndarray]], target, *,
                               rules: tuple[str, ...] = LAYER_RULES, alpha: float = 0.05,
                               correction: str = "fdr_bh", ci_level: float = 0.95,
                               **options) -> dict[str, tuple[ModelScoreSamples, Discriminability]]:
    """How well a target separates ``models`` under each layer rule: ``bootstrap_model_scores``
    (``options``) then ``stats.discriminability`` (``alpha``, ``correction``, ``ci_level``)."""
    out = {}
    for rule in rules:
        samples = bootstrap_model_scores(models, target, rule=rule, **options)
        out[rule] = (samples, discriminability(samples.samples_bm, samples.scores_m,
                                               samples.names, alpha=alpha,
                                               correction=correction, ci_level=ci_level))
    return out
