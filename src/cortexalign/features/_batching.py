"""How many images go through the model at once: chosen from free memory, halved on out-of-memory.

Extraction asks this module twice, and nowhere else decides a batch size:

``auto_batch_size``
    When the caller sets no ``batch_size``. On the CPU (and any device whose free memory cannot
    be asked) it is :data:`CPU_BATCH_SIZE`. On CUDA it runs one probe batch of
    :data:`PROBE_BATCH` images with the device's peak-memory counter reset, takes the growth of
    the peak over the memory held before as the per-image cost (conservative: fixed workspaces
    are counted as if they grew with the batch), and picks the largest power of two whose
    batch fits in :data:`MEMORY_FRACTION` of the free memory (``torch.cuda.mem_get_info``),
    at most :data:`MAX_AUTO_BATCH` and never more than the number of stimuli. On MPS the
    same with the driver's allocation as the peak (an approximation: MPS keeps no peak counter)
    and ``recommended_max_memory`` minus what the driver holds as the free memory.
``run_shrinking``
    Drives a batched loop that may run out of device memory. The loop reports each batch whose
    rows are stored; on ``torch.cuda.OutOfMemoryError`` (or MPS's "out of memory" error) the
    batch size is halved, the device's cached blocks are released, and the loop resumes at the
    first row not yet stored: finished batches are never recomputed or lost. Each halving is
    reported to ``on_shrink`` (extraction prints a line; the runner also stores a note). At
    batch size 1 the error is raised.

The device memory calls go through :class:`DeviceMemory`, so tests inject a fake one on the CPU.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import torch

__all__ = ["CPU_BATCH_SIZE", "MEMORY_FRACTION", "MAX_AUTO_BATCH", "PROBE_BATCH", "DeviceMemory",
           "BatchChoice", "BatchShrink", "auto_batch_size", "batch_size_for", "device_memory",
           "is_out_of_memory", "run_shrinking"]

#: Batch size on the CPU, and on devices whose free memory cannot be asked, when none is set.
CPU_BATCH_SIZE = 32
#: Fraction of the free device memory an automatically chosen batch may fill.
MEMORY_FRACTION = 0.7
#: Largest automatically chosen batch size.
MAX_AUTO_BATCH = 1024
#: Images in the probe batch that measures the per-image memory.
PROBE_BATCH = 4


class DeviceMemory(Protocol):
    """What batch sizing asks of a device's memory (bytes). ``torch.cuda`` / ``torch.mps`` in use;
    a fake in tests."""

    def free(self) -> int:
        """Bytes that new allocations can still get."""

    def reset_peak(self) -> int:
        """Reset the peak counter; return the bytes allocated now."""

    def peak(self) -> int:
        """Most bytes allocated since the last ``reset_peak``."""

    def release(self) -> None:
        """Return cached blocks to the device (after an out-of-memory error)."""


class _CudaMemory:
    def __init__(self, device: torch.device):
        self.device = device

    def free(self) -> int:
        return int(torch.cuda.mem_get_info(self.device)[0])

    def reset_peak(self) -> int:
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        return int(torch.cuda.memory_allocated(self.device))

    def peak(self) -> int:
        torch.cuda.synchronize(self.device)
        return int(torch.cuda.max_memory_allocated(self.device))

    def release(self) -> None:
        gc.collect()
        torch.cuda.empty_cache()


class _MpsMemory:
    """MPS keeps no peak counter: the driver's allocation (cached blocks included) stands in."""

    def free(self) -> int:
        return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())

    def reset_peak(self) -> int:
        torch.mps.synchronize()
        return int(torch.mps.driver_allocated_memory())

    def peak(self) -> int:
        torch.mps.synchronize()
        return int(torch.mps.driver_allocated_memory())

    def release(self) -> None:
        gc.collect()
        torch.mps.empty_cache()


def device_memory(device: torch.device | str) -> DeviceMemory | None:
    """The memory counters of ``device``, or None where they cannot be asked (the CPU)."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return _CudaMemory(device)
    if device.type == "mps" and hasattr(torch, "mps") and hasattr(torch.mps,
                                                                  "recommended_max_memory"):
        return _MpsMemory()
    return None


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a device out-of-memory error (CUDA's own class, or MPS's and older
    CUDA's ``RuntimeError`` saying "out of memory")."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


@dataclass(frozen=True)
class BatchChoice:
    """An automatically chosen batch size and why (``message`` is the line extraction prints).

    ``per_image_bytes`` and ``free_bytes`` are None on devices without memory counters."""

    size: int
    device: str
    per_image_bytes: int | None = None
    free_bytes: int | None = None

    @property
    def message(self) -> str:
        """One line saying what was chosen from what."""
        if self.per_image_bytes is None:
            return f"batch size {self.size} (the default on {self.device})"
        return (f"batch size {self.size} chosen from {self.free_bytes / 2**30:.1f} GiB free on "
                f"{self.device} at {self.per_image_bytes / 2**20:.1f} MiB per image "
                f"({MEMORY_FRACTION:.0%} of the free memory at most)")


@dataclass(frozen=True)
class BatchShrink:
    """One halving after an out-of-memory error: from ``old`` to ``new`` images per batch,
    resuming at stimulus ``start`` (rows before it were already stored)."""

    old: int
    new: int
    start: int
    error: str

    @property
    def message(self) -> str:
        """One line for the console and the run's notes."""
        return (f"out of device memory at batch size {self.old}: retrying from stimulus "
                f"{self.start} with batch size {self.new} ({self.error[:160]})")


def batch_size_for(free_bytes: int, per_image_bytes: int, n_stimuli: int,
                   fraction: float = MEMORY_FRACTION, most: int = MAX_AUTO_BATCH) -> int:
    """The largest power of two b with ``b * per_image_bytes <= fraction * free_bytes``, clipped
    to [1, min(most, n_stimuli)] (a batch of the whole set when it fits)."""
    fits = int(fraction * max(0, free_bytes) // max(1, per_image_bytes))
    cap = max(1, min(most, n_stimuli))
    if fits >= cap:
        return cap
    return 1 << max(0, fits.bit_length() - 1) if fits >= 1 else 1


def auto_batch_size(device: torch.device | str, probe: Callable[[int], None], n_stimuli: int,
                    memory: DeviceMemory | None = None) -> BatchChoice:
    """Choose a batch size for ``n_stimuli`` images on ``device`` (module docstring).

    Parameters
    ----------
    device : where the model runs.
    probe : ``probe(b)`` runs the model's forward pass (and pooling) on the first b stimuli and
        discards the result; called once, with b = min(PROBE_BATCH, n_stimuli), and only on a
        device with memory counters. If it runs out of memory, it is retried with b = 1.
    n_stimuli : images to extract (the batch never exceeds it).
    memory : the device's counters (default: :func:`device_memory`; tests pass a fake).
    """
    device = torch.device(device)
    memory = memory if memory is not None else device_memory(device)
    if memory is None:
        return BatchChoice(max(1, min(CPU_BATCH_SIZE, n_stimuli)), str(device))
    b = max(1, min(PROBE_BATCH, n_stimuli))
    while True:
        held = memory.reset_peak()
        try:
            probe(b)
            break
        except Exception as exc:
            if not is_out_of_memory(exc) or b == 1:
                raise
        memory.release()  # outside the except block: the failed probe's tensors are free
        b = 1
    per_image = max(1, (memory.peak() - held) // b)
    free = memory.free()
    return BatchChoice(batch_size_for(free, per_image, n_stimuli), str(device), per_image, free)


def run_shrinking(run: Callable[[int, int], Iterator[int]], n: int, batch_size: int, *,
                  memory: DeviceMemory | None = None,
                  on_shrink: Callable[[BatchShrink], None] | None = None) -> int:
    """Run a batched loop over ``n`` items, halving its batch size on out-of-memory errors.

    Parameters
    ----------
    run : ``run(start, batch_size)`` processes items ``start:n`` in batches of ``batch_size`` and
        yields, after each batch whose results are stored, the index after that batch.
    n : items in all. batch_size : the first batch size.
    memory : released after each out-of-memory error (None: nothing to release).
    on_shrink : told of each halving.

    Returns
    -------
    The batch size the loop finished with.

    Raises
    ------
    The out-of-memory error at batch size 1, and any other error at once.
    """
    done = 0
    while True:
        error = None
        try:
            for stop in run(done, batch_size):
                assert done < stop <= n, f"run yielded {stop} after {done} of {n}"
                done = stop
            return batch_size
        except Exception as exc:
            if not is_out_of_memory(exc) or batch_size == 1:
                raise
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        # outside the except block: the error's traceback (holding the failed batch's tensors)
        # is gone, so releasing the cache can return their memory
        if memory is not None:
            memory.release()
        shrink = BatchShrink(batch_size, batch_size // 2, done, error)
        batch_size = shrink.new
        if on_shrink is not None:
            on_shrink(shrink)
