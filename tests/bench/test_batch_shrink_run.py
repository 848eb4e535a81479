"""A run whose extraction runs out of device memory: the batch size is halved, the scores are
those of a run that never ran out, and the run's notes say what happened."""

from __future__ import annotations

import numpy as np
import torch

from cortexalign.bench import _scores, load_config
from cortexalign.bench._run import run_experiment
from cortexalign.results import ResultsStore

CONFIG = {
    "name": "oom",
    "stimuli": {"source": "kriegeskorte92"},
    "models": [{"name": "gabor_v1", "pooling": "grid2", "layers": ["simple", "complex"],
                "kwargs": {"image_size": 48, "image_deg": None, "frequencies": [0.12, 0.25]}}],
    "neural": [{"source": "kriegeskorte92.monkey_IT"}],
    "metrics": [{"name": "rsa"}],
    "n_bootstrap": 0,
    "batch_size": 64,
}


def test_a_run_that_runs_out_of_memory_halves_the_batch_and_notes_it(tmp_path, monkeypatch):
    plain = run_experiment(load_config(dict(CONFIG, batch_size=16)), tmp_path / "plain",
                           progress=False)
    real_load = _scores.load_model

    def load_small_memory(*args, **kwargs):  # a "GPU" that holds 20 images at most
        adapter = real_load(*args, **kwargs)
        forward = adapter.forward_layers

        def forward_layers(x_bchw, layers):
            if len(x_bchw) > 20:
                raise torch.cuda.OutOfMemoryError(f"CUDA out of memory ({len(x_bchw)} images)")
            return forward(x_bchw, layers)

        adapter.forward_layers = forward_layers
        return adapter

    monkeypatch.setattr(_scores, "load_model", load_small_memory)
    shrunk = run_experiment(load_config(CONFIG), tmp_path / "shrunk", progress=False)
    assert plain.ok and shrunk.ok and shrunk.n_done == plain.n_done == 2
    scores = [ResultsStore(d / "results.duckdb", read_only=True).scores_frame()
              for d in (tmp_path / "plain", tmp_path / "shrunk")]
    np.testing.assert_allclose(scores[1]["value"], scores[0]["value"], rtol=1e-6)
    notes = ResultsStore(tmp_path / "shrunk" / "results.duckdb", read_only=True).frame("notes")
    notes = notes[notes["kind"] == "execution"]
    assert [t.split(":")[0] for t in notes["text"]] == [
        "out of device memory at batch size 64", "out of device memory at batch size 32"]
    assert set(notes["subject"]) == {load_config(CONFIG).models[0].display}
