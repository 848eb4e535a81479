"""Automatic batch size and the halving on out-of-memory, on the CPU with injected device memory.

A fake adapter raises torch's CUDA out-of-memory error for batches above a size, as a GPU would;
the extraction must end with the values of batch size 1, print and report the halving, and
forward every stimulus exactly once in a batch that succeeded (finished work is never redone).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _features_standin import TinyAdapter, make_stimuli

from cortexalign.features import FeatureCache, extract, extract_features
from cortexalign.features._batching import (
    CPU_BATCH_SIZE,
    MEMORY_FRACTION,
    BatchShrink,
    auto_batch_size,
    batch_size_for,
    is_out_of_memory,
    run_shrinking,
)

LAYERS = ["conv1", "tokens", "head"]


def extract_to_cache(adapter, stimuli, layers, cache, **kwargs) -> dict[str, str]:
    """The streamed path of ``extract`` (a memory budget of 0 bytes): layer -> cache key."""
    feats = extract(adapter, stimuli, layers, cache=cache, memory_budget=0, **kwargs)
    return {layer: f.key for layer, f in feats.items()}


class OomAdapter(TinyAdapter):
    """Runs out of "device memory" on batches of more than ``most`` images."""

    def __init__(self, most: int, **kwargs):
        super().__init__(**kwargs)
        self.most, self.ok_sizes, self.failed_sizes = most, [], []

    def forward_layers(self, x_bchw, layers):
        if len(x_bchw) > self.most:
            self.failed_sizes.append(len(x_bchw))
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate {len(x_bchw)} GiB")
        self.ok_sizes.append(len(x_bchw))
        return super().forward_layers(x_bchw, layers)


class FakeMemory:
    """Device counters of a device with ``free`` bytes where each probed image takes
    ``per_image`` bytes on top of ``held`` (weights)."""

    def __init__(self, free: int, per_image: int, held: int = 1000, probe_oom_above: int = 99):
        self.free_bytes, self.per_image, self.held = free, per_image, held
        self.probe_oom_above = probe_oom_above
        self.current_peak = held
        self.released = 0

    def free(self) -> int:
        return self.free_bytes

    def reset_peak(self) -> int:
        self.current_peak = self.held
        return self.held

    def peak(self) -> int:
        return self.current_peak

    def release(self) -> None:
        self.released += 1

    def probe(self, b: int) -> None:  # stands for the forward pass on b images
        if b > self.probe_oom_above:
            self.current_peak = self.held + 10 * self.per_image
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (probe)")
        self.current_peak = self.held + b * self.per_image


def test_oom_halves_until_it_fits_and_gives_the_batch_size_1_values():
    stimuli = make_stimuli(n=23)
    want = extract_features(TinyAdapter(), stimuli, LAYERS, batch_size=1, progress=False)
    adapter = OomAdapter(most=5)
    events: list[BatchShrink] = []
    got = extract_features(adapter, stimuli, LAYERS, batch_size=16, progress=False,
                           on_shrink=events.append)
    for layer in LAYERS:
        np.testing.assert_allclose(got[layer].values, want[layer].values, rtol=1e-5, atol=1e-6)
    assert [(e.old, e.new) for e in events] == [(16, 8), (8, 4)]
    assert all("out of memory" in e.error for e in events)
    # every stimulus went through exactly one successful forward pass: nothing finished redone
    assert sum(adapter.ok_sizes) == len(stimuli)
    assert adapter.failed_sizes == [16, 8]


def test_oom_after_some_batches_keeps_them_and_resumes_where_they_ended(capsys):
    stimuli = make_stimuli(n=20)
    want = extract_features(TinyAdapter(), stimuli, LAYERS, batch_size=1, progress=False)

    class LateOom(OomAdapter):  # the third batch is the first too big (a larger image, say)
        def forward_layers(self, x_bchw, layers):
            self.most = 6 if len(self.ok_sizes) < 2 else 3
            return super().forward_layers(x_bchw, layers)

    adapter = LateOom(most=6)
    events: list[BatchShrink] = []
    got = extract_features(adapter, stimuli, LAYERS, batch_size=6, progress=False,
                           on_shrink=events.append)
    for layer in LAYERS:
        np.testing.assert_allclose(got[layer].values, want[layer].values, rtol=1e-5, atol=1e-6)
    assert [(e.old, e.new, e.start) for e in events] == [(6, 3, 12)]
    assert adapter.ok_sizes == [6, 6, 3, 3, 2]
    err = capsys.readouterr().err
    assert "out of device memory at batch size 6" in err and "batch size 3" in err


def test_oom_while_streaming_into_the_cache_publishes_the_batch_size_1_entry(tmp_path):
    stimuli = make_stimuli(n=17)
    want = extract_features(TinyAdapter(), stimuli, LAYERS, batch_size=1, progress=False)
    cache = FeatureCache(tmp_path / "cache")
    keys = extract_to_cache(OomAdapter(most=3), stimuli, LAYERS, cache, batch_size=8,
                            progress=False)
    for layer in LAYERS:
        values, meta = cache.get(keys[layer])
        np.testing.assert_allclose(values, want[layer].values, rtol=1e-5, atol=1e-6)
        assert meta["stimulus_ids"] == list(stimuli.ids)


def test_oom_at_batch_size_1_is_raised_and_nothing_is_cached(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    with pytest.raises(torch.cuda.OutOfMemoryError):
        extract_to_cache(OomAdapter(most=0), make_stimuli(n=5), LAYERS, cache, batch_size=4,
                         progress=False)
    assert cache.summary().n_entries == 0 and cache.summary().n_partial == 0


def test_other_errors_are_not_retried():
    calls = []

    def run(start, size):
        calls.append(size)
        raise ValueError("not a memory error")
        yield 0

    with pytest.raises(ValueError, match="not a memory"):
        run_shrinking(run, 10, 8)
    assert calls == [8]


def test_run_shrinking_resumes_after_the_last_yielded_item_and_releases_memory():
    seen: list[tuple[int, int]] = []
    memory = FakeMemory(free=0, per_image=1)

    def run(start, size):
        for a in range(start, 10, size):
            if size > 2 and a >= 4:
                raise RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)")
            seen.append((a, min(a + size, 10)))
            yield min(a + size, 10)

    assert run_shrinking(run, 10, 4, memory=memory) == 2
    assert seen == [(0, 4), (4, 6), (6, 8), (8, 10)]
    assert memory.released == 1


def test_out_of_memory_recognised_for_cuda_and_mps_only():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 9 GB)"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(MemoryError())  # host memory: halving the batch is no fix


@pytest.mark.parametrize("free,per_image,n", [(10**9, 10**6, 5000), (10**9, 3 * 10**7, 500),
                                              (10**6, 10**7, 50), (10**12, 1, 300)])
def test_batch_size_for_is_the_largest_power_of_two_that_fits(free, per_image, n):
    b = batch_size_for(free, per_image, n)
    fits = MEMORY_FRACTION * free / per_image
    assert 1 <= b <= min(n, 1024)
    if b not in (1, min(n, 1024)):
        assert b & (b - 1) == 0 and b <= fits < 2 * b
    if b == min(n, 1024) and b > 1:
        assert b <= fits


def test_auto_batch_size_from_a_probe_batch_and_free_memory():
    memory = FakeMemory(free=8 * 2**30, per_image=50 * 2**20)  # 8 GiB free, 50 MiB per image
    choice = auto_batch_size("cuda", memory.probe, 10_000, memory=memory)
    assert choice.per_image_bytes == 50 * 2**20 and choice.free_bytes == 8 * 2**30
    assert choice.size == 64  # 0.7 * 8 GiB / 50 MiB = 114.7 -> 64
    assert "64" in choice.message and "GiB free" in choice.message
    assert auto_batch_size("cuda", memory.probe, 10, memory=memory).size == 10


def test_probe_that_runs_out_of_memory_is_retried_with_one_image():
    memory = FakeMemory(free=2**30, per_image=2**26, probe_oom_above=1)  # 64 MiB per image
    choice = auto_batch_size("cuda", memory.probe, 1000, memory=memory)
    assert choice.per_image_bytes == 2**26 and choice.size == 8  # 0.7 GiB / 64 MiB = 11.2
    assert memory.released == 1


def test_cpu_uses_the_documented_default_without_probing():
    def probe(b):
        raise AssertionError("no probe on the CPU")

    assert auto_batch_size("cpu", probe, 1000).size == CPU_BATCH_SIZE
    assert auto_batch_size("cpu", probe, 5).size == 5
    got = extract_features(TinyAdapter(), make_stimuli(n=7), LAYERS, progress=False)
    want = extract_features(TinyAdapter(), make_stimuli(n=7), LAYERS, batch_size=1,
                            progress=False)
    for layer in LAYERS:
        np.testing.assert_allclose(got[layer].values, want[layer].values, rtol=1e-5, atol=1e-6)


def test_map_extraction_halves_on_oom_and_gives_the_batch_size_1_maps(monkeypatch):
    from cortexalign.features import _kinds, kind_layers
    from cortexalign.models import load_model

    model = load_model("sam_vit_b", untrained=True, device="cpu", tiny=True, img_size=64)
    stimuli = make_stimuli(n=7, size=48)
    layers = kind_layers(model, "attention", "all", {}, stimuli)[:2]
    want = extract(model, stimuli, layers, "attention", batch_size=1, progress=False)
    real = _kinds.attention_maps
    sizes: list[int] = []

    def maps(module, x_bchw, **kwargs):
        if len(x_bchw) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (maps)")
        sizes.append(len(x_bchw))
        return real(module, x_bchw, **kwargs)

    monkeypatch.setattr(_kinds, "attention_maps", maps)
    events: list[BatchShrink] = []
    got = extract(model, stimuli, layers, "attention", batch_size=8, progress=False,
                  on_shrink=events.append)
    for layer in layers:
        np.testing.assert_allclose(got[layer].values, want[layer].values, rtol=1e-5, atol=1e-6)
    assert [(e.old, e.new) for e in events] == [(8, 4), (4, 2)] and sum(sizes) == len(stimuli)
