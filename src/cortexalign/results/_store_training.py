"""The store's reads and writes of the ``training`` table (schema and rows: ``_training``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pandas as pd

from cortexalign.errors import InputError
from cortexalign.results._rows import check_key, to_json
from cortexalign.results._training import TRAINING_COLUMNS, TRAINING_FILTERS, TrainingRecord

__all__ = ["TrainingTables", "training_row"]


def training_row(record: TrainingRecord, k: int) -> list:
    """The row of ``record`` (columns model .. extra), validated; ``k`` names it in errors."""
    if not isinstance(record, TrainingRecord):
        raise InputError(f"records[{k}]", "a TrainingRecord", type(record).__name__,
                         "build rows with cortexalign.results.TrainingRecord(...)")
    *cols, extra = record.checked()
    return [*cols, to_json(extra, f"records[{k}].extra")]


class TrainingTables:
    """The writes and reads of ``training``, a part of ``ResultsStore`` (which supplies
    ``_transaction``, ``_require_run``, ``_record_rows`` and ``_filtered_frame``)."""

    def add_training_rows(self, job_key: str, run_id: str,
                          records: Sequence[TrainingRecord]) -> int:
        """Append rows of a training in progress (``epoch`` points); a row with the same
        (job, kind, name, epoch) as a stored one replaces it, in one transaction. Returns the
        rows written."""
        check_key(job_key)
        rows = [training_row(r, k) for k, r in enumerate(records)]
        now = datetime.now(UTC).replace(tzinfo=None)
        with self._transaction() as con:
            config_hash = self._require_run(con, run_id)
            for _model, kind, name, epoch, *_ in rows:
                con.execute("DELETE FROM training WHERE job_key = ? AND kind = ? AND name = ? "
                            "AND epoch IS NOT DISTINCT FROM ?", [job_key, kind, name, epoch])
            if rows:
                con.executemany(
                    f"INSERT INTO training ({', '.join(TRAINING_COLUMNS)}) VALUES "
                    f"({', '.join('?' * len(TRAINING_COLUMNS))})",
                    [[run_id, job_key, *row, config_hash, now] for row in rows])
        return len(rows)

    def record_training_job(self, job_key: str, run_id: str,
                            records: Sequence[TrainingRecord], *, replace: bool = False) -> int:
        """Append a finished training's last rows (firing rates, energy, result) and mark its
        job finished, in one transaction (as ``record_job``; ``replace``: a training rerun
        from scratch replaces the job's earlier last rows). Returns the rows written."""
        check_key(job_key)
        rows = [training_row(r, k) for k, r in enumerate(records)]
        if replace:  # the epoch rows stay: add_training_rows already replaced them
            with self._transaction() as con:
                con.execute("DELETE FROM training WHERE job_key = ? AND kind <> 'epoch'",
                            [job_key])
                con.execute("DELETE FROM done_jobs WHERE job_key = ?", [job_key])
        return self._record_rows("training", TRAINING_COLUMNS, job_key, run_id, rows)

    def training_frame(self, **filters: str | Sequence[str] | None) -> pd.DataFrame:
        """Training rows in write order, filtered by ``run_id``, ``job_key``, ``model``,
        ``kind``, ``name`` or ``config_hash`` (each one value or a list); ``extra`` is JSON
        text. An older file without the table reads as an empty frame."""
        return self._filtered_frame("training", TRAINING_COLUMNS, TRAINING_FILTERS, filters)
