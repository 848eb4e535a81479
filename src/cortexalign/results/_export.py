"""Atomic CSV/Parquet export of a DataFrame or a store table (DuckDB writes Parquet: no pyarrow
needed)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import duckdb
import pandas as pd

from cortexalign.errors import InputError

__all__ = ["EXPORT_FORMATS", "export_frame", "copy_atomic"]

EXPORT_FORMATS = {".csv": "FORMAT CSV, HEADER", ".parquet": "FORMAT PARQUET"}


def copy_atomic(path: str | os.PathLike[str], copy: Callable[[str, str], None],
                parameter: str = "path") -> Path:
    """Run ``copy(target, options)`` (a DuckDB ``COPY ... TO 'target' (options)``, ``target``
    already quoted for SQL) into a temp file beside ``path``, then rename it into place, so a
    reader never sees half a file. The suffix (CSV or Parquet) is checked before ``copy`` runs."""
    out = Path(path)
    fmt = EXPORT_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise InputError(parameter, f"a file ending in {' or '.join(EXPORT_FORMATS)}",
                         repr(str(path)), "name the export e.g. scores.csv or scores.parquet")
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        copy(str(tmp).replace("'", "''"), fmt)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def export_frame(frame: pd.DataFrame, path: str | os.PathLike[str],
                 parameter: str = "path") -> Path:
    """Write ``frame`` to ``path`` as CSV or Parquet (chosen by the suffix), atomically."""
    def copy(target: str, fmt: str) -> None:
        with duckdb.connect() as con:
            con.register("frame", frame)
            con.execute(f"COPY frame TO '{target}' ({fmt})")

    return copy_atomic(path, copy, parameter)
