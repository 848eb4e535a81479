"""Executors: where the work of a run is computed. The driver alone writes the results store.

The unit of work is one ``bench._analysis.Unit`` of an analysis kind placed on the executor (a
model of the score grid: load it once, extract the layers its unfinished jobs need once through
the feature cache, score those jobs). The runner hands every executor the same function for that
(``bench._analysis.run_unit``), a :class:`RunContext` and the units; the executor decides where
each runs, and passes the function a copy of the context with its own progress bar (and, on a
worker, its own store, cache and summary).

``local``
    In this process, one unit after the other, with rich progress bars for extraction and
    scoring. Jobs are written to the store as they finish.
``ray``
    One Ray task per unit on a Ray cluster (``bench._ray``). A worker cannot reach the
    DuckDB store (one writer process; often another machine), so the unit's work runs there
    against a :class:`StoreProxy` that turns every store write into an event; the task streams the
    events back as they happen and the driver applies them to the store (:class:`EventWriter`).
    Each job is still one transaction, written as soon as it finishes, so resume works as with
    ``local``: a killed driver loses at most the jobs in flight.

Events (plain tuples, cheap to pickle)::

    ("store", method, args, kwargs)   a write the worker made: start_job, record_job, fail_job,
                                      put_model_card, add_notes
    ("done", job)                     a job finished (written or failed): progress, hooks
    ("end", counts)                   the unit's RunSummary counts (n_jobs, n_skipped, ...)
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from rich.progress import Progress

from cortexalign.bench._analysis import Unit
from cortexalign.bench._context import (
    PROGRESS_COLUMNS,
    RunContext,
    RunSummary,
    after_commit,
    failure_message,
    record_failure,
)
from cortexalign.errors import CortexAlignError, InputError

__all__ = ["RunSummary", "RunContext", "Executor", "LocalExecutor", "EXECUTORS", "make_executor",
           "StoreProxy", "EventWriter", "model_events", "STORE_WRITES", "after_commit",
           "failure_message", "record_failure", "UnitWork", "PROGRESS_COLUMNS"]

log = logging.getLogger("cortexalign.bench")

#: Store methods a worker may call; each becomes a ``("store", ...)`` event for the driver.
STORE_WRITES = ("start_job", "record_job", "fail_job", "put_model_card", "add_notes")

#: ``work(ctx, unit)``: what an executor runs for each unit (``bench._analysis.run_unit``).
UnitWork = Callable[[RunContext, Unit], None]


class Executor(Protocol):
    """Runs the units of a run. ``open`` connects (and writes nothing)."""

    name: str

    def open(self) -> None:
        """Connect to where the work runs (a Ray cluster); write nothing."""

    def run(self, work: UnitWork, ctx: RunContext, units: list[Unit]) -> None:
        """Call ``work`` for every unit; only the driver writes the store."""

    def close(self) -> None:
        """Release what ``open`` took (a Ray started for the run is shut down)."""


class LocalExecutor:
    """Every unit in this process, in order, with progress bars."""

    name = "local"

    def __init__(self, config: Any = None):
        self.config = config

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def run(self, work: UnitWork, ctx: RunContext, units: list[Unit]) -> None:
        with Progress(*PROGRESS_COLUMNS, console=ctx.console, disable=not ctx.progress) as bar:
            here = dataclasses.replace(ctx, bar=bar)
            for unit in units:
                work(here, unit)


#: ``executor`` config value -> factory. Tests parametrize over it. ``bench._ray`` adds ``ray``
#: (it imports Ray itself only when a run asks for it).
EXECUTORS: dict[str, Callable[[Any], Executor]] = {
    "local": LocalExecutor,
}


def make_executor(config: Any) -> Executor:
    """The executor named by ``config.executor`` (``local`` for configs without one; not yet
    opened)."""
    name = getattr(config, "executor", "local")
    if name not in EXECUTORS:
        raise InputError("executor", f"one of {sorted(EXECUTORS)}", repr(name),
                         "set executor: local or executor: ray")
    return EXECUTORS[name](config)


# -- remote work: writes become events ----------------------------------------------------------
class StoreProxy:
    """Stands in for ``ResultsStore`` where the store is out of reach (a Ray worker).

    Each write method in ``STORE_WRITES`` emits ``("store", method, args, kwargs)`` and returns
    None; anything else (a read) raises, because a worker must decide from what the driver sent
    (``RunContext.finished``), never from the store.
    """

    def __init__(self, emit: Callable[[tuple], None]):
        self._emit = emit

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name not in STORE_WRITES:
            raise AttributeError(f"StoreProxy.{name}: a worker only writes ({', '.join(STORE_WRITES)})"
                                 "; reads belong in the driver (pass what the worker needs in "
                                 "RunContext)")

        def write(*args: Any, **kwargs: Any) -> None:
            self._emit(("store", name, args, kwargs))

        return write


_END = object()


def model_events(work: UnitWork, ctx: RunContext, unit: Unit, cache_root: str,
                 device: Any) -> Iterator[tuple]:
    """Run one unit's work here and yield its events as they happen (see module docstring).

    The work runs in a thread that feeds a queue, so each event leaves as soon as it exists
    (a Ray streaming task sends it to the driver at once). The context's store is replaced by a
    :class:`StoreProxy`, its summary by a fresh one whose counts end the stream. A crash of
    the work itself (not of a job: those are recorded by ``work``) is raised after the events it
    produced.
    """
    from cortexalign.features import FeatureCache

    q: queue.Queue = queue.Queue()
    summary = RunSummary(run_id=ctx.run_id, out_dir=Path(cache_root))
    cache = FeatureCache(cache_root, storage_options=getattr(ctx.config, "cache_storage_options",
                                                             None))
    here = dataclasses.replace(ctx, cache=cache, store=StoreProxy(q.put),
                               device=device, summary=summary, bar=None, progress=False,
                               console=None, on_job_done=lambda job: q.put(("done", job)))
    crash: list[BaseException] = []

    def run() -> None:
        try:
            work(here, unit)
        except BaseException as err:  # re-raised in the generator, below
            crash.append(err)
        finally:
            q.put(_END)

    thread = threading.Thread(target=run, name=f"cortexalign-{unit.label}", daemon=True)
    thread.start()
    while (event := q.get()) is not _END:
        yield event
    thread.join()
    if crash:
        raise crash[0]
    yield ("end", {"n_jobs": summary.n_jobs, "n_done": summary.n_done,
                   "n_skipped": summary.n_skipped, "failures": summary.failures,
                   "job_keys": sorted(summary.job_keys)})


class EventWriter:
    """The driver's side of :func:`model_events`: applies one unit's events to the store.

    Writes are deduplicated (a job already finished is not recorded twice) and a write the
    store refuses (a record that does not validate) marks the job failed, as in-process.
    """

    def __init__(self, ctx: RunContext, unit: Unit, advance: Callable[[], None] | None = None):
        self.ctx, self.unit, self.advance = ctx, unit, advance
        self.in_flight: set[str] = set()
        self.n_write_failures = 0
        self.n_recorded = 0  # jobs written from this unit's events (all attempts)
        self.n_carried = 0  # of those, written by attempts whose worker died

    def apply(self, event: tuple) -> None:
        """Apply one event of the unit's stream: a write, a finished job or the final counts."""
        kind = event[0]
        if kind == "store":
            self._write(*event[1:])
        elif kind == "done":
            after_commit(self.ctx.store, lambda job=event[1]: self._report(job))
        elif kind == "end":
            counts, s = event[1], self.ctx.summary
            s.n_jobs += counts["n_jobs"]
            # jobs a lost attempt wrote are skipped by the resubmitted one: count them done
            s.n_skipped += counts["n_skipped"] - self.n_carried
            s.n_done += counts["n_done"] - self.n_write_failures + self.n_carried
            s.failures.extend(counts["failures"])
            s.job_keys.update(counts["job_keys"])
        else:
            raise AssertionError(f"unknown event {kind!r} from the work of {self.unit.label}")

    def _report(self, job: Any) -> None:
        if self.advance is not None:
            self.advance()
        if self.ctx.on_job_done is not None:
            self.ctx.on_job_done(job)

    def _write(self, method: str, args: tuple, kwargs: dict) -> None:
        ctx = self.ctx
        assert method in STORE_WRITES, f"{method} is not a store write"
        key = args[0] if method in ("start_job", "record_job", "fail_job") else None
        if key is not None and key in ctx.finished:
            return  # a retried task repeating a job the store already holds
        try:
            getattr(ctx.store, method)(*args, **kwargs)
        except CortexAlignError as err:
            if method != "record_job":
                raise
            msg = f"{type(err).__name__}: {err}"
            ctx.store.fail_job(key, ctx.run_id, msg)
            ctx.summary.failures.append({"job": f"{self.unit.label} / job {key}", "error": msg})
            self.n_write_failures += 1
            self.in_flight.discard(key)
            return
        if method == "start_job":
            self.in_flight.add(key)
        elif key is not None:
            self.in_flight.discard(key)
            if method == "record_job":
                ctx.finished.add(key)
                self.n_recorded += 1

    def retried(self, err: BaseException) -> None:
        """The worker of this unit died and the unit is submitted again: the jobs written so
        far are finished for the new attempt; those in flight stay open until it ends."""
        self.n_carried = self.n_recorded
        log.warning("the worker of %s died (%s); submitting it again without its %d finished "
                    "jobs", self.unit.label, type(err).__name__, self.n_carried)

    def lost(self, err: BaseException) -> None:
        """The work of this unit died (worker killed, out of memory): record what it left."""
        msg = failure_message(err)
        for key in sorted(self.in_flight):
            self.ctx.store.fail_job(key, self.ctx.run_id, msg)
        self.in_flight.clear()
        self.ctx.summary.failures.append({"job": self.unit.label, "error": msg})
