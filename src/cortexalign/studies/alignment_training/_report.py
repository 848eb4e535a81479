"""The study's store rows, figures and report (the report is written from the store alone)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from cortexalign.results import RESULTS_FILE, ResultsStore, ScoreRecord

__all__ = ["store_rows", "write_report"]

_CAVEAT = ("With {n} seeds the smallest two-sided sign-flip p-value is {pmin:.3g}: the seed-level "
           "test cannot reach 0.05 below 6 seeds. The stimulus-level interval is over the {s} "
           "held-out stimuli only.")


def _num(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def store_rows(path: Path, plan, outcomes, lam_summary, paired, config_text: str) -> None:
    """Write every run's final scores, the per-lambda means and the paired tests to ``path``."""
    store = ResultsStore(path)
    run_id = store.start_run(config_text)
    rows = []
    for o in outcomes:
        extra = {"lam": o.lam, "seed": o.seed, "split": "heldout", "kind": "run",
                 "training_target": plan.target, "train_rsa_circular": o.train}
        rows.append(ScoreRecord(model=plan.model, model_id=o.model_id, layer=plan.layer,
                                target=plan.target, metric="rsa", value=o.heldout,
                                ci_low=o.ci[0], ci_high=o.ci[1], ceiling_low=o.ceiling[0],
                                ceiling_high=o.ceiling[1], n_stimuli=0, extra=extra))
        rows.append(ScoreRecord(model=plan.model, model_id=o.model_id, layer="output",
                                target="task", metric="task_accuracy", value=o.accuracy,
                                extra={**extra, "split": "test"}))
    for r in lam_summary:
        rows.append(ScoreRecord(model=plan.model, model_id=f"{plan.model}@lam{r['lam']:g}",
                                layer=plan.layer, target=plan.target, metric="rsa_seed_mean",
                                value=r["heldout"], ci_low=r["heldout_ci"][0],
                                ci_high=r["heldout_ci"][1], ceiling_low=r["ceiling"][0],
                                ceiling_high=r["ceiling"][1],
                                extra={"kind": "lambda", "split": "heldout", **{
                                    k: r[k] for k in ("lam", "n_seeds", "train", "accuracy",
                                                      "accuracy_sd", "heldout_sd_seeds")}}))
    for r in paired:
        g, a = r["alignment_gained"], r["accuracy_lost"]
        rows.append(ScoreRecord(model=plan.model, model_id=f"{plan.model}@lam{r['lam']:g}",
                                layer=plan.layer, target=plan.target,
                                metric="paired_alignment_gain", value=g["mean"],
                                ci_low=g["stimulus_ci"][0], ci_high=g["stimulus_ci"][1],
                                p_value=g.get("sign_flip_p"),
                                extra={"kind": "paired", "lam": r["lam"], "seeds": r["seeds"],
                                       "t_p": _num(g.get("t_p")), "stimulus_p": g["stimulus_p"],
                                       "per_seed": g["per_seed"]}))
        rows.append(ScoreRecord(model=plan.model, model_id=f"{plan.model}@lam{r['lam']:g}",
                                layer="output", target="task", metric="paired_accuracy_lost",
                                value=a["mean"], p_value=a.get("sign_flip_p"),
                                extra={"kind": "paired", "lam": r["lam"], "seeds": r["seeds"],
                                       "t_p": _num(a.get("t_p")), "per_seed": a["per_seed"]}))
    key = "summary"
    if store.has_job(key):  # a rerun replaces nothing: it adds a new run's summary
        key = f"summary/{run_id}"
    store.start_job(key, run_id)
    store.record_job(key, run_id, rows)
    store.finish_run(run_id)


def _frame(path: Path) -> pd.DataFrame:
    store = ResultsStore(path, read_only=True)
    df = store.scores_frame()
    last = store.frame("runs").sort_values("started").run_id.iloc[-1]
    df = df[df.run_id == last].copy()
    extra = df["extra"].map(lambda e: e if isinstance(e, dict) else json.loads(e))
    for k in ("kind", "lam", "seed", "train", "accuracy", "accuracy_sd", "t_p", "stimulus_p",
              "per_seed", "seeds", "n_seeds", "heldout_sd_seeds"):
        df[k] = extra.map(lambda e, k=k: e.get(k))
    return df


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def _figures(df: pd.DataFrame, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lam = df[df.kind == "lambda"].sort_values("lam")
    runs = df[(df.kind == "run") & (df.metric == "rsa")]
    xs = np.arange(len(lam))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    a1.axhspan(lam.ceiling_low.iloc[0], lam.ceiling_high.iloc[0], color="0.85",
               label="noise ceiling (held-out)")
    a1.errorbar(xs, lam.value, yerr=[lam.value - lam.ci_low, lam.ci_high - lam.value],
                marker="o", capsize=4, label="held-out RSA, seed mean [95% CI]")
    pos = {v: i for i, v in enumerate(lam.lam)}
    a1.scatter([pos[v] + 0.08 for v in runs.lam], runs.value, s=12, color="C0", alpha=0.5,
               label="each seed")
    a1.plot(xs, lam.train, ls="--", marker="s", color="C3", label="training stimuli (circular)")
    a1.set(xticks=xs, xticklabels=[f"{v:g}" for v in lam.lam], xlabel="lambda",
           ylabel="Spearman RSA vs human IT")
    a1.legend(fontsize=7)
    a2.errorbar(xs, lam.accuracy, yerr=lam.accuracy_sd.fillna(0), marker="o", capsize=4)
    a2.set(xticks=xs, xticklabels=[f"{v:g}" for v in lam.lam], xlabel="lambda",
           ylabel="task accuracy (seed mean +- sd)")
    fig.suptitle("Alignment-regularised training: the lambda curve")
    fig.tight_layout()
    files = {"lambda_curve": out / "lambda_curve.png"}
    _save(fig, files["lambda_curve"])

    gain = df[df.metric == "paired_alignment_gain"].sort_values("lam")
    lost = df[df.metric == "paired_accuracy_lost"].sort_values("lam")
    fig, ax = plt.subplots(figsize=(5, 4))
    for (_, g), (_, a) in zip(gain.iterrows(), lost.iterrows(), strict=True):
        ax.scatter(a.per_seed, g.per_seed, s=14, alpha=0.5)
        ax.errorbar(a.value, g.value, yerr=[[g.value - g.ci_low], [g.ci_high - g.value]],
                    marker="o", capsize=4, label=f"lambda {g.lam:g}")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set(xlabel="task accuracy lost vs lambda = 0 (paired by seed)",
           ylabel="held-out alignment gained vs lambda = 0")
    ax.legend(fontsize=7)
    fig.tight_layout()
    files["tradeoff"] = out / "tradeoff.png"
    _save(fig, files["tradeoff"])
    return files


def _p(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


def _verdict(g, a) -> str:
    lo, hi = g.ci_low, g.ci_high
    seeds = list(g.per_seed)
    up, down = all(d > 0 for d in seeds), all(d < 0 for d in seeds)
    if lo > 0 and up:
        what = "raised held-out alignment, in every seed and beyond the stimulus uncertainty"
    elif hi < 0 and down:
        what = "lowered held-out alignment, in every seed and beyond the stimulus uncertainty"
    elif up or down:
        what = (f"{'raised' if up else 'lowered'} held-out alignment in every seed, but by less "
                "than the uncertainty over the held-out stimuli: not shown to generalise to new "
                "stimuli")
    else:
        what = "did not change held-out alignment detectably (the seeds disagree in sign)"
    cost = (f"task accuracy {'fell' if a.value > 0 else 'rose'} by {abs(a.value):.3f}")
    return (f"lambda = {g.lam:g} {what}: {g.value:+.3f} (stimulus 95% CI [{lo:+.3f}, {hi:+.3f}], "
            f"per seed {', '.join(f'{d:+.3f}' for d in seeds)}; sign-flip p = "
            f"{_p(g.p_value)}, paired t p = {_p(g.t_p)}); {cost} (accuracy lost per seed "
            f"{', '.join(f'{d:+.3f}' for d in a.per_seed)}; sign-flip p = {_p(a.p_value)}).")


def write_report(out: Path, n_heldout: int, task_source: str, plan) -> dict[str, Path]:
    """``report.md`` with the lambda table, the paired tests and a plain verdict, from the
    study's store; the figures beside it."""
    df = _frame(out / RESULTS_FILE)
    files = _figures(df, out)
    lam = df[df.kind == "lambda"].sort_values("lam")
    gain = df[df.metric == "paired_alignment_gain"].sort_values("lam")
    lost = df[df.metric == "paired_accuracy_lost"].sort_values("lam")
    n_seeds = int(lam.n_seeds.iloc[0])
    lines = ["# Brain alignment as a training signal", "",
             f"Model `{plan.model}` (untrained init), layer `{plan.layer}`, trained on "
             f"{task_source} for {plan.steps} steps (batch {plan.batch_size}) with loss = task + "
             f"lambda x (-soft-Spearman RSA) against `{plan.target}` on its training stimuli; "
             f"{n_heldout} stimuli held out (stratified by category, split before any fit). "
             f"Lambdas {', '.join(f'{v:g}' for v in plan.lams)}, seeds "
             f"{', '.join(map(str, plan.seeds))}; every run has the same budget.", "",
             "**Training target**: every lambda > 0 model was trained on this target: its scores "
             "on the training stimuli are circular (shown dashed, never used below).", "",
             "## Result", ""]
    for (_, g), (_, a) in zip(gain.iterrows(), lost.iterrows(), strict=True):
        lines.append(f"- {_verdict(g, a)}")
    pmin = 2.0 / 2 ** n_seeds
    lines += ["", _CAVEAT.format(n=n_seeds, pmin=pmin, s=n_heldout), "",
              "## The lambda curve", "", "![lambda curve](lambda_curve.png)", "",
              "| lambda | held-out RSA (seed mean) | 95% CI (stimuli) | sd over seeds | ceiling "
              "| training stimuli (circular) | task accuracy |", "|---|---|---|---|---|---|---|"]
    for _, r in lam.iterrows():
        lines.append(f"| {r.lam:g} | {r.value:.3f} | [{r.ci_low:.3f}, {r.ci_high:.3f}] | "
                     f"{r.heldout_sd_seeds:.3f} | [{r.ceiling_low:.3f}, {r.ceiling_high:.3f}] | "
                     f"{r.train:.3f} | {r.accuracy:.3f} +- {r.accuracy_sd:.3f} |")
    lines += ["", "## Paired tests against the lambda = 0 twin (same seed)", "",
              "| lambda | alignment gained | 95% CI (stimuli) | sign-flip p (seeds) | paired t p "
              "| stimulus-bootstrap p | accuracy lost | sign-flip p |", "|---|---|---|---|---|---|---|---|"]
    for (_, g), (_, a) in zip(gain.iterrows(), lost.iterrows(), strict=True):
        lines.append(f"| {g.lam:g} | {g.value:+.3f} | [{g.ci_low:+.3f}, {g.ci_high:+.3f}] | "
                     f"{_p(g.p_value)} | {_p(g.t_p)} | {_p(g.stimulus_p)} | {a.value:+.3f} | "
                     f"{_p(a.p_value)} |")
    lines += ["", "![alignment gained vs accuracy lost](tradeoff.png)", "",
              "Per-run folders (`runs/lam*_seed*`) hold each model's checkpoints (safetensors, "
              "config and training target beside), its curve in `results.duckdb` and its report."]
    path = out / "report.md"
    tmp = path.with_name("report.md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return {"report": path, **files, "results": out / RESULTS_FILE}
