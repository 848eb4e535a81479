"""How Python values become rows of the results database: records checked and flattened into
column lists (JSON for the nested parts, NULL for NaN), and keyword filters into SQL."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cortexalign.errors import InputError
from cortexalign.results._partitions import PartitionRecord
from cortexalign.results._schema import TABLES, ScoreRecord

__all__ = ["to_json", "nullable", "check_key", "check_table", "where_sql", "partition_row",
           "score_row"]


def to_json(obj: Any, name: str) -> str:
    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"{type(o).__name__} is not JSON-serialisable")

    try:
        return json.dumps(obj, default=default, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InputError(name, "JSON-serialisable values without NaN/Inf", str(exc),
                         "convert arrays to lists, NaN to None, objects to strings") from None


def nullable(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def check_key(job_key: str) -> None:
    if not isinstance(job_key, str) or not job_key:
        raise InputError("job_key", "a non-empty string", repr(job_key), "pass the job's key")


def check_table(table: str) -> None:
    if table not in TABLES:
        raise InputError("table", f"one of {TABLES}", repr(table), "pick one of those tables")


def where_sql(filters: dict[str, Any], allowed: Sequence[str]) -> tuple[str, list[Any]]:
    """`` WHERE col IN (...) AND ...`` and its arguments; unknown columns raise InputError."""
    where, args = [], []
    for name, want in filters.items():
        if name not in allowed:
            raise InputError(f"filter {name!r}", f"one of {tuple(allowed)}", repr(name),
                             "filter by one of those columns")
        if want is None:
            continue
        vals = [want] if isinstance(want, str) else list(want)
        where.append(f"{name} IN ({', '.join('?' * len(vals))})" if vals else "FALSE")
        args += vals
    return (" WHERE " + " AND ".join(where) if where else ""), args


def partition_row(record: PartitionRecord, k: int) -> list[Any]:
    if not isinstance(record, PartitionRecord):
        raise InputError(f"records[{k}]", "a PartitionRecord", type(record).__name__,
                         "build the rows with cortexalign.results.PartitionRecord(...)")
    *cols, ids, values, extra = record.checked()
    return [*cols, to_json(ids, f"records[{k}].neuroid_ids"),
            to_json(values, f"records[{k}].neuroid_values"), to_json(extra, f"records[{k}].extra")]


def score_row(record: ScoreRecord, k: int) -> list[Any]:
    if not isinstance(record, ScoreRecord):
        raise InputError(f"scores[{k}]", "a ScoreRecord", type(record).__name__,
                         "wrap metric results with ScoreRecord.from_score(score, model=..., ...)")
    *cols, extra = record.checked()
    return [*cols, to_json(extra, f"scores[{k}].extra")]
