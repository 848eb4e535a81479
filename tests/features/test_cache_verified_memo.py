"""FeatureCache.open: chunks verified earlier in this process are not hashed again, unless the
chunk file (or the array's decoding metadata) may have changed since."""

from __future__ import annotations

import json
import os
import time
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import zarr
from _cache_helpers import put_small_chunks  # tests/features/conftest.py puts it on sys.path

from cortexalign.features import CachedArray, CacheIntegrityError, FeatureCache
from cortexalign.features import _cache_view as view_mod

KEY = "cd" * 32
S, D = 103, 16  # 1 KiB chunks of 16 rows: 7 chunks, the last partial (as test_cache_streaming)


@pytest.fixture
def hashes(monkeypatch) -> list[int]:
    """A fresh, empty memo and a log of every chunk hash the view computes."""
    calls: list[int] = []
    real = view_mod.sha256_of

    def counting(values: np.ndarray) -> str:
        calls.append(len(values))
        return real(values)

    monkeypatch.setattr(view_mod, "sha256_of", counting)
    monkeypatch.setattr(view_mod, "_VERIFIED", OrderedDict())
    return calls


@pytest.fixture
def settled(monkeypatch):
    """Treat files as settled at once (the tests write them milliseconds before reading them)."""
    monkeypatch.setattr(view_mod, "_SETTLE_NS", 0)


def _put(root: Path, values: np.ndarray) -> FeatureCache:
    return put_small_chunks(root, KEY, values)


def _values(shape=(S, D)) -> np.ndarray:
    return np.random.default_rng(0).normal(size=shape).astype(np.float32)


def _chunk_files(entry: Path) -> list[Path]:
    return sorted((p for p in (entry / "values" / "c").rglob("*") if p.is_file()),
                  key=lambda p: int(p.relative_to(entry / "values" / "c").parts[0]))


def _pass(cache: FeatureCache) -> list[np.ndarray]:
    return [block.copy() for _, block in cache.open(KEY).iter_chunks()]


@pytest.mark.parametrize("shape", [(S, D), (40, 3, 5)])
def test_second_pass_hashes_nothing_and_returns_identical_arrays(tmp_path, hashes, settled,
                                                                 shape):
    values = _values(shape)
    cache = _put(tmp_path, values)
    first = _pass(cache)
    n_chunks = len(first)
    assert len(hashes) == n_chunks == len(_chunk_files(tmp_path / KEY))
    # the memo holds exactly the chunk files zarr wrote (the files whose stat is trusted)
    assert set(view_mod._VERIFIED) == {str(p) for p in _chunk_files(tmp_path / KEY)}
    second = _pass(cache)  # a new view, as the next epoch opens it
    view = cache.open(KEY)
    third = [view[a:a + 7] for a in range(0, shape[0], 7)]  # reads across chunk boundaries
    assert len(hashes) == n_chunks
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.concatenate(second), values)
    np.testing.assert_array_equal(np.concatenate(third), values)


def _encoded(rows: np.ndarray) -> bytes:
    """The chunk file zarr writes for ``rows`` with the cache's (default) codecs."""
    store = zarr.storage.MemoryStore()
    zarr.create_array(store, shape=rows.shape, dtype=rows.dtype, chunks=rows.shape)[:] = rows
    return store._store_dict["c/0/0"].to_bytes()


def _same_size_forgery(path: Path, rows: np.ndarray) -> bytes:
    """A valid chunk file for ``rows`` with two rows swapped, of the size of ``path``."""
    assert _encoded(rows) == path.read_bytes()  # the scratch encoding is the cache's
    for i in range(1, len(rows)):
        swapped = rows.copy()
        swapped[[0, i]] = swapped[[i, 0]]
        data = _encoded(swapped)
        if len(data) == path.stat().st_size:
            return data
    raise AssertionError("no same-size forgery among the row swaps")


def _rewrite(path: Path, data: bytes, how: str) -> None:
    """Give chunk file ``path`` the bytes ``data`` (same size), the way ``how`` says."""
    st = os.stat(path)
    assert len(data) == st.st_size
    if how == "in_place_newer_mtime":
        with open(path, "r+b") as f:
            f.write(data)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    elif how == "replace_rename_old_mtime":
        tmp = path.with_name(path.name + ".new")
        tmp.write_bytes(data)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, path)
        assert os.stat(path).st_ino != st.st_ino
    else:  # in place, mtime put back: only the ctime (which no caller can set) tells
        with open(path, "r+b") as f:
            f.write(data)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        while os.stat(path).st_ctime_ns == st.st_ctime_ns:  # wait for the clock to tick
            time.sleep(0.005)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert os.stat(path).st_ino == st.st_ino
    new = os.stat(path)
    assert new.st_size == st.st_size and (new.st_mtime_ns == st.st_mtime_ns) == (
        how != "in_place_newer_mtime")


@pytest.mark.parametrize("how", ["in_place_newer_mtime", "replace_rename_old_mtime",
                                 "in_place_old_mtime_new_ctime"])
def test_a_chunk_rewritten_between_passes_is_caught(tmp_path, hashes, settled, how):
    values = _values()
    cache = _put(tmp_path, values)
    _pass(cache)
    chunk = _chunk_files(tmp_path / KEY)[3]  # rows 48:64
    _rewrite(chunk, _same_size_forgery(chunk, values[48:64]), how)
    view = cache.open(KEY)
    n = len(hashes)
    np.testing.assert_array_equal(view[:48], values[:48])  # untouched chunks are still served
    assert len(hashes) == n  # ... without hashing them again
    with pytest.warns(RuntimeWarning, match="corrupt"), \
            pytest.raises(CacheIntegrityError, match="rows 48:64 do not match"):
        view[40:60]
    assert not (tmp_path / KEY).exists() and cache.open(KEY) is None


@pytest.mark.parametrize("damage", ["drop", "truncate"])
def test_a_chunk_dropped_or_truncated_between_passes_is_caught(tmp_path, hashes, settled,
                                                               damage):
    cache = _put(tmp_path, _values())
    _pass(cache)
    chunk = _chunk_files(tmp_path / KEY)[2]
    if damage == "drop":  # zarr would silently return the fill value
        chunk.unlink()
    else:
        chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    with pytest.warns(RuntimeWarning), pytest.raises(CacheIntegrityError, match="rows 32:48"):
        _pass(cache)


def test_changed_decoding_metadata_is_hashed_again(tmp_path, hashes, settled):
    values = _values()
    cache = _put(tmp_path, values)
    _pass(cache)
    n = len(hashes)
    zjson = tmp_path / KEY / "values" / "zarr.json"  # same chunk files, decoded big-endian
    meta = json.loads(zjson.read_text())
    bytes_codec = next(c for c in meta["codecs"] if c["name"] == "bytes")
    bytes_codec["configuration"]["endian"] = "big"
    zjson.write_text(json.dumps(meta))
    with pytest.warns(RuntimeWarning), pytest.raises(CacheIntegrityError, match="rows 0:16"):
        cache.open(KEY)[0]
    assert len(hashes) == n + 1


def test_recently_written_chunks_are_hashed_every_pass(tmp_path, hashes, monkeypatch):
    """git's racy rule: a file changed within _SETTLE_NS of its check is not trusted later."""
    cache = _put(tmp_path, _values())
    monkeypatch.setattr(view_mod, "_SETTLE_NS", 3600 * 10**9)
    first = _pass(cache)
    _pass(cache)
    assert len(hashes) == 2 * len(first) and not view_mod._VERIFIED


def test_the_memo_is_bounded_least_recently_used_first(tmp_path, hashes, settled, monkeypatch):
    values = _values()
    cache = _put(tmp_path, values)
    monkeypatch.setattr(view_mod, "_MEMO_MAX", 3)
    _pass(cache)  # 7 chunks: the last 3 stay remembered
    files = _chunk_files(tmp_path / KEY)
    assert list(view_mod._VERIFIED) == [str(p) for p in files[-3:]]
    np.testing.assert_array_equal(cache.open(KEY)[64:], values[64:])
    assert len(hashes) == 7
    np.testing.assert_array_equal(cache.open(KEY)[:16], values[:16])  # forgotten: hashed again
    assert len(hashes) == 8 and len(view_mod._VERIFIED) == 3
    assert str(files[0]) in view_mod._VERIFIED and str(files[4]) not in view_mod._VERIFIED


def test_arrays_outside_a_local_store_are_hashed_every_read(hashes, settled):
    values = _values()
    arr = zarr.create_array(zarr.storage.MemoryStore(), shape=values.shape, dtype=values.dtype,
                            chunks=(16, D))
    arr[:] = values
    digests = [view_mod.sha256_of(values[r:r + 16]) for r in range(0, S, 16)]
    hashes.clear()

    def corrupt(what: str) -> None:
        raise CacheIntegrityError(what)

    for _ in range(2):
        view = CachedArray(arr, {}, digests, corrupt)
        np.testing.assert_array_equal(view[:], values)
    assert len(hashes) == 2 * 7 and not view_mod._VERIFIED


def test_verify_false_neither_hashes_nor_remembers(tmp_path, hashes, settled):
    values = _values()
    cache = _put(tmp_path, values)
    for _ in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            np.testing.assert_array_equal(cache.open(KEY, verify=False)[:], values)
    assert not hashes and not view_mod._VERIFIED


def test_a_chunk_changed_while_it_is_read_is_not_remembered(tmp_path, hashes, settled):
    values = _values()
    cache = _put(tmp_path, values)
    chunk = _chunk_files(tmp_path / KEY)[0]
    view = cache.open(KEY)
    array = view._arr

    class Racing:  # the array, with the file touched after zarr read it and before the check
        def __getattr__(self, name):
            return getattr(array, name)

        def __getitem__(self, index):
            block = array[index]
            st = os.stat(chunk)
            os.utime(chunk, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
            return block

    view._arr = Racing()
    np.testing.assert_array_equal(view[:16], values[:16])  # these bytes were hashed: served
    assert str(chunk) not in view_mod._VERIFIED
    np.testing.assert_array_equal(cache.open(KEY)[:16], values[:16])
    assert len(hashes) == 2


def test_a_child_forked_while_the_memo_lock_is_held_can_still_read(tmp_path):
    """fork() copies a held lock as held; the memo's lock is replaced in the child."""
    import multiprocessing as mp

    from cortexalign.features import _cache_view

    values = np.random.default_rng(3).normal(size=(S, D)).astype(np.float32)
    _put(tmp_path, values)
    ctx = mp.get_context("fork")
    with _cache_view._VERIFIED_LOCK:  # held by this (parent) thread at fork time
        proc = ctx.Process(target=_read_all_in_child, args=(str(tmp_path),))
        proc.start()
    proc.join(timeout=20)
    alive = proc.is_alive()
    if alive:
        proc.kill()
    assert not alive and proc.exitcode == 0


def _read_all_in_child(root: str) -> None:
    view = FeatureCache(Path(root)).open(KEY)
    assert view is not None
    view.read()
