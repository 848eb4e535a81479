"""The ``training`` table: what a training run of a model records (spiking transformers today).

``training`` (run_id, job_key, model, kind, name, epoch, step, value, extra JSON, config_hash,
created)
    One row per quantity. ``kind`` says which:

    - ``epoch``: a point of the learning curves, one per (epoch, ``name``): ``train_loss``,
      ``train_acc``, ``test_acc``, ``seconds``, ``seconds_per_step``; ``step`` is the
      optimizer step the epoch ended at. Written as each epoch ends
      (``ResultsStore.add_training_rows``, ``results._store_training``): a resumed training that repeats an epoch replaces
      its rows.
    - ``firing_rate``: the mean spikes per neuron per time step of one spiking layer (``name``)
      on the test images, after training.
    - ``energy``: the per-image estimate after training, ``name`` ``energy_mj``, ``macs``,
      ``sops`` (``extra``: the convention, the images measured).
    - ``result``: how the training ended: ``name`` ``steps`` (value: the optimizer steps),
      ``extra`` the stop reason and the last checkpoint.
    - ``heldout``: a study's test of the trained model on held-out images (``name``
      ``accuracy``; ``extra``: correct / n, chance, the binomial p-value, the training's job).
    - ``time_step_mi``: the mutual information between time steps' representations (``name``
      ``adjacent``, the mean over adjacent steps, in nats; ``extra``: the (T, T) matrix, the
      estimator, the layer).

    The rows after training are written in the transaction that marks the training's job
    finished (``ResultsStore.record_training_job``), so a rerun of a finished training finds it
    done.

The table arrived with schema version 6; an older file gains it when a writer opens it
(``_schema.MIGRATIONS``) and reads as an empty table until then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from cortexalign.errors import InputError
from cortexalign.results._partitions import require_strings

__all__ = ["TRAINING_DDL", "TRAINING_COLUMNS", "TRAINING_FILTERS", "TRAINING_KINDS",
           "TrainingRecord"]

TRAINING_DDL = (
    """CREATE TABLE training (
        run_id VARCHAR NOT NULL, job_key VARCHAR NOT NULL, model VARCHAR NOT NULL,
        kind VARCHAR NOT NULL, name VARCHAR NOT NULL, epoch INTEGER, step BIGINT,
        value DOUBLE, extra JSON, config_hash VARCHAR, created TIMESTAMP NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS training_job ON training (job_key)""",
)
TRAINING_COLUMNS = ("run_id", "job_key", "model", "kind", "name", "epoch", "step", "value",
                    "extra", "config_hash", "created")
TRAINING_FILTERS = ("run_id", "job_key", "model", "kind", "name", "config_hash")
TRAINING_KINDS = ("epoch", "firing_rate", "energy", "result", "heldout", "time_step_mi")


def _optional_int(name: str, x: Any) -> int | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, int) or x < 0:
        raise InputError(name, "a non-negative integer or None", repr(x), f"pass an int {name}")
    return int(x)


@dataclass(frozen=True)
class TrainingRecord:
    """One row of ``training`` before it is written (run, job and time added by the store).

    Attributes
    ----------
    model : the trained model's name. kind : one of ``TRAINING_KINDS``. name : the quantity.
    value : its value (NaN/None stored as NULL; infinite refused). epoch : 1-based epoch of an
    ``epoch`` row. step : the optimizer step. extra : JSON-able details.
    """

    model: str
    kind: str
    name: str
    value: float | None
    epoch: int | None = None
    step: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def checked(self) -> tuple[Any, ...]:
        """Validated column values model .. value, extra; or ``InputError``."""
        require_strings(self, ("model", "kind", "name"), "training")
        if self.kind not in TRAINING_KINDS:
            raise InputError("training.kind", f"one of {TRAINING_KINDS}", repr(self.kind),
                             "pick one of those kinds")
        value = None if self.value is None else float(self.value)
        if value is not None and math.isnan(value):
            value = None
        if value is not None and math.isinf(value):
            raise InputError("training.value", "a finite number or NaN/None", repr(self.value),
                             f"check {self.name} of {self.model}")
        return (self.model, self.kind, self.name, _optional_int("training.epoch", self.epoch),
                _optional_int("training.step", self.step), value, self.extra)
