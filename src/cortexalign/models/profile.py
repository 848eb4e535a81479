"""Efficiency of a model on the current device: parameters, FLOPs, latency and peak memory.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` for one forward pass at the
model's native input size: 2 x multiply-accumulates of matrix products, convolutions and
attention (``scaled_dot_product_attention``); element-wise operations, norms and activations are
not counted (torch's convention, the one fvcore and the SAM papers report as "FLOPs" x 2 MACs).
Latency is the median wall time over ``n_repeat`` forward passes after ``n_warmup`` (CUDA
synchronised before and after each), divided by the batch size. Peak memory is
``torch.cuda.max_memory_allocated`` during the timed passes on CUDA (weights included); on the
CPU it is the growth of the process's resident set size, sampled every millisecond during the
passes (approximate: the host allocator caches memory), and ``extra["memory_method"]`` says which.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from cortexalign.compute import compute_threads
from cortexalign.device import resolve_device
from cortexalign.errors import InputError

__all__ = ["profile_model", "ModelProfile", "count_flops", "count_parameters", "device_string"]


@dataclass(frozen=True)
class ModelProfile:
    """Size and efficiency of a model on one device, as ``profile_model`` measured them.

    Attributes
    ----------
    model_id : the adapter's id. device : where latency and memory were measured.
    params : parameter count. flops : per image. latency_ms : per image (median).
    peak_mem_mb : peak accelerator (or host) memory. extra : JSON-able details.
    """

    model_id: str
    device: str
    params: int
    flops: float
    latency_ms: float
    peak_mem_mb: float
    extra: dict[str, Any] = field(default_factory=dict)


def count_parameters(module: torch.nn.Module) -> int:
    """Number of parameters (shared ones once)."""
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


def count_flops(module: torch.nn.Module, x_bchw: torch.Tensor) -> int:
    """FLOPs of ``module(x_bchw)`` for the whole batch (see the module docstring)."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(x_bchw)
    return int(counter.get_total_flops())


def device_string(device: torch.device) -> str:
    """``"cuda:<GPU name>"`` or ``"cpu:<processor> x<threads>"`` for the model card."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine() or "cpu"
    return f"cpu:{cpu} x{torch.get_num_threads()}"


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # not Linux: fall back to the peak, which only grows
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _RssSampler:
    """Peak resident set size over a block, sampled in a background thread."""

    def __enter__(self) -> _RssSampler:
        self.start = self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def _time_passes(module, x_bchw, device, n_warmup: int, n_repeat: int) -> list[float]:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *a: None)
    times = []
    with torch.inference_mode():
        for i in range(n_warmup + n_repeat):
            sync(device)
            t0 = time.perf_counter()
            module(x_bchw)
            sync(device)
            if i >= n_warmup:
                times.append(time.perf_counter() - t0)
    return times


def profile_model(model: Any, input_size: tuple[int, int] | int | None = None,
                  device: str | torch.device | None = None, batch_size: int = 1,
                  n_warmup: int = 2, n_repeat: int = 10, **load_kwargs: Any):
    """Parameters, FLOPs, latency and peak memory of a model's forward pass.

    Parameters
    ----------
    model : a ``ModelAdapter`` or a registered name (loaded with ``load_kwargs``).
    input_size : (h, w) of the random input; default the model's preprocessing size (native).
    device : where to run; ``None``/``"auto"`` picks CUDA when present. An adapter is moved.
    batch_size : images per forward pass; latency is reported per image.
    n_warmup, n_repeat : untimed and timed passes.

    Returns
    -------
    ``ModelProfile`` (``results.ModelCard.from_profile`` makes it a stored row) with ``params``, ``flops`` (per image), ``latency_ms`` (per
    image, median), ``peak_mem_mb`` and ``extra`` (batch size, input size, batch latency
    quartiles, memory method, FLOP convention).
    """
    from cortexalign.models._registry import load_model

    for name, value, low in (("batch_size", batch_size, 1), ("n_warmup", n_warmup, 0),
                             ("n_repeat", n_repeat, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(name, f"an integer >= {low}", repr(value), f"pass e.g. {name}={low}")
    dev = resolve_device(device)
    adapter = load_model(model, device=dev, **load_kwargs) if isinstance(model, str) else model
    if not hasattr(adapter, "module") or not hasattr(adapter, "preprocess"):
        raise InputError("model", "a ModelAdapter or a registered model name",
                         type(model).__name__, "pass load_model(...) or its name")
    size = adapter.preprocess.size if input_size is None else (
        (input_size, input_size) if isinstance(input_size, int) else tuple(input_size))
    if len(size) != 2 or min(size) < 1:
        raise InputError("input_size", "(h, w) with positive integers", repr(input_size),
                         "pass e.g. input_size=(1024, 1024) or None for the native size")
    module = adapter.module.to(dev).eval()
    gen = torch.Generator().manual_seed(0)
    x_bchw = torch.randn(batch_size, 3, *size, generator=gen).to(dev)
    with compute_threads(math.inf):  # a count, not a timing: the thread policy's count
        flops = count_flops(module, x_bchw) / batch_size
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        times = _time_passes(module, x_bchw, dev, n_warmup, n_repeat)
        peak_mb, method = torch.cuda.max_memory_allocated(dev) / 2**20, "cuda_max_memory_allocated"
    else:
        with _RssSampler() as rss:
            times = _time_passes(module, x_bchw, dev, n_warmup, n_repeat)
        peak_mb, method = (rss.peak - rss.start) / 2**20, "cpu_rss_growth_sampled_1ms"
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    extra = {"batch_size": batch_size, "input_size": list(size), "n_warmup": n_warmup,
             "n_repeat": n_repeat, "batch_latency_ms_q1_median_q3": [t * 1e3 for t in q],
             "memory_method": method, "flops_convention": "2*MAC, torch FlopCounterMode",
             "torch": torch.__version__}
    return ModelProfile(model_id=adapter.model_id, device=device_string(dev),
                     params=count_parameters(module), flops=float(flops),
                     latency_ms=statistics.median(times) * 1e3 / batch_size,
                     peak_mem_mb=float(peak_mb), extra=extra)
