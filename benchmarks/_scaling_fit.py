"""Power-law fits of the scaling rows, the shipped JSON and the log-log plots (run as a script).

Each (measure, axis) gets the least-squares line of log(value) against log(size); its slope is
the exponent, and the value at the base point is read off the line (the median over the axes
that pass through the base, which is less noisy than the one base measurement). The runner's
seconds per job are the least-squares slope of run time against jobs on the layers axis (one
model: the extra jobs add a layer's extraction, a job and its store writes each).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

FAMILY = {"rsa": "rsa", "cka_linear": "cka", "ridge": "ridge"}
SYMBOL = {"stimuli": "s", "features": "d", "neuroids": "n", "resample": "s", "parameters": "p",
          "flops": "f", "layers": "L", "models": "M"}
MIN_MB = 0.05  # memory growth below this is measurement noise: clipped before the log


def _line(sizes, values) -> tuple[float, float]:
    """(slope, intercept) of log(values) against log(sizes)."""
    slope, intercept = np.polyfit(np.log(sizes), np.log(values), 1)
    return float(slope), float(intercept)


def _rows(rows, op, axis):
    sel = [r for r in rows if r["op"] == op and r["axis"] == axis]
    return [r["size"] for r in sel], sel


def _fit(rows, op, axes, base, key, scale=1.0) -> dict:
    """The power law of ``key`` (times ``scale``) over ``axes``: at, base, exponents."""
    exps, at = {}, []
    for axis in axes:
        sizes, sel = _rows(rows, op, axis)
        vals = np.maximum([r[key] * scale for r in sel], MIN_MB * scale if key != "seconds"
                          else 1e-7)
        slope, intercept = _line(sizes, vals)
        exps[axis] = round(slope, 3)
        at.append(np.exp(intercept + slope * np.log(base[axis])))
    return {"at": float(np.median(at)), "base": {a: base[a] for a in axes}, "exponents": exps}


def fit_rows(rows: list[dict], base: dict, measured: dict) -> dict:
    """The content of ``scaling_fits.json`` from the rows of the ``score``, ``extraction`` and
    ``runner`` axes."""
    axes = list(base)
    out: dict = {"format": 1, "measured": measured, "measures": {}}
    for op, family in FAMILY.items():
        out["measures"][family] = {
            "metric": op,
            "time": _fit(rows, op, axes, base, "seconds"),
            "memory": _fit(rows, op, axes, base, "peak_host_mb", 2**20),
            "resample": _fit(rows, op, ["resample"], {"resample": base["stimuli"]}, "seconds"),
        }
        res = out["measures"][family]["resample"]  # one resample against the stimuli axis
        res["base"] = {"stimuli": res["base"].pop("resample")}
        res["exponents"] = {"stimuli": res["exponents"].pop("resample")}
    p0, f0 = {"parameters": 1e7}, {"flops": 1e9}  # per image: seconds, activation bytes
    out["extraction"] = {
        "time": _fit(rows, "extract", ["flops"], f0, "seconds"),
        "activation_memory": _fit(rows, "extract", ["flops"], f0, "peak_host_mb", 2**20),
        "time_by_parameters": _fit(rows, "extract", ["parameters"], p0, "seconds"),
        "activation_memory_by_parameters": _fit(rows, "extract", ["parameters"], p0,
                                                "peak_host_mb", 2**20),
    }
    jobs, sel = _rows(rows, "runner", "layers")
    per_job = float(np.polyfit(jobs, [r["seconds"] for r in sel], 1)[0])
    out["runner"] = {"seconds_per_job": max(per_job, 0.0)}
    for axis in ("layers", "models"):
        sizes, sel = _rows(rows, "runner", axis)
        slope, intercept = _line(sizes, [r["seconds"] for r in sel])
        out["runner"][axis] = {"at": float(np.exp(intercept)), "base": {axis: 1},
                               "exponents": {axis: round(slope, 3)}}
    return out


def write_json(path: Path, fits: dict) -> None:
    """Write ``fits`` to ``path`` (temp file beside it, renamed into place)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(fits, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _panel(ax, rows, ops, axis, key, scale, fits_of, label_of):
    for op in ops:
        sizes, sel = _rows(rows, op, axis)
        if not sel:
            continue
        vals = np.maximum([r[key] * scale for r in sel], MIN_MB if key != "seconds" else 1e-7)
        fit = fits_of(op)
        line = ax.loglog(sizes, vals, "o", ms=4, label=None if fit else f"{op}")[0]
        if fit is None:
            continue
        exp = fit["exponents"][axis if axis in fit["exponents"] else "stimuli"]
        xs = np.geomspace(min(sizes), max(sizes), 20)
        base = fit["base"][axis if axis in fit["base"] else "stimuli"]
        ys = fit["at"] * scale_of(key) * (xs / base) ** exp
        ax.loglog(xs, ys, "--", color=line.get_color(),
                  label=f"{label_of(op)}: {SYMBOL[axis]}^{exp:.2f}")
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())  # decades only: minor labels overlap
    ax.set_xlabel(f"{axis} ({SYMBOL[axis]})")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)


def scale_of(key: str) -> float:
    """Plot units of a fitted value: seconds stay, bytes become MiB."""
    return 1.0 if key == "seconds" else 1 / 2**20


def plot(rows: list[dict], fits: dict, out_dir: Path, note: str) -> list[Path]:
    """Three PNGs (log-log, fitted exponent in each legend): scoring time, scoring memory, and
    extraction + runner; ``note`` (where and under what load) is in every title."""
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    measures = fits["measures"]

    def fit_for(part):
        return lambda op: measures[FAMILY[op]][part] if op in FAMILY else None

    paths = []
    fig, axs = plt.subplots(1, 4, figsize=(15, 3.6))
    for ax, axis in zip(axs, ["stimuli", "features", "neuroids"], strict=False):
        _panel(ax, rows, FAMILY, axis, "seconds", 1.0, fit_for("time"), str)
        ax.set_ylabel("seconds (no resampling)")
    _panel(axs[3], rows, FAMILY, "resample", "seconds", 1.0, fit_for("resample"), str)
    axs[3].set_ylabel("seconds per bootstrap resample")
    fig.suptitle(f"score(): time, one size varied around s=200, d=1000, n=100 — {note}",
                 fontsize=9)
    fig.tight_layout()
    paths.append(out_dir / "scaling_time.png")
    fig.savefig(paths[-1], dpi=110)
    fig, axs = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, axis in zip(axs, ["stimuli", "features", "neuroids"], strict=True):
        _panel(ax, rows, FAMILY, axis, "peak_host_mb", 1.0, fit_for("memory"), str)
        ax.set_ylabel("peak memory growth (MiB)")
    fig.suptitle(f"score(): peak host memory — {note}", fontsize=9)
    fig.tight_layout()
    paths.append(out_dir / "scaling_memory.png")
    fig.savefig(paths[-1], dpi=110)
    fig, axs = plt.subplots(1, 4, figsize=(15, 3.6))
    ext = fits["extraction"]
    _panel(axs[0], rows, ["extract", "extract (not fitted)"], "flops", "seconds", 1.0,
           lambda op: ext["time"] if op == "extract" else None, lambda op: "DNNs")
    axs[0].set_ylabel("seconds per image (224 px)")
    _panel(axs[1], rows, ["extract", "extract (not fitted)"], "flops", "peak_host_mb", 1.0,
           lambda op: ext["activation_memory"] if op == "extract" else None,
           lambda op: "DNNs")
    axs[1].set_ylabel("activation memory per image (MiB)")
    for ax, axis in zip(axs[2:], ["layers", "models"], strict=True):
        _panel(ax, rows, ["runner"], axis, "seconds", 1.0, lambda op, a=axis: fits["runner"][a],
               lambda op: "run_experiment")
        ax.set_ylabel("seconds per run")
    fig.suptitle(f"extraction against FLOPs per image (orange: gabor_v1, not in the fit); the "
                 f"runner against layers and models — {note}",
                 fontsize=9)
    fig.tight_layout()
    paths.append(out_dir / "scaling_runner.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close("all")
    return paths
