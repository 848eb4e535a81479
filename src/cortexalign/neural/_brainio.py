"""BrainIO / Brain-Score neural assemblies (their NetCDF files) as cortexalign responses.

BrainIO writes a ``NeuroidAssembly`` with its MultiIndexes reset into plain coordinates
(``brainio.packaging.write_netcdf``): a data variable with dims ``presentation``, ``neuroid`` and
optionally ``time_bin``; ``stimulus_id`` (older files: ``image_id``), ``repetition`` and stimulus
metadata (``object_name``, ``category_name``...) along ``presentation``; ``neuroid_id``,
``region``, ``animal``... along ``neuroid``; ``time_bin_start`` / ``time_bin_end`` (ms) along
``time_bin``. Each presentation is one trial of one stimulus.

:func:`load_brainio_assembly` gathers the trials of each stimulus into a ``repetition`` dim (NaN
where a stimulus has fewer trials), keeps the per-stimulus metadata as stimulus coordinates and
the neuroid metadata as neuroid coordinates, and keeps ``time_bin`` (last dim) when there are
several bins: score those per bin with ``cortexalign.metrics.time_resolved_score``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from cortexalign.errors import InputError

__all__ = ["load_brainio_assembly", "is_brainio_assembly"]

_STIMULUS_COORDS = ("stimulus_id", "image_id")


def is_brainio_assembly(da: xr.DataArray) -> bool:
    """Whether ``da`` has BrainIO's dims (``presentation`` and ``neuroid``)."""
    return "presentation" in da.dims and "neuroid" in da.dims


def _open(path: Path) -> xr.DataArray:
    with xr.open_dataset(path) as ds:
        data_vars = list(ds.data_vars)
        if len(data_vars) != 1:
            raise InputError("path", "a NetCDF file with one data variable (a BrainIO assembly)",
                             f"{len(data_vars)} variables: {data_vars[:5]}",
                             "save one assembly per file")
        return ds[data_vars[0]].load()


def load_brainio_assembly(path: str | Path | xr.DataArray, *,
                          average_repetitions: bool = False) -> xr.DataArray:
    """Read a BrainIO assembly as responses ``(stimulus, neuroid[, repetition][, time_bin])``.

    Parameters
    ----------
    path : a BrainIO NetCDF file, or an assembly already opened with xarray.
    average_repetitions : average the trials of each stimulus (drops the repetition dim).

    Returns
    -------
    DataArray with stimulus ids in their order of first presentation; NaN marks a missing trial.
    """
    da = path if isinstance(path, xr.DataArray) else _open(Path(path))
    if not is_brainio_assembly(da):
        raise InputError("assembly dims", "BrainIO's ('presentation', 'neuroid'[, 'time_bin'])",
                         f"{da.dims}", "use load_responses_netcdf for cortexalign's own files")
    extra_dims = [d for d in da.dims if d not in ("presentation", "neuroid", "time_bin")]
    if extra_dims:
        raise InputError("assembly dims", "presentation, neuroid and optionally time_bin",
                         f"also {extra_dims}", "select or average the other dims first")
    if "time_bin" not in da.dims:
        da = da.expand_dims("time_bin", axis=-1)
    da = da.transpose("presentation", "neuroid", "time_bin")
    sid = next((c for c in _STIMULUS_COORDS if c in da.coords), None)
    if sid is None:
        raise InputError("assembly coords", "a 'stimulus_id' (or 'image_id') coordinate on "
                         "presentation", f"{sorted(da.coords)}", "add the stimulus ids")
    ids = np.asarray(da[sid].values).astype(str)
    uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first)                      # stimuli in order of first presentation
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    stim_of_trial = rank[inverse]
    if "repetition" in da.coords and da["repetition"].dims == ("presentation",):
        _, rep_of_trial = np.unique(np.asarray(da["repetition"].values), return_inverse=True)
    else:                                          # the k-th trial of each stimulus
        rep_of_trial = np.zeros(len(ids), dtype=int)
        seen: dict[int, int] = {}
        for t, s in enumerate(stim_of_trial):
            rep_of_trial[t] = seen.get(s, 0)
            seen[s] = rep_of_trial[t] + 1
    s, n, t = len(uniq), da.sizes["neuroid"], da.sizes["time_bin"]
    r = int(rep_of_trial.max()) + 1
    values = np.full((s, n, r, t), np.nan)
    if np.unique(np.stack([stim_of_trial, rep_of_trial]), axis=1).shape[1] != len(ids):
        raise InputError("assembly", "one trial per (stimulus, repetition)",
                         "repeated (stimulus_id, repetition) pairs",
                         "check the repetition coordinate")
    values[stim_of_trial, :, rep_of_trial, :] = np.asarray(da.values, dtype=np.float64)
    firsts = first[order]
    coords: dict = {"stimulus": ids[firsts]}
    for name, c in da.coords.items():
        if c.dims == ("presentation",) and name not in (sid, "repetition", "presentation"):
            vals = np.asarray(c.values)
            if all(len(set(vals[stim_of_trial == k].tolist())) == 1 for k in range(s)):
                coords[name] = ("stimulus", vals[firsts])
        elif c.dims == ("neuroid",) and name != "neuroid":
            coords[name] = ("neuroid", np.asarray(c.values))
        elif c.dims == ("time_bin",) and name != "time_bin":
            coords[name] = ("time_bin", np.asarray(c.values))
    neuroid_ids = (np.asarray(da["neuroid_id"].values).astype(str) if "neuroid_id" in da.coords
                   else np.array([f"n{k:04d}" for k in range(n)]))
    coords["neuroid"] = neuroid_ids
    out = xr.DataArray(values, dims=("stimulus", "neuroid", "repetition", "time_bin"),
                       coords=coords, name=da.name or "brainio", attrs=dict(da.attrs))
    out.attrs["source"] = "BrainIO assembly"
    if average_repetitions or r == 1:
        out = out.mean("repetition", skipna=True, keep_attrs=True)
    if t == 1:
        out = out.isel(time_bin=0, drop=True)
        for name in [k for k, c in out.coords.items() if "time_bin" in c.dims]:
            out = out.drop_vars(name)
    return out
