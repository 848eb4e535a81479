"""The Ray executor on a local CPU-only Ray (2 CPUs): the same score table as the local executor,
the same resume semantics, failures recorded, and a worker that dies recorded as failed."""

from __future__ import annotations

import os
import sys
import time

import pytest
import ray

from cortexalign.bench import _executors as ex
from cortexalign.bench import load_config
from cortexalign.bench._ray import RayExecutor
from cortexalign.bench._run import RunSummary, run_experiment
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
def test_ray_and_local_give_identical_tables_and_share_resume(local_ray, tmp_path):
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


def _dies(cfg, spec, stimuli, targets, cache, store, run_id, finished, device, summary, bar,
          progress, on_job_done):
    store.start_job(f"{spec.display}-1", run_id)
    if spec.display == "gabor_v1":
        time.sleep(0.5)  # usually lets the start reach the driver first (either order is fine)
        os._exit(1)  # the worker process dies mid-job (think: killed for memory)
    store.record_job(f"{spec.display}-1", run_id, [])
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
    ctx = ex.RunContext(cfg, None, {}, type("C", (), {"root": tmp_path})(), store, "run", set(),
                        "cpu", summary, False, None)
    executor = RayExecutor(cfg)
    executor.open()
    executor.run(_dies, ctx)
    executor.close()
    started = {key for name, key in store.calls if name == "start_job"}
    closed = {key for name, key in store.calls if name in ("fail_job", "record_job")}
    assert started == closed  # a job the driver saw start is never left 'running'
    assert ("record_job", "coarse-1") in store.calls and ("record_job", "gabor_v1-1") not in \
        store.calls
    assert summary.n_done == 1 and [f["job"] for f in summary.failures] == ["gabor_v1"]
    assert "WorkerCrashedError" in summary.failures[0]["error"]
