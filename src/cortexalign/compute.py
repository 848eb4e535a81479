"""How many CPU threads a computation gets: one policy, chosen by problem size and machine load.

Why this exists: torch's intra-op pool (and NumPy's OpenBLAS, which the float64 Gram products
use) wake every thread for every operation. On small problems, the everyday case in this field
(92 objects, 118 Allen scenes, 1,000 NSD shared images), the wake-ups cost more than the work,
and when other processes share the cores a thread that is not scheduled stalls the whole
operation: ``score("rsa", X_92x1280, human_it)`` took 1.11 s with torch's default 2 threads on a
busy 2-core machine and 0.05 s with one. So every public measure runs inside
:func:`compute_threads`, which sets both pools for the duration of the call and restores them:

1. ``CORTEXALIGN_THREADS=N`` in the environment: always ``N`` (reproducible timings, clusters
   that pin cores).
2. Work below :data:`SMALL_WORK` multiply-adds (an RDM of 1,000 stimuli x 1,000 features is
   1e9): one thread. Measured on 2 cores (benchmarks/bench_small.py, BENCHMARKS.md): one thread is
   as fast or faster on a quiet machine and 2-30x faster on a busy one at these sizes.
3. Larger work: every thread torch was configured with, less one per core that other processes
   keep busy (the 1-minute load average minus this process's own share of it), never fewer than
   one.

Results do not depend on the choice beyond floating-point summation order (float64: ~1e-15;
tests compare the paths). Only the CPU is affected; CUDA work ignores the thread count.

Backend
-------
Kernels are written on torch tensors (any device, autograd where a caller needs it). On the CPU
outside autograd (:func:`numpy_kernel`) the steps where NumPy is measurably faster run on NumPy
views of the same memory: float64 GEMM (OpenBLAS, ~2x torch's CPU build), sorting (introsort,
~2x), column gathers (``np.take``, 1.5x ``index_select``) and row-wise dots (``einsum``, 3x);
and a small problem is done in NumPy from input to output (``rdm._compute``, ``metrics._cka``),
because each torch operation costs 5-10 us of dispatch, more than the arithmetic of a 92-stimulus
RDM. Each such path is tested equal to the torch one (1e-12).

Memory kept between calls
-------------------------
A run's bootstraps share their draws and targets: :data:`RESAMPLE_MEMO_BYTES` bounds what
``stats._resample_memo`` keeps of them (pair weights, target ranks; CPU only, exact values).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

__all__ = ["SMALL_WORK", "RESAMPLE_MEMO_BYTES", "threads_for", "compute_threads", "sized_by",
           "gram_work", "total_gram_work", "sort_work", "numpy_kernel"]

#: Multiply-adds below which one thread is used (see the module docstring).
SMALL_WORK = 1.0e9

#: Bytes of bootstrap pair weights and target ranks kept between calls (``stats._resample_memo``).
RESAMPLE_MEMO_BYTES = 256 * 2**20


def numpy_kernel(*tensors: Any) -> bool:
    """Whether work on these tensors runs through NumPy (zero-copy views): all on the CPU and
    outside autograd. See "Backend" in the module docstring."""
    return all(t.device.type == "cpu" and not t.requires_grad for t in tensors)

_F = TypeVar("_F", bound=Callable[..., Any])
_lock = threading.Lock()
_depth = 0  # nested compute_threads contexts keep the outermost choice
_own = {"wall": time.monotonic(), "cpu": time.process_time(), "share": 0.0}


def _n_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _own_share() -> float:
    """This process's CPU use (cores) averaged since the last sample, resampled every 5 s."""
    wall, cpu = time.monotonic(), time.process_time()
    elapsed = wall - _own["wall"]
    if elapsed >= 5.0:
        _own.update(share=(cpu - _own["cpu"]) / elapsed, wall=wall, cpu=cpu)
    return _own["share"]


def _other_load() -> float:
    """Cores kept busy by other processes: the 1-minute load average less this process's share."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover - no load average on this platform
        return 0.0
    return max(0.0, load - _own_share())


def threads_for(work: float, max_threads: int | None = None) -> int:
    """The CPU thread count :func:`compute_threads` would use for ``work`` multiply-adds.

    Parameters
    ----------
    work : estimated multiply-adds of the computation (e.g. ``s * s * d`` for an RDM).
    max_threads : the ceiling (default: torch's configured thread count).
    """
    env = os.environ.get("CORTEXALIGN_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            from cortexalign.errors import InputError

            raise InputError("CORTEXALIGN_THREADS", "a whole number >= 1", repr(env),
                             "unset it (adaptive threads) or set e.g. CORTEXALIGN_THREADS=2")
        return n
    if max_threads is None:
        import torch

        max_threads = _configured["torch"] or torch.get_num_threads()
    if work < SMALL_WORK or max_threads <= 1:
        return 1
    free = _n_cores() - round(_other_load())
    return int(max(1, min(max_threads, free)))


_configured: dict[str, int | None] = {"torch": None}


def _blas_controllers() -> list[Any]:
    if "blas" not in _blas_cache:
        try:
            from threadpoolctl import ThreadpoolController

            _blas_cache["blas"] = [c for c in ThreadpoolController().lib_controllers
                                   if c.user_api == "blas"]
        except Exception:  # pragma: no cover - threadpoolctl absent or a library it cannot read
            _blas_cache["blas"] = []
    return _blas_cache["blas"]


_blas_cache: dict[str, list[Any]] = {}


@contextlib.contextmanager
def compute_threads(work: float) -> Iterator[int]:
    """Run the block with :func:`threads_for` ``(work)`` CPU threads in torch and NumPy's BLAS.

    Restores both pools on exit. Nested blocks keep the outermost choice (a measure that calls
    another is sized once, by its whole work). Yields the thread count in force.
    """
    global _depth
    import torch

    with _lock:
        outer = _depth == 0
        _depth += 1
    try:
        if not outer:
            yield torch.get_num_threads()
            return
        before = torch.get_num_threads()
        if _configured["torch"] is None:
            _configured["torch"] = before
        n = threads_for(work)
        blas = _blas_controllers()
        blas_before = [c.num_threads for c in blas]
        if n != before:
            torch.set_num_threads(n)
        for c in blas:
            if c.num_threads != n:
                c.set_num_threads(n)
        try:
            yield n
        finally:
            if n != before:
                torch.set_num_threads(before)
            for c, b in zip(blas, blas_before, strict=True):
                if c.num_threads != b:
                    c.set_num_threads(b)
    finally:
        with _lock:
            _depth -= 1


def _shape(x: Any) -> tuple[int, ...]:
    shape = getattr(x, "shape", None)
    if shape is None:
        try:
            return (len(x),)
        except TypeError:
            return ()
    return tuple(int(v) for v in shape)


def gram_work(x: Any) -> float:
    """Multiply-adds of the Gram matrix (RDM, kernel) of an (s, ...) array: ``s * s * prod(...)``."""
    shape = _shape(x)
    if not shape:
        return 0.0
    d = 1
    for v in shape[1:]:
        d *= v
    return float(shape[0]) * shape[0] * d


def total_gram_work(*feature_sets: Any) -> float:
    """Summed :func:`gram_work` of every array in mappings ({name: array or Features}) or
    sequences of arrays; ``None`` entries count nothing."""
    total = 0.0
    for fs in feature_sets:
        if fs is None:
            continue
        items = fs.values() if hasattr(fs, "values") and callable(fs.values) else fs
        if hasattr(items, "shape"):  # one array
            total += gram_work(items)
            continue
        for x in items:
            total += gram_work(getattr(x, "values", x))
    return total


def sort_work(*arrays: Any) -> float:
    """Rough cost of rank-based comparisons of ``arrays``: 64 operations per element."""
    total = 0.0
    for a in arrays:
        n = 1
        for v in _shape(getattr(a, "rdms", a)):
            n *= v
        total += 64.0 * n
    return total


def sized_by(work: Callable[..., float]) -> Callable[[_F], _F]:
    """Decorator: run the function inside :func:`compute_threads` sized by ``work(*args, **kw)``."""

    def deco(fn: _F) -> _F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with compute_threads(work(*args, **kwargs)):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return deco
