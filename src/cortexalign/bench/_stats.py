"""Statistics of a run: permutation p-values, FDR across a target's groups, model comparisons.

- the permutation p-values of metrics that do not compute their own (``rsa``) are the metrics'
  (``cortexalign.metrics.PERMUTATION_TESTS``).
- ``add_fdr``: Benjamini-Hochberg (1995) adjusted p-values of the rows of one job (the area x
  Cre-line grid of one model layer, metric and neural spec), stored as ``extra["p_fdr"]``;
  ``grid_fdr`` recomputes them over any family of a scores frame (e.g. every layer and model).
- ``paired_model_comparison``: two models' per-neuroid scores on each target, compared by
  random sign flips of the paired differences (``stats.paired_comparison``), BH across targets.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cortexalign.errors import InputError
from cortexalign.metrics import METRICS
from cortexalign.results import ScoreRecord
from cortexalign.stats import adjust_p_values, paired_comparison

__all__ = ["add_fdr", "grid_fdr", "paired_model_comparison", "PER_NEUROID_KEYS"]

PER_NEUROID_KEYS = ("per_neuroid", "r_normalized", "r")
"""Keys of ``extra`` holding per-neuroid scores, in order of preference."""


def add_fdr(records: Sequence[ScoreRecord], method: str = "fdr_bh") -> list[ScoreRecord]:
    """The records with ``extra["p_fdr"]`` (adjusted over these records; None where no p)."""
    p = np.array([math.nan if r.p_value is None else float(r.p_value) for r in records])
    if np.isnan(p).all():
        return list(records)
    q = adjust_p_values(p, method)
    return [dataclasses.replace(r, extra={**r.extra, "p_fdr": None if np.isnan(v) else float(v),
                                          "fdr_family": f"{method} over {int((~np.isnan(p)).sum())}"
                                                        " groups of this target"})
            for r, v in zip(records, q, strict=True)]


def _extra(frame: pd.DataFrame) -> list[dict]:
    return [e if isinstance(e, dict) else json.loads(e or "{}") for e in frame["extra"]]


def grid_fdr(frame: pd.DataFrame, by: Sequence[str] = ("metric",),
             method: str = "fdr_bh") -> pd.DataFrame:
    """``frame`` (a scores frame) with a ``p_adjusted`` column: ``method`` applied within each
    family of rows sharing the values of ``by`` (columns, or ``target_source`` from extra)."""
    df = frame.copy()
    df["target_source"] = [e.get("target_source", t) for e, t in zip(_extra(df), df["target"],
                                                                      strict=True)]
    unknown = [c for c in by if c not in df.columns]
    if unknown:
        raise InputError("by", f"columns of the scores frame ({', '.join(df.columns)})",
                         repr(unknown), "group by model, layer, metric or target_source")
    df["p_adjusted"] = np.nan
    for _, family in df.groupby(list(by), sort=False):
        df.loc[family.index, "p_adjusted"] = adjust_p_values(family["p_value"].astype(float),
                                                             method)
    return df


def _best_row(rows: pd.DataFrame, higher: bool, layer: str | None) -> pd.Series:
    if layer is not None:
        rows = rows[rows["layer"] == layer]
        if rows.empty:
            raise InputError("layer", "a layer with scores", repr(layer), "check the layer name")
    return rows.loc[rows["value"].idxmax() if higher else rows["value"].idxmin()]


def _per_neuroid(row: pd.Series) -> np.ndarray:
    extra = _extra(pd.DataFrame([row]))[0]
    key = next((k for k in PER_NEUROID_KEYS if k in extra), None)
    if key is None:
        raise InputError("metric", f"a metric storing per-neuroid scores ({PER_NEUROID_KEYS})",
                         f"{row['metric']!r} without them", "compare models on ridge, pls or "
                         "a map_* metric")
    return np.array([np.nan if v is None else v for v in extra[key]], dtype=np.float64)


def paired_model_comparison(frame: pd.DataFrame, model_a: str, model_b: str, metric: str, *,
                            layer_a: str | None = None, layer_b: str | None = None,
                            n_perm: int = 10000, seed: int = 0) -> pd.DataFrame:
    """Model A vs model B on every target both were scored on, paired over neuroids.

    Each model is taken at its best layer per target (or at ``layer_a``/``layer_b``); the
    per-neuroid scores (``PER_NEUROID_KEYS``) are compared with ``stats.paired_comparison``
    (sign flips, two-sided); neuroids without a finite score in either model are dropped.

    Returns
    -------
    One row per target: layer_a, layer_b, mean_a, mean_b, mean_diff (a - b in the metric's
    units; for RMSE lower is better), n_neuroids, p_value, test (exact enumeration or
    Monte-Carlo, and over what), p_fdr (BH across the targets).
    """
    higher = METRICS.entry(metric).meta.get("higher_is_better", True)
    df = frame[frame["metric"] == metric]
    rows = []
    for target, sub in df.groupby("target", sort=False):
        a, b = sub[sub["model"] == model_a], sub[sub["model"] == model_b]
        if a.empty or b.empty:
            continue
        ra, rb = _best_row(a, higher, layer_a), _best_row(b, higher, layer_b)
        va, vb = _per_neuroid(ra), _per_neuroid(rb)
        if va.shape != vb.shape:
            raise InputError("frame", "both models scored on the same neuroids",
                             f"{va.shape} vs {vb.shape} on {target!r}", "use one run's scores")
        ok = np.isfinite(va) & np.isfinite(vb)
        res = paired_comparison(va[ok], vb[ok], n_perm=n_perm, seed=seed)
        rows.append({"target": target, "layer_a": ra["layer"], "layer_b": rb["layer"],
                     "mean_a": float(va[ok].mean()), "mean_b": float(vb[ok].mean()),
                     "mean_diff": res.observed, "n_neuroids": int(ok.sum()),
                     "p_value": res.p_value, "test": f"sign flips over {int(ok.sum())} "
                                                     f"neuroids; {res.description}"})
    if not rows:
        raise InputError("frame", f"scores of both {model_a!r} and {model_b!r} for {metric!r}",
                         "no shared target", "check the model labels and the metric")
    out = pd.DataFrame(rows)
    out["p_fdr"] = adjust_p_values(out["p_value"].to_numpy())
    return out
