"""The report's second-order sections, from the ``second_order`` table.

``patterns_section``: per multi-region target, the brain's region x region alignment matrix
(between subjects; the diagonal is each region's consistency) beside each model's profiles (a
row per region the model stands in for: the layer's alignment to every region, on the same
colour scale), and a table of the pattern similarities with intervals, permutation p-values and
the pattern noise ceilings.

``discriminability_section``: per (target, measure), for each layer rule, how many models the
benchmark tells apart and the fraction of pairs separated after FDR; each model's score, rank and
rank interval; the matrix of P(row ranks above column), separated pairs starred.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from markupsafe import Markup, escape

from cortexalign.reports._load import ReportData, finite
from cortexalign.reports._scores import fmt, table
from cortexalign.reports._sections import _colour

__all__ = ["patterns_section", "discriminability_section"]


def _extra(x: Any) -> dict[str, Any]:
    if isinstance(x, dict):
        return x
    try:
        return json.loads(x) if isinstance(x, str) and x else {}
    except json.JSONDecodeError:
        return {}


def _latest(rows: pd.DataFrame, analysis: str) -> pd.DataFrame:
    """The analysis's rows of the newest run that has them (older runs' rows are history)."""
    if rows is None or rows.empty:
        return pd.DataFrame()
    rows = rows[rows["analysis"] == analysis]
    if rows.empty:
        return rows
    newest = rows.sort_values("created")["run_id"].iloc[-1]
    return rows[rows["run_id"] == newest].reset_index(drop=True)


def _heat(row_labels: list[str], col_labels: list[str], values: list[list[Any]], corner: str,
          lo: float, hi: float, stars: list[list[bool]] | None = None) -> Markup:
    head = "".join(f"<th>{escape(c)}</th>" for c in col_labels)
    body = []
    for i, (label, vals) in enumerate(zip(row_labels, values, strict=True)):
        cells = []
        for j, v in enumerate(vals):
            if not finite(v):
                cells.append('<td class="cell missing">—</td>')
                continue
            bg, fg = _colour(float(v), lo, hi)
            star = '<span class="sig">*</span>' if stars and stars[i][j] else ""
            cells.append(f'<td class="cell" data-value="{float(v)!r}" style="background:{bg};'
                         f'color:{fg}">{fmt(float(v), 2)}{star}</td>')
        body.append(f"<tr><th>{escape(label)}</th>{''.join(cells)}</tr>")
    return Markup(f'<table class="heat"><thead><tr><th>{escape(corner)}</th>{head}</tr></thead>'
                  f"<tbody>{''.join(body)}</tbody></table>")


def _pattern_block(target: str, metric: str, g: pd.DataFrame) -> dict[str, Any]:
    brain = g[g["kind"] == "brain_row"]
    first = _extra(brain["extra"].iloc[0]) if len(brain) else {}
    regions = list(first.get("regions", []))
    matrix = [_extra(e).get("row", []) for e in brain["extra"]]
    flat = [v for row in matrix for v in row if finite(v)]
    lo, hi = min(flat + [0.0]), max(flat + [1e-9])
    ceil = [[_extra(e).get("ceiling_low"), _extra(e).get("ceiling_high")] for e in brain["extra"]]
    models = []
    pats = g[g["kind"] == "pattern"]
    for model, m in pats.groupby("model", sort=False):
        labels = [f"{r.name} ← {r.layer}" for r in m.itertuples()]
        profiles = [_extra(e).get("profile", []) for e in m["extra"]]
        models.append({"model": str(model), "heat": _heat(labels, regions, profiles,
                                                          "region ← layer", lo, hi)})
    cells = []
    for r in pats.itertuples():
        e = _extra(r.extra)
        cells.append([r.model, r.name, r.layer, r.rule, float(r.value) if finite(r.value)
                      else None, f"{fmt(r.ci_low)} – {fmt(r.ci_high)}",
                      float(r.p_value) if finite(r.p_value) else None,
                      e.get("pointwise"), f"{fmt(e.get('ceiling_low'))} – "
                                          f"{fmt(e.get('ceiling_high'))}"])
    return {"target": target, "metric": metric,
            "brain": _heat(list(brain["name"]), regions, matrix, "region", lo, hi),
            "ceilings": table(["region", "pattern ceiling (low – high)"],
                              [[n, f"{fmt(c[0])} – {fmt(c[1])}"]
                               for n, c in zip(brain["name"], ceil, strict=True)]),
            "models": models,
            "table": table(["model", "region", "layer", "assigned", "pattern similarity",
                            "interval", "p (permutation)", "pointwise", "ceiling"], cells)}


def patterns_section(data: ReportData, scores: pd.DataFrame) -> dict[str, Any] | None:
    """The brain's matrix beside each model's profiles, per multi-region target."""
    del scores
    rows = _latest(getattr(data, "second_order", None), "patterns")
    if rows.empty:
        return None
    blocks = [_pattern_block(str(t), str(m), g)
              for (t, m), g in rows.groupby(["target", "metric"], sort=False)]
    return {"blocks": blocks}


def _rule_block(rule: str, g: pd.DataFrame) -> dict[str, Any]:
    summary = _extra(g[g["kind"] == "summary"]["extra"].iloc[0])
    models = g[g["kind"] == "model"].copy()
    models["rank"] = [_extra(e).get("rank") for e in models["extra"]]
    models = models.sort_values("rank")
    names = list(models["model"])
    cells = []
    for r in models.itertuples():
        e = _extra(r.extra)
        cells.append([r.model, ", ".join(dict.fromkeys(e.get("layers", []))),
                      float(r.value), f"{fmt(r.ci_low)} – {fmt(r.ci_high)}", e.get("rank"),
                      f"{fmt(e.get('rank_low'), 1)} – {fmt(e.get('rank_high'), 1)}"])
    pairs = g[g["kind"] == "pair"]
    look = {(p.model, p.name): (p.value, _extra(p.extra).get("separated", False))
            for p in pairs.itertuples()}
    matrix = [[look.get((a, b), (None, False))[0] for b in names] for a in names]
    stars = [[bool(look.get((a, b), (None, False))[1]) for b in names] for a in names]
    return {"rule": rule, "n_distinguishable": summary.get("n_distinguishable"),
            "n_models": summary.get("n_models"),
            "fraction": fmt(summary.get("fraction_separated"), 2),
            "alpha": summary.get("alpha"), "n_bootstrap": summary.get("n_bootstrap"),
            "subjects": summary.get("subjects_resampled", False),
            "table": table(["model", "layer(s)", "score", "interval", "rank",
                            "rank interval"], cells),
            "heat": _heat(names, names, matrix, "P(row above column)", 0.0, 1.0, stars)}


def discriminability_section(data: ReportData, scores: pd.DataFrame) -> dict[str, Any] | None:
    """Per (target, measure) and layer rule: models told apart, separated pairs, rank
    intervals, pairwise rank probabilities."""
    del scores
    rows = _latest(getattr(data, "second_order", None), "discriminability")
    if rows.empty:
        return None
    blocks = []
    for (target, metric), g in rows.groupby(["target", "metric"], sort=False):
        blocks.append({"target": str(target), "metric": str(metric),
                       "rules": [_rule_block(str(rule), gr)
                                 for rule, gr in g.groupby("rule", sort=False)]})
    return {"blocks": blocks}
