"""Timing helper shared by the benchmark scripts (run as `python benchmarks/bench_*.py`)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def limit_blas_threads(n: int) -> None:
    """Ask the BLAS libraries for ``n`` threads: call before numpy and torch load them."""
    for var in BLAS_THREAD_VARIABLES:
        os.environ[var] = str(n)


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """The fastest of ``repeats`` wall-clock runs of ``fn()`` and the last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def timed(fn: Callable[[], object], repeats: int) -> tuple[object, float]:
    """The last result of ``repeats`` runs of ``fn()`` and the best wall time, with the CUDA
    device (when there is one) synchronised around each run."""
    import torch

    def sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    best, out = float("inf"), None
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return out, best
