"""Executors: where the work of a run is computed. The driver alone writes the results store.

The unit of work is one model: load it once, extract the layers its unfinished jobs need once
(through the feature cache), score those jobs. ``run_experiment`` hands every executor the same
function for that (``_run_model``) and a :class:`RunContext`; the executor decides where it runs.

``local``
    In this process, one model after the other, with rich progress bars for extraction and
    scoring. Jobs are written to the store as they finish.
``ray``
    One Ray task per model on a Ray cluster (``bench._ray``). A worker cannot reach the
    DuckDB store (one writer process; often another machine), so the model's work runs there
    against a :class:`StoreProxy` that turns every store write into an event; the task streams the
    events back as they happen and the driver applies them to the store (:class:`EventWriter`).
    Each job is still one transaction, written as soon as it finishes, so resume works as with
    ``local``: a killed driver loses at most the jobs in flight.

Events (plain tuples, cheap to pickle)::

    ("store", method, args, kwargs)   a write the worker made: start_job, record_job, fail_job,
                                      put_model_card, add_notes
    ("done", job)                     a ScoreJob finished (written or failed): progress, hooks
    ("end", counts)                   the model's RunSummary counts (n_jobs, n_skipped, ...)
"""

from __future__ import annotations

import logging
import queue
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cortexalign.bench._config import ExperimentConfig, ModelSpec
from cortexalign.errors import CortexAlignError, InputError
from cortexalign.results import BatchedWrites

__all__ = ["RunSummary", "RunContext", "Executor", "LocalExecutor", "EXECUTORS", "make_executor",
           "StoreProxy", "EventWriter", "model_events", "STORE_WRITES", "after_commit"]

log = logging.getLogger("cortexalign.bench")

#: Store methods a worker may call; each becomes a ``("store", ...)`` event for the driver.
STORE_WRITES = ("start_job", "record_job", "fail_job", "put_model_card", "add_notes")

PROGRESS_COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn())


@dataclass
class RunSummary:
    """What a run did: counts, failures and the files it wrote."""

    run_id: str
    out_dir: Path
    n_jobs: int = 0
    n_done: int = 0
    n_skipped: int = 0
    failures: list[dict] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0
    job_keys: set[str] = field(default_factory=set)
    config_name: str = ""

    @property
    def ok(self) -> bool:
        """Whether nothing failed."""
        return not self.failures


@dataclass
class RunContext:
    """What the work of every model shares; built once by ``run_experiment``.

    Attributes
    ----------
    config : the validated experiment. stimuli : the ``StimulusSet``. targets : neural targets by
    label (in the stimuli's order). cache : the ``FeatureCache``. store : the ``ResultsStore``
    (written by the driver only). run_id : this run's id. finished : keys of jobs already done.
    device : where models run (``local``; a Ray worker resolves ``config.device`` itself).
    summary : the ``RunSummary`` being filled. progress : show progress bars. console : where.
    on_job_done : called in the driver with each finished ``ScoreJob`` (tests use it to kill).
    """

    config: ExperimentConfig
    stimuli: Any
    targets: dict[str, Any]
    cache: Any
    store: Any
    run_id: str
    finished: set[str]
    device: Any
    summary: Any
    progress: bool
    console: Console
    on_job_done: Callable[[Any], None] | None = None


#: ``_run_model(cfg, spec, stimuli, targets, cache, store, run_id, finished, device, summary,
#: bar, progress, on_job_done)`` — the one place that knows its argument order is ``call_model``.
ModelWork = Callable[..., None]


def call_model(run_model: ModelWork, ctx: RunContext, spec: ModelSpec, *, cache: Any, store: Any,
               device: Any, summary: Any, bar: Progress, progress: bool,
               on_job_done: Callable[[Any], None] | None) -> None:
    """Call ``run_model`` for one model with the pieces an executor chose."""
    run_model(ctx.config, spec, ctx.stimuli, ctx.targets, cache, store, ctx.run_id, ctx.finished,
              device, summary, bar, progress, on_job_done)


def failure_message(err: BaseException) -> str:
    """What a failed job stores: the error, and for errors that are not ours (bugs, crashes) the
    last frames of its traceback."""
    msg = f"{type(err).__name__}: {err}"
    if not isinstance(err, CortexAlignError):
        msg += "\n" + "".join(traceback.format_exception(err, limit=3))[-2000:]
    return msg


def after_commit(store: Any, report: Callable[[], None]) -> None:
    """Call ``report`` (a job is done: progress, hooks) once ``store`` holds every write made so
    far: when a ``results.BatchedWrites`` commits its batch, at once for a store that commits
    each write itself (``ResultsStore``) or forwards it (``StoreProxy``: the driver reports)."""
    if isinstance(store, BatchedWrites):
        store.when_committed(report)
    else:
        report()


def record_failure(store, run_id: str, summary, job_key: str, label: str, msg: str) -> None:
    """Mark job ``job_key`` failed in the store and list it in the run's summary."""
    summary.failures.append({"job": label, "error": msg})
    store.fail_job(job_key, run_id, msg)



class Executor(Protocol):
    """Runs the work of every model of a run. ``open`` connects (and writes nothing)."""

    name: str

    def open(self) -> None:
        """Connect to where the work runs (a Ray cluster); write nothing."""

    def run(self, run_model: ModelWork, ctx: RunContext) -> None:
        """Call ``run_model`` for every model of ``ctx.config``; only the driver writes the store."""

    def close(self) -> None:
        """Release what ``open`` took (a Ray started for the run is shut down)."""


class LocalExecutor:
    """Every model in this process, in config order, with progress bars."""

    name = "local"

    def __init__(self, config: ExperimentConfig):
        self.config = config

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def run(self, run_model: ModelWork, ctx: RunContext) -> None:
        with Progress(*PROGRESS_COLUMNS, console=ctx.console, disable=not ctx.progress) as bar:
            for spec in ctx.config.models:
                call_model(run_model, ctx, spec, cache=ctx.cache, store=ctx.store,
                           device=ctx.device, summary=ctx.summary, bar=bar,
                           progress=ctx.progress, on_job_done=ctx.on_job_done)


#: ``executor`` config value -> factory. Tests parametrize over it. ``bench._ray`` adds ``ray``
#: (it imports Ray itself only when a run asks for it).
EXECUTORS: dict[str, Callable[[ExperimentConfig], Executor]] = {
    "local": LocalExecutor,
}


def make_executor(config: ExperimentConfig) -> Executor:
    """The executor named by ``config.executor`` (not yet opened)."""
    if config.executor not in EXECUTORS:
        raise InputError("executor", f"one of {sorted(EXECUTORS)}", repr(config.executor),
                         "set executor: local or executor: ray")
    return EXECUTORS[config.executor](config)


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


def model_events(run_model: ModelWork, ctx: RunContext, spec: ModelSpec, cache_root: str,
                 device: Any) -> Iterator[tuple]:
    """Run one model's work here and yield its events as they happen (see module docstring).

    The work runs in a thread that feeds a queue, so each event leaves as soon as it exists
    (a Ray streaming task sends it to the driver at once). ``ctx.store`` is replaced by a
    :class:`StoreProxy`; ``ctx.summary`` is a fresh one whose counts end the stream. A crash of
    the work itself (not of a job: those are recorded by ``run_model``) is raised after the
    events it produced.
    """
    from cortexalign.features import FeatureCache

    q: queue.Queue = queue.Queue()
    summary = RunSummary(run_id=ctx.run_id, out_dir=Path(cache_root))
    crash: list[BaseException] = []

    def work() -> None:
        try:
            with Progress(disable=True) as bar:
                cache = FeatureCache(cache_root,
                                     storage_options=ctx.config.cache_storage_options)
                call_model(run_model, ctx, spec, cache=cache,
                           store=StoreProxy(q.put), device=device, summary=summary, bar=bar,
                           progress=False, on_job_done=lambda job: q.put(("done", job)))
        except BaseException as err:  # re-raised in the generator, below
            crash.append(err)
        finally:
            q.put(_END)

    thread = threading.Thread(target=work, name=f"cortexalign-{spec.display}", daemon=True)
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
    """The driver's side of :func:`model_events`: applies one model's events to the store.

    Writes are deduplicated (a job already finished is not recorded twice) and a write the
    store refuses (a record that does not validate) marks the job failed, as in-process.
    """

    def __init__(self, ctx: RunContext, spec: ModelSpec, advance: Callable[[], None] | None = None):
        self.ctx, self.spec, self.advance = ctx, spec, advance
        self.in_flight: set[str] = set()
        self.n_write_failures = 0
        self.n_recorded = 0  # jobs written from this model's events (all attempts)
        self.n_carried = 0  # of those, written by attempts whose worker died

    def apply(self, event: tuple) -> None:
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
            raise AssertionError(f"unknown event {kind!r} from the work of {self.spec.display}")

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
            ctx.summary.failures.append({"job": f"{self.spec.display} / job {key}", "error": msg})
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
        """The worker of this model died and the model is submitted again: the jobs written so
        far are finished for the new attempt; those in flight stay open until it ends."""
        self.n_carried = self.n_recorded
        log.warning("the worker of %s died (%s); submitting it again without its %d finished "
                    "jobs", self.spec.display, type(err).__name__, self.n_carried)

    def lost(self, err: BaseException) -> None:
        """The work of this model died (worker killed, out of memory): record what it left."""
        msg = failure_message(err)
        for key in sorted(self.in_flight):
            self.ctx.store.fail_job(key, self.ctx.run_id, msg)
        self.in_flight.clear()
        self.ctx.summary.failures.append({"job": self.spec.display, "error": msg})
