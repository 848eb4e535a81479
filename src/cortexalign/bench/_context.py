"""What every analysis of a run shares: the run's request, its context and its summary.

``RunRequest``
    A validated request, built before anything is written: the config, the analysis kinds it
    runs (``bench._analysis.ANALYSES``), the loaded stimuli and neural targets, the device, what
    the kinds measured while validating (``inputs``) and the references the run relies on.
``RunContext``
    One frozen object handed to every unit of work (``run_unit``) by every executor: the request's
    pieces plus the open store, the run id, the feature cache, the finished job keys, the summary
    being filled, and where progress goes. An executor that runs work elsewhere (a Ray worker)
    passes a copy with its own store, cache and summary (``dataclasses.replace``).
``RunSummary``
    What a run did: counts, failures, files, and the in-memory products of its jobs.

This module imports nothing of the runner: the executors and the analysis kinds import it, and
the runner imports them (no cycle).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cortexalign.errors import CortexAlignError
from cortexalign.results import BatchedWrites

__all__ = ["RunRequest", "RunContext", "RunSummary", "PROGRESS_COLUMNS", "failure_message",
           "after_commit", "record_failure"]

PROGRESS_COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn())


@dataclass
class RunSummary:
    """What a run did: counts, failures and the files it wrote.

    Attributes
    ----------
    run_id : the run's id in the store. out_dir : its results directory.
    n_jobs, n_done, n_skipped : jobs planned, computed now, and found finished in the store.
    failures : ``{"job": label, "error": message}`` of every failed job or unit.
    files : name -> path of the files the run wrote. seconds : wall time.
    job_keys : keys of every planned job. config_name : the config's ``name``.
    products : what a job made in memory for the caller, by name (SAE-BrainMap: its
        ``BrainMapResult``); empty for jobs that were skipped.
    finished : when the run closes (UTC, set before its files are written; the store records
        the same time).
    """

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
    products: dict[str, Any] = field(default_factory=dict)
    finished: datetime | None = None

    @property
    def ok(self) -> bool:
        """Whether nothing failed."""
        return not self.failures


@dataclass(frozen=True)
class RunRequest:
    """A run, validated before anything is written (see the module docstring).

    Attributes
    ----------
    config : the validated config (``ExperimentConfig``, ``BrainMapConfig``...).
    kinds : names of the analysis kinds the run goes through, in order.
    config_yaml, config_hash : what the ``runs`` row records; a directory holding results of
        another hash is refused unless the caller allows config changes.
    stimuli : the ``StimulusSet``. targets : neural targets by label (in the stimuli's order).
    device : where work runs in this process (``config.device`` for Ray workers to resolve).
    cache_dir : the feature cache, a folder or an fsspec URL (None: ``<out>/cache``).
    inputs : anything else the kinds loaded or measured while validating, by name.
    """

    config: Any
    kinds: tuple[str, ...]
    config_yaml: str
    config_hash: str
    stimuli: Any = None
    targets: Mapping[str, Any] = field(default_factory=dict)
    device: Any = "cpu"
    cache_dir: str | Path | None = None
    inputs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunContext:
    """What every unit of work of a run shares; built once by the runner (``bench._run``).

    Attributes
    ----------
    config : the validated config. out_dir : the results directory.
    store : where jobs are written: a ``results.BatchedWrites`` in the driver, a
        ``bench._executors.StoreProxy`` on a Ray worker. run_id : this run's id.
    stimuli : the ``StimulusSet``. targets : neural targets by label (in the stimuli's order).
    cache : the ``FeatureCache``. device : where models run (``local``; a Ray worker resolves
        ``config.device`` itself).
    finished : keys of jobs already in the store (skipped). summary : the ``RunSummary`` being
        filled. progress : show progress bars. console : where. on_job_done : called in the
        driver with each job once its writes are committed (tests use it to kill a run).
    bar : the rich ``Progress`` an executor opened for the work (None: no bars).
    replace : recompute finished jobs too, replacing their rows (``--force``).
    inputs : what the kinds loaded or measured while validating (``RunRequest.inputs``).
    """

    config: Any
    store: Any
    run_id: str
    summary: RunSummary
    out_dir: Path = Path(".")
    stimuli: Any = None
    targets: Mapping[str, Any] = field(default_factory=dict)
    cache: Any = None
    device: Any = "cpu"
    finished: set[str] = field(default_factory=set)
    progress: bool = False
    console: Console | None = None
    on_job_done: Callable[[Any], None] | None = None
    bar: Progress | None = None
    replace: bool = False
    inputs: Mapping[str, Any] = field(default_factory=dict)


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


def record_failure(store: Any, run_id: str, summary: RunSummary, job_key: str, label: str,
                   msg: str) -> None:
    """Mark job ``job_key`` failed in the store and list it in the run's summary."""
    summary.failures.append({"job": label, "error": msg})
    store.fail_job(job_key, run_id, msg)
