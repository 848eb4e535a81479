"""What the statistics of one run's jobs have in common, kept between calls.

Every job of a run draws the same resamples (same seed, same stimuli) and compares with the same
target RDMs: the quickstart scores 20 layers against 8 human IT RDMs with 1,000 resamples each,
and ranked the same 8 target vectors under the same 1,000 sets of pair weights 20 times, and
computed the same noise ceiling 20 times. So three things are kept, on the CPU, within
``compute.RESAMPLE_MEMO_BYTES``:

- the pair weights ``c_i c_j`` of a chunk of draws, by ``(s, n_bootstrap, seed, rows)``
  (``pair_weights_for``), with the sums of their cubes (the tie term of the rank spread);
- a target vector's centred weighted ranks under one chunk of draws, by the digest of its bytes
  (``target_ranks``). They are halves of integers below ``2^23``, so they are stored exactly in
  float32 (half the bytes); a vector whose ranks would not be exact is not kept;
- small results of a target alone, such as its noise ceiling (``kept_result``), by the digest of
  its vectors.

Results are the same with or without the memo (bit for bit: the ranks are exact either way).
Least recently used entries go first when the budget is reached.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch

from cortexalign.compute import RESAMPLE_MEMO_BYTES

__all__ = ["DrawKey", "pair_weights_for", "target_ranks", "kept_result", "clear"]

DrawKey = tuple[int, int, int, int, int]
"""``(s, n_bootstrap, seed, first row, stop row)`` of a chunk of bootstrap draws."""

_lock = threading.Lock()
_entries: OrderedDict[tuple, tuple] = OrderedDict()
_bytes = [0]


def _nbytes(value: tuple) -> int:
    # 1 KB for the key and bookkeeping: bounds the number of small entries too
    return 1024 + sum(v.numel() * v.element_size() for v in value if isinstance(v, torch.Tensor))


def _get(key: tuple) -> tuple | None:
    with _lock:
        value = _entries.get(key)
        if value is not None:
            _entries.move_to_end(key)
        return value


def _put(key: tuple, value: tuple) -> None:
    size = _nbytes(value)
    if size > RESAMPLE_MEMO_BYTES // 2:  # one entry never takes most of the budget
        return
    with _lock:
        if key in _entries:
            return
        _entries[key] = value
        _bytes[0] += size
        while _bytes[0] > RESAMPLE_MEMO_BYTES and _entries:
            _, old = _entries.popitem(last=False)
            _bytes[0] -= _nbytes(old)


def clear() -> None:
    """Forget every kept weight and rank (tests; or to free the memory)."""
    with _lock:
        _entries.clear()
        _bytes[0] = 0


def pair_weights_for(key: DrawKey | None, device: torch.device,
                     make: Callable[[], tuple[torch.Tensor, torch.Tensor]]
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(w_bp, counts_bs, cubes_b)`` of a chunk of draws: ``make()`` gives the first two, kept
    by ``key`` on the CPU (``None``: not kept)."""
    if key is None or device.type != "cpu":
        w_bp, counts_bs = make()
        return w_bp, counts_bs, (w_bp * w_bp * w_bp).sum(1)
    hit = _get(("w", key))
    if hit is None:
        w_bp, counts_bs = make()
        hit = (w_bp, counts_bs, (w_bp * w_bp * w_bp).sum(1))
        _put(("w", key), hit)
    return hit


def _digest(x: torch.Tensor) -> bytes:
    # SHA-256 runs on the CPU's SHA extensions where present: ~0.5 GB/s here, twice blake2b
    return hashlib.sha256(memoryview(x.contiguous().numpy()).cast("B")).digest()


def target_ranks(y_p: torch.Tensor, key: DrawKey | None,
                 rank: Callable[[], tuple[torch.Tensor, torch.Tensor]]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``rank()`` (centred weighted ranks (b, p) and their spread (b,)) of ``y_p`` under the
    draws ``key``, kept on the CPU when exact in float32. A kept entry is returned as it is kept:
    float32 ranks, exact (``rdm.row_dots`` takes them beside float64 without a copy)."""
    if key is None or y_p.device.type != "cpu" or y_p.requires_grad:
        return rank()
    mkey = ("r", key, _digest(y_p))
    hit = _get(mkey)
    if hit is not None:
        return hit
    ranks_bp, spread_b = rank()
    if float(ranks_bp.abs().amax()) < 2.0**22:  # halves below 2^23: exact in float32
        _put(mkey, (ranks_bp.to(torch.float32), spread_b))
    return ranks_bp, spread_b


def kept_result(key: tuple, data: torch.Tensor, compute: Callable[[], Any]) -> Any:
    """``compute()``, a small result that depends only on ``key`` and the values of ``data``,
    kept on the CPU by both (computed again when ``data`` is elsewhere or needs a gradient)."""
    if data.device.type != "cpu" or data.requires_grad:
        return compute()
    mkey = ("k", key, tuple(data.shape), str(data.dtype), _digest(data))
    hit = _get(mkey)
    if hit is None:
        hit = (compute(),)
        _put(mkey, hit)
    return hit[0]
