"""Where a training run's evaluations go: rows of ``results.duckdb`` and the checkpoint JSON.

Every evaluation point is one job (``curve/step0000050``) of score rows: the hard metric per
layer on the ``train`` and the ``heldout`` stimuli, ``task_accuracy`` on the task's test images,
and the mean ``task_loss`` / ``align_loss`` since the last point. Each row's ``extra`` carries
the step, lambda, seed, the split and the *training target*: a row scoring the training stimuli
of the target the model was trained on is marked ``circular`` (it measures the fit, not
alignment). A resumed run skips points already stored.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

from cortexalign.align.config import AlignConfig
from cortexalign.align.target import BrainTarget
from cortexalign.results import RESULTS_FILE, ResultsStore, ScoreRecord

__all__ = ["CurveRecorder", "training_target", "circularity"]


def training_target(cfg: AlignConfig, target: BrainTarget) -> dict:
    """The provenance a trained model carries: what it was aligned to, on which stimuli."""
    return {"target": target.name, "objective": cfg.objective,
            "objective_options": cfg.options(), "lam": cfg.lam,
            "layers": list(cfg.layers), "train_stimuli": list(target.split.train),
            "heldout_stimuli": list(target.split.heldout),
            "note": (f"trained with lam={cfg.lam} on {target.name}: scoring this model on "
                     f"{target.name} is circular except on the held-out stimuli"
                     if cfg.lam > 0 else "lam=0: the task alone; the target was only measured")}


def _scalars(extra: dict) -> dict:
    """A metric's ``extra`` reduced to what a curve row needs: scalars and short lists (per-RDM
    values), NaN as None; per-neuroid arrays are dropped (the run keeps no neuroid table)."""
    out = {}
    for k, v in extra.items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float):
            out[k] = v if math.isfinite(v) else None
        elif isinstance(v, str | int | bool) or v is None:
            out[k] = v
        elif isinstance(v, list | tuple) and len(v) <= 64 and all(
                isinstance(e, int | float) for e in v):
            out[k] = [e if math.isfinite(e) else None for e in v]
    return out


def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


class CurveRecorder:
    """Writes evaluation points to the store and builds the checkpoint metadata."""

    def __init__(self, out, cfg: AlignConfig, model_id: str, target: BrainTarget,
                 task_source: str, metric: str):
        self.cfg, self.model_id, self.target = cfg, model_id, target
        self.task_source, self.metric = task_source, metric
        self.store = ResultsStore(out / RESULTS_FILE)
        self.run_id = self.store.start_run(cfg.model_dump_json(indent=1))
        self.provenance = training_target(cfg, target)

    def _extra(self, step: int, split: str, final: bool) -> dict:
        return {"step": step, "split": split, "final": final, "lam": self.cfg.lam,
                "seed": self.cfg.seed, "objective": self.cfg.objective,
                "training_target": self.target.name,
                "circular": split == "train" and self.cfg.lam > 0}

    def record(self, point: dict, final: bool = False) -> dict:
        """Store one evaluation point; returns its JSON-able summary (for curves)."""
        step = int(point["step"])
        rows, plain = [], {"step": step, "accuracy": point["accuracy"],
                           "task_loss": point["task_loss"], "align_loss": _num(point["align_loss"])}
        model = self.cfg.model
        if point.get("unscored"):
            plain["unscored"] = list(point["unscored"])
        for key, s in point.items():
            if "/" not in key:
                continue
            split, layer = key.split("/", 1)
            if s is None:  # unscored (see plain["unscored"])
                plain[key] = None
                continue
            rows.append(ScoreRecord.from_score(s, model=model, model_id=self.model_id,
                                               layer=layer, target=self.target.name,
                                               metric=self.metric))
            rows[-1] = dataclasses.replace(rows[-1], extra={**_scalars(rows[-1].extra),
                                                            **self._extra(step, split, final)})
            plain[key] = s.value
            if split == "heldout":
                plain[f"{key}/ci"] = [_num(s.ci_low), _num(s.ci_high)]
                plain[f"{key}/ceiling"] = [_num(s.ceiling_low), _num(s.ceiling_high)]
        for metric, value, target in (("task_accuracy", point["accuracy"], self.task_source),
                                      ("task_loss", point["task_loss"], self.task_source),
                                      ("align_loss", point["align_loss"], self.target.name)):
            if _num(value) is not None:
                rows.append(ScoreRecord(model=model, model_id=self.model_id, layer="output",
                                        target=target, metric=metric, value=float(value),
                                        extra=self._extra(step, "test" if metric ==
                                                          "task_accuracy" else "train", final)))
        key = f"curve/step{step:07d}"
        if not self.store.has_job(key):
            self.store.start_job(key, self.run_id)
            self.store.record_job(key, self.run_id, rows)
        return plain

    def describe(self, plain: dict) -> str:
        """A short progress-bar line of a point."""
        held = [v for k, v in plain.items()
                if k.startswith("heldout/") and k.count("/") == 1 and v is not None]
        return (f"acc {plain['accuracy']:.3f}  held-out {self.metric} "
                f"{sum(held) / max(len(held), 1):.3f}")

    def meta(self, curve: list[dict]) -> dict:
        """Checkpoint JSON: the config, the model, the curve and the training target."""
        return {"config": json.loads(self.cfg.model_dump_json()), "model": self.cfg.model,
                "model_id": self.model_id, "curve": curve, "training_target": self.provenance}

    def write_report(self) -> None:
        """Close the run in the store and write the run folder's report from the store."""
        from cortexalign.align.report import write_run_report

        self.store.finish_run(self.run_id)
        write_run_report(self.store.path.parent)


def circularity(weights, target: str, stimulus_ids) -> str | None:
    """Whether scoring the model in ``weights`` on ``target`` over ``stimulus_ids`` is circular.

    Reads the training target that ``train_aligned`` wrote beside the checkpoint. Returns None
    when the model was not aligned to ``target`` (or has no such record), else a sentence naming
    the overlap: any training stimulus among ``stimulus_ids`` makes the score circular; only
    held-out stimuli make it a fair held-out score of a model aligned to that target.
    """
    from pathlib import Path

    meta_path = Path(weights).with_suffix(".json")
    if not meta_path.is_file():
        return None
    record = json.loads(meta_path.read_text()).get("training_target") or {}
    if record.get("target") != str(target) or not float(record.get("lam", 0)) > 0:
        return None
    overlap = set(map(str, stimulus_ids)) & set(record.get("train_stimuli", []))
    if overlap:
        return (f"circular: the model was trained (lam={record['lam']}) to align with {target} "
                f"on {len(overlap)} of these {len(list(stimulus_ids))} stimuli")
    return (f"held out: the model was aligned to {target}, but on none of these stimuli "
            f"(a held-out score)")
