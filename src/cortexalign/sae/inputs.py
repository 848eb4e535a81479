"""The inputs of an SAE-BrainMap config: voxel responses, images and category labels.

``VOXEL_SOURCES`` names the voxel loaders of ``neural.source`` (NSD via ``load_nsd``, a 4-D NIfTI,
a table); ``load_brainmap_stimuli`` reads ``nsd_stimuli.hdf5`` or any ``load_stimuli`` source,
subset to the voxels' stimulus ids; ``read_labels`` a CSV of categories.
"""

from __future__ import annotations

import csv
import functools
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.neural.fmri import load_nifti_responses, load_nsd, load_voxel_table

__all__ = ["VOXEL_SOURCES", "load_brainmap_voxels", "load_brainmap_stimuli", "read_labels"]

HDF5_SUFFIXES = (".hdf5", ".h5")

@functools.wraps(load_nifti_responses)  # its signature is the options' schema
def _nifti(betas: str, stimulus_ids: str | list[str], roi_mask: str, **kwargs: Any) -> xr.DataArray:
    ids = (Path(stimulus_ids).read_text().split() if isinstance(stimulus_ids, str | Path)
           else list(stimulus_ids))
    return load_nifti_responses(betas, ids, roi_mask, **kwargs)


#: Voxel loaders of ``neural.source``: name -> fn(**options) -> (stimulus, neuroid) responses.
#: ``nifti`` also takes ``stimulus_ids`` as a text file of whitespace-separated ids.
VOXEL_SOURCES: dict[str, Callable[..., xr.DataArray]] = {"nsd": load_nsd, "nifti": _nifti,
                                                         "table": load_voxel_table}


def load_brainmap_voxels(spec: Mapping[str, Any]) -> xr.DataArray:
    """(stimulus, neuroid) responses from the config's ``neural`` block (repetitions averaged)."""
    options = dict(spec)
    source = options.pop("source", "nsd")
    if source not in VOXEL_SOURCES:
        raise UnknownNameError("voxel source (neural.source)", str(source), list(VOXEL_SOURCES))
    fn = VOXEL_SOURCES[source]
    params = list(inspect.signature(fn).parameters)
    bad = sorted(set(options) - set(params))
    if bad:
        raise InputError(f"neural.{bad[0]}", f"an option of the {source!r} loader ({', '.join(params)})",
                         repr(bad[0]), "check the spelling (neural.source picks the loader)")
    voxels = fn(**options)
    if voxels.dims != ("stimulus", "neuroid"):
        raise InputError("neural", "responses averaged over repetitions (stimulus, neuroid)",
                         f"dims {voxels.dims}", "leave neural.average at its default (true)")
    return voxels


def load_brainmap_stimuli(spec: Mapping[str, Any], stimulus_ids: list[str]) -> Any:
    """The images of ``stimulus_ids`` (in that order) from the config's ``stimuli`` block."""
    options = dict(spec)
    if "source" not in options:
        raise InputError("stimuli.source", "the images: nsd_stimuli.hdf5, a folder, an .npz file "
                         "or a bundled set", "nothing", "add stimuli: {source: PATH}")
    source = str(options.pop("source"))
    if Path(source).suffix.lower() in HDF5_SUFFIXES:
        from cortexalign.neural.fmri import load_nsd_stimuli

        return load_nsd_stimuli(source, stimulus_ids, **options)
    from cortexalign.stimuli import load_stimuli

    stimuli = load_stimuli(source, **options)
    have = set(stimuli.ids)
    missing = [s for s in stimulus_ids if s not in have]
    if missing:
        raise InputError("stimuli", f"every stimulus id of the voxel responses ({len(stimulus_ids)})",
                         f"{len(missing)} missing from {source!r} (first: {missing[:3]!r})",
                         "point stimuli.source at the images the responses were recorded with "
                         "(ids must match exactly)")
    return stimuli if list(stimuli.ids) == stimulus_ids else stimuli.subset(stimulus_ids)


def read_labels(path: str | Path, stimulus_ids: list[str]) -> np.ndarray:
    """(s,) category per stimulus from a CSV ``stimulus_id,category`` ("" where none is given)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("labels", "a CSV file stimulus_id,category", repr(str(path)),
                         "check the path, or leave labels unset")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not {"stimulus_id", "category"} <= set(reader.fieldnames or ()):
            raise InputError("labels", "columns stimulus_id,category", f"{reader.fieldnames}",
                             "name the columns stimulus_id and category")
        table = {r["stimulus_id"]: r["category"] for r in reader}
    if not set(table) & set(stimulus_ids):
        raise InputError("labels", "labels for the run's stimulus ids", f"none of {len(table)} "
                         f"ids of {path.name} among them (e.g. {next(iter(table), '')!r})",
                         "use the responses' stimulus ids (NSD: nsd%05d)")
    return np.asarray([table.get(s, "") for s in stimulus_ids], dtype=str)
