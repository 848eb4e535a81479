"""The study's own store rows and its ``report.md`` (written from the store alone).

Each training is a job of ``OUT/results.duckdb`` written by ``train_snn`` (table ``training``:
epoch curves, firing rates, energy, how it ended). The study adds one summary job holding, per
model, its held-out test (kind ``heldout``: accuracy, correct / n, chance, the binomial
p-value, the training's job key) and its time-step MI (kind ``time_step_mi``). The alignment
scores are the runner's rows of the ``scores`` table. ``report.md`` reads all three.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from cortexalign.results import RESULTS_FILE, ResultsStore, TrainingRecord
from cortexalign.studies.spiking._data import TaskData
from cortexalign.studies.spiking._figures import alignment_figure, curves_figure
from cortexalign.studies.spiking._plan import StudyPlan

__all__ = ["store_rows", "write_study_report", "summary_key"]


def summary_key(plan: StudyPlan, task: TaskData) -> str:
    """The summary job's key: the plan and the task data, hashed."""
    text = json.dumps({"plan": asdict(plan), "task": [task.classes, task.n_train,
                                                      task.n_test, task.source]},
                      sort_keys=True, default=str)
    return f"spiking_study:{hashlib.sha256(text.encode()).hexdigest()[:24]}"


def store_rows(out: Path, plan: StudyPlan, task: TaskData, trained, information: dict,
               subset: str | None) -> str:
    """Write the summary job (held-out tests and time-step MI of every model); returns its key.
    A rerun replaces the job's rows."""
    store = ResultsStore(out / RESULTS_FILE)
    key = summary_key(plan, task)
    config = json.dumps({"study": "spiking", "subset": subset, "plan": asdict(plan),
                         "task": asdict(task)}, indent=1, default=str)
    run_id = store.start_run(config)
    store.start_job(key, run_id)
    rows = []
    for t in trained:
        rows.append(TrainingRecord(t.name, "heldout", "accuracy", t.accuracy, extra={
            "n_correct": t.n_correct, "n_test": t.n_test, "chance": t.chance,
            "p_value": t.p_value, "test": "one-sided exact binomial vs chance", "params": t.params,
            "train_job": t.job_key, "checkpoint": str(t.checkpoint),
            "train_seconds": t.train_seconds, "classes": list(task.classes),
            "n_train": task.n_train, "task": task.source}))
        info = information.get(t.name)
        if info is not None:
            rows.append(TrainingRecord(t.name, "time_step_mi", "adjacent", info.adjacent, extra={
                "shuffled_floor": info.floor, "matrix": info.matrix,
                "estimator": info.estimator, "layer": info.layer, "n_images": info.n_images,
                "unit": "nats"}))
    store.record_training_job(key, run_id, rows, replace=True)
    store.finish_run(run_id)
    return key


def _extra(frame: pd.DataFrame) -> pd.Series:
    return frame["extra"].map(lambda e: e if isinstance(e, dict) else json.loads(e or "{}"))


def _fmt(x, spec: str = ".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _learning(store: ResultsStore, key: str) -> pd.DataFrame:
    rows = store.training_frame(job_key=key)
    tests = rows[rows.kind == "heldout"].copy()
    extra = _extra(tests)
    for col in ("n_correct", "n_test", "chance", "p_value", "params", "train_job",
                "train_seconds"):
        tests[col] = extra.map(lambda e, c=col: e.get(c))
    mi = rows[rows.kind == "time_step_mi"]
    mi_extra = dict(zip(mi.model, _extra(mi), strict=True))
    tests["mi"] = tests.model.map(dict(zip(mi.model, mi.value, strict=True)))
    tests["mi_floor"] = pd.to_numeric(tests.model.map(
        lambda m: mi_extra.get(m, {}).get("shuffled_floor")), errors="coerce")
    tests["mi_estimator"] = tests.model.map(lambda m: mi_extra.get(m, {}).get("estimator", ""))
    return tests.reset_index(drop=True)


def _per_training(store: ResultsStore, jobs: list[str]) -> pd.DataFrame:
    return store.training_frame(job_key=jobs) if jobs else pd.DataFrame()


def _alignment(store: ResultsStore, plan: StudyPlan) -> pd.DataFrame:
    """Best-layer RSA per (model label, target), the newest score of each (model id, layer,
    target), with the target's ceiling; models in the plan's order, IT targets first."""
    s = store.scores_frame()
    s = s[s.metric == "rsa"].sort_values("created").drop_duplicates(
        ["model_id", "layer", "target"], keep="last")
    best = s.sort_values("value").groupby(["model", "target"], sort=False).tail(1)
    labels = [plan.label(n, trained) for n in plan.names() for trained in (True, False)]
    rank = {m: k for k, m in enumerate(labels)}
    best = best.assign(_m=best.model.map(lambda m: rank.get(m, len(rank))),
                       _t=best.target.map(lambda t: ("1" if t.startswith("allen") else "0") + t))
    best = best.sort_values(["_m", "_t"])
    return best[["model", "target", "layer", "value", "ci_low", "ci_high", "ceiling_low",
                 "ceiling_high"]]


def write_study_report(out: Path, plan: StudyPlan, key: str, simulated: bool,
                       seconds: tuple[float, float]) -> Path:
    """``OUT/report.md`` and its figures, from the store (see the module docstring)."""
    from cortexalign.atomic import write_atomic

    store = ResultsStore(out / RESULTS_FILE, read_only=True)
    tests = _learning(store, key)
    trainings = _per_training(store, [j for j in tests.train_job if j])
    epochs = trainings[trainings.kind == "epoch"] if len(trainings) else trainings
    align = _alignment(store, plan)
    curves_figure(epochs, tests, out / "learning_curves.png")
    alignment_figure(align, out / "alignment.png")
    lines = _head(plan, tests, simulated, seconds) + _learning_lines(tests)
    lines += _cost_lines(trainings, tests) + _alignment_lines(align, simulated)
    path = out / "report.md"
    write_atomic(path, lambda p: p.write_text("\n".join(lines) + "\n"))
    return path


def _head(plan: StudyPlan, tests: pd.DataFrame, simulated: bool,
          seconds: tuple[float, float]) -> list[str]:
    first = _extra(tests).iloc[0] if len(tests) else {}
    return [
        "# Spiking transformers: learning, cost and brain alignment", "",
        f"Families {', '.join(plan.families)} at size `{plan.size}` "
        f"({', '.join(f'{k}={v}' for k, v in plan.snn_options.items())}) and the ANN control "
        f"`{plan.ann}` ({', '.join(f'{k}={v}' for k, v in plan.ann_options.items())}), trained "
        f"by one recipe (`cortexalign.spiking.train_snn`): AdamW lr {plan.lr:g}, weight decay "
        f"{plan.weight_decay:g}, cosine decay, batch {plan.batch_size}, {plan.epochs} epochs, "
        f"augmentation {'on' if plan.augment else 'off'}, seed {plan.seed}. Task: "
        f"{first.get('task', '?')}, classes {', '.join(first.get('classes', []))}, "
        f"{first.get('n_train', '?')} training images; every model is tested on the same "
        f"{int(tests.n_test.iloc[0]) if len(tests) else '?'} held-out images.", "",
        f"This invocation of the study took {seconds[0]:.0f} s wall and {seconds[1]:.0f} s of "
        "CPU in its process (training, measures, scoring, reports; a rerun on the same output "
        "folder skips the finished trainings and scores, and each training's own time is in "
        "the table below).", ""]


def _learning_lines(tests: pd.DataFrame) -> list[str]:
    lines = ["## Learning: held-out accuracy", "",
             "| model | parameters | held-out accuracy | correct / images | chance | binomial p "
             "(one-sided) | training (s) |", "|---|---|---|---|---|---|---|"]
    for _, r in tests.iterrows():
        lines.append(f"| {r.model} | {int(r.params):,} | {r.value:.3f} | {int(r.n_correct)} / "
                     f"{int(r.n_test)} | {r.chance:.3f} | {r.p_value:.2g} | "
                     f"{r.train_seconds:.0f} |")
    above = [r.model for _, r in tests.iterrows() if r.p_value < 0.05 and r.value > r.chance]
    lines += ["", f"Above chance at p < 0.05 (exact binomial test against the most frequent "
              f"class's share): {', '.join(above) if above else 'none'} "
              f"({len(above)} of {len(tests)}).", "",
              "![learning curves](learning_curves.png)", ""]
    return lines


def _cost_lines(trainings: pd.DataFrame, tests: pd.DataFrame) -> list[str]:
    lines = ["## Energy, firing rates and time-step information", "",
             "| model | energy (mJ / image) | MACs | SOPs | mean firing rate | adjacent-step MI "
             "(nats) | shuffled floor | above floor |", "|---|---|---|---|---|---|---|---|"]
    convention = ""
    for _, r in tests.iterrows():
        mine = trainings[trainings.job_key == r.train_job] if len(trainings) else trainings
        energy = mine[mine.kind == "energy"].set_index("name")["value"] if len(mine) else {}
        rates = mine[mine.kind == "firing_rate"]["value"] if len(mine) else []
        if len(mine) and (mine.kind == "energy").any():
            convention = _extra(mine[mine.kind == "energy"]).iloc[0].get("convention", "")
        lines.append(f"| {r.model} | {_fmt(energy.get('energy_mj', np.nan), '.4g')} | "
                     f"{_fmt(energy.get('macs', np.nan), '.3g')} | "
                     f"{_fmt(energy.get('sops', np.nan), '.3g')} | "
                     f"{_fmt(float(np.mean(rates)) if len(rates) else np.nan)} | "
                     f"{_fmt(r.mi)} | {_fmt(r.mi_floor)} | {_fmt(r.mi - r.mi_floor)} |")
    estimators = sorted({e for e in tests.mi_estimator if e})
    lines += ["", f"Energy convention: {convention or 'not stated'}. The ANN's layers all see "
              "real values: its energy is 4.6 pJ x the MACs of its convolutions and linear "
              "layers; for no model are the products inside attention counted. Firing rate: "
              "spikes per neuron per time step, averaged over the LIF layers, on the held-out "
              "images.", "",
              "Time-step MI (TDFormer's analysis: information shared between the "
              "representations of successive time steps): the mean over adjacent pairs of "
              f"steps; estimator: {'; '.join(estimators) or 'n/a'}. The plug-in estimate is "
              "biased upwards at these sizes; the shuffled floor is the same estimate with the "
              "later step's images shuffled (independent representations of the same sizes), "
              "and the MI above it is what the steps share. The ANN has no time steps.", ""]
    return lines


def _alignment_lines(align: pd.DataFrame, simulated: bool) -> list[str]:
    lines = ["## Alignment with the brain (best layer, Spearman RSA of correlation RDMs)", ""]
    if align.empty:
        return lines + ["No alignment score was stored (see report.html for failures).", ""]
    targets = list(dict.fromkeys(align.target))
    cells = {(r.model, r.target): _fmt(r.value) + (
        f" [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]" if pd.notna(r.ci_low) else "")
        for r in align.itertuples()}
    lines += ["| model | " + " | ".join(targets) + " |", "|---|" + "---|" * len(targets)]
    for model in dict.fromkeys(align.model):
        lines.append(f"| {model} | " + " | ".join(cells.get((model, t), "n/a") for t in targets)
                     + " |")
    if align.ci_low.notna().any():
        lines += ["", "Brackets: 95% bootstrap interval over stimuli of the best layer's score "
                  "(the best layer is chosen on the same stimuli: optimistic, for every model "
                  "alike)."]
    ceil = align.drop_duplicates("target").set_index("target")
    lines += ["", "Noise ceilings: " + "; ".join(
        f"{t} [{_fmt(ceil.ceiling_low.get(t))}, {_fmt(ceil.ceiling_high.get(t))}]"
        for t in targets) + ".", "", "![alignment](alignment.png)", ""]
    if simulated:
        lines += ["The Allen-layout target is simulated (`cortexalign simulate spiking`): one "
                  "group follows an untrained tiny SAM's attention and every other neuron a "
                  "random image selectivity; nothing was planted for these models, so its "
                  "scores check the pipeline and make no biological claim. Per-layer scores, "
                  "targets and failures are in `report.html`.", ""]
    return lines
