"""Registry entries of the Segment Anything family (``load_model("sam_vit_b")`` and friends).

Weights: ``load_model(name)`` uses the official checkpoint fetched by ``cortexalign fetch
<entry>`` when it is in the cache (converted on load; model id ``...@fetched:<file>``), else
timm's hub where it has the encoder (SAM ViT, SAM 2 Hiera; needs network; offline it fails at
once with the fetch command instead of retrying); ``weights=PATH`` loads an official checkpoint through ``CONVERTERS`` (or our own
layout); ``untrained=True`` gives the seeded random initialisation. ``tiny=True`` builds the small
test config of ``SAM_CONFIGS``; other keyword arguments override architecture options.

Preprocessing: the image encoders see what they saw in training. SAM, MobileSAM, EfficientSAM
and EdgeSAM scale the longest side to ``img_size`` and pad (``longest_side_pad``);
SAM 2 (Hiera) resizes the whole image to an ``img_size`` square (``SAM2_RESIZE = "stretch"``,
as sam2's ``SAM2Transforms`` do), so its maps cover the image without padding. Both take SAM's
pixel mean/std. ``load_model(..., preprocess={"resize": "longest_side_pad"})`` (or
``preprocess:`` in a config entry) gives a SAM 2 encoder SAM 1's input instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cortexalign.errors import InputError
from cortexalign.fetch import checkpoint_entry, fetched_checkpoint, offline_reason
from cortexalign.models._hooks import seeded
from cortexalign.models._hub import hub_reachable
from cortexalign.models._registry import MODELS, LoadSpec, options_tag
from cortexalign.models._weights import load_state_dict_checked, read_state_dict
from cortexalign.models.sam._adapter import SamAdapter, sam_preprocess
from cortexalign.models.sam._configs import SAM_CONFIGS, SamConfig
from cortexalign.models.sam._convert import check_generation, convert_state_dict
from cortexalign.models.sam._encoders import build_hiera, build_samvit, build_tiny_vit_sam
from cortexalign.models.sam._repvit import build_edge_sam_repvit

__all__ = ["BUILDERS", "build_sam_family", "sam_layer_paths", "SAM2_RESIZE"]

SAM2_RESIZE = "stretch"
"""SAM 2's default input geometry: the image resized to a square (see the module docstring)."""

#: family -> encoder builder(arch, **kwargs) -> nn.Module
BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "sam": build_samvit,
    "efficient_sam": build_samvit,
    "sam2": build_hiera,
    "mobile_sam": build_tiny_vit_sam,
    "edge_sam": build_edge_sam_repvit,
}


def sam_layer_paths(module: nn.Module) -> tuple[dict[str, str], list[str]]:
    """Layer names in forward order and those whose outputs are channels-last (b, h, w, d)."""
    paths: dict[str, str] = {}
    channels_last: list[str] = []
    if hasattr(module, "blocks"):  # SAM ViT, EfficientSAM, Hiera: blocks work on (b, h, w, d)
        for i in range(len(module.blocks)):
            paths[f"blocks.{i}"] = f"blocks.{i}"
            channels_last.append(f"blocks.{i}")
    elif hasattr(module, "block_paths"):  # EdgeSAM's RepViT: family names over a flat list
        paths.update(module.block_paths())
    else:  # TinyViT: stages of blocks; its attention blocks are channels-last
        for s, stage in enumerate(module.stages):
            for j, block in enumerate(stage.blocks):
                paths[f"stages.{s}.blocks.{j}"] = f"stages.{s}.blocks.{j}"
                if type(block).__name__ == "TinyVitBlock":
                    channels_last.append(f"stages.{s}.blocks.{j}")
    for extra in ("fuse_stage2", "fuse_stage3", "neck"):
        if hasattr(module, extra):
            paths[extra] = extra
    return paths, channels_last


def _default_weights(cfg: SamConfig) -> Path | None:
    """The fetched official checkpoint of ``cfg`` (``cortexalign fetch``), else ``None`` after
    checking the hub may be used: without weights or offline this fails at once with the fix."""
    fetched = fetched_checkpoint(cfg.name)
    if fetched is not None:
        return fetched
    entry = checkpoint_entry(cfg.name)
    fix = (f"run `cortexalign fetch {entry}` (then load_model uses it), or pass weights=PATH "
           f"to the official {cfg.checkpoint or 'checkpoint'}, or untrained=True") if entry else (
        "pass weights=PATH to a checkpoint in cortexalign's layout, or untrained=True")
    if not cfg.hub:
        raise InputError("weights", f"a local or fetched checkpoint for {cfg.name!r} (no hub "
                         "weights)", "no weights", fix)
    if not hub_reachable():  # timm's hub would retry five times per file before failing
        reason = offline_reason() or "the hub cannot be reached"
        raise InputError("pretrained", f"timm hub weights for {cfg.arch!r} or a fetched "
                         "checkpoint", f"neither: offline ({reason})", fix)
    return None


def _build_module(cfg: SamConfig, spec: LoadSpec, arch_kwargs: dict[str, Any]
                  ) -> tuple[nn.Module, str]:
    """The encoder and the model-id suffix naming its weights."""
    builder = BUILDERS[cfg.family]
    weights, variant = spec.weights, spec.variant()
    if spec.source == "default":
        weights = _default_weights(cfg)
        if weights is None:
            try:
                return builder(cfg.arch, pretrained=True, **arch_kwargs), "@hub"
            except Exception as err:  # network, hub and HF errors of all kinds
                raise InputError("pretrained", f"timm hub weights for {cfg.arch!r}",
                                 f"a failed download ({type(err).__name__}: {str(err)[:160]})",
                                 f"run `cortexalign fetch {checkpoint_entry(cfg.name)}`, or "
                                 f"pass weights=PATH to the official {cfg.checkpoint}, or "
                                 "untrained=True") from err
        variant = f"@fetched:{weights.name}"
    try:
        with seeded(spec.seed):
            module = builder(cfg.arch, **arch_kwargs)
    except TypeError as err:
        raise InputError("kwargs", f"architecture options of {cfg.name!r}",
                         repr(sorted(arch_kwargs)), f"remove or fix the option ({err})") from err
    if weights is not None and spec.source != "untrained":
        official = read_state_dict(weights)
        converted = convert_state_dict(cfg.family, official, module)
        missing = [k for k in module.state_dict() if k not in converted]
        check_generation(cfg.family, official, repr(str(weights)),
                         f" with {len(missing)} missing keys for {cfg.name!r}")
        load_state_dict_checked(module, converted, repr(str(weights)))
    return module, variant


def build_sam_family(cfg: SamConfig, spec: LoadSpec, *, tiny: bool = False,
                     **kwargs: Any) -> SamAdapter:
    """Build the encoder of ``cfg`` as a ``SamAdapter`` (see the module docstring)."""
    arch_kwargs = dict(cfg.tiny if tiny else cfg.kwargs)
    arch_kwargs.setdefault("img_size", cfg.img_size)
    arch_kwargs.update(kwargs)
    img_size = int(arch_kwargs["img_size"])
    module, variant = _build_module(cfg, spec, arch_kwargs)
    paths, channels_last = sam_layer_paths(module)
    opts = options_tag(kwargs) + ("[tiny]" if tiny else "")
    preprocess = sam_preprocess(img_size)
    if cfg.family == "sam2":  # SAM 2's transforms resize to a square, unlike SAM's pad
        preprocess = dataclasses.replace(preprocess, resize=SAM2_RESIZE)
    return SamAdapter(spec.name, f"{cfg.name}{opts}{variant}", module, preprocess,
                      torch.device(spec.device), paths, channels_last, cfg.family)


def _register(cfg: SamConfig) -> None:
    def build(spec: LoadSpec, **kwargs: Any) -> SamAdapter:
        return build_sam_family(cfg, spec, **kwargs)

    build.__doc__ = cfg.description
    layers = {"sam": "blocks.i, neck", "efficient_sam": "blocks.i, neck", "sam2": "blocks.i",
              "mobile_sam": "stages.i.blocks.j, neck",
              "edge_sam": "stages.i.blocks.j, fuse_stage2, fuse_stage3, neck"}[cfg.family]
    entry = checkpoint_entry(cfg.name)
    weights = (f"`cortexalign fetch {entry}`, " if entry else "") + (
        "timm hub (network) or weights=PATH to " if cfg.hub else "weights=PATH to ") + (
        cfg.checkpoint or "a checkpoint in cortexalign's layout")
    MODELS.add(cfg.name, build, description=cfg.description, layers=layers, weights=weights,
               tiny={"untrained": True, "tiny": True}, family=cfg.family)


for _cfg in SAM_CONFIGS.values():
    _register(_cfg)
