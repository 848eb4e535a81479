"""The report's partitions section: variance partitioning and banded ridge (``partitions`` table).

One stacked-bar chart per partition, one bar per target: the median over neuroids of each
component (variance partitioning: ``unique:A``, ``shared:A&B``...; banded ridge: each set's
share of R^2, ``split:A``), positive parts stacked up from 0 and negative parts (suppression,
noise) down from 0, a black tick at the median R^2 of the full model; and a table of every
stored quantity. Medians are taken per quantity, so the stacked medians need not add up to the
tick. Reruns append: the newest row of each (partition, target, quantity) is shown.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd
from markupsafe import Markup, escape

from cortexalign.reports._load import ReportData, finite
from cortexalign.reports._scores import fmt, table
from cortexalign.reports._svg import _L, _R, _W, PALETTE, _Frame, _svg

__all__ = ["partitions_section", "stacked_bars_svg", "latest_partitions"]


def latest_partitions(rows: pd.DataFrame) -> pd.DataFrame:
    """The newest row of each (partition, target, kind, name), in first-written order."""
    if rows.empty:
        return rows
    rows = rows.reset_index(drop=True)
    newest = rows.groupby(["partition", "target", "kind", "name"], sort=False).tail(1)
    return newest.sort_index()


def stacked_bars_svg(bars: Sequence[tuple[str, Sequence[tuple[str, float]], float | None]], *,
                     title: str, y_label: str) -> Markup:
    """One stacked bar per ``(label, [(component, value)], total)``: positive values stacked
    up from 0, negative ones down; ``total`` (None: none) drawn as a black tick. Each component
    keeps its colour across bars; every rect carries ``data-value`` and a hover title."""
    comps = list(dict.fromkeys(c for _, parts, _ in bars for c, _ in parts))
    colour = {c: PALETTE[k % len(PALETTE)] for k, c in enumerate(comps)}
    ys = [0.0]
    for _, parts, total in bars:
        ys += [sum(v for _, v in parts if finite(v) and v > 0),
               sum(v for _, v in parts if finite(v) and v < 0)]
        ys += [total] if finite(total) else []
    fr = _Frame([-0.5, len(bars) - 0.5], ys, False)
    body = fr.axes("target", y_label, [(i, label) for i, (label, _, _) in enumerate(bars)])
    body.append(f'<line x1="{_L}" x2="{_W - _R}" y1="{fr.py(0):.1f}" y2="{fr.py(0):.1f}" '
                f'stroke="#444"/>')
    for i, (label, parts, total) in enumerate(bars):
        x0, x1 = fr.px(i - 0.3), fr.px(i + 0.3)
        up = down = 0.0
        for comp, v in parts:
            if not finite(v):
                continue
            lo, hi = (up, up + v) if v >= 0 else (down + v, down)
            up, down = (hi, down) if v >= 0 else (up, lo)
            body.append(f'<rect class="part" x="{x0:.1f}" y="{fr.py(hi):.1f}" '
                        f'width="{x1 - x0:.1f}" height="{max(fr.py(lo) - fr.py(hi), 0.5):.1f}" '
                        f'fill="{colour[comp]}" data-target="{escape(label)}" '
                        f'data-component="{escape(comp)}" data-value="{v!r}"><title>'
                        f'{escape(label)} · {escape(comp)}: {fmt(v)}</title></rect>')
        if finite(total):
            y = fr.py(total)
            body.append(f'<line class="total" x1="{x0 - 4:.1f}" x2="{x1 + 4:.1f}" y1="{y:.1f}" '
                        f'y2="{y:.1f}" stroke="#000" stroke-width="2.5" data-value="{total!r}">'
                        f'<title>{escape(label)} · full model: {fmt(total)}</title></line>')
    legend = [(c, colour[c]) for c in comps] + [("full model (median R²)", "#000")]
    return _svg(body, title, legend)


def _sets_text(extra: Any) -> str:
    try:
        sets = json.loads(extra).get("sets", {}) if isinstance(extra, str) else {}
    except (json.JSONDecodeError, AttributeError):
        return ""
    return "; ".join(f"{label} = {s.get('model')} / {s.get('layer')}"
                     for label, s in sets.items() if isinstance(s, dict))


def partitions_section(data: ReportData, scores: pd.DataFrame) -> dict[str, Any] | None:
    """Per partition: the stacked medians per target, and a table of every quantity."""
    del scores  # drawn from data.partitions
    rows = latest_partitions(data.partitions)
    if rows.empty:
        return None
    parts = []
    for (name, method), sub in rows.groupby(["partition", "method"], sort=False):
        bars = []
        for target, g in sub.groupby("target", sort=False):
            comps = g[g["kind"] == "component"]
            full = g[g["kind"] == "r2"]
            n_plus = full["name"].str.count(r"\+")
            full = full[n_plus == n_plus.max()]  # the union of every set
            total = float(full["value"].iloc[-1]) if len(full) and finite(full["value"].iloc[-1]) \
                else None
            bars.append((str(target), [(str(n), float(v) if finite(v) else float("nan"))
                                       for n, v in zip(comps["name"], comps["value"],
                                                       strict=True)], total))
        chart = stacked_bars_svg(bars, title=f"{name} · {method}",
                                 y_label="median held-out R²")
        cells = [[r.target, f"{r.kind}: {r.name}" if r.kind != r.name else r.kind,
                  float(r.value) if finite(r.value) else None, int(r.n_neuroids)]
                 for r in sub.itertuples()]
        parts.append({"name": str(name), "method": str(method), "chart": chart,
                      "sets": _sets_text(sub["extra"].iloc[0]),
                      "table": table(["target", "quantity", "median over neuroids", "neuroids"],
                                     cells)})
    return {"parts": parts}

