"""The one runner: validate everything, then every analysis kind of the run, into the store.

Order of work
-------------
1. Validate the whole request before anything is written to the output directory: for an
   experiment config (``run_experiment``) the config against the registries, the stimuli and
   every neural target, their stimulus ids (``bench._validate``); then each analysis kind's own
   checks (``AnalysisKind.validate``: the partitions' memory budget, ...).
2. Under the directory's lock, one run in the store; for each kind of the run
   (``RunRequest.kinds``: ``scores``, ``partitions``, ``second_order`` for an experiment;
   ``sae_brainmap``...) its units go to the executor (``placement = "executor"``: local, or Ray)
   or run here (``driver``), through ``bench._analysis.run_unit``: plan, skip finished jobs,
   prepare, execute and store each job.
3. Each job's rows are written in one transaction; a failing job is recorded with its error and
   the others go on. The run holds one store connection and commits the writes of fast jobs in
   batches (``results.BatchedWrites``); a job is reported finished (progress, ``on_job_done``)
   only once committed, so a killed run loses only jobs it never reported: those in flight or
   in the last uncommitted batch (at most ``max_delay_s`` = 1 s of work, or 1,000 jobs).
4. The run ends at the store: a unit that did not run (a model that did not load) and the
   references the kinds rely on are stored notes, the FDR q-values and paired tests are computed
   once (``_stats``) and stored. The caller then writes its files from the store (``outputs``;
   the command line passes ``reports.write_run_outputs``), so ``cortexalign report DIR`` writes
   the same report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from cortexalign.bench import (  # noqa: F401  register the kinds and the ray executor
    _cards_kind,
    _partitions,
    _ray,
    _scores,
    _second_order,
)
from cortexalign.bench._analysis import analysis_kind, run_unit
from cortexalign.bench._config import ExperimentConfig
from cortexalign.bench._config_load import load_config
from cortexalign.bench._context import RunContext, RunRequest, RunSummary
from cortexalign.bench._executors import LocalExecutor, make_executor
from cortexalign.bench._lock import RunLock
from cortexalign.bench._stats import record_statistics
from cortexalign.bench._validate import validate_request
from cortexalign.device import resolve_device
from cortexalign.errors import InputError
from cortexalign.features import FeatureCache
from cortexalign.fetch.sources import fetch_config_sources
from cortexalign.results import RESULTS_FILE, ResultsStore

__all__ = ["run_experiment", "run_analyses", "RunSummary", "EXPERIMENT_KINDS"]

#: The analysis kinds an experiment config runs, in order: the per-layer scores first (the
#: partitions and the second-order analyses read the features they cached), then the model
#: cards of ``segmentation:``.
EXPERIMENT_KINDS = ("scores", "partitions", "second_order", "model_cards")


def run_experiment(config: ExperimentConfig | str | Path, out_dir: str | Path, *,
                   progress: bool = True, allow_config_change: bool = False,
                   console: Console | None = None,
                   on_job_done: Callable[[Any], None] | None = None,
                   outputs: Callable[[RunSummary], dict[str, Path]] | None = None) -> RunSummary:
    """Run every job of ``config`` into ``out_dir/results.duckdb``.

    Parameters
    ----------
    config : a validated config, or a path to a YAML file.
    out_dir : the results directory (created). If it already holds results of a *different*
        config the run stops, unless ``allow_config_change`` (then only new jobs run).
    progress : show rich progress bars.
    outputs : writes the run's files from the store (``reports.write_run_outputs``: figure,
        best-layer table, report), called with the directory's lock held and before the run is
        marked ``finished``: a run killed while they are written reads interrupted, and a rerun
        writes them. The command line passes it; None writes none (the store alone).
    """
    t0 = time.perf_counter()
    console = console or Console(stderr=True, quiet=not progress)
    cfg = config if isinstance(config, ExperimentConfig) else load_config(
        config, report=lambda line: console.print(line, markup=False, highlight=False))
    fetch_config_sources(cfg, console)  # catalogue sources (source: allen-ophys): fetch first
    _check_out(out_dir)
    # 1. validate everything before writing anything
    stimuli, targets = validate_request(cfg, str(config) if isinstance(config, (str, Path))
                                        else "config")
    # a Ray worker resolves the device where it runs (the driver may have no GPU)
    device = resolve_device(cfg.device) if cfg.executor == "local" else cfg.device
    request = RunRequest(cfg, EXPERIMENT_KINDS, cfg.to_yaml(), cfg.config_hash(), stimuli,
                         targets, device, cfg.cache_dir)  # a folder or a URL (s3://...)
    _print_resample_estimate(cfg, len(stimuli), console)
    summary = run_analyses(request, out_dir, progress=progress,
                           allow_config_change=allow_config_change, console=console,
                           on_job_done=on_job_done, outputs=outputs)
    summary.seconds = time.perf_counter() - t0
    return summary


def _check_out(out_dir: str | Path) -> None:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("out_dir", "a directory", f"the file {str(out)!r}", "choose another --out")


def _print_resample_estimate(config: ExperimentConfig, n_stimuli: int, console: Console) -> None:
    """A long ``n_bootstrap`` / ``n_permutations`` (accepted by ``validate_request``): print the
    rough time it takes (``stats._budget``), so the user can stop and lower it."""
    from cortexalign.stats import resample_cost

    for name in ("n_bootstrap", "n_permutations"):
        n = getattr(config, name)
        seconds = resample_cost(n, n_stimuli)[1] if n else 0.0
        if seconds > 60:
            console.print(f"{name}: {n:,} resamples of {n_stimuli} stimuli take roughly "
                          f"{seconds / 60:.0f} min per job on one CPU core")


def run_analyses(request: RunRequest, out_dir: str | Path, *, progress: bool = True,
                 allow_config_change: bool = False, console: Console | None = None,
                 on_job_done: Callable[[Any], None] | None = None,
                 outputs: Callable[[RunSummary], dict[str, Path]] | None = None,
                 replace: bool = False) -> RunSummary:
    """Run the analysis kinds of a validated ``request`` into ``out_dir/results.duckdb``.

    Every kind goes the same way (module docstring): its ``validate`` before anything is
    written, then, under the directory's lock, one run whose units go to the executor or run
    here, each job skipped when the store holds it (resume), stored notes and statistics, and
    ``outputs`` (files written from the store) before the run is marked ``finished``.

    Parameters
    ----------
    request : the validated run (``RunRequest``).
    out_dir : the results directory (created).
    allow_config_change : add this config's jobs to a directory holding another config's.
    replace : recompute the jobs the store already holds, replacing their rows (``--force``).
    outputs : see ``run_experiment``.
    """
    t0 = time.perf_counter()
    _check_out(out_dir)
    console = console or Console(stderr=True, quiet=not progress)
    kinds = [analysis_kind(name) for name in request.kinds]
    inputs = dict(request.inputs)
    for kind in kinds:  # each kind's own checks, still before anything is written
        inputs.update(kind.validate(request))
    out = Path(out_dir)
    # one writer per output directory, for the whole run (report included): a second run stops
    # here at once, naming the holder (bench._lock)
    with RunLock(out) as lock:
        if lock.stale:
            console.print(f"took over the lock of {out} left by pid {lock.stale.get('pid')} on "
                          f"{lock.stale.get('host')} (started {lock.stale.get('started')} UTC), "
                          "which ended without releasing it")
        summary = _run_locked(request, out, inputs, progress=progress,
                              allow_config_change=allow_config_change, console=console,
                              on_job_done=on_job_done, outputs=outputs, replace=replace)
    summary.seconds = time.perf_counter() - t0
    return summary


def _run_locked(request: RunRequest, out: Path, inputs: dict, *, progress: bool,
                allow_config_change: bool, console: Console,
                on_job_done: Callable[[Any], None] | None,
                outputs: Callable[[RunSummary], dict[str, Path]] | None,
                replace: bool) -> RunSummary:
    """Steps 2-4 with the output directory's lock held: jobs, the stored notes and statistics,
    then ``outputs`` (the report and CSVs, from the store); the run is ``finished`` only once
    they are written."""
    store_path = out / RESULTS_FILE
    if store_path.exists() and not allow_config_change:
        hashes = set(ResultsStore(store_path, read_only=True).frame("runs")["config_hash"])
        if hashes and hashes != {request.config_hash}:
            raise InputError("out_dir", f"an empty directory or one holding results of this "
                             f"config ({request.config_hash})", f"{str(out)!r} with results of "
                             f"config(s) {sorted(hashes)}", "choose a new --out, or pass "
                             "--update to add this config's new jobs to it")

    executor = make_executor(request.config)
    executor.open()  # connects to Ray (a dead address fails within ray.timeout_s); writes nothing
    out.mkdir(parents=True, exist_ok=True)
    cache = (FeatureCache(request.cache_dir, storage_options=getattr(
        request.config, "cache_storage_options", None)) if request.cache_dir
        else FeatureCache(out / "cache"))
    summary = RunSummary(run_id="", out_dir=out, config_name=getattr(request.config, "name", ""))
    results = ResultsStore(store_path)
    summary.run_id = results.start_run(request.config_yaml, request.config_hash)
    # one connection for the run; job writes committed in batches, and a job reported finished
    # (progress, on_job_done) only once committed (results._batch)
    with results.batched() as store:
        finished = set() if replace else set(store.finished_jobs())
        ctx = RunContext(request.config, store, summary.run_id, summary, out_dir=out,
                         stimuli=request.stimuli, targets=request.targets, cache=cache,
                         device=request.device, finished=finished, progress=progress,
                         console=console, on_job_done=on_job_done, replace=replace,
                         inputs=inputs)
        _run_kinds(request, ctx, executor)
    # every job committed and the batch connection closed: the outputs read the store, and are
    # part of the run ('finished' only once they exist; a kill here leaves it interrupted)
    summary.files["results"] = store_path
    # the time the run closes, decided before its files are written: the end-of-run report
    # shows it, and the store records it (so `cortexalign report DIR` writes the same report)
    summary.finished = datetime.now(UTC).replace(tzinfo=None)
    try:
        if outputs is not None:
            summary.files.update(outputs(summary))
    except KeyboardInterrupt:
        results.finish_run(summary.run_id, "interrupted")
        raise
    except BaseException:
        results.finish_run(summary.run_id, "failed")
        raise
    results.finish_run(summary.run_id, "finished" if summary.ok else "failed",
                       finished=summary.finished)
    return summary


def _run_kinds(request: RunRequest, ctx: RunContext, executor) -> None:
    """Every unit of every kind of a started run, its notes and statistics, written through
    ``ctx.store``; a run that stops here is closed ``failed``/``interrupted`` (the caller closes
    a complete one once its outputs are written)."""
    store, run_id = ctx.store, ctx.run_id
    kinds = [analysis_kind(name) for name in request.kinds]
    try:  # the executor runs run_unit per unit; only this process writes the store
        try:
            for kind in kinds:  # in order: later kinds read what earlier ones cached
                units = kind.units(ctx)
                if units:
                    where = executor if kind.placement == "executor" else LocalExecutor()
                    where.run(run_unit, ctx, units)
        finally:
            executor.close()
        # the run ends at the store: what the report shows beyond the scores is stored too
        citations = [item for kind in kinds for item in kind.citations(ctx.config)]
        store.add_notes(run_id, "citation", [(s, c) for s, c in dict.fromkeys(citations) if c])
        record_statistics(store, run_id)
    except KeyboardInterrupt:
        store.finish_run(run_id, "interrupted")
        raise
    except BaseException:
        store.finish_run(run_id, "failed")
        raise
