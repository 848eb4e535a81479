"""A content-addressed feature cache on disk: one zarr v3 group per key, JSON metadata beside it.

Layout under ``root``::

    <key>/                 a zarr v3 group (zarr.json)
        values/            the feature array, chunked along stimuli
        cortexalign.json   everything that produced it (written last)
    .tmp-<host>-<pid>-<rand>/   an entry being written (never read)
    .trash-<rand>/         an entry being deleted (never read)

The key is the sha256 of every input that determines the values (:func:`feature_key`), so a
change in any of them is a new entry and nothing is ever invalidated in place. Writes are atomic:
the entry is written and fsynced in a temp directory in the same root and renamed into place, so a
run killed mid-write leaves only a temp directory that no reader looks at and that a later
``FeatureCache`` removes. A read validates the entry (metadata present, shape, dtype and a sha256 of
the values); anything that fails is a miss, the entry is discarded and the caller recomputes.
``open`` reads an entry lazily, chunk by chunk, each chunk checked against its own sha256
(``chunk_sha256``, written by ``put``) before it is used (``_cache_view.CachedArray``); a chunk
already verified in this process is hashed again only if its file may have changed since.
(The same habits as saev's activation shards: content-addressed, metadata beside the data.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from cortexalign.errors import InputError
from cortexalign.features._cache_view import CachedArray, CacheIntegrityError, stream_digests
from cortexalign.features._cache_writer import (
    ARRAY_NAME,
    CACHE_FORMAT,
    META_FILE,
    CacheWriter,
    sha256_of,
    writer_layout,
)
from cortexalign.features._disk import dir_bytes, fsync_dir, fsync_tree, pid_alive

__all__ = ["EXTRACTION_VERSION", "FeatureCache", "CacheSummary", "CachedArray",
           "CacheIntegrityError", "CacheWriter", "feature_key"]

#: Bump when a change in the extraction code changes the values it produces.
EXTRACTION_VERSION = "1"
_TMP, _TRASH = ".tmp-", ".trash-"
_CHUNK_BYTES = 8 * 2**20
_HEX = set("0123456789abcdef")


def feature_key(*, model_id: str, weights_digest: str, layer: str, pooling: str,
                preprocess_key: str, stimuli_hash: str, dtype: str = "float32",
                precision: str = "fp32", extraction_version: str = EXTRACTION_VERSION) -> str:
    """The cache key: sha256 over everything that determines the feature values.

    ``dtype`` (storage) and ``precision`` (the resolved autocast mode, ``fp32`` or ``bf16``) are part
    of the key because they change the numbers, as do the model, its weights, the layer, the pooling,
    the preprocessing, the stimuli and the extraction code version.
    """
    parts = {"model_id": model_id, "weights_digest": weights_digest, "layer": layer,
             "pooling": pooling, "preprocess": preprocess_key, "stimuli": stimuli_hash,
             "dtype": dtype, "precision": precision, "extraction_version": extraction_version}
    for name, value in parts.items():
        if not isinstance(value, str) or not value:
            raise InputError(name, "a non-empty string (a cache key part)", repr(value),
                             f"give the adapter/stimulus set a proper {name}")
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(b"cortexalign-features\0" + blob).hexdigest()


def _check_key(key: str) -> str:
    if not isinstance(key, str) or len(key) != 64 or not set(key) <= _HEX:
        raise InputError("key", "a 64-character lowercase sha256 hex digest (from feature_key)",
                         repr(key)[:80], "compute keys with cortexalign.features.feature_key")
    return key


@dataclass(frozen=True)
class CacheSummary:
    """How much a cache holds: complete entries, their bytes, and leftover partial writes."""

    root: str
    n_entries: int
    n_bytes: int
    n_partial: int

    def __str__(self) -> str:
        return (f"{self.n_entries} entries, {self.n_bytes / 2**20:.1f} MiB in {self.root}"
                + (f" ({self.n_partial} partial writes pending cleanup)" if self.n_partial else ""))


#: The ``FeatureCache`` subclass of URL roots, registered by ``features._cache_remote`` when the
#: package is imported (so this module does not import it).
URL_CACHES: dict[str, type] = {}


def is_url(root: Any) -> bool:
    """Whether a cache root names an fsspec URL (``s3://``, ``gs://``, ``memory://``...) rather
    than a local folder (a path, or a ``file://`` URL)."""
    text = str(root)
    return "://" in text and not text.startswith("file://")


class FeatureCache:
    """Content-addressed feature arrays on disk, or at any fsspec URL.

    Parameters
    ----------
    root : directory of the cache (created if absent), or an fsspec URL (``s3://bucket/cache``,
        ``gs://...``): the same entries, checksums and guarantees on an object store
        (``features._cache_remote``; needs the store's fsspec package, e.g. ``s3fs``). Several
        processes may share it: writes are atomic renames (on an object store: a manifest
        written last), and two writers of the same key produce identical entries (first wins).
    stale_after_s : a temp directory whose writer cannot be checked (other host) is removed once it
        is this old; one whose writer process is gone on this host is removed at once.
    storage_options : passed to fsspec for a URL root (endpoint, credentials; the environment's
        are used otherwise); must be empty for a local root.
    """

    def __new__(cls, root: Any = None, *args: Any, **kwargs: Any) -> FeatureCache:
        if cls is FeatureCache and is_url(root):  # an object store: same API, other layout
            return super().__new__(URL_CACHES["fsspec"])
        return super().__new__(cls)

    def __init__(self, root: str | os.PathLike[str], stale_after_s: float = 24 * 3600,
                 storage_options: dict[str, Any] | None = None):
        if storage_options:
            raise InputError("storage_options", "none for a local cache folder",
                             f"{sorted(storage_options)} with root {str(root)!r}",
                             "pass an fsspec URL (s3://bucket/cache), or drop storage_options")
        text = str(root)
        self.root = Path(text[len("file://"):] if text.startswith("file://") else root)
        if self.root.exists() and not self.root.is_dir():
            raise InputError("root", "a directory for the feature cache", f"the file {str(root)!r}",
                             "point the cache at a directory (it is created when missing)")
        self.root.mkdir(parents=True, exist_ok=True)
        self.stale_after_s = stale_after_s
        self.cleanup()

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.root)!r})"

    @property
    def url(self) -> str:
        """Where another process (a Ray worker) opens the same cache: the absolute folder, or
        the URL."""
        return str(self.root.resolve())

    # -- where entries are (overridden by features._cache_remote) -------------------------------
    def _is_entry(self, entry: Any) -> bool:
        """Whether an entry (complete or not) sits at ``entry``: read it, or discard it."""
        return entry.is_dir()

    def _read_meta(self, entry: Any) -> dict[str, Any]:
        return json.loads((entry / META_FILE).read_text())

    def _array(self, entry: Any, meta: dict[str, Any]) -> Any:
        return zarr.open_array(entry / ARRAY_NAME, mode="r")

    @staticmethod
    def _name(entry: Any) -> str:
        return entry.name

    def path(self, key: str) -> Path:
        """The directory of entry ``key`` (it may not exist)."""
        return self.root / _check_key(key)

    # -- writing ------------------------------------------------------------------------------
    def put(self, key: str, values: np.ndarray, metadata: dict[str, Any] | None = None) -> Path:
        """Store ``values`` under ``key`` atomically and return the entry directory.

        ``metadata`` must be JSON-serialisable; the cache adds the key, shape, dtype, a sha256 of
        the values and of each stored chunk of rows (``chunk_rows``, ``chunk_sha256``: what
        :meth:`open` verifies), the cortexalign version and the creation time. If a valid entry already exists
        (another process wrote it first) it is kept and the new copy dropped. (One
        :meth:`writer` given the whole array as a single block.)
        """
        values = np.ascontiguousarray(values)
        if values.ndim == 0 or values.dtype.kind not in "fiub":
            raise InputError("values", "a numeric array with at least one dimension",
                             f"{values.dtype} array of shape {values.shape}", "pass the feature array")
        with self.writer(key, values.shape, values.dtype, metadata) as w:
            if len(values):
                w.write(0, values)
        return self.path(key)

    def writer(self, key: str, shape: tuple[int, ...], dtype: Any,
               metadata: dict[str, Any] | None = None, chunk_rows: int | None = None
               ) -> CacheWriter:
        """A context manager that writes entry ``key`` from consecutive row blocks.

        ``with cache.writer(key, (s, d), "float32", meta) as w: w.write(0, rows_bd); ...``.
        The entry has exactly the layout, digests and metadata :meth:`put` gives the same values;
        it is published atomically when the block ends cleanly with all s rows written, and
        discarded on an exception or missing rows (see ``_cache_writer``).

        Parameters
        ----------
        key : from :func:`feature_key`; shape : (s, ...) of the whole array; dtype : numeric
            storage dtype; metadata : JSON-serialisable description.
        chunk_rows : rows per stored chunk (default: about 8 MiB of rows, as ``put`` stores).
        """
        _check_key(key)
        shape, dt, rows = writer_layout(shape, dtype, chunk_rows, _CHUNK_BYTES)
        dest = self.path(key)
        tmp = self.root / f"{_TMP}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        return CacheWriter(key, shape, dt, metadata, rows, tmp,
                           lambda written: self._publish(written, dest))

    def _publish(self, tmp: Path, dest: Path) -> None:
        """fsync the complete temp entry ``tmp``, then rename it to ``dest`` (first valid wins)."""
        fsync_tree(tmp)
        if dest.exists():
            if self._read_meta_checked(dest) is not None:
                shutil.rmtree(tmp, ignore_errors=True)
                return
            self._discard(dest)
        try:
            os.rename(tmp, dest)  # atomic on one filesystem; fails if dest reappeared meanwhile
        except OSError:
            if self._read_meta_checked(dest) is None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        fsync_dir(self.root)

    def _discard(self, entry: Path) -> None:
        """Move an entry out of its key name at once, then delete it."""
        trash = self.root / f"{_TRASH}{uuid.uuid4().hex[:12]}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(entry, trash)
        shutil.rmtree(trash, ignore_errors=True)

    # -- reading ------------------------------------------------------------------------------
    def _read_meta_checked(self, entry: Path) -> dict[str, Any] | None:
        """Metadata of a structurally complete entry (metadata and array agree), else None."""
        try:
            meta = self._read_meta(entry)
            arr = self._array(entry, meta)
            ok = (meta.get("key") == self._name(entry) and list(arr.shape) == meta["shape"]
                  and str(arr.dtype) == meta["dtype"] and meta.get("cache_format") == CACHE_FORMAT)
        except (OSError, ValueError, KeyError, TypeError, zarr.errors.BaseZarrError):
            return None
        return meta if ok else None

    def contains(self, key: str) -> bool:
        """Whether a structurally complete entry exists (values are verified by :meth:`get`)."""
        dest = self.path(key)
        return self._is_entry(dest) and self._read_meta_checked(dest) is not None

    __contains__ = contains

    def get(self, key: str, verify: bool = True) -> tuple[np.ndarray, dict[str, Any]] | None:
        """``(values, metadata)`` of entry ``key``, or None on a miss.

        An entry that exists but is incomplete or corrupt (missing metadata, shape or dtype
        mismatch, unreadable or missing chunks, checksum mismatch when ``verify``) is discarded
        with a warning and reported as a miss, so the caller recomputes it.
        """
        dest = self.path(key)
        if not self._is_entry(dest):
            return None
        meta = self._read_meta_checked(dest)
        values = None
        if meta is not None:
            try:
                values = np.asarray(self._array(dest, meta)[...])
            except Exception:  # a damaged chunk can fail in any codec: treat as corrupt
                values = None
            if values is not None and verify and sha256_of(values) != meta.get("sha256"):
                values = None
        if values is None:
            self._warn_discard(key, dest)
            return None
        return values, meta

    def open(self, key: str, verify: bool = True) -> CachedArray | None:
        """A read-only lazy view of entry ``key`` (nothing read yet), or None on a miss.

        The view has ``shape``, ``dtype``, ``view[a:b]`` (rows) and ``iter_chunks(rows)``; only
        the chunks holding the requested rows are decoded. With ``verify``, every chunk is checked
        against its sha256 before any of its rows is returned; a chunk that fails discards the
        entry, warns and raises :class:`CacheIntegrityError` (corrupt data is never returned).
        Entries written before per-chunk digests existed are verified here in one streaming pass
        against their whole-array sha256 (a mismatch is a miss, as in :meth:`get`). Later passes
        skip the hash of a chunk whose file is unchanged since this process verified it (stat
        identity, as git's index; see ``_cache_view``).
        """
        dest = self.path(key)
        exists = self._is_entry(dest)
        meta = self._read_meta_checked(dest) if exists else None
        if meta is None:
            if exists:
                self._warn_discard(key, dest)
            return None
        arr = self._array(dest, meta)

        def corrupt(what: str) -> None:
            self._warn_discard(key, dest)
            raise CacheIntegrityError(f"feature cache entry {key[:12]}... in {self.root}: {what}; "
                                      "the entry was discarded: recompute the features")

        if not verify:
            return CachedArray(arr, meta, None, corrupt)
        digests = meta.get("chunk_sha256")
        if meta.get("chunk_rows") != arr.chunks[0] or not isinstance(digests, list):
            digests = stream_digests(arr, meta.get("sha256"))  # an entry from before per-chunk digests
        if digests is None or len(digests) != -(-arr.shape[0] // arr.chunks[0]):
            self._warn_discard(key, dest)
            return None
        return CachedArray(arr, meta, digests, corrupt)

    def _warn_discard(self, key: str, dest: Path) -> None:
        warnings.warn(f"feature cache entry {key[:12]}... in {self.root} is incomplete or "
                      "corrupt; discarding it (it will be recomputed)", RuntimeWarning,
                      stacklevel=3)
        self._discard(dest)

    def metadata(self, key: str) -> dict[str, Any] | None:
        """The metadata of a complete entry without reading the values."""
        dest = self.path(key)
        return self._read_meta_checked(dest) if self._is_entry(dest) else None

    def keys(self) -> list[str]:
        """Keys of the structurally complete entries, sorted."""
        return sorted(p.name for p in self.root.iterdir()
                      if len(p.name) == 64 and set(p.name) <= _HEX and p.is_dir()
                      and self._read_meta_checked(p) is not None)

    def __len__(self) -> int:
        return len(self.keys())

    # -- housekeeping -------------------------------------------------------------------------
    def remove(self, key: str) -> bool:
        """Delete entry ``key``; return whether it existed."""
        dest = self.path(key)
        existed = dest.exists()
        if existed:
            self._discard(dest)
        return existed

    def clear(self) -> int:
        """Delete every entry and leftover temp directory; return the number of entries removed."""
        n = 0
        for p in list(self.root.iterdir()):
            if p.is_dir() and len(p.name) == 64 and set(p.name) <= _HEX:
                self._discard(p)
                n += 1
        self.cleanup(everything=True)
        return n

    def cleanup(self, everything: bool = False) -> int:
        """Remove temp directories left by dead writers (or all of them); return how many.

        A temp directory is removed when its writer process (same host) is gone, when it is older
        than ``stale_after_s``, or always with ``everything=True`` (use only when no writer runs).
        """
        removed = 0
        host = socket.gethostname()
        for p in list(self.root.iterdir()):
            if p.name.startswith(_TRASH):
                shutil.rmtree(p, ignore_errors=True)
                continue
            if not p.name.startswith(_TMP):
                continue
            stale = everything
            try:
                stale = stale or time.time() - p.stat().st_mtime > self.stale_after_s
            except FileNotFoundError:
                continue
            stale = stale or self._writer_gone(p.name, host)
            if stale:
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
        return removed

    @staticmethod
    def _writer_gone(name: str, host: str) -> bool:
        # name = .tmp-<host>-<pid>-<rand>; the host may itself contain dashes
        try:
            w_host, pid, _ = name[len(_TMP):].rsplit("-", 2)
            return w_host == host and not pid_alive(int(pid))
        except ValueError:
            return False

    def summary(self) -> CacheSummary:
        """Entry count and total size of the cache."""
        keys = self.keys()
        n_bytes = sum(dir_bytes(self.root / k) for k in keys)
        n_partial = sum(1 for p in self.root.iterdir() if p.name.startswith(_TMP))
        return CacheSummary(str(self.root), len(keys), n_bytes, n_partial)
