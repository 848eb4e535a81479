"""Sources of activation chunks for the streaming trainer: arrays, and the feature cache.

A chunk is an (N, d) float tensor of tokens. Sources are iterables, so the trainer never holds a
layer's tokens for all images at once: ``cache_token_chunks`` reads a few images at a time from a
feature-cache entry (written by ``extract_features(..., pooling="none")``, values (s, t, d) with
the prefix tokens first; read through ``FeatureCache.open``, so every chunk is checked against
its sha256 before use: hashed on the first pass, and on later epochs only if its file may have
changed since) and drops the prefix (CLS) tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from cortexalign.errors import InputError

__all__ = ["array_chunks", "token_chunks", "cache_token_chunks", "open_cached_tokens"]


def _as_tensor(a: Any) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.float()
    arr = np.ascontiguousarray(a)  # a copy only when ``a`` is strided (prefix tokens dropped)
    if not arr.flags.writeable:  # verified cache reads are read-only (the view's memo): never
        arr = arr.astype(np.float32)  # share them; the one copy, converted to float32 on the way
    return torch.from_numpy(arr).float()


def array_chunks(acts_nd: Any, chunk_size: int = 65536) -> Iterator[torch.Tensor]:
    """Consecutive (<= chunk_size, d) chunks of an (N, d) array or tensor (numpy, torch, zarr)."""
    if len(getattr(acts_nd, "shape", ())) != 2:
        raise InputError("acts_nd", "an (N, d) array of tokens",
                         f"shape {tuple(getattr(acts_nd, 'shape', ()))}",
                         "flatten tokens to (N, d), or use token_chunks for (s, t, d) activations")
    for start in range(0, acts_nd.shape[0], chunk_size):
        yield _as_tensor(acts_nd[start:start + chunk_size])


def token_chunks(acts_std: Any, num_prefix_tokens: int, images_per_chunk: int = 64,
                 block_order: np.ndarray | None = None) -> Iterator[torch.Tensor]:
    """Patch tokens of (s, t, d) activations, ``images_per_chunk`` images at a time.

    Parameters
    ----------
    acts_std : (s, t, d) array-like that supports slicing on axis 0 (numpy, torch, zarr).
    num_prefix_tokens : leading tokens to drop (1 for CLIP's CLS).
    block_order : optional order in which to visit the ceil(s / images_per_chunk) blocks of
        consecutive images (contiguous reads stay cheap on zarr); a chunk is its images' patch
        tokens flattened to (images x (t - prefix), d).
    """
    shape = tuple(getattr(acts_std, "shape", ()))
    if len(shape) != 3:
        raise InputError("acts_std", "an (s, t, d) array of token activations", f"shape {shape}",
                         "extract with pooling='none' from a token (ViT) layer")
    if not 0 <= num_prefix_tokens < shape[1]:
        raise InputError("num_prefix_tokens", f"an integer in [0, {shape[1]})",
                         str(num_prefix_tokens), "pass the model's number of CLS/register tokens")
    n_blocks = -(-shape[0] // images_per_chunk)
    order = np.arange(n_blocks) if block_order is None else np.asarray(block_order)
    for b in order:
        start = int(b) * images_per_chunk
        # drop the prefix tokens before the one copy to a contiguous tensor: the reshape is a view
        patches = acts_std[start:start + images_per_chunk][:, num_prefix_tokens:]
        yield _as_tensor(patches).reshape(-1, shape[2])


def open_cached_tokens(cache: Any, key: str) -> tuple[Any, dict[str, Any]]:
    """The lazily read (s, t, d) tokens of a feature-cache entry and its metadata.

    The entry is read through ``FeatureCache.open``: every chunk is checked against its sha256
    before its tokens are used (a corrupt chunk raises ``CacheIntegrityError``).
    """
    view = cache.open(key)
    if view is None:
        raise InputError("key", "the key of a complete feature-cache entry", f"{key[:16]}... not in "
                         f"{cache!r}", "extract the layer with pooling='none' and this cache first")
    if view.ndim != 3:
        raise InputError("key", "an entry of (s, t, d) token activations (pooling='none')",
                         f"an entry of shape {view.shape} (pooling "
                         f"{view.metadata.get('pooling')!r})", "re-extract the layer with "
                         "pooling='none'")
    return view, view.metadata


def cache_token_chunks(cache: Any, key: str, images_per_chunk: int = 64, shuffle: bool = True,
                       seed: int = 0, epochs: int = 1) -> Iterator[torch.Tensor]:
    """Stream the patch tokens (prefix tokens dropped) of a feature-cache entry.

    Parameters
    ----------
    cache : a ``cortexalign.features.FeatureCache``.
    key : the entry's key (``Features.key`` of a ``pooling='none'`` extraction).
    images_per_chunk : images read per chunk; a chunk holds their patch tokens.
    shuffle : visit the blocks of images in a new random order each epoch (the trainer shuffles
        tokens within each chunk).
    epochs : passes over the entry.
    """
    arr, meta = open_cached_tokens(cache, key)
    n_prefix = int(meta.get("num_prefix_tokens", 0))
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        n_blocks = -(-arr.shape[0] // images_per_chunk)
        order = rng.permutation(n_blocks) if shuffle else None
        yield from token_chunks(arr, n_prefix, images_per_chunk, order)
