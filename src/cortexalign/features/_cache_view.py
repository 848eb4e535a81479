"""A read-only, lazy view of one feature-cache entry, verified chunk by chunk as it is read.

``FeatureCache.open(key)`` returns a :class:`CachedArray`. Nothing is read until rows are asked
for; then only the zarr chunks (rows along the first axis) that hold them are decoded. Every chunk
is checked against its sha256 *before* any of its rows is handed out, so corrupt data is never
used, and no step needs the whole array in memory:

- entries written by this version store one digest per chunk (``chunk_sha256`` in the metadata);
- older entries only have the whole-array ``sha256``: ``open`` streams through them once, chunk by
  chunk, hashing incrementally, and keeps the per-chunk digests of that pass (32 bytes a chunk) for
  the reads that follow. An entry whose whole digest does not match is a miss, as with ``get``.

A chunk that fails its digest (or cannot be decoded) later on discards the entry, warns, and
raises :class:`CacheIntegrityError`: the rows already read were verified, the rest is not used.

Repeated reads (SAE epochs, streamed RDM/Gram blocks) do not hash a chunk again when its bytes on
disk cannot have changed since this process verified it, the rule git's index uses for stat
information. A process-wide memo (at most ``_MEMO_MAX`` chunk files, least recently used dropped)
maps a chunk file's path to its identity when it was verified: ``(st_dev, st_ino, st_size,
st_mtime_ns, st_ctime_ns)``, the array's decoding metadata (codecs, dtype, fill value, ...) and the
expected digest. The file is stat'ed before and after every read; the hash is skipped only when
both stats equal the remembered identity and the metadata and digest are the same. A chunk is
remembered only when the two stats around its verified read agree and its mtime and ctime are more
than ``_SETTLE_NS`` older than the read (git's "racy" rule): any later write, truncate, rename over
it or ``utime`` then gives it a new inode or a ctime that cannot equal the remembered one, so it
is hashed again and a change is caught as before. Not covered: changes that bypass the
filesystem (raw block-device writes, a media error returning other bytes for an unchanged file);
each chunk is still hashed once per process. Only plain chunk files of a local zarr v3 store
(``zarr.storage.LocalStore``, regular chunks along the first axis, no sharding, as
``FeatureCache`` writes them: ``values/c/<chunk>/0/...``) are remembered; any other store, and a
chunk with no file (zarr's fill value), is hashed on every read. ``verify=False`` neither hashes
nor remembers anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import zarr
from zarr.core.chunk_grids import RegularChunkGrid
from zarr.core.metadata.v3 import ArrayV3Metadata

from cortexalign.errors import InputError
from cortexalign.features._cache_writer import sha256_of

__all__ = ["CacheIntegrityError", "CachedArray", "stream_digests"]


class CacheIntegrityError(RuntimeError):
    """A cached chunk does not match the checksum recorded when it was written."""


#: A chunk file changed this recently (mtime or ctime) before its check is not remembered.
_SETTLE_NS = 2 * 10**9  # covers coarse filesystem clocks (FAT: 2 s) as well as ext4/xfs
#: Chunk files remembered as verified, process-wide (~0.5 KB each).
_MEMO_MAX = 16384
_VERIFIED: OrderedDict[str, tuple[Any, ...]] = OrderedDict()
_VERIFIED_LOCK = threading.Lock()


def _reset_lock_in_child() -> None:
    """A process forked while another thread held the lock (a DataLoader worker, say) would
    otherwise wait on it forever: the child gets a fresh lock."""
    global _VERIFIED_LOCK
    _VERIFIED_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_in_child)


def _file_identity(path: str | None) -> tuple[int, ...] | None:
    """``(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns)`` of ``path``; None if absent."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _local_chunk_files(array: Any) -> tuple[str, str, Any] | None:
    """``(array directory, digest of its decoding metadata, metadata)`` when every chunk of rows
    is one plain file of a local store (module docstring), else None: always hash."""
    try:
        store, meta = array.store_path.store, array.metadata
        if not (isinstance(store, zarr.storage.LocalStore) and isinstance(meta, ArrayV3Metadata)
                and isinstance(meta.chunk_grid, RegularChunkGrid) and array.shards is None
                and not meta.storage_transformers
                and tuple(meta.chunk_grid.chunk_shape[1:]) == tuple(meta.shape[1:])):
            return None
        recipe = json.dumps(meta.to_dict(), sort_keys=True, default=str).encode()
        return (os.path.join(os.path.abspath(store.root), array.store_path.path),
                hashlib.sha256(recipe).hexdigest(), meta)
    except Exception:  # an unfamiliar zarr layout: never trust, always hash
        return None


def _remembered(path: str, identity: tuple[Any, ...]) -> bool:
    with _VERIFIED_LOCK:
        hit = _VERIFIED.get(path) == identity
        if hit:
            _VERIFIED.move_to_end(path)
        return hit


def _remember(path: str, identity: tuple[Any, ...]) -> None:
    with _VERIFIED_LOCK:
        _VERIFIED[path] = identity
        _VERIFIED.move_to_end(path)
        while len(_VERIFIED) > _MEMO_MAX:
            _VERIFIED.popitem(last=False)


def stream_digests(array: Any, whole_sha256: str | None) -> list[str] | None:
    """Per-chunk digests of an entry written before they were stored, read chunk by chunk; None
    unless the whole array matches ``whole_sha256`` (or a chunk cannot be decoded)."""
    whole, rows, digests = hashlib.sha256(), int(array.chunks[0]), []
    try:
        for r0 in range(0, array.shape[0], rows):
            block = np.ascontiguousarray(array[r0:r0 + rows])
            whole.update(block.view(np.uint8).reshape(-1))
            digests.append(sha256_of(block))
    except Exception:  # a damaged chunk can fail in any codec
        return None
    return digests if whole.hexdigest() == whole_sha256 else None


class CachedArray:
    """Lazy (s, ...) view of a cached feature array; rows are read and verified on demand.

    Parameters
    ----------
    array : the entry's zarr array, chunked along the first axis only.
    metadata : the entry's metadata (``FeatureCache.metadata``).
    digests : sha256 per chunk, or None to read without verification (``verify=False``).
    on_corrupt : called with a message when a chunk fails; it discards the entry and raises.

    Attributes
    ----------
    shape, dtype, ndim, nbytes : of the whole array (nothing is read to know them).
    chunk_rows : rows per stored chunk; reads are cheapest in multiples of it.
    metadata : what produced the values (model, layer, stimulus ids, ...).
    """

    def __init__(self, array: Any, metadata: dict[str, Any], digests: list[str] | None,
                 on_corrupt: Callable[[str], None]):
        self._arr = array
        self.metadata = metadata
        self.shape: tuple[int, ...] = tuple(int(n) for n in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.chunk_rows = int(array.chunks[0])
        n_chunks = -(-self.shape[0] // self.chunk_rows)
        assert digests is None or len(digests) == n_chunks, (len(digests), n_chunks)
        self._digests = digests
        self._on_corrupt = on_corrupt
        self._files = _local_chunk_files(array) if digests is not None else None
        self._last: tuple[int, np.ndarray] | None = None  # one decoded chunk, for small reads

    def __repr__(self) -> str:
        return (f"CachedArray(shape={self.shape}, dtype={self.dtype}, chunk_rows={self.chunk_rows},"
                f" verified={self._digests is not None})")

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        """Size of the whole array in bytes (as if read into memory)."""
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def _chunk(self, c: int) -> np.ndarray:
        """Decoded, verified, read-only chunk ``c``."""
        if self._last is not None and self._last[0] == c:
            return self._last[1]
        r0, r1 = c * self.chunk_rows, min((c + 1) * self.chunk_rows, self.shape[0])
        path = self._chunk_path(c)
        t0 = time.time_ns()
        before = _file_identity(path)
        try:
            block = np.asarray(self._arr[r0:r1])
        except Exception as exc:  # a damaged chunk can fail in any codec
            self._on_corrupt(f"rows {r0}:{r1} cannot be decoded ({type(exc).__name__})")
            raise  # on_corrupt raises; this is only reached if it did not
        if block.shape[0] != r1 - r0 or (self._digests is not None
                                          and not self._verified(c, block, path, before, t0)):
            self._on_corrupt(f"rows {r0}:{r1} do not match their checksum")
        block.setflags(write=False)
        self._last = (c, block)
        return block

    def _chunk_path(self, c: int) -> str | None:
        """The file holding chunk ``c`` when it may be remembered as verified, else None."""
        if self._files is None:
            return None
        base, _, meta = self._files
        return os.path.join(base, meta.encode_chunk_key((c,) + (0,) * (self.ndim - 1)))

    def _verified(self, c: int, block: np.ndarray, path: str | None,
                  before: tuple[int, ...] | None, t0: int) -> bool:
        """Whether ``block`` (chunk ``c``, read between ``t0``/``before`` and now) is what was
        written: remembered unchanged since this process hashed it, or hashed now."""
        assert self._digests is not None
        expected = self._digests[c]
        if path is None or before is None or self._files is None \
                or _file_identity(path) != before:  # no file, or it changed while being read
            return sha256_of(block) == expected
        identity = (before, self._files[1], expected)
        if _remembered(path, identity):
            return True
        if sha256_of(block) != expected:
            return False
        if max(before[3], before[4]) < t0 - _SETTLE_NS:  # not "racy": a later change is visible
            _remember(path, identity)
        return True

    def _rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` (0 <= start < stop <= s): a view when they sit in one chunk."""
        c0, c1 = start // self.chunk_rows, (stop - 1) // self.chunk_rows
        parts = [self._chunk(c)[max(start - c * self.chunk_rows, 0):stop - c * self.chunk_rows]
                 for c in range(c0, c1 + 1)]
        if len(parts) == 1:
            return parts[0]
        out = np.concatenate(parts)
        out.setflags(write=False)
        return out

    def __getitem__(self, index) -> np.ndarray:
        """``view[i]``, ``view[a:b]`` or ``view[a:b, ...]``: rows first, the rest applied after.

        Only the chunks holding the rows are read. The result is read-only (a copy when the rows
        span several chunks).
        """
        rows, rest = (index[0], index[1:]) if isinstance(index, tuple) and index else (index, ())
        s = self.shape[0]
        if isinstance(rows, (int, np.integer)) and not isinstance(rows, bool):
            i = int(rows) + s if rows < 0 else int(rows)
            if not 0 <= i < s:
                raise IndexError(f"row {int(rows)} is out of range for {s} rows")
            return self._rows(i, i + 1)[0][rest] if rest else self._rows(i, i + 1)[0]
        if not isinstance(rows, slice):
            raise InputError("index", "an int or a slice of rows (then any further indices)",
                             type(rows).__name__, "read row ranges, e.g. view[0:256]; gather "
                             "scattered rows from those blocks")
        start, stop, step = rows.indices(s)
        lo, hi = (start, stop) if step > 0 else (stop + 1, start + 1)
        if hi <= lo:
            out = np.empty((0, *self.shape[1:]), self.dtype)
        else:
            out = self._rows(lo, hi)
            out = out[::step] if step > 0 else out[::-1][::-step]
        return out[(slice(None), *rest)] if rest else out

    def iter_chunks(self, rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, block)`` for consecutive blocks of ``rows`` rows (default: the stored
        chunk size), in order; every block is verified before it is yielded."""
        step = self.chunk_rows if rows is None else rows
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
            raise InputError("rows", "a positive number of rows per block", repr(rows),
                             f"use e.g. rows={self.chunk_rows} (the stored chunk size)")
        for start in range(0, self.shape[0], int(step)):
            yield start, self[start:start + int(step)]

    def read(self) -> np.ndarray:
        """The whole array in memory (verified); use only when it fits."""
        return self[:]
