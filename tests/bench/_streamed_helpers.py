"""Shared by the streamed-runner tests: a random-responses target and the stored scores of a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cortexalign.results import ResultsStore
from cortexalign.stimuli import load_stimuli

COLUMNS = ["value", "ci_low", "ci_high", "ceiling_low", "ceiling_high", "p_value"]


def write_random_responses(folder: Path, n_neuroids: int, seed: int = 0) -> str:
    """``folder/planted.npz``: responses (92, n_neuroids, 2) ~ N(0, 1) to the bundled 92 images
    (no signal, 2 repetitions) and their stimulus ids."""
    ids = load_stimuli("kriegeskorte92").ids
    rng = np.random.default_rng(seed)
    path = folder / "planted.npz"
    np.savez(path, responses=rng.normal(size=(len(ids), n_neuroids, 2)), stimulus_ids=np.array(ids))
    return str(path)


def stored_scores(out: Path) -> tuple[list, np.ndarray, list]:
    """Job keys, the ``COLUMNS`` values and each row's ``extra`` (without its timing) of the
    results store in ``out``, rows sorted by job and target."""
    f = ResultsStore(out / "results.duckdb", read_only=True).scores_frame()
    f = f.sort_values(["job_key", "target"]).reset_index(drop=True)
    extra = [json.loads(e) if isinstance(e, str) else e for e in f["extra"]]
    extra = [{k: v for k, v in e.items() if k != "seconds"} for e in extra]
    return list(f["job_key"]), f[COLUMNS].to_numpy(dtype=float), extra


def run_in_memory_and_streamed(config: dict, budget_bytes: float, out: Path, streamed_calls: list,
                               layers: list[str], n_done: int, atol: float):
    """Run ``config`` without and with ``max_feature_memory_gb = budget_bytes``; check that only the
    second took the streamed path (for ``layers``), that both finished ``n_done`` jobs with the
    same job keys, and that the stored scores agree to ``atol``. Returns both runs' ``extra``."""
    from cortexalign.bench import load_config
    from cortexalign.bench._run import run_experiment

    memory = run_experiment(load_config(config), out / "mem", progress=False)
    assert streamed_calls == []
    streamed = run_experiment(load_config(dict(config, max_feature_memory_gb=budget_bytes / 1e9)),
                              out / "stream", progress=False)
    assert streamed_calls == [layers]
    assert memory.ok and streamed.ok and memory.n_done == streamed.n_done == n_done
    keys_m, values_m, extra_m = stored_scores(out / "mem")
    keys_s, values_s, extra_s = stored_scores(out / "stream")
    assert keys_m == keys_s and memory.job_keys == streamed.job_keys
    np.testing.assert_allclose(values_s, values_m, rtol=0, atol=atol, equal_nan=True)
    return extra_m, extra_s


def record_streamed(monkeypatch) -> list:
    """Patch the streamed path of ``features.extract``: the returned list gets the layers of
    each extraction that streamed into the cache (proof the memory budget chose that path)."""
    from cortexalign.features import _extract

    calls, real = [], _extract._streamed

    def recording(cache, names, *args, **kwargs):
        calls.append(list(names))
        return real(cache, names, *args, **kwargs)

    monkeypatch.setattr(_extract, "_streamed", recording)
    return calls

