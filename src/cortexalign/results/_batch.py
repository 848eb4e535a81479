"""``BatchedWrites``: one connection for a whole run, job writes committed in batches.

Why. Opening the DuckDB file costs ~70-90 ms and every commit syncs the write-ahead log
(~10 ms), so a run that opens, writes and commits once per job spends that on each of its jobs:
hours of bookkeeping for a zoo-scale grid of 10^5 jobs. A run instead holds one connection
for its whole life (later connections of the same process to the same file then open in
microseconds) and queues the job writes (``start_job``, ``record_job``,
``record_partition_job``, ``fail_job``), committing them together in one transaction.

When a batch is committed: when ``max_jobs`` jobs are queued, when ``max_delay_s`` passed since
the last commit, before any other store call (a read sees every queued write), on ``flush`` and
on ``close``. When jobs are slow (the last one took ``max_delay_s`` or more) every write is
committed at once, as without batching, so a long job's ``running`` mark is visible to
``cortexalign status`` while it runs.

Crash guarantee. A job is *reported* finished (progress bar, ``on_job_done`` hook, the run's
summary) only through :meth:`BatchedWrites.when_committed`, which calls back once every write
queued so far is committed. A SIGKILL therefore loses only jobs that were never reported: the
queued batch (one transaction: all of it or none of it), which a rerun computes again. Each
job's writes keep their single-transaction semantics and idempotency (``done_jobs``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cortexalign.results._partitions import PARTITION_COLUMNS, PartitionRecord
from cortexalign.results._rows import check_key, partition_row, score_row
from cortexalign.results._schema import SCORE_COLUMNS, ScoreRecord

if TYPE_CHECKING:
    from cortexalign.results._store import ResultsStore

__all__ = ["BatchedWrites", "BATCHED_WRITES"]

#: Store methods ``BatchedWrites`` queues; every other attribute is the store's, after a flush.
BATCHED_WRITES = ("start_job", "record_job", "record_partition_job", "fail_job")
JOB_COLUMNS = ("job_key", "run_id", "status", "error", "started", "finished")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class BatchedWrites:
    """A ``ResultsStore`` stand-in for one writing process: queued job writes, one connection.

    Parameters
    ----------
    store : the ``ResultsStore`` (opened for writing).
    max_jobs : commit when this many job writes are queued.
    max_delay_s : commit when the oldest queued write is this old (checked at each write), and
        write through at once while jobs take this long or longer.

    Notes
    -----
    Every other method (``finish_run``, ``scores_frame``, ``has_job``...) is the store's own,
    called after the queued writes are committed.
    """

    def __init__(self, store: ResultsStore, *, max_jobs: int = 1000, max_delay_s: float = 1.0):
        self.store = store
        self.max_jobs = int(max_jobs)
        self.max_delay_s = float(max_delay_s)
        self._stack = contextlib.ExitStack()
        self._con: Any = self._stack.enter_context(store._connect(write=True))
        self._ops: list[tuple] = []
        self._started: dict[tuple[str, str], datetime] = {}  # queued, not yet on disk
        self._job_t0: dict[tuple[str, str], float] = {}
        self._callbacks: list[Callable[[], None]] = []
        self._hashes: dict[str, str] = {}
        self._last_commit = time.monotonic()
        self._slow = False
        self.n_commits = 0

    def __repr__(self) -> str:
        return f"BatchedWrites({self.store!r}, queued={len(self._ops)})"

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.flush()
            return attr(*args, **kwargs)

        return call

    # -- queued writes (same signatures and validation as ResultsStore's) -------------------
    def start_job(self, job_key: str, run_id: str) -> None:
        """Queue the ``running`` mark of an attempt (written at once while jobs are slow)."""
        check_key(job_key)
        self._job_t0[(job_key, run_id)] = time.monotonic()
        if self._slow:
            self.flush()
            self.store.start_job(job_key, run_id)  # on the held connection's instance: cheap
            return
        self._started[(job_key, run_id)] = _now()
        self._queued()

    def record_job(self, job_key: str, run_id: str, scores: Sequence[ScoreRecord], *,
                   replace: bool = False) -> int:
        """Queue a finished job's scores (validated now); returns the rows queued (a job
        another run already recorded writes none when the batch is committed)."""
        check_key(job_key)
        rows = [score_row(r, k) for k, r in enumerate(scores)]
        return self._queue_rows("scores", SCORE_COLUMNS, job_key, run_id, rows, replace)

    def record_partition_job(self, job_key: str, run_id: str,
                             records: Sequence[PartitionRecord]) -> int:
        """Queue a finished partition job's rows (as ``record_job``)."""
        check_key(job_key)
        rows = [partition_row(r, k) for k, r in enumerate(records)]
        return self._queue_rows("partitions", PARTITION_COLUMNS, job_key, run_id, rows, False)

    def fail_job(self, job_key: str, run_id: str, error: str) -> None:
        """Queue the failure of an attempt."""
        check_key(job_key)
        self._ops.append(("fail", job_key, run_id, str(error), _now()))
        self._queued()

    def _queue_rows(self, table: str, columns: Sequence[str], job_key: str, run_id: str,
                    rows: list[list], replace: bool) -> int:
        t0 = self._job_t0.pop((job_key, run_id), None)
        self._slow = t0 is not None and time.monotonic() - t0 >= self.max_delay_s
        self._ops.append(("rows", table, columns, job_key, run_id, rows, replace, _now()))
        self._queued()
        return len(rows)

    def _queued(self) -> None:
        if self._slow or len(self._ops) >= self.max_jobs or \
                time.monotonic() - self._last_commit >= self.max_delay_s:
            self.flush()

    # -- commits ----------------------------------------------------------------------------
    def when_committed(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once every write queued so far is committed (now, if none is
        queued). Report a job finished only through this."""
        if self._ops or self._started:
            self._callbacks.append(callback)
        else:
            callback()

    def flush(self) -> int:
        """Commit every queued write in one transaction, then run the waiting callbacks;
        returns the writes committed."""
        ops, started = self._ops, self._started
        if ops or started:
            self._commit(ops, started)
            self.n_commits += 1
        self._ops, self._started = [], {}
        self._last_commit = time.monotonic()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()
        return len(ops)

    def _commit(self, ops: list[tuple], started: dict[tuple[str, str], datetime]) -> None:
        con = self._con
        if con is None:
            raise RuntimeError("BatchedWrites.close() was called: write through the store")
        con.begin()
        try:
            self._apply(con, ops, dict(started))
        except BaseException:
            con.rollback()
            raise
        con.commit()

    def _apply(self, con: Any, ops: list[tuple], started: dict[tuple[str, str], datetime]
               ) -> None:
        """Every queued write, in order, inside the caller's transaction. An attempt started
        and closed in this batch gets one closed ``jobs`` row; one still running its mark."""
        store = type(self.store)
        keys = [op[3] for op in ops if op[0] == "rows"]
        if len(keys) == len(ops) == len(set(keys)) and not any(op[6] for op in ops):
            self._apply_finished(con, ops, started)
            return
        for op in ops:
            if op[0] == "rows":
                _, table, columns, key, run_id, rows, replace, now = op
                store._write_rows(con, table, columns, key, run_id, rows, replace,
                                  self._config_hash(con, run_id), now,
                                  started.pop((key, run_id), None))
            else:
                _, key, run_id, error, now = op
                self._config_hash(con, run_id)
                store._finish_job(con, key, run_id, "failed", error, now,
                                  started.pop((key, run_id), None))
        self._mark_running(con, started)

    def _mark_running(self, con: Any, started: dict[tuple[str, str], datetime]) -> None:
        for run_id in {run_id for _, run_id in started}:
            self._config_hash(con, run_id)
        type(self.store)._insert_rows(con, "jobs", JOB_COLUMNS, [
            [key, run_id, "running", None, t, None] for (key, run_id), t in started.items()])

    def _apply_finished(self, con: Any, ops: list[tuple],
                        started: dict[tuple[str, str], datetime]) -> None:
        """``_apply`` of a batch of finished jobs only (distinct keys, no ``replace``: the usual
        one), set-wise: each table gets a few multi-row statements, not a few per job. The
        same rows as ``_write_rows`` job by job."""
        store = type(self.store)
        for run_id in {op[4] for op in ops}:
            self._config_hash(con, run_id)
        new: set[str] = set()
        for start in range(0, len(ops), 256):
            part = ops[start:start + 256]
            new |= {r[0] for r in con.execute(
                "INSERT INTO done_jobs VALUES " + ", ".join(["(?, ?, ?)"] * len(part))
                + " ON CONFLICT DO NOTHING RETURNING job_key",
                [v for op in part for v in (op[3], op[4], op[7])]).fetchall()}
        closed = []
        for _, table, columns, key, run_id, rows, _, now in ops:
            if key not in new:  # recorded by another run meanwhile: job by job, as a duplicate
                store._write_rows(con, table, columns, key, run_id, rows, False,
                                  self._hashes[run_id], now, started.pop((key, run_id), None))
            elif (key, run_id) in started:
                closed.append([key, run_id, "finished", None, started.pop((key, run_id)), now])
            else:  # its running mark is on disk
                store._finish_job(con, key, run_id, "finished", None, now, None)
        for table in dict.fromkeys(op[1] for op in ops):
            batch = [op for op in ops if op[1] == table and op[3] in new]
            if batch:
                store._insert_rows(con, table, batch[0][2], [
                    [run_id, key, *row, self._hashes[run_id], now]
                    for _, _, _, key, run_id, rows, _, now in batch for row in rows])
        store._insert_rows(con, "jobs", JOB_COLUMNS, closed)
        self._mark_running(con, started)

    def _config_hash(self, con: Any, run_id: str) -> str:
        if run_id not in self._hashes:  # a run's hash never changes: looked up once
            self._hashes[run_id] = self.store._require_run(con, run_id)
        return self._hashes[run_id]

    # -- life -------------------------------------------------------------------------------
    def close(self) -> None:
        """Commit what is queued and close the connection (idempotent). Later store calls go
        to the store itself (each opens the file); queued writes are refused."""
        try:
            self.flush()
        finally:
            self._con = None
            self._stack.close()

    def __enter__(self) -> BatchedWrites:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
