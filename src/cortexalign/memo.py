"""Results of pure computations on arrays, kept for the next call with the same inputs.

A grid of score jobs asks the same question many times: every layer of every model is scored
against the same neural groups, so a group's split-half reliability, or the relabelled vectors
of one model RDM's permutation null, would otherwise be recomputed per job. :class:`Memo` keeps
such results keyed by a digest of the input arrays' bytes (:func:`array_digest`), so a hit is
exactly the same input, never a similar one; it is bounded in bytes (least recently used
entries go first) and safe to share between threads.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import numpy as np

__all__ = ["Memo", "array_digest"]

T = TypeVar("T")


def array_digest(*arrays: Any) -> str:
    """A 32-character digest of arrays' shapes, dtypes and bytes (NumPy or CPU torch tensors)."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        if hasattr(a, "detach"):  # a torch tensor
            a = a.detach().cpu().numpy()
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _nbytes(value: Any) -> int:
    if isinstance(value, tuple | list):
        return sum(_nbytes(v) for v in value)
    if hasattr(value, "nbytes"):
        return int(value.nbytes)
    if hasattr(value, "element_size"):  # torch
        return int(value.numel() * value.element_size())
    return 64


class Memo:
    """A thread-safe cache of at most ``max_bytes`` of results (see the module docstring).

    ``memo.get(key, compute)`` returns the kept result of ``key`` or stores ``compute()``; a
    result larger than ``max_bytes`` is returned without being kept. Keep results read-only:
    callers share them.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The result kept under ``key``, else ``compute()`` (kept if it fits)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = compute()
        size = _nbytes(value)
        if size <= self.max_bytes:
            with self._lock:
                if key not in self._items:
                    self._items[key] = value
                    self._bytes += size
                while self._bytes > self.max_bytes:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= _nbytes(old)
        return value

    def clear(self) -> None:
        """Forget every kept result."""
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)
