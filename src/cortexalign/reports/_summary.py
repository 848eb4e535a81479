"""What the command line writes after a run: the layer-wise PNG, the best-layer table and the
HTML report of the whole results directory, all from the results store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cortexalign.reports._figures import layerwise_figure
from cortexalign.reports._report import write_report
from cortexalign.results import RESULTS_FILE, ResultsStore, best_layers

__all__ = ["write_summary"]


def write_summary(out_dir: str | Path, frame: pd.DataFrame | None = None,
                  name: str | None = None) -> dict[str, Path]:
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
    """
    out = Path(out_dir)
    if frame is None:
        frame = ResultsStore(out / RESULTS_FILE, read_only=True).scores_frame()
    files: dict[str, Path] = {}
    if len(frame):
        files["figure"] = layerwise_figure(frame, out / "figure.png", title=name)
        best_layers(frame).to_csv(out / "best_layers.csv", index=False)
        files["best_layers"] = out / "best_layers.csv"
    files["report"] = write_report(out)
    return files
