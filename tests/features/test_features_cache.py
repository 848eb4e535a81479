"""The content-addressed feature cache: keys, hits, atomic writes, corrupt entries."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
from _features_standin import TinyAdapter, kill_when_ready, make_stimuli

from cortexalign.errors import InputError
from cortexalign.features import EXTRACTION_VERSION, FeatureCache, extract_features, feature_key
from cortexalign.features import _cache as cache_mod

BASE = dict(model_id="timm:vit_tiny", weights_digest="w" * 8, layer="blocks.3", pooling="mean",
            preprocess_key="resize224", stimuli_hash="s" * 8, dtype="float32", precision="fp32",
            extraction_version=EXTRACTION_VERSION)


def key_of(**change) -> str:
    return feature_key(**{**BASE, **change})


@pytest.mark.parametrize("part", sorted(BASE))
def test_every_key_part_changes_the_key(part):
    assert key_of(**{part: BASE[part] + "x"}) != key_of()
    assert key_of() == key_of()  # and the key is deterministic


def test_empty_key_part_is_rejected():
    with pytest.raises(InputError, match="weights_digest"):
        key_of(weights_digest="")


def test_put_get_round_trip_with_metadata(tmp_path):
    cache = FeatureCache(tmp_path)
    vals = np.random.default_rng(0).normal(size=(50, 7)).astype(np.float32)
    k = key_of()
    cache.put(k, vals, {"layer": "blocks.3", "stimulus_ids": [str(i) for i in range(50)]})
    got, meta = cache.get(k)
    np.testing.assert_array_equal(got, vals)
    assert meta["shape"] == [50, 7] and meta["dtype"] == "float32" and meta["layer"] == "blocks.3"
    assert {"cortexalign_version", "created", "sha256", "key"} <= set(meta)
    assert (tmp_path / k / "zarr.json").exists() and (tmp_path / k / cache_mod.META_FILE).exists()
    assert cache.contains(k) and k in cache and cache.keys() == [k] and len(cache) == 1
    s = cache.summary()
    assert s.n_entries == 1 and s.n_bytes > 0 and s.n_partial == 0 and "1 entries" in str(s)
    assert cache.get(key_of(layer="other")) is None


def test_remove_and_clear(tmp_path):
    cache = FeatureCache(tmp_path)
    for layer in "abc":
        cache.put(key_of(layer=layer), np.ones((2, 2), np.float32))
    assert cache.remove(key_of(layer="a")) and not cache.remove(key_of(layer="a"))
    assert cache.clear() == 2 and cache.keys() == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["../etc", "A" * 64, "abc"])
def test_keys_must_be_hex_digests(tmp_path, bad):
    with pytest.raises(InputError, match="sha256"):
        FeatureCache(tmp_path).get(bad)


def test_second_extraction_reads_the_cache_without_running_the_model(tmp_path, stimuli):
    cache = FeatureCache(tmp_path)
    first = TinyAdapter()
    a = extract_features(first, stimuli, ["conv1", "head"], batch_size=4, cache=cache,
                         progress=False)
    assert first.calls == 2 and len(cache) == 2
    second = TinyAdapter()  # same weights, fresh counter
    b = extract_features(second, stimuli, ["conv1", "head"], cache=cache, progress=False)
    assert second.calls == 0
    for layer in a:
        assert b[layer].from_cache and not a[layer].from_cache and b[layer].key == a[layer].key
        np.testing.assert_array_equal(a[layer].values, b[layer].values)


def test_only_missing_layers_are_computed(tmp_path, stimuli):
    cache = FeatureCache(tmp_path)
    extract_features(TinyAdapter(), stimuli, ["head"], cache=cache, progress=False)
    adapter = TinyAdapter()
    feats = extract_features(adapter, stimuli, ["head", "tokens"], cache=cache, progress=False)
    assert adapter.calls == 1 and feats["head"].from_cache and not feats["tokens"].from_cache


@pytest.mark.parametrize("change", ["weights", "model_id", "preprocess", "stimuli", "pooling",
                                    "dtype", "precision"])
def test_a_change_in_any_input_recomputes(tmp_path, stimuli, change):
    cache = FeatureCache(tmp_path)
    extract_features(TinyAdapter(), stimuli, "head", cache=cache, progress=False)
    adapter = TinyAdapter(seed=1 if change == "weights" else 0,
                          model_id="test:other" if change == "model_id" else "test:tiny",
                          size=16 if change == "preprocess" else 12)
    kwargs = {"pooling": "max" if change == "pooling" else "mean",
              "dtype": "float16" if change == "dtype" else "float32",
              "precision": "bf16" if change == "precision" else "fp32"}
    stim = make_stimuli(seed=1) if change == "stimuli" else stimuli
    f = extract_features(adapter, stim, "head", cache=cache, progress=False, **kwargs)["head"]
    assert adapter.calls == 1 and not f.from_cache and len(cache) == 2


def _entry(tmp_path, stimuli):
    cache = FeatureCache(tmp_path)
    f = extract_features(TinyAdapter(), stimuli, "conv2", pooling="none", cache=cache,
                         progress=False)["conv2"]
    return cache, f.key, tmp_path / f.key


def _drop_metadata(entry: Path) -> None:
    (entry / cache_mod.META_FILE).unlink()


def _wrong_shape(entry: Path) -> None:
    meta = json.loads((entry / cache_mod.META_FILE).read_text())
    meta["shape"][0] += 1
    (entry / cache_mod.META_FILE).write_text(json.dumps(meta))


def _chunk_files(entry: Path) -> list[Path]:
    return sorted(p for p in (entry / "values" / "c").rglob("*") if p.is_file())


def _drop_chunk(entry: Path) -> None:  # zarr would silently return the fill value
    _chunk_files(entry)[0].unlink()


def _truncate_chunk(entry: Path) -> None:
    p = _chunk_files(entry)[0]
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _flip_values(entry: Path) -> None:
    import zarr
    arr = zarr.open_array(entry / "values", mode="r+")
    arr[0] = arr[0] + 1


@pytest.mark.parametrize("damage", [_drop_metadata, _wrong_shape, _drop_chunk, _truncate_chunk,
                                    _flip_values])
def test_corrupt_entries_are_misses_and_get_recomputed(tmp_path, stimuli, damage):
    cache, key, entry = _entry(tmp_path, stimuli)
    good = cache.get(key)[0]
    damage(entry)
    with pytest.warns(RuntimeWarning, match="corrupt"):
        assert cache.get(key) is None
    assert not entry.exists()
    adapter = TinyAdapter()
    f = extract_features(adapter, stimuli, "conv2", pooling="none", cache=cache,
                         progress=False)["conv2"]
    assert adapter.calls == 1 and not f.from_cache
    np.testing.assert_array_equal(cache.get(key)[0], good)


def test_structurally_broken_entry_is_not_listed(tmp_path, stimuli):
    cache, key, entry = _entry(tmp_path, stimuli)
    _wrong_shape(entry)
    assert not cache.contains(key) and cache.keys() == []


def test_error_mid_write_leaves_nothing(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path)

    def boom(path):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(cache_mod, "fsync_tree", boom)
    with pytest.raises(OSError, match="simulated"):
        cache.put(key_of(), np.ones((4, 3), np.float32))
    assert list(tmp_path.iterdir()) == [] and not cache.contains(key_of())


def test_put_keeps_an_existing_valid_entry(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.put(key_of(), np.ones((2, 2), np.float32), {"who": "first"})
    cache.put(key_of(), np.ones((2, 2), np.float32), {"who": "second"})
    assert cache.metadata(key_of())["who"] == "first"
    assert [p.name for p in tmp_path.iterdir()] == [key_of()]


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    import zarr.storage
    from cortexalign.features import _cache
    root, key, where = sys.argv[1:4]

    def hang():
        print("READY", flush=True)
        time.sleep(600)

    if where == "mid-array":  # hang after a few chunks hit the disk
        orig, seen = zarr.storage.LocalStore.set, []
        async def set_(self, k, v, *a, **kw):
            await orig(self, k, v, *a, **kw)
            seen.append(k)
            if sum("/c/" in s for s in seen) >= 2:
                hang()
        zarr.storage.LocalStore.set = set_
    else:  # everything written and fsynced, not yet renamed into place
        _cache.os.rename = lambda *a: hang()
    _cache._CHUNK_BYTES = 4096
    cache = _cache.FeatureCache(root)
    cache.put(key, np.random.default_rng(0).normal(size=(64, 256)).astype(np.float32))
""")


@pytest.mark.parametrize("where", ["mid-array", "before-rename"])
def test_sigkill_during_write_leaves_no_readable_entry(tmp_path, stimuli, where):
    root = tmp_path / "cache"
    key = extract_features(TinyAdapter(), stimuli, "head", progress=False)["head"].key
    kill_when_ready(KILLED_WRITER, str(root), key, where)
    leftovers = [p.name for p in root.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-")  # the killed write
    cache = FeatureCache(root)  # a later run: the dead writer's temp dir is cleaned up
    assert list(root.iterdir()) == [] and not cache.contains(key) and cache.get(key) is None
    adapter = TinyAdapter()
    f = extract_features(adapter, stimuli, "head", cache=cache, progress=False)["head"]
    assert adapter.calls == 1 and not f.from_cache and cache.keys() == [key]


def test_live_writers_temp_dirs_are_kept(tmp_path):
    live = tmp_path / f".tmp-{cache_mod.socket.gethostname()}-{os.getpid()}-abc"
    live.mkdir()
    FeatureCache(tmp_path)
    assert live.exists()
    assert FeatureCache(tmp_path).summary().n_partial == 1


def test_root_must_be_a_directory(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="directory"):
        FeatureCache(f)
