"""Figures drawn from the results table (a pandas DataFrame of scores)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

__all__ = ["layerwise_figure", "layer_positions"]


def layer_positions(frame: pd.DataFrame) -> pd.Series:
    """Relative depth in [0, 1] of each row's layer within its model (from ``extra.layer_index``)."""
    def _idx(extra) -> tuple[int, int]:
        d = json.loads(extra) if isinstance(extra, str) else (extra or {})
        return int(d.get("layer_index", 0)), int(d.get("n_layers", 1))

    pairs = frame["extra"].map(_idx)
    return pairs.map(lambda p: p[0] / max(p[1] - 1, 1))


def layerwise_figure(frame: pd.DataFrame, path: str | Path, metric: str | None = None,
                     title: str | None = None) -> Path:
    """Layer-wise scores, one panel per neural target and one line per model.

    The x axis is relative depth (0 = first scored layer, 1 = last) so models with different
    numbers of layers share a panel; the grey band is the target's noise ceiling (lower to upper
    bound) and the shaded band around each line its bootstrap confidence interval.
    """
    path = Path(path)
    df = frame if metric is None else frame[frame["metric"] == metric]
    targets = list(dict.fromkeys(df["target"]))
    fig, axes = plt.subplots(1, max(len(targets), 1), figsize=(5.2 * max(len(targets), 1), 4.2),
                             squeeze=False, sharey=True)
    for ax, target in zip(axes[0], targets, strict=False):
        sub = df[df["target"] == target].copy()
        sub["depth"] = layer_positions(sub)
        lo, hi = sub["ceiling_low"].dropna(), sub["ceiling_high"].dropna()
        if len(lo) and len(hi):
            ax.axhspan(float(lo.iloc[0]), float(hi.iloc[0]), color="0.85", zorder=0,
                       label="noise ceiling")
        for model, grp in sub.groupby("model", sort=False):
            grp = grp.sort_values("depth")
            line = ax.plot(grp["depth"], grp["value"], marker="o", ms=3, label=str(model))[0]
            if grp["ci_low"].notna().any():
                ax.fill_between(grp["depth"], grp["ci_low"], grp["ci_high"], alpha=0.2,
                                color=line.get_color(), linewidth=0)
        ax.set_title(str(target))
        ax.set_xlabel("relative layer depth")
        ax.axhline(0, color="0.5", lw=0.6)
        ax.grid(alpha=0.3)
    metric_name = metric or ", ".join(dict.fromkeys(df["metric"]))
    axes[0][0].set_ylabel(f"{metric_name} score")
    axes[0][-1].legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp" + path.suffix)
    fig.savefig(tmp, dpi=130)
    plt.close(fig)
    tmp.replace(path)
    return path
