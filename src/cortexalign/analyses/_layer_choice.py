"""Which layer of a model stands for it: chosen on the same data, or cross-validated.

A model's benchmark score is usually its best layer's score, the layer chosen on the very data
it is scored on; with many layers the maximum of noisy scores is optimistic (a winner's curse).
The cross-validated choice splits the stimuli into folds; on each fold it picks the layer with the
best score on the other folds' stimuli and scores that layer on the held-out fold alone; the
model's score is the mean of the held-out scores. It works for every registered metric, since it
only calls ``metrics.score`` on stimulus subsets (an encoding metric then fits within each
subset: its own folds must fit in the held-out fold).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import xarray as xr

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics import METRICS, score
from cortexalign.neural import RDMSet
from cortexalign.stimuli import StimulusSet

__all__ = ["LAYER_RULES", "LayerChoice", "layer_choice", "stimulus_folds", "subset_target"]

LAYER_RULES = ("best", "cv")
"""``best``: the best layer on the same data (optimistic); ``cv``: cross-validated choice."""


@dataclass(frozen=True)
class LayerChoice:
    """The layer(s) chosen for a model and the score they earn.

    Attributes
    ----------
    rule : ``best`` or ``cv``. value : the model's score under the rule.
    layers : the layer chosen (one; per fold for ``cv``). fold_values : held-out scores per fold
        (empty for ``best``). layer_values : every layer's score on all the stimuli.
    """

    rule: str
    value: float
    layers: tuple[str, ...]
    fold_values: tuple[float, ...]
    layer_values: dict[str, float]


def stimulus_folds(n_stimuli: int, n_folds: int, seed: int = 0) -> np.ndarray:
    """(s,) fold of each stimulus: a seeded random split into ``n_folds`` near-equal folds."""
    if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer) or \
            not 2 <= n_folds <= n_stimuli // 3:
        raise InputError("n_folds", f"an int in 2..{n_stimuli // 3} (each fold needs >= 3 "
                         f"stimuli; there are {n_stimuli})", repr(n_folds), "e.g. n_folds=5")
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(n_stimuli) % n_folds)


def subset_target(target, idx: np.ndarray):
    """The target restricted to stimuli ``idx`` (an RDMSet's rows and columns, or responses)."""
    if isinstance(target, RDMSet):
        return RDMSet(target.rdms[:, idx][:, :, idx], tuple(np.asarray(target.stimulus_ids)[idx]),
                      target.descriptors, target.name, target.citation)
    if isinstance(target, xr.DataArray):
        return target.isel(stimulus=idx)
    raise InputError("target", "an RDMSet or responses DataArray", type(target).__name__,
                     "load it with cortexalign.neural.load_neural")


def _fold_options(options: dict, idx: np.ndarray) -> dict:
    stim = options.get("stimuli")
    if not isinstance(stim, StimulusSet):
        return options
    return {**options, "stimuli": stim.subset([stim.ids[i] for i in idx])}


def _value(metric: str, x, target, options) -> float:
    return float(score(metric, np.asarray(x), target, **options).value)


def layer_choice(features: Mapping[str, np.ndarray], target, metric: str = "rsa", *,
                 rule: str = "cv", n_folds: int = 5, seed: int = 0, **options) -> LayerChoice:
    """A model's score with its layer chosen by ``rule``, for any registered metric.

    Parameters
    ----------
    features : layer -> (s, d) features, rows in the target's stimulus order.
    target : ``RDMSet`` or responses, as the metric takes.
    metric : a key of ``metrics.METRICS``; ``options`` go to it (``n_bootstrap`` is set to 0).
    rule : ``best`` (the layer with the best score on all stimuli, scored on them) or ``cv``.
        "Best" follows the metric's direction (lowest for ``map_rmse``); a ``stimuli`` option
        (metrics that need the images, e.g. ``map_*``) is cut to each fold's stimuli too.
    n_folds, seed : the stimulus folds of ``cv``.
    """
    if rule not in LAYER_RULES:
        raise UnknownNameError("layer selection rule", str(rule), LAYER_RULES)
    if not isinstance(features, Mapping) or not features:
        raise InputError("features", "a non-empty mapping layer -> (s, d) features",
                         type(features).__name__, "pass e.g. {'layer3': feats_sd}")
    options = {**options, "n_bootstrap": 0}
    layers = list(features)
    full = {layer: _value(metric, features[layer], target, options) for layer in layers}
    sign = 1.0 if metric not in METRICS or METRICS.entry(metric).meta.get(
        "higher_is_better", True) else -1.0
    if rule == "best":
        best = max(layers, key=lambda k: sign * full[k])
        return LayerChoice("best", full[best], (best,), (), full)
    n = len(next(iter(features.values())))
    folds = stimulus_folds(n, n_folds, seed)
    chosen, held = [], []
    for f in range(n_folds):
        train, test = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
        t_train, t_test = subset_target(target, train), subset_target(target, test)
        o_train, o_test = _fold_options(options, train), _fold_options(options, test)
        train_values = {layer: _value(metric, np.asarray(features[layer])[train], t_train,
                                      o_train) for layer in layers}
        best = max(layers, key=lambda k: sign * train_values[k])
        chosen.append(best)
        held.append(_value(metric, np.asarray(features[best])[test], t_test, o_test))
    return LayerChoice("cv", float(np.mean(held)), tuple(chosen), tuple(held), full)
