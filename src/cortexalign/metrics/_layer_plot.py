"""Heatmap of a ``layer_similarity`` matrix (Kornblith et al. 2019's figure)."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from cortexalign.errors import InputError

__all__ = ["plot_layer_similarity", "similarity_label", "MEASURE_NAMES"]


def plot_layer_similarity(da: xr.DataArray, ax=None, *, cmap: str = "magma",
                          annotate: bool | None = None):
    """Heatmap of a ``layer_similarity`` result: layers of A on the y axis, of B on the x axis.

    Parameters
    ----------
    da : (layer_a, layer_b) DataArray from ``layer_similarity``.
    ax : a matplotlib Axes to draw into; ``None``: a new ``matplotlib.figure.Figure`` (no pyplot
        state is touched; save it with ``ax.figure.savefig(path)``).
    cmap : colour map; CKA in [0, 1] is drawn on [0, 1], other values on their own range.
    annotate : write the values in the cells (default: when there are at most 12 x 12).

    Returns
    -------
    the Axes drawn into (its colour bar is labelled with the metric).
    """
    if not isinstance(da, xr.DataArray) or da.dims != ("layer_a", "layer_b"):
        raise InputError("da", "a (layer_a, layer_b) DataArray from layer_similarity",
                         f"{type(da).__name__} with dims {getattr(da, 'dims', None)}",
                         "pass the result of layer_similarity(...)")
    if ax is None:
        from matplotlib.figure import Figure

        la, lb = da.shape
        fig = Figure(figsize=(3.5 + 0.45 * lb, 2.8 + 0.4 * la), layout="constrained")
        ax = fig.subplots()
    values = np.asarray(da.values, dtype=float)
    metric = str(da.attrs.get("metric", da.name or "similarity"))
    finite = values[np.isfinite(values)]
    lo, hi = (0.0, 1.0) if metric.startswith("cka") and finite.size and finite.min() >= 0 else (
        (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0))
    image = ax.imshow(values, cmap=cmap, vmin=lo, vmax=hi, origin="upper", aspect="auto")
    ax.set_xticks(range(da.shape[1]), [str(v) for v in da["layer_b"].values], rotation=60,
                  ha="right", fontsize=8)
    ax.set_yticks(range(da.shape[0]), [str(v) for v in da["layer_a"].values], fontsize=8)
    ax.set_xlabel(f"layers of {da.attrs.get('model_b', 'model B')}", fontsize=8)
    ax.set_ylabel(f"layers of {da.attrs.get('model_a', 'model A')}", fontsize=8)
    if annotate if annotate is not None else max(da.shape) <= 12:
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v < lo + 0.6 * (hi - lo) else "black")
    ax.figure.colorbar(image, ax=ax, label=similarity_label(da))
    return ax


#: How a figure names each measure of ``layer_similarity``.
MEASURE_NAMES = {"cka_linear": "linear CKA", "cka_debiased": "debiased linear CKA",
                 "cka_rbf": "RBF-kernel CKA", "rsa": "RSA"}
_COMPARISONS = {"spearman": "Spearman \u03c1", "kendall_tau_a": "Kendall \u03c4a",
                "rho_a": "Spearman \u03c1a", "pearson": "Pearson r", "cosine": "cosine"}


def similarity_label(da: xr.DataArray) -> str:
    """The measure as a reader names it, from ``da.attrs``: ``linear CKA``, or for RSA the
    comparison and the RDMs (``RSA: Spearman ρ of correlation-distance RDMs``)."""
    metric = str(da.attrs.get("metric", da.name or "similarity"))
    try:
        options = json.loads(da.attrs.get("options") or "{}")
    except (TypeError, ValueError):
        options = {}
    name = MEASURE_NAMES.get(metric, metric)
    if metric == "rsa":
        compare = options.get("compare", "spearman")
        rdm = options.get("rdm_method", "correlation")
        return f"RSA: {_COMPARISONS.get(compare, compare)} of {rdm}-distance RDMs"
    if metric == "cka_rbf" and "sigma_frac" in options:
        return f"{name} (bandwidth {options['sigma_frac']} x median distance)"
    return name
