"""Attention and convolutional maps as the features of a run, cached like any other features.

``ModelSpec.features`` picks an entry of ``MAP_FEATURES``:

- ``attention``: the layers are the model's attention blocks (``list_attention_blocks``); each
  stimulus gives one (gh, gw) map per block (``attention_maps``, reduction ``received`` by
  default: the mean over heads of the attention each token receives).
- ``conv_map``: the layers are the model's spatial layers ((b, c, h, w) maps, or (b, t, d) token
  layers whose patch tokens form a square grid); each stimulus gives the mean |activation| over
  channels (``conv_maps``; ``kind: topk`` for the top-k channels).

Values are (s, gh, gw) float32 arrays, stored in the ``FeatureCache`` under ``feature_key`` with
a pooling string naming the map (``attn:received``, ``conv:mean_abs``), so they never collide
with pooled activations. Extraction runs in fp32.

Two ways to extract, with the same forward passes, keys and stored entries: ``extract_maps``
returns every layer's (s, gh, gw) array in memory (s x layers maps held at once;
``extract_map_features`` returns them as ``Features`` whose ``from_cache`` names the cache hits);
``extract_maps_to_cache`` sends each batch's maps straight into one ``FeatureCache.writer`` per
layer and returns the keys, so host memory holds one batch of maps (the runner's path when
``max_feature_memory_gb`` is exceeded, issue 9). Either way a NaN/Inf map raises an
``InputError`` and caches nothing of the call.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rich.markup import escape

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.features._batching import (
    BatchShrink,
    auto_batch_size,
    device_memory,
    run_shrinking,
)
from cortexalign.features._cache import FeatureCache, feature_key
from cortexalign.features._extract import Features, _ArrayRows, _console, _eval_mode, _progress
from cortexalign.models.attention import (
    attention_maps,
    conv_maps,
    list_attention_blocks,
    resolve_attention_blocks,
)
from cortexalign.stimuli import StimulusSet

__all__ = ["MAP_FEATURES", "MapFeature", "map_layers", "map_entries", "extract_maps",
           "extract_map_features", "extract_maps_to_cache", "map_options"]


def _attention_layers(adapter, requested, options, stimuli) -> list[str]:
    available = list_attention_blocks(adapter.module)
    if not available:
        raise InputError("features", "a model with attention blocks for features: attention",
                         f"{adapter.model_id} without any", "use features: conv_map for a "
                         "convolutional model")
    if requested == "all":
        return list(resolve_attention_blocks(adapter.module, None, options["reduction"]))
    resolve_attention_blocks(adapter.module, list(requested), options["reduction"])  # validates the names
    return list(requested)


def _token_grid(acts_btd: torch.Tensor, prefix: int) -> torch.Tensor | None:
    """(b, d, g, g) from the patch tokens of a token layer, or None when they are not square."""
    patches = acts_btd[:, prefix:]
    side = math.isqrt(patches.shape[1])
    if patches.shape[1] == 0 or side * side != patches.shape[1]:
        return None
    return patches.transpose(1, 2).reshape(patches.shape[0], -1, side, side)


def _spatial(acts: torch.Tensor, prefix: int) -> torch.Tensor | None:
    if acts.ndim == 4:
        return acts
    return _token_grid(acts, prefix) if acts.ndim == 3 else None


def _conv_layers(adapter, requested, options, stimuli) -> list[str]:
    """The spatial layers, found by one forward pass of the first stimulus."""
    names = adapter.layers() if requested == "all" else list(requested)
    probe = adapter.preprocess([stimuli.image(0)]).to(adapter.device)
    acts = adapter.forward_layers(probe, names)
    spatial = [n for n in names if _spatial(acts[n], adapter.num_prefix_tokens) is not None]
    if requested != "all" and len(spatial) < len(names):
        bad = [n for n in names if n not in spatial]
        raise InputError("layers", "spatial layers ((b, c, h, w) maps or square token grids) "
                         "for features: conv_map", f"{bad[:3]} with shapes "
                         f"{[tuple(acts[n].shape) for n in bad[:3]]}", "drop them")
    if not spatial:
        raise InputError("features", "a model with spatial layers for features: conv_map",
                         f"{adapter.model_id} without any", "use features: activations")
    return spatial


def _attention_batch(adapter, x_bchw, layers, options) -> dict[str, torch.Tensor]:
    return attention_maps(adapter.module, x_bchw, blocks=layers, reduction=options["reduction"],
                          chunk_size=options["chunk_size"])


def _conv_batch(adapter, x_bchw, layers, options) -> dict[str, torch.Tensor]:
    acts = adapter.forward_layers(x_bchw, layers)
    return {n: conv_maps(_spatial(acts[n], adapter.num_prefix_tokens), options["kind"],
                         options["k"]) for n in layers}


@dataclass(frozen=True)
class MapFeature:
    """One kind of map feature: its layers, one batch of maps, its cache name and options.

    ``layers(adapter, requested, options, stimuli)``; ``batch(adapter, x_bchw, layers, options)
    -> {layer: (b, gh, gw)}``; ``pooling(options, layers)`` names the maps in cache keys;
    ``defaults`` are the options and ``choices`` their valid values.
    """

    layers: Callable[..., list[str]]
    batch: Callable[..., dict[str, torch.Tensor]]
    pooling: Callable[[dict[str, Any], list[str]], str]
    defaults: dict[str, Any]
    choices: dict[str, tuple]


def _attn_pooling(options: dict[str, Any], layers: list[str]) -> str:
    # a rollout map depends on every block rolled out through, so their names enter the key
    tail = f"[{','.join(layers)}]" if options["reduction"] == "rollout" else ""
    return f"attn:{options['reduction']}{tail}"


MAP_FEATURES: dict[str, MapFeature] = {
    "attention": MapFeature(_attention_layers, _attention_batch, _attn_pooling,
                            {"reduction": "received", "chunk_size": None},
                            {"reduction": ("received", "cls", "rollout")}),
    "conv_map": MapFeature(_conv_layers, _conv_batch,
                           lambda o, _: "conv:mean_abs" if o["kind"] == "mean_abs"
                           else f"conv:topk{o['k']}",
                           {"kind": "mean_abs", "k": 8}, {"kind": ("mean_abs", "topk")}),
}


def map_options(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` completed with the defaults of ``MAP_FEATURES[kind]``, validated."""
    if kind not in MAP_FEATURES:
        raise UnknownNameError("map feature", kind, MAP_FEATURES)
    feat = MAP_FEATURES[kind]
    unknown = sorted(set(options) - set(feat.defaults))
    if unknown:
        raise InputError("feature_options", f"options of features: {kind} "
                         f"({', '.join(feat.defaults)})", repr(unknown), "check the spelling")
    out = {**feat.defaults, **options}
    for key, valid in feat.choices.items():
        if out[key] not in valid:
            raise UnknownNameError(f"{kind} {key}", str(out[key]), list(valid))
    return out


def map_layers(adapter, kind: str, requested, options: dict[str, Any],
               stimuli: StimulusSet) -> list[str]:
    """The layers a ``features: kind`` model is scored on (``requested``: names or ``"all"``)."""
    return MAP_FEATURES[kind].layers(adapter, requested, map_options(kind, options), stimuli)


def map_entries(adapter, stimuli: StimulusSet, layers: list[str], kind: str,
                opts: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """The cache key and metadata of each layer's maps: what both extractions store."""
    pooling = MAP_FEATURES[kind].pooling(opts, layers)
    meta = {"model_id": adapter.model_id, "pooling": pooling,
            "options": {k: v for k, v in opts.items() if k != "chunk_size"},  # speed, not values
            "stimulus_ids": list(stimuli.ids), "stimuli_hash": stimuli.content_hash,
            "preprocess": adapter.preprocess.key(), "precision": "fp32"}
    return {n: (feature_key(model_id=adapter.model_id, weights_digest=adapter.weights_digest,
                            layer=n, pooling=pooling, preprocess_key=adapter.preprocess.key(),
                            stimuli_hash=stimuli.content_hash, precision="fp32"),
                {**meta, "layer": n}) for n in layers}


def extract_maps(adapter, stimuli: StimulusSet, layers: list[str], kind: str,
                 options: dict[str, Any], *, batch_size: int | None = None,
                 cache: FeatureCache | None = None, progress: bool = False,
                 on_shrink: Callable[[BatchShrink], None] | None = None
                 ) -> dict[str, np.ndarray]:
    """(s, gh, gw) float32 maps per layer, read from ``cache`` when there, else computed.

    Holds every requested layer's (s, gh, gw) maps in memory; :func:`extract_maps_to_cache`
    writes the same entries batch by batch instead, and :func:`extract_map_features` returns
    the same maps as ``Features`` that say which layers came from the cache.

    Parameters
    ----------
    adapter : a ``ModelAdapter``; layers : from ``map_layers``; kind : a key of ``MAP_FEATURES``;
    options : its options (``map_options``); cache : a ``FeatureCache`` (None: no caching).
    batch_size, on_shrink : as in ``extract_features`` (None: chosen from free device memory;
        halved on out-of-memory).

    Raises
    ------
    InputError if a map is NaN/Inf (naming the layer); nothing is cached then.
    """
    return _extract_maps(adapter, stimuli, layers, kind, options, batch_size, cache,
                         progress, on_shrink)[0]


def extract_map_features(adapter, stimuli: StimulusSet, layers: list[str], kind: str,
                         options: dict[str, Any], *, batch_size: int | None = None,
                         cache: FeatureCache | None = None, progress: bool = False,
                         on_shrink: Callable[[BatchShrink], None] | None = None
                         ) -> dict[str, Features]:
    """The maps of :func:`extract_maps` as ``Features``, in the order of ``layers``.

    ``values`` (s, gh, gw) float32 (read-only), ``pooling`` the map's name (``attn:received``,
    ``conv:mean_abs``), ``key`` its cache key, and ``from_cache`` True for the layers read from
    ``cache`` instead of computed, as ``extract_features`` reports pooled activations.

    Parameters and Raises as in :func:`extract_maps`.
    """
    maps, entries, hits = _extract_maps(adapter, stimuli, layers, kind, options, batch_size,
                                        cache, progress, on_shrink)
    return {n: Features(maps[n], stimuli.ids, adapter.model_id, n, entries[n][1]["pooling"],
                        entries[n][0], from_cache=n in hits) for n in layers}


def _extract_maps(adapter, stimuli, layers, kind, options, batch_size, cache, progress,
                  on_shrink=None) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, dict]], set[str]]:
    """(maps per layer in the order of ``layers``, their ``map_entries``, the layers read
    from ``cache``)."""
    opts = map_options(kind, options)
    entries = map_entries(adapter, stimuli, layers, kind, opts)
    out: dict[str, np.ndarray] = {}
    for n, (key, _) in entries.items():
        hit = cache.get(key) if cache is not None else None
        if hit is not None and hit[1].get("stimulus_ids") == list(stimuli.ids):
            out[n] = hit[0]
    hits = set(out)
    todo = [n for n in layers if n not in out]
    if not todo:
        return out, entries, hits
    arrays: dict[str, _ArrayRows] = {}

    def open_array(layer: str, map_shape: tuple[int, ...]) -> _ArrayRows:
        if layer not in arrays:
            arrays[layer] = _ArrayRows((len(stimuli), *map_shape), "float32")
        return arrays[layer]

    _run(adapter, stimuli, todo, kind, opts, batch_size, progress, open_array, on_shrink)
    for n in todo:
        if cache is not None:
            cache.put(entries[n][0], arrays[n].values, entries[n][1])
        out[n] = arrays[n].values
    return {n: out[n] for n in layers}, entries, hits


def extract_maps_to_cache(adapter, stimuli: StimulusSet, layers: list[str], kind: str,
                          options: dict[str, Any], cache: FeatureCache, *,
                          batch_size: int | None = None, progress: bool = False,
                          on_shrink: Callable[[BatchShrink], None] | None = None
                          ) -> dict[str, str]:
    """Write each layer's (s, gh, gw) float32 maps into ``cache`` batch by batch; return the keys.

    The same forward passes, checks, keys and stored entries as :func:`extract_maps` with a
    cache, but each batch's maps go straight into one ``FeatureCache.writer`` per layer (opened
    on the first batch, when the map shape is known), so host memory holds one batch of maps
    of every layer (b x sum of gh gw floats) plus one stored chunk per layer, not s x layers
    (issue 9). Read them back lazily with ``cache.open(key)`` (``bench._scoring.CachedLayer``).

    Parameters
    ----------
    adapter, stimuli, layers, kind, options, batch_size, progress, on_shrink : as in
        :func:`extract_maps`.
    cache : where the entries go. Layers already cached for these stimuli (complete metadata,
        same stimulus ids) are skipped; their values are verified when read.

    Returns
    -------
    dict layer -> 64-character cache key, in the order of ``layers``.

    Raises
    ------
    InputError if a map is NaN/Inf (naming the layer); every writer of this call discards its
    temporary store then, so nothing of this call is cached.
    """
    if not isinstance(cache, FeatureCache):
        raise InputError("cache", "a FeatureCache", type(cache).__name__,
                         "pass cortexalign.features.FeatureCache(<directory>)")
    opts = map_options(kind, options)
    entries = map_entries(adapter, stimuli, layers, kind, opts)
    todo = [n for n in layers
            if (cache.metadata(entries[n][0]) or {}).get("stimulus_ids") != list(stimuli.ids)]
    if todo:
        with contextlib.ExitStack() as writers:  # any error: every writer discards its store
            opened: dict[str, Any] = {}

            def open_writer(layer: str, map_shape: tuple[int, ...]) -> Any:
                if layer not in opened:
                    key, meta = entries[layer]
                    opened[layer] = writers.enter_context(
                        cache.writer(key, (len(stimuli), *map_shape), "float32", meta))
                return opened[layer]

            _run(adapter, stimuli, todo, kind, opts, batch_size, progress, open_writer,
                 on_shrink)
    return {n: entries[n][0] for n in layers}


def _run(adapter, stimuli, layers, kind, opts, batch_size, progress, open_layer,
         on_shrink=None) -> None:
    """One forward pass per batch for all ``layers``; each layer's (b, gh, gw) maps, checked
    finite, go to its sink ``open_layer(layer, (gh, gw)).write(start, maps_bhw)`` in order.
    ``batch_size`` None is chosen, and an out-of-memory error halved, by ``features._batching``."""
    feat = MAP_FEATURES[kind]
    device = torch.device(adapter.device)

    def maps_of(idx: range) -> dict[str, np.ndarray]:
        x_bchw = adapter.preprocess([stimuli.image(i) for i in idx]).to(device)
        maps = feat.batch(adapter, x_bchw, layers, opts)
        return {n: maps[n].float().cpu().numpy() for n in layers}

    with _progress(progress) as bar, _eval_mode(adapter.module), torch.inference_mode():
        if batch_size is None:
            batch_size = auto_batch_size(device, lambda b: maps_of(range(b)), len(stimuli)).size
        task = bar.add_task(f"{escape(adapter.model_id)} maps ({len(layers)} layers)", total=len(stimuli))

        def run(first: int, size: int) -> Iterator[int]:
            for start in range(first, len(stimuli), size):
                idx = range(start, min(start + size, len(stimuli)))
                maps = maps_of(idx)  # every layer on the host before any is written
                for n in layers:
                    maps_bhw = maps[n]
                    assert maps_bhw.ndim == 3 and maps_bhw.shape[0] == len(idx), (
                        f"{n}: maps of shape {maps_bhw.shape}")
                    if not np.isfinite(maps_bhw).all():
                        raise InputError("features", f"finite {kind} maps", f"NaN/Inf in layer "
                                         f"{n!r} of {adapter.model_id}",
                                         "check the weights; nothing was cached")
                    open_layer(n, maps_bhw.shape[1:]).write(start, maps_bhw)
                bar.advance(task, len(idx))
                yield idx.stop

        def shrunk(event: BatchShrink) -> None:
            console = bar.console if progress else _console()
            console.print(f"{adapter.model_id}: {event.message}", highlight=False, markup=False,
                          soft_wrap=True)
            if on_shrink is not None:
                on_shrink(event)

        run_shrinking(run, len(stimuli), batch_size, memory=device_memory(device),
                      on_shrink=shrunk)
