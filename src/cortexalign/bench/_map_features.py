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
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.features import FeatureCache, feature_key
from cortexalign.features._extract import _eval_mode, _progress
from cortexalign.models.attention import attention_maps, conv_maps, list_attention_blocks
from cortexalign.models.attention._capture import _resolve_blocks
from cortexalign.stimuli import StimulusSet

__all__ = ["MAP_FEATURES", "MapFeature", "map_layers", "extract_maps", "map_options"]


def _attention_layers(adapter, requested, options, stimuli) -> list[str]:
    available = list_attention_blocks(adapter.module)
    if not available:
        raise InputError("features", "a model with attention blocks for features: attention",
                         f"{adapter.model_id} without any", "use features: conv_map for a "
                         "convolutional model")
    if requested == "all":
        return list(_resolve_blocks(adapter.module, None, options["reduction"]))
    _resolve_blocks(adapter.module, list(requested), options["reduction"])  # validates the names
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


def extract_maps(adapter, stimuli: StimulusSet, layers: list[str], kind: str,
                 options: dict[str, Any], *, batch_size: int = 32,
                 cache: FeatureCache | None = None, progress: bool = False
                 ) -> dict[str, np.ndarray]:
    """(s, gh, gw) float32 maps per layer, read from ``cache`` when there, else computed.

    Parameters
    ----------
    adapter : a ``ModelAdapter``; layers : from ``map_layers``; kind : a key of ``MAP_FEATURES``;
    options : its options (``map_options``); cache : a ``FeatureCache`` (None: no caching).
    """
    opts = map_options(kind, options)
    feat = MAP_FEATURES[kind]
    pooling = feat.pooling(opts, layers)
    keys = {n: feature_key(model_id=adapter.model_id, weights_digest=adapter.weights_digest,
                           layer=n, pooling=pooling, preprocess_key=adapter.preprocess.key(),
                           stimuli_hash=stimuli.content_hash, precision="fp32")
            for n in layers}
    out: dict[str, np.ndarray] = {}
    for n in layers:
        hit = cache.get(keys[n]) if cache is not None else None
        if hit is not None and hit[1].get("stimulus_ids") == list(stimuli.ids):
            out[n] = hit[0]
    todo = [n for n in layers if n not in out]
    if not todo:
        return out
    computed = _run(adapter, stimuli, todo, feat, opts, batch_size, progress)
    for n in todo:
        if not np.isfinite(computed[n]).all():
            raise InputError("features", f"finite {kind} maps", f"NaN/Inf in layer {n!r} of "
                             f"{adapter.model_id}", "check the weights; nothing was cached")
        if cache is not None:
            cache.put(keys[n], computed[n], {
                "model_id": adapter.model_id, "layer": n, "pooling": pooling, "options": {
                    k: v for k, v in opts.items() if k != "chunk_size"},
                "stimulus_ids": list(stimuli.ids), "stimuli_hash": stimuli.content_hash,
                "preprocess": adapter.preprocess.key(), "precision": "fp32"})
        out[n] = computed[n]
    return {n: out[n] for n in layers}


def _run(adapter, stimuli, layers, feat, opts, batch_size, progress) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with _progress(progress) as bar, _eval_mode(adapter.module), torch.inference_mode():
        task = bar.add_task(f"{adapter.model_id} maps ({len(layers)} layers)", total=len(stimuli))
        for start in range(0, len(stimuli), batch_size):
            idx = range(start, min(start + batch_size, len(stimuli)))
            x_bchw = adapter.preprocess([stimuli.image(i) for i in idx]).to(adapter.device)
            maps = feat.batch(adapter, x_bchw, layers, opts)
            for n in layers:
                m = maps[n].float().cpu().numpy()
                assert m.ndim == 3 and m.shape[0] == len(idx), f"{n}: maps of shape {m.shape}"
                if n not in out:
                    out[n] = np.empty((len(stimuli), *m.shape[1:]), dtype=np.float32)
                out[n][start:start + len(idx)] = m
            bar.advance(task, len(idx))
    return out
