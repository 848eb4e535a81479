"""The memory budget decides in memory or streamed (``plan_extraction``), inside ``extract``:
a tiny budget streams, a big one keeps the values in memory, and the numbers are the same."""

from __future__ import annotations

import numpy as np
import pytest
from _features_standin import TinyAdapter, make_stimuli

from cortexalign.errors import InputError
from cortexalign.features import FeatureCache, extract, plan_extraction

LAYERS = ["conv1", "tokens", "head"]


@pytest.fixture
def stimuli():
    return make_stimuli(n=11)


def _bytes_of(adapter, stimuli, dtype="float32") -> int:
    """The bytes the in-memory extraction really allocates (independent of the probe)."""
    feats = extract(adapter, stimuli, LAYERS, options={"pooling": "flatten"}, dtype=dtype,
                    progress=False)
    return sum(f.values.nbytes for f in feats.values())


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_the_estimate_is_the_bytes_held_in_memory(stimuli, dtype):
    adapter = TinyAdapter()
    plan = plan_extraction(adapter, stimuli, LAYERS, options={"pooling": "flatten"},
                           memory_budget=1e12, dtype=dtype)
    assert plan.bytes == _bytes_of(adapter, stimuli, dtype) and not plan.streamed
    assert plan.budget == 1e12
    just_under = plan_extraction(adapter, stimuli, LAYERS, options={"pooling": "flatten"},
                                 memory_budget=plan.bytes - 1, dtype=dtype)
    assert just_under.streamed and just_under.bytes == plan.bytes
    at = plan_extraction(adapter, stimuli, LAYERS, options={"pooling": "flatten"},
                         memory_budget=plan.bytes, dtype=dtype)
    assert not at.streamed  # over the budget streams; exactly at it does not


def test_no_budget_measures_nothing(stimuli):
    adapter = TinyAdapter()
    plan = plan_extraction(adapter, stimuli, LAYERS, memory_budget=None)
    assert (plan.streamed, plan.bytes, plan.budget) == (False, None, None)
    assert adapter.calls == 0


@pytest.mark.parametrize("pooling", ["mean", "flatten", "none"])
def test_tiny_budget_streams_big_budget_keeps_in_memory_same_numbers(tmp_path, stimuli,
                                                                     pooling):
    adapter = TinyAdapter()
    opts = {"pooling": pooling}
    plain = extract(adapter, stimuli, LAYERS, options=opts, batch_size=4, progress=False)
    tiny = extract(adapter, stimuli, LAYERS, options=opts, batch_size=4, progress=False,
                   cache=FeatureCache(tmp_path / "tiny"), memory_budget=1)
    big = extract(adapter, stimuli, LAYERS, options=opts, batch_size=4, progress=False,
                  cache=FeatureCache(tmp_path / "big"), memory_budget=1e12)
    assert all(f.streamed for f in tiny.values()) and not any(f.streamed for f in big.values())
    assert not any(f.streamed for f in plain.values())
    assert len(FeatureCache(tmp_path / "tiny")) == len(FeatureCache(tmp_path / "big")) == 3
    for layer in LAYERS:
        values = plain[layer].values
        assert isinstance(big[layer].values, np.ndarray)
        np.testing.assert_array_equal(big[layer].values, values)
        np.testing.assert_array_equal(tiny[layer].values.read(), values)
        assert tiny[layer].key == big[layer].key == plain[layer].key
        assert tiny[layer].shape == big[layer].shape == values.shape


def test_a_budget_needs_a_cache_and_a_sane_value(stimuli):
    adapter = TinyAdapter()
    with pytest.raises(InputError, match="cache"):
        extract(adapter, stimuli, LAYERS, memory_budget=1e9, progress=False)
    for bad in (-1, float("nan"), "1GB", True):
        with pytest.raises(InputError, match="memory_budget"):
            plan_extraction(adapter, stimuli, LAYERS, memory_budget=bad)
    assert adapter.calls == 0
