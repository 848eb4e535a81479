"""The ``cka_linear``, ``cka_linear_debiased`` and ``cka_rbf`` metrics: features vs responses.

``cka_metric`` takes the (s, d) features; ``cka_from_gram`` takes their (s, s) linear Gram
matrix instead (e.g. ``streaming_gram`` over features that do not fit in memory) and gives the
same Score up to rounding, bootstrap interval included (the same stimulus resamples).
"""

from __future__ import annotations

import math
from functools import partial

import torch
import xarray as xr

from cortexalign.compute import numpy_kernel
from cortexalign.device import resolve_device
from cortexalign.errors import InputError
from cortexalign.metrics._brainscore import with_protocol
from cortexalign.metrics._cka import _center_gram, cka_from_grams, cka_tensor
from cortexalign.metrics._cka_boot import resampled_cka
from cortexalign.metrics._cka_numpy import numpy_cka
from cortexalign.metrics._registry import METRICS
from cortexalign.metrics._responses import responses_tensor
from cortexalign.metrics._score import Score
from cortexalign.neural import RDMSet
from cortexalign.rdm import (
    MIN_STIMULI,
    as_tensor,
    check_features,
    check_n_stimuli,
    mm_nt,
    stimulus_matrix,
)

__all__ = ["cka_metric", "cka_from_gram"]

KORNBLITH_2019 = ("Kornblith, Norouzi, Lee & Hinton (2019). Similarity of neural network "
                  "representations revisited. ICML")
DEBIASED = (KORNBLITH_2019 + "; unbiased HSIC: Song, Smola, Gretton, Bedo & Borgwardt (2012) JMLR "
            "13:1393; debiased CKA: Nguyen, Raghu & Kornblith (2021) ICLR")


def _check_options(kind: str, options: dict) -> None:
    """The options a CKA kind takes: ``sigma_frac`` > 0 for ``rbf``, none for the others."""
    unknown = sorted(set(options) - ({"sigma_frac"} if kind == "rbf" else set()))
    if unknown:
        raise InputError("options", f"options of CKA kind {kind!r} "
                         f"({'sigma_frac' if kind == 'rbf' else 'none'})", f"{unknown}",
                         "remove them (sigma_frac is for cka_rbf)")
    if kind == "rbf" and not float(options.get("sigma_frac", 1.0)) > 0:
        raise InputError("sigma_frac", "a positive fraction of the median distance",
                         repr(options["sigma_frac"]), "use e.g. 0.5 or 1.0")


def _check_metric_options(arguments: dict) -> None:
    """``check_options`` metadata of the CKA metrics (``metrics.check_options``)."""
    _check_options(arguments["kind"], arguments["options"])


def _check_target_and_options(target, kind: str, options: dict) -> None:
    if isinstance(target, RDMSet):
        raise InputError("target", "neural responses (a DataArray with dims stimulus, neuroid): "
                         "CKA compares the feature spaces themselves", f"an RDMSet {target.name!r}",
                         "use metric 'rsa' to compare with RDMs, or load the responses")
    if not isinstance(target, xr.DataArray):
        raise InputError("target", "a responses DataArray (stimulus, neuroid[, repetition])",
                         type(target).__name__, "wrap the array with cortexalign.neural."
                         "make_responses")
    _check_options(kind, options)


def _counts(idx_s: torch.Tensor, s: int) -> torch.Tensor:
    """How often each of the s stimuli was drawn (float64), for ``resampled_cka``."""
    return torch.bincount(idx_s, minlength=s).to(torch.float64)


def _score(stat, s: int, dev: torch.device, *, kind: str, n_bootstrap: int, seed: int,
           ci_level: float, options: dict) -> Score:
    """Score of ``stat(idx_s) -> float`` (all stimuli: ``idx_s`` None), with the percentile
    interval over ``stats.bootstrap_statistic``'s stimulus resamples."""
    from cortexalign import stats  # stats builds on metrics: imported here to keep layering one-way

    value = stat(None)
    ci_low = ci_high = math.nan
    if n_bootstrap > 0:
        samples = stats.bootstrap_statistic(stat, s, n_bootstrap, seed, dev)
        ci_low, ci_high = stats.percentile_interval(samples, ci_level)
    interval = {"interval": f"{ci_level:.0%} percentile bootstrap over stimuli "
                            f"({int(n_bootstrap)} resamples)"} if n_bootstrap > 0 else {}
    return Score(value=value, ci_low=ci_low, ci_high=ci_high, n_stimuli=int(s),
                 extra={"kind": kind, "n_bootstrap": int(n_bootstrap), "ci_level": ci_level,
                        **interval, **options})


def cka_metric(features_sd, target, *, kind: str, n_bootstrap: int = 0, seed: int = 0,
               device=None, ci_level: float = 0.95, **options) -> Score:
    """CKA between model features and neural responses (mean over repetitions).

    Parameters
    ----------
    features_sd : (s, d) model features, rows in the target's stimulus order.
    target : responses ``DataArray`` (stimulus, neuroid[, repetition]); an RDMSet is refused.
    kind : ``linear``, ``linear_debiased`` or ``rbf`` (``sigma_frac`` option for rbf).
    n_bootstrap, seed, ci_level : percentile interval over stimulus resamples (0: none). Each
        resample's CKA leaves out the pairs of two copies of one stimulus (``_cka_boot``: with
        them, resampled CKA sits above the estimate); it works on the s x s Grams.

    Returns
    -------
    Score without a ceiling (NaN): CKA has no established noise ceiling.
    """
    _check_target_and_options(target, kind, options)
    dev = resolve_device(device)
    x = as_tensor(features_sd, "features_sd", dev, ndim=(2,))
    y = responses_tensor(target, dev)
    check_n_stimuli(x.shape[0], y.shape[0])
    need, why = MIN_STIMULI["cka"]
    check_features(x, "features_sd", need, why)
    check_features(y, "target", need, why)

    grams: list[torch.Tensor] = []  # X X^T, Y Y^T: made at the first resample (s x s each)

    def stat(idx_s: torch.Tensor | None) -> float:
        if idx_s is None and numpy_kernel(x, y):  # the CPU's NumPy path (compute.numpy_kernel)
            return numpy_cka(x.numpy(), y.numpy(), kind, ("features_sd", "target"), **options)
        if idx_s is None:
            return float(cka_tensor(x, y, kind, **options))
        if not grams:
            grams.extend((mm_nt(x, x), mm_nt(y, y)))
        return float(resampled_cka(*grams, _counts(idx_s, x.shape[0]), kind, **options))

    return _score(stat, x.shape[0], dev, kind=kind, n_bootstrap=n_bootstrap, seed=seed,
                  ci_level=ci_level, options=options)


def _gram_tensor(gram_ss, dev: torch.device, need: int, name: str = "gram_ss",
                 tol: float = 1e-5) -> torch.Tensor:
    """A model Gram as a float64 (s, s) tensor: square, finite, symmetric and with a
    non-negative diagonal to ``tol`` times its largest magnitude, not constant once centred."""
    k = stimulus_matrix(gram_ss, name, dev, what="Gram matrix X X^T", min_stimuli=need,
                        bound=tol, square_fix="pass features @ features.T (or "
                                              "streaming_gram(features))",
                        symmetric_fix="pass X @ X.T, e.g. (K + K.T) / 2 if the asymmetry is "
                                      "rounding")
    scale = max(float(k.abs().amax()), 1e-300)
    low = float(torch.diagonal(k).amin())
    if low < -tol * scale:
        raise InputError(name, "a Gram matrix X X^T (diagonal K_ii = |x_i|^2 >= 0)",
                         f"min K_ii = {low:.3g}", "pass the Gram of the features, not an RDM "
                         "or a centred kernel of something else")
    if float(_center_gram(k).abs().amax()) <= 1e-12 * scale:
        raise InputError(name, "features that vary across stimuli", "a Gram matrix that is "
                         "constant once centred (every stimulus has the same feature vector)",
                         "check the layer (dead units, a constant input) or pick another layer")
    return k


def cka_from_gram(gram_ss, target, *, kind: str = "linear", n_bootstrap: int = 0, seed: int = 0,
                  device=None, ci_level: float = 0.95, **options) -> Score:
    """``cka_metric`` for the model's (s, s) linear Gram matrix instead of its features.

    Parameters
    ----------
    gram_ss : (s, s) ``K = X X^T`` of the model features X (rows in the target's stimulus
        order), centred or not (a row-constant offset cancels): e.g. ``streaming_gram(view)``.
        Finite, symmetric (to 1e-5 of its largest entry), non-negative diagonal.
    target : responses ``DataArray`` (stimulus, neuroid[, repetition]); its mean over
        repetitions Y gives ``L = Y Y^T``. An RDMSet is refused.
    kind : ``linear``, ``linear_debiased`` or ``rbf`` (``sigma_frac`` option for rbf, as in
        ``cka_metric``).
    n_bootstrap, seed, ci_level : percentile interval over the same stimulus resamples as
        ``cka_metric``, computed the same way (copies of a stimulus never paired).

    Returns
    -------
    Score equal to ``cka_metric(X, target, kind=kind, ...)`` up to rounding (1e-10 in the tests);
    Kornblith et al. (2019) for CKA, Song et al. (2012) for the debiased estimator.
    """
    _check_target_and_options(target, kind, options)
    dev = resolve_device(device)
    need, why = MIN_STIMULI["cka"]
    k = _gram_tensor(gram_ss, dev, need)
    y = responses_tensor(target, dev)
    check_n_stimuli(k.shape[0], y.shape[0], "gram_ss")
    check_features(y, "target", need, why)
    l_ = mm_nt(y, y)

    def stat(idx_s: torch.Tensor | None) -> float:
        if idx_s is None:
            return float(cka_from_grams(k, l_, kind, **options))
        return float(resampled_cka(k, l_, _counts(idx_s, k.shape[0]), kind, **options))

    return _score(stat, k.shape[0], dev, kind=kind, n_bootstrap=n_bootstrap, seed=seed,
                  ci_level=ci_level, options=options)


METRICS.add("cka_linear", with_protocol("cka_linear")(partial(cka_metric, kind="linear")),
            citation=KORNBLITH_2019,
            target="responses", description="Linear centered kernel alignment (biased HSIC)",
            check_options=_check_metric_options, min_stimuli=MIN_STIMULI["cka"])
METRICS.add("cka_linear_debiased", partial(cka_metric, kind="linear_debiased"), citation=DEBIASED,
            target="responses", description="Linear CKA with the unbiased HSIC estimator "
                                            "(Song et al. 2012), less biased for few stimuli",
            check_options=_check_metric_options, min_stimuli=MIN_STIMULI["cka"])
METRICS.add("cka_rbf", partial(cka_metric, kind="rbf"), citation=KORNBLITH_2019,
            target="responses", description="RBF-kernel CKA, bandwidth sigma_frac x median "
                                            "distance (default 1.0)",
            check_options=_check_metric_options, min_stimuli=MIN_STIMULI["cka"])
