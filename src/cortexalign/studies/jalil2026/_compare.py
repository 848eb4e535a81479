"""The paper's comparisons from a run's scores, and the planted group's recovery on simulations.

Jalil, Qazi & Iqbal report map RMSE between neuron maps and model maps of 0.09-0.15, lower for
excitatory than inhibitory Cre lines, lowest in VISal, and consistent across model sizes
(METHODS.md section 1). ``paper_comparisons`` states each of these for the run at hand, from
each model's best layer under ``map_rmse`` (lowest mean RMSE over the groups), next to what the
paper found; ``planted_recovery`` checks a simulation's planted group.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["paper_comparisons", "planted_recovery", "group_frame"]


def _extra(e: Any) -> dict:
    return json.loads(e) if isinstance(e, str) else (e or {})


def group_frame(scores: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows of ``metric`` with the group's area, Cre gene, cell class and layer as columns."""
    from cortexalign.neural.allen import cell_class

    df = scores[scores["metric"] == metric].copy()
    ex = [_extra(e) for e in df["extra"]]
    groups = [e.get("group", {}) for e in ex]
    df["area"] = [g.get("area", "") for g in groups]
    df["cre"] = [str(g.get("cre_line", "")) for g in groups]
    df["cortical_layer"] = [g.get("cortical_layer", "") for g in groups]
    df["cell_class"] = [cell_class(c) for c in df["cre"]]
    df["p_fdr"] = [np.nan if e.get("p_fdr") is None else float(e["p_fdr"]) for e in ex]
    return df


def _best_layers(df: pd.DataFrame) -> pd.DataFrame:
    """Each model's rows at its layer of lowest mean RMSE over the groups."""
    means = df.groupby(["model", "layer"])["value"].mean().reset_index()
    best = means.loc[means.groupby("model")["value"].idxmin(), ["model", "layer"]]
    return df.merge(best, on=["model", "layer"])


def _fmt(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


def _write(path: Path, text: str) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def _rows(best: pd.DataFrame) -> list[tuple[str, str, str]]:
    rows = []
    lo, hi = best["value"].quantile([0.05, 0.95]) if len(best) else (np.nan, np.nan)
    rows.append(("RMSE range (min-max scaled maps)", "0.09-0.15",
                 f"{_fmt(lo)}-{_fmt(hi)} (5th-95th percentile over models x groups)"))
    cls = best.groupby("cell_class")["value"].mean()
    e, i = cls.get("excitatory", np.nan), cls.get("inhibitory", np.nan)
    rows.append(("excitatory vs inhibitory RMSE", "excitatory lower",
                 f"excitatory {_fmt(e)}, inhibitory {_fmt(i)}: "
                 + ("excitatory lower" if e < i else "inhibitory lower" if i < e else "n/a")))
    area = best.groupby("area")["value"].mean().sort_values()
    rows.append(("area with the lowest RMSE", "VISal",
                 ", ".join(f"{a} {_fmt(v)}" for a, v in area.items())))
    layer = best.groupby("cortical_layer")["value"].mean().sort_values()
    rows.append(("cortical layer with the lowest RMSE", "(not reported)",
                 ", ".join(f"{a} {_fmt(v)}" for a, v in layer.items())))
    prof = best.pivot_table(index="target", columns="model", values="value")
    if prof.shape[1] > 1:
        rho = prof.rank().corr().to_numpy()
        off = rho[~np.eye(len(rho), dtype=bool)]
        rows.append(("consistency across models (Spearman of group profiles)",
                     "consistent across model sizes",
                     f"mean pairwise rho {_fmt(float(np.nanmean(off)))} over {prof.shape[1]} "
                     "model entries"))
    per_model = best.groupby("model")["value"].mean().sort_values()
    rows.append(("models by best-layer RMSE (lower = closer)", "(per model)",
                 ", ".join(f"{m} {_fmt(v)}" for m, v in per_model.items())))
    tested = best["p_fdr"].notna()
    rows.append(("groups with p_FDR <= 0.05 (map RMSE, best layer)", "(no statistics)",
                 f"{int((best['p_fdr'] <= 0.05).sum())} of {int(tested.sum())}" if tested.any()
                 else "n/a: map RMSE scored without permutations in this plan (map Pearson "
                      "and RSA carry the p-values)"))
    return rows


def paper_comparisons(scores: pd.DataFrame, path: str | Path) -> Path:
    """Write the comparisons table (markdown) to ``path`` and return it."""
    df = group_frame(scores, "map_rmse")
    lines = ["# The paper's comparisons (map RMSE, each model's best layer)", "",
             "| comparison | paper | this run |", "|---|---|---|"]
    if df.empty:
        lines.append("| (no map_rmse scores) | | |")
    else:
        lines += [f"| {a} | {b} | {c} |" for a, b, c in _rows(_best_layers(df))]
    return _write(Path(path), "\n".join(lines) + "\n")


def planted_recovery(scores: pd.DataFrame, planted: dict, path: str | Path
                     ) -> tuple[Path, dict[str, Any]]:
    """Whether the planted group stands out at the planted block (map Pearson, p after FDR).

    Returns the markdown file and a dict: ``target``, ``value``, ``p_value``, ``p_fdr``,
    ``rank`` (1 = highest Pearson of the groups), ``false_positives`` (other groups with
    p_FDR <= 0.05) and ``verdict``.
    """
    g = planted["group"]
    label = f"{planted['model']['name']} attention"
    df = group_frame(scores, "map_pearson")
    df = df[(df["model"] == label) & (df["layer"] == planted["block"])]
    hit = df[(df["area"] == g["area"]) & (df["cre"] == g["cre_line"])
             & (df["cortical_layer"] == g["cortical_layer"])]
    out: dict[str, Any] = {"target": f"allen/{g['area']}/{g['cre_line']}/{g['cortical_layer']}",
                           "verdict": "not scored (is the planted model in the plan?)"}
    if len(hit) == 1:
        row = hit.iloc[0]
        rank = int((df["value"] > row["value"]).sum()) + 1
        others = df.drop(index=hit.index)
        out.update(value=float(row["value"]), p_value=float(row["p_value"]),
                   p_fdr=float(row["p_fdr"]), rank=rank, n_groups=len(df),
                   false_positives=int((others["p_fdr"] <= 0.05).sum()))
        ok = out["p_fdr"] <= 0.05
        out["verdict"] = (f"{'recovered' if ok else 'NOT recovered'}: map Pearson "
                          f"{out['value']:.3f}, p {out['p_value']:.4f}, p_FDR {out['p_fdr']:.4f}, "
                          f"rank {rank} of {len(df)}; {out['false_positives']} other group(s) "
                          "with p_FDR <= 0.05")
    text = (f"# Planted group\n\nmodel entry `{label}`, block `{planted['block']}`, group "
            f"`{out['target']}`\n\n{out['verdict']}\n")
    return _write(Path(path), text), out
