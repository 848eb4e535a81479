"""``cortexalign extract``: layer activations (or attention / conv maps) of one model for one
stimulus set, saved to an ``.npz``, ``.mat`` or ``.h5`` file.

:func:`extract_to_file` does the work and is importable; the typer command in ``cli.py`` only
parses and calls it. Everything a caller can get wrong (output name, layer names, feature kind,
pooling) is checked before extraction starts, and nothing is written on an error.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cortexalign.errors import InputError, Problems, UnknownNameError
from cortexalign.features import (
    POOLINGS,
    PRECISIONS,
    FeatureCache,
    check_destination,
    extract,
    save_features,
)

__all__ = ["extract_to_file", "ExtractSummary", "FEATURE_KINDS", "check_model_request"]

#: ``activations`` (pooled; a spiking model's time-averaged) or a map kind of
#: ``features.FEATURE_KINDS``: the values of ``--features``.
FEATURE_KINDS = ("activations", "attention", "conv_map")


@dataclass(frozen=True)
class ExtractSummary:
    """What :func:`extract_to_file` wrote.

    Attributes
    ----------
    path : the file.
    model_id : the model's id (weights and constructor options included).
    shapes : layer -> shape of its saved array, (s, d) or (s, gh, gw) for maps, in file order.
    pooling : layer -> pooling (a map name such as ``attn:received`` for maps).
    n_stimuli : s.
    from_cache : layers read from the feature cache instead of computed.
    seconds : wall-clock time from loading the model to the file being written.
    """

    path: Path
    model_id: str
    shapes: dict[str, tuple[int, ...]]
    pooling: dict[str, str]
    n_stimuli: int
    from_cache: tuple[str, ...]
    seconds: float


def _check_request(model: str, layers: Sequence[str] | None, all_layers: bool, kind: str,
                   pooling: str | None, precision: str, batch_size: int | None) -> None:
    if kind not in FEATURE_KINDS:
        raise UnknownNameError("features", kind, FEATURE_KINDS)
    if batch_size is not None and (isinstance(batch_size, bool)
                                   or not isinstance(batch_size, int) or batch_size < 1):
        raise InputError("batch_size", "a positive integer, or None (chosen from free memory)",
                         repr(batch_size), "pass e.g. 32")
    if layers and all_layers:
        raise InputError("layers", "either layer names or all_layers, not both",
                         f"{list(layers)[:3]} and all_layers=True",
                         "drop --all-layers or the --layers names")
    if not layers and not all_layers:
        raise InputError("layers", "the layers to extract", "none",
                         f"list them with `cortexalign layers {model}`, then pass --layers NAME "
                         "(repeatable) or --all-layers")
    if kind == "activations" and pooling is not None and pooling not in POOLINGS:
        raise UnknownNameError("pooling", pooling, POOLINGS)
    if precision not in PRECISIONS:
        raise UnknownNameError("precision", precision, PRECISIONS)
    if kind != "activations" and pooling is not None:
        raise InputError("pooling", f"no pooling with features={kind!r} (maps are saved whole, "
                         "(s, gh, gw))", repr(pooling), "drop --pooling")
    if kind != "activations" and precision not in ("auto", "fp32"):
        raise InputError("precision", f"'auto' or 'fp32' with features={kind!r} (maps are "
                         "extracted in fp32)", repr(precision), "drop --precision")


def _architecture(model: str, model_kwargs: Mapping[str, Any] | None) -> Any:
    """The model's architecture without weights (``load_architecture``), or None where the
    meta device cannot build it (then the real model checks the layers)."""
    from cortexalign.errors import CortexAlignError
    from cortexalign.models import load_architecture

    try:
        return load_architecture(model, **dict(model_kwargs or {}))
    except CortexAlignError:
        raise
    except Exception:  # noqa: BLE001 - a builder that needs real tensors
        return None


def check_model_request(problems: Problems, model: str, layers: Sequence[str] | None,
                        all_layers: bool, model_kwargs: Mapping[str, Any] | None) -> None:
    """Record in ``problems`` what is wrong with a model name, its constructor options and each
    of ``layers``, checked on the architecture alone: no weights are loaded or downloaded."""
    arch = problems.check("", lambda: _architecture(model, model_kwargs))
    if arch is not None and not all_layers:
        for name in layers or []:
            problems.check("", lambda name=name: _activation_layers(arch, [name], False))


def _activation_layers(adapter: Any, layers: Sequence[str] | None, all_layers: bool) -> list[str]:
    """The layer names, validated (a listed layer or any submodule path, as extract_features)."""
    valid = adapter.layers()
    if all_layers:
        return list(valid)
    modules = dict(adapter.module.named_modules())
    for name in layers:
        if name not in valid and name not in modules:
            raise UnknownNameError(f"layer of model {adapter.name!r}", name, valid,
                                   fix=f"pick from `cortexalign layers {adapter.name}` "
                                       f"(valid: {', '.join(valid[:20])})")
    return list(dict.fromkeys(layers))


def extract_to_file(model: str, stimuli: str | os.PathLike[str], out: str | os.PathLike[str], *,
                    layers: Sequence[str] | None = None, all_layers: bool = False,
                    pooling: str | None = None, features: str = "activations",
                    weights: str | os.PathLike[str] | None = None, untrained: bool = False,
                    batch_size: int | None = None, device: str = "auto",
                    precision: str = "auto",
                    cache: str | os.PathLike[str] | None = None, overwrite: bool = False,
                    progress: bool = True, model_kwargs: Mapping[str, Any] | None = None,
                    map_options: Mapping[str, Any] | None = None) -> ExtractSummary:
    """Extract ``layers`` of ``model`` for ``stimuli`` and save them to ``out``.

    Parameters
    ----------
    model : a registered model, ``timm:<name>`` or ``torchvision:<name>``.
    stimuli : a bundled set name, a folder of images or an ``.npz`` (``load_stimuli``).
    out : the file; ``.npz``, ``.mat`` or ``.h5`` (``save_features``).
    layers : layer names (``cortexalign layers MODEL``); or ``all_layers=True`` for every layer
        (for maps: every attention block / spatial layer). One of the two is required.
    pooling : for activations, a name in ``POOLINGS`` (default ``mean``); None for maps.
    features : ``activations`` (pooled, (s, d) per layer), ``attention`` (attention each patch
        receives, (s, gh, gw) per block) or ``conv_map`` (mean |activation| over channels,
        (s, gh, gw) per spatial layer).
    map_options : options of the map kind (``features.FEATURE_KINDS``: attention ``reduction``
        received / cls / rollout; conv_map ``kind`` mean_abs / topk and ``k``); its defaults
        otherwise. Checked before the model loads.
    weights, untrained, device, model_kwargs : passed to ``load_model``.
    batch_size, precision : passed to the extraction.
    cache : a feature-cache folder: layers already extracted are read, new ones stored.
    overwrite : replace an existing ``out``.
    progress : show a progress bar.

    Returns
    -------
    ExtractSummary

    Raises
    ------
    InputError / UnknownNameError for a bad output name, an existing file without
    ``overwrite``, no or unknown layers, or an unknown feature kind or pooling; raised before
    extraction, and nothing is written.
    """
    from cortexalign.features import kind_layers
    from cortexalign.models import load_model
    from cortexalign.stimuli import load_stimuli

    out = check_destination(out, overwrite)
    _check_request(model, layers, all_layers, features, pooling, precision, batch_size)
    opts = _map_opts(features, map_options)
    start = time.perf_counter()
    # everything else the request names, all problems at once, before weights load
    problems = Problems()
    if weights is not None and not Path(weights).expanduser().is_file():
        problems.add("weights", InputError("weights", "a checkpoint file", f"{str(weights)!r}, "
                                           "which does not exist", "check the path"))
    if features == "activations":
        check_model_request(problems, model, layers, all_layers, model_kwargs)
    else:
        problems.check("", lambda: _architecture(model, model_kwargs))
    stim = problems.check("", lambda: load_stimuli(stimuli))
    problems.raise_if_any(f"extract {model}")
    adapter = load_model(model, weights=weights, untrained=untrained, device=device,
                         **dict(model_kwargs or {}))
    store = FeatureCache(cache) if cache is not None else None
    if features == "activations":
        names = _activation_layers(adapter, layers, all_layers)
        opts = {"pooling": pooling or "mean"}
    else:
        names = kind_layers(adapter, features, "all" if all_layers else list(layers), opts, stim)
    feats = extract(adapter, stim, names, features, opts, batch_size=batch_size, cache=store,
                    progress=progress, precision=precision)
    provenance = {"features": features, "stimuli": str(stimuli), "stimulus_set": stim.name,
                  "stimuli_hash": stim.content_hash, "weights_digest": adapter.weights_digest,
                  "weights": "untrained" if untrained else str(weights or "default"),
                  "preprocess": adapter.preprocess.key(), "device": str(adapter.device),
                  "precision": precision if features == "activations" else "fp32"}
    path = save_features(feats, out, overwrite=overwrite, provenance=provenance)
    return ExtractSummary(path, adapter.model_id, {n: f.shape for n, f in feats.items()},
                          {n: f.pooling for n, f in feats.items()}, len(stim),
                          tuple(n for n, f in feats.items() if f.from_cache),
                          time.perf_counter() - start)


def _map_opts(features: str, options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The completed, validated map options (None for activations, which take none)."""
    from cortexalign.features import kind_options

    if features == "activations":
        if options:
            raise InputError("map_options", "no map options with features=activations",
                             repr(dict(options)), "drop --map-option, or pass --features "
                             "attention / conv_map")
        return None
    return kind_options(features, options)
