"""Helpers shared by the cache tests (importable: conftest.py puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cortexalign.features import FeatureCache
from cortexalign.features import _cache as cache_mod


def put_small_chunks(root: Path, key: str, values: np.ndarray) -> FeatureCache:
    """A cache at ``root`` holding ``values`` under ``key`` in 1 KiB chunks (many small chunks,
    so the tests see several of them and a partial last one)."""
    old = cache_mod._CHUNK_BYTES
    cache_mod._CHUNK_BYTES = 1024
    try:
        cache = FeatureCache(root)
        cache.put(key, values, {"layer": "blocks.1"})
    finally:
        cache_mod._CHUNK_BYTES = old
    return cache
