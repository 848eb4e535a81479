"""Write one feature-cache entry row block by row block, published atomically on a clean exit.

``FeatureCache.writer(key, shape, dtype, metadata)`` returns a :class:`CacheWriter`. Inside its
``with`` block the caller hands over consecutive row blocks (``write(start, block_b...)``, in
order, no gaps or overlaps); the writer packs them into the entry's stored chunks (the same
``chunk_rows`` rule as ``put``), hashes each chunk and the whole array as the bytes go by, and
writes every chunk once, whole, into a temporary zarr store in the cache root. On a clean exit
with every row written it adds the metadata file (last), fsyncs and renames the store into place
(``FeatureCache._publish``), so the entry is byte-for-byte what ``put`` writes for the same
values and ``get``/``open`` read it unchanged. An exception, or a block missing, discards the
temporary store: nothing half-written is ever visible under the key, and a process killed
mid-write leaves only a ``.tmp-`` directory that the next ``FeatureCache`` removes.

Host memory: at most one stored chunk (about ``_cache._CHUNK_BYTES``, or one row when a row is
larger) is buffered, plus the block being written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import zarr

from cortexalign import __version__
from cortexalign.errors import InputError

__all__ = ["CacheWriter", "chunk_rows_for", "writer_layout", "sha256_of", "CACHE_FORMAT",
           "META_FILE", "ARRAY_NAME"]

CACHE_FORMAT = 1
META_FILE = "cortexalign.json"
ARRAY_NAME = "values"


def chunk_rows_for(shape: tuple[int, ...], itemsize: int, chunk_bytes: int) -> int:
    """Rows per stored chunk: about ``chunk_bytes`` of rows, at least one, at most all of them."""
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * itemsize
    return min(max(1, chunk_bytes // max(1, row_bytes)), max(1, shape[0]))


def sha256_of(values: np.ndarray) -> str:
    """sha256 of the C-order bytes of ``values``: the cache's whole-array and per-chunk digest."""
    return hashlib.sha256(np.ascontiguousarray(values).view(np.uint8).reshape(-1)).hexdigest()


def writer_layout(shape: Any, dtype: Any, chunk_rows: Any, chunk_bytes: int
                  ) -> tuple[tuple[int, ...], np.dtype, int]:
    """Checked ``(shape, dtype, rows per stored chunk)`` of a new entry (``FeatureCache.writer``);
    ``chunk_rows`` None gives ``put``'s rule: about ``chunk_bytes`` of rows."""
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else None
    if not shape or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool)
                            and n >= 0 for n in shape):
        raise InputError("shape", "a non-empty tuple of sizes (s, ...)", repr(shape),
                         "pass the shape of the whole array, e.g. (s, d)")
    shape = tuple(int(n) for n in shape)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.kind not in "fiub":
        raise InputError("dtype", "a numeric dtype (e.g. 'float32')", repr(dtype),
                         "pass the storage dtype of the values")
    if chunk_rows is None:
        return shape, dt, chunk_rows_for(shape, dt.itemsize, chunk_bytes)
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) \
            or chunk_rows < 1:
        raise InputError("chunk_rows", "a positive number of rows per chunk (or None)",
                         repr(chunk_rows), "leave it None to match put's chunking")
    return shape, dt, int(chunk_rows)


class CacheWriter:
    """Context manager writing an (s, ...) entry from consecutive row blocks (module docstring).

    Made by ``FeatureCache.writer``; not constructed directly.

    Parameters
    ----------
    key : the entry's key; shape : (s, ...) of the whole array; dtype : its storage dtype (blocks
        are cast to it as numpy assignment does).
    metadata : JSON-serialisable description (checked here, before anything is written).
    chunk_rows : rows per stored chunk; tmp : the temporary directory to create;
    publish : ``publish(tmp)`` fsyncs a complete temporary entry and renames it into place.
    location : how to reach ``tmp`` when it is not a local directory (an object store,
        ``features._cache_remote``): ``open_group(tmp)``, ``write_text(tmp, name, text)`` and
        ``remove(tmp)``; None: the local filesystem.

    Attributes
    ----------
    rows_written : rows received so far (the next ``write`` must start there).
    """

    def __init__(self, key: str, shape: tuple[int, ...], dtype: np.dtype,
                 metadata: dict[str, Any] | None, chunk_rows: int, tmp: Any,
                 publish: Callable[[Any], None], location: Any = None):
        self.key, self.shape, self.dtype = key, tuple(shape), np.dtype(dtype)
        self.chunk_rows = int(chunk_rows)
        self._meta = dict(metadata or {})
        try:
            json.dumps(self._meta)
        except TypeError as exc:
            raise InputError("metadata", "JSON-serialisable values", str(exc),
                             "convert arrays to lists and paths to strings") from None
        self._tmp, self._publish = tmp, publish
        self._location = location if location is not None else _LocalLocation()
        self._arr: Any = None
        self._buf: np.ndarray | None = None  # rows of the chunk being filled
        self._buf_rows = 0
        self._stored = 0  # rows on disk (a chunk boundary)
        self._whole = hashlib.sha256()
        self._digests: list[str] = []
        self.rows_written = 0
        self._state = "new"  # new -> open -> done | discarded

    def __repr__(self) -> str:
        return (f"CacheWriter(key={self.key[:12]}..., shape={self.shape}, dtype={self.dtype}, "
                f"rows_written={self.rows_written}, state={self._state})")

    def __enter__(self) -> CacheWriter:
        if self._state != "new":
            raise InputError("writer", "a fresh writer (each writes one entry, once)",
                             f"a writer that is {self._state}", "call cache.writer(...) again")
        try:
            group = self._location.open_group(self._tmp)
            self._arr = group.create_array(ARRAY_NAME, shape=self.shape, dtype=self.dtype,
                                           chunks=(self.chunk_rows, *self.shape[1:]))
        except BaseException:
            self._discard()
            raise
        self._state = "open"
        return self

    def write(self, start: int, block: np.ndarray) -> None:
        """Write rows ``start:start + len(block)``; ``start`` must equal ``rows_written``.

        ``block`` : (b, ...) real-valued rows with the entry's trailing shape, b >= 1.
        """
        if self._state != "open":
            raise InputError("writer", "an open writer (inside its with block)",
                             f"a writer that is {self._state}",
                             "write inside `with cache.writer(...) as w:`")
        block = np.asarray(block)
        s, tail = self.shape[0], self.shape[1:]
        if block.dtype.kind not in "fiub" or block.ndim != len(self.shape) \
                or block.shape[1:] != tail or block.shape[0] < 1:
            raise InputError("block", f"(b, {', '.join(map(str, tail))}) real rows, b >= 1"
                             if tail else "(b,) real values, b >= 1",
                             f"{block.dtype} array of shape {block.shape}",
                             "pass the next rows of the (s, ...) array")
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)) \
                or start != self.rows_written or start + block.shape[0] > s:
            got = (f"rows {start}:{start + block.shape[0]}"
                   if isinstance(start, (int, np.integer)) else repr(start))
            raise InputError("start", f"the next rows in order, from row {self.rows_written} "
                             f"(of {s}), no gaps, overlaps or rows past the end", got,
                             "write consecutive row blocks, each starting where the last ended")
        self._take(np.ascontiguousarray(block, dtype=self.dtype))

    def _take(self, rows: np.ndarray) -> None:
        """Store ``rows`` (the next ones): whole chunks at once, a partial one via the buffer."""
        r, s, at = self.chunk_rows, self.shape[0], 0
        while at < len(rows):
            if self._buf_rows == 0:  # on a chunk boundary: complete chunks go straight to disk
                rest = len(rows) - at
                n = rest if self.rows_written + rest == s else rest // r * r
                if n:
                    self._flush(rows[at:at + n])
                    self.rows_written += n
                    at += n
                    continue
            end = min(self._stored + r, s)  # last row (exclusive) of the chunk being filled
            part = rows[at:at + end - self.rows_written]
            if self._buf is None:
                self._buf = np.empty((r, *self.shape[1:]), self.dtype)
            self._buf[self._buf_rows:self._buf_rows + len(part)] = part
            self._buf_rows += len(part)
            self.rows_written += len(part)
            at += len(part)
            if self.rows_written == end:
                n, self._buf_rows = self._buf_rows, 0
                self._flush(self._buf[:n])

    def _flush(self, rows: np.ndarray) -> None:
        """Hash and store ``rows``: whole chunks from row ``_stored`` (the last may end the array)."""
        r0 = self._stored
        for c0 in range(0, len(rows), self.chunk_rows):
            chunk = rows[c0:c0 + self.chunk_rows]
            self._digests.append(sha256_of(chunk))
            self._whole.update(chunk.view(np.uint8).reshape(-1))
        self._arr[r0:r0 + len(rows)] = rows
        self._stored = r0 + len(rows)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self._discard()
            return
        if self.rows_written != self.shape[0]:
            self._discard()
            raise InputError("rows", f"all {self.shape[0]} rows written before the with block "
                             "ends", f"rows 0:{self.rows_written}", "write every row block; "
                             "nothing was stored under this key")
        try:
            self._finish()
        except BaseException:
            self._discard()
            raise
        self._state = "done"

    def _finish(self) -> None:
        meta = dict(self._meta)
        meta.update(key=self.key, shape=list(self.shape), dtype=str(self.dtype),
                    sha256=self._whole.hexdigest(), chunk_rows=self.chunk_rows,
                    chunk_sha256=self._digests, cortexalign_version=__version__,
                    created=datetime.now(UTC).isoformat(), cache_format=CACHE_FORMAT)
        # written last: its presence marks completion; publish fsyncs, then renames into place
        self._location.write_text(self._tmp, META_FILE, json.dumps(meta, sort_keys=True, indent=1))
        self._publish(self._tmp)

    def _discard(self) -> None:
        self._state = "discarded"
        self._buf = None
        self._location.remove(self._tmp)


class _LocalLocation:
    """A temporary entry that is a local directory (``FeatureCache`` on a filesystem)."""

    @staticmethod
    def open_group(tmp: Path) -> Any:
        return zarr.open_group(tmp, mode="w-")

    @staticmethod
    def write_text(tmp: Path, name: str, text: str) -> None:
        (tmp / name).write_text(text)

    @staticmethod
    def remove(tmp: Path) -> None:
        shutil.rmtree(tmp, ignore_errors=True)
