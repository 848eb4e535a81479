"""Precomputed cell-by-image response tables (CSV or Parquet) as labelled neural data.

One row per cell, one column per image, and metadata columns beside them::

    cell_specimen_id, area, cre_line, depth, ns000, ns001, ..., ns117

Image columns are recognised by name: ``ns000``-style ids, ``blank``, or bare template-frame
numbers (``0``..``117``, renamed ``ns000``..), unless ``stimulus_columns`` names them. Every other
column becomes a neuroid coordinate. Parquet is read with DuckDB (a core dependency).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from cortexalign.errors import InputError
from cortexalign.neural._data import make_responses
from cortexalign.neural.allen._meta import BLANK_ID, cell_class, natural_scene_id

__all__ = ["load_response_table"]

_STIM_RE = re.compile(r"^(ns\d+|blank|-?\d+)$")


def _read_table(path: Path):
    import pandas as pd

    if path.suffix.lower() == ".csv":
        return pd.read_csv(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        import duckdb

        return duckdb.read_parquet(str(path)).df()
    raise InputError("path", "a .csv or .parquet table", repr(str(path)), "convert the table")


def _stim_id(col: str) -> str:
    return natural_scene_id(int(col)) if re.fullmatch(r"-?\d+", col) else col


def load_response_table(path: str | Path, *, neuroid_column: str = "cell_specimen_id",
                        stimulus_columns: Sequence[str] | None = None,
                        name: str | None = None) -> xr.DataArray:
    """A cell x image table as a (stimulus, neuroid) DataArray with the metadata as coordinates.

    Parameters
    ----------
    path : ``.csv`` or ``.parquet`` file.
    neuroid_column : the column of unique cell ids (row numbers ``n0000``.. when absent).
    stimulus_columns : the image columns, in order (default: recognised by name, see module doc).

    Returns
    -------
    (stimulus, neuroid) DataArray; a ``cell_class`` coordinate is added from ``cre_line`` when the
    table has that column but no ``cell_class``. Empty cells are NaN (``allow_nan``).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("path", "an existing .csv or .parquet file", repr(str(path)),
                         "check the path")
    df = _read_table(path)
    df.columns = [str(c) for c in df.columns]
    if stimulus_columns is None:
        stim_cols = [c for c in df.columns if _STIM_RE.match(c) and c != neuroid_column]
    else:
        stim_cols = [str(c) for c in stimulus_columns]
        absent = [c for c in stim_cols if c not in df.columns]
        if absent:
            raise InputError("stimulus_columns", f"columns of {path.name}", f"{absent[:5]} absent",
                             f"pick from {list(df.columns)[:20]}")
    if not stim_cols:
        raise InputError("path", "image columns named ns000.., blank or frame numbers",
                         f"columns {list(df.columns)[:20]}", "rename the image columns or pass "
                         "stimulus_columns=")
    meta_cols = [c for c in df.columns if c not in stim_cols and c != neuroid_column]
    try:
        values = df[stim_cols].to_numpy(dtype=np.float64).T
    except (TypeError, ValueError) as err:
        raise InputError("stimulus columns", "numeric responses", str(err),
                         "move non-numeric columns out of the image columns") from None
    ids = df[neuroid_column].astype(str).tolist() if neuroid_column in df.columns else None
    coords = {c: df[c].to_numpy() for c in meta_cols}
    for c, v in coords.items():
        if v.dtype == object:
            coords[c] = v.astype(str)
    if "cre_line" in coords and "cell_class" not in coords:
        coords["cell_class"] = np.asarray([cell_class(c) for c in coords["cre_line"]])
    stim_ids = [_stim_id(c) for c in stim_cols]
    if len(set(stim_ids)) != len(stim_ids):
        raise InputError("stimulus columns", "one column per image", f"{stim_cols[:10]}",
                         f"drop duplicate image columns (e.g. '0' and 'ns000'; '{BLANK_ID}' = -1)")
    return make_responses(values, stim_ids, ids, coords, name=name or path.stem, allow_nan=True)
