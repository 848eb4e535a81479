"""Time-resolved alignment: a metric scored per time bin of responses with a ``time_bin`` dim.

Recordings with millisecond resolution (Neuropixels, BrainIO assemblies with several
``time_bin`` s) carry the time course of the response. :func:`time_resolved_score` scores the
same features against each bin's responses with any registered metric, with that bin's own noise
ceiling (the metric's ceiling on the bin's trials: Brain-Score's ``TemporalCeiling``), and
returns one labelled Dataset; :func:`plot_time_resolved` draws it.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from cortexalign.errors import InputError

__all__ = ["time_resolved_score", "plot_time_resolved"]

_FIELDS = ("value", "ci_low", "ci_high", "ceiling_low", "ceiling_high", "p_value")


def time_resolved_score(metric: str, features_sd, responses: xr.DataArray, *,
                        time_dim: str = "time_bin", **options) -> xr.Dataset:
    """Score ``features_sd`` against every time bin of ``responses``.

    Parameters
    ----------
    metric : a registered metric name (``ridge``, ``rsa``, ``cka_linear``...).
    features_sd : (s, d) features in the responses' stimulus order.
    responses : (stimulus, neuroid[, repetition], time_bin) responses, e.g. from
        ``load_brainio_assembly``.
    options : the metric's options, the same for every bin (``protocol``, ``n_bootstrap``...).

    Returns
    -------
    Dataset over ``time_bin`` with ``value``, ``ci_low``, ``ci_high``, ``ceiling_low``,
    ``ceiling_high``, ``p_value`` (NaN where the metric gives none) and the bins' own coordinates
    (``time_bin_start`` / ``time_bin_end`` in ms when present).
    """
    from cortexalign.metrics._api import score

    if not isinstance(responses, xr.DataArray) or time_dim not in responses.dims:
        raise InputError("responses", f"a DataArray with a {time_dim!r} dim",
                         type(responses).__name__ if not isinstance(responses, xr.DataArray)
                         else f"dims {responses.dims}",
                         "load trial data with time bins (load_brainio_assembly) or use score()")
    n_bins = responses.sizes[time_dim]
    rows = {f: np.full(n_bins, math.nan) for f in _FIELDS}
    extras = []
    for b in range(n_bins):
        s = score(metric, features_sd, responses.isel({time_dim: b}, drop=True), **options)
        for f in _FIELDS:
            rows[f][b] = getattr(s, f)
        extras.append(s.extra)
    coords = {name: (time_dim, np.asarray(c.values)) for name, c in responses.coords.items()
              if c.dims == (time_dim,)}
    ds = xr.Dataset({f: (time_dim, v) for f, v in rows.items()}, coords=coords)
    ds.attrs.update(metric=metric, n_stimuli=int(responses.sizes["stimulus"]))
    return ds


def plot_time_resolved(result: xr.Dataset, ax=None, label: str | None = None):
    """Line of the score per time bin with its interval, and the per-bin ceiling as a band.

    The x axis is the bin centre in ms when ``time_bin_start``/``time_bin_end`` are present,
    else the bin index. Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    dim = next(iter(result.dims))
    if "time_bin_start" in result.coords and "time_bin_end" in result.coords:
        x = (result["time_bin_start"].values + result["time_bin_end"].values) / 2
        ax.set_xlabel("time from stimulus onset (ms, bin centre)")
    else:
        x = np.arange(result.sizes[dim])
        ax.set_xlabel("time bin")
    metric = result.attrs.get("metric", "score")
    ax.plot(x, result["value"], marker="o", label=label or metric)
    if np.isfinite(result["ci_low"]).any():
        ax.fill_between(x, result["ci_low"], result["ci_high"], alpha=0.25,
                        label="95% interval")
    if np.isfinite(result["ceiling_low"]).any():
        ax.fill_between(x, result["ceiling_low"], result["ceiling_high"], color="grey",
                        alpha=0.25, label="noise ceiling (per bin)")
        ax.plot(x, result["ceiling_low"], color="grey", lw=0.8)
    ax.set_ylabel(f"{metric} (per time bin)")
    ax.legend(frameon=False, fontsize=8)
    return ax
