"""What a spiking training writes to the results store (the ``training`` table, ``results``).

``TrainingLog`` records one training as one job: its per-epoch curves as each epoch ends
(``add_training_rows``), then, after training, the firing rates and the energy estimate on test
images and how the training ended (``record_training_job``, which marks the job finished).
Without a store given it opens ``<results_dir or checkpoint_dir>/results.duckdb`` and records
a run of its own; given one (a runner's job, ``store`` and ``run_id``), it writes the epoch rows
only, and the caller stores ``TrainResult.records`` when the job finishes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cortexalign.results import RESULTS_FILE, ResultsStore, TrainingRecord

__all__ = ["TrainingLog", "training_job_key", "after_training_records", "EPOCH_FIELDS"]

#: The per-epoch quantities (``kind='epoch'`` rows), as ``TrainResult.epochs`` holds them.
EPOCH_FIELDS = ("train_loss", "train_acc", "test_acc", "seconds", "seconds_per_step")
#: Fields of a ``TrainConfig`` that change how a training runs or is shown, not what it learns.
RUN_ONLY_FIELDS = {"progress", "keep_last", "checkpoint_every", "resume", "results_dir"}


def training_job_key(config: Any) -> str:
    """The stable job key of a training: its config (without ``RUN_ONLY_FIELDS``), hashed."""
    payload = json.loads(config.model_dump_json(exclude=RUN_ONLY_FIELDS))
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return f"snn_train:{digest[:32]}"


class TrainingLog:
    """One training recorded in a results store (see the module docstring)."""

    def __init__(self, config: Any, store: Any = None, run_id: str | None = None):
        self.model = config.model
        self.key = training_job_key(config)
        self.own = store is None
        if self.own:
            path = Path(config.results_dir or config.checkpoint_dir) / RESULTS_FILE
            store = ResultsStore(path)
            run_id = store.start_run(config.model_dump_json(indent=1),
                                     self.key.split(":", 1)[1][:16])
            store.start_job(self.key, run_id)
        self.store, self.run_id = store, run_id

    def epoch(self, row: dict) -> None:
        """Store one epoch's curve points (``row``: epoch, step and ``EPOCH_FIELDS``)."""
        self.store.add_training_rows(self.key, self.run_id, [
            TrainingRecord(self.model, "epoch", name, row[name], epoch=row["epoch"],
                           step=row["step"]) for name in EPOCH_FIELDS if name in row])

    def finish(self, records: list[TrainingRecord], replace: bool = False) -> None:
        """The training ended: store its last rows and mark its job finished (own run only;
        a runner's job is written by the runner)."""
        if self.own:
            self.store.record_training_job(self.key, self.run_id, records, replace=replace)
            self.store.finish_run(self.run_id)

    def fail(self, message: str, status: str = "failed") -> None:
        """The training stopped (a non-finite loss, an error): record why (own run only)."""
        if self.own:
            self.store.fail_job(self.key, self.run_id, message)
            self.store.finish_run(self.run_id, status)


def after_training_records(model: Any, images_nhwc: np.ndarray, device: Any, result: Any,
                           model_name: str) -> list[TrainingRecord]:
    """Firing rates and energy on ``images_nhwc`` (none when empty) and how the training
    ended (``result``: a ``TrainResult``), as ``training`` rows."""
    from cortexalign.spiking._data import to_input
    from cortexalign.spiking.energy import measure_energy

    rows = [TrainingRecord(model_name, "result", "steps", float(result.steps), step=result.steps,
                           extra={"stop_reason": result.stop_reason,
                                  "last_checkpoint": str(result.last_checkpoint or ""),
                                  "first_loss": result.first_loss,
                                  "final_loss": result.final_loss})]
    if not len(images_nhwc):
        return rows
    was = model.training
    model.eval()
    try:
        x = to_input(torch.from_numpy(images_nhwc).to(device))
        report = measure_energy(model, x, n_samples=len(images_nhwc))  # any module (ANNs)
    finally:
        model.train(was)
    extra = {"n_images": int(len(images_nhwc)), "first_layer": report.first_layer,
             "convention": report.convention}
    rows += [TrainingRecord(model_name, "firing_rate", layer, float(rate), step=result.steps,
                            extra={"n_images": int(len(images_nhwc))})
             for layer, rate in report.firing_rates.items()]
    rows += [TrainingRecord(model_name, "energy", name, float(value), step=result.steps,
                            extra=extra)
             for name, value in (("energy_mj", report.energy_mj), ("macs", report.macs),
                                 ("sops", report.sops))]
    return rows
