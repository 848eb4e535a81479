"""Time and peak memory of one call (shared by the scaling benchmarks; run as scripts).

Peak memory is the growth of the process's resident set during the first run: Linux's peak-RSS
counter (VmHWM) is reset through /proc/self/clear_refs before the call and read after it, minus
the RSS before it (glibc's mmap threshold is pinned at 128 KiB and the heap trimmed first, so
freed blocks do not hide in the baseline). On CUDA the peak is also
``torch.cuda.max_memory_allocated`` above what was allocated before.
"""

from __future__ import annotations

import ctypes
import gc
import time


def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD: large blocks are mmapped, freed at once
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure(fn, device, repeats: int) -> dict:
    """Best-of time and the first run's peak host (and device) memory growth, in MiB."""
    import torch

    cuda = device.type == "cuda"
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
    base_kb, can_reset = _status_kb("VmRSS"), reset_peak_rss()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        gpu0 = torch.cuda.memory_allocated(device)
    times = []
    for k in range(repeats):
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
        if k == 0:
            peak_host = (_status_kb("VmHWM") - base_kb) / 1024 if can_reset else float("nan")
            peak_gpu = ((torch.cuda.max_memory_allocated(device) - gpu0) / 2**20 if cuda
                        else None)
    return {"seconds": min(times), "peak_host_mb": peak_host, "peak_gpu_mb": peak_gpu}


