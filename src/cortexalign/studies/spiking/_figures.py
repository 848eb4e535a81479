"""The study's two figures: held-out learning curves, and best-layer alignment per target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["curves_figure", "alignment_figure"]


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    from cortexalign.atomic import write_atomic

    write_atomic(path, lambda p: fig.savefig(p, dpi=120))
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves_figure(epochs: pd.DataFrame, tests: pd.DataFrame, path: Path) -> Path:
    """Held-out (solid) and training (dashed) accuracy per epoch of every model, with chance."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    jobs = dict(zip(tests.train_job, tests.model, strict=True))
    for k, (job, model) in enumerate(jobs.items()):
        rows = epochs[epochs.job_key == job] if len(epochs) else epochs
        for name, style in (("test_acc", "-"), ("train_acc", "--")):
            pts = rows[rows.name == name].sort_values("epoch")
            if len(pts):
                ax.plot(pts.epoch, pts.value, style, color=f"C{k}", marker="o", ms=3,
                        label=f"{model} ({'held-out' if name == 'test_acc' else 'train'})")
    if len(tests):
        ax.axhline(float(tests.chance.iloc[0]), color="0.5", lw=1, ls=":", label="chance")
    ax.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1), title="Learning curves")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    _save(fig, path)
    return path


def alignment_figure(align: pd.DataFrame, path: Path) -> Path:
    """Best-layer RSA of every model (trained and untrained) per target, one bar group each."""
    plt = _pyplot()
    targets = list(dict.fromkeys(align.target)) or ["(none)"]
    models = list(dict.fromkeys(align.model))
    fig, ax = plt.subplots(figsize=(min(12.0, 2.5 + 1.1 * len(targets)), 4))
    width = 0.8 / max(1, len(models))
    xs = np.arange(len(targets))
    for k, model in enumerate(models):
        rows = align[align.model == model].set_index("target")
        ys = np.array([float(rows.value.get(t, np.nan)) for t in targets])
        lo = np.array([float(rows.ci_low.get(t, np.nan)) for t in targets])
        hi = np.array([float(rows.ci_high.get(t, np.nan)) for t in targets])
        err = np.vstack([ys - lo, hi - ys]) if np.isfinite(lo).any() else None
        ax.bar(xs + (k - (len(models) - 1) / 2) * width, ys, width, yerr=err,
               error_kw={"lw": 0.6, "capsize": 1.5}, color=f"C{k // 2}",
               alpha=1.0 if "untrained" not in model else 0.45, label=model)
    ax.axhline(0, color="0.4", lw=0.8)
    ax.set_xticks(xs, targets, rotation=30, ha="right", fontsize=7)
    ax.set(ylabel="best-layer RSA (Spearman)",
           title="Alignment (faded: untrained controls; bars: 95% bootstrap interval)")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    _save(fig, path)
    return path
