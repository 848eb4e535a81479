"""The feature cache at an fsspec URL: the local cache's entries, checksums and atomic publish on
an object store (fsspec's in-memory store, and an S3 server: moto on 127.0.0.1)."""

from __future__ import annotations

import json
import textwrap
import uuid
import warnings

import numpy as np
import pytest
from _features_standin import TinyAdapter, kill_when_ready, make_stimuli

from cortexalign.features import (
    CacheIntegrityError,
    FeatureCache,
    extract,
    extract_features,
    feature_key,
)
from cortexalign.features import _cache as cache_mod
from cortexalign.features._cache_remote import RemoteFeatureCache


def key_of(layer: str = "blocks.0") -> str:
    return feature_key(model_id="test:w", weights_digest="w" * 8, layer=layer, pooling="mean",
                       preprocess_key="p", stimuli_hash="h" * 8)


@pytest.fixture
def mem():
    """A fresh cache in fsspec's in-memory store (process-local)."""
    return FeatureCache(f"memory://cortexalign-test-{uuid.uuid4().hex[:8]}/cache")


@pytest.fixture
def values(monkeypatch):
    monkeypatch.setattr(cache_mod, "_CHUNK_BYTES", 1024)  # several chunks, a partial last one
    return np.random.default_rng(0).normal(size=(37, 24)).astype("float32")


def test_a_url_gives_the_remote_cache_with_the_local_entries_digests(mem, values, tmp_path):
    local = FeatureCache(tmp_path)
    meta = {"layer": "blocks.0", "stimulus_ids": [f"s{i}" for i in range(37)]}
    local.put(key_of(), values, meta)
    mem.put(key_of(), values, meta)
    assert isinstance(mem, RemoteFeatureCache) and isinstance(mem, FeatureCache)
    got, remote_meta = mem.get(key_of())
    np.testing.assert_array_equal(got, values)
    local_meta = local.metadata(key_of())
    for field in ("sha256", "chunk_sha256", "chunk_rows", "shape", "dtype", "key", "layer"):
        assert remote_meta[field] == local_meta[field]
    assert len(remote_meta["chunk_sha256"]) > 1 and remote_meta["array"].endswith("/values")
    view = mem.open(key_of())
    np.testing.assert_array_equal(view[5:30], values[5:30])
    assert mem.keys() == [key_of()] and key_of() in mem and len(mem) == 1
    assert mem.summary().n_entries == 1 and mem.summary().n_partial == 0


def test_extraction_into_a_url_cache_gives_the_local_features(mem):
    stim, layers = make_stimuli(n=9), ["conv1", "head"]
    want = extract_features(TinyAdapter(), stim, layers, batch_size=4, progress=False)
    streamed = extract(TinyAdapter(), stim, layers, cache=mem, memory_budget=0, batch_size=4,
                       progress=False)  # batch by batch into the store's writers
    for layer in layers:
        np.testing.assert_array_equal(mem.get(streamed[layer].key)[0], want[layer].values)
    again = TinyAdapter()
    extract_features(again, stim, layers, cache=mem, progress=False)
    assert again.calls == 0  # read back from the store


def test_a_write_that_fails_leaves_nothing(mem, values):
    with pytest.raises(RuntimeError, match="boom"):
        with mem.writer(key_of(), values.shape, values.dtype, {}) as w:
            w.write(0, values[:10])
            raise RuntimeError("boom")
    assert mem.get(key_of()) is None and mem.fs.find(mem.path(key_of())) == []


def test_data_without_a_manifest_is_no_entry_and_is_left_to_its_writer(mem, values):
    w = mem.writer(key_of(), values.shape, values.dtype, {}).__enter__()
    w.write(0, values[:20])  # chunks on the store, no manifest: a writer at work (or killed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a write in progress is a plain miss, not corruption
        assert mem.get(key_of()) is None and mem.open(key_of()) is None
    assert not mem.contains(key_of()) and mem.keys() == [] and mem.metadata(key_of()) is None
    assert mem.fs.find(mem.path(key_of()))  # not deleted: its writer may still be running
    assert mem.cleanup() == 0  # this process, alive: kept
    assert mem.summary().n_partial == 1
    assert mem.cleanup(everything=True) == 1 and mem.fs.find(mem.path(key_of())) == []


def test_a_corrupt_chunk_is_caught_and_the_entry_discarded_manifest_first(mem, values):
    mem.put(key_of(), values, {})
    meta = mem.metadata(key_of())
    chunk = f"{mem.path(key_of())}/{meta['array']}/c/1/0"
    raw = bytearray(mem.fs.cat_file(chunk))
    raw[-1] ^= 0xFF
    mem.fs.pipe_file(chunk, bytes(raw))
    view = mem.open(key_of())
    np.testing.assert_array_equal(view[0:meta["chunk_rows"]], values[:meta["chunk_rows"]])
    with pytest.warns(RuntimeWarning, match="corrupt"), pytest.raises(CacheIntegrityError):
        view[meta["chunk_rows"]:]
    assert mem.get(key_of()) is None and mem.fs.find(mem.path(key_of())) == []


def test_first_writer_wins_and_the_second_drops_its_data(mem, values):
    mem.put(key_of(), values, {"n": 1})
    mem.put(key_of(), values + 1, {"n": 2})
    got, meta = mem.get(key_of())
    np.testing.assert_array_equal(got, values)
    assert meta["n"] == 1 and mem.summary().n_partial == 0


def test_a_manifest_naming_data_elsewhere_is_no_entry(mem, values):
    mem.put(key_of(), values, {})
    manifest = f"{mem.path(key_of())}/cortexalign.json"
    meta = json.loads(mem.fs.cat_file(manifest))
    mem.fs.pipe_file(manifest, json.dumps(dict(meta, array="../../elsewhere/values")).encode())
    with pytest.warns(RuntimeWarning):
        assert mem.get(key_of()) is None


def test_storage_options_are_refused_for_a_local_folder(tmp_path):
    from cortexalign.errors import InputError

    with pytest.raises(InputError, match="storage_options"):
        FeatureCache(tmp_path, storage_options={"endpoint_url": "http://x"})


# -- an S3 server (the ``s3`` fixture of tests/conftest.py) ---------------------------------
def test_on_s3_a_killed_writer_leaves_no_entry_and_its_data_is_cleaned(s3, values):
    url = f"s3://cortexalign-test/{uuid.uuid4().hex[:8]}"
    cache = FeatureCache(url, storage_options=s3)
    cache.put(key_of("done"), values, {"layer": "done"})
    script = textwrap.dedent("""
        import json, sys, time
        import numpy as np
        from cortexalign.features import FeatureCache
        cache = FeatureCache(sys.argv[1], storage_options=json.loads(sys.argv[2]))
        w = cache.writer(sys.argv[3], (40, 300), "float32", {}).__enter__()
        w.write(0, np.ones((39, 300), "float32"))  # every chunk but the last, no manifest
        print("READY", flush=True)
        time.sleep(60)
    """)
    kill_when_ready(script, url, json.dumps(s3), key_of("killed"))
    again = FeatureCache(url, storage_options=s3)  # another process's view
    assert again.keys() == [key_of("done")]
    assert again.get(key_of("killed")) is None and again.summary().n_partial == 1
    np.testing.assert_array_equal(again.get(key_of("done"))[0], values)
    assert again.cleanup() == 1  # its writer (this host) is gone
    assert again.summary().n_partial == 0 and again.fs.find(again.path(key_of("killed"))) == []
