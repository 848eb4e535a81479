"""The report of one alignment-training run, read from its ``results.duckdb`` alone.

``report.md`` states the training target first (so that scoring the model on that target's
training stimuli is recognised as circular), then the final held-out alignment with its
interval and ceiling, the task accuracy, and the curve (``curve.png``: task accuracy and the
train / held-out alignment over steps).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from cortexalign.results import RESULTS_FILE, ResultsStore

__all__ = ["write_run_report", "run_frame"]


def run_frame(folder: Path) -> pd.DataFrame:
    """The run folder's score rows with ``step``, ``split``, ``final`` and ``circular`` columns."""
    df = ResultsStore(Path(folder) / RESULTS_FILE, read_only=True).scores_frame()
    extra = df["extra"].map(lambda e: e if isinstance(e, dict) else json.loads(e))
    for key in ("step", "split", "final", "circular", "lam", "seed", "training_target"):
        df[key] = extra.map(lambda e, k=key: e.get(k))
    return df


def _fmt(x) -> str:
    return "n/a" if x is None or pd.isna(x) else f"{x:.3f}"


def _plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    acc = df[df.metric == "task_accuracy"].sort_values("step")
    a1.plot(acc.step, acc.value, marker="o")
    a1.set(xlabel="step", ylabel="task accuracy (test)")
    align = df[~df.metric.isin(["task_accuracy", "task_loss", "align_loss"])]
    for (split, layer), g in align.groupby(["split", "layer"]):
        g = g.sort_values("step")
        a2.plot(g.step, g.value, marker="o", ls="-" if split == "heldout" else "--",
                label=f"{layer} ({split}{', circular' if split == 'train' else ''})")
    a2.set(xlabel="step", ylabel=f"{align.metric.iloc[0] if len(align) else ''} alignment")
    if len(align):
        a2.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def write_run_report(folder: Path) -> Path:
    """Write ``report.md`` and ``curve.png`` of the run in ``folder``; returns the report path."""
    folder = Path(folder)
    df = run_frame(folder)
    store = ResultsStore(folder / RESULTS_FILE, read_only=True)
    cfg = json.loads(store.frame("runs").sort_values("started").config_yaml.iloc[-1])
    ckpts = sorted((folder / "checkpoints").glob("ckpt_*.json"))
    provenance = json.loads(ckpts[-1].read_text())["training_target"] if ckpts else {}
    final = df[df.final == True]  # noqa: E712 (a pandas mask)
    lines = [f"# Alignment training: {cfg['model']}", "",
             f"**Training target**: `{provenance.get('target', cfg['target'])}` "
             f"({cfg['objective']}, lam = {cfg['lam']}, layers {', '.join(cfg['layers'])}), "
             f"on {len(provenance.get('train_stimuli', []))} training stimuli; "
             f"{len(provenance.get('heldout_stimuli', []))} held out (split.json).",
             "", f"> {provenance.get('note', '')}", "",
             "Scores of this model on the training stimuli of its training target are "
             "**circular** (they measure the fit) and are marked so in the store "
             "(`extra.circular`); only held-out scores measure alignment.", "",
             "## Final scores", "", "| layer | split | metric | value | 95% CI | ceiling |",
             "|---|---|---|---|---|---|"]
    for _, r in final.iterrows():
        if r.metric in ("task_loss", "align_loss"):
            continue
        ci = f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]" if pd.notna(r.ci_low) else ""
        ceil = f"[{_fmt(r.ceiling_low)}, {_fmt(r.ceiling_high)}]" if pd.notna(
            r.ceiling_low) else ""
        split = r.split + (" (circular)" if r.circular else "")
        lines.append(f"| {r.layer} | {split} | {r.metric} | {_fmt(r.value)} | {ci} | {ceil} |")
    lines += ["", "## Curve", "", "![curve](curve.png)", "",
              "| step | task accuracy | task loss | align loss |", "|---|---|---|---|"]
    by_step = df.pivot_table(index="step", columns="metric", values="value", aggfunc="last")
    for step, r in by_step.iterrows():
        lines.append(f"| {int(step)} | {_fmt(r.get('task_accuracy'))} | "
                     f"{_fmt(r.get('task_loss'))} | {_fmt(r.get('align_loss'))} |")
    _plot(df, folder / "curve.png")
    path = folder / "report.md"
    tmp = path.with_name("report.md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path
