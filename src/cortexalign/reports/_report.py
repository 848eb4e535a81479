"""The self-contained HTML report of a results directory (``cortexalign report DIR``).

Sections are plain functions in ``SECTIONS`` (name -> builder); each returns its template context
or None when its data is absent, and the template draws the sections that returned something.
Figures are inline SVG (hover titles, ``data-*`` values) or base64 PNG; the only script is a
small inline table sorter; nothing is fetched over the network. Every label goes through jinja2's
autoescape, so model, layer or target names cannot inject markup or script.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from cortexalign import __version__
from cortexalign.errors import InputError
from cortexalign.reports._extras import (
    citations_section,
    maps_section,
    sae_section,
    spiking_section,
    tradeoff_section,
)
from cortexalign.reports._load import ReportData, load_report_data
from cortexalign.reports._maps import MapPanel
from cortexalign.reports._partitions import partitions_section
from cortexalign.reports._scores import prepare_scores
from cortexalign.reports._second_order import discriminability_section, patterns_section
from cortexalign.reports._sections import (
    comparison_section,
    curves_section,
    heatmap_section,
    summary_section,
)

__all__ = ["SECTIONS", "render_report", "write_report", "REPORT_FILE"]

REPORT_FILE = "report.html"

#: Report sections in page order: name -> (title, builder(data, prepared scores) -> ctx | None).
SECTIONS: dict[str, tuple[str, Callable[[ReportData, pd.DataFrame], dict[str, Any] | None]]] = {
    "summary": ("Summary", summary_section),
    "curves": ("Layer-wise alignment", curves_section),
    "heatmaps": ("Layer × target heatmaps", heatmap_section),
    "comparison": ("Model comparison", comparison_section),
    "partitions": ("Variance partitioning and banded ridge", partitions_section),
    "discriminability": ("How well the benchmark separates the models", discriminability_section),
    "patterns": ("Alignment patterns across regions", patterns_section),
    "maps": ("Model maps and neuron maps", maps_section),
    "tradeoff": ("Accuracy / efficiency / alignment", tradeoff_section),
    "sae": ("SAE-BrainMap", sae_section),
    "spiking": ("Spiking models", spiking_section),
    "citations": ("Citations", citations_section),
}

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("cortexalign", "reports/templates"),
                          autoescape=True, undefined=jinja2.StrictUndefined,
                          trim_blocks=True, lstrip_blocks=True)


def render_report(data: ReportData, title: str | None = None) -> str:
    """The report's HTML text for ``data`` (see ``SECTIONS`` for what is shown when)."""
    if not isinstance(data, ReportData):
        raise InputError("data", "a ReportData (from load_report_data)", type(data).__name__,
                         "call load_report_data(results_dir) or build a ReportData")
    scores = prepare_scores(data.scores, data.q_values)
    sections = []
    for name, (heading, build) in SECTIONS.items():
        ctx = build(data, scores)
        if ctx is not None:
            sections.append({"name": name, "title": heading, "ctx": ctx})
    if title is None:
        names = [c.get("name") for c in data.configs() if c.get("name")]
        title = ", ".join(dict.fromkeys(names)) or Path(data.source).name or "results"
    return _ENV.get_template("report.html.j2").render(
        title=title, sections=sections, version=__version__, source=data.source,
        generated=_as_of(data.runs))


def _as_of(runs: pd.DataFrame) -> str:
    """When the store last changed (its latest run's end, or start): a report of the same store
    is the same file, whenever and by whichever command it is written."""
    times = pd.concat([pd.to_datetime(runs.get(c, pd.Series(dtype=object)), errors="coerce")
                       for c in ("started", "finished")]).dropna()
    if times.empty:
        return f"generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}"
    return f"results as of {times.max().strftime('%Y-%m-%d %H:%M UTC')}"


def write_report(results_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                 *, maps: Sequence[MapPanel] = (), failures: Sequence[dict[str, str]] = (),
                 citations: Sequence[str] = (), title: str | None = None,
                 closing: tuple | None = None) -> Path:
    """Read ``results_dir`` and write its report (default ``results_dir/report.html``).

    Parameters
    ----------
    results_dir : the ``--out`` directory of a run (holding ``results.duckdb``).
    out : where to write the HTML file (atomically: temp file, then rename).
    maps : stimulus / model-map / neuron-map rows to show (``MapPanel``; the runner does not
        produce them yet).
    failures : failures known outside the jobs table (the runner's model-load errors).
    citations : references to add to those derived from the stored configs.
    title : the page title (default: the configs' names).
    closing : ``(run_id, status[, finished])`` of the run this report completes: the store
        still says ``running`` (a run is finished only once its report exists), the report shows
        ``status`` and ``finished`` (the time the runner will store; default now).

    Returns
    -------
    The path of the written report.

    Raises
    ------
    InputError : no results database or no run in ``results_dir`` (nothing is written).
    """
    panels = [m.checked() if isinstance(m, MapPanel) else _bad_map(m) for m in maps]
    data = load_report_data(results_dir, failures=list(failures))
    if closing is not None:
        mine = data.runs["run_id"] == closing[0]
        data.runs.loc[mine, "status"] = closing[1]
        when = closing[2] if len(closing) > 2 and closing[2] is not None else \
            datetime.now(UTC).replace(tzinfo=None)
        data.runs.loc[mine, "finished"] = pd.Timestamp(when)
    data.maps = panels
    data.citations = [str(c) for c in citations]
    html = render_report(data, title)
    path = Path(out) if out is not None else Path(results_dir) / REPORT_FILE
    if path.is_dir():
        raise InputError("out", "an .html file path", f"the directory {str(path)!r}",
                         f"pass a file such as {path / REPORT_FILE}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _bad_map(m: Any) -> MapPanel:
    raise InputError("maps", "MapPanel rows", type(m).__name__,
                     "wrap each image and its maps in cortexalign.reports.MapPanel(...)")
