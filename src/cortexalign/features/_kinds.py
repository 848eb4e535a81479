"""Feature kinds: what one batch of stimuli gives for each layer, one registry entry per kind.

``FEATURE_KINDS`` holds a :class:`FeatureKind` per value of a model entry's ``features:``
(and of ``cortexalign extract --features``). Each kind is a per-batch function
``batch(adapter, x_bchw, layers, options) -> {layer: (b, ...) tensor}``; the one batch loop of
``cortexalign.features`` (``_loop.run_batches``) runs it, checks and stores what it returns, so
every kind gets the same decoding threads, device pipeline, finite checks, cache keys and cache
writer. The kinds:

- ``activations``: ``adapter.forward_layers`` pooled by ``options["pooling"]`` (``POOLINGS``):
  (b, d) per layer, (b, ...) raw with ``none``.
- ``spiking_time_averaged``: a spiking transformer's layer outputs averaged over its time steps
  (firing rates: ``SpikingAdapter.forward_layers``, i.e. ``cortexalign.spiking.features`` with
  ``time_reduce="mean"``), pooled as activations. ``activations`` of an adapter that declares
  ``activations_kind = "spiking_time_averaged"`` (``snn:*`` models) resolve to it
  (:func:`resolve_kind`), so config values and CLI options stay as they are.
- ``attention``: the model's attention blocks are the layers; each stimulus gives one (gh, gw)
  map per block (``attention_maps``, reduction ``received`` by default: the mean over heads of
  the attention each token receives).
- ``conv_map``: the model's spatial layers ((b, c, h, w) maps, or (b, t, d) token layers whose
  patch tokens form a square grid); each stimulus gives the mean |activation| over channels
  (``conv_maps``; ``kind: topk`` for the top-k channels).

Maps are (s, gh, gw) float32 and always extracted in fp32; their cache keys carry a name that
says what they are (``attn:received``, ``conv:mean_abs``), so they never collide with pooled
activations. A new kind is one ``FEATURE_KINDS.add(name, FeatureKind(...))``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from cortexalign.compute import compute_threads
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.features._pooling import POOLINGS
from cortexalign.models.attention import (
    attention_maps,
    capture_attention_maps,
    conv_maps,
    list_attention_blocks,
    resolve_attention_blocks,
)
from cortexalign.registry import Registry

__all__ = ["FEATURE_KINDS", "FeatureKind", "kind_options", "kind_layers", "resolve_kind",
           "SHARED_FORWARD", "shared_batch"]

#: ``(adapter, x_bchw, layers, options) -> {layer: (b, ...) tensor}``: one batch of one kind.
BatchFn = Callable[[Any, torch.Tensor, list[str], dict[str, Any]], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class FeatureKind:
    """One kind of feature: its per-batch function, its layers, options and cache name.

    Attributes
    ----------
    batch : ``batch(adapter, x_bchw, layers, options) -> {layer: (b, ...) tensor}`` for one
        batch of preprocessed images already on ``adapter.device``.
    layers : ``layers(adapter, requested, options, stimuli) -> names``: the layers a request
        (a list of names, or ``"all"``) stands for, fully checked (may run one probe image).
    check : ``check(adapter, names, options)``: a cheap check of explicit layer names before
        extraction (None: the batch function reports bad names).
    key_name : ``key_name(options, layers) -> str``: what the values are, in cache keys and in
        ``Features.pooling`` (the pooling name for pooled kinds, ``attn:received`` for maps).
    defaults, choices : the options with their defaults, and the valid values of some.
    speed_options : options that change speed, never values (left out of keys and metadata).
    maps : the values are (s, gh, gw) maps (for the ``map_*`` metrics), not feature vectors.
    precision : ``None`` to follow the caller's autocast precision; ``"fp32"`` when fixed.
    values_name : what the values are called in messages ("activations", "attention maps").
    metadata : ``metadata(adapter) -> dict`` added to each cache entry's metadata.
    """

    batch: BatchFn
    layers: Callable[[Any, Any, dict[str, Any], Any], list[str]]
    key_name: Callable[[dict[str, Any], list[str]], str]
    check: Callable[[Any, list[str], dict[str, Any]], None] | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    choices: dict[str, tuple] = field(default_factory=dict)
    speed_options: tuple[str, ...] = ()
    maps: bool = False
    precision: str | None = None
    values_name: str = "activations"
    metadata: Callable[[Any], dict[str, Any]] | None = None


#: Every feature kind, by the name a config's ``features:`` uses.
FEATURE_KINDS: Registry[FeatureKind] = Registry("feature kind")


def resolve_kind(kind: str, adapter: Any) -> str:
    """The kind that extracts ``kind`` for ``adapter``: ``activations`` of an adapter that names
    its own (``adapter.activations_kind``, e.g. ``spiking_time_averaged``), else ``kind``.

    Raises UnknownNameError (with the close matches) for a kind that is not registered.
    """
    FEATURE_KINDS.get(kind)
    if kind == "activations":
        return str(getattr(adapter, "activations_kind", None) or kind)
    return kind


def kind_options(kind: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``options`` completed with the defaults of ``FEATURE_KINDS[kind]``, validated.

    Raises InputError for an option the kind does not take, UnknownNameError for a value
    outside its choices.
    """
    feat = FEATURE_KINDS.get(kind)
    options = dict(options or {})
    unknown = sorted(set(options) - set(feat.defaults))
    if unknown:
        raise InputError("feature_options", f"options of features: {kind} "
                         f"({', '.join(feat.defaults) or 'none'})", repr(unknown),
                         "check the spelling")
    out = {**feat.defaults, **options}
    for key, valid in feat.choices.items():
        if out[key] not in valid:
            raise UnknownNameError(f"{kind} {key}", str(out[key]), list(valid))
    return out


def kind_layers(adapter: Any, kind: str, requested: Sequence[str] | str,
                options: Mapping[str, Any] | None, stimuli: Any) -> list[str]:
    """The layers of ``adapter`` a ``features: kind`` request stands for, checked.

    ``requested``: layer names, or ``"all"`` (every layer of the model for activations, every
    attention block for ``attention``, every spatial layer for ``conv_map``). ``conv_map``
    runs one forward pass of the first stimulus to find the spatial layers.
    """
    name = resolve_kind(kind, adapter)
    return FEATURE_KINDS.get(name).layers(adapter, requested, kind_options(name, options), stimuli)


# -- activations --------------------------------------------------------------------------------

def _check_named_layers(adapter: Any, names: list[str], options: dict[str, Any]) -> None:
    """Each name is a listed layer or a submodule path (captured by a hook)."""
    valid = adapter.layers()
    modules: dict[str, Any] | None = None
    for name in names:
        if name in valid:
            continue
        modules = modules if modules is not None else dict(adapter.module.named_modules())
        if name not in modules:
            raise UnknownNameError(f"layer of model {adapter.model_id!r}", name, valid)


def _named_layers(adapter: Any, requested: Sequence[str] | str, options: dict[str, Any],
                  stimuli: Any) -> list[str]:
    if requested == "all":
        return list(adapter.layers())
    names = list(dict.fromkeys(requested))
    _check_named_layers(adapter, names, options)
    return names


def _pooled_batch(adapter: Any, x_bchw: torch.Tensor, layers: list[str],
                  options: dict[str, Any]) -> dict[str, torch.Tensor]:
    acts = adapter.forward_layers(x_bchw, layers)
    absent = [layer for layer in layers if layer not in acts]
    assert not absent, f"{adapter.model_id}: forward_layers returned no {absent}"
    pool_fn = POOLINGS[options["pooling"]]
    return {layer: pool_fn(acts[layer], adapter.num_prefix_tokens) for layer in layers}


_POOLED = {"key_name": lambda options, _: options["pooling"], "defaults": {"pooling": "mean"},
           "choices": {"pooling": tuple(POOLINGS)}}

FEATURE_KINDS.add("activations", FeatureKind(
    _pooled_batch, _named_layers, check=_check_named_layers, **_POOLED),
    description="layer outputs pooled to one vector per stimulus (pooling: mean, max, cls, "
                "grid2, grid4, flatten, none)")


# -- spiking_time_averaged -----------------------------------------------------------------------

def _spiking_module(adapter: Any) -> Any:
    from cortexalign.spiking.models import SpikingTransformer

    if not isinstance(getattr(adapter, "module", None), SpikingTransformer):
        raise InputError("features", "a spiking model (snn:<name>) for features: "
                         "spiking_time_averaged", f"{adapter.model_id}, which is not one",
                         "use features: activations for this model")
    return adapter.module


def _check_spiking_layers(adapter: Any, names: list[str], options: dict[str, Any]) -> None:
    from cortexalign.spiking.features import layer_names

    valid = layer_names(_spiking_module(adapter))
    for name in names:
        if name not in valid:
            raise UnknownNameError(f"layer of spiking model {adapter.model_id!r}", name, valid)


def _spiking_layers(adapter: Any, requested: Sequence[str] | str, options: dict[str, Any],
                    stimuli: Any) -> list[str]:
    from cortexalign.spiking.features import layer_names

    if requested == "all":
        return layer_names(_spiking_module(adapter))
    names = list(dict.fromkeys(requested))
    _check_spiking_layers(adapter, names, options)
    return names


def _spiking_metadata(adapter: Any) -> dict[str, Any]:
    return {"time_steps": int(_spiking_module(adapter).config.time_steps), "time_reduce": "mean"}


FEATURE_KINDS.add("spiking_time_averaged", FeatureKind(
    _pooled_batch, _spiking_layers, check=_check_spiking_layers, metadata=_spiking_metadata,
    **_POOLED),
    description="a spiking transformer's layer outputs averaged over its time steps (firing "
                "rates), pooled as activations; what features: activations of an snn: model is")


# -- attention maps ------------------------------------------------------------------------------

def _attention_layers(adapter: Any, requested: Sequence[str] | str, options: dict[str, Any],
                      stimuli: Any) -> list[str]:
    available = list_attention_blocks(adapter.module)
    if not available:
        raise InputError("features", "a model with attention blocks for features: attention",
                         f"{adapter.model_id} without any", "use features: conv_map for a "
                         "convolutional model")
    if requested == "all":
        return list(resolve_attention_blocks(adapter.module, None, options["reduction"]))
    resolve_attention_blocks(adapter.module, list(requested), options["reduction"])  # validates
    return list(requested)


def _attention_batch(adapter: Any, x_bchw: torch.Tensor, layers: list[str],
                     options: dict[str, Any]) -> dict[str, torch.Tensor]:
    return _checked_maps(adapter, x_bchw, attention_maps(
        adapter.module, x_bchw, blocks=layers, reduction=options["reduction"],
        chunk_size=options["chunk_size"]))


def _checked_maps(adapter: Any, x_bchw: torch.Tensor,
                  maps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``maps``, each (b, gh, gw) for the b images of ``x_bchw`` (an internal invariant)."""
    for name, maps_bhw in maps.items():
        assert maps_bhw.ndim == 3 and maps_bhw.shape[0] == x_bchw.shape[0], (
            f"{adapter.model_id} {name}: maps of shape {tuple(maps_bhw.shape)}")
    return maps


def _attention_key(options: dict[str, Any], layers: list[str]) -> str:
    # a rollout map depends on every block rolled out through, so their names enter the key
    tail = f"[{','.join(layers)}]" if options["reduction"] == "rollout" else ""
    return f"attn:{options['reduction']}{tail}"


FEATURE_KINDS.add("attention", FeatureKind(
    _attention_batch, _attention_layers, _attention_key,
    defaults={"reduction": "received", "chunk_size": None},
    choices={"reduction": ("received", "cls", "rollout")}, speed_options=("chunk_size",),
    maps=True, precision="fp32", values_name="attention maps"),
    description="one (gh, gw) attention map per stimulus from each attention block "
                "(reduction: received, cls, rollout)")


# -- conv maps -----------------------------------------------------------------------------------

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


def _not_spatial(names: list[str], acts: Mapping[str, torch.Tensor]) -> InputError:
    return InputError("layers", "spatial layers ((b, c, h, w) maps or square token grids) "
                      "for features: conv_map", f"{names[:3]} with shapes "
                      f"{[tuple(acts[n].shape) for n in names[:3]]}", "drop them")


def _conv_layers(adapter: Any, requested: Sequence[str] | str, options: dict[str, Any],
                 stimuli: Any) -> list[str]:
    """The spatial layers, found by one forward pass of the first stimulus."""
    names = adapter.layers() if requested == "all" else list(requested)
    probe = adapter.preprocess([stimuli.image(0)]).to(adapter.device)
    with compute_threads(math.inf):  # one thread when other processes keep the cores busy
        acts = adapter.forward_layers(probe, names)
    spatial = [n for n in names if _spatial(acts[n], adapter.num_prefix_tokens) is not None]
    if requested != "all" and len(spatial) < len(names):
        raise _not_spatial([n for n in names if n not in spatial], acts)
    if not spatial:
        raise InputError("features", "a model with spatial layers for features: conv_map",
                         f"{adapter.model_id} without any", "use features: activations")
    return spatial


def _conv_batch(adapter: Any, x_bchw: torch.Tensor, layers: list[str],
                options: dict[str, Any]) -> dict[str, torch.Tensor]:
    return _conv_values(adapter, x_bchw, adapter.forward_layers(x_bchw, layers), layers, options)


def _conv_values(adapter: Any, x_bchw: torch.Tensor, acts: Mapping[str, torch.Tensor],
                 layers: list[str], options: dict[str, Any]) -> dict[str, torch.Tensor]:
    grids = {n: _spatial(acts[n], adapter.num_prefix_tokens) for n in layers}
    flat = [n for n, g in grids.items() if g is None]
    if flat:
        raise _not_spatial(flat, acts)
    return _checked_maps(adapter, x_bchw, {n: conv_maps(g, options["kind"], options["k"])
                                           for n, g in grids.items()})


FEATURE_KINDS.add("conv_map", FeatureKind(
    _conv_batch, _conv_layers,
    lambda o, _: "conv:mean_abs" if o["kind"] == "mean_abs" else f"conv:topk{o['k']}",
    check=_check_named_layers, defaults={"kind": "mean_abs", "k": 8},
    choices={"kind": ("mean_abs", "topk")}, maps=True, precision="fp32",
    values_name="conv maps"),
    description="the mean |activation| over channels of each spatial layer, one (gh, gw) map "
                "per stimulus (kind: mean_abs, topk)")


# -- kinds that share a forward pass -------------------------------------------------------------

SHARED_FORWARD = frozenset({"attention", "conv_map"})
"""Kinds one forward pass serves together (:func:`shared_batch`): the attention maps' hooks
ride on the conv maps' forward."""


def shared_batch(adapter: Any, x_bchw: torch.Tensor,
                 requests: Mapping[str, tuple[list[str], dict[str, Any]]]
                 ) -> dict[str, dict[str, torch.Tensor]]:
    """kind -> layer -> (b, gh, gw) maps of one batch for the kinds of ``SHARED_FORWARD``
    (``requests``: kind -> (layers, completed options)), from one forward pass.

    The values equal each kind's own ``batch``: the attention hooks are those of
    ``attention_maps`` (``capture_attention_maps``), and the forward is the conv maps'
    ``forward_layers``, asked also for the parent of each attention module so that it does not
    stop before the last block has run.
    """
    if set(requests) != SHARED_FORWARD:
        raise InputError("requests", f"the kinds {sorted(SHARED_FORWARD)}",
                         repr(sorted(requests)), "extract other kinds one at a time")
    blocks, attn_opts = requests["attention"]
    conv_layers, conv_opts = requests["conv_map"]
    modules = resolve_attention_blocks(adapter.module, list(blocks), attn_opts["reduction"])
    parents = [m.rsplit(".", 1)[0] if "." in m else m for m in modules.values()]
    with capture_attention_maps(adapter.module, tuple(x_bchw.shape), list(blocks),
                                attn_opts["reduction"], attn_opts["chunk_size"]) as attn:
        acts = adapter.forward_layers(x_bchw, list(dict.fromkeys([*conv_layers, *parents])))
    return {"attention": _checked_maps(adapter, x_bchw, {n: attn[n] for n in blocks}),
            "conv_map": _conv_values(adapter, x_bchw, acts, list(conv_layers), conv_opts)}
