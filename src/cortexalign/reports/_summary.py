"""What the runner writes at the end of a run: the layer-wise PNG, the best-layer table and the
HTML report of the whole results directory."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd

from cortexalign.reports._figures import best_layers, layerwise_figure
from cortexalign.reports._report import write_report

__all__ = ["write_summary"]


def write_summary(frame: pd.DataFrame, out_dir: str | Path, name: str, config_hash: str,
                  citations: list[str], failures: list[dict] | None = None,
                  closing: tuple[str, str] | None = None) -> dict[str, Path]:
    """Write ``figure.png`` and ``best_layers.csv`` (when ``frame`` has scores) and
    ``report.html`` (always, from the results store in ``out_dir``) into ``out_dir``.

    Parameters
    ----------
    frame : this run's scores (``ResultsStore.scores_frame`` rows).
    out_dir : the results directory (holding ``results.duckdb``).
    name, config_hash : the run's config name and hash (the figure title; the hash is in the
        report's run table).
    citations : references of the measures and data used, listed in the report.
    failures : the runner's failures ``{"job", "error"}`` (model-load errors are not in the
        jobs table).
    closing : ``(run_id, status)`` of the run these files complete (``write_report``).
    """
    del config_hash  # the report reads it from the runs table
    out = Path(out_dir)
    files: dict[str, Path] = {}
    if len(frame):
        files["figure"] = layerwise_figure(frame, out / "figure.png", title=name)
        files["best_layers"] = _write_csv(best_layers(frame), out / "best_layers.csv")
    files["report"] = write_report(out, failures=failures or [], citations=citations, title=name,
                                   closing=closing)
    return files


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """``frame.to_csv(path)`` through a temp file renamed into place: never half a file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        frame.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
