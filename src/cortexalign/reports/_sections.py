"""Report sections drawn from the results tables: summary, layer-wise curves, heatmaps, model
comparison and citations. Each builder returns the template context of its section, or None when
the data it needs is absent (the section is then left out)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from cortexalign.reports._figures import best_layers
from cortexalign.reports._load import ReportData, finite
from cortexalign.reports._scores import ALPHA, FDR_METHOD, cell, fmt, table
from cortexalign.reports._svg import Series, line_svg

__all__ = ["summary_section", "curves_section", "heatmap_section", "comparison_section",
           "expected_missing"]



def _entries(cfg: dict, key: str) -> list[dict]:
    """``cfg[key]`` as a list of dicts; other config shapes (e.g. SAE-BrainMap's) give []."""
    value = cfg.get(key) if isinstance(cfg, dict) else None
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []

def _model_display(m: dict[str, Any]) -> str:
    return m.get("label") or (m.get("name", "?") + (" (untrained)" if m.get("untrained") else ""))


def _duration(run: pd.Series) -> float:
    try:
        return float((pd.Timestamp(run["finished"]) - pd.Timestamp(run["started"])).total_seconds())
    except (TypeError, ValueError):
        return float("nan")


def expected_missing(data: ReportData, scores: pd.DataFrame) -> list[str]:
    """What the configs asked for that has no score: whole (model, target, metric) combinations,
    and, for models whose layers are listed, the missing layers."""
    have = set(zip(scores["model"], scores["layer"], scores["target"], scores["metric"],
                   strict=True)) if len(scores) else set()
    combos = {(m, t, k) for m, _, t, k in have}
    out: list[str] = []
    for cfg in data.configs():
        targets = [n.get("label") or n.get("source", "?") for n in _entries(cfg, "neural")]
        metrics = [k.get("name", "?") for k in _entries(cfg, "metrics")]
        for m in _entries(cfg, "models"):
            name, layers = _model_display(m), m.get("layers", "all")
            for t in targets:
                for k in metrics:
                    if (name, t, k) not in combos:
                        out.append(f"{name} vs {t} ({k}): no scores")
                    elif isinstance(layers, list):
                        gone = [la for la in layers if (name, la, t, k) not in have]
                        if gone:
                            out.append(f"{name} vs {t} ({k}): no scores for layers {', '.join(gone)}")
    return list(dict.fromkeys(out))


def _failed_jobs(data: ReportData) -> list[dict[str, str]]:
    jobs = data.jobs
    out = [{"job": str(f.get("job", "?")), "error": str(f.get("error", ""))} for f in data.failures]
    if jobs.empty:
        return out
    done = set(jobs.loc[jobs["status"] == "finished", "job_key"])
    shown = {f["job"] for f in out}
    for r in jobs[(jobs["status"] != "finished") & ~jobs["job_key"].isin(done)].itertuples():
        status = "still running when the run stopped" if r.status == "running" else r.status
        if r.job_key not in shown:
            out.append({"job": f"job {r.job_key}", "error": f"{status}: {r.error or ''}".strip()})
            shown.add(r.job_key)
    return out


def summary_section(data: ReportData, scores: pd.DataFrame) -> dict[str, Any] | None:
    """What was run (config, data, models, versions), how long it took, and what failed."""
    runs = data.runs
    run_rows, versions, configs = [], [], []
    for r in runs.itertuples(index=False):
        run = pd.Series(r._asdict())
        hw = json.loads(run["hardware"]) if isinstance(run.get("hardware"), str) else {}
        gpus = ", ".join(g.get("name", "?") for g in hw.get("gpus", []) or []) or "none"
        run_rows.append([run["run_id"], cell(run["status"], cls=f"status-{run['status']}"),
                         str(run["started"])[:19], str(run["finished"])[:19] if
                         pd.notna(run["finished"]) else None, _duration(run),
                         run.get("cortexalign_version"), run.get("git_revision"),
                         f"{hw.get('cpu_count', '?')} CPUs, GPUs: {gpus}"])
        if isinstance(run.get("package_versions"), str):
            versions = sorted(json.loads(run["package_versions"]).items())
    for cfg in data.configs():
        configs.append({
            "name": cfg.get("name", ""), "stimuli": (cfg.get("stimuli") or {}).get("source", ""),
            "models": [f"{_model_display(m)} = {m.get('name')}, layers {m.get('layers', 'all')}, "
                       f"pooling {m.get('pooling', 'mean')}" for m in _entries(cfg, "models")],
            "neural": [f"{n.get('label') or n.get('source')} = {n.get('source')}"
                       for n in _entries(cfg, "neural")],
            "metrics": [f"{k.get('name')} {json.dumps(k.get('options') or {})}"
                        for k in _entries(cfg, "metrics")],
            "n_bootstrap": cfg.get("n_bootstrap")})
    incomplete = [f"run {r.run_id} did not finish (killed, or still in progress)"
                  if r.status == "running" else f"run {r.run_id} ended with status {r.status}"
                  for r in runs.itertuples() if r.status != "finished"]
    return {"runs": table(["run", "status", "started (UTC)", "finished (UTC)", "seconds",
                           "cortexalign", "git revision", "hardware"], run_rows),
            "configs": configs,
            "config_yaml": [str(t) for t in runs.get("config_yaml", pd.Series(dtype=str)).dropna()],
            "versions": versions, "n_scores": len(scores), "source": data.source,
            "n_models": scores["model"].nunique() if len(scores) else 0,
            "failures": _failed_jobs(data), "missing": expected_missing(data, scores),
            "incomplete": incomplete}


def _tip(r: Any) -> str:
    ci = f" [{fmt(r.ci_low)}, {fmt(r.ci_high)}]" if finite(r.ci_low) else ""
    p = f", p = {fmt(r.p_value)}, q = {fmt(r.q_value)}" if finite(r.p_value) else ""
    return f"{r.model} · {r.layer}: {fmt(r.value)}{ci}{p}"


def curves_section(data: ReportData, scores: pd.DataFrame) -> dict[str, Any] | None:
    """Layer-wise scores: one chart per (metric, target), one line per model, ceiling band."""
    if scores.empty:
        return None
    charts = []
    for (metric, target), sub in scores.groupby(["metric", "target"], sort=False):
        series = []
        for model, g in sub.groupby("model", sort=False):
            g = g.sort_values("layer_index")
            series.append(Series(str(model), list(g["depth"]), list(g["value"]), list(g["ci_low"]),
                                 list(g["ci_high"]), [_tip(r) for r in g.itertuples()]))
        lo, hi = sub["ceiling_low"].dropna(), sub["ceiling_high"].dropna()
        band = (float(lo.iloc[0]), float(hi.iloc[0]), "noise ceiling") if len(lo) and len(hi) else None
        layer_sets = {tuple(g.sort_values("layer_index")["layer"]) for _, g in sub.groupby("model")}
        ticks = None
        if len(layer_sets) == 1:  # all models share the layers: name them on the axis
            g = sub.drop_duplicates("layer").sort_values("layer_index")
            ticks = list(zip(g["depth"], g["layer"].astype(str), strict=True))
        charts.append(line_svg(series, title=f"{target} · {metric}", band=band, x_ticks=ticks,
                               x_label="layer" if ticks else "relative layer depth",
                               y_label=f"{metric} score"))
    return {"charts": charts}


def _colour(v: float, lo: float, hi: float) -> tuple[str, str]:
    """Background (white -> blue, red below zero) and a readable text colour."""
    if v < 0 and lo < 0:
        t = min(v / lo, 1.0)
        return f"rgb(255,{int(255 - 120 * t)},{int(255 - 120 * t)})", "#000"
    t = 0.0 if hi <= 0 else min(max(v / hi, 0.0), 1.0)
    rgb = (int(255 - 247 * t), int(255 - 167 * t), int(255 - 77 * t))
    return f"rgb{rgb}", "#fff" if t > 0.6 else "#000"


def _heat_cell(r: pd.Series | None, lo: float, hi: float, best: bool, label: str) -> dict[str, Any]:
    if r is None or not finite(r["value"]):
        return {"text": "—", "cls": "cell missing", "value": "", "q": "", "style": "",
                "title": f"{label}: no score (missing)", "sig": False}
    bg, fg = _colour(float(r["value"]), lo, hi)
    sig = finite(r["q_value"]) and r["q_value"] <= ALPHA
    return {"text": fmt(float(r["value"])), "cls": "cell" + (" best" if best else ""),
            "value": repr(float(r["value"])), "q": "" if not finite(r["q_value"]) else
            repr(float(r["q_value"])), "style": f"background:{bg};color:{fg}", "sig": sig,
            "title": _tip(SimpleNamespace(**r.to_dict()))}


def heatmap_section(data: ReportData, scores: pd.DataFrame) -> dict[str, Any] | None:
    """Layer x target heatmaps per (model, metric); targets grouped by area and Cre line / ROI
    when they carry them; cells marked * when significant after FDR."""
    if scores.empty:
        return None
    maps = []
    for metric, sm in scores.groupby("metric", sort=False):
        vals = sm["value"][np.isfinite(sm["value"])]
        lo, hi = (float(min(vals.min(), 0)), float(max(vals.max(), 0))) if len(vals) else (0, 1)
        targets = (sm.drop_duplicates("target").sort_values(["area", "group"], kind="stable")
                   [["target", "area", "group", "group_kind"]])
        grouped = bool((targets["area"] != "").any())
        for model, g in sm.groupby("model", sort=False):
            layers = list(g.sort_values("layer_index")["layer"].drop_duplicates())
            idx = {(r["layer"], r["target"]): r for _, r in g.iterrows()}
            best = {t: gt.loc[gt["value"].idxmax(), "layer"]
                    for t, gt in g.dropna(subset=["value"]).groupby("target")}
            rows = [{"layer": la, "cells": [
                _heat_cell(idx.get((la, t)), lo, hi, best.get(t) == la, f"{model} · {la} · {t}")
                for t in targets["target"]]} for la in layers]
            maps.append({"model": model, "metric": metric, "rows": rows, "grouped": grouped,
                         "targets": targets.to_dict("records"),
                         "areas": _spans(list(targets["area"])),
                         "group_kind": next((k for k in targets["group_kind"] if k), "")})
    has_p = bool(scores["p_value"].notna().any())
    return {"maps": maps, "has_p": has_p, "fdr": FDR_METHOD, "alpha": ALPHA}


def _spans(values: list[str]) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for v in values:
        if out and out[-1][0] == v:
            out[-1] = (v, out[-1][1] + 1)
        else:
            out.append((v, 1))
    return out


def _interval(lo: Any, hi: Any, kind: str = "", none: str | None = None) -> dict[str, Any]:
    """An interval cell that says what it is (``kind``), or ``none`` when there is none."""
    if not (finite(lo) or finite(hi)):
        return cell(lo, none)
    text = f"{fmt(lo)} – {fmt(hi)}" + (f" ({kind})" if kind else "")
    return cell(lo, text, title=kind)


def comparison_section(data: ReportData, scores: pd.DataFrame) -> dict[str, Any] | None:
    """Best layer of each model per target and metric, with intervals, and paired tests. Each
    interval and ceiling cell says what it is (what the interval resamples and its level; a
    computed, published or absent ceiling), so kinds are never mixed in a column unsaid."""
    best = best_layers(scores) if len(scores) else pd.DataFrame()
    if best.empty:
        return None
    rows = [[b.model, b.target, b.metric, b.layer, b.value,
             _interval(b.ci_low, b.ci_high, b.interval),
             _interval(b.ceiling_low, b.ceiling_high,
                       "" if b.ceiling.startswith("noise ceiling") else b.ceiling, b.ceiling),
             b.normalized] for b in best.itertuples()]
    pair_rows = [[p.model_a, p.model_b, p.target, p.metric, p.difference, p.p_value,
                  p.q_value, p.method] for p in data.comparisons.itertuples()]  # stored by the run
    kinds = {k for k in best["interval"] if k}
    ci_head = (f"interval ({next(iter(kinds))})" if len(kinds) == 1 else
               "interval (kinds differ: each cell says what it resamples)" if kinds else
               "interval")
    return {"best": table(["model", "target", "metric", "best layer", "score", ci_head,
                           "ceiling", "score / lower ceiling"], rows),
            "pairs": table(["model A", "model B", "target", "metric", "A − B", "p", "q (FDR)",
                            "test"], pair_rows) if pair_rows else None}
