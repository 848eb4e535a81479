"""The ``partitions`` table: results of multi-set encoding analyses (variance partitioning,
banded ridge) that a run computes from several feature sets at once.

``partitions`` (run_id, job_key, partition, method, target, kind, name, value, n_neuroids,
n_stimuli, neuroid_ids JSON, neuroid_values JSON, extra JSON, config_hash, created)
    Append-only, one row per (job, target group, quantity). ``kind`` and ``name`` say which
    quantity: for ``variance_partitioning`` kind ``r2`` (name: a union of sets, ``A+B``) and
    ``component`` (``unique:A``, ``shared:A&B``); for ``banded_ridge`` kind ``r2`` and ``r``
    (name: all spaces, ``A+B``), ``component`` (``split:A``, per-space share of R^2) and
    ``intercept`` (the part of R^2 left to the fold intercepts). ``value`` is the median over
    neuroids (NULL when every neuroid is NaN); ``neuroid_values`` the per-neuroid values in the
    order of ``neuroid_ids`` (JSON lists, NaN stored as null). Rows of one job are written in the
    transaction that marks it finished (``ResultsStore.record_partition_job``).

The table arrived with schema version 2; a version-1 file gains it when a writer opens it
(``_schema.MIGRATIONS``) and reads as an empty table until then.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cortexalign.errors import InputError

__all__ = ["PARTITIONS_DDL", "PARTITION_COLUMNS", "PARTITION_FILTERS", "PartitionRecord", "require_strings"]

PARTITIONS_DDL = (
    """CREATE TABLE partitions (
        run_id VARCHAR NOT NULL, job_key VARCHAR NOT NULL, partition VARCHAR NOT NULL,
        method VARCHAR NOT NULL, target VARCHAR NOT NULL, kind VARCHAR NOT NULL,
        name VARCHAR NOT NULL, value DOUBLE, n_neuroids INTEGER NOT NULL, n_stimuli INTEGER,
        neuroid_ids JSON, neuroid_values JSON, extra JSON, config_hash VARCHAR,
        created TIMESTAMP NOT NULL)""",
    """CREATE INDEX partitions_job ON partitions (job_key)""",
)

PARTITION_COLUMNS = ("run_id", "job_key", "partition", "method", "target", "kind", "name",
                     "value", "n_neuroids", "n_stimuli", "neuroid_ids", "neuroid_values",
                     "extra", "config_hash", "created")
PARTITION_FILTERS = ("run_id", "job_key", "partition", "method", "target", "kind", "name",
                     "config_hash")


def require_strings(record: Any, names: Sequence[str], kind: str) -> None:
    """``InputError`` naming ``<kind>.<name>`` unless each field is a non-empty string (the
    checks of score and partition records before a row is written)."""
    for name in names:
        v = getattr(record, name)
        if not isinstance(v, str) or not v:
            raise InputError(f"{kind}.{name}", "a non-empty string", repr(v)[:60],
                             f"set {name} on every {kind} record")


@dataclass(frozen=True, eq=False)
class PartitionRecord:
    """One row of ``partitions`` before it is written (run, job and time added by the store).

    Attributes
    ----------
    partition : the config's partition name. method : ``variance_partitioning`` or
        ``banded_ridge``. target : the target (group) label, as in ``scores``.
    kind, name : which quantity (see the module docstring).
    values_n : (n,) per-neuroid values (NaN allowed). neuroid_ids : n ids, same order.
    n_stimuli : stimuli used. extra : JSON-able details (sets, options, group).
    """

    partition: str
    method: str
    target: str
    kind: str
    name: str
    values_n: np.ndarray
    neuroid_ids: Sequence[str]
    n_stimuli: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float | None:
        """Median over the finite neuroids (None when there are none)."""
        v = np.asarray(self.values_n, dtype=np.float64)
        v = v[np.isfinite(v)]
        return float(np.median(v)) if len(v) else None

    def checked(self) -> tuple[Any, ...]:
        """Validated column values partition .. neuroid_values (lists), extra; or InputError."""
        require_strings(self, ("partition", "method", "target", "kind", "name"), "partition")
        v = np.asarray(self.values_n, dtype=np.float64)
        if v.ndim != 1 or len(v) != len(self.neuroid_ids):
            raise InputError("partition.values_n", f"(n,) values, one per neuroid id "
                             f"({len(self.neuroid_ids)})", f"shape {v.shape}",
                             "pass the per-neuroid values in the order of neuroid_ids")
        if np.isinf(v).any():
            raise InputError("partition.values_n", "finite values or NaN", "infinite values",
                             f"check the {self.method} inputs of {self.target}")
        n = self.n_stimuli
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise InputError("partition.n_stimuli", "a non-negative integer", repr(n),
                             "pass an int")
        values = [None if math.isnan(x) else float(x) for x in v.tolist()]
        return (self.partition, self.method, self.target, self.kind, self.name, self.median,
                len(v), int(n), [str(i) for i in self.neuroid_ids], values, self.extra)
