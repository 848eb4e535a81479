"""Readers for neural data: bundled RDMs, npz, CSV and NetCDF files with stimulus ids."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import xarray as xr

from cortexalign.errors import InputError
from cortexalign.neural._brainio import is_brainio_assembly, load_brainio_assembly
from cortexalign.neural._data import RDMSet, make_responses, validate_responses
from cortexalign.npz import npz_array
from cortexalign.registry import Registry

__all__ = ["NEURAL", "load_neural", "load_rdms_npz", "load_responses_csv",
           "load_responses_netcdf", "load_responses_npz"]

NEURAL: Registry = Registry("neural dataset")

_K92_CITATION = ("Kriegeskorte, Mur, Ruff, Kiani, Bodurka, Esteky, Tanaka & Bandettini (2008). "
                 "Matching categorical object representations in inferior temporal cortex of man "
                 "and monkey. Neuron 60(6):1126-1141. Data via rsatoolbox (MIT).")


def _k92() -> np.lib.npyio.NpzFile:
    path = Path(str(resources.files("cortexalign").joinpath("data", "kriegeskorte92",
                                                            "kriegeskorte92.npz")))
    return np.load(path, allow_pickle=False)


_K92_IDS = tuple(f"img{k:02d}" for k in range(92))


@NEURAL.register("kriegeskorte92.human_IT", citation=_K92_CITATION, stimuli="kriegeskorte92",
                 description="human IT fMRI RDMs, 4 subjects x 2 sessions (8 RDMs; noise ceiling "
                             "leave-one-subject-out)")
def human_it() -> RDMSet:
    with _k92() as d:
        r = d["rdm_human_IT_subj_sess"].astype(np.float64)  # (4, 2, 92, 92)
    subj = np.repeat(np.arange(1, 5), 2)
    sess = np.tile(np.arange(1, 3), 4)
    return RDMSet(r.reshape(8, 92, 92), _K92_IDS, {"subject": subj, "session": sess},
                  name="human_IT", citation=_K92_CITATION)


@NEURAL.register("kriegeskorte92.monkey_IT", citation=_K92_CITATION, stimuli="kriegeskorte92",
                 description="monkey IT RDM from 674 neurons (one RDM: no ceiling)")
def monkey_it() -> RDMSet:
    with _k92() as d:
        r = d["rdm_monkey_IT"]
    return RDMSet(r, _K92_IDS, name="monkey_IT", citation=_K92_CITATION)


def load_rdms_npz(path: str | Path, rdms_key: str = "rdms", ids_key: str = "stimulus_ids",
                  name: str | None = None) -> RDMSet:
    """RDMs from an npz file: ``rdms`` (r, s, s) or (s, s), ``stimulus_ids`` (s,), optional
    descriptor arrays named ``descriptor_<name>`` of length r."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as d:
        for key in (rdms_key, ids_key):
            if key not in d.files:
                raise InputError("rdms file", f"an npz with arrays {rdms_key!r} and {ids_key!r}",
                                 f"arrays {d.files} in {path.name}", "save both arrays in the file")
        desc = {k[len("descriptor_"):]: npz_array(d, k, path, "descriptor")
                for k in d.files if k.startswith("descriptor_")}
        return RDMSet(npz_array(d, rdms_key, path, "RDM array"),
                      tuple(str(s) for s in npz_array(d, ids_key, path, "id array")), desc,
                      name=name or path.stem)


def load_responses_npz(path: str | Path, values_key: str = "responses",
                       ids_key: str = "stimulus_ids", name: str | None = None) -> xr.DataArray:
    """Responses from an npz: ``responses`` (s, n[, r]), ``stimulus_ids`` (s,), optional
    ``neuroid_ids`` (n,) and per-neuroid arrays named ``coord_<name>``."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as d:
        for key in (values_key, ids_key):
            if key not in d.files:
                raise InputError("responses file", f"an npz with arrays {values_key!r} and "
                                 f"{ids_key!r}", f"arrays {d.files}", "save both arrays")
        coords = {k[len("coord_"):]: npz_array(d, k, path, "coordinate")
                  for k in d.files if k.startswith("coord_")}
        nids = npz_array(d, "neuroid_ids", path, "id array") if "neuroid_ids" in d.files else None
        return make_responses(npz_array(d, values_key, path, "neural response array"),
                              npz_array(d, ids_key, path, "id array"), nids, coords,
                              name=name or path.stem)


def load_responses_csv(path: str | Path, stimulus_column: str = "stimulus_id",
                       name: str | None = None) -> xr.DataArray:
    """A stimulus x neuroid table: one row per stimulus, a ``stimulus_id`` column, one numeric
    column per neuroid (the column name is the neuroid id)."""
    import csv

    path = Path(path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or stimulus_column not in rows[0]:
        raise InputError("stimulus_column", f"a column named {stimulus_column!r} in {path.name}",
                         f"columns {rows[0] if rows else []}", "name the id column or pass "
                         "stimulus_column=")
    header = rows[0]
    sc = header.index(stimulus_column)
    cols = [i for i in range(len(header)) if i != sc]
    try:
        values = np.array([[float(r[i]) if r[i] != "" else np.nan for i in cols] for r in rows[1:]])
    except ValueError as err:
        raise InputError("responses table", "numeric neuroid columns", str(err),
                         "remove non-numeric columns or move metadata to a separate file") from None
    return make_responses(values, [r[sc] for r in rows[1:]], [header[i] for i in cols],
                          name=name or path.stem)


def load_responses_netcdf(path: str | Path) -> xr.DataArray:
    """A DataArray saved with ``da.to_netcdf`` (dims stimulus, neuroid[, repetition]), or a
    BrainIO / Brain-Score assembly (dims presentation, neuroid[, time_bin]; see
    ``load_brainio_assembly``)."""
    da = xr.load_dataarray(path)
    if is_brainio_assembly(da):
        da = load_brainio_assembly(da)
        return da if "time_bin" in da.dims else validate_responses(da, allow_nan=True)
    return validate_responses(da)


def load_neural(source: str | Path, **kwargs) -> RDMSet | xr.DataArray:
    """A registered dataset name, or a file: ``.nc`` (responses), ``.csv`` (responses),
    ``.npz`` (RDMs if it holds ``rdms``, else responses)."""
    s = str(source)
    if s in NEURAL:
        return NEURAL.get(s)(**kwargs)
    p = Path(s)
    if not p.is_file():
        raise InputError("neural", f"a registered dataset ({', '.join(NEURAL.names())}) or a "
                         ".nc/.csv/.npz file", repr(s), "check the name or the path")
    if p.suffix == ".nc":
        return load_responses_netcdf(p)
    if p.suffix == ".csv":
        return load_responses_csv(p, **kwargs)
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as d:
            has_rdms = "rdms" in d.files
        return load_rdms_npz(p, **kwargs) if has_rdms else load_responses_npz(p, **kwargs)
    raise InputError("neural", "a .nc, .csv or .npz file", repr(s), "convert the data to one of these")
