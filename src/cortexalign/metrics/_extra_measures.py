"""Measures that Brain-Score offers and the other metric modules do not: cross-validated RSA and
CKA (Brain-Score's ``rdm_cv`` / ``cka_cv``), one-to-one neuron mapping, and reverse predictivity
(neural responses predicting the model's units)."""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from cortexalign.compute import gram_work, sized_by
from cortexalign.errors import InputError
from cortexalign.metrics._brainscore import (
    BRAINSCORE_CITATION,
    brainscore_linear_cka,
    brainscore_rdm_similarity,
    brainscore_test_only_score,
    with_protocol,
)
from cortexalign.metrics._encoding import _check_inputs, _encode, cross_validated_predictions
from cortexalign.metrics._registry import METRICS
from cortexalign.metrics._score import Score
from cortexalign.rdm import MIN_STIMULI

__all__ = ["rsa_cv", "cka_cv", "neuron_to_neuron", "reverse_ridge"]

ARENT_2018 = ("Arend, Han, Schrimpf, Bashivan, Kar, Poggio, DiCarlo & Boix (2018). Single units in "
              "a deep neural network functionally correspond with neurons in the brain. CBMM "
              "memo; Brain-Score's neuron_to_neuron")
REVERSE_CITATION = ("Muzellec & Kar (2025). Reverse predictivity for bidirectional comparison of "
                    "neural networks and primate brains. bioRxiv")


def _interval(values: np.ndarray, n_bootstrap: int, seed: int, ci_level: float,
              over: str) -> tuple[float, float, dict]:
    """Percentile interval of the median (``over='units'``) or mean (``over='splits'``) of
    ``values`` under ``n_bootstrap`` resamples of them (NaN, NaN when 0)."""
    if not n_bootstrap:
        return math.nan, math.nan, {}
    ok = values[np.isfinite(values)]
    idx = np.random.default_rng(seed).integers(0, len(ok), (int(n_bootstrap), len(ok)))
    stat = np.median(ok[idx], axis=1) if over == "units" else ok[idx].mean(axis=1)
    tail = (1 - ci_level) / 2 * 100
    lo, hi = np.percentile(stat, [tail, 100 - tail])
    return float(lo), float(hi), {"ci_over": over, "ci_level": ci_level}


def _cv_score(measure, name, features_sd, target, *, n_bootstrap, seed, ci_level, n_splits,
              test_size, stratify_by) -> Score:
    _responses_only(target, name)
    x, _, _ = _check_inputs(features_sd, target)
    s = brainscore_test_only_score(measure, x, target, stratify_by=stratify_by,
                                   n_splits=n_splits, test_size=test_size, name=name,
                                   random_state=seed)
    lo, hi, extra = _interval(s.extra["per_split"], n_bootstrap, seed, ci_level, "splits")
    return Score(s.value, lo, hi, n_stimuli=s.n_stimuli, extra={**s.extra, **extra})


def _responses_only(target, name: str) -> None:
    if not isinstance(target, xr.DataArray):
        raise InputError("target", f"a responses DataArray for metric {name!r}",
                         type(target).__name__, "load responses, or use 'rsa' for an RDMSet")


@METRICS.register("rsa_cv", citation=BRAINSCORE_CITATION, target="responses",
                  higher_is_better=True, min_stimuli=MIN_STIMULI["rsa"],
                  description="Cross-validated RSA (Brain-Score's rdm_cv): Spearman of 1 - "
                              "Pearson RDMs on the test part of 10 splits, mean and SE")
@sized_by(lambda features_sd, target, **_: 10 * gram_work(features_sd))
def rsa_cv(features_sd, target, *, n_bootstrap: int = 0, seed: int = 1, device=None,
           ci_level: float = 0.95, n_splits: int = 10, test_size: float = 0.9,
           stratify_by: str | None = "object_name") -> Score:
    """Brain-Score's ``RDMCrossValidated``: RSA on the test stimuli of ``n_splits`` random
    (stratified) splits with ``test_size`` of the stimuli; ``value`` the mean over splits,
    ``extra['error']`` the standard error, ``extra['per_split']`` the values. ``seed`` is the
    splits' random state (1: Brain-Score's); ``n_bootstrap`` resamples the splits for a
    percentile interval; computed on the CPU (``device`` is accepted for a uniform call)."""
    return _cv_score(brainscore_rdm_similarity, "rsa_cv", features_sd, target,
                     n_bootstrap=n_bootstrap, seed=seed, ci_level=ci_level, n_splits=n_splits,
                     test_size=test_size, stratify_by=stratify_by)


@METRICS.register("cka_cv", citation=BRAINSCORE_CITATION, target="responses",
                  higher_is_better=True, min_stimuli=MIN_STIMULI["cka"],
                  description="Cross-validated linear CKA (Brain-Score's cka_cv): on the test "
                              "part of 10 splits, mean and SE")
@sized_by(lambda features_sd, target, **_: 10 * gram_work(features_sd))
def cka_cv(features_sd, target, *, n_bootstrap: int = 0, seed: int = 1, device=None,
           ci_level: float = 0.95, n_splits: int = 10, test_size: float = 0.9,
           stratify_by: str | None = "object_name") -> Score:
    """Brain-Score's ``CKACrossValidated``: linear CKA on the test stimuli of each split (the
    options as in ``rsa_cv``)."""
    return _cv_score(brainscore_linear_cka, "cka_cv", features_sd, target,
                     n_bootstrap=n_bootstrap, seed=seed, ci_level=ci_level, n_splits=n_splits,
                     test_size=test_size, stratify_by=stratify_by)


@METRICS.register("neuron_to_neuron", citation=ARENT_2018, target="responses",
                  higher_is_better=True,
                  description="One-to-one mapping: each neuroid predicted by its best-correlated "
                              "model unit (chosen on training stimuli), median held-out r")
@with_protocol("neuron_to_neuron")
def neuron_to_neuron(features_sd, target, *, n_bootstrap: int = 0, seed: int = 0, device=None,
                     n_folds: int = 5, normalize: bool = False,
                     ceiling_transform: str = "attenuation", n_splits: int = 100) -> Score:
    """Cross-validated one-to-one mapping (ours: 5 pooled outer folds as ``ridge``; with
    ``protocol='brainscore'`` Brain-Score's splits). ``extra['fold_params']`` holds the unit
    chosen for each neuroid in each fold."""
    return _encode("neuron_to_neuron", features_sd, target, n_bootstrap=n_bootstrap, seed=seed,
                   device=device, n_folds=n_folds, normalize=normalize,
                   ceiling_transform=ceiling_transform, n_splits=n_splits)


@METRICS.register("reverse_ridge", citation=REVERSE_CITATION, target="responses",
                  higher_is_better=True,
                  description="Reverse predictivity: ridge from the neural responses to every "
                              "model unit, median cross-validated r over units")
@sized_by(lambda features_sd, target, **_: 5 * gram_work(features_sd))
def reverse_ridge(features_sd, target, *, n_bootstrap: int = 0, seed: int = 0, device=None,
                  ci_level: float = 0.95, n_folds: int = 5, inner_folds: int = 5, alphas=None,
                  max_units: int | None = 2000) -> Score:
    """How well the recorded population predicts the model (neural -> model units).

    The ridge of ``ridge`` (penalty per unit by inner CV) with the roles swapped; units that do
    not vary are dropped; ``max_units`` random units (seeded) bound the cost for wide layers
    (``None``: all); ``n_bootstrap`` resamples the units for a percentile interval of the
    median. A model whose units the brain cannot predict scores low even when the model
    predicts the brain well: the two directions together say whether the representations match.
    """
    from cortexalign.metrics._encoding import DEFAULT_ALPHAS, encoding_scores

    x, y, _ = _check_inputs(features_sd, target)
    keep = np.flatnonzero(x.std(0) > 0)
    if max_units is not None and len(keep) > int(max_units):
        keep = np.sort(np.random.default_rng(seed).choice(keep, int(max_units), replace=False))
    units = x[:, keep]
    pred, params = cross_validated_predictions(
        y, units, "ridge", n_folds=n_folds, seed=seed, device=device,
        alphas=DEFAULT_ALPHAS if alphas is None else alphas, inner_folds=inner_folds)
    r, r2 = encoding_scores(units, pred)
    lo, hi, extra = _interval(r, n_bootstrap, seed, ci_level, "units")
    return Score(float(np.nanmedian(r)), lo, hi, n_stimuli=int(x.shape[0]),
                 extra={"r": r, "r2": r2, "units": keep, "fold_params": params,
                        "direction": "neural -> model", **extra})
