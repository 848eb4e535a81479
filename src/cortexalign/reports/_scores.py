"""Scores prepared for the report: parsed ``extra``, layer order, target labels, FDR q-values,
and the sortable-table cells every section renders."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

from cortexalign.reports._load import finite, parse_extra

__all__ = ["prepare_scores", "table", "cell", "target_labels", "FDR_METHOD", "ALPHA"]

FDR_METHOD = "fdr_bh"
ALPHA = 0.05
_KEYS = ["model", "layer", "target", "metric"]
# Cre lines of the Allen Brain Observatory (excitatory and inhibitory); anything else is a "group".
_CRE = re.compile(r"^(Cux2|Emx1|Rorb|Scnn1a|Nr5a1|Rbp4|Fezf2|Tlx3|Ntsr1|Slc17a7|Pvalb|Sst|Vip)",
                  re.IGNORECASE)


def target_labels(target: str, extra: dict[str, Any]) -> tuple[str, str, str]:
    """(area, group, group kind) of a target: from ``extra`` (area, cre_line, roi) or its name.

    ``allen/VISp/Cux2`` -> ("VISp", "Cux2", "Cre line"); ``nsd/V1`` -> ("V1", "", "");
    a name without ``/`` -> ("", "", "").
    """
    area = str(extra.get("area") or "")
    for key, kind in (("cre_line", "Cre line"), ("roi", "ROI")):
        if extra.get(key):
            return area, str(extra[key]), kind
    parts = [p for p in str(target).split("/") if p]
    if not area and len(parts) >= 2:
        area = parts[1]
    group = "/".join(parts[2:]) if len(parts) >= 3 else ""
    kind = ("Cre line" if _CRE.match(group) else "group") if group else ""
    return area, group, kind


def prepare_scores(scores: pd.DataFrame, q_values: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (model, layer, target, metric) (the newest if repeated), with ``extra_d``,
    ``layer_index``/``n_layers``/``depth`` (relative depth in [0, 1]), ``area``/``group``/
    ``group_kind`` and ``q_value``: the stored one (the store's ``q_values``, which the runner
    computed by Benjamini-Hochberg over all p-values of the same metric), NaN where none."""
    if scores is None or scores.empty:
        return pd.DataFrame(columns=[*_KEYS, "value", "depth", "q_value"])
    df = scores.copy()
    for col in ("value", "ci_low", "ci_high", "ceiling_low", "ceiling_high", "p_value"):
        df[col] = pd.to_numeric(df[col], errors="coerce") if col in df else np.nan
    if "extra" not in df:
        df["extra"] = None
    if "model_id" not in df:
        df["model_id"] = df["model"]
    df = df.drop_duplicates(_KEYS, keep="last").reset_index(drop=True)
    df["extra_d"] = df["extra"].map(parse_extra)
    order = {m: list(dict.fromkeys(g["layer"])) for m, g in df.groupby("model", sort=False)}
    df["layer_index"] = [int(e.get("layer_index", order[m].index(lay)))
                         for e, m, lay in zip(df["extra_d"], df["model"], df["layer"], strict=True)]
    df["n_layers"] = [int(e.get("n_layers", len(order[m])))
                      for e, m in zip(df["extra_d"], df["model"], strict=True)]
    df["depth"] = df["layer_index"] / (df["n_layers"] - 1).clip(lower=1)
    labels = [target_labels(t, e) for t, e in zip(df["target"], df["extra_d"], strict=True)]
    df["area"], df["group"], df["group_kind"] = (list(c) for c in zip(*labels, strict=True))
    q = {} if q_values is None or q_values.empty else dict(zip(
        q_values[_KEYS].itertuples(index=False, name=None), q_values["q_value"], strict=True))
    df["q_value"] = [float(q.get(k, np.nan)) for k in df[_KEYS].itertuples(index=False, name=None)]
    return df


def fmt(x: Any, digits: int = 3) -> str:
    """A number for display; missing (None, NaN) shows as an em dash, never as 0."""
    if isinstance(x, bool | np.bool_):
        return "yes" if x else "no"
    if isinstance(x, int | np.integer):
        return f"{int(x):,}"
    if isinstance(x, float | np.floating):
        if not math.isfinite(x):
            return "—"
        if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
            return f"{x:.{digits - 1}e}"
        return f"{x:.{digits}f}"
    return "—" if x is None or x is pd.NA else str(x)


def cell(x: Any, text: str | None = None, cls: str = "", title: str = "") -> dict[str, Any]:
    """A table cell: shown text, sort key, CSS class (``num``/``missing``), hover title."""
    if isinstance(x, float | np.floating | int | np.integer) and not isinstance(x, bool):
        missing = not finite(x)
        return {"text": text if text is not None else fmt(x),
                "sort": "" if missing else repr(float(x)),
                "cls": (cls + " num" + (" missing" if missing else "")).strip(), "title": title}
    missing = x is None or x is pd.NA
    return {"text": text if text is not None else fmt(x), "sort": "" if missing else str(x),
            "cls": (cls + (" missing" if missing else "")).strip(), "title": title}


def table(columns: list[str], rows: list[list[Any]], caption: str = "") -> dict[str, Any]:
    """A sortable table for the ``table`` template macro (cells made with ``cell`` or raw)."""
    return {"columns": columns, "caption": caption,
            "rows": [[c if isinstance(c, dict) else cell(c) for c in r] for r in rows]}
