"""The feature cache on an object store (any fsspec URL: ``s3://``, ``gs://``, ``memory://``).

``FeatureCache("s3://bucket/cache")`` returns a :class:`RemoteFeatureCache`: the same keys,
metadata, chunking, per-chunk and whole-array sha256 and API as on a local disk, with a layout
made for stores that cannot rename::

    <root>/<key>/cortexalign.json          the manifest: the metadata, naming its data (written last)
    <root>/<key>/d-<host>-<pid>-<rand>/    one writer's zarr group (values/ + a copy of the metadata)

Publishing is one PUT. A writer writes its zarr group under its own data prefix, then, unless a
valid manifest is already there (first wins), writes the manifest, which names that prefix
(``"array": "d-.../values"``). An object store makes a single PUT visible whole or not at all,
and a reader looks only at a manifest and the data it names, so a reader never sees half an
entry: a writer killed before its manifest leaves data no manifest names (invisible, removed by
:meth:`RemoteFeatureCache.cleanup` once its writer is gone or it is ``stale_after_s`` old), and a
manifest is never written before its data is complete. Two writers racing on one key each write
their own prefix; whichever manifest lands names complete data. Every read is verified against
the sha256 digests in the manifest, as on disk, and a corrupt entry is discarded (manifest first)
and recomputed. Nothing is cached in memory between calls: each check reads the store.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
import uuid
from typing import Any

import zarr

from cortexalign.errors import InputError
from cortexalign.features._cache import (
    _HEX,
    URL_CACHES,
    CacheSummary,
    FeatureCache,
    _check_key,
)
from cortexalign.features._cache_writer import ARRAY_NAME, META_FILE, CacheWriter, writer_layout
from cortexalign.features._disk import pid_alive

__all__ = ["RemoteFeatureCache"]

_DATA = "d-"
_DATA_NAME = re.compile(r"^d-[A-Za-z0-9._-]+$")


class _RemoteLocation:
    """A writer's data prefix on the store (``CacheWriter``'s ``location``)."""

    def __init__(self, cache: RemoteFeatureCache):
        self.cache = cache

    def open_group(self, tmp: str) -> Any:
        return zarr.open_group(self.cache._url_of(tmp), mode="w-",
                               storage_options=self.cache.storage_options or None)

    def write_text(self, tmp: str, name: str, text: str) -> None:
        self.cache.fs.pipe_file(f"{tmp}/{name}", text.encode())

    def remove(self, tmp: str) -> None:
        self.cache._rm(tmp)


class RemoteFeatureCache(FeatureCache):
    """``FeatureCache`` at an fsspec URL (module docstring); made by ``FeatureCache(url)``.

    Attributes
    ----------
    root, url : the URL (without a trailing slash). fs : the fsspec filesystem.
    storage_options : what fsspec was given (endpoint, credentials).
    """

    def __init__(self, root: str, stale_after_s: float = 24 * 3600,
                 storage_options: dict[str, Any] | None = None):
        import fsspec

        self.storage_options = dict(storage_options or {})
        self.root = str(root).rstrip("/")
        self.stale_after_s = stale_after_s
        try:
            self.fs, self._path = fsspec.core.url_to_fs(self.root, **self.storage_options)
            self._path = self._path.rstrip("/")
            if not self.fs.exists(self._path):
                self.fs.makedirs(self._path, exist_ok=True)
        except ImportError as err:
            raise InputError("cache_dir", "an fsspec URL whose filesystem is installed",
                             repr(self.root), f"install its package ({err})") from None
        except (OSError, ValueError) as err:
            raise InputError("cache_dir", "a URL fsspec can read and write", f"{self.root!r}: "
                             f"{type(err).__name__}: {err}", "check the bucket, the endpoint "
                             "and the credentials (storage_options or the environment)") from None

    def __repr__(self) -> str:
        return f"FeatureCache({self.root!r})"

    @property
    def url(self) -> str:
        """The URL (another process opens the same cache with it and ``storage_options``)."""
        return self.root

    def path(self, key: str) -> str:
        """The store path of entry ``key`` (a prefix; it may not exist)."""
        return f"{self._path}/{_check_key(key)}"

    def _url_of(self, path: str) -> str:
        return self.fs.unstrip_protocol(path)

    def _rm(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError, OSError):
            self.fs.rm(path, recursive=True)

    # -- hooks of FeatureCache -------------------------------------------------------------------
    def _is_entry(self, entry: str) -> bool:
        """A manifest exists (data without one is a write in progress: not an entry)."""
        try:
            self.fs.invalidate_cache(entry)
            return bool(self.fs.isfile(f"{entry}/{META_FILE}"))
        except (OSError, ValueError):
            return False

    def _read_meta(self, entry: str) -> dict[str, Any]:
        return json.loads(self.fs.cat_file(f"{entry}/{META_FILE}"))

    def _array(self, entry: str, meta: dict[str, Any]) -> Any:
        data, _, name = str(meta.get("array", "")).partition("/")
        if not _DATA_NAME.match(data) or name != ARRAY_NAME:
            raise ValueError(f"manifest names no data of this entry: {meta.get('array')!r}")
        return zarr.open_array(self._url_of(f"{entry}/{data}/{ARRAY_NAME}"), mode="r",
                               storage_options=self.storage_options or None)

    @staticmethod
    def _name(entry: str) -> str:
        return entry.rsplit("/", 1)[-1]

    # -- writing ---------------------------------------------------------------------------------
    def writer(self, key: str, shape: tuple[int, ...], dtype: Any,
               metadata: dict[str, Any] | None = None, chunk_rows: int | None = None
               ) -> CacheWriter:
        """As ``FeatureCache.writer``; the data go under the writer's own prefix of the key."""
        from cortexalign.features._cache import _CHUNK_BYTES

        _check_key(key)
        shape, dt, rows = writer_layout(shape, dtype, chunk_rows, _CHUNK_BYTES)
        dest = self.path(key)
        tmp = f"{dest}/{_DATA}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        return CacheWriter(key, shape, dt, metadata, rows, tmp,
                           lambda written: self._publish(written, dest), _RemoteLocation(self))

    def _publish(self, tmp: str, dest: str) -> None:
        """Write the manifest of the complete data at ``tmp`` (one PUT), unless a valid entry is
        already there (first wins: then ``tmp`` is removed)."""
        if self._is_entry(dest) and self._read_meta_checked(dest) is not None:
            self._rm(tmp)
            return
        meta = json.loads(self.fs.cat_file(f"{tmp}/{META_FILE}"))
        meta["array"] = f"{tmp.rsplit('/', 1)[-1]}/{ARRAY_NAME}"
        self.fs.pipe_file(f"{dest}/{META_FILE}", json.dumps(meta, sort_keys=True,
                                                            indent=1).encode())

    def _discard(self, entry: str) -> None:
        """Remove the manifest first (the entry is gone at once), then the data it named."""
        try:
            data = str(self._read_meta(entry).get("array", "")).partition("/")[0]
        except (OSError, ValueError):
            data = ""
        self._rm(f"{entry}/{META_FILE}")
        if _DATA_NAME.match(data):
            self._rm(f"{entry}/{data}")

    # -- listing and housekeeping ----------------------------------------------------------------
    def _children(self, path: str) -> list[str]:
        try:
            return [p.rstrip("/").rsplit("/", 1)[-1]
                    for p in self.fs.ls(path, detail=False, refresh=True)]
        except FileNotFoundError:
            return []

    def _key_dirs(self) -> list[str]:
        return [n for n in self._children(self._path) if len(n) == 64 and set(n) <= _HEX]

    def keys(self) -> list[str]:
        """Keys of the structurally complete entries, sorted."""
        return sorted(k for k in self._key_dirs()
                      if self._read_meta_checked(f"{self._path}/{k}") is not None)

    def remove(self, key: str) -> bool:
        """Delete entry ``key`` (its manifest, then its data); return whether it existed."""
        dest = self.path(key)
        existed = self._is_entry(dest)
        if existed:
            self._discard(dest)
        return existed

    def clear(self) -> int:
        """Delete every entry and every unpublished data prefix; return the entries removed."""
        n = len(self.keys())
        for k in self._key_dirs():
            self._rm(f"{self._path}/{k}")
        return n

    def _orphans(self, everything: bool) -> list[str]:
        """Data prefixes no manifest names whose writer is gone (or that are stale)."""
        host, now, out = socket.gethostname(), time.time(), []
        for k in self._key_dirs():
            entry = f"{self._path}/{k}"
            try:
                named = str(self._read_meta(entry).get("array", "")).partition("/")[0]
            except (OSError, ValueError):
                named = None
            for child in self._children(entry):
                if not child.startswith(_DATA) or child == named:
                    continue
                if everything or self._writer_gone(child, host) or \
                        self._age(f"{entry}/{child}", now) > self.stale_after_s:
                    out.append(f"{entry}/{child}")
        return out

    def _age(self, prefix: str, now: float) -> float:
        try:
            return now - self.fs.modified(f"{prefix}/zarr.json").timestamp()
        except (OSError, ValueError, NotImplementedError, AttributeError):
            return 0.0  # unknown: not stale by age

    @staticmethod
    def _writer_gone(name: str, host: str) -> bool:
        try:  # d-<host>-<pid>-<rand>; the host may itself contain dashes
            w_host, pid, _ = name[len(_DATA):].rsplit("-", 2)
            return w_host == host and not pid_alive(int(pid))
        except ValueError:
            return False

    def cleanup(self, everything: bool = False) -> int:
        """Remove unpublished data prefixes of writers that are gone (same host), older than
        ``stale_after_s``, or all of them with ``everything`` (only when no writer runs); return
        how many. Lists every key: call it now and then, not on every open."""
        orphans = self._orphans(everything)
        for p in orphans:
            self._rm(p)
        return len(orphans)

    def summary(self) -> CacheSummary:
        """Entry count, total size and unpublished data prefixes of the cache."""
        keys = self.keys()
        n_bytes = 0
        for k in keys:
            entry = f"{self._path}/{k}"
            data = str(self._read_meta(entry).get("array", "")).partition("/")[0]
            n_bytes += int(self.fs.du(f"{entry}/{data}")) + int(
                self.fs.size(f"{entry}/{META_FILE}"))
        n_partial = sum(1 for k in self._key_dirs() for c in self._children(f"{self._path}/{k}")
                        if c.startswith(_DATA)) - len(keys)
        return CacheSummary(self.root, len(keys), n_bytes, max(n_partial, 0))


URL_CACHES["fsspec"] = RemoteFeatureCache
