"""Every layer's score on weighted stimulus resamples, for the measures other than ``rsa``.

A resample is a (s,) vector of draw counts (``_resample.stimulus_resamples``; 0 for a stimulus
left out, e.g. outside a fold of the cross-validated layer rule); every layer of every model is
scored on the same count vectors, so the models' scores are paired. Each family gets the
cheapest exact form of its metric (``LAYER_SAMPLERS``):

- ``cka`` (``cka_linear``, ``cka_linear_debiased``, ``cka_rbf``): ``metrics.resampled_cka_pairs``
  on the layers' and the responses' linear Grams, the pairs of two copies of one stimulus left
  out (the metric's own bootstrap); with every count 1 it is the metric's value.
- ``encoding`` (``ridge``, ``pls``, ``neuron_to_neuron``): one fit per layer with the metric's
  own outer folds (``metrics.encoding_fit``: held-out predictions, ceilings), then only the
  evaluation is resampled: per-neuroid Pearson r of the held-out predictions with the
  responses over the counted stimuli, divided by the ceiling when the metric normalises, and the
  median over neuroids, as the metric summarises. No refit per resample; the full-data value is
  the metric's. Under the ``cv`` layer rule the layer is chosen on the held-out predictions of
  the other folds' stimuli; those predictions come from encoders whose training stimuli may
  include the scored fold (the choice sees the scored responses only through those fits).
- ``maps`` (``map_rmse``, ``map_pearson``, ``map_spearman``: registry metadata
  ``features="maps"``; features are (s, gh, gw) maps): ``metrics.resampled_map_scores``, the
  metric's value on the drawn stimuli (neuron maps re-weighted from the drawn responses) with
  the images put on the grid once; with every count 1 it is the metric's value. Options carry
  the ``stimuli`` and ``pad_square`` (one bool, or one per layer: models may differ).
  ``map_rmse`` is lower-is-better: its samples are -RMSE, so that the layer rules and the
  ranks read "higher is better" for every measure.
- ``generic`` (any other registered metric, and any metric with ``protocol: brainscore``):
  ``metrics.score`` on each resample's stimuli (a stimulus drawn twice appears twice), one call
  per layer and resample. Costly: callers use few resamples, and ``max_seconds`` refuses a run
  whose estimate (from the full-data calls) is longer.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
import xarray as xr

from cortexalign.analyses._layer_choice import subset_target
from cortexalign.compute import compute_threads, total_gram_work
from cortexalign.errors import CortexAlignError, InputError
from cortexalign.metrics import (
    ENCODERS,
    METRICS,
    encoding_fit,
    resampled_cka_pairs,
    resampled_map_scores,
    score,
)

__all__ = ["LAYER_SAMPLERS", "measure_family", "layer_scores"]

CKA_KINDS_OF = {"cka_linear": "linear", "cka_linear_debiased": "linear_debiased",
                "cka_rbf": "rbf"}
"""Metric name -> ``resampled_cka_pairs`` kind."""

_DROP = ("n_bootstrap", "ci_level", "device", "seed")


def measure_family(metric: str, options: dict) -> str:
    """``rsa``, ``cka``, ``encoding``, ``maps`` or ``generic``: how ``metric`` with ``options``
    is resampled (a Brain-Score protocol is always ``generic``: its splits are its own)."""
    if options.get("protocol", "cortexalign") != "cortexalign":
        return "generic"
    if metric == "rsa":
        return "rsa"
    if metric in METRICS and METRICS.entry(metric).meta.get("features") == "maps":
        return "maps"
    if metric in CKA_KINDS_OF:
        return "cka"
    return "encoding" if metric in ENCODERS else "generic"


def _responses(target) -> np.ndarray:
    if not isinstance(target, xr.DataArray):
        raise InputError("target", "a responses DataArray (stimulus, neuroid[, repetition])",
                         type(target).__name__, "CKA and encoding measures take responses")
    x = target.mean("repetition") if "repetition" in target.dims else target
    return np.asarray(x.transpose("stimulus", ...).values, dtype=np.float64)


def _cka(metric, feats, target, counts_ns, *, seed, options) -> np.ndarray:
    """(N, l) CKA of every layer with the responses on each count vector."""
    opts = {k: v for k, v in options.items() if k not in _DROP}
    score(metric, feats[0], target, n_bootstrap=0, **opts)  # the metric's own input checks
    y = torch.as_tensor(_responses(target))
    gy = [y @ y.T]
    grams = [torch.as_tensor(x) @ torch.as_tensor(x).T for x in feats]
    kind, sigma = CKA_KINDS_OF[metric], float(opts.get("sigma_frac", 1.0))
    counts = torch.as_tensor(counts_ns, dtype=torch.float64)
    out = np.empty((len(counts_ns), len(feats)))
    for i, c in enumerate(counts):
        out[i] = resampled_cka_pairs(grams, gy, c, kind, sigma).numpy()[:, 0]
    return out


def weighted_r(y_sn: np.ndarray, p_sn: np.ndarray, counts_ns: np.ndarray) -> np.ndarray:
    """(N, n) Pearson r of each neuroid's predictions with its responses, stimuli weighted by
    each row of counts (a stimulus drawn w times counts w times; NaN with < 2 stimuli)."""
    y = y_sn - y_sn.mean(0)  # centring first keeps the moment sums well conditioned
    p = p_sn - p_sn.mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = counts_ns / counts_ns.sum(1, keepdims=True)
        my, mp = w @ y, w @ p
        cov = w @ (y * p) - my * mp
        vy, vp = w @ (y * y) - my * my, w @ (p * p) - mp * mp
        r = cov / np.sqrt(vy * vp)
    few = (counts_ns > 0).sum(1) < 2
    r[few] = np.nan
    return r


def _encoding(metric, feats, target, counts_ns, *, seed, options) -> np.ndarray:
    """(N, l) encoding score of every layer: one cross-validated fit, resampled evaluation."""
    opts = {k: v for k, v in options.items() if k not in (*_DROP, "protocol", "stratify_by")}
    if metric == "ridge":
        opts = {k: v for k, v in opts.items() if v is not None or k not in ("dtype",
                                                                             "target_chunk")}
    out = np.empty((len(counts_ns), len(feats)))
    for j, x in enumerate(feats):
        fit = encoding_fit(metric, x, target, seed=seed, device="cpu", **opts)
        r = weighted_r(fit.y_sn, fit.pred_sn, counts_ns)
        if fit.normalize:
            r = r / fit.ceiling_n
        with warnings.catch_warnings():  # a row with no finite neuroid: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            out[:, j] = np.nanmedian(r, axis=1)
    return out


def _resampled_target(target, idx: np.ndarray):
    """The target on stimuli ``idx`` (repeats allowed): the k-th copy of a stimulus gets the id
    ``<id>#k`` (metrics refuse repeated ids)."""
    sub = subset_target(target, idx)
    ids = [str(v) for v in (sub["stimulus"].values if isinstance(sub, xr.DataArray)
                            else sub.stimulus_ids)]
    seen: dict[str, int] = {}
    new = []
    for v in ids:
        seen[v] = seen.get(v, 0) + 1
        new.append(v if seen[v] == 1 else f"{v}#{seen[v]}")
    if isinstance(sub, xr.DataArray):
        return sub.assign_coords(stimulus=new)
    return type(sub)(sub.rdms, tuple(new), sub.descriptors, sub.name, sub.citation)


def _generic(metric, feats, target, counts_ns, *, seed, options,
             max_seconds: float = 600.0) -> np.ndarray:
    """(N, l) ``metrics.score`` on each count vector's stimuli (copies repeated); NaN where a
    subset is too small for the metric. Refused when the estimated time exceeds
    ``max_seconds``."""
    opts = {k: v for k, v in options.items() if k not in ("n_bootstrap", "seed", "device")}
    out = np.full((len(counts_ns), len(feats)), np.nan)
    for i, c in enumerate(counts_ns):
        idx = np.repeat(np.arange(len(c)), c.astype(int))
        t_sub = target if i == 0 else _resampled_target(target, idx)
        t0 = time.perf_counter()
        for j, x in enumerate(feats):
            try:
                out[i, j] = score(metric, np.asarray(x)[idx], t_sub, n_bootstrap=0, seed=seed,
                                  device="cpu", **opts).value
            except CortexAlignError:
                if i == 0:
                    raise
        if i == 0 and (est := (time.perf_counter() - t0) * len(counts_ns)) > max_seconds:
            raise InputError("n_bootstrap", f"a generic resampling of {metric!r} within "
                             f"max_seconds={max_seconds:g} (one metric call per layer and "
                             "resample)", f"{len(counts_ns)} resamples x {len(feats)} layers, "
                             f"about {est:.0f} s", "lower generic_n_bootstrap, keep fewer "
                             "layers or models, or raise max_seconds")
    return out


def _maps(metric, feats, target, counts_ns, *, seed, options) -> np.ndarray:
    """(N, l) map-metric value of every layer's (s, gh, gw) maps on each count vector."""
    opts = {k: v for k, v in options.items()
            if k in ("scaling", "weighting", "subtract_mean_image")}
    if options.get("stimuli") is None:
        raise InputError("metric_options.stimuli", f"the StimulusSet {metric!r} needs",
                         "no stimuli", "pass metric_options={'stimuli': stimuli, ...}")
    pads = options.get("pad_square", False)
    pads = [bool(pads)] * len(feats) if isinstance(pads, bool) else list(pads)
    if len(pads) != len(feats):
        raise InputError("metric_options.pad_square", f"a bool or {len(feats)} bools (one per "
                         "layer)", f"{len(pads)} values", "give one per layer, or one bool")
    out = np.empty((len(counts_ns), len(feats)))
    for j, x in enumerate(feats):
        out[:, j] = resampled_map_scores(x, target, options["stimuli"], counts_ns,
                                         measure=metric.removeprefix("map_"),
                                         pad_square=pads[j], **opts)
    return -out if metric == "map_rmse" else out  # higher is better for the rules and ranks


LAYER_SAMPLERS: dict[str, Callable] = {"cka": _cka, "encoding": _encoding, "maps": _maps,
                                       "generic": _generic}
"""Family -> ``f(metric, feats, target, counts_ns, *, seed, options) -> (N, l)`` scores."""


def layer_scores(metric: str, feats: list[np.ndarray], target, counts_ns: np.ndarray, *,
                 seed: int, options: dict, max_seconds: float = 600.0) -> np.ndarray:
    """(N, l) score of each (s, d) layer of ``feats`` on each (s,) count row of ``counts_ns``
    (row 0 all ones: the full data), by the family of ``metric`` (``measure_family``)."""
    family = measure_family(metric, options)
    if family == "rsa":
        raise InputError("metric", "a non-rsa metric (rsa has its own pair-weighted path)",
                         repr(metric), "use analyses.bootstrap_model_scores")
    extra = {"max_seconds": max_seconds} if family == "generic" else {}
    with compute_threads(total_gram_work(*feats)):  # small problems: one thread (``compute``)
        return LAYER_SAMPLERS[family](metric, feats, target, counts_ns, seed=seed,
                                      options=options, **extra)
