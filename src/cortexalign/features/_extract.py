"""Batched feature extraction: one forward pass per batch for every requested layer.

The model contract (``cortexalign.models``): an adapter exposes ``model_id``, ``weights_digest``,
``preprocess`` (with ``key()``), ``device``, ``num_prefix_tokens``, ``layers()`` and
``forward_layers(x_bchw, layers) -> {layer: acts}``. Extraction pools on the adapter's device
(``POOLINGS``), moves the pooled vectors of all layers to the host in one transfer per batch, checks
they are finite, and writes each batch's rows into one sink per layer: an in-memory (s, ...) array
(``extract_features``, stored whole under its content-addressed key when a cache is given), or
a ``FeatureCache.writer`` (``extract_to_cache``, so host memory stays at a few batches whatever
the number of stimuli and the layer width).

How batches reach the device and the pooled values come back (decode threads, page-locked
buffers, preprocessing on the device, a copy that does not block) is ``_pipeline``'s. Nothing in
the loop waits for the device except the copy of the *previous* batch's pooled values, which the
host checks and stores while the device computes the current batch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.features._batching import (
    BatchShrink,
    auto_batch_size,
    device_memory,
    run_shrinking,
)
from cortexalign.features._cache import EXTRACTION_VERSION, FeatureCache, feature_key
from cortexalign.features._pipeline import (
    _batch_functions,
    _InFlight,
    _to_host,
    iter_batches,
)
from cortexalign.features._pooling import POOLINGS
from cortexalign.stimuli import StimulusSet

__all__ = ["Features", "extract_features", "extract_to_cache", "feature_keys", "iter_batches",
           "PRECISIONS", "DTYPES"]

#: Autocast modes; ``auto`` resolves to ``bf16`` on CUDA and ``fp32`` elsewhere.
PRECISIONS = ("auto", "fp32", "bf16")
#: Storage dtypes of the returned (and cached) values.
DTYPES = ("float32", "float16")
_ADAPTER_ATTRS = ("model_id", "weights_digest", "preprocess", "device", "num_prefix_tokens",
                  "layers", "forward_layers")


@dataclass(frozen=True, eq=False)
class Features:
    """Pooled activations of one layer for a stimulus set.

    Attributes
    ----------
    values : (s, d) array (float32 unless another storage dtype was asked for); with pooling
        ``none``, the raw per-stimulus shape, e.g. (s, c, h, w) or (s, t, d). Read-only.
    stimulus_ids : the s stimulus ids, in row order.
    model_id, layer, pooling : what produced the values.
    key : the content-addressed cache key (see :func:`cortexalign.features.feature_key`).
    from_cache : whether the values were read from the cache instead of computed.
    """

    values: np.ndarray
    stimulus_ids: tuple[str, ...]
    model_id: str
    layer: str
    pooling: str
    key: str
    from_cache: bool = False

    def __post_init__(self) -> None:
        assert self.values.shape[0] == len(self.stimulus_ids), (
            f"{self.values.shape[0]} rows for {len(self.stimulus_ids)} stimulus ids")
        self.values.setflags(write=False)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of ``values`` ((stimuli, features) or (stimuli, ...))."""
        return tuple(self.values.shape)


def _check_inputs(adapter: Any, stimuli: Any, layers: str | Sequence[str], pooling: str,
                  batch_size: int | None, precision: str, dtype: str) -> list[str]:
    missing = [a for a in _ADAPTER_ATTRS if not hasattr(adapter, a)]
    if missing:
        raise InputError("adapter", "a ModelAdapter (cortexalign.models.load_model)",
                         f"{type(adapter).__name__} without {missing}",
                         "load the model with cortexalign.models.load_model")
    if not isinstance(stimuli, StimulusSet):
        raise InputError("stimuli", "a StimulusSet", type(stimuli).__name__,
                         "build one with cortexalign.stimuli.load_stimuli or StimulusSet.from_arrays")
    if pooling not in POOLINGS:
        raise UnknownNameError("pooling", pooling, POOLINGS)
    if precision not in PRECISIONS:
        raise UnknownNameError("precision", precision, PRECISIONS)
    if dtype not in DTYPES:
        raise UnknownNameError("dtype", dtype, DTYPES)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise InputError("batch_size", "a positive integer, or None (chosen from free memory)",
                         repr(batch_size), "pass e.g. 32, or None")
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise InputError("layers", "at least one layer name", "an empty list",
                         f"pick from adapter.layers(), e.g. {adapter.layers()[-1]!r}")
    valid = adapter.layers()
    for name in names:  # a named layer, or any submodule path (captured by a hook)
        if name not in valid and name not in dict(adapter.module.named_modules()):
            raise UnknownNameError(f"layer of model {adapter.model_id!r}", name, valid)
    return list(dict.fromkeys(names))


def _resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


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


def feature_keys(adapter: Any, stimuli: StimulusSet, layers: Sequence[str], pooling: str,
                 precision: str = "auto", dtype: str = "float32") -> dict[str, str]:
    """The cache key of each layer for these inputs (what :func:`extract_features` uses)."""
    resolved = _resolve_precision(precision, torch.device(adapter.device))
    return {layer: feature_key(model_id=adapter.model_id, weights_digest=adapter.weights_digest,
                               layer=layer, pooling=pooling, preprocess_key=adapter.preprocess.key(),
                               stimuli_hash=stimuli.content_hash, dtype=dtype, precision=resolved)
            for layer in layers}


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("stimuli"), TimeRemainingColumn(), disable=not enabled,
                    transient=False)


def _check_finite(values_b: np.ndarray, adapter: Any, layer: str, ids: Sequence[str],
                  cause: str) -> None:
    ok_b = np.isfinite(values_b.reshape(len(values_b), -1)).all(axis=1)
    if not ok_b.all():
        raise InputError("features", "finite activations",
                         f"{cause} in layer {layer!r} of model {adapter.model_id!r} "
                         f"({int((~ok_b).sum())} stimuli in this batch; first "
                         f"{ids[int(np.argmin(ok_b))]!r})",
                         "check that stimulus and the weights; try precision='fp32' or "
                         "dtype='float32'; nothing was cached")


class _ArrayRows:
    """An in-memory (s, ...) array filled row block by row block (the ``CacheWriter`` interface)."""

    def __init__(self, shape: tuple[int, ...], dtype: str):
        self.values = np.empty(shape, dtype=dtype)

    def write(self, start: int, block: np.ndarray) -> None:
        self.values[start:start + len(block)] = block


#: ``open_layer(layer, row_shape) -> sink``: the sink (``write(start, block)``) of a layer's rows,
#: made on the layer's first batch, when its pooled shape is known.
OpenLayer = Callable[[str, tuple[int, ...]], Any]


def _store(batch: _InFlight, open_layer: OpenLayer, layers: list[str], adapter: Any,
           stimuli: StimulusSet, dtype: str) -> int:
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
        _check_finite(block, adapter, layer, ids, "NaN/Inf activations")
        rows = block.astype(dtype, copy=False)
        if dtype != "float32":
            _check_finite(rows, adapter, layer, ids, f"values that overflow {dtype}")
        open_layer(layer, shape).write(start, rows)
    return b


#: ``on_shrink(event)``: told when an out-of-memory error halved the batch size.
OnShrink = Callable[[BatchShrink], None]


def _console() -> Console:
    return Console(stderr=True)


def _forward_pooled(adapter: Any, x_bchw: torch.Tensor, layers: list[str], pooling: str,
                    precision: str) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
    """One forward pass for all ``layers``: the (b, sum of pooled sizes) values on the device,
    and each layer's pooled shape."""
    device = torch.device(adapter.device)
    with _autocast(precision, device):
        acts = adapter.forward_layers(x_bchw, layers)
    absent = [layer for layer in layers if layer not in acts]
    assert not absent, f"{adapter.model_id}: forward_layers returned no {absent}"
    pooled = [POOLINGS[pooling](acts[layer], adapter.num_prefix_tokens) for layer in layers]
    del acts
    b = x_bchw.shape[0]
    return torch.cat([p.reshape(b, -1) for p in pooled], dim=1), [tuple(p.shape[1:])
                                                                   for p in pooled]


def _batch_size(adapter: Any, stimuli: StimulusSet, layers: list[str], pooling: str,
                precision: str, batch_size: int | None, progress: bool) -> int:
    """``batch_size``, or when None one chosen from the device's free memory and a probe batch
    (``features._batching.auto_batch_size``; the CPU default on the CPU)."""
    if batch_size is not None:
        return batch_size
    device = torch.device(adapter.device)
    prepare, finish = _batch_functions(adapter, device)

    def probe(b: int) -> None:
        with _eval_mode(adapter.module), torch.inference_mode():
            _forward_pooled(adapter, finish(prepare([stimuli.image(i) for i in range(b)])),
                            layers, pooling, precision)

    choice = auto_batch_size(device, probe, len(stimuli))
    if progress and choice.per_image_bytes is not None:
        _console().print(f"{adapter.model_id}: {choice.message}", highlight=False)
    return choice.size


def _run_batches(adapter: Any, stimuli: StimulusSet, layers: list[str], pooling: str,
                 batch_size: int, precision: str, dtype: str, progress: bool,
                 open_layer: OpenLayer, on_shrink: OnShrink | None = None) -> None:
    """Forward every batch once for all ``layers``; write each layer's pooled rows, batch by
    batch in stimulus order, to its sink ``open_layer(layer, row_shape)``.

    The host handles each batch's pooled values only after the next batch's work is queued, so
    that on an accelerator the forward passes run back to back: the one wait per batch is for
    the previous batch's copy, while the device already computes the current one. An
    out-of-memory error halves the batch size and resumes at the first row not yet stored
    (``features._batching.run_shrinking``; a line on the console, then ``on_shrink``).
    """
    device = torch.device(adapter.device)
    calibrate = getattr(adapter, "calibrate", None)  # e.g. BN statistics of untrained SNNs
    if calibrate is not None:
        calibrate(stimuli, batch_size)
    prepare, finish = _batch_functions(adapter, device)

    with _progress(progress) as bar, _eval_mode(adapter.module), torch.inference_mode():
        task = bar.add_task(f"{escape(adapter.model_id)} ({len(layers)} layers)", total=len(stimuli))

        def store(batch: _InFlight) -> int:
            b = _store(batch, open_layer, layers, adapter, stimuli, dtype)
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
                        flat_bn, shapes = _forward_pooled(adapter, finish(prepared), layers,
                                                          pooling, precision)
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


def extract_features(adapter: Any, stimuli: StimulusSet, layers: str | Sequence[str],
                     pooling: str = "mean", batch_size: int | None = None,
                     cache: FeatureCache | None = None, progress: bool = True,
                     precision: str = "auto", dtype: str = "float32",
                     on_shrink: OnShrink | None = None) -> dict[str, Features]:
    """Extract pooled activations of ``layers`` for every stimulus.

    Parameters
    ----------
    adapter : a ``ModelAdapter`` (see ``cortexalign.models``); runs on ``adapter.device``.
    stimuli : the s stimuli, in the row order of the result.
    layers : one layer name or several, from ``adapter.layers()``.
    pooling : a name in ``POOLINGS`` (``mean``, ``max``, ``cls``, ``flatten``, ``none``).
    batch_size : stimuli per forward pass; each pass serves all layers. None: chosen from the
        device's free memory and the memory of a probe batch on CUDA/MPS, 32 on the CPU
        (``features._batching``). Whatever it is, an out-of-memory error halves it and the
        extraction resumes at the first stimulus not yet stored.
    cache : when given, layers already cached are read (the model does not run for them) and new
        ones are written atomically after the whole set succeeded.
    progress : show a rich progress bar.
    precision : ``auto`` (bf16 autocast on CUDA, fp32 elsewhere), ``fp32`` or ``bf16``; pooling
        always reduces in float32. Part of the cache key.
    dtype : storage dtype of the values, ``float32`` or ``float16``. Part of the cache key.
    on_shrink : called with a ``BatchShrink`` each time an out-of-memory error halved the batch
        size (a line is printed on the console in any case).

    Returns
    -------
    dict layer -> Features, values (s, d) per layer ((s, ...) raw with pooling ``none``).

    Raises
    ------
    InputError if an activation is NaN/Inf (naming model, layer and first stimulus); nothing is
    cached then.
    """
    names = _check_inputs(adapter, stimuli, layers, pooling, batch_size, precision, dtype)
    resolved = _resolve_precision(precision, torch.device(adapter.device))
    keys = feature_keys(adapter, stimuli, names, pooling, precision, dtype)
    result: dict[str, Features] = {}
    if cache is not None:
        for layer in names:
            hit = cache.get(keys[layer])
            if hit is not None and hit[1].get("stimulus_ids") == list(stimuli.ids):
                result[layer] = Features(hit[0], stimuli.ids, adapter.model_id, layer, pooling,
                                         keys[layer], from_cache=True)
    todo = [layer for layer in names if layer not in result]
    if todo:
        arrays: dict[str, _ArrayRows] = {}

        def open_array(layer: str, row_shape: tuple[int, ...]) -> _ArrayRows:
            if layer not in arrays:
                arrays[layer] = _ArrayRows((len(stimuli), *row_shape), dtype)
            return arrays[layer]

        batch_size = _batch_size(adapter, stimuli, todo, pooling, resolved, batch_size, progress)
        _run_batches(adapter, stimuli, todo, pooling, batch_size, resolved, dtype, progress,
                     open_array, on_shrink)
        for layer in todo:
            values = arrays[layer].values
            if cache is not None:
                cache.put(keys[layer], values,
                          _metadata(adapter, stimuli, layer, pooling, resolved, dtype, batch_size))
            result[layer] = Features(values, stimuli.ids, adapter.model_id, layer, pooling,
                                     keys[layer])
    return {layer: result[layer] for layer in names}


def extract_to_cache(adapter: Any, stimuli: StimulusSet, layers: str | Sequence[str],
                     cache: FeatureCache, pooling: str = "mean", batch_size: int | None = None,
                     progress: bool = True, precision: str = "auto",
                     dtype: str = "float32", on_shrink: OnShrink | None = None
                     ) -> dict[str, str]:
    """Extract ``layers`` straight into ``cache``, batch by batch; return their cache keys.

    The same forward passes, pooling, checks, keys and stored entries as
    :func:`extract_features` with a cache, but each batch's pooled rows go directly into one
    ``FeatureCache.writer`` per layer, so host memory holds a few batches (and one stored chunk
    per layer) whatever the number of stimuli s and the layer width d. Read the features back
    lazily with ``cache.open(key)`` (``metrics.streaming_rdm``/``streaming_cka``) or whole with
    ``cache.get(key)``.

    Parameters
    ----------
    adapter, stimuli, layers, pooling, batch_size, progress, precision, dtype, on_shrink : as
        in :func:`extract_features`.
    cache : where the (s, d) entries go ((s, ...) raw with pooling ``none``). Layers already
        cached for these stimuli (complete metadata, same stimulus ids) are skipped; their values
        are verified when read.

    Returns
    -------
    dict layer -> 64-character cache key, in the order of ``layers``.

    Raises
    ------
    InputError if an activation is NaN/Inf (naming model, layer and first stimulus); no entry of
    this call is published then (every writer discards its temporary store).
    """
    names = _check_inputs(adapter, stimuli, layers, pooling, batch_size, precision, dtype)
    if not isinstance(cache, FeatureCache):
        raise InputError("cache", "a FeatureCache", type(cache).__name__,
                         "pass cortexalign.features.FeatureCache(<directory>)")
    resolved = _resolve_precision(precision, torch.device(adapter.device))
    keys = feature_keys(adapter, stimuli, names, pooling, precision, dtype)
    todo = [layer for layer in names
            if (cache.metadata(keys[layer]) or {}).get("stimulus_ids") != list(stimuli.ids)]
    if todo:
        batch_size = _batch_size(adapter, stimuli, todo, pooling, resolved, batch_size, progress)
        with contextlib.ExitStack() as writers:  # any error: every writer discards its store
            opened: dict[str, Any] = {}

            def open_writer(layer: str, row_shape: tuple[int, ...]) -> Any:
                if layer not in opened:
                    meta = _metadata(adapter, stimuli, layer, pooling, resolved, dtype, batch_size)
                    opened[layer] = writers.enter_context(
                        cache.writer(keys[layer], (len(stimuli), *row_shape), dtype, meta))
                return opened[layer]

            _run_batches(adapter, stimuli, todo, pooling, batch_size, resolved, dtype, progress,
                         open_writer, on_shrink)
    return {layer: keys[layer] for layer in names}


def _metadata(adapter: Any, stimuli: StimulusSet, layer: str, pooling: str, precision: str,
              dtype: str, batch_size: int) -> dict[str, Any]:
    return {"model_id": adapter.model_id, "model_name": getattr(adapter, "name", adapter.model_id),
            "weights_digest": adapter.weights_digest, "layer": layer, "pooling": pooling,
            "preprocess": adapter.preprocess.key(), "stimulus_set": stimuli.name,
            "stimuli_hash": stimuli.content_hash, "stimulus_ids": list(stimuli.ids),
            "precision": precision, "storage_dtype": dtype,
            "num_prefix_tokens": int(adapter.num_prefix_tokens),
            "extraction_version": EXTRACTION_VERSION, "device": str(adapter.device),
            "batch_size": batch_size, "torch_version": torch.__version__}
