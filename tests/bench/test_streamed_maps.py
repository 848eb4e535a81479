"""Map features (attention, conv_map) on the streamed path (max_feature_memory_gb, issue 9):
``features.extract`` over its memory budget writes, batch by batch, the entries it stores in
memory, and a run over the budget gives the in-memory run's scores."""

from __future__ import annotations

import numpy as np
import pytest
from _streamed_helpers import (  # on sys.path (pytest)
    record_streamed,
    run_in_memory_and_streamed,
    write_random_responses,
)

from cortexalign.bench import load_config
from cortexalign.bench._run import run_experiment
from cortexalign.errors import InputError
from cortexalign.features import FeatureCache, _kinds, extract, kind_layers, plan_extraction
from cortexalign.models import load_model
from cortexalign.stimuli import StimulusSet, load_stimuli

SAM_TINY = {"name": "sam_vit_b", "untrained": True, "kwargs": {"tiny": True, "img_size": 64}}


@pytest.fixture(scope="module")
def model():
    return load_model(SAM_TINY["name"], untrained=True, device="cpu", **SAM_TINY["kwargs"])


@pytest.fixture(scope="module")
def stim():
    imgs = np.random.default_rng(0).integers(0, 256, (5, 48, 48, 3), dtype=np.uint8)
    return StimulusSet.from_arrays(imgs, ids=[f"s{i}" for i in range(5)])


@pytest.fixture
def writes(monkeypatch) -> list:
    """(key, start, rows) of every CacheWriter.write call (the per-batch write pattern)."""
    calls: list = []
    real = FeatureCache.writer

    def recording(self, key, shape, dtype, metadata=None, chunk_rows=None):
        w = real(self, key, shape, dtype, metadata, chunk_rows)
        write = w.write

        def record(start, block):
            calls.append((key, start, np.asarray(block).shape))
            write(start, block)

        w.write = record
        return w

    monkeypatch.setattr(FeatureCache, "writer", recording)
    return calls


@pytest.mark.parametrize("kind,options,layers", [
    ("attention", {}, "all"), ("attention", {"reduction": "rollout"}, "all"),
    ("conv_map", {}, ["neck"]), ("conv_map", {"kind": "topk", "k": 4}, ["neck"])])
def test_streamed_entries_equal_the_in_memory_ones(tmp_path, model, stim, writes, kind, options,
                                                  layers):
    names = kind_layers(model, kind, layers, options, stim)
    cache_s, cache_m = FeatureCache(tmp_path / "s"), FeatureCache(tmp_path / "m")
    streamed = extract(model, stim, names, kind, options, batch_size=2, cache=cache_s,
                       progress=False, memory_budget=0)
    assert list(streamed) == names and all(f.streamed for f in streamed.values())
    keys = {n: f.key for n, f in streamed.items()}
    # one write per batch per layer, in order: never more than one batch of maps at a time
    for n in names:
        got = [(start, shape[0]) for key, start, shape in writes if key == keys[n]]
        assert got == [(0, 2), (2, 2), (4, 1)], n
    in_memory = extract(model, stim, names, kind, options, batch_size=2, cache=cache_m,
                        progress=False)
    assert not any(f.streamed for f in in_memory.values())
    assert all(shape[0] == len(stim) for _, _, shape in writes[-len(names):])  # put: one block
    writes.clear()
    assert sorted(cache_m.keys()) == sorted(keys.values())  # same keys
    for n in names:
        (a, meta_s), (b, meta_m) = cache_s.get(keys[n]), cache_m.get(keys[n])
        assert np.array_equal(a, b) and np.array_equal(a, in_memory[n].values) and a.ndim == 3
        assert np.array_equal(streamed[n].values.read(), a)
        assert a.dtype == np.float32
        assert {k: v for k, v in meta_s.items() if k != "created"} == \
            {k: v for k, v in meta_m.items() if k != "created"}  # digests, layout, metadata
    # cached with the same stimulus ids: skipped, nothing written again
    again = extract(model, stim, names, kind, options, cache=cache_s, progress=False,
                    memory_budget=0)
    assert {n: f.key for n, f in again.items()} == keys
    assert all(f.from_cache for f in again.values()) and writes == []


def _nan_in_second_batch(monkeypatch, layer_index: int) -> list:
    """Make the second 2-image batch of each extraction give a NaN in one attention layer;
    returns the list to clear between calls."""
    real, seen = _kinds.attention_maps, []

    def maps_with_nan(module, x_bchw, blocks, **kwargs):
        maps = real(module, x_bchw, blocks=blocks, **kwargs)
        seen.append(len(x_bchw))
        if seen.count(2) == 2 and len(x_bchw) == 2:
            bad = maps[blocks[layer_index]].clone()
            bad[0, 0, 0] = float("nan")
            maps = {**maps, blocks[layer_index]: bad}
        return maps

    monkeypatch.setattr(_kinds, "attention_maps", maps_with_nan)
    return seen


def test_a_nan_batch_caches_nothing_and_raises(tmp_path, model, stim, monkeypatch, writes):
    names = kind_layers(model, "attention", "all", {}, stim)
    seen = _nan_in_second_batch(monkeypatch, 1)
    cache = FeatureCache(tmp_path / "cache")
    with pytest.raises(InputError, match="NaN/Inf attention maps in layer 'blocks.1.attn'") \
            as err:
        extract(model, stim, names, "attention", batch_size=2, cache=cache, progress=False,
                memory_budget=0)
    assert len(cache) == 0 and list((tmp_path / "cache").iterdir()) == []  # no tmp left over
    assert writes  # the first batch was written before the NaN one: all of it discarded
    seen.clear()
    with pytest.raises(InputError) as ref:  # the in-memory path: the same error, nothing cached
        extract(model, stim, names, "attention", batch_size=2, cache=cache, progress=False)
    assert str(err.value) == str(ref.value) and len(cache) == 0


def test_a_cache_that_is_not_a_feature_cache_is_refused(model, stim):
    with pytest.raises(InputError, match="FeatureCache"):
        extract(model, stim, ["neck"], "conv_map", cache=str(stim), memory_budget=0)
    with pytest.raises(InputError, match="cache"):  # streaming needs a cache
        extract(model, stim, ["neck"], "conv_map", memory_budget=0)


# -- the runner -----------------------------------------------------------------------------

ATTN = dict(SAM_TINY, features="attention", layers=["blocks.1.attn", "blocks.3.attn"])
METRICS = [{"name": "rsa"}, {"name": "cka_linear"},
           {"name": "map_pearson", "options": {"n_splits": 2}}]


@pytest.fixture(scope="module")
def responses_file(tmp_path_factory):
    return write_random_responses(tmp_path_factory.mktemp("neural"), n_neuroids=6)


def _config(responses: str, **extra) -> dict:
    return {"name": "streamed-maps", "stimuli": {"source": "kriegeskorte92"}, "models": [ATTN],
            "neural": [{"source": responses}], "metrics": METRICS, "n_bootstrap": 3,
            "n_permutations": 4, "batch_size": 40, **extra}


@pytest.fixture
def streamed_calls(monkeypatch) -> list:
    """The layers each streamed extraction of the runner wrote."""
    return record_streamed(monkeypatch)


def test_streamed_maps_give_the_in_memory_scores(tmp_path, model, responses_file,
                                                 streamed_calls):
    stimuli = load_stimuli("kriegeskorte92")
    spec = load_config(_config(responses_file)).models[0]
    layer_bytes = [plan_extraction(model, stimuli, [n], spec.features, spec.kind_options,
                                   memory_budget=0).bytes for n in ATTN["layers"]]
    assert layer_bytes == [len(stimuli) * 4 * 4 * 4] * 2  # (92, 4, 4) float32 per block
    budget = max(layer_bytes) * 1.01  # each layer's maps fit alone, both together do not
    extra_m, extra_s = run_in_memory_and_streamed(_config(responses_file), budget, tmp_path,
                                                  streamed_calls, ATTN["layers"], 6, 1e-9)
    maps_m = [e["per_neuroid"] for e in extra_m if "per_neuroid" in e]
    maps_s = [e["per_neuroid"] for e in extra_s if "per_neuroid" in e]
    assert len(maps_m) == 2 and np.allclose(maps_s, maps_m, rtol=0, atol=1e-9)
    assert len(FeatureCache(tmp_path / "stream" / "cache")) == 2


def test_a_map_metric_over_the_budget_fails_its_job_only(tmp_path, responses_file,
                                                         streamed_calls):
    summary = run_experiment(load_config(_config(responses_file, max_feature_memory_gb=1e-6)),
                             tmp_path / "out", progress=False)
    assert streamed_calls == [ATTN["layers"]]
    assert summary.n_done == 4 and len(summary.failures) == 2  # rsa, cka streamed; maps fail
    for failure in summary.failures:
        msg = failure["error"]
        assert "map_pearson" in failure["job"] and "InputError" in msg
        assert "max_feature_memory_gb = 1e-06 GB" in msg and "92 stimuli x 16" in msg
        assert "cannot be pooled further" in msg and "pooling: mean" not in msg  # maps' advice
