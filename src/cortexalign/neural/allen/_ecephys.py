"""Visual Coding Neuropixels natural-scenes spike counts, read from the session NWB 2 files.

The session files (``session_<id>/session_<id>.nwb`` in an ``EcephysProjectCache``) are NWB 2.x;
we read, with h5py, the tables AllenSDK's ``EcephysNwbSessionApi`` reads through pynwb:

- ``units``: ``id``, ``spike_times`` + ``spike_times_index`` (ragged, seconds), ``peak_channel_id``
  and the quality metrics ``quality``, ``snr``, ``isi_violations``, ``amplitude_cutoff``,
  ``presence_ratio``, ``firing_rate`` (whichever are present are kept as coordinates);
- ``general/extracellular_ephys/electrodes``: ``id`` and ``location`` (the structure acronym of
  each channel, so each unit's area is its peak channel's location);
- ``intervals/natural_scenes_presentations``: ``start_time``, ``stop_time``, ``frame`` (-1 blank).

Response = number of spikes with ``t0 + w0 <= t < t0 + w1`` (default 0-250 ms, one presentation),
or that count divided by the window length (``statistic="rate"``, spikes/s).
Units are filtered with AllenSDK's default quality thresholds unless ``quality_filter=None``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np
import xarray as xr

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.neural._data import make_responses
from cortexalign.neural.allen._meta import natural_scene_ids
from cortexalign.neural.allen._ophys import _by_stimulus

__all__ = ["load_ecephys_natural_scenes", "ALLEN_UNIT_FILTER", "UNIT_METRICS"]

UNIT_METRICS = ("quality", "snr", "isi_violations", "amplitude_cutoff", "presence_ratio",
                "firing_rate")
ALLEN_UNIT_FILTER: dict[str, tuple[str, float]] = {
    "amplitude_cutoff": ("<=", 0.1), "presence_ratio": (">=", 0.95), "isi_violations": ("<=", 0.5)}
"""AllenSDK's default unit filter (``get_unit_filter_value`` defaults)."""
PRESENTATIONS = "intervals/natural_scenes_presentations"
ELECTRODES = "general/extracellular_ephys/electrodes"


def _col(f: h5py.File, key: str) -> np.ndarray:
    v = np.asarray(f[key][()])
    return v.astype(str) if v.dtype.kind in "SO" else v


def _need(f: h5py.File, key: str, path: Path, fix: str) -> np.ndarray:
    if key not in f:
        raise InputError("path", f"a Visual Coding Neuropixels session NWB file with {key!r}",
                         f"{path.name} without it", fix)
    return _col(f, key)


def load_ecephys_natural_scenes(path: str | Path, *, window: tuple[float, float] = (0.0, 0.25),
                                statistic: str = "count",
                                quality_filter: Mapping[str, tuple[str, float]] | None = None,
                                good_only: bool = True) -> xr.DataArray:
    """Natural-scene spike counts of every unit of one Neuropixels session.

    Parameters
    ----------
    path : a session NWB file.
    window : counting window (start, end) in seconds after each presentation's start_time.
    statistic : ``"count"`` (spikes) or ``"rate"`` (spikes/s).
    quality_filter : {metric: (op, threshold)} with op in ``<=``/``>=``; default
        ``ALLEN_UNIT_FILTER``; ``{}`` keeps every unit.
    good_only : keep only units whose ``quality`` is ``"good"`` (when the column exists).

    Returns
    -------
    (stimulus, neuroid, repetition) DataArray, ids ``ns000``..; neuroid = unit id, coords ``area``,
    ``peak_channel_id``, ``session_id`` and the quality metrics present. Blank trials are left out.
    ``attrs["n_units_filtered"]`` counts the units the filter removed.
    """
    if statistic not in ("count", "rate"):
        raise UnknownNameError("spike statistic", statistic, ["count", "rate"])
    if not (len(window) == 2 and window[0] < window[1]):
        raise InputError("window", "(start, end) in seconds, start < end", repr(window),
                         "e.g. window=(0.0, 0.25)")
    qf = dict(ALLEN_UNIT_FILTER if quality_filter is None else quality_filter)
    path = Path(path)
    if not path.is_file():
        raise InputError("path", "an existing session NWB file", repr(str(path)), "check the path")
    with h5py.File(path, "r") as f:
        if PRESENTATIONS not in f:
            present = sorted(f["intervals"].keys()) if "intervals" in f else []
            raise InputError("path", "a session that showed natural_scenes",
                             f"{path.name} with intervals {present}", "natural scenes are in the "
                             "brain_observatory_1.1 sessions; pick one of those")
        start = _col(f, f"{PRESENTATIONS}/start_time").astype(np.float64)
        frames = np.round(_col(f, f"{PRESENTATIONS}/frame").astype(np.float64)).astype(np.int64)
        fix = "use an unmodified session file from the EcephysProjectCache"
        unit_ids = _need(f, "units/id", path, fix)
        spikes = _need(f, "units/spike_times", path, fix).astype(np.float64)
        ends = _need(f, "units/spike_times_index", path, fix).astype(np.int64)
        peak = _need(f, "units/peak_channel_id", path, fix)
        metrics = {m: _col(f, f"units/{m}") for m in UNIT_METRICS if f"units/{m}" in f}
        chan_area = dict(zip(_need(f, f"{ELECTRODES}/id", path, fix).tolist(),
                             _need(f, f"{ELECTRODES}/location", path, fix).tolist(), strict=True))
        session = str(_col(f, "identifier")) if "identifier" in f else path.stem
    keep = np.ones(len(unit_ids), dtype=bool)
    for metric, (op, thr) in qf.items():
        if metric not in metrics:
            raise UnknownNameError("unit quality metric", metric, metrics)
        if op not in ("<=", ">="):
            raise InputError(f"quality_filter[{metric!r}]", "('<=' or '>=', threshold)", repr(op),
                             "e.g. {'presence_ratio': ('>=', 0.95)}")
        vals = metrics[metric].astype(np.float64)
        keep &= (vals <= thr) if op == "<=" else (vals >= thr)
    if good_only and "quality" in metrics:
        keep &= metrics["quality"] == "good"
    if not keep.any():
        raise InputError("quality_filter", "a filter that keeps at least one unit",
                         f"0 of {len(unit_ids)} units pass {qf}", "relax the thresholds")
    starts = np.concatenate([[0], ends[:-1]])
    trials = frames >= 0
    t0 = start[trials]
    counts_nt = np.stack([np.searchsorted(spikes[a:b], t0 + window[1], "left")
                          - np.searchsorted(spikes[a:b], t0 + window[0], "left")
                          for a, b, k in zip(starts, ends, keep, strict=True) if k]).astype(float)
    if statistic == "rate":
        counts_nt /= window[1] - window[0]
    n_images = int(frames.max()) + 1
    missing = sorted(set(range(n_images)) - set(frames[trials].tolist()))
    if missing:
        raise InputError("natural_scenes_presentations", f"every frame 0..{n_images - 1} shown",
                         f"frames never shown: {missing[:5]}", "use an unmodified session file")
    values = _by_stimulus(counts_nt, frames[trials], np.arange(n_images))
    n_filtered = int((~keep).sum())
    if n_filtered:
        warnings.warn(f"{n_filtered} of {len(unit_ids)} units removed by the quality filter",
                      UserWarning, stacklevel=2)
    coords = {"area": np.asarray([str(chan_area.get(c, "unknown")) for c in peak[keep]]),
              "peak_channel_id": peak[keep], "session_id": np.full(int(keep.sum()), session),
              **{m: v[keep] for m, v in metrics.items()}}
    da = make_responses(values, natural_scene_ids(n_images), unit_ids[keep].astype(str), coords,
                        name=f"allen_ecephys_natural_scenes_{statistic}", allow_nan=True)
    da.attrs.update(n_units_filtered=n_filtered, statistic=statistic,
                    window_s=np.asarray(window, dtype=float))
    return da
