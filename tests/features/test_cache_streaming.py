"""FeatureCache.open: a lazy row view of an entry, every chunk verified before it is used."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from _cache_helpers import put_small_chunks  # tests/features/conftest.py puts it on sys.path
from hypothesis import given, settings
from hypothesis import strategies as st

from cortexalign.errors import InputError
from cortexalign.features import CachedArray, CacheIntegrityError, FeatureCache
from cortexalign.features import _cache as cache_mod

KEY = "ab" * 32
S, D = 103, 16  # 103 rows in chunks of 16 (64 bytes a row, 1 KiB chunks): 7 chunks, last partial


def _values(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(S, D)).astype(np.float32)


def _put(root: Path, values: np.ndarray) -> FeatureCache:
    return put_small_chunks(root, KEY, values)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    values = _values()
    cache = _put(tmp_path_factory.mktemp("cache"), values)
    return cache.open(KEY), values


def _flip_chunk(entry: Path, row: int) -> None:
    import zarr
    arr = zarr.open_array(entry / cache_mod.ARRAY_NAME, mode="r+")
    arr[row] = arr[row] + 1


def test_put_records_a_sha256_per_chunk(tmp_path):
    values = _values()
    meta = _put(tmp_path, values).metadata(KEY)
    assert meta["chunk_rows"] == 16 and len(meta["chunk_sha256"]) == 7
    for c, digest in enumerate(meta["chunk_sha256"]):  # independent hashlib over the raw rows
        assert digest == hashlib.sha256(values[16 * c:16 * (c + 1)].tobytes()).hexdigest()


def test_open_is_a_lazy_view_with_the_entry_metadata(stored):
    view, values = stored
    assert isinstance(view, CachedArray)
    assert view.shape == (S, D) and view.dtype == np.float32 and view.ndim == 2
    assert len(view) == S and view.nbytes == values.nbytes and view.chunk_rows == 16
    assert view.metadata["layer"] == "blocks.1" and "verified=True" in repr(view)
    np.testing.assert_array_equal(view.read(), values)
    assert not view[3:40].flags.writeable and not view[3:9].flags.writeable


@settings(max_examples=60, deadline=None)
@given(start=st.integers(-S - 5, S + 5) | st.none(), stop=st.integers(-S - 5, S + 5) | st.none(),
       step=st.sampled_from([None, 1, 2, 5, 17, -1, -3]))
def test_row_slices_match_numpy(stored, start, stop, step):
    view, values = stored
    np.testing.assert_array_equal(view[start:stop:step], values[start:stop:step])
    np.testing.assert_array_equal(view[start:stop:step, 2:9:3], values[start:stop:step, 2:9:3])


@pytest.mark.parametrize("row", [0, 15, 16, 102, -1, -103])
def test_single_rows_and_elements(stored, row):
    view, values = stored
    np.testing.assert_array_equal(view[row], values[row])
    assert view[row, 5] == values[row, 5]


def test_out_of_range_rows_and_bad_indices(stored):
    view, _ = stored
    with pytest.raises(IndexError):
        view[S]
    with pytest.raises(InputError, match="index"):
        view[[1, 2]]
    with pytest.raises(InputError, match="rows"):
        next(view.iter_chunks(0))


@pytest.mark.parametrize("rows", [None, 1, 10, 16, 40, 500])
def test_iter_chunks_covers_every_row_once_in_order(stored, rows):
    view, values = stored
    starts, blocks = zip(*view.iter_chunks(rows), strict=True)
    step = 16 if rows is None else rows
    assert list(starts) == list(range(0, S, step))
    assert all(len(b) <= step for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), values)


def test_missing_key_is_a_miss(tmp_path):
    assert FeatureCache(tmp_path).open(KEY) is None


def test_a_corrupt_chunk_raises_when_read_and_discards_the_entry(tmp_path):
    values = _values()
    cache = _put(tmp_path, values)
    view = cache.open(KEY)
    _flip_chunk(tmp_path / KEY, row=50)  # chunk 3 (rows 48:64)
    np.testing.assert_array_equal(view[:48], values[:48])  # untouched chunks are still served
    with pytest.warns(RuntimeWarning, match="corrupt"), \
            pytest.raises(CacheIntegrityError, match="rows 48:64 do not match"):
        view[40:60]
    assert not (tmp_path / KEY).exists() and cache.open(KEY) is None


@pytest.mark.parametrize("damage", ["drop", "truncate"])
def test_missing_or_truncated_chunk_files_are_never_used(tmp_path, damage):
    cache = _put(tmp_path, _values())
    view = cache.open(KEY)
    chunk = sorted(p for p in (tmp_path / KEY / "values" / "c").rglob("*") if p.is_file())[2]
    if damage == "drop":  # zarr would silently return the fill value
        chunk.unlink()
    else:
        chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    with pytest.warns(RuntimeWarning), pytest.raises(CacheIntegrityError, match="rows 32:48"):
        for _ in view.iter_chunks():
            pass


def test_verify_false_reads_without_checking(tmp_path):
    values = _values()
    cache = _put(tmp_path, values)
    _flip_chunk(tmp_path / KEY, row=0)
    view = cache.open(KEY, verify=False)
    assert "verified=False" in repr(view)
    np.testing.assert_array_equal(view[0], values[0] + 1)  # the caller opted out of the check


def _make_legacy(entry: Path) -> None:
    """Turn an entry into one written before per-chunk digests (whole-array sha256 only)."""
    meta = json.loads((entry / cache_mod.META_FILE).read_text())
    del meta["chunk_sha256"], meta["chunk_rows"]
    (entry / cache_mod.META_FILE).write_text(json.dumps(meta))


def test_legacy_entry_is_verified_at_open_then_per_chunk(tmp_path):
    values = _values()
    cache = _put(tmp_path, values)
    _make_legacy(tmp_path / KEY)
    view = cache.open(KEY)
    np.testing.assert_array_equal(view[:], values)
    _flip_chunk(tmp_path / KEY, row=90)  # after open: caught by the digests of the open pass
    with pytest.warns(RuntimeWarning), pytest.raises(CacheIntegrityError, match="rows 80:96"):
        view[85:]


def test_corrupt_legacy_entry_is_a_miss_at_open(tmp_path):
    cache = _put(tmp_path, _values())
    _make_legacy(tmp_path / KEY)
    _flip_chunk(tmp_path / KEY, row=7)
    with pytest.warns(RuntimeWarning, match="corrupt"):
        assert cache.open(KEY) is None
    assert not (tmp_path / KEY).exists()


def test_digest_list_of_the_wrong_length_is_a_miss(tmp_path):
    cache = _put(tmp_path, _values())
    meta_path = tmp_path / KEY / cache_mod.META_FILE
    meta = json.loads(meta_path.read_text())
    meta["chunk_sha256"] = meta["chunk_sha256"][:-1]
    meta_path.write_text(json.dumps(meta))
    with pytest.warns(RuntimeWarning):
        assert cache.open(KEY) is None


def test_get_still_returns_the_whole_array(tmp_path):
    values = _values()
    cache = _put(tmp_path, values)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, meta = cache.get(KEY)
    np.testing.assert_array_equal(got, values)
    np.testing.assert_array_equal(cache.open(KEY)[:], got)


def test_three_dimensional_entries_stream_by_rows(tmp_path):
    values = np.arange(40 * 3 * 5, dtype=np.float32).reshape(40, 3, 5)
    old = cache_mod._CHUNK_BYTES
    cache_mod._CHUNK_BYTES = 200  # 60 bytes a row: 3 rows a chunk
    try:
        cache = FeatureCache(tmp_path)
        cache.put(KEY, values)
    finally:
        cache_mod._CHUNK_BYTES = old
    view = cache.open(KEY)
    assert view.chunk_rows == 3
    np.testing.assert_array_equal(view[5:31, 1, ::2], values[5:31, 1, ::2])
