"""The results database schema (DuckDB), its version, and the score record written into it.

Tables (times are UTC, ``TIMESTAMP`` without zone; JSON columns hold objects):

``schema_version`` (version, created)
    One row. A file written by another schema version is refused with both versions named.
``runs`` (run_id, config_hash, config_yaml, started, finished, status, cortexalign_version,
package_versions JSON, git_revision, hardware JSON)
    One row per ``cortexalign run``; status ``running`` -> ``finished`` | ``failed`` | ``interrupted``.
``jobs`` (job_key, run_id, status, error, started, finished)
    One row per attempt of a job in a run; status ``running`` -> ``finished`` | ``failed`` |
    ``duplicate`` (finished, but another run had already recorded it: its scores were not
    written). A job is done when any row with its key is ``finished``: reruns skip it.
``done_jobs`` (job_key PRIMARY KEY, run_id, finished) (since version 4)
    One row per finished job, written in the transaction that writes its scores: the primary key
    makes recording a job idempotent (a second recording of the same key writes nothing).
``scores`` (run_id, job_key, model, model_id, layer, target, metric, value, ci_low, ci_high,
ceiling_low, ceiling_high, p_value, n_stimuli, extra JSON, config_hash, created)
    Append-only. Rows of one job are written in the same transaction that marks it finished.
    Quantities not computed (no bootstrap, no ceiling) are NULL.
``model_cards`` (model_id, device, params, flops, latency_ms, peak_mem_mb, miou, extra JSON, created)
    Size and efficiency of a model on a device; the newest card per (model_id, device) is kept.
``partitions`` (since version 2)
    Variance partitioning and banded ridge results, one row per quantity (``_partitions``).
``second_order`` (since version 3)
    Alignment patterns and benchmark discriminability (``_second_order``).
``notes``, ``q_values``, ``comparisons`` (since version 5)
    What a run derives and stores for its report: citations and failures, FDR q-values, paired
    tests (``_derived``).
``training`` (since version 6)
    What a training run records: learning curves per epoch, firing rates and energy after
    training (``_training``; spiking transformers, ``spiking.train_snn``).

Versions: a file of an older version with a path in ``MIGRATIONS`` is brought up to date when a
writer opens it (additive steps only, in one transaction); read-only it is read as it is, with
the tables it lacks read as empty. A newer or unknown version is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from cortexalign.errors import InputError
from cortexalign.results._derived import DERIVED_DDL
from cortexalign.results._partitions import PARTITIONS_DDL, require_strings
from cortexalign.results._second_order import SECOND_ORDER_DDL
from cortexalign.results._training import TRAINING_DDL

__all__ = ["SCHEMA_VERSION", "DDL", "TABLES", "SCORE_COLUMNS", "ScoreRecord", "ModelCard", "MetricResult",
           "MIGRATIONS"]

#: Bump on any change to the tables below, with a ``MIGRATIONS`` step from the previous version
#: (older files without a path to this version are refused with a clear message).
SCHEMA_VERSION = 6

#: The primary key that makes recording a job idempotent (version 4); the migration keeps the
#: first finished attempt of each key of an older file.
DONE_JOBS_DDL = (
    """CREATE TABLE IF NOT EXISTS done_jobs (job_key VARCHAR PRIMARY KEY, run_id VARCHAR NOT NULL,
        finished TIMESTAMP NOT NULL)""",
)
_DONE_JOBS_MIGRATION = DONE_JOBS_DDL + (
    """INSERT INTO done_jobs SELECT job_key, arg_min(run_id, coalesce(finished, started)),
        min(coalesce(finished, started)) FROM jobs WHERE status = 'finished' GROUP BY job_key
        ON CONFLICT DO NOTHING""",
)

DDL = (
    """CREATE TABLE schema_version (version INTEGER NOT NULL, created TIMESTAMP NOT NULL)""",
    """CREATE TABLE runs (
        run_id VARCHAR PRIMARY KEY, config_hash VARCHAR NOT NULL, config_yaml VARCHAR,
        started TIMESTAMP NOT NULL, finished TIMESTAMP, status VARCHAR NOT NULL,
        cortexalign_version VARCHAR NOT NULL, package_versions JSON, git_revision VARCHAR,
        hardware JSON)""",
    """CREATE TABLE jobs (
        job_key VARCHAR NOT NULL, run_id VARCHAR NOT NULL, status VARCHAR NOT NULL,
        error VARCHAR, started TIMESTAMP NOT NULL, finished TIMESTAMP)""",
    """CREATE TABLE scores (
        run_id VARCHAR NOT NULL, job_key VARCHAR NOT NULL, model VARCHAR NOT NULL,
        model_id VARCHAR NOT NULL, layer VARCHAR NOT NULL, target VARCHAR NOT NULL,
        metric VARCHAR NOT NULL, value DOUBLE NOT NULL, ci_low DOUBLE, ci_high DOUBLE,
        ceiling_low DOUBLE, ceiling_high DOUBLE, p_value DOUBLE, n_stimuli INTEGER,
        extra JSON, config_hash VARCHAR, created TIMESTAMP NOT NULL)""",
    """CREATE TABLE model_cards (
        model_id VARCHAR NOT NULL, device VARCHAR NOT NULL, params BIGINT, flops DOUBLE,
        latency_ms DOUBLE, peak_mem_mb DOUBLE, miou DOUBLE, extra JSON,
        created TIMESTAMP NOT NULL, PRIMARY KEY (model_id, device))""",
    """CREATE INDEX scores_job ON scores (job_key)""",
    """CREATE INDEX jobs_key ON jobs (job_key)""",
    *PARTITIONS_DDL,
    *SECOND_ORDER_DDL,
    *DONE_JOBS_DDL,
    *DERIVED_DDL,
    *TRAINING_DDL,
)

#: version -> the statements that bring a file of that version to the next one (additive only:
#: an older cortexalign can no longer open the file, but nothing it wrote changes).
def _if_absent(ddl: tuple[str, ...]) -> tuple[str, ...]:
    """``CREATE TABLE IF NOT EXISTS``: a step must not fail on a table a file already has (a
    file of version 1 may hold a later table, e.g. one written by a newer version and
    downgraded)."""
    return tuple(s.replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", 1) for s in ddl)


MIGRATIONS: dict[int, tuple[str, ...]] = {1: _if_absent(PARTITIONS_DDL),
                                          2: _if_absent(SECOND_ORDER_DDL),
                                          3: _DONE_JOBS_MIGRATION,
                                          4: _if_absent(DERIVED_DDL),
                                          5: _if_absent(TRAINING_DDL)}

TABLES = ("schema_version", "runs", "jobs", "scores", "model_cards", "partitions", "second_order",
          "notes", "q_values", "comparisons", "training")
SCORE_COLUMNS = ("run_id", "job_key", "model", "model_id", "layer", "target", "metric", "value",
                 "ci_low", "ci_high", "ceiling_low", "ceiling_high", "p_value", "n_stimuli",
                 "extra", "config_hash", "created")


def _optional_float(name: str, x: Any) -> float | None:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        raise InputError(name, "a number or NaN/None", repr(x)[:60], f"pass a float {name}") from None
    if math.isnan(x):
        return None
    if math.isinf(x):
        raise InputError(name, "a finite number or NaN/None", repr(x), "drop the infinite value")
    return x


class MetricResult(Protocol):
    """What ``ScoreRecord.from_score`` reads from a metric's result (``metrics.Score`` has it):
    results stores rows and does not import the metrics."""

    value: float
    ci_low: float | None
    ci_high: float | None
    ceiling_low: float | None
    ceiling_high: float | None
    p_value: float | None
    n_stimuli: int
    extra: dict[str, Any]


@dataclass(frozen=True)
class ScoreRecord:
    """One row of the ``scores`` table before it is written (run, job and time added by the store).

    Attributes
    ----------
    model : the model's short name; model_id : its full registry id.
    layer, target, metric : what was compared (target e.g. ``allen/VISp/Cux2``).
    value : the score (finite). ci_low, ci_high, ceiling_low, ceiling_high, p_value : NaN or None
        when not computed (stored as NULL). n_stimuli : stimuli used. extra : JSON-able details.
    """

    model: str
    model_id: str
    layer: str
    target: str
    metric: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    ceiling_low: float | None = None
    ceiling_high: float | None = None
    p_value: float | None = None
    n_stimuli: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_score(cls, score: MetricResult, *, model: str, model_id: str, layer: str,
                   target: str, metric: str) -> ScoreRecord:
        """The record of a metric's result (a :class:`~cortexalign.metrics.Score`, or anything
        with its fields: see :class:`MetricResult`)."""
        return cls(model=model, model_id=model_id, layer=layer, target=target, metric=metric,
                   value=score.value, ci_low=score.ci_low, ci_high=score.ci_high,
                   ceiling_low=score.ceiling_low, ceiling_high=score.ceiling_high,
                   p_value=score.p_value, n_stimuli=score.n_stimuli, extra=dict(score.extra))

    def checked(self) -> tuple[Any, ...]:
        """Validated column values (model .. n_stimuli, extra as a dict); raise InputError."""
        require_strings(self, ("model", "model_id", "layer", "target", "metric"), "score")
        value = _optional_float("score.value", self.value)
        if value is None:
            raise InputError("score.value", "a finite number", repr(self.value),
                             f"the {self.metric} score of {self.model}/{self.layer} vs "
                             f"{self.target} is NaN: fix the inputs, or record the job as failed")
        n = self.n_stimuli
        if isinstance(n, bool) or not isinstance(n, int | float) or n < 0 or int(n) != n:
            raise InputError("score.n_stimuli", "a non-negative integer", repr(n), "pass an int")
        if self.p_value is not None and not (isinstance(self.p_value, float) and
                                             math.isnan(self.p_value)):
            if not 0.0 <= float(self.p_value) <= 1.0:
                raise InputError("score.p_value", "a probability in [0, 1]", repr(self.p_value),
                                 "pass the permutation p-value or NaN")
        opt = [_optional_float(f"score.{k}", getattr(self, k))
               for k in ("ci_low", "ci_high", "ceiling_low", "ceiling_high", "p_value")]
        return (self.model, self.model_id, self.layer, self.target, self.metric, value, *opt,
                int(n), self.extra)


@dataclass(frozen=True)
class ModelCard:
    """Size and efficiency of a model on one device (a row of ``model_cards``).

    Attributes
    ----------
    model_id : registry id. device : where latency/memory were measured (e.g. ``cuda:H100``).
    params : parameter count. flops : per image at the model's input size. latency_ms : per image.
    peak_mem_mb : peak accelerator (or host) memory. miou : segmentation accuracy when measured.
    extra : JSON-able details (batch size, resolution, prompt type...).
    """

    model_id: str
    device: str
    params: int | None = None
    flops: float | None = None
    latency_ms: float | None = None
    peak_mem_mb: float | None = None
    miou: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_profile(cls, profile: Any, miou: float | None = None) -> ModelCard:
        """The card of a model profile (``models.profile.profile_model``'s record: ``model_id``,
        ``device``, ``params``, ``flops``, ``latency_ms``, ``peak_mem_mb``, ``extra``), with the
        segmentation accuracy ``miou`` (a mean IoU in [0, 1]) when it was measured."""
        if miou is not None and not 0.0 <= float(miou) <= 1.0:
            raise InputError("miou", "a mean IoU in [0, 1]", repr(miou),
                             "pass SegmentationResult.miou")
        return cls(model_id=profile.model_id, device=profile.device, params=profile.params,
                   flops=profile.flops, latency_ms=profile.latency_ms,
                   peak_mem_mb=profile.peak_mem_mb, miou=None if miou is None else float(miou),
                   extra=dict(profile.extra))
