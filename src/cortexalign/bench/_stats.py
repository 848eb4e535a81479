"""Statistics of a run: permutation p-values, FDR across a target's groups, model comparisons.

- the permutation p-values of metrics that do not compute their own (``rsa``) are the metrics'
  (``cortexalign.metrics.PERMUTATION_TESTS``).
- ``add_fdr``: Benjamini-Hochberg (1995) adjusted p-values of the rows of one job (the area x
  Cre-line grid of one model layer, metric and neural spec), stored as ``extra["p_fdr"]``;
  ``grid_fdr`` recomputes them over any family of a scores frame (e.g. every layer and model).
- ``paired_model_comparison``: two models' per-neuroid scores on each target, compared by
  random sign flips of the paired differences (``stats.paired_comparison``), BH across targets.
- ``run_statistics`` / ``record_statistics``: what the report shows beside the scores, computed
  once at the end of a run over everything in the store and stored (``q_values``: BH over every
  score of a metric; ``comparisons``: paired tests between models at their best layers). The
  report reads them; it computes no statistic.
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
from cortexalign.results import ResultsStore, ScoreRecord, best_rows
from cortexalign.stats import adjust_p_values, paired_comparison

__all__ = ["add_fdr", "grid_fdr", "paired_model_comparison", "PER_NEUROID_KEYS", "FDR_METHOD",
           "run_statistics", "record_statistics"]

FDR_METHOD = "fdr_bh"
"""The correction of the stored ``q_values`` and ``comparisons`` (Benjamini-Hochberg 1995)."""
_KEYS = ["model", "layer", "target", "metric"]

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


def _per_unit(extra: dict) -> tuple[np.ndarray, str]:
    """A score's per-RDM values averaged within each subject (``rdm_groups``: the noise
    ceiling's unit, so sessions of one subject are one unit), and the unit's name."""
    v = np.asarray(extra.get("per_rdm", []), dtype=float)
    groups = extra.get("rdm_groups")
    if groups is None or len(groups) != len(v):
        return v, "RDMs (no subject labels: each RDM one unit)"
    labels = list(dict.fromkeys(groups))
    g = np.asarray(groups)
    by = extra.get("ceiling_by", "subject")
    return (np.array([v[g == lab].mean() for lab in labels]),
            f"{by}s" + (f" ({len(v)} RDMs, averaged within {by})" if len(labels) < len(v)
                        else ""))


def _paired_rows(scores: pd.DataFrame, extra: list[dict]) -> list[dict]:
    """Paired tests between models at their best layers: given in ``extra['paired_comparisons']``
    (list of {vs, difference, p_value, method}), or sign flips over the target's subjects
    (``extra['per_rdm']`` averaged within ``extra['rdm_groups']``: the unit of the noise
    ceiling) when two models have them; exact (every pattern) when there are few enough."""
    rows = []
    for r, e in zip(scores.itertuples(), extra, strict=True):
        for c in e.get("paired_comparisons", []) or []:
            rows.append({"model_a": f"{r.model} · {r.layer}", "model_b": str(c.get("vs", "?")),
                         "target": r.target, "metric": r.metric,
                         "difference": c.get("difference"), "p_value": c.get("p_value"),
                         "method": str(c.get("method", "stored"))})
    if rows:
        return rows
    extras = {tuple(k): e for k, e in zip(scores[_KEYS].itertuples(index=False), extra,
                                           strict=True)}
    best = best_rows(scores) if len(scores) else pd.DataFrame()
    for (target, metric), g in (best.groupby(["target", "metric"], sort=False)
                                if len(best) else []):
        per, unit = {}, ""
        for b in g.itertuples():
            v, unit = _per_unit(extras[(b.model, b.layer, target, metric)])
            if len(v) >= 2 and np.isfinite(v).all():
                per[f"{b.model} · {b.layer}"] = v
        names = list(per)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                if len(per[a]) == len(per[b]):
                    res = paired_comparison(per[a], per[b], method="sign_flip", n_perm=10000,
                                            seed=0)
                    rows.append({"model_a": a, "model_b": b, "target": target, "metric": metric,
                                 "difference": res.observed, "p_value": res.p_value,
                                 "method": f"sign flips over {len(per[a])} {unit}; "
                                           f"{res.description}"})
    return rows


def _p(x) -> float:
    try:
        return float(x) if x is not None and math.isfinite(float(x)) else math.nan
    except (TypeError, ValueError):
        return math.nan


def run_statistics(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The stored statistics of a scores frame (every score of a results store).

    Returns
    -------
    q_values : one row per (model, layer, target, metric) (the newest score if repeated) with
        a p-value: ``q_value`` by ``FDR_METHOD`` over all such scores of the same metric, and
        ``family`` naming that family.
    comparisons : paired tests between models at their best layers (``_paired_rows``), with
        ``q_value`` by ``FDR_METHOD`` across all of them.
    """
    df = frame.drop_duplicates(_KEYS, keep="last").reset_index(drop=True)
    df["p_value"] = pd.to_numeric(df["p_value"], errors="coerce")
    q = pd.Series(np.nan, index=df.index)
    for _, idx in df.groupby("metric", sort=False).groups.items():
        q[idx] = adjust_p_values(df.loc[idx, "p_value"].to_numpy(), FDR_METHOD)
    q_values = df[_KEYS].assign(q_value=q, family=[f"{FDR_METHOD} over every {m} score"
                                                   for m in df["metric"]])
    q_values = q_values[q_values["q_value"].notna()].reset_index(drop=True)
    pairs = pd.DataFrame(_paired_rows(df, _extra(df)) if len(df) else [],
                         columns=["model_a", "model_b", "target", "metric", "difference",
                                  "p_value", "method"])
    pairs["difference"] = [_p(x) for x in pairs["difference"]]
    pairs["p_value"] = [_p(x) for x in pairs["p_value"]]
    pairs["q_value"] = adjust_p_values(pairs["p_value"].to_numpy(), FDR_METHOD) if len(pairs) \
        else []
    return q_values, pairs[["model_a", "model_b", "target", "metric", "difference", "p_value",
                            "q_value", "method"]]


def record_statistics(store: ResultsStore, run_id: str) -> None:
    """Compute ``run_statistics`` over every score in ``store`` and store them (the runner's
    last write, so ``cortexalign report`` shows them without computing anything)."""
    q_values, comparisons = run_statistics(store.scores_frame())
    store.replace_statistics(run_id, q_values, comparisons)
