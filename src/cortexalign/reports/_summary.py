"""A small self-contained HTML summary: the layer-wise figure inlined, and the best layers."""

from __future__ import annotations

import base64
import math
from pathlib import Path

import jinja2
import pandas as pd

from cortexalign import __version__
from cortexalign.reports._figures import best_layers, layerwise_figure

__all__ = ["write_summary"]


def _fmt(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def write_summary(frame: pd.DataFrame, out_dir: str | Path, name: str, config_hash: str,
                  citations: list[str], failures: list[dict] | None = None) -> dict[str, Path]:
    """Write ``figure.png``, ``best_layers.csv`` and ``report.html`` into ``out_dir``.

    Labels are HTML-escaped (jinja2 autoescape): model or layer names cannot inject markup.
    """
    out = Path(out_dir)
    fig = layerwise_figure(frame, out / "figure.png", title=name)
    best = best_layers(frame)
    best.to_csv(out / "best_layers.csv", index=False)
    env = jinja2.Environment(loader=jinja2.PackageLoader("cortexalign", "reports/templates"),
                             autoescape=True)
    html = env.get_template("summary.html.j2").render(
        name=name, config_hash=config_hash, version=__version__, n_scores=len(frame),
        n_failed=len(failures or []), figure_b64=base64.b64encode(fig.read_bytes()).decode(),
        best=best.to_dict("records"), fmt=_fmt, failures=failures or [], citations=citations)
    tmp = out / "report.html.tmp"
    tmp.write_text(html)
    tmp.replace(out / "report.html")
    return {"figure": fig, "report": out / "report.html", "best_layers": out / "best_layers.csv"}
