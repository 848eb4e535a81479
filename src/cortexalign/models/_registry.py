"""The model registry, ``load_model`` and ``list_models``.

A model is registered with a builder ``build(spec: LoadSpec, **kwargs) -> ModelAdapter``::

    @MODELS.register("gabor_v1", description=..., layers=..., weights=..., tiny={...})
    def build_gabor(spec, **kwargs): ...

    @MODELS.register_prefix("timm", ...)          # serves every "timm:<name>"
    def build_timm(spec, **kwargs): ...

Metadata keys: ``description`` (one line), ``layers`` (a hint such as "simple, complex, pooled"),
``weights`` (where the default weights come from), ``tiny`` (kwargs of ``load_model`` giving a
tiny config for contract tests; prefixes add ``"name"``, a full example name).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import torch

from cortexalign.compute import compute_threads
from cortexalign.device import resolve_device
from cortexalign.errors import InputError
from cortexalign.fetch import weights_path
from cortexalign.models._preprocess import Preprocess, with_options
from cortexalign.registry import Registry

__all__ = ["MODELS", "LoadSpec", "ModelInfo", "load_model", "list_models", "options_tag",
           "load_architecture"]

MODELS: Registry = Registry("model")


@dataclass(frozen=True)
class LoadSpec:
    """What ``load_model`` resolved, handed to a builder.

    Parameters
    ----------
    name : the requested name (``"timm:resnet18"``).
    arch : the part after the prefix for prefixed names (``"resnet18"``), else ``None``.
    source : ``"default"`` (the entry's own pretrained weights: hub, package or designed
        filters), ``"file"`` (``weights``) or ``"untrained"`` (architecture's init, ``seed``).
    weights : checkpoint path when ``source == "file"``.
    seed : seed of the untrained initialisation.
    device : where the model goes.
    """

    name: str
    arch: str | None
    source: str
    weights: Path | None
    seed: int
    device: torch.device

    def variant(self) -> str:
        """The model_id suffix naming the weights: ``@untrained-seed0``, ``@file:x.safetensors``."""
        if self.source == "untrained":
            return f"@untrained-seed{self.seed}"
        if self.source == "file":
            return f"@file:{self.weights.name}"
        return ""


def options_tag(options: Mapping[str, Any]) -> str:
    """The model_id part naming constructor options, ``[img_size=32][depth=2]`` (sorted keys): one
    spelling for every builder, since model ids enter cache keys."""
    return "".join(f"[{k}={v!r}]" for k, v in sorted(options.items()))


class ModelInfo(TypedDict):
    """One row of ``list_models()`` (a plain dict, ready for a table)."""

    name: str
    description: str
    layers: str
    weights: str


def load_model(name: str, *, pretrained: bool | None = None, weights: str | Path | None = None,
               untrained: bool = False, seed: int = 0, device: str | torch.device | None = None,
               preprocess: dict[str, Any] | Preprocess | None = None, **kwargs: Any):
    """Load a registered model as a ``ModelAdapter``.

    Parameters
    ----------
    name : a registered name (``"efficientnet_lite0"``, ``"gabor_v1"``) or a prefixed one
        (``"timm:vit_base_patch16_224"``); ``list_models()`` shows them.
    pretrained : ``None`` (default) or ``True`` load the entry's default weights (timm hub,
        bundled package, designed filters); ``False`` is the same as ``untrained=True``.
    weights : a local checkpoint (``.safetensors`` or a torch state_dict file) to load instead,
        or a weights entry of ``cortexalign fetch --list`` (``"sam-vit-b"``: fetched if missing).
    untrained : build the architecture with its own initialisation under ``seed`` (a control).
    seed : seed of the untrained initialisation; the same seed gives identical weights.
    device : ``"cpu"``, ``"cuda"``, ``"auto"``/``None`` (CUDA when present).
    preprocess : settings replacing the model's own preprocessing (``with_options``: size,
        resize, crop_pct, interpolation, mean/std or a preset such as ``mean: imagenet``); the
        model id then ends in ``+pre(...)`` so cached features and cards keep them apart.
    **kwargs : passed to the builder (e.g. timm's ``img_size=32``, ``num_classes=10``).

    Returns
    -------
    ModelAdapter
    """
    if not isinstance(name, str) or not name:
        raise InputError("name", "a model name such as 'timm:resnet18'", repr(name),
                         "see cortexalign.models.list_models()")
    entry, arch = MODELS.resolve(name)
    if arch is not None and not arch:
        raise InputError("name", f"'{entry.name}<architecture>'", repr(name),
                         f"name an architecture, e.g. {entry.meta.get('tiny', {}).get('name', '')!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError("seed", "a non-negative integer", repr(seed), "pass e.g. seed=0")
    if weights is not None and (untrained or pretrained is True):
        raise InputError("weights", "no checkpoint when untrained=True or pretrained=True",
                         repr(str(weights)), "pass either weights=PATH or untrained/pretrained")
    if untrained and pretrained is True:
        raise InputError("untrained", "False when pretrained=True", "True",
                         "pass untrained=True alone for the untrained control")
    if weights is not None:
        source = "file"
        weights = weights_path(weights)  # a catalogue entry ('sam-vit-b'): its fetched file
    elif untrained or pretrained is False:
        source = "untrained"
    else:
        source = "default"
    spec = LoadSpec(name=name, arch=arch, source=source,
                    weights=Path(weights).expanduser() if weights is not None else None,
                    seed=seed, device=resolve_device(device))
    with compute_threads(0.0):  # building is many small operations: one thread (compute)
        adapter = entry.obj(spec, **kwargs)
    if preprocess:
        adapter.preprocess = with_options(adapter.preprocess, preprocess)
        adapter.model_id = f"{adapter.model_id}+pre({adapter.preprocess.key()})"
    return adapter


def list_models() -> list[ModelInfo]:
    """Every registered model (prefixed families as ``"timm:<name>"``) with a one-line description,
    a hint of its layer names and where its weights come from."""
    rows = []
    for entry in MODELS.prefix_entries() + MODELS.entries():
        name = entry.name + "<name>" if entry.name.endswith(":") else entry.name
        rows.append(ModelInfo(name=name, description=entry.description,
                              layers=entry.meta.get("layers", ""),
                              weights=entry.meta.get("weights", "")))
    return rows


def reject_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """Builders that take no options call this so a typo never passes silently."""
    if kwargs:
        raise InputError("kwargs", f"no extra options for {name!r}", repr(sorted(kwargs)),
                         "remove them (see the model's docstring for what it accepts)")


def load_architecture(name: str, **kwargs: Any):
    """``name``'s architecture on PyTorch's meta device: no weights, no memory, no download.

    ``kwargs`` are ``load_model``'s (its weight options are ignored). Its ``layers()`` and
    submodules are the real model's, so a request (name, constructor options, layer names) can
    be checked in well under a second before anything is loaded or
    written. It cannot run a forward pass.
    """
    # the weight options of load_model do not change the architecture
    options = {k: v for k, v in kwargs.items()
               if k not in ("untrained", "pretrained", "weights", "seed", "device")}
    meta = torch.device("meta")
    with meta:
        return load_model(name, untrained=True, device=meta, **options)
