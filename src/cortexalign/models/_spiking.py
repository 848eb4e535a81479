"""Spiking transformers (``cortexalign.spiking``) as models of the alignment pipeline.

``snn:<name>`` loads one of ``cortexalign.spiking.SNN_MODELS`` (``hst_4_384``,
``spiliformer_4_384``, ``tdformer_10_768``, ``*_tiny``...). Layers are the stage embeddings and
transformer blocks; each layer's output is averaged over the time steps, so a spiking model's
features are firing rates with the same (b, c, h, w) / (b, n, d) layouts as an ANN's and every
metric applies unchanged. No pretrained weights are published for these models: train one with
``cortexalign train-snn`` and pass its checkpoint as ``weights``, or use ``untrained=True``.
"""

from __future__ import annotations

from typing import Any

import torch

from cortexalign.errors import InputError
from cortexalign.models._base import ModelAdapter
from cortexalign.models._hooks import seeded
from cortexalign.models._preprocess import Preprocess
from cortexalign.models._registry import MODELS, LoadSpec, options_tag

__all__ = ["SpikingAdapter"]

_CIFAR = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class SpikingAdapter(ModelAdapter):
    """A spiking transformer whose layer outputs are averaged over time steps."""

    def _forward_layers(self, x_bchw: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        from cortexalign.spiking.features import extract_features
        from cortexalign.spiking.neurons import reset_states

        reset_states(self.module)  # every batch starts from resting membranes
        out = extract_features(self.module, x_bchw, names, time_reduce="mean",
                               grad=torch.is_grad_enabled())
        reset_states(self.module)
        return out


@MODELS.register_prefix(
    "snn",
    description="Spiking transformers: QKFormer-style baseline (hst), SpiLiFormer, TDFormer",
    layers="stage{k}.embed, stage{k}.block{j} (time-averaged firing)",
    weights="a checkpoint from `cortexalign train-snn` (weights=PATH), or untrained=True",
    tiny={"name": "snn:spiliformer_tiny", "untrained": True, "img_size": 16},
)
def build_snn(spec: LoadSpec, img_size: int | None = None, **kwargs: Any) -> SpikingAdapter:
    """Build ``snn:<name>``; ``kwargs`` override ``HSTConfig`` fields (e.g. ``time_steps=4``)."""
    from cortexalign.spiking import SNN_MODELS, create_snn, load_weights
    from cortexalign.spiking.features import layer_names

    if spec.arch not in SNN_MODELS:
        SNN_MODELS.get(spec.arch)  # raises with the close matches
    if spec.source == "default":
        raise InputError("weights", "a checkpoint written by `cortexalign train-snn`, or "
                         "untrained=True", f"no weights for {spec.name!r} (none are published)",
                         "train one with `cortexalign train-snn CONFIG` and pass weights=PATH")
    with seeded(spec.seed):
        module = create_snn(spec.arch, **kwargs)
    if spec.source == "file":
        load_weights(module, spec.weights)
    size = img_size or (32 if module.config.num_classes <= 100 else 224)
    mean, std = _CIFAR if size <= 64 else _IMAGENET
    preprocess = Preprocess(size=(size, size), mean=mean, std=std, resize="stretch")
    opts = options_tag(kwargs)
    layers = layer_names(module)
    return SpikingAdapter(spec.name, f"{spec.name}{opts}{spec.variant()}", module, preprocess,
                          spec.device, layer_paths={n: n for n in layers})
