"""The host/device pipeline of extraction: batches in, pooled values out, without stalls.

Images are decoded by a small thread pool (PIL and numpy release the GIL) a few batches ahead of
the forward pass (``iter_batches``). On CUDA, when the adapter's ``preprocess`` is a
``cortexalign.models.Preprocess``, the host only decodes and stacks uint8 pixels into page-locked
memory; the resize, crop and normalisation run on the device (``Preprocess.on_device``). Each
batch's pooled values go back to page-locked host memory by an asynchronous copy
(``_to_host``) whose completion event the extraction loop waits for one batch later.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cortexalign.models import Preprocess
from cortexalign.stimuli import StimulusSet

__all__ = ["iter_batches", "LOAD_WORKERS", "PREFETCH"]

#: Decoding threads and batches prepared ahead of the forward pass.
LOAD_WORKERS, PREFETCH = 4, 2


def iter_batches(stimuli: StimulusSet, batch_size: int, prepare: Callable[[list[np.ndarray]], Any],
                 workers: int = LOAD_WORKERS, prefetch: int = PREFETCH,
                 first: int = 0) -> Iterator[Any]:
    """``prepare(images)`` of each batch of ``batch_size`` consecutive stimuli from stimulus
    ``first`` on (0: all of them), in order.

    ``workers`` threads decode images (``stimuli.image``) and one more runs ``prepare`` on each
    completed batch, keeping up to ``prefetch`` batches in flight ahead of the consumer. An error
    decoding or preparing a batch is raised when that batch is reached; pending work is cancelled
    when the consumer stops early.
    """
    n = len(stimuli)
    starts = list(range(first, n, batch_size))
    images_pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="cortexalign-decode")
    batch_pool = ThreadPoolExecutor(1, thread_name_prefix="cortexalign-prepare")

    def submit(start: int) -> Future:
        futures = [images_pool.submit(stimuli.image, i) for i in range(start, min(start + batch_size, n))]
        return batch_pool.submit(lambda: prepare([f.result() for f in futures]))

    queue: deque[Future] = deque(submit(start) for start in starts[:max(1, prefetch)])
    upcoming = iter(starts[max(1, prefetch):])
    try:
        while queue:
            batch = queue.popleft().result()
            start = next(upcoming, None)
            if start is not None:
                queue.append(submit(start))
            yield batch
    finally:
        images_pool.shutdown(wait=False, cancel_futures=True)  # a waiting prepare then fails fast
        batch_pool.shutdown(wait=True, cancel_futures=True)
        images_pool.shutdown(wait=True)


def _batch_functions(adapter: Any, device: torch.device
                     ) -> tuple[Callable[[list[np.ndarray]], Any], Callable[[Any], torch.Tensor]]:
    """(host-side prepare, device-side finish) of a batch of decoded images.

    On CUDA the host side leaves the batch in page-locked memory, so that the copy to the device
    is asynchronous and the main thread never waits for it.
    """
    pre = adapter.preprocess
    if device.type != "cuda":
        return pre, lambda x_bchw: x_bchw.to(device)
    if not isinstance(pre, Preprocess):
        return (lambda images: pre(images).pin_memory(),
                lambda x_bchw: x_bchw.to(device, non_blocking=True))

    def host(images: list[np.ndarray]) -> tuple[list, int]:  # decode side: stack into pinned memory
        return pre.group(images, pin_memory=True), len(images)

    return host, lambda prepared: pre.on_device(prepared[0], prepared[1], device)


@dataclass
class _InFlight:
    """A batch's pooled values on their way to the host: ``values_bn`` is ready after ``done``."""

    start: int
    values_bn: torch.Tensor
    shapes: list[tuple[int, ...]]
    done: torch.cuda.Event | None


def _to_host(flat_bn: torch.Tensor, start: int, shapes: list[tuple[int, ...]]) -> _InFlight:
    """Start the copy of one batch's pooled values to the host (asynchronous on CUDA)."""
    if flat_bn.device.type != "cuda":
        return _InFlight(start, flat_bn.cpu(), shapes, None)
    host_bn = torch.empty(flat_bn.shape, dtype=flat_bn.dtype, pin_memory=True)
    host_bn.copy_(flat_bn, non_blocking=True)
    done = torch.cuda.Event()
    done.record(torch.cuda.current_stream(flat_bn.device))  # the model's GPU, not the default
    return _InFlight(start, host_bn, shapes, done)
