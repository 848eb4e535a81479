"""Report sections beyond the score grid: the accuracy / efficiency / alignment trade-off,
attention and conv map overlays, SAE-BrainMap views, spiking training and energy, citations."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pandas as pd

from cortexalign.reports._load import ReportData, finite
from cortexalign.reports._maps import map_panel_png
from cortexalign.reports._scores import FDR_METHOD, fmt, table
from cortexalign.reports._svg import Series, line_svg, scatter_svg

__all__ = ["tradeoff_section", "maps_section", "sae_section", "spiking_section",
           "citations_section"]

_CARD_AXES = (("params", "parameters", True), ("flops", "FLOPs per image", True),
              ("latency_ms", "latency per image (ms)", True), ("miou", "segmentation mIoU", False))


def _alignment_by_model(scores: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per model_id: the mean over targets of the best-layer score under ``metric``."""
    s = scores[(scores["metric"] == metric) & np.isfinite(scores["value"])]
    best = s.groupby(["model_id", "model", "target"], sort=False)["value"].max().reset_index()
    return best.groupby(["model_id", "model"], sort=False)["value"].mean().reset_index()


def tradeoff_section(data: ReportData, scores: pd.DataFrame) -> dict[str, Any] | None:
    """Size, FLOPs, latency and segmentation accuracy against alignment, one point per model."""
    cards = data.model_cards
    if cards is None or cards.empty or scores.empty:
        return None
    metric = scores["metric"].value_counts().index[0]
    align = _alignment_by_model(scores, metric)
    cards = cards.sort_values("created").drop_duplicates("model_id", keep="last")
    merged = cards.merge(align, on="model_id", how="left")
    merged["model"] = merged["model"].fillna(merged["model_id"])
    y_label = f"best-layer {metric} (mean over targets)"
    charts = []
    for col, label, log in _CARD_AXES:
        pts = [(float(r[col]), float(r["value"]), str(r["model"]),
                f"{r['model']}: {label} {fmt(r[col])}, alignment {fmt(r['value'])}")
               for _, r in merged.iterrows() if finite(r[col]) and finite(r["value"])]
        if pts:
            charts.append(scatter_svg(pts, title=f"alignment vs {label}", x_label=label,
                                      y_label=y_label, log_x=log))
    rows = [[r["model"], r["device"], r["params"], r["flops"], r["latency_ms"], r["peak_mem_mb"],
             r["miou"], r["value"]] for _, r in merged.iterrows()]
    return {"charts": charts, "metric": metric,
            "table": table(["model", "device", "params", "FLOPs", "latency (ms)",
                            "peak memory (MB)", "mIoU", y_label], rows)}


def maps_section(data: ReportData, scores: pd.DataFrame) -> dict[str, Any] | None:
    """Model maps over stimuli beside neuron maps (``ReportData.maps``, ``MapPanel`` rows)."""
    if not data.maps:
        return None
    return {"png": map_panel_png(list(data.maps)), "titles": [p.title for p in data.maps]}


def _png(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


#: What the SAE metrics table shows (its thresholds are columns of ``sae_metrics.csv``).
_SAE_CAPTION = ("each layer's SAE on the run's tokens: l0 = mean active latents per token; "
                "active_fraction = l0 / latents; sparse = active_fraction at most "
                "max_active_fraction (above it the run warns DenseCodeWarning); dead_fraction = "
                "latents that never fired; dense_fraction = latents firing on more than "
                "dense_frequency of the tokens; nmse = mean ||x - x_hat||^2 / ||x||^2")


def sae_section(data: ReportData, scores: pd.DataFrame) -> dict[str, Any] | None:
    """SAE-BrainMap outputs: surface maps, the voxel dictionary by layer, SAE quality, ROI
    consistency."""
    if not data.sae:
        return None
    views = []
    for art in data.sae:
        d = art.dictionary
        by_layer = d.groupby("layer", sort=False).agg(voxels=("voxel", "size"),
                                                      mean_r=("r", "mean"), max_r=("r", "max"))
        rows = [[layer, int(r.voxels), r.mean_r, r.max_r] for layer, r in by_layer.iterrows()]
        metrics = None
        if art.sae_metrics is not None and len(art.sae_metrics):
            m = art.sae_metrics
            metrics = table(list(m.columns), m.to_numpy().tolist(), caption=_SAE_CAPTION)
        consistency = None
        if art.consistency is not None and len(art.consistency):
            c = art.consistency.head(60)
            consistency = table(list(c.columns), c.to_numpy().tolist(),
                                caption=f"first {len(c)} of {len(art.consistency)} rows")
        rsa = None
        if art.roi_rsa is not None and len(art.roi_rsa):
            rsa = table(list(art.roi_rsa.columns), art.roi_rsa.to_numpy().tolist())
        views.append({"folder": str(art.folder), "n_voxels": len(d), "roi_rsa": rsa,
                      "surfaces": [(k, _png(p)) for k, p in art.surfaces.items()],
                      "dictionary": table(["layer of best unit", "voxels", "mean r", "max r"],
                                          rows),
                      "metrics": metrics, "consistency": consistency})
    return {"views": views}


def spiking_section(data: ReportData, scores: pd.DataFrame) -> dict[str, Any] | None:
    """Spiking models: training curves (metrics.jsonl), energy and firing rates."""
    logs, energy = data.spiking_logs, data.energy
    if (logs is None or logs.empty) and not energy:
        return None
    charts = []
    if logs is not None and not logs.empty:
        names = {"train_loss": "train", "train_acc": "train", "test_acc": "test (dashed)"}
        for what, cols in (("loss", ["train_loss"]), ("accuracy", ["train_acc", "test_acc"])):
            series = []
            for model, g in logs.groupby("model", sort=False):
                g = g.sort_values("epoch")
                for c in cols:
                    if c in g:  # one colour per model; its held-out curve dashed
                        y = pd.to_numeric(g[c], errors="coerce").tolist()
                        series.append(Series(
                            f"{model}: {names[c]}", g["epoch"].tolist(), y, tips=[
                                f"{model} epoch {e}: {names[c]} {fmt(v)}"
                                for e, v in zip(g["epoch"], y, strict=True)],
                            group=str(model), dashed=c == "test_acc"))
            if series:
                charts.append(line_svg(series, title=f"training {what}", x_label="epoch",
                                       y_label=what))
    e_rows, rates = [], []
    for rec in energy:
        fr = rec.get("firing_rates") or {}
        vals = [float(v) for v in fr.values() if finite(v)]
        e_rows.append([str(rec.get("model")), rec.get("energy_mj", np.nan), rec.get("macs", np.nan),
                       rec.get("sops", np.nan), float(np.mean(vals)) if vals else np.nan,
                       str(rec.get("first_layer", "not stated"))])
        rates.append({"model": str(rec.get("model")),
                      "layers": [(str(k), float(v) if finite(v) else np.nan,
                                  fmt(float(v)) if finite(v) else "—") for k, v in fr.items()]})
    return {"charts": charts,
            "energy": table(["model", "energy per image (mJ)", "MACs", "SOPs",
                             "mean firing rate", "first real-valued layer counted"],
                            e_rows) if e_rows else None,
            "rates": rates}


_STATS_CITATIONS = {
    "fdr": "Benjamini & Hochberg (1995) Controlling the false discovery rate. J. R. Stat. Soc. B 57(1).",
    "bootstrap": "Efron & Tibshirani (1993) An Introduction to the Bootstrap. Chapman & Hall.",
    "ceiling": "Nili et al. (2014) A toolbox for representational similarity analysis. "
               "PLoS Comput. Biol. 10(4) (noise ceiling).",
    "sae": "SAE-BrainMap (2025) arXiv:2506.11123.",
    "energy": "Horowitz (2014) Computing's energy problem. ISSCC (45 nm energy per operation).",
}


def citations_section(data: ReportData, scores: pd.DataFrame) -> dict[str, Any] | None:
    """Where every measure, dataset and statistic shown comes from: the references the runs
    stored (``citation`` notes: measures, stimuli, neural data), then the statistics shown."""
    items: list[tuple[str, str]] = list(data.noted("citation"))
    if len(scores) and scores["ci_low"].notna().any():
        items.append(("confidence intervals: bootstrap over stimuli", _STATS_CITATIONS["bootstrap"]))
    if len(scores) and scores["ceiling_low"].notna().any():
        items.append(("noise ceiling", _STATS_CITATIONS["ceiling"]))
    if len(scores) and scores["p_value"].notna().any():
        items.append((f"multiple comparisons: {FDR_METHOD}", _STATS_CITATIONS["fdr"]))
    if data.sae:
        items.append(("SAE-BrainMap", _STATS_CITATIONS["sae"]))
    if data.energy:
        items.append(("spiking energy estimate", _STATS_CITATIONS["energy"]))
    known = {c for _, c in items}
    items += [("cited by the run", c) for c in data.citations if c and c not in known]
    items = [(k, v or "(no citation registered)") for k, v in dict.fromkeys(items)]
    return {"items": items} if items else None
