"""Where a results directory keeps its store: the one definition of the results file name."""

from __future__ import annotations

import os
from pathlib import Path

from cortexalign.errors import InputError

__all__ = ["RESULTS_FILE", "results_path"]

RESULTS_FILE = "results.duckdb"
"""The DuckDB file of a results directory (the ``--out`` of a run)."""


def results_path(out: str | os.PathLike[str]) -> Path:
    """The ``results.duckdb`` of a results directory (or the file itself), which must exist."""
    p = Path(out)
    path = p / RESULTS_FILE if p.is_dir() else p
    if not path.is_file():
        raise InputError("out", f"a results directory holding {RESULTS_FILE}, or that file",
                         repr(str(out)), "pass the --out of a `cortexalign run`")
    return path
