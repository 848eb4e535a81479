"""What a run derives from its scores and stores beside them, so that a report reads the store
and nothing else.

``notes`` (run_id, kind, subject, text, created)
    Append-only. ``kind`` is ``citation`` (subject: what is cited, e.g. ``measure: rsa``; text:
    the reference) or ``failure`` (subject: a model that did not load, or another unit of work
    outside the ``jobs`` table; text: the error).
``q_values`` (model, layer, target, metric, q_value, family, run_id)
    The false-discovery-rate adjusted p-value of every stored score with a p-value, over its
    family (``family`` says which: all scores of the metric). Rewritten whole by each run, as
    the family grows with every run.
``comparisons`` (model_a, model_b, target, metric, difference, p_value, q_value, method, run_id)
    Paired tests between models at their best layers. Rewritten whole by each run.

``best_rows`` picks each (model, target, metric)'s best layer from a scores frame: the rows
the comparisons and the report's summary table are about.

The tables arrived with schema version 5; an older file gains them when a writer opens it
(``_schema.MIGRATIONS``) and reads them as empty tables until then.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

import pandas as pd

from cortexalign.errors import InputError

__all__ = ["DERIVED_DDL", "DERIVED_COLUMNS", "NOTE_KINDS", "DerivedTables", "best_rows"]

DERIVED_DDL = (
    """CREATE TABLE notes (
        run_id VARCHAR NOT NULL, kind VARCHAR NOT NULL, subject VARCHAR NOT NULL,
        text VARCHAR NOT NULL, created TIMESTAMP NOT NULL)""",
    """CREATE TABLE q_values (
        model VARCHAR NOT NULL, layer VARCHAR NOT NULL, target VARCHAR NOT NULL,
        metric VARCHAR NOT NULL, q_value DOUBLE, family VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL)""",
    """CREATE TABLE comparisons (
        model_a VARCHAR NOT NULL, model_b VARCHAR NOT NULL, target VARCHAR NOT NULL,
        metric VARCHAR NOT NULL, difference DOUBLE, p_value DOUBLE, q_value DOUBLE,
        method VARCHAR NOT NULL, run_id VARCHAR NOT NULL)""",
)

#: table -> its columns, in order.
DERIVED_COLUMNS = {
    "notes": ("run_id", "kind", "subject", "text", "created"),
    "q_values": ("model", "layer", "target", "metric", "q_value", "family", "run_id"),
    "comparisons": ("model_a", "model_b", "target", "metric", "difference", "p_value",
                    "q_value", "method", "run_id"),
}

NOTE_KINDS = ("citation", "failure", "execution")
"""What a note can be: a reference the run relies on, a failure outside the jobs table, or how
the run executed where it matters for its cost (a batch size halved on out-of-memory)."""


def best_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The row of each (model, target, metric) of a scores frame with the highest value (NaN
    values skipped), groups in order of appearance: the best layers that the report's summary
    table and the stored paired comparisons are about."""
    idx = []
    for _, grp in frame.groupby(["model", "target", "metric"], sort=False):
        values = grp["value"].dropna()
        if len(values):
            idx.append(values.idxmax())
    return frame.loc[idx]


def _null(v):
    """NaN as NULL; everything else as it is."""
    return None if isinstance(v, float) and math.isnan(v) else v


class DerivedTables:
    """The writes of the derived tables, a part of ``ResultsStore`` (which supplies
    ``_transaction`` and ``_require_run``)."""

    def add_notes(self, run_id: str, kind: str, items: Sequence[tuple[str, str]]) -> None:
        """Append ``(subject, text)`` notes of ``kind`` (``NOTE_KINDS``) to run ``run_id``."""
        if kind not in NOTE_KINDS:
            raise InputError("kind", f"one of {NOTE_KINDS}", repr(kind), "pick one of those kinds")
        now = datetime.now(UTC).replace(tzinfo=None)
        rows = [(run_id, kind, str(s), str(t), now) for s, t in items]
        if not rows:
            return
        with self._transaction() as con:
            self._require_run(con, run_id)
            con.executemany("INSERT INTO notes VALUES (?, ?, ?, ?, ?)", rows)

    def replace_statistics(self, run_id: str, q_values: pd.DataFrame,
                           comparisons: pd.DataFrame) -> None:
        """Replace the ``q_values`` and ``comparisons`` tables (one transaction) with the frames'
        rows (their columns as ``results._derived.DERIVED_COLUMNS``, ``run_id`` set here)."""
        with self._transaction() as con:
            self._require_run(con, run_id)
            for table, frame in (("q_values", q_values), ("comparisons", comparisons)):
                cols = DERIVED_COLUMNS[table]
                con.execute(f"DELETE FROM {table}")
                rows = [tuple(_null(v) for v in r) + (run_id,)
                        for r in frame[list(cols[:-1])].itertuples(index=False)]
                if rows:
                    con.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(cols))})",
                                    rows)
