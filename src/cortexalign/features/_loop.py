"""The one batch loop of feature extraction: every kind, in memory or streamed to the cache.

``run_batches`` decodes the stimuli a few batches ahead (``_pipeline.iter_batches``), runs the
kind's per-batch function (``FEATURE_KINDS``) once per batch for every requested layer, moves the
values of all layers to the host in one transfer per batch, checks they are finite, casts them
to the storage dtype and writes each batch's rows, in stimulus order, into one sink per layer:
an in-memory (s, ...) array (:class:`ArrayRows`) or a ``FeatureCache.writer`` (streamed). Which
sink is the caller's (``_extract``); nothing else in the package iterates over stimulus batches
calling a model (a test holds this).

Nothing in the loop waits for the device except the copy of the *previous* batch's values,
which the host checks and stores while the device computes the current batch. The batch size is
the caller's, or chosen from free device memory by a probe batch of the same kind
(``choose_batch_size``); an out-of-memory error halves it and the loop resumes at the first row
not yet stored (``_batching``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cortexalign.errors import InputError
from cortexalign.features._batching import (
    BatchShrink,
    auto_batch_size,
    device_memory,
    run_shrinking,
)
from cortexalign.features._kinds import FeatureKind
from cortexalign.features._pipeline import _batch_functions, _InFlight, _to_host, iter_batches
from cortexalign.stimuli import StimulusSet

__all__ = ["run_batches", "choose_batch_size", "forward_work", "ArrayRows", "OpenLayer", "OnShrink"]

#: ``open_layer(layer, row_shape) -> sink``: the sink (``write(start, block)``) of a layer's rows,
#: made on the layer's first batch, when the shape of its values is known.
OpenLayer = Callable[[str, tuple[int, ...]], Any]
#: ``on_shrink(event)``: told when an out-of-memory error halved the batch size.
OnShrink = Callable[[BatchShrink], None]


class ArrayRows:
    """An in-memory (s, ...) array filled row block by row block (the ``CacheWriter`` interface)."""

    def __init__(self, shape: tuple[int, ...], dtype: str):
        self.values = np.empty(shape, dtype=dtype)

    def write(self, start: int, block: np.ndarray) -> None:
        """Put ``block`` (b, ...) in rows ``start:start + b``."""
        self.values[start:start + len(block)] = block


def _autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode, restoring each one's flag on exit."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("stimuli"), TimeRemainingColumn(), disable=not enabled,
                    transient=False)


def _check_finite(values_b: np.ndarray, adapter: Any, layer: str, ids: Sequence[str],
                  what: str, cause: str) -> None:
    ok_b = np.isfinite(values_b.reshape(len(values_b), -1)).all(axis=1)
    if not ok_b.all():
        raise InputError("features", f"finite {what}",
                         f"{cause} in layer {layer!r} of model {adapter.model_id!r} "
                         f"({int((~ok_b).sum())} stimuli in this batch; first "
                         f"{ids[int(np.argmin(ok_b))]!r})",
                         "check that stimulus and the weights; try precision='fp32' or "
                         "dtype='float32'; nothing was cached")


def _store(batch: _InFlight, open_layer: OpenLayer, layers: list[str], adapter: Any,
           stimuli: StimulusSet, dtype: str, what: str) -> int:
    """Wait for ``batch``, check it and write each layer's rows to its sink; return its size."""
    if batch.done is not None:
        batch.done.synchronize()
    flat_bn = batch.values_bn.numpy()
    b, start = flat_bn.shape[0], batch.start
    ids = stimuli.ids[start:start + b]
    offset = 0
    for layer, shape in zip(layers, batch.shapes, strict=True):
        n = math.prod(shape)
        block = flat_bn[:, offset:offset + n].reshape(b, *shape)
        offset += n
        _check_finite(block, adapter, layer, ids, what, f"NaN/Inf {what}")
        rows = block.astype(dtype, copy=False)
        if dtype != "float32":
            _check_finite(rows, adapter, layer, ids, what, f"{what} that overflow {dtype}")
        open_layer(layer, shape).write(start, rows)
    return b


def _console() -> Console:
    return Console(stderr=True)


def _forward(adapter: Any, kind: FeatureKind, x_bchw: torch.Tensor, layers: list[str],
             options: dict[str, Any], precision: str
             ) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
    """One call of the kind's per-batch function for all ``layers``: the (b, sum of the layers'
    sizes) float32 values on the device, and each layer's per-stimulus shape."""
    with _autocast(precision, torch.device(adapter.device)):
        values = kind.batch(adapter, x_bchw, layers, options)
    b = x_bchw.shape[0]
    wrong = {n: tuple(values[n].shape) if n in values else None for n in layers
             if n not in values or values[n].shape[0] != b}
    assert not wrong, f"{adapter.model_id}: batch of {b} gave {wrong}"
    return (torch.cat([values[n].reshape(b, -1).float() for n in layers], dim=1),
            [tuple(values[n].shape[1:]) for n in layers])


def choose_batch_size(adapter: Any, stimuli: StimulusSet, layers: list[str], kind: FeatureKind,
                      options: dict[str, Any], precision: str, batch_size: int | None,
                      progress: bool) -> int:
    """``batch_size``, or when None one chosen from the device's free memory and a probe batch
    of this kind (``features._batching.auto_batch_size``; the CPU default on the CPU)."""
    if batch_size is not None:
        return batch_size
    device = torch.device(adapter.device)
    prepare, finish = _batch_functions(adapter, device)

    def probe(b: int) -> None:
        with _eval_mode(adapter.module), torch.inference_mode():
            _forward(adapter, kind, finish(prepare([stimuli.image(i) for i in range(b)])),
                     layers, options, precision)

    choice = auto_batch_size(device, probe, len(stimuli))
    if progress and choice.per_image_bytes is not None:
        _console().print(f"{adapter.model_id}: {choice.message}", highlight=False, markup=False)
    return choice.size


def forward_work(adapter: Any, n_images: int) -> float:
    """A rough multiply-add count of running ``adapter`` over ``n_images`` images, for the CPU
    thread policy (``cortexalign.compute``): parameters x images x positions of a stride-8 map
    of the input x time steps (spiking models; 1 otherwise). Tiny models stay below
    ``SMALL_WORK`` (one thread); a ViT-B on 92 images is far above it."""
    module = adapter.module
    n_params = sum(p.numel() for p in module.parameters())
    size = getattr(getattr(adapter, "preprocess", None), "size", (224, 224))
    size = (size, size) if isinstance(size, int) else tuple(size)
    steps = getattr(getattr(module, "config", None), "time_steps", 1)
    steps = steps if isinstance(steps, int) and steps > 0 else 1
    return float(n_params) * n_images * max(1, size[0] // 8) * max(1, size[1] // 8) * steps


def run_batches(adapter: Any, stimuli: StimulusSet, layers: list[str], kind: FeatureKind,
                options: dict[str, Any], batch_size: int, precision: str, dtype: str,
                progress: bool, open_layer: OpenLayer, on_shrink: OnShrink | None = None
                ) -> None:
    """Run ``kind.batch`` once per batch for all ``layers``; write each layer's rows, batch by
    batch in stimulus order, to its sink ``open_layer(layer, row_shape)``.

    Parameters
    ----------
    adapter : a ``ModelAdapter``; its ``calibrate(stimuli, batch_size)``, when it has one (the
        batch-norm statistics of an untrained spiking network), runs first.
    layers, options : checked names and completed options of ``kind``.
    batch_size : the first batch size (``choose_batch_size``).
    precision : the resolved autocast mode, ``fp32`` or ``bf16``; dtype : the storage dtype.
    on_shrink : told of each halving of the batch size after an out-of-memory error (a line is
        printed on the console in any case).

    The host handles each batch's values only after the next batch's work is queued, so that on
    an accelerator the forward passes run back to back: the one wait per batch is for the
    previous batch's copy, while the device already computes the current one. An out-of-memory
    error halves the batch size and resumes at the first row not yet stored
    (``features._batching.run_shrinking``).
    """
    device = torch.device(adapter.device)
    calibrate = getattr(adapter, "calibrate", None)
    if calibrate is not None:
        calibrate(stimuli, batch_size)
    prepare, finish = _batch_functions(adapter, device)

    with _progress(progress) as bar, _eval_mode(adapter.module), torch.inference_mode():
        task = bar.add_task(f"{escape(adapter.model_id)} ({len(layers)} layers)",
                            total=len(stimuli))  # escaped: rich reads "[tiny]" as markup

        def store(batch: _InFlight) -> int:
            b = _store(batch, open_layer, layers, adapter, stimuli, dtype, kind.values_name)
            bar.advance(task, b)
            return batch.start + b

        def run(first: int, size: int) -> Iterator[int]:
            """Batches of ``size`` from stimulus ``first``; yields the end of each stored one."""
            batches = iter_batches(stimuli, size, prepare, first=first)
            in_flight: _InFlight | None = None
            with contextlib.closing(batches):
                for start, prepared in zip(range(first, len(stimuli), size), batches,
                                           strict=True):
                    try:
                        flat_bn, shapes = _forward(adapter, kind, finish(prepared), layers,
                                                   options, precision)
                        queued = _to_host(flat_bn, start, shapes)
                    except Exception:
                        if in_flight is not None:  # the last finished batch is kept, then
                            yield store(in_flight)  # the error (out of memory: retried)
                        raise
                    if in_flight is not None:
                        yield store(in_flight)
                    in_flight = queued
                if in_flight is not None:
                    yield store(in_flight)

        def shrunk(event: BatchShrink) -> None:
            console = bar.console if progress else _console()
            console.print(f"{adapter.model_id}: {event.message}", highlight=False, markup=False,
                          soft_wrap=True)
            if on_shrink is not None:
                on_shrink(event)

        run_shrinking(run, len(stimuli), batch_size, memory=device_memory(device),
                      on_shrink=shrunk)
