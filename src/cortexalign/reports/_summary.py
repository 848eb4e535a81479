"""What the command line writes after a run: the layer-wise PNG, the best-layer table and the
HTML report of the whole results directory, all from the results store."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from cortexalign.reports._figures import best_layers, layerwise_figure
from cortexalign.reports._report import write_report
from cortexalign.results import RESULTS_FILE, ResultsStore

__all__ = ["write_summary", "write_run_outputs"]


def write_run_outputs(summary: Any) -> dict[str, Path]:
    """The files of one finished ``cortexalign run`` (``bench.RunSummary``: its store, job
    keys, config name, run id): ``write_summary`` of its scores, the report showing the run with
    the status it gets once they exist. Pass it as ``run_experiment(..., outputs=...)``."""
    frame = ResultsStore(summary.files["results"], read_only=True).scores_frame(
        job_key=sorted(summary.job_keys))
    return write_summary(summary.out_dir, frame, summary.config_name,
                         closing=(summary.run_id, "finished" if summary.ok else "failed",
                                  getattr(summary, "finished", None)))


def write_summary(out_dir: str | Path, frame: pd.DataFrame | None = None,
                  name: str | None = None,
                  closing: tuple | None = None) -> dict[str, Path]:
    """Write ``figure.png`` and ``best_layers.csv`` (when there are scores) and ``report.html``
    (always) into the results directory ``out_dir``, reading its ``results.duckdb``.

    ``report.html`` is exactly what ``cortexalign report out_dir`` writes: the report reads the
    store only (scores, stored failures, citations and statistics).

    Parameters
    ----------
    out_dir : the results directory (holding ``results.duckdb``).
    frame : the scores to draw and tabulate (e.g. one run's: ``ResultsStore.scores_frame(
        job_key=...)``); default every score in the store.
    name : the figure's title (e.g. the config's name).
    closing : ``(run_id, status[, finished])`` of the run these files complete
        (``write_report``).
    """
    out = Path(out_dir)
    if frame is None:
        frame = ResultsStore(out / RESULTS_FILE, read_only=True).scores_frame()
    files: dict[str, Path] = {}
    if len(frame):
        files["figure"] = layerwise_figure(frame, out / "figure.png", title=name)
        files["best_layers"] = _write_csv(best_layers(frame), out / "best_layers.csv")
    files["report"] = write_report(out, closing=closing)
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
