"""FeatureCache.writer (row blocks -> one atomic entry) and the streamed path of extract (issue 9)."""

from __future__ import annotations

import json
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from _features_standin import TinyAdapter, kill_when_ready, make_stimuli

from cortexalign import models
from cortexalign.errors import InputError
from cortexalign.features import FeatureCache, extract, extract_features, feature_key
from cortexalign.features import _cache as cache_mod


def key_of(layer: str = "blocks.0") -> str:
    return feature_key(model_id="test:w", weights_digest="w" * 8, layer=layer, pooling="mean",
                       preprocess_key="p", stimuli_hash="h" * 8)


def _files(entry: Path) -> dict[str, bytes]:
    """Every file of an entry by relative path; the metadata without its creation time."""
    out = {str(p.relative_to(entry)): p.read_bytes() for p in entry.rglob("*") if p.is_file()}
    meta = json.loads(out.pop("cortexalign.json"))
    del meta["created"]
    out["cortexalign.json"] = json.dumps(meta, sort_keys=True).encode()
    return out


def _write_in_blocks(cache: FeatureCache, key: str, values: np.ndarray, sizes: list[int],
                     meta: dict) -> None:
    with cache.writer(key, values.shape, values.dtype, meta) as w:
        start, k = 0, 0
        while start < len(values):
            b = sizes[k % len(sizes)]
            w.write(start, values[start:start + b])
            start, k = start + b, k + 1


@pytest.mark.parametrize("shape,dtype,sizes", [
    ((37, 24), "float32", [5]),          # blocks smaller than a chunk, not dividing s
    ((37, 24), "float16", [1, 13, 2]),   # ragged blocks across chunk boundaries
    ((37, 24), "float32", [37]),         # one block
    ((11, 3, 4, 2), "float64", [4]),     # raw (s, c, h, w) rows
    ((9, 2000), "float32", [2, 7]),      # one row per chunk (a row is larger than a chunk)
])
def test_writer_entry_equals_put_byte_for_byte(tmp_path, monkeypatch, shape, dtype, sizes):
    monkeypatch.setattr(cache_mod, "_CHUNK_BYTES", 1024)  # several chunks even for tiny arrays
    values = np.random.default_rng(0).normal(size=shape).astype(dtype)
    meta = {"layer": "blocks.0", "stimulus_ids": [f"s{i}" for i in range(shape[0])]}
    a, b = FeatureCache(tmp_path / "put"), FeatureCache(tmp_path / "writer")
    a.put(key_of(), values, meta)
    _write_in_blocks(b, key_of(), values, sizes, meta)
    fa, fb = _files(a.path(key_of())), _files(b.path(key_of()))
    assert sorted(fa) == sorted(fb) and len([f for f in fa if "/c/" in f]) > 1
    for name in fa:
        assert fa[name] == fb[name], name
    got, got_meta = b.get(key_of())
    np.testing.assert_array_equal(got, values)
    np.testing.assert_array_equal(b.open(key_of())[:], values)
    assert got_meta["chunk_sha256"] == a.metadata(key_of())["chunk_sha256"]
    assert [p.name for p in (tmp_path / "writer").iterdir()] == [key_of()]  # no temp left


@pytest.mark.parametrize("start,rows,fix", [
    (3, 2, "gap"), (1, 2, "overlap"), (4, 3, "past the end"), (0, 0, "empty block")])
def test_out_of_order_overlapping_and_bad_blocks_are_refused(tmp_path, start, rows, fix):
    cache = FeatureCache(tmp_path)
    with pytest.raises(InputError) as info, cache.writer(key_of(), (6, 3), "float32") as w:
        w.write(0, np.ones((2, 3), np.float32))
        w.write(start, np.ones((rows, 3), np.float32))
    err = info.value
    assert err.parameter in ("start", "block") and err.expected and err.received and err.fix
    assert list(tmp_path.iterdir()) == [], fix  # the refused write discarded the entry


def test_wrong_trailing_shape_and_writes_outside_the_block_are_refused(tmp_path):
    cache = FeatureCache(tmp_path)
    w = cache.writer(key_of(), (6, 3), "float32")
    with pytest.raises(InputError, match="open writer"):
        w.write(0, np.ones((2, 3), np.float32))
    with pytest.raises(InputError) as info, w:
        w.write(0, np.ones((2, 4), np.float32))
    assert info.value.parameter == "block" and "(2, 4)" in info.value.received
    with pytest.raises(InputError, match="fresh writer"), w:
        pass
    with pytest.raises(InputError, match="JSON"):
        cache.writer(key_of(), (6, 3), "float32", {"x": np.ones(2)})
    with pytest.raises(InputError):
        cache.writer(key_of(), (6, 3), "object")
    assert list(tmp_path.iterdir()) == []


def test_short_write_publishes_nothing(tmp_path):
    cache = FeatureCache(tmp_path)
    with pytest.raises(InputError) as info, cache.writer(key_of(), (6, 3), "float32") as w:
        w.write(0, np.ones((4, 3), np.float32))
    assert info.value.parameter == "rows" and "0:4" in info.value.received
    assert list(tmp_path.iterdir()) == [] and cache.get(key_of()) is None


def test_exception_inside_the_block_publishes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "_CHUNK_BYTES", 64)
    cache = FeatureCache(tmp_path)
    with pytest.raises(RuntimeError, match="boom"), cache.writer(key_of(), (40, 4), "float32") as w:
        w.write(0, np.ones((30, 4), np.float32))  # several chunks already on disk
        assert any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == [] and not cache.contains(key_of())


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from cortexalign.features import _cache
    root, key = sys.argv[1:3]
    _cache._CHUNK_BYTES = 4096
    values = np.random.default_rng(0).normal(size=(64, 256)).astype(np.float32)
    with _cache.FeatureCache(root).writer(key, values.shape, values.dtype) as w:
        w.write(0, values[:40])  # several whole chunks on disk, the rest still to come
        print("READY", flush=True)
        time.sleep(600)
""")


def test_sigkill_mid_write_leaves_nothing_readable(tmp_path):
    root = tmp_path / "cache"
    kill_when_ready(KILLED_WRITER, str(root), key_of())
    leftovers = [p.name for p in root.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-")
    cache = FeatureCache(root)  # the dead writer's temp dir is removed
    assert list(root.iterdir()) == [] and cache.get(key_of()) is None
    assert cache.open(key_of()) is None


# -- the streamed path of extract ----------------------------------------------------------------
def extract_to_cache(adapter, stimuli, layers, cache, pooling="mean", **kwargs) -> dict[str, str]:
    """``extract`` with a memory budget of 0 bytes (always streamed): layer -> cache key."""
    feats = extract(adapter, stimuli, layers, "activations", {"pooling": pooling}, cache=cache,
                    memory_budget=0, **kwargs)
    assert all(f.streamed for f in feats.values())
    return {layer: f.key for layer, f in feats.items()}


@pytest.fixture(scope="module")
def vit():
    return models.load_model("timm:test_vit", untrained=True, device="cpu", img_size=32)


@pytest.mark.parametrize("pooling,batch_size", [("mean", 3), ("flatten", 4), ("cls", 7)])
def test_extract_to_cache_equals_extract_features(tmp_path, vit, pooling, batch_size):
    stimuli = make_stimuli(n=7, size=32)
    layers = vit.layers()[:2]
    ref = extract_features(vit, stimuli, layers, pooling=pooling, batch_size=batch_size,
                           cache=FeatureCache(tmp_path / "ref"), progress=False)
    cache = FeatureCache(tmp_path / "stream")
    keys = extract_to_cache(vit, stimuli, layers, cache, pooling=pooling,
                            batch_size=batch_size, progress=False)
    assert list(keys) == layers
    for layer in layers:
        assert keys[layer] == ref[layer].key
        values, meta = cache.get(keys[layer])
        np.testing.assert_array_equal(values, ref[layer].values)
        ref_meta = FeatureCache(tmp_path / "ref").metadata(keys[layer])
        drop = {"created"}
        assert {k: v for k, v in meta.items() if k not in drop} == \
            {k: v for k, v in ref_meta.items() if k not in drop}


def test_extract_to_cache_skips_cached_layers_and_publishes_nothing_on_nan(tmp_path):
    stimuli = make_stimuli(n=9)
    cache = FeatureCache(tmp_path)
    adapter = TinyAdapter()
    first = extract_to_cache(adapter, stimuli, ["head"], cache, batch_size=4, progress=False)
    assert adapter.calls == 1 + 3  # the memory probe (one image), then 3 batches
    again = extract_to_cache(adapter, stimuli, ["head", "conv2"], cache, batch_size=4,
                             progress=False)
    assert again["head"] == first["head"] and adapter.calls == 8  # only conv2 ran
    got = extract_features(TinyAdapter(), stimuli, ["head", "conv2"], cache=cache,
                           progress=False)
    assert all(f.from_cache for f in got.values())
    bad = TinyAdapter(nan_above=-1.0)  # every image poisoned
    with pytest.raises(InputError, match="NaN/Inf"):
        extract_to_cache(bad, stimuli, ["tokens"], FeatureCache(tmp_path / "bad"), progress=False)
    assert list((tmp_path / "bad").iterdir()) == []
    with pytest.raises(InputError, match="FeatureCache"):
        extract_to_cache(adapter, stimuli, ["head"], str(tmp_path), progress=False)


def test_extract_to_cache_holds_a_few_batches_not_the_whole_layer(tmp_path, monkeypatch):
    """Structural memory bound: every write is one batch, and the numpy memory traced while
    extracting stays far below the (s, d) array that extract_features allocates."""
    monkeypatch.setattr(cache_mod, "_CHUNK_BYTES", 16 * 1024)
    stimuli = make_stimuli(n=480, size=16)
    adapter = TinyAdapter(size=24)  # conv1 flattened: 4 x 24 x 24 floats a stimulus
    writes: list[int] = []
    real_writer = FeatureCache.writer

    def recording_writer(self, *args, **kwargs):
        w = real_writer(self, *args, **kwargs)
        real_write = w.write
        w.write = lambda start, block: (writes.append(len(block)), real_write(start, block))
        return w

    monkeypatch.setattr(FeatureCache, "writer", recording_writer)

    def traced_peak(fn) -> int:
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    cache = FeatureCache(tmp_path / "a")
    streamed = traced_peak(lambda: extract_to_cache(adapter, stimuli, "conv1", cache,
                                                    pooling="flatten", batch_size=8,
                                                    progress=False))
    whole = traced_peak(lambda: extract_features(adapter, stimuli, "conv1", pooling="flatten",
                                                 batch_size=8, progress=False))
    layer_bytes = cache.open(feature_key_of(adapter, stimuli)).nbytes
    assert layer_bytes == 480 * 4 * 24 * 24 * 4
    assert writes == [8] * 60  # one block per batch, in order
    assert whole >= layer_bytes and streamed < layer_bytes / 4, (streamed, whole, layer_bytes)


def feature_key_of(adapter, stimuli) -> str:
    from cortexalign.features import feature_keys
    return feature_keys(adapter, stimuli, ["conv1"], "flatten")["conv1"]
