"""Executors without Ray: dispatch, the worker-side store proxy, the driver's event writer,
the Ray address probe, and a run through the event path equal to a local run."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import numpy as np
import pytest

from cortexalign.bench import ConfigError, Unit, load_config
from cortexalign.bench import _executors as ex
from cortexalign.bench._ray import probe_address
from cortexalign.bench._run import RunSummary, run_experiment
from cortexalign.errors import InputError
from cortexalign.results import ResultsStore, ScoreRecord

BASE = {
    "stimuli": {"source": "kriegeskorte92"},
    "models": [{"name": "gabor_v1"}],
    "neural": [{"source": "kriegeskorte92.human_IT"}],
    "metrics": [{"name": "rsa"}],
}
# a small Gabor bank on 48-px images: one extraction takes a fraction of a second
SMALL = {
    "name": "executors",
    "stimuli": {"source": "kriegeskorte92"},
    "models": [{"name": "gabor_v1", "pooling": "grid2", "layers": ["simple", "complex", "nope"],
                "kwargs": {"image_size": 48, "image_deg": None, "frequencies": [0.12, 0.25]}}],
    "neural": [{"source": "kriegeskorte92.monkey_IT"}],
    "metrics": [{"name": "rsa"}, {"name": "rsa", "options": {"compare": "pearson"}}],
    "n_bootstrap": 5,
    "batch_size": 46,
}


@pytest.mark.parametrize("name", sorted(ex.EXECUTORS))
def test_every_executor_is_built_from_the_config(name):
    executor = ex.make_executor(load_config(dict(BASE, executor=name)))
    assert executor.name == name


def test_unknown_executor_and_ray_keys_are_named():
    with pytest.raises(ConfigError, match="executor"):
        load_config(dict(BASE, executor="dask"))
    with pytest.raises(ConfigError, match=r"ray\.num_worker: unknown key. Did you mean "
                                          r"'num_workers'"):
        load_config(dict(BASE, executor="ray", ray={"num_worker": 2}))
    with pytest.raises(ConfigError, match="ray.timeout_s"):
        load_config(dict(BASE, ray={"timeout_s": 0}))


def test_where_jobs_run_is_not_part_of_the_config_hash():
    a = load_config(BASE)
    b = load_config(dict(BASE, executor="ray", ray={"address": "auto", "num_workers": 4}))
    assert a.config_hash() == b.config_hash()
    assert a.config_hash() != load_config(dict(BASE, seed=1)).config_hash()


def test_store_proxy_turns_writes_into_events_and_refuses_reads():
    events = []
    proxy = ex.StoreProxy(events.append)
    proxy.start_job("k1", "run")
    proxy.fail_job("k1", "run", error="boom")
    assert events == [("store", "start_job", ("k1", "run"), {}),
                      ("store", "fail_job", ("k1", "run"), {"error": "boom"})]
    with pytest.raises(AttributeError, match="reads belong in the driver"):
        proxy.finished_jobs()


def _record(value: float) -> ScoreRecord:
    return ScoreRecord(model="m", model_id="m@x", layer="l", target="t", metric="rsa",
                       value=value, n_stimuli=3)


def _ctx(tmp_path: Path, store: ResultsStore, run_id: str, done: list) -> ex.RunContext:
    cfg = load_config(BASE)
    return ex.RunContext(cfg, store, run_id, RunSummary(run_id, tmp_path), device="cpu",
                         on_job_done=done.append)


def _unit(ctx: ex.RunContext) -> Unit:
    spec = ctx.config.models[0]
    return Unit("scores", spec.display, spec)


def test_event_writer_writes_dedups_and_fails_refused_records(tmp_path):
    store = ResultsStore(tmp_path / "r.duckdb")
    run = store.start_run("x: 1")
    done: list = []
    ctx = _ctx(tmp_path, store, run, done)
    writer = ex.EventWriter(ctx, _unit(ctx))
    for event in [("store", "start_job", ("a", run), {}),
                  ("store", "record_job", ("a", run, [_record(0.5)]), {}),
                  ("done", "job-a"),
                  ("store", "record_job", ("a", run, [_record(0.5)]), {}),  # a retry: dropped
                  ("store", "start_job", ("b", run), {}),
                  ("store", "record_job", ("b", run, [_record(math.nan)]), {}),  # NaN: refused
                  ("store", "start_job", ("c", run), {}),
                  ("end", {"n_jobs": 3, "n_done": 2, "n_skipped": 0, "failures": [],
                           "job_keys": ["a", "b", "c"]})]:
        writer.apply(event)
    writer.lost(RuntimeError("worker died"))
    assert done == ["job-a"]
    assert len(store.scores_frame()) == 1 and store.finished_jobs() == {"a"}
    jobs = store.frame("jobs").set_index("job_key")
    assert jobs.loc["b", "status"] == "failed" and "NaN" in jobs.loc["b", "error"]
    assert jobs.loc["c", "status"] == "failed" and "worker died" in jobs.loc["c", "error"]
    s = ctx.summary
    assert (s.n_jobs, s.n_done, s.job_keys) == (3, 1, {"a", "b", "c"})
    assert [f["error"].splitlines()[0] for f in s.failures][-1] == "RuntimeError: worker died"


def test_model_events_reraise_a_crash_after_the_events_it_made(tmp_path):
    def work(ctx, unit):
        ctx.store.start_job("k", ctx.run_id)
        raise MemoryError("out of memory")

    ctx = _ctx(tmp_path, None, "run", [])
    gen = ex.model_events(work, ctx, _unit(ctx), str(tmp_path / "cache"), "cpu")
    assert next(gen) == ("store", "start_job", ("k", "run"), {})
    with pytest.raises(MemoryError):
        next(gen)


class _EventsInProcess(ex.LocalExecutor):
    """The Ray executor's path (proxy -> events -> driver writes) without Ray."""

    def run(self, work, ctx, units):
        for unit in units:
            writer = ex.EventWriter(ctx, unit)
            for event in ex.model_events(work, ctx, unit, str(ctx.cache.root), ctx.device):
                writer.apply(event)


def _scores(out: Path):
    f = ResultsStore(out / "results.duckdb", read_only=True).scores_frame()
    return f.sort_values(["layer", "metric", "value"])[["layer", "value", "ci_low", "ci_high"]]


def _unbuildable(name, **kwargs):
    """A model whose architecture cannot be built ahead on the meta device: its layers are then
    checked where it runs, and a bad one fails its own jobs (the run's validation pass checks
    them first otherwise, tests/test_cli_first_hour.py)."""
    raise NotImplementedError("no meta-device build")


def test_event_path_gives_the_local_table_and_records_the_bad_layer(tmp_path, monkeypatch):
    import cortexalign.models

    monkeypatch.setattr(cortexalign.models, "load_architecture", _unbuildable)
    cfg = load_config(SMALL)
    local = run_experiment(cfg, tmp_path / "local", progress=False)
    monkeypatch.setitem(ex.EXECUTORS, "local", _EventsInProcess)
    events = run_experiment(cfg, tmp_path / "events", progress=False)
    for s in (local, events):  # 2 layers x 2 metrics scored; the bad layer's 2 jobs failed
        assert (s.n_jobs, s.n_done, len(s.failures)) == (6, 4, 2)
        assert all("unknown layer 'nope'" in f["error"] for f in s.failures)
    a, b = _scores(tmp_path / "local"), _scores(tmp_path / "events")
    assert list(a["layer"]) == list(b["layer"])
    np.testing.assert_array_equal(a[["value", "ci_low", "ci_high"]].to_numpy(),
                                  b[["value", "ci_low", "ci_high"]].to_numpy())
    jobs = ResultsStore(tmp_path / "events" / "results.duckdb", read_only=True).frame("jobs")
    assert sorted(jobs["status"]) == ["failed"] * 2 + ["finished"] * 4


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_probe_fails_on_a_refused_port_and_on_a_silent_listener():
    with pytest.raises(InputError, match="a Ray cluster that answers"):
        probe_address(f"127.0.0.1:{_closed_port()}", timeout_s=2)
    with socket.socket() as silent:  # accepts connections (backlog) but never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        with pytest.raises(InputError, match="waited at most 0.5 s"):
            probe_address(f"ray://127.0.0.1:{port}", timeout_s=0.5)
    with pytest.raises(InputError, match="ray.address"):
        probe_address("not an address:xyz", timeout_s=0.5)


def test_a_dead_ray_address_stops_the_run_before_anything_is_written(tmp_path):
    models = [dict(SMALL["models"][0], layers=["simple", "complex"])]
    cfg = load_config(dict(SMALL, models=models, executor="ray",
                           ray={"address": f"127.0.0.1:{_closed_port()}", "timeout_s": 2}))
    with pytest.raises(InputError, match="ray.address"):
        run_experiment(cfg, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
