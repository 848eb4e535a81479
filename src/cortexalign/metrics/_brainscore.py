"""Brain-Score's protocols, reproduced so that a score can sit next to a published Brain-Score number.

``protocol="brainscore"`` on ``ridge``, ``pls``, ``rsa`` and ``cka_linear`` (and the measures
``neuron_to_neuron``, ``rsa_cv`` and ``cka_cv``) follows brain-score/vision 2.x
(``metrics/regression_correlation``, ``metric_helpers/transformations``,
``metrics/internal_consistency``, ``benchmark_helpers/neural_common``), written from their
definitions:

- **Splits**: 10 random splits of the stimuli, 90% train / 10% test, stratified by the stimulus
  coordinate ``object_name`` when the responses have it (``StratifiedShuffleSplit``, else
  ``ShuffleSplit``), ``random_state=1``.
- **Regression** fitted on each split's training stimuli, on responses averaged over repetitions:
  ``pls`` = ``PLSRegression(n_components=25, scale=False)``, ``ridge`` = ``Ridge(alpha=1)`` (one
  fixed penalty; ours chooses one per neuroid), ``neuron_to_neuron`` = for each neuroid the
  model unit with the highest Pearson r on the training stimuli.
- **Per split**: Pearson r per neuroid on the test stimuli, then the median over neuroids.
  **Score** = mean over splits; **error** = standard deviation over splits / sqrt(splits).
- **Ceiling** (internal consistency): 10 random halvings of the repetitions (``ShuffleSplit``,
  ``train_size=0.5``, ``random_state=1``); per halving the Pearson r per neuroid between the two
  half-averages across stimuli, Spearman-Brown corrected (n = 2), median over neuroids; mean over
  halvings. RSA's ceiling is Brain-Score's ``RSACeiling`` when the neuroids carry a ``subject``
  coordinate (each subject's RDM against the mean of the others' RDMs, Spearman, averaged).
- **Ceiled score** = ``(score / ceiling) ** 2`` (Brain-Score's ``explained_variance``), kept in
  ``extra["ceiled"]``; ``Score.normalized`` stays ``score / ceiling``.
- ``rsa_cv`` / ``cka_cv``: the measure computed on the test part of 10 splits with
  ``test_size=0.9`` (Brain-Score's ``RDMCrossValidated`` / ``CKACrossValidated``), mean and error
  over splits.

Ours (the default protocol) pools held-out predictions over 5 folds, picks a ridge penalty per
neuroid, and normalises per neuroid: better estimates for small stimulus sets and no fixed
penalty that favours some feature scales. Brain-Score's protocol is the one to use when a number
must be compared with the Brain-Score leaderboard.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import xarray as xr

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics._score import Score

__all__ = ["PROTOCOLS", "BRAINSCORE_CITATION", "brainscore_splits", "pearson_per_column",
           "brainscore_regression", "brainscore_internal_consistency", "brainscore_rsa_ceiling",
           "brainscore_regression_score", "brainscore_test_only_score", "REGRESSIONS",
           "check_protocol", "with_protocol", "brainscore_rdm_similarity", "brainscore_linear_cka",
           "neuron_to_neuron_fit"]

#: Scoring protocols a metric can follow.
PROTOCOLS = ("cortexalign", "brainscore")
BRAINSCORE_CITATION = ("Schrimpf et al. (2018). Brain-Score: which artificial neural network for "
                       "object recognition is most brain-like? bioRxiv 407007; brain-score/vision")
N_SPLITS, RANDOM_STATE = 10, 1


def check_protocol(protocol: str) -> str:
    """``protocol`` if it is one of :data:`PROTOCOLS`; else an error with the close matches."""
    if protocol not in PROTOCOLS:
        raise UnknownNameError("protocol", str(protocol), PROTOCOLS)
    return protocol


def brainscore_splits(n: int, labels: np.ndarray | None = None, *, n_splits: int = N_SPLITS,
                      train_size: float | None = None, test_size: float | None = None,
                      random_state: int = RANDOM_STATE) -> list[tuple[np.ndarray, np.ndarray]]:
    """Brain-Score's ``Split``: (train, test) index pairs of ``n`` stimuli.

    Stratified by ``labels`` (e.g. ``object_name``) when given; ``train_size`` 0.9 when neither
    size is given, as Brain-Score's default.
    """
    from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

    if train_size is None and test_size is None:
        train_size = 0.9
    kind = ShuffleSplit if labels is None else StratifiedShuffleSplit
    splitter = kind(n_splits=n_splits, train_size=train_size, test_size=test_size,
                    random_state=random_state)
    args = [] if labels is None else [np.asarray(labels)]
    try:
        return list(splitter.split(np.zeros(n), *args))
    except ValueError as err:  # e.g. fewer test stimuli than categories to stratify by
        raise InputError("stratify_by", "categories that each split can hold (test stimuli >= "
                         "categories, >= 2 stimuli per category)", str(err),
                         "pass stratify_by=None (unstratified) or a coarser coordinate") from None


def pearson_per_column(a_sn: np.ndarray, b_sn: np.ndarray) -> np.ndarray:
    """(n,) Pearson r between matching columns (``scipy.stats.pearsonr`` per column; NaN for a
    constant column)."""
    ac, bc = a_sn - a_sn.mean(0), b_sn - b_sn.mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ac * bc).sum(0) / np.sqrt((ac**2).sum(0) * (bc**2).sum(0))


def _fit_pls(x_tr, y_tr, x_te, n_components: int = 25):
    from sklearn.cross_decomposition import PLSRegression

    return PLSRegression(n_components=n_components, scale=False).fit(x_tr, y_tr).predict(x_te)


def _fit_ridge(x_tr, y_tr, x_te, alpha: float = 1.0):
    from sklearn.linear_model import Ridge

    return Ridge(alpha=alpha).fit(x_tr, y_tr).predict(x_te)


def _fit_linear(x_tr, y_tr, x_te):
    from sklearn.linear_model import LinearRegression

    return LinearRegression().fit(x_tr, y_tr).predict(x_te)


def neuron_to_neuron_fit(x_tr: np.ndarray, y_tr: np.ndarray) -> np.ndarray:
    """(n,) index of the model unit with the highest Pearson r with each neuroid on the training
    stimuli (units that do not vary are never chosen)."""
    xc = x_tr - x_tr.mean(0)
    yc = y_tr - y_tr.mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r_nd = (yc.T @ xc) / np.outer(np.sqrt((yc**2).sum(0)), np.sqrt((xc**2).sum(0)))
    r_nd[~np.isfinite(r_nd)] = -np.inf
    return np.argmax(r_nd, axis=1)


def _fit_neuron_to_neuron(x_tr, y_tr, x_te):
    return x_te[:, neuron_to_neuron_fit(x_tr, y_tr)]


#: Brain-Score's regressions: ``f(x_train, y_train, x_test) -> y_test predicted``.
REGRESSIONS: dict[str, Callable[..., np.ndarray]] = {
    "pls": _fit_pls, "ridge": _fit_ridge, "linear": _fit_linear,
    "neuron_to_neuron": _fit_neuron_to_neuron}


def _labels(target: xr.DataArray, stratify_by: str | None) -> np.ndarray | None:
    if stratify_by is None:
        return None
    if stratify_by in target.coords and target[stratify_by].dims == ("stimulus",):
        return np.asarray(target[stratify_by].values)
    if stratify_by != "object_name":  # asked for by name: it must be there
        raise InputError("stratify_by", "a coordinate on the stimulus dim of the responses",
                         repr(stratify_by), f"one of {sorted(c for c in target.coords)} or None")
    return None


def _averaged(target: xr.DataArray) -> np.ndarray:
    vals = np.asarray(target.values, dtype=np.float64)
    if vals.ndim == 3:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            vals = np.nanmean(vals, axis=2)
    return vals


def brainscore_regression(x_sd: np.ndarray, y_sn: np.ndarray, regression: str = "pls", *,
                          labels: np.ndarray | None = None,
                          n_splits: int = N_SPLITS) -> np.ndarray:
    """(splits, n) Pearson r per split and neuroid of Brain-Score's cross-regressed correlation."""
    if regression not in REGRESSIONS:
        raise UnknownNameError("regression", regression, REGRESSIONS)
    fit = REGRESSIONS[regression]
    out = []
    for tr, te in brainscore_splits(len(x_sd), labels, n_splits=n_splits):
        pred = np.asarray(fit(x_sd[tr], y_sn[tr], x_sd[te])).reshape(len(te), -1)
        out.append(pearson_per_column(pred, y_sn[te]))
    return np.stack(out)


def _halves_consistencies(measure, reps_snr: np.ndarray, n_splits: int) -> list:
    """Spearman-Brown corrected ``measure(half1, half2)`` for each of Brain-Score's repetition
    halvings (``ShuffleSplit(n_splits, train_size=0.5, random_state=1)`` over repetitions)."""
    from sklearn.model_selection import ShuffleSplit

    r = reps_snr.shape[2]
    if r < 2:
        raise InputError("target", "responses with at least 2 repetitions for the ceiling",
                         f"{r} repetition", "load trial-resolved responses")
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for a, b in ShuffleSplit(n_splits=n_splits, train_size=0.5,
                                 random_state=RANDOM_STATE).split(np.zeros(r)):
            c = measure(np.nanmean(reps_snr[:, :, a], 2), np.nanmean(reps_snr[:, :, b], 2))
            out.append(2 * c / (1 + c))
    return out


def brainscore_internal_consistency(reps_snr: np.ndarray, *, n_splits: int = N_SPLITS,
                                    per_neuroid: bool = False) -> float | np.ndarray:
    """Brain-Score's ``InternalConsistency`` of (s, n, r) trial responses: the mean over
    repetition halvings of the median over neuroids of the Spearman-Brown corrected split-half r
    (``per_neuroid``: the (halvings, n) corrected values instead)."""
    raw_hn = np.stack(_halves_consistencies(pearson_per_column, reps_snr, n_splits))
    if per_neuroid:
        return raw_hn
    return float(np.mean(np.nanmedian(raw_hn, axis=1)))


def brainscore_rsa_ceiling(rdms_kss: np.ndarray) -> float:
    """Brain-Score's ``RSACeiling``: each subject's RDM against the mean of the other subjects'
    RDMs (Spearman of the upper triangles), averaged over subjects. No Spearman-Brown step."""
    from scipy.stats import spearmanr

    k, s = rdms_kss.shape[0], rdms_kss.shape[1]
    if k < 2:
        raise InputError("target", "responses of at least 2 subjects (neuroid coordinate "
                         "'subject') for the inter-subject RSA ceiling", f"{k} subject",
                         "add a 'subject' coordinate, or use the internal-consistency ceiling")
    iu = np.triu_indices(s, 1)
    vals = []
    for i in range(k):
        others = np.delete(rdms_kss, i, axis=0).mean(0)
        vals.append(spearmanr(rdms_kss[i][iu], others[iu])[0])
    return float(np.mean(vals))


def _score(per_split: np.ndarray, ceiling: float, n_stimuli: int, extra: dict) -> Score:
    center = float(np.mean(per_split))
    error = float(np.std(per_split) / math.sqrt(len(per_split)))
    ceiled = (center / ceiling) ** 2 if ceiling and np.isfinite(ceiling) else math.nan
    extra = {**extra, "protocol": "brainscore", "error": error, "per_split": per_split,
             "ceiled": ceiled, "ci_over": "none: Brain-Score reports the standard error over "
                                          "splits (extra['error'])"}
    return Score(center, ceiling_low=ceiling, ceiling_high=ceiling, n_stimuli=n_stimuli,
                 extra=extra)


def brainscore_regression_score(x_sd: np.ndarray, target: xr.DataArray, regression: str, *,
                                stratify_by: str | None = "object_name",
                                n_splits: int = N_SPLITS) -> Score:
    """Brain-Score's cross-regressed correlation of ``x_sd`` with ``target`` and its ceiling.

    ``extra`` keeps the raw (splits, neuroids) r values (``raw``), the per-split medians
    (``per_split``), the standard error (``error``) and the ceiled score (``ceiled``).
    """
    y = _averaged(target)
    raw = brainscore_regression(x_sd, y, regression, labels=_labels(target, stratify_by),
                                n_splits=n_splits)
    per_split = np.nanmedian(raw, axis=1)
    vals = np.asarray(target.values, dtype=np.float64)
    ceiling = (brainscore_internal_consistency(vals, n_splits=n_splits) if vals.ndim == 3
               else math.nan)
    return _score(per_split, ceiling, len(x_sd), {"raw": raw, "regression": regression,
                                                  "n_neuroids": int(y.shape[1])})


def brainscore_test_only_score(measure: Callable[[np.ndarray, np.ndarray], float],
                               x_sd: np.ndarray, target: xr.DataArray, *,
                               stratify_by: str | None = "object_name",
                               n_splits: int = N_SPLITS, test_size: float = 0.9,
                               name: str = "", random_state: int = RANDOM_STATE) -> Score:
    """Brain-Score's ``TestOnlyCrossValidation``: ``measure`` on the test part of each split."""
    y = _averaged(target)
    splits = brainscore_splits(len(x_sd), _labels(target, stratify_by), n_splits=n_splits,
                               test_size=test_size, random_state=random_state)
    per_split = np.array([measure(x_sd[te], y[te]) for _, te in splits])
    return _score(per_split, math.nan, len(x_sd), {"measure": name})


def _rdm_corr(x_sd: np.ndarray) -> np.ndarray:
    return 1.0 - np.corrcoef(x_sd)


def _spearman_upper(a_ss: np.ndarray, b_ss: np.ndarray) -> float:
    from scipy.stats import spearmanr

    iu = np.triu_indices(a_ss.shape[0], 1)
    return float(spearmanr(a_ss[iu], b_ss[iu])[0])


def brainscore_rdm_similarity(x_sd: np.ndarray, y_sn: np.ndarray) -> float:
    """Brain-Score's ``RDMMetric``: Spearman r of the upper triangles of the 1 - Pearson RDMs."""
    return _spearman_upper(_rdm_corr(x_sd), _rdm_corr(y_sn))


def brainscore_linear_cka(x_sd: np.ndarray, y_sn: np.ndarray) -> float:
    """Brain-Score's ``linear_CKA`` (biased HSIC of the centred linear kernels)."""
    def hsic(a, b):
        ka, kb = a @ a.T, b @ b.T
        ka = ka - ka.mean(0) - ka.mean(1)[:, None] + ka.mean()
        kb = kb - kb.mean(0) - kb.mean(1)[:, None] + kb.mean()
        return float(np.sum(ka * kb))

    return hsic(x_sd, y_sn) / math.sqrt(hsic(x_sd, x_sd) * hsic(y_sn, y_sn))


def _halves_consistency(measure, reps_snr: np.ndarray, n_splits: int = N_SPLITS) -> float:
    """Brain-Score's ``InternalConsistency`` with a whole-population ``measure``: the mean over
    repetition halvings of the Spearman-Brown corrected measure between the half-averages."""
    return float(np.mean(_halves_consistencies(measure, reps_snr, n_splits)))


def _population_score(measure, x_sd, target: xr.DataArray, name: str) -> Score:
    if not isinstance(target, xr.DataArray):
        raise InputError("target", "a responses DataArray for protocol='brainscore' (Brain-Score "
                         "scores response assemblies)", type(target).__name__,
                         "pass responses, or use protocol='cortexalign' for an RDMSet")
    y = _averaged(target)
    value = measure(x_sd, y)
    vals = np.asarray(target.values, dtype=np.float64)
    ceiling, ceiling_kind = math.nan, "none (no repetitions)"
    if name == "rsa" and "subject" in target.coords and target["subject"].dims == ("neuroid",) \
            and len(np.unique(target["subject"].values)) >= 2:
        subjects = np.unique(target["subject"].values)
        rdms = np.stack([_rdm_corr(y[:, target["subject"].values == s]) for s in subjects])
        ceiling, ceiling_kind = brainscore_rsa_ceiling(rdms), "RSACeiling (inter-subject)"
    elif vals.ndim == 3 and vals.shape[2] >= 2:
        ceiling = _halves_consistency(measure, vals)
        ceiling_kind = "InternalConsistency (repetition halves, Spearman-Brown)"
    score = _score(np.array([value]), ceiling, len(x_sd), {"measure": name,
                                                             "ceiling_kind": ceiling_kind})
    score.extra["error"] = math.nan  # one value: Brain-Score's non-cross-validated measures
    return score


def _as_array(features_sd) -> np.ndarray:
    import torch

    if isinstance(features_sd, torch.Tensor):
        features_sd = features_sd.detach().cpu().numpy()
    x = np.asarray(features_sd, dtype=np.float64)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise InputError("features_sd", "a finite (s, d) array", f"shape {x.shape}",
                         "flatten and clean the features")
    return x


def _brainscore_call(name: str, features_sd, target, stratify_by) -> Score:
    x = _as_array(features_sd)
    if not isinstance(target, xr.DataArray):
        raise InputError("target", "a responses DataArray for protocol='brainscore'",
                         type(target).__name__, "pass responses, or protocol='cortexalign'")
    if len(x) != target.sizes["stimulus"]:
        raise InputError("features_sd", f"{target.sizes['stimulus']} stimuli (rows), as many as "
                         "the neural responses", f"{len(x)}", "align them by stimulus_id")
    if name in REGRESSIONS:
        return brainscore_regression_score(x, target, name, stratify_by=stratify_by)
    if name == "rsa":
        return _population_score(brainscore_rdm_similarity, x, target, "rsa")
    if name == "cka_linear":
        return _population_score(brainscore_linear_cka, x, target, "cka_linear")
    raise UnknownNameError("metric with a Brain-Score protocol", name,
                           [*REGRESSIONS, "rsa", "cka_linear"])


#: options that keep their meaning under protocol="brainscore" (the rest would be ignored)
_BRAINSCORE_OK = {"device", "seed", "ci_level"}


def with_protocol(name: str):
    """Decorator for a metric ``f(features_sd, target, **options)``: adds the options
    ``protocol`` (:data:`PROTOCOLS`; ``"brainscore"`` dispatches to Brain-Score's protocol for
    metric ``name``) and ``stratify_by`` (the stimulus coordinate the Brain-Score splits are
    stratified by; ``None``: unstratified)."""
    import functools
    import inspect

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(features_sd, target, *, protocol: str = "cortexalign",
                    stratify_by: str | None = "object_name", **options):
            check_protocol(protocol)
            if protocol == "cortexalign":
                return fn(features_sd, target, **options)
            extra = sorted(k for k, v in options.items() if k not in _BRAINSCORE_OK
                           and not (k == "n_bootstrap" and not v))
            if extra:
                raise InputError("options", "no options beyond protocol and stratify_by with "
                                 "protocol='brainscore' (its splits, regression and ceiling are "
                                 "fixed; the interval is the standard error over splits)",
                                 f"{extra}", "drop them, or use protocol='cortexalign'")
            return _brainscore_call(name, features_sd, target, stratify_by)

        sig = inspect.signature(fn)
        params = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        params += [inspect.Parameter("protocol", inspect.Parameter.KEYWORD_ONLY,
                                     default="cortexalign", annotation=str),
                   inspect.Parameter("stratify_by", inspect.Parameter.KEYWORD_ONLY,
                                     default="object_name")]
        params += [p for p in sig.parameters.values() if p.kind is p.VAR_KEYWORD]
        wrapper.__signature__ = sig.replace(parameters=params)
        return wrapper

    return deco
