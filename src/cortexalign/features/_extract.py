"""Feature extraction: one entry point for every kind, in memory or streamed to the cache.

The model contract (``cortexalign.models``): an adapter exposes ``model_id``, ``weights_digest``,
``preprocess`` (with ``key()``), ``device``, ``num_prefix_tokens``, ``layers()`` and
``forward_layers(x_bchw, layers) -> {layer: acts}``. :func:`extract` runs a kind of
``FEATURE_KINDS`` (pooled activations, a spiking model's time-averaged outputs, attention or
conv maps) through the one batch loop (``_loop.run_batches``) and writes each layer's rows
into one sink per layer:

- in memory: an (s, ...) array per layer, stored whole under its content-addressed key when a
  cache is given (``FeatureCache.put``, i.e. one ``CacheWriter`` given the whole array);
- streamed: a ``FeatureCache.writer`` per layer, so host memory holds a few batches whatever
  the number of stimuli and the layer width; the result then reads the cache lazily.

Which of the two is decided here, not by the caller: with a ``memory_budget``,
:func:`plan_extraction` measures one stimulus's values and streams when s times that exceeds
the budget. Either way the forward passes, checks, keys and stored entries are the same.
:func:`extract_features` is ``extract`` for pooled activations, in memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cortexalign.compute import compute_threads
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.features._cache import EXTRACTION_VERSION, FeatureCache, feature_key
from cortexalign.features._cache_view import CachedArray, CacheIntegrityError
from cortexalign.features._kinds import FEATURE_KINDS, FeatureKind, kind_options, resolve_kind
from cortexalign.features._loop import (
    ArrayRows,
    OnShrink,
    choose_batch_size,
    forward_work,
    run_batches,
)
from cortexalign.features._pooling import POOLINGS
from cortexalign.stimuli import StimulusSet

__all__ = ["Features", "extract", "extract_features", "feature_keys", "plan_extraction",
           "ExtractionPlan", "PRECISIONS", "DTYPES"]

#: Autocast modes; ``auto`` resolves to ``bf16`` on CUDA and ``fp32`` elsewhere.
PRECISIONS = ("auto", "fp32", "bf16")
#: Storage dtypes of the returned (and cached) values.
DTYPES = ("float32", "float16")
_ADAPTER_ATTRS = ("model_id", "weights_digest", "preprocess", "device", "num_prefix_tokens",
                  "layers", "forward_layers")


@dataclass(frozen=True, eq=False)
class Features:
    """The values of one layer for a stimulus set.

    Attributes
    ----------
    values : (s, d) array (float32 unless another storage dtype was asked for); with pooling
        ``none``, the raw per-stimulus shape, e.g. (s, c, h, w) or (s, t, d); (s, gh, gw) for
        maps. Read-only: a numpy array, or a ``CachedArray`` reading the cache lazily when the
        extraction was streamed (``streamed``).
    stimulus_ids : the s stimulus ids, in row order.
    model_id, layer : what produced the values.
    pooling : the pooling, or the name of the maps (``attn:received``, ``conv:mean_abs``).
    key : the content-addressed cache key (see :func:`cortexalign.features.feature_key`).
    from_cache : whether the values were read from the cache instead of computed.
    """

    values: np.ndarray | CachedArray
    stimulus_ids: tuple[str, ...]
    model_id: str
    layer: str
    pooling: str
    key: str
    from_cache: bool = False

    def __post_init__(self) -> None:
        assert self.values.shape[0] == len(self.stimulus_ids), (
            f"{self.values.shape[0]} rows for {len(self.stimulus_ids)} stimulus ids")
        if isinstance(self.values, np.ndarray):
            self.values.setflags(write=False)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of ``values`` ((stimuli, features) or (stimuli, ...))."""
        return tuple(self.values.shape)

    @property
    def streamed(self) -> bool:
        """Whether ``values`` are left in the cache (read lazily) rather than held in memory."""
        return not isinstance(self.values, np.ndarray)


@dataclass(frozen=True)
class ExtractionPlan:
    """Whether an extraction holds its values in memory or streams them into the cache.

    Attributes
    ----------
    streamed : the values go batch by batch into the cache (``bytes`` over ``budget``).
    bytes : s x the bytes of one stimulus's values of every layer, in the storage dtype
        (measured on the first stimulus); None when there is no budget (nothing measured).
    budget : the memory budget in bytes, or None (no limit: in memory).
    """

    streamed: bool
    bytes: int | None
    budget: float | None


def _check_inputs(adapter: Any, stimuli: Any, layers: str | Sequence[str], batch_size: int | None,
                  precision: str, dtype: str, cache: Any) -> list[str]:
    missing = [a for a in _ADAPTER_ATTRS if not hasattr(adapter, a)]
    if missing:
        raise InputError("adapter", "a ModelAdapter (cortexalign.models.load_model)",
                         f"{type(adapter).__name__} without {missing}",
                         "load the model with cortexalign.models.load_model")
    if not isinstance(stimuli, StimulusSet):
        raise InputError("stimuli", "a StimulusSet", type(stimuli).__name__,
                         "build one with cortexalign.stimuli.load_stimuli or StimulusSet.from_arrays")
    if precision not in PRECISIONS:
        raise UnknownNameError("precision", precision, PRECISIONS)
    if dtype not in DTYPES:
        raise UnknownNameError("dtype", dtype, DTYPES)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise InputError("batch_size", "a positive integer, or None (chosen from free memory)",
                         repr(batch_size), "pass e.g. 32, or None")
    if cache is not None and not isinstance(cache, FeatureCache):
        raise InputError("cache", "a FeatureCache (or None)", type(cache).__name__,
                         "pass cortexalign.features.FeatureCache(<directory>)")
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise InputError("layers", "at least one layer name", "an empty list",
                         f"pick from adapter.layers(), e.g. {adapter.layers()[-1]!r}")
    return list(dict.fromkeys(names))


def _resolve_precision(feat: FeatureKind, precision: str, device: torch.device) -> str:
    if feat.precision is not None:
        if precision not in ("auto", feat.precision):
            raise InputError("precision", f"'auto' or {feat.precision!r} for these features "
                             f"({feat.values_name} are extracted in {feat.precision})",
                             repr(precision), "drop the precision")
        return feat.precision
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def _options_of(kind: str, options: Mapping[str, Any] | None, pooling: str) -> dict[str, Any]:
    if options is None and "pooling" in FEATURE_KINDS.get(kind).defaults:
        options = {"pooling": pooling}
    return kind_options(kind, options)


def feature_keys(adapter: Any, stimuli: StimulusSet, layers: Sequence[str],
                 pooling: str = "mean", precision: str = "auto", dtype: str = "float32",
                 kind: str = "activations", options: Mapping[str, Any] | None = None
                 ) -> dict[str, str]:
    """The cache key of each layer for these inputs (what :func:`extract` uses).

    ``options`` are the kind's (``kind_options``); when None, ``{"pooling": pooling}`` for the
    pooled kinds and the defaults for the maps.
    """
    name = resolve_kind(kind, adapter)
    feat, opts = FEATURE_KINDS.get(name), _options_of(name, options, pooling)
    return _keys(adapter, stimuli, list(layers), feat, opts,
                 _resolve_precision(feat, precision, torch.device(adapter.device)), dtype)


def _keys(adapter: Any, stimuli: StimulusSet, layers: list[str], feat: FeatureKind,
          opts: dict[str, Any], precision: str, dtype: str) -> dict[str, str]:
    label = feat.key_name(opts, layers)
    return {layer: feature_key(model_id=adapter.model_id, weights_digest=adapter.weights_digest,
                               layer=layer, pooling=label, preprocess_key=adapter.preprocess.key(),
                               stimuli_hash=stimuli.content_hash, dtype=dtype, precision=precision)
            for layer in layers}


def plan_extraction(adapter: Any, stimuli: StimulusSet, layers: str | Sequence[str],
                    kind: str = "activations", options: Mapping[str, Any] | None = None, *,
                    memory_budget: float | None, precision: str = "auto",
                    dtype: str = "float32") -> ExtractionPlan:
    """Decide whether :func:`extract` holds the values in memory or streams them to the cache.

    With a budget, the values of one stimulus are extracted (one forward pass, not cached) and
    the whole set's bytes estimated as s times theirs; over ``memory_budget`` bytes the
    extraction is streamed. Without one (None) nothing is measured and the values stay in
    memory.

    Parameters
    ----------
    adapter, stimuli, layers, kind, options, precision, dtype : as in :func:`extract`.
    memory_budget : most bytes of values to hold in memory (>= 0), or None for no limit.
    """
    if memory_budget is None:
        return ExtractionPlan(False, None, None)
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, (int, float)) \
            or not memory_budget >= 0:
        raise InputError("memory_budget", "a number of bytes >= 0, or None (no limit)",
                         repr(memory_budget), "pass e.g. 4e9 (4 GB)")
    probe = stimuli.subset(stimuli.ids[:1], name=f"{stimuli.name}[probe]")
    one = extract(adapter, probe, layers, kind, options, batch_size=1, progress=False,
                  precision=precision, dtype=dtype)
    nbytes = len(stimuli) * sum(f.values.nbytes for f in one.values())
    return ExtractionPlan(nbytes > memory_budget, nbytes, memory_budget)


def extract(adapter: Any, stimuli: StimulusSet, layers: str | Sequence[str],
            kind: str = "activations", options: Mapping[str, Any] | None = None, *,
            batch_size: int | None = None, cache: FeatureCache | None = None,
            progress: bool = True, precision: str = "auto", dtype: str = "float32",
            memory_budget: float | None = None,
            on_shrink: OnShrink | None = None) -> dict[str, Features]:
    """Extract ``kind`` features of ``layers`` for every stimulus: the one extraction path.

    Parameters
    ----------
    adapter : a ``ModelAdapter`` (see ``cortexalign.models``); runs on ``adapter.device``.
    stimuli : the s stimuli, in the row order of the result.
    layers : one layer name or several (``kind_layers`` resolves ``"all"`` and checks names).
    kind : a name in ``FEATURE_KINDS`` (``activations``, ``attention``, ``conv_map``,
        ``spiking_time_averaged``); ``activations`` of a spiking model are its time-averaged
        outputs (``resolve_kind``).
    options : the kind's options (``kind_options``: ``pooling`` for activations, ``reduction``
        for attention...); its defaults when None.
    batch_size : stimuli per forward pass; each pass serves all layers. None: chosen from the
        device's free memory and the memory of a probe batch on CUDA/MPS, 32 on the CPU
        (``features._batching``). Whatever it is, an out-of-memory error halves it and the
        extraction resumes at the first stimulus not yet stored.
    cache : when given, layers already cached are read (the model does not run for them) and
        new ones are written atomically once the whole set succeeded.
    progress : show a rich progress bar.
    precision : ``auto`` (bf16 autocast on CUDA, fp32 elsewhere), ``fp32`` or ``bf16``; pooling
        always reduces in float32; maps are always fp32. Part of the cache key.
    dtype : storage dtype of the values, ``float32`` or ``float16``. Part of the cache key.
    memory_budget : most bytes of values to hold in memory (None: no limit). Over it
        (:func:`plan_extraction`) each batch's rows go straight into the cache, which is then
        required, and the result's values read it lazily (``Features.streamed``).
    on_shrink : called with a ``BatchShrink`` each time an out-of-memory error halved the batch
        size (a line is printed on the console in any case).

    Returns
    -------
    dict layer -> Features, in the order of ``layers``.

    Raises
    ------
    InputError if a value is NaN/Inf (naming model, layer and first stimulus); no entry of this
    call is published then.
    """
    names = _check_inputs(adapter, stimuli, layers, batch_size, precision, dtype, cache)
    name = resolve_kind(kind, adapter)
    feat, opts = FEATURE_KINDS.get(name), kind_options(name, options)
    resolved = _resolve_precision(feat, precision, torch.device(adapter.device))
    if feat.check is not None:
        feat.check(adapter, names, opts)
    if memory_budget is not None and cache is None:
        raise InputError("cache", "a FeatureCache when memory_budget is set (values over the "
                         "budget are streamed into it)", "None",
                         "pass cache=FeatureCache(<directory>), or memory_budget=None")
    plan = plan_extraction(adapter, stimuli, names, name, opts, memory_budget=memory_budget,
                           precision=precision, dtype=dtype)
    keys = _keys(adapter, stimuli, names, feat, opts, resolved, dtype)
    label = feat.key_name(opts, names)
    chosen = [batch_size]  # the batch size the extraction started with, once chosen

    def meta(layer: str) -> dict[str, Any]:
        return _metadata(adapter, stimuli, name, label, feat, opts, resolved, dtype, chosen[0],
                         layer)

    def features(layer: str, values: Any, from_cache: bool) -> Features:
        return Features(values, stimuli.ids, adapter.model_id, layer, label, keys[layer],
                        from_cache=from_cache)

    def run(todo: list[str], open_layer: Any) -> None:
        # the CPU thread policy: one thread for small models (torch's default pool stalls on a
        # busy machine: an untrained spiking control's calibration took 99 s instead of ~5)
        with compute_threads(forward_work(adapter, len(stimuli))):
            chosen[0] = choose_batch_size(adapter, stimuli, todo, feat, opts, resolved,
                                          batch_size, progress)
            run_batches(adapter, stimuli, todo, feat, opts, chosen[0], resolved, dtype,
                        progress, open_layer, on_shrink)

    if plan.streamed:
        return _streamed(cache, names, keys, meta, stimuli, dtype, run, features)
    return _in_memory(cache, names, keys, meta, stimuli, dtype, run, features)


def _in_memory(cache, names, keys, meta, stimuli, dtype, run, features) -> dict[str, Features]:
    """Every layer's (s, ...) array held whole; new ones stored in ``cache`` (when given)."""
    result: dict[str, Features] = {}
    if cache is not None:
        for layer in names:
            hit = cache.get(keys[layer])
            if hit is not None and hit[1].get("stimulus_ids") == list(stimuli.ids):
                result[layer] = features(layer, hit[0], True)
    todo = [layer for layer in names if layer not in result]
    if todo:
        arrays: dict[str, ArrayRows] = {}

        def open_array(layer: str, row_shape: tuple[int, ...]) -> ArrayRows:
            if layer not in arrays:
                arrays[layer] = ArrayRows((len(stimuli), *row_shape), dtype)
            return arrays[layer]

        run(todo, open_array)
        for layer in todo:
            values = arrays[layer].values
            if cache is not None:
                cache.put(keys[layer], values, meta(layer))
            result[layer] = features(layer, values, False)
    return {layer: result[layer] for layer in names}


def _streamed(cache, names, keys, meta, stimuli, dtype, run, features) -> dict[str, Features]:
    """Each batch's rows straight into one ``cache.writer`` per layer; the result reads the
    entries lazily. Layers cached for these stimuli (complete metadata, same stimulus ids) are
    skipped; their values are verified when read."""
    todo = [layer for layer in names
            if (cache.metadata(keys[layer]) or {}).get("stimulus_ids") != list(stimuli.ids)]
    if todo:
        with contextlib.ExitStack() as writers:  # any error: every writer discards its store
            opened: dict[str, Any] = {}

            def open_writer(layer: str, row_shape: tuple[int, ...]) -> Any:
                if layer not in opened:
                    opened[layer] = writers.enter_context(cache.writer(
                        keys[layer], (len(stimuli), *row_shape), dtype, meta(layer)))
                return opened[layer]

            run(todo, open_writer)
    result = {}
    for layer in names:
        view = cache.open(keys[layer])
        if view is None:
            raise CacheIntegrityError(f"the cached features of layer {layer!r} "
                                      f"({keys[layer][:12]}...) are missing or corrupt; rerun "
                                      "to extract them again")
        result[layer] = features(layer, view, layer not in todo)
    return result


def extract_features(adapter: Any, stimuli: StimulusSet, layers: str | Sequence[str],
                     pooling: str = "mean", batch_size: int | None = None,
                     cache: FeatureCache | None = None, progress: bool = True,
                     precision: str = "auto", dtype: str = "float32",
                     on_shrink: OnShrink | None = None) -> dict[str, Features]:
    """Extract pooled activations of ``layers`` for every stimulus, in memory.

    :func:`extract` with ``kind="activations"`` and ``options={"pooling": pooling}``.

    Parameters
    ----------
    adapter, stimuli, layers, batch_size, cache, progress, precision, dtype, on_shrink : as in
        :func:`extract`.
    pooling : a name in ``POOLINGS`` (``mean``, ``max``, ``cls``, ``grid2``, ``grid4``,
        ``flatten``, ``none``).

    Returns
    -------
    dict layer -> Features, values (s, d) per layer ((s, ...) raw with pooling ``none``).

    Raises
    ------
    InputError if an activation is NaN/Inf (naming model, layer and first stimulus); nothing is
    cached then.
    """
    if pooling not in POOLINGS:
        raise UnknownNameError("pooling", pooling, POOLINGS)
    return extract(adapter, stimuli, layers, "activations", {"pooling": pooling},
                   batch_size=batch_size, cache=cache, progress=progress, precision=precision,
                   dtype=dtype, on_shrink=on_shrink)


def _metadata(adapter: Any, stimuli: StimulusSet, kind: str, label: str, feat: FeatureKind,
              opts: dict[str, Any], precision: str, dtype: str, batch_size: int | None,
              layer: str) -> dict[str, Any]:
    """What produced the entry of ``layer``, stored beside it."""
    return {"model_id": adapter.model_id, "model_name": getattr(adapter, "name", adapter.model_id),
            "weights_digest": adapter.weights_digest, "layer": layer, "pooling": label,
            "feature_kind": kind,
            "options": {k: v for k, v in opts.items() if k not in feat.speed_options},
            "preprocess": adapter.preprocess.key(), "stimulus_set": stimuli.name,
            "stimuli_hash": stimuli.content_hash, "stimulus_ids": list(stimuli.ids),
            "precision": precision, "storage_dtype": dtype,
            "num_prefix_tokens": int(adapter.num_prefix_tokens),
            "extraction_version": EXTRACTION_VERSION, "device": str(adapter.device),
            "batch_size": batch_size, "torch_version": torch.__version__,
            **(feat.metadata(adapter) if feat.metadata is not None else {})}
