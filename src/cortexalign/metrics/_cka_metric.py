"""The ``cka_linear``, ``cka_linear_debiased`` and ``cka_rbf`` metrics: features vs responses."""

from __future__ import annotations

import math
from functools import partial

import torch
import xarray as xr

from cortexalign.device import resolve_device
from cortexalign.errors import InputError
from cortexalign.metrics._cka import cka_tensor
from cortexalign.metrics._registry import METRICS
from cortexalign.metrics._score import Score
from cortexalign.metrics._validate import (
    as_tensor,
    check_features,
    check_n_stimuli,
    responses_tensor,
)
from cortexalign.neural import RDMSet

__all__ = ["cka_metric"]

KORNBLITH_2019 = ("Kornblith, Norouzi, Lee & Hinton (2019). Similarity of neural network "
                  "representations revisited. ICML")
DEBIASED = (KORNBLITH_2019 + "; unbiased HSIC: Song, Smola, Gretton, Bedo & Borgwardt (2012) JMLR "
            "13:1393; debiased CKA: Nguyen, Raghu & Kornblith (2021) ICLR")


def cka_metric(features_sd, target, *, kind: str, n_bootstrap: int = 0, seed: int = 0,
               device=None, ci_level: float = 0.95, **options) -> Score:
    """CKA between model features and neural responses (mean over repetitions).

    Parameters
    ----------
    features_sd : (s, d) model features, rows in the target's stimulus order.
    target : responses ``DataArray`` (stimulus, neuroid[, repetition]); an RDMSet is refused.
    kind : ``linear``, ``linear_debiased`` or ``rbf`` (``sigma_frac`` option for rbf).
    n_bootstrap, seed, ci_level : percentile interval over stimulus resamples (0: none).

    Returns
    -------
    Score without a ceiling (NaN): CKA has no established noise ceiling.
    """
    from cortexalign import stats  # stats builds on metrics: imported here to keep layering one-way

    if isinstance(target, RDMSet):
        raise InputError("target", "neural responses (a DataArray with dims stimulus, neuroid): "
                         "CKA compares the feature spaces themselves", f"an RDMSet {target.name!r}",
                         "use metric 'rsa' to compare with RDMs, or load the responses")
    if not isinstance(target, xr.DataArray):
        raise InputError("target", "a responses DataArray (stimulus, neuroid[, repetition])",
                         type(target).__name__, "wrap the array with cortexalign.neural."
                         "make_responses")
    unknown = sorted(set(options) - ({"sigma_frac"} if kind == "rbf" else set()))
    if unknown:
        raise InputError("options", f"options of CKA kind {kind!r} "
                         f"({'sigma_frac' if kind == 'rbf' else 'none'})", f"{unknown}",
                         "remove them (sigma_frac is for cka_rbf)")
    if kind == "rbf" and not float(options.get("sigma_frac", 1.0)) > 0:
        raise InputError("sigma_frac", "a positive fraction of the median distance",
                         repr(options["sigma_frac"]), "use e.g. 0.5 or 1.0")
    dev = resolve_device(device)
    x = as_tensor(features_sd, "features_sd", dev, ndim=(2,))
    y = responses_tensor(target, dev)
    check_n_stimuli(x.shape[0], y.shape[0])
    need = 4 if kind == "linear_debiased" else 3
    check_features(x, "features_sd", min_stimuli=need)
    check_features(y, "target", min_stimuli=need)
    value = float(cka_tensor(x, y, kind, **options))
    ci_low = ci_high = math.nan
    if n_bootstrap > 0:
        def stat(idx_s: torch.Tensor) -> float:
            return float(cka_tensor(x[idx_s], y[idx_s], kind, **options))

        samples = stats.bootstrap_statistic(stat, x.shape[0], n_bootstrap, seed, dev)
        ci_low, ci_high = stats.percentile_interval(samples, ci_level)
    return Score(value=value, ci_low=ci_low, ci_high=ci_high, n_stimuli=int(x.shape[0]),
                 extra={"kind": kind, "n_bootstrap": int(n_bootstrap), "ci_level": ci_level,
                        **options})


METRICS.add("cka_linear", partial(cka_metric, kind="linear"), citation=KORNBLITH_2019,
            target="responses", description="Linear centered kernel alignment (biased HSIC)")
METRICS.add("cka_linear_debiased", partial(cka_metric, kind="linear_debiased"), citation=DEBIASED,
            target="responses", description="Linear CKA with the unbiased HSIC estimator "
                                            "(Song et al. 2012), less biased for few stimuli")
METRICS.add("cka_rbf", partial(cka_metric, kind="rbf"), citation=KORNBLITH_2019,
            target="responses", description="RBF-kernel CKA, bandwidth sigma_frac x median "
                                            "distance (default 1.0)")
