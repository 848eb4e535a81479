"""The Ray executor on a local CPU-only Ray (2 CPUs): the same score table as the local executor,
the same resume semantics, failures recorded, and a worker that dies recorded as failed. With
partitions: the same rows as the local executor, read from the cache the workers wrote (no
forward pass in the driver), resumed after a kill; with a cache the driver cannot see, the
driver extracts the sets itself and logs it."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

import numpy as np
import pytest
import ray

from cortexalign.bench import Unit, load_config
from cortexalign.bench import _executors as ex
from cortexalign.bench import _ray as _ray_module
from cortexalign.bench._partitions import PartitionJob
from cortexalign.bench._ray import RayExecutor
from cortexalign.bench._run import RunSummary, run_experiment
from cortexalign.features import FeatureCache, _extract
from cortexalign.results import ResultsStore

# make the worker-side helpers of this module travel by value (tests/ is not importable there)
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

SMALL = {
    "name": "ray",
    "stimuli": {"source": "kriegeskorte92"},
    "models": [
        {"name": "gabor_v1", "pooling": "grid2", "layers": ["simple", "complex", "nope"],
         "kwargs": {"image_size": 48, "image_deg": None, "frequencies": [0.12, 0.25]}},
        {"name": "gabor_v1", "label": "coarse", "pooling": "mean", "layers": ["complex"],
         "kwargs": {"image_size": 48, "image_deg": None, "frequencies": [0.06]}},
    ],
    "neural": [{"source": "kriegeskorte92.monkey_IT"}],
    "metrics": [{"name": "rsa"}, {"name": "rsa", "options": {"compare": "pearson"}}],
    "n_bootstrap": 5,
    "batch_size": 46,
}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def _table(out):
    f = ResultsStore(out / "results.duckdb", read_only=True).scores_frame()
    return f.sort_values(["model", "layer", "metric"]).reset_index(drop=True)[
        ["model", "layer", "target", "metric", "value", "ci_low", "ci_high", "ceiling_low"]]


@pytest.mark.slow
def test_ray_and_local_give_identical_tables_and_share_resume(local_ray, tmp_path, monkeypatch):
    import cortexalign.models

    def unbuildable(name, **kwargs):  # layers checked on the workers: the bad one fails there
        raise NotImplementedError("no meta-device build")

    monkeypatch.setattr(cortexalign.models, "load_architecture", unbuildable)
    local_cfg = load_config(SMALL)
    ray_cfg = load_config(dict(SMALL, executor="ray", ray={"num_workers": 2}))
    local = run_experiment(local_cfg, tmp_path / "local", progress=False)
    remote = run_experiment(ray_cfg, tmp_path / "ray", progress=False)
    for s in (local, remote):  # 3 layers x 2 metrics scored, the bad layer's 2 jobs failed
        assert (s.n_jobs, s.n_done, len(s.failures)) == (8, 6, 2)
    assert _table(tmp_path / "local").equals(_table(tmp_path / "ray"))
    jobs = ResultsStore(tmp_path / "ray" / "results.duckdb", read_only=True).frame("jobs")
    failed = jobs[jobs["status"] == "failed"]
    assert len(failed) == 2 and failed["error"].str.contains("unknown layer 'nope'").all()
    # a rerun on Ray of the local results skips every finished job (executor not in the hash)
    again = run_experiment(ray_cfg, tmp_path / "local", progress=False)
    assert (again.n_done, again.n_skipped) == (0, 6)
    assert ray.is_initialized()  # the caller's Ray is left running


def _dies(ctx, unit):
    store, run_id, summary = ctx.store, ctx.run_id, ctx.summary
    store.start_job(f"{unit.label}-1", run_id)
    if unit.label == "gabor_v1":
        time.sleep(0.5)  # usually lets the start reach the driver first (either order is fine)
        os._exit(1)  # the worker process dies mid-job (think: killed for memory)
    store.record_job(f"{unit.label}-1", run_id, [])
    summary.n_jobs += 1
    summary.n_done += 1


class _Store:
    """Records the driver's writes."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, args[0]))


@pytest.mark.slow
def test_a_worker_that_dies_is_recorded_and_the_others_finish(local_ray, tmp_path):
    cfg = load_config(dict(SMALL, executor="ray"))
    store, summary = _Store(), RunSummary("run", tmp_path)
    ctx = ex.RunContext(cfg, store, "run", summary, cache=type("C", (), {"url": str(tmp_path)})(),
                        device="cpu")
    executor = RayExecutor(cfg)
    executor.open()
    executor.run(_dies, ctx, [Unit("scores", m.display, m) for m in cfg.models])
    executor.close()
    started = {key for name, key in store.calls if name == "start_job"}
    closed = {key for name, key in store.calls if name in ("fail_job", "record_job")}
    assert started == closed  # a job the driver saw start is never left 'running'
    assert ("record_job", "coarse-1") in store.calls and ("record_job", "gabor_v1-1") not in \
        store.calls
    assert summary.n_done == 1 and [f["job"] for f in summary.failures] == ["gabor_v1"]
    assert "WorkerCrashedError" in summary.failures[0]["error"]


# -- partitions under executor: ray ------------------------------------------------------------
_MODEL_TASK = _ray_module._model_task  # the workers' body, before any test replaces it

KW = {"image_size": 48, "image_deg": None}
PARTITIONED = {
    "name": "ray-partitions",
    "stimuli": {"source": "kriegeskorte92"},
    "models": [{"name": "gabor_v1", "label": "low", "pooling": "grid2", "layers": ["complex"],
                "kwargs": {**KW, "frequencies": [0.06]}},
               {"name": "gabor_v1", "label": "high", "pooling": "grid2", "layers": ["complex"],
                "kwargs": {**KW, "frequencies": [0.25]}}],
    "metrics": [{"name": "rsa"}],
    "n_bootstrap": 0,
    "batch_size": 46,
    "seed": 3,
    "partitions": [
        {"name": "vpa", "method": "variance_partitioning",
         "sets": {"low": {"model": "low", "layer": "complex"},
                  "high": {"model": "high", "layer": "complex"}},
         "options": {"n_folds": 3, "alphas": [0.1, 10.0, 1000.0], "inner_folds": 3}},
        {"name": "band", "method": "banded_ridge",
         "sets": {"low": {"model": "low", "layer": "complex"},
                  "high": {"model": "high", "layer": "complex"}},
         "options": {"n_folds": 3, "alphas": [0.1, 10.0, 1000.0], "n_iter": 3,
                     "inner_folds": 3}},
    ],
}


@pytest.fixture(scope="module")
def partitioned(tmp_path_factory):
    """The config (random responses of 6 neuroids as the target) and its local run's rows."""
    from cortexalign.stimuli import load_stimuli

    path = tmp_path_factory.mktemp("neural") / "responses.npz"
    rng = np.random.default_rng(1)
    np.savez(path, responses=rng.normal(size=(92, 6)),
             stimulus_ids=np.array(load_stimuli("kriegeskorte92").ids))
    cfg = dict(PARTITIONED, neural=[{"source": str(path), "label": "responses"}])
    out = tmp_path_factory.mktemp("local")
    assert run_experiment(load_config(cfg), out, progress=False).ok
    return cfg, _partition_rows(out)


def _partition_rows(out) -> dict:
    rows = ResultsStore(out / "results.duckdb", read_only=True).partitions_frame()
    return {(r.job_key, r.kind, r.name): np.array(json.loads(r.neuroid_values), dtype=float)
            for r in rows.itertuples()}


def _assert_same_rows(got: dict, want: dict) -> None:
    assert set(got) == set(want) and len(want) == 11  # vpa: 3 r2 + 3 components; band: 5
    for k, values in want.items():
        np.testing.assert_allclose(got[k], values, rtol=0, atol=1e-10, err_msg=str(k))


@pytest.fixture
def driver_passes(monkeypatch) -> list[int]:
    """Batches forwarded in this process (the driver): the workers' are in theirs."""
    calls: list[int] = []
    real = _extract.run_batches

    def counted(adapter, stimuli, *args, **kwargs):
        calls.append(len(stimuli))
        return real(adapter, stimuli, *args, **kwargs)

    monkeypatch.setattr(_extract, "run_batches", counted)
    return calls


@pytest.mark.slow
def test_partitions_on_ray_read_the_workers_cache_and_resume(local_ray, partitioned, tmp_path,
                                                             driver_passes, caplog):
    config, want = partitioned
    cfg = load_config(dict(config, executor="ray", ray={"num_workers": 2}))
    killed = []

    def kill_after_first_partition(job):
        if isinstance(job, PartitionJob):
            killed.append(job.spec.name)
            raise KeyboardInterrupt

    with caplog.at_level(logging.INFO, logger="cortexalign.bench"):
        with pytest.raises(KeyboardInterrupt):
            run_experiment(cfg, tmp_path, progress=False, on_job_done=kill_after_first_partition)
        assert killed == ["vpa"]
        again = run_experiment(cfg, tmp_path, progress=False)
    # 2 rsa score jobs + vpa were done by the killed run (a job is reported once committed:
    # band too when its batch was committed with vpa's); the rest runs now
    assert again.ok and again.n_jobs == 4 and again.n_done in (0, 1)
    assert again.n_skipped == 4 - again.n_done
    _assert_same_rows(_partition_rows(tmp_path), want)
    # the workers wrote both sets; the driver read them: no forward pass here, nothing logged
    assert len(FeatureCache(tmp_path / "cache").keys()) == 2
    assert driver_passes == [] and "extracting in the driver" not in caplog.text


def _workers_elsewhere(work, ctx, unit, cache_root):
    """The workers' body with a cache the driver does not read (think: another machine)."""
    yield from _MODEL_TASK(work, ctx, unit, cache_root + "-workers")


@pytest.mark.slow
def test_partitions_on_ray_without_the_workers_cache_extract_in_the_driver(
        local_ray, partitioned, tmp_path, driver_passes, caplog, monkeypatch):
    config, want = partitioned
    monkeypatch.setattr(_ray_module, "_model_task", _workers_elsewhere)
    cfg = load_config(dict(config, executor="ray"))
    with caplog.at_level(logging.WARNING, logger="cortexalign.bench"):
        summary = run_experiment(cfg, tmp_path, progress=False)
    assert summary.ok and summary.n_done == 4
    _assert_same_rows(_partition_rows(tmp_path), want)
    assert len(FeatureCache(tmp_path / "cache-workers").keys()) == 2  # where the workers wrote
    assert driver_passes == [92, 92]  # each model's set, once, in the driver
    assert "low/complex, high/complex not in the feature cache" in caplog.text
    assert "extracting in the driver" in caplog.text and "driver and the workers share" in \
        caplog.text
