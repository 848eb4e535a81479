"""Run an experiment: validate everything, extract (cached), score, store.

Order of work
-------------
1. Validate the whole config against the registries, load the stimuli and every neural target,
   and check their stimulus ids — before anything is written to the output directory.
2. For each model, skip it entirely if all its score jobs are already in the results store;
   otherwise load it once, extract the needed layers once (content-addressed cache), and run
   every (layer x target x metric) job on those features.
3. Each job's rows are written in one transaction; a failing job is recorded with its error and
   the others go on. The run holds one store connection and commits the writes of fast jobs in
   batches (``results.BatchedWrites``); a job is reported finished (progress, ``on_job_done``)
   only once committed, so a killed run loses only jobs it never reported: those in flight or
   in the last uncommitted batch (at most ``max_delay_s`` = 1 s of work, or 1,000 jobs).
4. The run ends at the store: a model that did not load and the references the run relies on
   are stored notes, the FDR q-values and paired tests are computed once (``_stats``) and
   stored. The command line then writes the report from the store (``reports.write_summary``),
   so ``cortexalign report DIR`` writes the same report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from rich.console import Console

from cortexalign.bench import _ray  # noqa: F401  registers the "ray" executor
from cortexalign.bench._cards import write_model_cards
from cortexalign.bench._config import ExperimentConfig, load_config
from cortexalign.bench._executors import (
    RunContext,
    RunSummary,
    after_commit,
    failure_message,
    make_executor,
    record_failure,
)
from cortexalign.bench._jobs import ScoreJob, plan_model_jobs
from cortexalign.bench._lock import RunLock
from cortexalign.bench._partition_memory import check_partition_memory
from cortexalign.bench._partition_spec import PARTITION_METHODS
from cortexalign.bench._partitions import driver_device, run_partitions
from cortexalign.bench._scoring import CachedLayer, score_job, uses_maps
from cortexalign.bench._second_order import run_second_order
from cortexalign.bench._stats import record_statistics
from cortexalign.bench._validate import validate_request
from cortexalign.device import resolve_device
from cortexalign.errors import CortexAlignError, InputError
from cortexalign.features import FEATURE_KINDS, BatchShrink, FeatureCache, extract, kind_layers
from cortexalign.fetch.sources import fetch_config_sources
from cortexalign.metrics import METRICS
from cortexalign.models import load_model
from cortexalign.neural import NEURAL
from cortexalign.results import RESULTS_FILE, BatchedWrites, ResultsStore
from cortexalign.stimuli import BUNDLED, StimulusSet

__all__ = ["run_experiment", "RunSummary"]


def run_experiment(config: ExperimentConfig | str | Path, out_dir: str | Path, *,
                   progress: bool = True, allow_config_change: bool = False,
                   console: Console | None = None,
                   on_job_done: Callable[[ScoreJob], None] | None = None,
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
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("out_dir", "a directory", f"the file {str(out)!r}", "choose another --out")

    # 1. validate everything before writing anything
    stimuli, targets = validate_request(cfg, str(config) if isinstance(config, (str, Path))
                                        else "config")
    # a Ray worker resolves the device where it runs (the driver may have no GPU)
    device = resolve_device(cfg.device) if cfg.executor == "local" else cfg.device
    # partitions hold their sets whole: over max_feature_memory_gb fails here (one probe image)
    widths = check_partition_memory(cfg, stimuli, driver_device(cfg, device))
    _print_resample_estimate(cfg, len(stimuli), console)
    config_hash = cfg.config_hash()
    store_path = out / RESULTS_FILE
    # one writer per output directory, for the whole run (report included): a second run stops
    # here at once, naming the holder (bench._lock)
    with RunLock(out) as lock:
        if lock.stale:
            console.print(f"took over the lock of {out} left by pid {lock.stale.get('pid')} on "
                          f"{lock.stale.get('host')} (started {lock.stale.get('started')} UTC), "
                          "which ended without releasing it")
        summary = _run_locked(cfg, out, store_path, config_hash, stimuli, targets, device,
                              widths, progress=progress, allow_config_change=allow_config_change,
                              console=console, on_job_done=on_job_done, outputs=outputs)
    summary.seconds = time.perf_counter() - t0
    return summary


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


def _run_locked(cfg: ExperimentConfig, out: Path, store_path: Path, config_hash: str,
                stimuli: StimulusSet, targets: dict, device, widths, *, progress: bool,
                allow_config_change: bool, console: Console,
                on_job_done: Callable[[ScoreJob], None] | None,
                outputs: Callable[[RunSummary], dict[str, Path]] | None = None) -> RunSummary:
    """Steps 2-4 of ``run_experiment`` with the output directory's lock held: jobs, the stored
    notes and statistics, then ``outputs`` (the report and CSVs, from the store); the run is
    ``finished`` only once they are written."""
    if store_path.exists() and not allow_config_change:
        hashes = set(ResultsStore(store_path, read_only=True).frame("runs")["config_hash"])
        if hashes and hashes != {config_hash}:
            raise InputError("out_dir", f"an empty directory or one holding results of this "
                             f"config ({config_hash})", f"{str(out)!r} with results of config(s) "
                             f"{sorted(hashes)}", "choose a new --out, or pass --update to add "
                             "this config's new jobs to it")

    executor = make_executor(cfg)
    executor.open()  # connects to Ray (a dead address fails within ray.timeout_s); writes nothing
    out.mkdir(parents=True, exist_ok=True)
    cache = (FeatureCache(cfg.cache_dir, storage_options=cfg.cache_storage_options)
             if cfg.cache_dir else FeatureCache(out / "cache"))
    summary = RunSummary(run_id="", out_dir=out, config_name=cfg.name)
    results = ResultsStore(store_path)
    summary.run_id = results.start_run(cfg.to_yaml(), config_hash)
    # one connection for the run; job writes committed in batches, and a job reported finished
    # (progress, on_job_done) only once committed (results._batch)
    with results.batched() as store:
        _run_jobs(cfg, store, stimuli, targets, cache, device, widths, executor, summary,
                  progress=progress, console=console, on_job_done=on_job_done)
    # every job committed and the batch connection closed: the outputs read the store, and are
    # part of the run ('finished' only once they exist; a kill here leaves it interrupted)
    summary.files["results"] = store_path
    try:
        if cfg.segmentation is not None:  # model cards: efficiency and mIoU (bench._cards)
            write_model_cards(cfg, results, resolve_device(cfg.device), progress=progress,
                              console=console)
        if outputs is not None:
            summary.files.update(outputs(summary))
    except KeyboardInterrupt:
        results.finish_run(summary.run_id, "interrupted")
        raise
    except BaseException:
        results.finish_run(summary.run_id, "failed")
        raise
    results.finish_run(summary.run_id, "finished" if summary.ok else "failed")
    return summary


def _run_jobs(cfg: ExperimentConfig, store: BatchedWrites, stimuli: StimulusSet, targets: dict,
              cache: FeatureCache, device, widths, executor, summary: RunSummary, *,
              progress: bool, console: Console,
              on_job_done: Callable[[ScoreJob], None] | None) -> RunSummary:
    """Every job of a started run, its notes and statistics, written through ``store``; a run
    that stops here is closed ``failed``/``interrupted`` (the caller closes a complete one once
    its outputs are written)."""
    run_id = summary.run_id
    finished = set(store.finished_jobs())
    ctx = RunContext(cfg, stimuli, targets, cache, store, run_id, finished, device, summary,
                     progress, console, on_job_done)
    try:  # the executor runs _run_model per model; only this process writes the store
        try:
            executor.run(_run_model, ctx)
            run_partitions(ctx, widths)  # after the per-layer jobs: their features are cached
            run_second_order(ctx)  # patterns / discriminability of the config, on the same cache
        finally:
            executor.close()
        # the run ends at the store: what the report shows beyond the scores is stored too
        store.add_notes(run_id, "citation", _citations(cfg))
        record_statistics(store, run_id)
    except KeyboardInterrupt:
        store.finish_run(run_id, "interrupted")
        raise
    except BaseException:
        store.finish_run(run_id, "failed")
        raise
    return summary


def _citations(cfg: ExperimentConfig) -> list[tuple[str, str]]:
    """What the run relies on, as ``(subject, reference)`` notes for the store."""
    items = [(f"measure: {m.name}", METRICS.entry(m.name).meta.get("citation", ""))
             for m in cfg.metrics]
    if cfg.stimuli.source in BUNDLED:
        items.append((f"stimuli: {cfg.stimuli.source}",
                      BUNDLED.entry(cfg.stimuli.source).meta.get("citation", "")))
    items += [(f"neural data: {n.source}", NEURAL.entry(n.source).meta.get("citation", ""))
              for n in cfg.neural if n.source in NEURAL]
    items += [(f"partition: {p.method}", PARTITION_METHODS[p.method].citation)
              for p in cfg.partitions]
    return [(s, c) for s, c in dict.fromkeys(items) if c]


def _run_model(cfg, spec, stimuli, targets, cache, store, run_id, finished, device, summary,
               bar, progress, on_job_done) -> None:
    try:
        adapter = load_model(spec.name, pretrained=spec.pretrained, weights=spec.weights,
                             untrained=spec.untrained, seed=spec.seed, device=device,
                             preprocess=spec.preprocess or None,
                             **spec.kwargs)
        bad_layers: dict[str, str] = {}
        if spec.features == "activations":
            layers, bad_layers = _check_layers(adapter, spec)
        else:  # attention blocks or spatial layers (features.FEATURE_KINDS)
            layers = kind_layers(adapter, spec.features, spec.layers, spec.feature_options,
                                 stimuli)
    except CortexAlignError as err:  # stored: the report lists it from the store
        summary.failures.append({"job": spec.display, "error": str(err)})
        store.add_notes(run_id, "failure", [(spec.display, str(err))])
        return
    _fail_bad_layers(cfg, spec, bad_layers, stimuli, store, run_id, summary)
    jobs = [j for j in plan_model_jobs(cfg, spec, layers, stimuli.content_hash)
            if spec.features != "activations" or not uses_maps(j.metric.name)]
    summary.n_jobs += len(jobs)
    summary.job_keys.update(j.key for j in jobs)
    todo = [j for j in jobs if j.key not in finished]
    summary.n_skipped += len(jobs) - len(todo)
    if not todo:
        return
    needed = list(dict.fromkeys(j.layer for j in todo))
    budget = cfg.max_feature_memory_gb  # over it, features streams them into the cache

    def shrunk(event: BatchShrink) -> None:  # the extraction printed it; the report keeps it
        store.add_notes(run_id, "execution", [(spec.display, event.message)])

    feats = extract(adapter, stimuli, needed, spec.features, spec.kind_options,
                    batch_size=cfg.batch_size, cache=cache, progress=progress,
                    memory_budget=None if budget is None else budget * 1e9, on_shrink=shrunk)
    values = {layer: CachedLayer(cache, f.key, layer, int(budget * 1e9),
                                 maps=FEATURE_KINDS.get(spec.features).maps)
              if f.streamed else f.values for layer, f in feats.items()}
    task = bar.add_task(f"scoring {spec.display}", total=len(todo))
    for k, job in enumerate(todo):
        if k and todo[k - 1].layer != job.layer and isinstance(values[todo[k - 1].layer],
                                                                 CachedLayer):
            values[todo[k - 1].layer].release()  # jobs come layer by layer: free the last one's
        store.start_job(job.key, run_id)  # a crash leaves it 'running' (cortexalign status)
        _run_job(cfg, job, adapter, values[job.layer], targets, store, run_id, summary,
                 stimuli=stimuli)
        after_commit(store, partial(_report_done, bar, task, on_job_done, job))
    if isinstance(store, BatchedWrites):  # the model's last batch: report it now
        store.flush()


def _report_done(bar, task, on_job_done: Callable[[ScoreJob], None] | None,
                 job: ScoreJob) -> None:
    """A job's writes are in the store: advance the progress bar and call the hook."""
    bar.advance(task)
    if on_job_done is not None:
        on_job_done(job)


def _check_layers(adapter, spec) -> tuple[list[str], dict[str, str]]:
    """The valid layers, and each bad one with its error: a bad layer fails its jobs only."""
    if spec.layers == "all":
        return adapter.layers(), {}
    good, bad = [], {}
    for layer in spec.layers:
        try:
            good += [x for x in adapter.check_layers([layer]) if x not in good]
        except CortexAlignError as err:
            bad[layer] = f"{type(err).__name__}: {err}"
    return good, bad


def _fail_bad_layers(cfg, spec, bad_layers, stimuli, store, run_id, summary) -> None:
    """Record every job of a layer the model does not have as failed (the others go on)."""
    for job in plan_model_jobs(cfg, spec, list(bad_layers), stimuli.content_hash):
        if uses_maps(job.metric.name):
            continue
        summary.n_jobs += 1
        summary.job_keys.add(job.key)
        summary.failures.append({"job": job.label, "error": bad_layers[job.layer]})
        store.fail_job(job.key, run_id, bad_layers[job.layer])


def _run_job(cfg, job: ScoreJob, adapter, values, targets, store, run_id, summary, *,
             stimuli: StimulusSet) -> None:
    try:  # one row per group of the target, written together (bench._scoring)
        records = score_job(job, adapter, values, targets[job.target.display], stimuli,
                            n_bootstrap=cfg.n_bootstrap, seed=cfg.seed,
                            n_permutations=cfg.n_permutations)
        store.record_job(job.key, run_id, records)
        summary.n_done += 1
    except Exception as err:  # one job's failure must not stop the others
        record_failure(store, run_id, summary, job.key, job.label, failure_message(err))
