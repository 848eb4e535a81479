"""Atomic CSV/Parquet export of a DataFrame (DuckDB writes Parquet: no pyarrow needed)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import duckdb
import pandas as pd

from cortexalign.errors import InputError

__all__ = ["EXPORT_FORMATS", "export_frame"]

EXPORT_FORMATS = {".csv": "FORMAT CSV, HEADER", ".parquet": "FORMAT PARQUET"}


def export_frame(frame: pd.DataFrame, path: str | os.PathLike[str],
                 parameter: str = "path") -> Path:
    """Write ``frame`` to ``path`` as CSV or Parquet (chosen by the suffix), atomically: a temp
    file beside it is renamed into place, so a reader never sees half a file."""
    out = Path(path)
    fmt = EXPORT_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise InputError(parameter, f"a file ending in {' or '.join(EXPORT_FORMATS)}",
                         repr(str(path)), "name the export e.g. scores.csv or scores.parquet")
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    quoted = str(tmp).replace("'", "''")
    try:
        with duckdb.connect() as con:
            con.register("frame", frame)
            con.execute(f"COPY frame TO '{quoted}' ({fmt})")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
