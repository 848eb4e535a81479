"""Encoding models: features -> every neuroid, cross-validated by stimulus (ridge, PLS).

Protocol (ours, documented): outer K-fold over stimuli (shuffled, seeded); in each fold the model
is fitted on the training stimuli only and predicts the held-out ones, so every stimulus is
predicted exactly once by a model that never saw it. Pearson r and R^2 per neuroid are computed on
the pooled held-out predictions; the summary is the median over neuroids. Pooling puts chance
below 0: an unpredictable neuroid is predicted near each fold's training mean, which is
anti-correlated with the held-out stimuli (median r -0.23 at 64 stimuli, -0.17 at 118, -0.06 at
1,000 with 5 folds; docs/guide/brainscore.md).

- ``ridge``: an intercept and a penalty chosen *per neuroid* by an inner K-fold on the training
  stimuli (negative MSE, mean over inner folds; Dupre la Tour et al. 2022, NeuroImage 264:119728).
  ``solver="eigh"`` (default, ``_ridge.solve_ridge_cv``: Gram eigendecomposition in torch, on the
  device) or ``"himalaya"`` (``solve_ridge_cv_svd`` in float64 on the ``torch``/``torch_cuda``
  backend, restored afterwards); both make the same choices. Options a solver does not take
  (``dtype``/``target_chunk`` with "himalaya") fail with an ``InputError``
  (``_ridge.check_solver_options``).
- ``pls``: scikit-learn ``PLSRegression(n_components=25, scale=False)`` fitted jointly to all
  neuroids, as Brain-Score's ``pls_regression`` (Schrimpf et al. 2018).

Ceiling (``normalize=True``): each neuroid's r is divided by ``sqrt(reliability)``, where the
reliability is its split-half, Spearman-Brown-corrected reliability over repetitions: the
correction for attenuation (Spearman 1904), i.e. the correlation a noise-free prediction of the
trial-averaged response would reach. Brain-Score divides by the reliability itself
(``ceiling_transform="brainscore"``), a stricter bound.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
from sklearn.model_selection import KFold

from cortexalign.compute import gram_work, sized_by
from cortexalign.device import resolve_device
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics._brainscore import neuron_to_neuron_fit, with_protocol
from cortexalign.metrics._estimators import DEFAULT_ALPHAS, PLSEncoder
from cortexalign.metrics._registry import METRICS
from cortexalign.metrics._ridge_solvers import RIDGE_SOLVERS, check_solver_options, himalaya_backend
from cortexalign.metrics._score import Score
from cortexalign.neural import split_half_reliability, validate_responses
from cortexalign.rdm import check_features

__all__ = ["ENCODERS", "CEILING_TRANSFORMS", "DEFAULT_ALPHAS", "cross_validated_predictions",
           "encoding_scores", "encoding_fit", "EncodingFit", "himalaya_backend", "ridge", "pls"]

RIDGE_CITATION = ("Dupre la Tour, Eickenberg, Nunez-Elizalde & Gallant (2022). Feature-space "
                  "selection with banded ridge regression. NeuroImage 264:119728 (himalaya)")
PLS_CITATION = ("Schrimpf et al. (2018). Brain-Score: which artificial neural network for object "
                "recognition is most brain-like? bioRxiv 407007 (PLS, 25 components)")


def _ridge_fold(x_tr, y_tr, x_te, *, device, seed, alphas=DEFAULT_ALPHAS, inner_folds=5,
                solver="eigh", **options):
    """Held-out predictions and the per-neuroid alphas of one outer fold (``RIDGE_SOLVERS``)."""
    options = check_solver_options(solver, options)
    return RIDGE_SOLVERS[solver](x_tr, y_tr, x_te, device=device, seed=seed, alphas=alphas,
                                 inner_folds=inner_folds, **options)


def _pls_fold(x_tr, y_tr, x_te, *, device, seed, n_components=25):
    """Held-out predictions and the components used (per neuroid) of one outer fold."""
    enc = PLSEncoder(n_components=n_components).fit(x_tr, y_tr)
    return enc.predict(x_te), np.full(y_tr.shape[1], float(enc.n_components_))


def _neuron_to_neuron_fold(x_tr, y_tr, x_te, *, device, seed):
    """Each neuroid predicted by the one model unit that correlates best with it on the training
    stimuli (Arend et al. 2018; Brain-Score's ``neuron_to_neuron``); the unit index per neuroid."""
    unit_n = neuron_to_neuron_fit(np.asarray(x_tr), np.asarray(y_tr))
    return np.asarray(x_te)[:, unit_n], unit_n.astype(np.float64)


ENCODERS: dict[str, Callable] = {"ridge": _ridge_fold, "pls": _pls_fold,
                                 "neuron_to_neuron": _neuron_to_neuron_fold}
"""``f(x_tr, y_tr, x_te, *, device, seed, **options) -> (pred_te (t, n), per-neuroid param (n,))``"""

#: Encoders that take torch tensors on the device: on an accelerator the features and targets
#: go there once and every outer fold is sliced there (no per-fold host copies and transfers).
DEVICE_ENCODERS = frozenset({"ridge"})

CEILING_TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "attenuation": lambda rel: np.sqrt(np.where(rel > 0, rel, np.nan)),
    "brainscore": lambda rel: np.where(rel > 0, rel, np.nan)}


@sized_by(lambda x_sd, y_sn, *_, **__: gram_work(x_sd) * 5)
def cross_validated_predictions(x_sd: np.ndarray, y_sn: np.ndarray, encoder: str = "ridge", *,
                                n_folds: int = 5, seed: int = 0, device=None,
                                **options) -> tuple[np.ndarray, np.ndarray]:
    """(s, n) held-out predictions (each stimulus predicted by the fold that left it out) and
    (n_folds, n) per-neuroid fitted parameter (ridge: chosen alpha; pls: components)."""
    if encoder not in ENCODERS:
        raise UnknownNameError("encoder", encoder, ENCODERS)
    s = x_sd.shape[0]
    if not 2 <= int(n_folds) <= s:
        raise InputError("n_folds", f"2..{s} (the number of stimuli)", repr(n_folds),
                         "e.g. n_folds=5")
    dev = resolve_device(device)
    pred = np.full(y_sn.shape, np.nan)
    params = []
    on_device = encoder in DEVICE_ENCODERS and dev.type != "cpu"
    xs, ys = ((torch.as_tensor(x_sd, device=dev), torch.as_tensor(y_sn, device=dev)) if on_device
              else (x_sd, y_sn))
    for fold, (tr, te) in enumerate(KFold(int(n_folds), shuffle=True, random_state=seed).split(x_sd)):
        tr_i, te_i = ((torch.as_tensor(tr, device=dev), torch.as_tensor(te, device=dev))
                      if on_device else (tr, te))
        p, a = ENCODERS[encoder](xs[tr_i], ys[tr_i], xs[te_i], device=dev, seed=seed + fold,
                                 **options)
        pred[te] = p
        params.append(a)
    return pred, np.stack(params)


def encoding_scores(y_sn: np.ndarray, pred_sn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n,) Pearson r and (n,) R^2 of predictions against the responses, per neuroid."""
    yc = y_sn - y_sn.mean(0)
    pc = pred_sn - pred_sn.mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (yc * pc).sum(0) / np.sqrt((yc**2).sum(0) * (pc**2).sum(0))
        r2 = 1.0 - ((y_sn - pred_sn) ** 2).sum(0) / (yc**2).sum(0)
    return r, r2


def _check_inputs(features_sd, target) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if isinstance(features_sd, torch.Tensor):
        features_sd = features_sd.detach().cpu().numpy()
    x = np.asarray(features_sd, dtype=np.float64)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise InputError("features_sd", "a finite (s, d) array", f"shape {x.shape}"
                         + ("" if x.ndim != 2 else " with NaN/Inf"), "flatten and clean features")
    check_features(torch.from_numpy(x), "features_sd")
    if not isinstance(target, xr.DataArray):
        raise InputError("target", "a responses DataArray (stimulus, neuroid[, repetition])",
                         type(target).__name__, "encoding models need responses, not RDMs")
    da = validate_responses(target, allow_nan=True)
    vals = da.values
    with warnings.catch_warnings():  # an all-NaN (stimulus, neuroid) is reported just below
        warnings.simplefilter("ignore", RuntimeWarning)
        y = np.nanmean(vals, axis=2) if vals.ndim == 3 else vals
    if not np.isfinite(y).all():
        raise InputError("target", "finite responses after averaging repetitions",
                         f"{int((~np.isfinite(y)).sum())} NaN/Inf", "drop neuroids without data")
    if x.shape[0] != y.shape[0]:
        raise InputError("features_sd", f"{y.shape[0]} stimuli (rows), as many as the target",
                         f"{x.shape[0]}", "align by stimulus_id (cortexalign.neural.align_ids)")
    if (y.std(0) == 0).any():
        raise InputError("target", "neuroids whose responses vary across stimuli",
                         f"{int((y.std(0) == 0).sum())} constant neuroid(s)", "drop them")
    return x, y, (vals if vals.ndim == 3 else None)


def _neuroid_reliability(target: xr.DataArray, reps, n_splits: int, seed: int) -> np.ndarray:
    if "reliability" in target.coords:
        return np.asarray(target["reliability"].values, dtype=np.float64)
    if reps is None:
        raise InputError("target", "responses with a repetition dim or a 'reliability' coordinate "
                         "(needed for normalize=True)", f"dims {target.dims}",
                         "load trial-resolved responses or pass normalize=False")
    return split_half_reliability(reps, n_splits=n_splits, seed=seed)


def _check_ceiling_transform(ceiling_transform: str) -> None:
    if ceiling_transform not in CEILING_TRANSFORMS:
        raise UnknownNameError("ceiling transform", str(ceiling_transform), CEILING_TRANSFORMS)


@dataclass(frozen=True)
class EncodingFit:
    """An encoding metric's fit before its summary: what resampling the evaluation needs.

    Attributes
    ----------
    y_sn : (s, n) responses (mean over repetitions). pred_sn : (s, n) held-out predictions
        (each stimulus predicted by the outer fold that left it out). params : (n_folds, n)
        per-neuroid fitted parameter. ceiling_n : (n,) each neuroid's ceiling, or None without
        repetitions/reliability. normalize : whether r is divided by the ceiling before the
        median (the metric's value is ``nanmedian(r / ceiling)`` then, else ``nanmedian(r)``).
    """

    y_sn: np.ndarray
    pred_sn: np.ndarray
    params: np.ndarray
    ceiling_n: np.ndarray | None
    reliability_n: np.ndarray | None
    normalize: bool


def encoding_fit(encoder, features_sd, target, *, seed=0, device=None, n_folds=5,
                 normalize=False, ceiling_transform="attenuation", n_splits=100,
                 **options) -> EncodingFit:
    """The held-out predictions and ceilings behind an encoding metric (``ENCODERS`` name
    ``encoder``; ``options`` as the metric's encoder options): ``ridge``/``pls``/
    ``neuron_to_neuron`` summarise exactly this (``encoding_scores`` then the median)."""
    _check_ceiling_transform(ceiling_transform)
    x, y, reps = _check_inputs(features_sd, target)
    pred, params = cross_validated_predictions(x, y, encoder, n_folds=n_folds, seed=seed,
                                               device=device, **options)
    rel = ceil = None
    if normalize or reps is not None or "reliability" in target.coords:
        rel = _neuroid_reliability(target, reps, n_splits, seed)
        ceil = CEILING_TRANSFORMS[ceiling_transform](rel)
    return EncodingFit(y, pred, params, ceil, rel, bool(normalize))


def _encode(encoder, features_sd, target, *, n_bootstrap, seed, device, n_folds, normalize,
            ceiling_transform, n_splits, ci_level=0.95, **options) -> Score:
    _check_ceiling_transform(ceiling_transform)
    from cortexalign.stats import check_ci_level  # stats builds on metrics: imported here

    check_ci_level(ci_level)
    fit = encoding_fit(encoder, features_sd, target, seed=seed, device=device, n_folds=n_folds,
                       normalize=normalize, ceiling_transform=ceiling_transform,
                       n_splits=n_splits, **options)
    y, params = fit.y_sn, fit.params
    r, r2 = encoding_scores(y, fit.pred_sn)
    extra = {"r": r, "r2": r2, "median_r2": float(np.nanmedian(r2)), "encoder": encoder,
             "fold_params": params, "n_neuroids": int(y.shape[1]), "n_folds": int(n_folds),
             "normalized": bool(normalize)}
    per_neuroid, c_low = r, math.nan
    if fit.ceiling_n is not None:
        rel, ceil = fit.reliability_n, fit.ceiling_n
        extra.update(reliability=rel, ceiling=ceil, n_without_ceiling=int(np.isnan(ceil).sum()))
        if normalize:
            per_neuroid = r / ceil
            extra["r_normalized"] = per_neuroid
        else:
            c_low = float(np.nanmedian(ceil)) if np.isfinite(ceil).any() else math.nan
    value = float(np.nanmedian(per_neuroid))
    lo = hi = math.nan
    if n_bootstrap:
        rng = np.random.default_rng(seed)
        ok = per_neuroid[np.isfinite(per_neuroid)]
        boots = np.median(ok[rng.integers(0, len(ok), (int(n_bootstrap), len(ok)))], axis=1)
        tail = 50.0 * (1.0 - float(ci_level))
        lo, hi = (float(v) for v in np.percentile(boots, [tail, 100.0 - tail]))
        extra["ci_over"] = "neuroids"
        extra["ci_level"] = float(ci_level)
        extra["interval"] = (f"{ci_level:.0%} percentile bootstrap over neuroids "
                             f"({int(n_bootstrap)} resamples)")
    return Score(value, lo, hi, c_low, c_low, n_stimuli=int(y.shape[0]), extra=extra)


def _solver_options(solver, dtype, target_chunk) -> dict:
    """``ridge``'s options for its solver, checked (``check_solver_options``). None means "the
    solver's default": only options set are passed (and checked)."""
    return check_solver_options(solver, {
        k: v for k, v in (("dtype", dtype), ("target_chunk", target_chunk)) if v is not None})


def _check_ridge_options(arguments: dict) -> None:
    """``check_options`` metadata of ``ridge``, in the order ``ridge`` checks when it runs."""
    _solver_options(arguments["solver"], arguments["dtype"], arguments["target_chunk"])
    _check_ceiling_transform(arguments["ceiling_transform"])


@METRICS.register("ridge", citation=RIDGE_CITATION, target="responses", higher_is_better=True,
                  description="Ridge encoding (per-neuroid penalty by inner CV), "
                              "median cross-validated Pearson r over neuroids",
                  check_options=_check_ridge_options)
@with_protocol("ridge")
@sized_by(lambda features_sd, target, **_: gram_work(features_sd) * 5)
def ridge(features_sd, target, *, n_bootstrap: int = 0, seed: int = 0, device=None,
          alphas=DEFAULT_ALPHAS, n_folds: int = 5, inner_folds: int = 5, normalize: bool = False,
          ceiling_transform: str = "attenuation", n_splits: int = 100,
          solver: str = "eigh", dtype: str | torch.dtype | None = None,
          target_chunk: int | None = None, ci_level: float = 0.95) -> Score:
    """Cross-validated ridge encoding of every neuroid.

    Parameters
    ----------
    features_sd : (s, d) features, rows in the target's stimulus order.
    target : responses (stimulus, neuroid[, repetition]); repetitions are averaged.
    alphas : penalty grid searched per neuroid by ``inner_folds``-fold CV on the training stimuli.
    n_folds : outer folds over stimuli (shuffled with ``seed``).
    normalize : divide each neuroid's r by its ceiling (``ceiling_transform``) before the median.
    n_bootstrap, ci_level : percentile interval (level ``ci_level``) of the median over neuroid
        resamples (0: none); the interval says what it resamples in ``extra["interval"]``.
    solver : a ``RIDGE_SOLVERS`` name: "eigh" (ours, default) or "himalaya".
    dtype : "eigh" only: precision of the products with the targets, "float32" or "float64" (or
        a torch/numpy dtype); None: float64. Features, Grams and eigendecompositions stay
        float64. float32 halves the memory of those products and is faster on GPUs; it moves
        predictions by rounding (about 1e-7 relative in the tests). "himalaya" always computes
        in float64 and refuses it.
    target_chunk : "eigh" only: neuroids solved at once (a positive int); bounds memory, same
        penalties, predictions equal up to float64 rounding (1e-14 in the tests). None: about
        2**25 / (alphas x validation stimuli).

    Returns
    -------
    Score: ``value`` median r; ``extra`` holds per-neuroid ``r``, ``r2``, ``fold_params`` (the
    alphas, (n_folds, n)), and ``reliability``/``ceiling`` when repetitions are present; when not
    normalised, ``ceiling_low``/``ceiling_high`` hold the median neuroid ceiling.
    """
    solver_options = _solver_options(solver, dtype, target_chunk)
    return _encode("ridge", features_sd, target, n_bootstrap=n_bootstrap, seed=seed,
                   ci_level=ci_level,
                   device=device, n_folds=n_folds, normalize=normalize,
                   ceiling_transform=ceiling_transform, n_splits=n_splits, alphas=alphas,
                   inner_folds=inner_folds, solver=solver, **solver_options)


@METRICS.register("pls", citation=PLS_CITATION, target="responses", higher_is_better=True,
                  description="PLS encoding (25 components, Brain-Score), median cross-validated "
                              "Pearson r over neuroids",
                  check_options=lambda a: _check_ceiling_transform(a["ceiling_transform"]))
@with_protocol("pls")
def pls(features_sd, target, *, n_bootstrap: int = 0, seed: int = 0, device=None,
        n_components: int = 25, n_folds: int = 5, normalize: bool = False,
        ceiling_transform: str = "attenuation", n_splits: int = 100,
        ci_level: float = 0.95) -> Score:
    """Cross-validated PLS encoding of every neuroid (see ``ridge`` for the parameters)."""
    return _encode("pls", features_sd, target, n_bootstrap=n_bootstrap, seed=seed, device=device,
                   ci_level=ci_level,
                   n_folds=n_folds, normalize=normalize, ceiling_transform=ceiling_transform,
                   n_splits=n_splits, n_components=n_components)
