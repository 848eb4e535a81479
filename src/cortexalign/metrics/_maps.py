"""Map-to-map measures between model maps (b, gh, gw) and neuron maps (n, gh, gw).

The seed analysis (Jalil, Qazi & Iqbal 2025/2026) reports RMSE between neuron maps and model
attention / feature maps (typical 0.09-0.15), without saying how maps were scaled. RMSE depends on
the scaling, so it is explicit here (``MAP_SCALINGS``): ``"minmax"`` maps each map to [0, 1] (the
range the reported RMSEs suggest), ``"zscore"`` to zero mean and unit variance (then
``RMSE^2 = 2 (1 - Pearson r)``). Pearson and Spearman are scale free. All measures return the full
(b, n) matrix, computed with matrix products (no loop over pairs).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.stats import rankdata

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.metrics._score import Score

__all__ = ["MAP_MEASURES", "MAP_MEASURES_AGAINST", "MAP_SCALINGS", "compare_maps", "map_score"]


def _minmax(m_kp: np.ndarray) -> np.ndarray:
    lo, hi = m_kp.min(1, keepdims=True), m_kp.max(1, keepdims=True)
    return (m_kp - lo) / (hi - lo)


def _zscore(m_kp: np.ndarray) -> np.ndarray:
    return (m_kp - m_kp.mean(1, keepdims=True)) / m_kp.std(1, keepdims=True)


MAP_SCALINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"minmax": _minmax, "zscore": _zscore}


def _rmse_against(a_bp, scaling):
    a = MAP_SCALINGS[scaling](a_bp)
    a2 = (a**2).sum(1)[:, None]

    def against(b_np):
        b = MAP_SCALINGS[scaling](b_np)
        sq = a2 + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
        return np.sqrt(np.clip(sq, 0.0, None) / a.shape[1])
    return against


def _pearson_against(a_bp, scaling=None):
    a = _zscore(a_bp)
    return lambda b_np: a @ _zscore(b_np).T / a.shape[1]


def _spearman_against(a_bp, scaling=None):
    pearson = _pearson_against(rankdata(a_bp, axis=1))
    return lambda b_np: pearson(rankdata(b_np, axis=1))


MAP_MEASURES_AGAINST: dict[str, Callable] = {"rmse": _rmse_against, "pearson": _pearson_against,
                                             "spearman": _spearman_against}
"""``f(model_bp, scaling) -> g`` with ``g(neuron_np) -> (b, n)``: the model maps' scaling (or
ranks) done once, for many sets of neuron maps (the permutation null)."""


def _measure(name: str) -> Callable:
    def measure(a_bp, b_np, scaling=None):
        return MAP_MEASURES_AGAINST[name](a_bp, scaling)(b_np)
    measure.__name__ = f"_{name}"
    return measure


MAP_MEASURES: dict[str, Callable] = {name: _measure(name) for name in MAP_MEASURES_AGAINST}
"""``f(model_bp, neuron_np, scaling) -> (b, n)``; maps flattened to p = gh * gw pixels."""


def _flat(maps, name: str) -> np.ndarray:
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise InputError(name, "(k, gh, gw) maps (or one (gh, gw) map)", f"shape {m.shape}",
                         "stack the maps along axis 0")
    if not np.isfinite(m).all():
        raise InputError(name, "finite maps", "NaN/Inf values", "clean the maps")
    flat = m.reshape(m.shape[0], -1)
    const = np.ptp(flat, axis=1) == 0
    if const.any():
        raise InputError(name, "maps that vary across pixels", f"{int(const.sum())} constant "
                         f"map(s) (first: {int(np.flatnonzero(const)[0])})",
                         "drop them; a flat map has no spatial pattern to compare")
    return flat


def compare_maps(model_maps, neuron_maps, measure: str = "rmse",
                 scaling: str = "minmax") -> np.ndarray:
    """(b, n) measure between every model map and every neuron map.

    Parameters
    ----------
    model_maps : (b, gh, gw) or (gh, gw) model maps (attention or feature maps).
    neuron_maps : (n, gh, gw) neuron maps (``cortexalign.neural.neuron_maps``), same grid.
    measure : a key of ``MAP_MEASURES`` (``rmse``: lower is better; others higher).
    scaling : a key of ``MAP_SCALINGS``, used by ``rmse``.
    """
    if measure not in MAP_MEASURES:
        raise UnknownNameError("map measure", measure, MAP_MEASURES)
    if scaling not in MAP_SCALINGS:
        raise UnknownNameError("map scaling", scaling, MAP_SCALINGS)
    a, b = _flat(model_maps, "model_maps"), _flat(neuron_maps, "neuron_maps")
    if np.shape(model_maps)[-2:] != np.shape(neuron_maps)[-2:]:
        raise InputError("neuron_maps", f"the model maps' grid {np.shape(model_maps)[-2:]}",
                         f"grid {np.shape(neuron_maps)[-2:]}", "build the neuron maps with "
                         "grid=model_maps.shape[-2:]")
    return MAP_MEASURES[measure](a, b, scaling)


def map_score(model_maps, neuron_maps, measure: str = "rmse", scaling: str = "minmax") -> Score:
    """The median of ``compare_maps`` over all (model map, neuron) pairs as a ``Score``;
    ``extra`` holds the (b, n) matrix, the per-neuron mean over model maps and the options."""
    m_bn = compare_maps(model_maps, neuron_maps, measure, scaling)
    return Score(float(np.median(m_bn)), math.nan, math.nan,
                 extra={"matrix": m_bn, "per_neuroid": m_bn.mean(0), "measure": measure,
                        "scaling": scaling if measure == "rmse" else "none",
                        "higher_is_better": measure != "rmse"})
