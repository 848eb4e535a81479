"""Figures drawn from the results table (a pandas DataFrame of scores)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from cortexalign.results import best_rows  # noqa: E402

__all__ = ["layerwise_figure", "draw_layerwise", "layer_positions", "best_layers", "normalized_scores",
           "measure_label", "interval_kind", "ceiling_kind", "ceiling_text"]


def layer_positions(frame: pd.DataFrame) -> pd.Series:
    """Relative depth in [0, 1] of each row's layer within its model (from ``extra.layer_index``)."""
    def _idx(extra) -> tuple[int, int]:
        d = json.loads(extra) if isinstance(extra, str) else (extra or {})
        return int(d.get("layer_index", 0)), int(d.get("n_layers", 1))

    pairs = frame["extra"].map(_idx)
    return pairs.map(lambda p: p[0] / max(p[1] - 1, 1))


#: How the figure names a metric's comparison (``extra.compare`` of RSA rows).
_COMPARE = {"spearman": "Spearman \u03c1", "kendall_tau_a": "Kendall \u03c4a",
            "rho_a": "Spearman \u03c1a", "pearson": "Pearson r", "cosine": "cosine",
            "cosine_cov": "whitened cosine", "corr_cov": "whitened correlation"}
#: How the figure names a noise ceiling by what it leaves out (``extra.ceiling_by``).
_CEILING_BY = {"subject": "leave-one-subject-out", "session": "leave-one-session-out",
               "rdm": "leave-one-RDM-out", "split_half": "split-half"}


def _extras(frame: pd.DataFrame) -> list[dict]:
    return [json.loads(e) if isinstance(e, str) else dict(e or {}) for e in frame["extra"]]


def measure_label(frame: pd.DataFrame, metric: str) -> str:
    """The y-axis label: the measure and, for RSA, the RDM and the comparison (``RSA: Spearman
    ρ of correlation-distance RDMs``), read from the rows' ``extra``."""
    extras = _extras(frame)
    compare = {e.get("compare") for e in extras} - {None}
    rdm = {e.get("rdm_method") for e in extras} - {None}
    if metric == "rsa" and len(compare) == 1:
        (cmp,) = compare
        what = f"RSA: {_COMPARE.get(cmp, cmp)}"
        return what + (f" of {rdm.pop()}-distance RDMs" if len(rdm) == 1 else "")
    names = {"cka_linear": "linear CKA", "cka_debiased": "debiased linear CKA",
             "cka_rbf": "RBF CKA", "ridge": "ridge encoding (r, held out)",
             "pls": "PLS encoding (r, held out)"}
    return names.get(metric, metric)


def _ceiling_label(frame: pd.DataFrame) -> str:
    extras = _extras(frame[frame["ceiling_low"].notna()])
    published = {e["ceiling"] for e in extras if str(e.get("ceiling", "")).startswith("published")}
    if published:  # a dataset's own ceiling, not one computed here
        return f"{' / '.join(sorted(published))} ceiling (lower to upper bound)"
    by = {e.get("ceiling_by") for e in extras} - {None}
    how = _CEILING_BY.get(by.pop(), "") if len(by) == 1 else ""
    return f"noise ceiling ({how + ', ' if how else ''}lower to upper bound)"


def _layer_ticks(sub: pd.DataFrame) -> tuple[str, list[float], list[str]]:
    """The model whose layers name the x ticks (the one with most layers), their depths and
    names."""
    counts = sub.groupby("model", sort=False)["layer"].nunique()
    ref = str(counts.idxmax())
    rows = sub[sub["model"] == ref].drop_duplicates("layer").sort_values("depth")
    return ref, list(rows["depth"]), [str(x) for x in rows["layer"]]


def layerwise_figure(frame: pd.DataFrame, path: str | Path, metric: str | None = None,
                     title: str | None = None, layer_axis: str = "names") -> Path:
    """Draw :func:`draw_layerwise` and write it to ``path`` (PNG, atomically)."""
    fig = draw_layerwise(frame, metric, title, layer_axis)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp" + path.suffix)
    fig.savefig(tmp, dpi=130)
    plt.close(fig)
    tmp.replace(path)
    return path


def draw_layerwise(frame: pd.DataFrame, metric: str | None = None, title: str | None = None,
                   layer_axis: str = "names") -> plt.Figure:
    """Layer-wise scores, one panel per neural target and one line per model.

    Models with different numbers of layers share a panel by relative depth (0 = first scored
    layer, 1 = last). With ``layer_axis="names"`` the ticks name the layers of the model with
    the most of them and the other models' points carry their own layer names;
    ``layer_axis="depth"`` shows the relative depth instead. The grey band is the target's
    noise ceiling (lower to upper bound; a panel says so where the target has none), the shaded
    band around each line its bootstrap interval; one legend, below the panels, names both.
    """
    from matplotlib.patches import Patch

    if layer_axis not in ("names", "depth"):
        raise ValueError(f"layer_axis: expected 'names' or 'depth', received {layer_axis!r}")
    df = frame if metric is None else frame[frame["metric"] == metric]
    metrics = list(dict.fromkeys(df["metric"]))
    targets = list(dict.fromkeys(df["target"]))
    n = max(len(targets), 1)
    fig, axes = plt.subplots(1, n, figsize=(5.4 * n, 4.6), squeeze=False, sharey=True)
    colors = {m: f"C{i}" for i, m in enumerate(dict.fromkeys(df["model"]))}
    ceiling_label = _ceiling_label(df)
    has_ci = bool(df["ci_low"].notna().any()) if len(df) else False
    ci_level = {e.get("ci_level") for e in _extras(df)} - {None}
    ci_text = (f"{100 * ci_level.pop():.0f}% bootstrap interval" if len(ci_level) == 1
               else "bootstrap interval")
    for ax, target in zip(axes[0], targets, strict=False):
        sub = df[df["target"] == target].copy()
        sub["depth"] = layer_positions(sub)
        lo, hi = sub["ceiling_low"].dropna(), sub["ceiling_high"].dropna()
        if len(lo) and len(hi):
            ax.axhspan(float(lo.iloc[0]), float(hi.iloc[0]), color="0.85", zorder=0)
        else:
            ax.text(0.02, 0.97, "no noise ceiling for this target\n(one RDM: nothing to "
                    "leave out)" if {e.get("ceiling_by") for e in _extras(sub)} == {"rdm"}
                    or {e.get("ceiling") for e in _extras(sub)} == {"no ceiling (one RDM)"}
                    else "no noise ceiling for this target", transform=ax.transAxes,
                    va="top", ha="left", fontsize=8, color="0.35")
        ref, ticks, names = _layer_ticks(sub)
        for model, grp in sub.groupby("model", sort=False):
            grp = grp.sort_values("depth")
            ax.plot(grp["depth"], grp["value"], marker="o", ms=3, color=colors[model])
            if grp["ci_low"].notna().any():
                ax.fill_between(grp["depth"], grp["ci_low"], grp["ci_high"], alpha=0.18,
                                color=colors[model], linewidth=0)
            if layer_axis == "names" and [str(x) for x in grp["layer"]] != names:
                for r in grp.itertuples():
                    ax.annotate(str(r.layer), (r.depth, r.value), textcoords="offset points",
                                xytext=(3, -9), fontsize=6.5, color=colors[model])
        ax.set_title(str(target))
        if layer_axis == "names":
            ax.set_xticks(ticks, names, rotation=40, ha="right", fontsize=8)
            others = any([str(x) for x in g.sort_values("depth")["layer"]] != names
                         for _, g in sub.groupby("model", sort=False))
            ax.set_xlabel(f"layer of {ref}" + ("\n(other models at the same relative depth, "
                                               "their layers named at their points)" if others
                                               else ""), fontsize=9)
        else:
            ax.set_xlabel("relative layer depth (0 = first scored layer, 1 = last)")
        ax.axhline(0, color="0.5", lw=0.6)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(" / ".join(measure_label(df, m) for m in metrics) or "score")
    handles = [plt.Line2D([], [], color=c, marker="o", ms=3, label=str(m))
               for m, c in colors.items()]
    if df["ceiling_low"].notna().any():
        handles.append(Patch(color="0.85", label=ceiling_label))
    if has_ci:
        handles.append(Patch(color="0.5", alpha=0.3, label=f"shading: {ci_text}"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 3), fontsize=8,
               frameon=False)
    if title:
        fig.suptitle(title)
    rows = -(-len(handles) // 3)
    fig.tight_layout(rect=(0, 0.012 + 0.045 * rows, 1, 1))
    return fig


def normalized_scores(frame: pd.DataFrame) -> pd.Series:
    """Each score as a fraction of the lower bound of its noise ceiling (NaN without a ceiling):
    the ``normalized`` column of the report's best-layer table and of ``cortexalign results``."""
    ceiling = frame["ceiling_low"].astype(float)
    return (frame["value"].astype(float) / ceiling.where(ceiling != 0)).rename("normalized")


def interval_kind(extra: dict) -> str:
    """What a score's interval resamples and at which level, from its ``extra`` ("" when the
    score has no interval)."""
    if extra.get("interval"):
        return str(extra["interval"])
    if not extra.get("n_bootstrap") and not extra.get("ci_over"):
        return ""
    over = extra.get("ci_over", "stimuli")
    level = extra.get("ci_level", 0.95)
    return f"{float(level):.0%} percentile bootstrap over {over}"


def ceiling_kind(extra: dict, ceiling_low: float) -> str:
    """What a score's ceiling is (computed noise ceiling, published, or why there is none)."""
    if extra.get("ceiling"):
        return str(extra["ceiling"])
    if ceiling_low is not None and not (isinstance(ceiling_low, float) and math.isnan(ceiling_low)):
        return "noise ceiling" + (f" (by {extra['ceiling_by']})" if extra.get("ceiling_by")
                                  else "")
    return "no ceiling"


def ceiling_text(row: dict, bounds: str) -> str:
    """A table cell for a score row's ceiling: ``bounds`` (its low-high text) for a computed
    noise ceiling, ``bounds (published ...)`` for a published one, or why there is none."""
    kind = row.get("ceiling")  # a best_layers row says it already
    if not isinstance(kind, str) or not kind:
        kind = ceiling_kind(_extra_of(row), row.get("ceiling_low"))
    if kind.startswith("noise ceiling") or kind == "no ceiling":  # nothing more to say
        return bounds
    return f"{bounds} ({kind})" if kind.startswith("published") else kind


def _extra_of(row: pd.Series | dict) -> dict:
    e = row.get("extra_d", row.get("extra"))
    if isinstance(e, str):
        try:
            e = json.loads(e)
        except ValueError:
            e = {}
    return e if isinstance(e, dict) else {}


def best_layers(frame: pd.DataFrame) -> pd.DataFrame:
    """The best layer of each (model, target, metric), with its interval and ceiling and what
    each is (``interval``: what it resamples and its level; ``ceiling``: computed, published,
    or e.g. "no ceiling (one RDM)")."""
    rows = []
    for _, best in best_rows(frame).iterrows():
        extra = _extra_of(best)
        rows.append({"model": best["model"], "target": best["target"], "metric": best["metric"],
                     "layer": best["layer"],
                     "value": best["value"], "ci_low": best["ci_low"], "ci_high": best["ci_high"],
                     "interval": interval_kind(extra),
                     "ceiling_low": best["ceiling_low"], "ceiling_high": best["ceiling_high"],
                     "ceiling": ceiling_kind(extra, best["ceiling_low"]),
                     "normalized": normalized_scores(best.to_frame().T).iloc[0]})
    return pd.DataFrame(rows)
