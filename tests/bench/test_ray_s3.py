"""Ray past one machine without a shared disk: two Ray workers, the feature cache on an S3 server
(moto on 127.0.0.1), the package shipped to the workers, the driver the only store writer.

The run gives the scores of a local run; a worker killed while publishing a cache entry has its
model submitted again and redone, and the half-written entry it left is never visible.

Marked slow: a local Ray with two workers that each unpack the shipped package takes a minute or
more on a loaded 2-core box (tens of seconds on a quiet one).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("moto.server")
pytest.importorskip("s3fs")

from cortexalign.bench import _ray as _ray_module  # noqa: E402
from cortexalign.bench import load_config  # noqa: E402
from cortexalign.bench._run import run_experiment  # noqa: E402
from cortexalign.features import FeatureCache  # noqa: E402
from cortexalign.results import ResultsStore  # noqa: E402

# the worker-side wrapper below travels by value (tests/ is not importable there)
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

_MODEL_TASK = _ray_module._model_task
KW = {"image_size": 48, "image_deg": None}
CONFIG = {
    "name": "ray-s3",
    "stimuli": {"source": "kriegeskorte92"},
    "models": [{"name": "gabor_v1", "label": "fine", "pooling": "grid2",
                "layers": ["simple", "complex"], "kwargs": {**KW, "frequencies": [0.12, 0.25]}},
               {"name": "gabor_v1", "label": "coarse", "pooling": "mean", "layers": ["complex"],
                "kwargs": {**KW, "frequencies": [0.06]}}],
    "neural": [{"source": "kriegeskorte92.monkey_IT"}],
    "metrics": [{"name": "rsa"}],
    "n_bootstrap": 5,
    "batch_size": 46,
}
#: set by the test: the file whose absence makes the first publish of model 'coarse' die
KILL_MARKER = ""


def _dies_once_while_publishing(work, ctx, unit, cache_root):
    """The workers' body; model 'coarse' kills its worker the first time it would publish a
    cache entry: its data are written, its manifest not."""
    from cortexalign.features import _cache_remote

    real = _cache_remote.RemoteFeatureCache._publish

    def publish(self, tmp, dest):
        if unit.label == "coarse" and not os.path.exists(KILL_MARKER):
            open(KILL_MARKER, "w").close()
            os._exit(1)  # the worker process dies (think: a node lost, killed for memory)
        return real(self, tmp, dest)

    _cache_remote.RemoteFeatureCache._publish = publish
    try:
        yield from _MODEL_TASK(work, ctx, unit, cache_root)
    finally:
        _cache_remote.RemoteFeatureCache._publish = real


def _scores(out):
    f = ResultsStore(out / "results.duckdb", read_only=True).scores_frame()
    return f.sort_values(["model", "layer"]).reset_index(drop=True)[
        ["model", "layer", "target", "metric", "value", "ci_low", "ci_high"]]


@pytest.mark.slow
def test_two_ray_workers_on_s3_score_as_locally_and_redo_a_killed_worker(
        s3, tmp_path, monkeypatch):
    global KILL_MARKER
    KILL_MARKER = str(tmp_path / "killed-once")
    url = f"s3://cortexalign-test/run-{os.getpid()}"
    local = run_experiment(load_config(CONFIG), tmp_path / "local", progress=False)
    monkeypatch.setattr(_ray_module, "_model_task", _dies_once_while_publishing)
    assert not ray.is_initialized()  # the run starts Ray (2 workers) with the package shipped
    cfg = load_config(dict(CONFIG, executor="ray", ray={"num_workers": 2}, cache_dir=url,
                           cache_storage_options=s3))
    remote = run_experiment(cfg, tmp_path / "ray", progress=False)
    assert not ray.is_initialized()  # and shut it down
    assert os.path.exists(KILL_MARKER)  # a worker did die mid-publish
    assert local.ok and remote.ok, remote.failures
    assert (remote.n_jobs, remote.n_done) == (local.n_jobs, local.n_done) == (3, 3)
    a, b = _scores(tmp_path / "local"), _scores(tmp_path / "ray")
    assert list(a["layer"]) == list(b["layer"])
    np.testing.assert_allclose(b[["value", "ci_low", "ci_high"]].to_numpy(),
                               a[["value", "ci_low", "ci_high"]].to_numpy(), rtol=1e-12)
    # the driver wrote nothing to the feature cache on its disk; the workers wrote S3
    assert not (tmp_path / "ray" / "cache").exists() or \
        not any((tmp_path / "ray" / "cache").iterdir())
    cache = FeatureCache(url, storage_options=s3)
    keys = cache.keys()
    assert len(keys) == 3  # fine: simple, complex; coarse: complex (published by the retry)
    for key in keys:  # every visible entry is whole: read and verified against its digests
        assert cache.get(key) is not None
    # the killed worker's half-written entry: data on the store, no manifest, never an entry
    assert cache.summary().n_partial == 1
    assert cache.cleanup() == 1 and len(cache.keys()) == 3  # its writer (this host) is gone
