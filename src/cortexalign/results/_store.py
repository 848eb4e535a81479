"""``ResultsStore``: the DuckDB file that holds runs, jobs, scores and model cards.

Concurrency. DuckDB lets one process open a file for writing, and while it does no other process
can open the file at all, not even read-only. The store therefore holds no connection between
calls: every method opens the file, does its work (a write is one transaction) and closes it, so
the lock is held for milliseconds. Another process that finds the file locked retries until
``lock_timeout_s`` and then fails with a clear error. Readers (reports, notebooks) should pass
``read_only=True``: they never create or modify the file and work whenever no write is in flight.
Within one process, use one store object per file (DuckDB refuses two connections to the same
file with different settings).

A run is the exception: it holds one connection for its whole life and commits its job writes
in batches (``ResultsStore.batched``, ``results._batch``), because opening the file (~70-90 ms)
and a synced commit (~10 ms) per job would dominate a grid of 10^5 small jobs. The output
directory's run lock (``bench._lock``) already keeps every other writer out meanwhile.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from cortexalign import __version__
from cortexalign.errors import InputError, NotAStoreError, StoreLockedError, StoreVersionError
from cortexalign.results._batch import BatchedWrites
from cortexalign.results._damage import check_header, classify
from cortexalign.results._derived import DerivedTables
from cortexalign.results._export import EXPORT_FORMATS
from cortexalign.results._manifest import git_revision, hardware, package_versions
from cortexalign.results._partitions import PARTITION_COLUMNS, PartitionRecord
from cortexalign.results._rows import (
    check_key,
    nullable,
    partition_row,
    score_row,
    to_json,
)
from cortexalign.results._schema import (
    DDL,
    MIGRATIONS,
    SCHEMA_VERSION,
    SCORE_COLUMNS,
    ModelCard,
    ScoreRecord,
)
from cortexalign.results._second_order import (
    SECOND_ORDER_COLUMNS,
    SecondOrderRecord,
)
from cortexalign.results._store_reads import StoreReads
from cortexalign.results._store_training import TrainingTables

__all__ = ["ResultsStore", "RUN_STATUSES", "EXPORT_FORMATS"]

RUN_STATUSES = ("running", "finished", "failed", "interrupted")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class ResultsStore(StoreReads, DerivedTables, TrainingTables):
    """Append-only results of cortexalign runs in one DuckDB file (schema in ``_schema``).

    Parameters
    ----------
    path : the ``.duckdb`` file; created with the current schema when absent (unless read-only).
    read_only : open for reading only; the file must exist. Use this in reports and notebooks.
    lock_timeout_s : how long to wait for another process's write to finish.

    Examples
    --------
    >>> store = ResultsStore("results.duckdb")                                # doctest: +SKIP
    >>> run = store.start_run(config_yaml)                                    # doctest: +SKIP
    >>> if not store.has_job(key):                                            # doctest: +SKIP
    ...     store.record_job(key, run, [ScoreRecord.from_score(s, ...)])
    >>> store.finish_run(run)                                                 # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str], read_only: bool = False,
                 lock_timeout_s: float = 30.0):
        self.path = Path(path)
        self.read_only = bool(read_only)
        self.lock_timeout_s = float(lock_timeout_s)
        if self.path.is_dir():
            raise InputError("path", "a .duckdb file", f"the directory {str(path)!r}",
                             "pass a file path such as 'results/results.duckdb'")
        if not self.path.exists():
            if self.read_only:
                raise InputError("path", "an existing results database", f"{str(path)!r} (absent)",
                                 "run an experiment first, or check the path")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._create()
        self._check_version()

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.path)!r}{', read_only=True' if self.read_only else ''})"

    # -- connections ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _connect(self, write: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the file; a lock held elsewhere is waited on up to ``lock_timeout_s``
        (``StoreLockedError`` after), any damage raised at once as its own ``StoreError``
        (``results._damage``), also when a query reads a damaged block."""
        if write and self.read_only:
            raise InputError("read_only", "a store opened for writing", "read_only=True",
                             "open ResultsStore(path) without read_only in the writing process")
        if self.path.exists():  # absent: the writer's first connection creates it
            check_header(self.path)
        deadline = time.monotonic() + self.lock_timeout_s
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=self.read_only)
                break
            except duckdb.Error as exc:
                err = classify(exc, self.path)
                if err is None:
                    raise
                if not isinstance(err, StoreLockedError):
                    raise err from None
                if time.monotonic() > deadline:
                    raise StoreLockedError(self.path, f"{err.problem}, for {self.lock_timeout_s:g}"
                                           " s", f"{err.fix}; or raise lock_timeout_s. DuckDB "
                                           "allows one writer process") from None
                time.sleep(0.05)
        try:
            yield con
        except duckdb.Error as exc:
            err = classify(exc, self.path)
            if err is None:
                raise
            raise err from None
        finally:
            con.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction: everything inside commits together or not at all."""
        with self._connect(write=True) as con:
            con.begin()
            try:
                yield con
            except BaseException:
                con.rollback()
                raise
            con.commit()

    def _create(self) -> None:
        with self._transaction() as con:
            for stmt in DDL:
                con.execute(stmt)
            con.execute("INSERT INTO schema_version VALUES (?, ?)", [SCHEMA_VERSION, _now()])

    def _check_version(self) -> None:
        try:
            with self._connect() as con:
                rows = con.execute("SELECT version FROM schema_version").fetchall()
        except duckdb.CatalogException:
            rows = None
        if not rows:
            raise NotAStoreError(self.path, "a DuckDB file without a schema_version table (not "
                                 "written by cortexalign)", "point at the results.duckdb a run "
                                 "wrote, or a new path")
        found = rows[0][0]
        if found != SCHEMA_VERSION and not self._migrate(found):
            raise StoreVersionError(self.path, f"schema version {found}; this cortexalign "
                                    f"{__version__} reads schema version {SCHEMA_VERSION}",
                                    f"export the old results with the cortexalign version that "
                                    f"wrote them (schema {found}) and start a new results file, "
                                    f"or move {self.path.name} aside; this version cannot read "
                                    f"schema {found}")

    def _migrate(self, found: int) -> bool:
        """Bring a file of an older version with a ``MIGRATIONS`` path up to ``SCHEMA_VERSION``
        (a writer; one transaction), or accept it as it is (a reader: missing tables read as
        empty). False when there is no path (the caller refuses the file)."""
        version = found
        while isinstance(version, int) and version < SCHEMA_VERSION and version in MIGRATIONS:
            version += 1
        if version != SCHEMA_VERSION:
            return False
        if self.read_only:
            return True
        with self._transaction() as con:  # re-read: another writer may have migrated it
            now = con.execute("SELECT version FROM schema_version").fetchone()[0]
            for step in range(now, SCHEMA_VERSION):
                for stmt in MIGRATIONS[step]:
                    con.execute(stmt)
            con.execute("UPDATE schema_version SET version = ?", [SCHEMA_VERSION])
        return True

    # -- runs -----------------------------------------------------------------------------------
    def start_run(self, config_yaml: str, config_hash: str | None = None,
                  run_id: str | None = None) -> str:
        """Record a new run (status ``running``) with its manifest; return its run id."""
        if not isinstance(config_yaml, str):
            raise InputError("config_yaml", "the experiment config as YAML text",
                             type(config_yaml).__name__, "pass the text of the config file")
        config_hash = config_hash or hashlib.sha256(config_yaml.encode()).hexdigest()
        run_id = run_id or f"{_now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        with self._transaction() as con:
            if con.execute("SELECT 1 FROM runs WHERE run_id = ?", [run_id]).fetchone():
                raise InputError("run_id", "a new run id", f"{run_id!r} (already recorded)",
                                 "leave run_id unset to get a fresh one")
            con.execute("INSERT INTO runs VALUES (?, ?, ?, ?, NULL, 'running', ?, ?, ?, ?)",
                        [run_id, config_hash, config_yaml, _now(), __version__,
                         to_json(package_versions(), "package_versions"), git_revision(),
                         to_json(hardware(), "hardware")])
        return run_id

    def finish_run(self, run_id: str, status: str = "finished",
                   finished: datetime | None = None) -> None:
        """Close a run with ``status`` (``finished``, ``failed`` or ``interrupted``) at
        ``finished`` (UTC; default now: the runner passes the time its report shows)."""
        if status not in RUN_STATUSES[1:]:
            raise InputError("status", f"one of {RUN_STATUSES[1:]}", repr(status),
                             "pass 'finished', 'failed' or 'interrupted'")
        with self._transaction() as con:
            self._require_run(con, run_id)
            con.execute("UPDATE runs SET status = ?, finished = ? WHERE run_id = ?",
                        [status, finished or _now(), run_id])

    @staticmethod
    def _require_run(con: duckdb.DuckDBPyConnection, run_id: str) -> str:
        row = con.execute("SELECT config_hash FROM runs WHERE run_id = ?", [run_id]).fetchone()
        if row is None:
            raise InputError("run_id", "the id of a run recorded with start_run", repr(run_id),
                             "call store.start_run(config_yaml) first and use its id")
        return row[0]

    # -- jobs -----------------------------------------------------------------------------------
    def start_job(self, job_key: str, run_id: str) -> None:
        """Mark an attempt of ``job_key`` in ``run_id`` as running."""
        check_key(job_key)
        with self._transaction() as con:
            self._require_run(con, run_id)
            con.execute("INSERT INTO jobs VALUES (?, ?, 'running', NULL, ?, NULL)",
                        [job_key, run_id, _now()])

    def record_job(self, job_key: str, run_id: str, scores: Sequence[ScoreRecord], *,
                   replace: bool = False) -> int:
        """Append a finished job's scores and mark it finished, in one transaction.

        Every record is validated before anything is written; if any write fails the transaction
        rolls back and neither the scores nor the finished mark exist. Returns the rows written:
        0 when ``job_key`` was already recorded (by this or another run), which writes nothing.
        With ``replace`` (a forced recomputation) the job's earlier scores are deleted in the same
        transaction and these take their place.
        """
        check_key(job_key)
        return self._record_rows("scores", SCORE_COLUMNS, job_key, run_id,
                                 [score_row(r, k) for k, r in enumerate(scores)], replace)

    def _record_rows(self, table: str, columns: Sequence[str], job_key: str, run_id: str,
                     rows: list[list], replace: bool = False) -> int:
        """Insert a job's validated ``rows`` (run, job key, config hash and time added) into
        ``table`` and mark the job finished, in one transaction; returns the rows written.

        Idempotent: a job key already in ``done_jobs`` (recorded by any run) writes no rows; the
        attempt is closed as ``duplicate`` and 0 is returned."""
        with self._transaction() as con:
            written = self._write_rows(con, table, columns, job_key, run_id, rows, replace,
                                       self._require_run(con, run_id), _now())
        return written

    @classmethod
    def _write_rows(cls, con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str],
                    job_key: str, run_id: str, rows: list[list], replace: bool,
                    config_hash: str, now: datetime, started: datetime | None = None) -> int:
        """The body of ``_record_rows`` inside the caller's transaction (``results._batch``
        runs many in one). ``started``: the attempt's start time when its ``running`` row was
        never written (started and finished within one batch): the ``jobs`` row is inserted
        closed."""
        if replace:
            con.execute(f"DELETE FROM {table} WHERE job_key = ?", [job_key])
            con.execute("DELETE FROM done_jobs WHERE job_key = ?", [job_key])
        first = con.execute("INSERT INTO done_jobs VALUES (?, ?, ?) ON CONFLICT DO NOTHING "
                            "RETURNING run_id", [job_key, run_id, now]).fetchone()
        if first is None:  # another run recorded it: write nothing, say so in jobs
            holder = con.execute("SELECT run_id FROM done_jobs WHERE job_key = ?",
                                 [job_key]).fetchone()[0]
            cls._finish_job(con, job_key, run_id, "duplicate",
                            f"already recorded by run {holder}; these rows were not written",
                            now, started)
            return 0
        cls._insert_rows(con, table, columns,
                         [[run_id, job_key, *row, config_hash, now] for row in rows])
        cls._finish_job(con, job_key, run_id, "finished", None, now, started)
        return len(rows)

    @staticmethod
    def _insert_rows(con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str],
                     rows: list[list], chunk: int = 256) -> None:
        """Insert complete ``rows`` into ``columns`` of ``table``, many per statement (each
        statement costs DuckDB far more than a row)."""
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            one = f"({', '.join('?' * len(part[0]))})"
            con.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                        + ", ".join([one] * len(part)), [v for row in part for v in row])

    @classmethod
    def _finish_job(cls, con: duckdb.DuckDBPyConnection, job_key: str, run_id: str,
                    status: str, error: str | None, now: datetime,
                    started: datetime | None) -> None:
        """Close an attempt: its ``running`` row (``_close_job``), or, when that row was never
        written (``started`` given), a closed row at once."""
        if started is None:
            cls._close_job(con, job_key, run_id, status, error, now)
        else:
            con.execute("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?)",
                        [job_key, run_id, status, error, started, now])

    def fail_job(self, job_key: str, run_id: str, error: str) -> None:
        """Mark an attempt failed with its error message (a rerun will try the job again)."""
        check_key(job_key)
        with self._transaction() as con:
            self._require_run(con, run_id)
            self._close_job(con, job_key, run_id, "failed", str(error), _now())

    @staticmethod
    def _close_job(con: duckdb.DuckDBPyConnection, job_key: str, run_id: str, status: str,
                   error: str | None, now: datetime) -> None:
        running = con.execute("SELECT count(*) FROM jobs WHERE job_key = ? AND run_id = ? AND "
                              "status = 'running'", [job_key, run_id]).fetchone()[0]
        if running:
            con.execute("UPDATE jobs SET status = ?, error = ?, finished = ? WHERE job_key = ? "
                        "AND run_id = ? AND status = 'running'",
                        [status, error, now, job_key, run_id])
        else:
            con.execute("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?)",
                        [job_key, run_id, status, error, now, now])

    def has_job(self, job_key: str) -> bool:
        """Whether ``job_key`` finished in any run (a rerun should skip it)."""
        with self._connect() as con:
            return con.execute("SELECT 1 FROM jobs WHERE job_key = ? AND status = 'finished' "
                               "LIMIT 1", [job_key]).fetchone() is not None

    def finished_jobs(self, run_id: str | None = None) -> set[str]:
        """Keys of the finished jobs (of one run, or of all runs)."""
        sql, args = "SELECT DISTINCT job_key FROM jobs WHERE status = 'finished'", []
        if run_id is not None:
            sql, args = sql + " AND run_id = ?", [run_id]
        with self._connect() as con:
            return {r[0] for r in con.execute(sql, args).fetchall()}

    def record_partition_job(self, job_key: str, run_id: str,
                             records: Sequence[PartitionRecord]) -> int:
        """Append a finished partition job's rows (``partitions``) and mark it finished, in one
        transaction (as ``record_job``). Returns the rows written."""
        check_key(job_key)
        return self._record_rows("partitions", PARTITION_COLUMNS, job_key, run_id,
                                 [partition_row(r, k) for k, r in enumerate(records)])

    def record_second_order(self, run_id: str, records: Sequence[SecondOrderRecord],
                            job_key: str | None = None) -> int:
        """Write second-order rows (``second_order``): the rows of each (run, analysis, target,
        metric) in ``records`` replace any stored for it, in one transaction, which also marks
        ``job_key`` finished when given (the runner's job). Every record is validated first;
        returns the rows written."""
        if job_key is not None:
            check_key(job_key)
        rows = []
        for k, r in enumerate(records):
            if not isinstance(r, SecondOrderRecord):
                raise InputError(f"records[{k}]", "a SecondOrderRecord", type(r).__name__,
                                 "build rows with cortexalign.results.SecondOrderRecord(...)")
            *cols, extra = r.checked()
            rows.append([*cols, to_json(extra, f"records[{k}].extra")])
        groups = {(r[0], r[1], r[2]) for r in rows}
        with self._transaction() as con:
            config_hash = self._require_run(con, run_id)
            for analysis, target, metric in groups:
                con.execute("DELETE FROM second_order WHERE run_id = ? AND analysis = ? AND "
                            "target = ? AND metric = ?", [run_id, analysis, target, metric])
            now = _now()
            if rows:
                con.executemany(
                    f"INSERT INTO second_order ({', '.join(SECOND_ORDER_COLUMNS)}) VALUES "
                    f"({', '.join('?' * len(SECOND_ORDER_COLUMNS))})",
                    [[run_id, *row, config_hash, now] for row in rows])
            if job_key is not None:
                con.execute("INSERT INTO done_jobs VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                            [job_key, run_id, now])
                self._close_job(con, job_key, run_id, "finished", None, now)
        return len(rows)

    def batched(self, max_jobs: int = 1000, max_delay_s: float = 1.0) -> BatchedWrites:
        """A writer holding one connection for a whole run, committing job writes in batches
        (``results._batch.BatchedWrites``; close it, or use it as a context manager)."""
        return BatchedWrites(self, max_jobs=max_jobs, max_delay_s=max_delay_s)

    # -- model cards ----------------------------------------------------------------------------
    def put_model_card(self, card: ModelCard) -> None:
        """Insert or replace the card of ``(card.model_id, card.device)``."""
        if not card.model_id or not card.device:
            raise InputError("card", "a ModelCard with model_id and device", repr(card)[:80],
                             "set both model_id and device")
        values = [card.model_id, card.device,
                  None if card.params is None else int(card.params), nullable(card.flops),
                  nullable(card.latency_ms), nullable(card.peak_mem_mb), nullable(card.miou),
                  to_json(card.extra, "card.extra"), _now()]
        with self._transaction() as con:
            con.execute("DELETE FROM model_cards WHERE model_id = ? AND device = ?", values[:2])
            con.execute("INSERT INTO model_cards VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
