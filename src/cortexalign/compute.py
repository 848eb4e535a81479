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
   1e9): one torch thread. Measured on 2 cores (benchmarks/bench_small.py, BENCHMARKS.md): one
   thread is as fast or faster on a quiet machine and 2-30x faster on a busy one at these sizes.
3. Larger work: every thread torch was configured with, less one per core that other processes
   keep busy, never fewer than one. "Busy" is the larger of the 1-minute load average minus this
   process's own share of it, and the threads of other processes runnable right now
   (``/proc/loadavg`` less this process's running threads): the average alone takes a minute
   to notice a job that just started.
4. NumPy's BLAS (OpenBLAS) gets, at every size, the cores that other processes do not use right
   now (the runnable count of rule 3 alone, not the lagging average): its threads do not stall
   on small products as torch's pool does (92 x 1,000 syrk: 198 us with 2 threads, 216 us with 1
   at load 10), OpenBLAS itself keeps tiny products on one thread, and a quiet machine's second
   core then serves the Gram products of 92-300 stimuli as it does the peers' (NumPy, THINGSvision,
   rsatoolbox, which use every core), also in the minute after another job ended, while the
   load average still counts it. On a busy machine it is one thread.

Building a model (``models.load_model``: kernels, initialisation, loading weights) is many small
operations and runs with one thread: the Gabor bank took 0.7 s of CPU and 3.7 s wall with 2
threads on the busy box, 0.015 s with one.

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

Freed memory (the command line)
-------------------------------
glibc returns every freed block above 32 MB (and the top of its heap above a few dozen MB) to the
operating system, so each large temporary (a (23, 32, 112, 112) activation, a 1,000-resample
weight matrix, an FFT buffer) is mapped afresh and page-faulted in, 4 KB at a time: the
quickstart made 15 million page faults, 27 s of system time against 58 s of user time.
:func:`keep_freed_memory`, called once by the ``cortexalign`` command, tells malloc to keep blocks
up to :data:`MALLOC_KEEP_BYTES` for reuse: 1 million faults and 3 s of system time. A library
caller may call it too; it changes no result, only when memory goes back to the system.

Memory kept between calls
-------------------------
A run's bootstraps share their draws and targets: :data:`RESAMPLE_MEMO_BYTES` bounds what
``stats._memo`` keeps of them (pair weights, target ranks; CPU only, exact values).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

__all__ = ["SMALL_WORK", "RESAMPLE_MEMO_BYTES", "MALLOC_KEEP_BYTES", "keep_freed_memory", "threads_for", "compute_threads", "sized_by",
           "gram_work", "total_gram_work", "sort_work", "numpy_kernel", "numpy_input"]

#: Multiply-adds below which one thread is used (see the module docstring).
SMALL_WORK = 1.0e9

#: Bytes of bootstrap pair weights, target ranks and ceilings kept between calls (``stats._memo``).
RESAMPLE_MEMO_BYTES = 256 * 2**20


#: Blocks up to this size come from malloc's heap and freed memory up to twice it is kept for
#: reuse (``keep_freed_memory``).
MALLOC_KEEP_BYTES = 512 * 2**20


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to serve blocks up to :data:`MALLOC_KEEP_BYTES` from its heap and to
    keep freed memory (up to twice that) for reuse instead of unmapping it (see "Freed memory" in
    the module docstring). Returns whether it applied: False off glibc (macOS, musl, Windows)
    or when the ``MALLOC_*`` environment variables already decide."""
    if any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    return all(mallopt(option, value) == 1 for option, value in (
        (m_mmap_threshold, MALLOC_KEEP_BYTES), (m_trim_threshold, 2 * MALLOC_KEEP_BYTES),
        (m_top_pad, 64 * 2**20)))


def numpy_input(x: Any) -> bool:
    """Whether an input can be computed on in NumPy without a copy to another device: a NumPy
    array, or a float32/float64 CPU tensor outside autograd (``x.numpy()`` is a view)."""
    import numpy as np

    if isinstance(x, np.ndarray):
        return True
    dtype = getattr(x, "dtype", None)
    return (getattr(x, "is_floating_point", None) is not None and str(dtype) in
            ("torch.float32", "torch.float64") and numpy_kernel(x))


def numpy_kernel(*tensors: Any) -> bool:
    """Whether work on these tensors runs through NumPy (zero-copy views): all on the CPU and
    outside autograd. See "Backend" in the module docstring."""
    return all(t.device.type == "cpu" and not t.requires_grad for t in tensors)

_F = TypeVar("_F", bound=Callable[..., Any])
_lock = threading.Lock()
_depth = 0  # nested compute_threads contexts keep the outermost choice
_own: dict[str, float] = {}


def _process_age() -> float:
    """Wall seconds since this process started (``/proc``), or since this module was imported."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(1e-3, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):  # pragma: no cover - no /proc (macOS, Windows)
        return max(1e-3, time.monotonic() - _IMPORTED)


_IMPORTED = time.monotonic()


def _n_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _own_share() -> float:
    """This process's CPU use (cores) averaged since the last sample, resampled every 5 s; the
    first sample averages over the process's life (its start is in the load average too)."""
    wall, cpu = time.monotonic(), time.process_time()
    if not _own:
        _own.update(share=cpu / _process_age(), wall=wall, cpu=cpu)
    elapsed = wall - _own["wall"]
    if elapsed >= 5.0:
        _own.update(share=(cpu - _own["cpu"]) / elapsed, wall=wall, cpu=cpu)
    return _own["share"]


_now = {"t": -1.0, "others": 0.0}


def _runnable_others() -> float:
    """Threads of other processes runnable right now: the running count of ``/proc/loadavg`` less
    this process's own running threads (``/proc/self/task``), sampled at most every 0.25 s. The
    1-minute average takes a minute to see a job that just started; this sees it at once."""
    now = time.monotonic()
    if now - _now["t"] < 0.25:
        return _now["others"]
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
        own = 0
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/stat") as f:
                    own += f.read().rsplit(")", 1)[1].split()[0] == "R"
            except OSError:  # the thread ended meanwhile
                continue
        others = float(max(0, running - max(own, 1)))
    except (OSError, ValueError, IndexError):  # pragma: no cover - no /proc (macOS, Windows)
        others = 0.0
    _now.update(t=now, others=others)
    return others


def _other_load() -> float:
    """Cores kept busy by other processes: the 1-minute load average less this process's share,
    or the threads of others runnable right now if more (``_runnable_others``)."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover - no load average on this platform
        return _runnable_others()
    return max(0.0, load - _own_share(), _runnable_others())


def threads_for(work: float, max_threads: int | None = None, blas: bool = False) -> int:
    """The CPU thread count :func:`compute_threads` would use for ``work`` multiply-adds.

    Parameters
    ----------
    work : estimated multiply-adds of the computation (e.g. ``s * s * d`` for an RDM).
    max_threads : the ceiling (default: torch's configured thread count; with ``blas`` NumPy's
        BLAS's).
    blas : the count for NumPy's BLAS rather than torch's pool: the free cores whatever the
        size (rule 4 of the module docstring).
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
    if max_threads is None and blas:
        max_threads = _configured["blas"] or 1
    if max_threads is None:
        import torch

        max_threads = _configured["torch"] or torch.get_num_threads()
    if (work < SMALL_WORK and not blas) or max_threads <= 1:
        return 1
    busy = _runnable_others() if blas else _other_load()
    free = _n_cores() - round(busy)
    return int(max(1, min(max_threads, free)))


_configured: dict[str, int | None] = {"torch": None, "blas": None}


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
        if _configured["blas"] is None:
            _configured["blas"] = max(blas_before, default=1)
        n_blas = threads_for(work, blas=True)
        if n != before:
            torch.set_num_threads(n)
        changed = [c for c, b in zip(blas, blas_before, strict=True) if b != n_blas]
        for c in changed:
            c.set_num_threads(n_blas)
        try:
            yield n
        finally:
            if n != before:
                torch.set_num_threads(before)
            for c, b in zip(blas, blas_before, strict=True):
                if b != n_blas:
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
