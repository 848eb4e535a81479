"""torchvision's image classifiers as ``"torchvision:<name>"`` (AlexNet, VGG, ResNet, DenseNet...).

The classic NeuroAI baselines (AlexNet is Brain-Score's standard baseline; Schrimpf et al. 2018)
built with ``torchvision.models.get_model``. Only the classification models of
``torchvision.models.list_models(module=torchvision.models)`` are served: detection, segmentation,
video and optical-flow models take other inputs and return other outputs.

Weights: the default is the architecture's ``DEFAULT`` weights enum (a download, read with
``torch.load`` forced to ``weights_only=True``); ``weights=PATH`` loads a state_dict file (the
official ``.pth`` files are plain state_dicts); ``untrained=True`` is the seeded initialisation.
Preprocessing always comes from the ``DEFAULT`` enum's transforms metadata (local, no network).
GoogLeNet and Inception v3 built with their ImageNet weights re-normalise their input inside the
model (``transform_input=True``, torchvision's choice for those weights); loading those official
weights from a file (``weights=PATH``) needs ``transform_input=True`` passed as a keyword to match.

Layers, found once by tracing one forward pass of a blank image, in the order they finish:

- every top-level child, with ``nn.Sequential``/``nn.ModuleList`` containers opened one level
  (``features.0``..``features.12``, ``avgpool``, ``classifier.1``.. for AlexNet and VGG);
- ResNet stages ``layer1``..``layer4`` after their blocks ``layer1.0``, ``layer1.1``.. (a stage is
  the same tensor as its last block: both names are kept, as Brain-Score uses both);
- ViT encoder blocks ``encoder.layers.encoder_layer_i`` and ``encoder.ln``: token layers
  (b, t, d) with the class token first (``num_prefix_tokens == 1``);
- Swin's channels-last ``features.i`` and ``norm`` are returned as (b, c, h, w);
- ``logits``: the model's output, replacing the module that returns it (``fc``, ``classifier.6``).

Modules that run more than once, return no tensor or never run in eval (GoogLeNet's auxiliary
heads) are left out, and so are dropout, flatten, identity and permute modules: in eval they
repeat their input. Any other submodule path is still extractable with a hook.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models import get_model, get_model_weights
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.models.vision_transformer import VisionTransformer
from torchvision.ops.misc import Permute

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.models._base import OUTPUT, ModelAdapter, default_layer_paths
from cortexalign.models._hooks import eval_mode, seeded
from cortexalign.models._preprocess import Preprocess
from cortexalign.models._registry import MODELS, LoadSpec, options_tag
from cortexalign.models._weights import load_state_dict_checked, read_state_dict

__all__ = ["TorchvisionAdapter", "build_torchvision", "create_torchvision",
           "torchvision_preprocess", "torchvision_names"]

# parameter-free modules whose eval output repeats their input's values
_REPEATS_INPUT = (nn.Dropout, nn.Flatten, nn.Identity, Permute)
_STAGE = re.compile(r"layer\d+")


def torchvision_names() -> list[str]:
    """The classification architectures ``torchvision:<name>`` serves."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


class TorchvisionAdapter(ModelAdapter):
    """``ModelAdapter`` for a torchvision classifier; layers traced once in forward order
    (see the module docstring), extracted with forward hooks."""

    def __init__(self, name: str, model_id: str, module: nn.Module, preprocess: Preprocess,
                 device: torch.device):
        prefix = 1 if isinstance(module, VisionTransformer) else 0  # class token first
        super().__init__(name, model_id, module, preprocess, device, prefix, layer_paths={})
        self._layer_paths = self._trace_layers()
        self._swin = isinstance(module, SwinTransformer)

    def _channels_last(self, name: str) -> bool:
        """Swin keeps (b, h, w, c) maps from its patch embedding's permute on: every module under
        ``features`` except the embedding's convolution ``features.0.0``, and ``norm``. The
        contract is (b, c, h, w), for listed layers and any other submodule path alike."""
        path = self._path(name)
        return self._swin and (path == "norm" or (path.startswith("features.")
                                                  and path != "features.0.0"))

    def _forward_layers(self, x_bchw: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        out = super()._forward_layers(x_bchw, names)
        for n in names:
            if out[n].ndim == 4 and self._channels_last(n):
                out[n] = out[n].permute(0, 3, 1, 2)
        return out

    def _trace_layers(self) -> dict[str, str]:
        """Candidate layers that run exactly once with a tensor output, in the order they finish;
        the one returning the model's output tensor is named ``logits``."""
        modules = dict(self.module.named_modules())
        fired: dict[str, list[Any]] = {}

        def make_hook(path: str):
            def hook(_mod: nn.Module, _inputs: tuple, output: object) -> None:
                fired.setdefault(path, []).append(output)
            return hook

        handles = [modules[p].register_forward_hook(make_hook(p)) for p in _candidates(self.module)]
        x_13hw = torch.zeros(1, 3, *self.preprocess.size, device=self.device)
        try:
            with torch.inference_mode(), eval_mode(self.module):
                output = self.module(x_13hw)
        finally:
            for handle in handles:
                handle.remove()
        paths: dict[str, str] = {}
        for path, outs in fired.items():  # dict order = order of first completion
            if len(outs) == 1 and isinstance(outs[0], torch.Tensor) and outs[0] is not output:
                paths[path] = path
        paths["logits"] = OUTPUT
        return paths


def _candidates(module: nn.Module) -> list[str]:
    """Submodule paths worth naming, before tracing (order does not matter here)."""
    names = list(default_layer_paths(module))
    if isinstance(module, VisionTransformer):
        names.remove("encoder")
        names += [f"encoder.layers.{n}" for n, _ in module.encoder.layers.named_children()]
        names.append("encoder.ln")
    names += [n for n, child in module.named_children()
              if _STAGE.fullmatch(n) and isinstance(child, nn.Sequential)]
    modules = dict(module.named_modules())
    return [n for n in names if not isinstance(modules[n], _REPEATS_INPUT)]


def torchvision_preprocess(arch: str, kwargs: Mapping[str, Any]) -> Preprocess:
    """``Preprocess`` from the ``DEFAULT`` weights' transforms metadata: resize the shorter side to
    ``resize_size``, centre-crop ``crop_size``, normalise with ``mean``/``std``.

    ``crop_pct = crop_size / resize_size`` reproduces ``resize_size`` (checked). An ``image_size``
    kwarg (ViT) sets the crop and keeps the enum's crop fraction.
    """
    t = get_model_weights(arch).DEFAULT.transforms()
    resize, crop = int(t.resize_size[0]), int(t.crop_size[0])
    crop_pct = min(1.0, crop / resize)
    assert crop_pct == 1.0 or math.floor(crop / crop_pct) == resize, (arch, resize, crop, crop_pct)
    size = int(kwargs.get("image_size", crop))
    interpolation = getattr(t.interpolation, "value", str(t.interpolation))
    return Preprocess(size=(size, size), mean=tuple(t.mean), std=tuple(t.std),
                      resize="shorter_side_center_crop", crop_pct=crop_pct,
                      interpolation=interpolation if interpolation in ("bilinear", "nearest")
                      else "bicubic")


@contextmanager
def _weights_only_loads() -> Iterator[None]:
    """Force every ``torch.load`` in the block to ``weights_only=True`` (torchvision's hub download
    passes ``weights_only=False``); the environment is restored on exit. The variable is
    process-wide: a ``torch.load`` in another thread during the download is forced too (only ever
    stricter)."""
    keys = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    saved = {k: os.environ.get(k) for k in keys}
    try:
        os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
        os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def create_torchvision(arch: str, spec: LoadSpec, kwargs: Mapping[str, Any]) -> nn.Module:
    """Build torchvision ``arch`` with the weights ``spec`` asks for (hub, file or seeded untrained)."""
    names = torchvision_names()
    if arch not in names:
        raise UnknownNameError(
            "torchvision model", arch, names,
            fix="use a classification model of torchvision.models.list_models("
                "module=torchvision.models), e.g. 'alexnet' or 'resnet18' (detection, "
                "segmentation, video and optical-flow models are not served)")
    enum = get_model_weights(arch).DEFAULT
    try:
        if spec.source == "default":
            with _weights_only_loads():
                return get_model(arch, weights=enum, **kwargs)
        with seeded(spec.seed):
            module = get_model(arch, weights=None, **kwargs)
    except (TypeError, ValueError) as err:  # unknown option, or one the weights fix (num_classes)
        raise InputError("kwargs", f"options accepted by torchvision's {arch}", repr(dict(kwargs)),
                         f"remove or fix the option ({err})") from err
    except Exception as err:  # download: URLError, hash mismatch, HTTP errors of all kinds
        raise InputError(
            "pretrained", f"torchvision weights {enum} (downloaded from {enum.url})",
            f"a failed download ({type(err).__name__}: {str(err)[:200]})",
            f"no download is possible offline: fetch {enum.url} elsewhere and pass weights=PATH "
            f"(the .pth file is a plain state_dict) or put it in "
            f"{os.path.join(torch.hub.get_dir(), 'checkpoints')}, or pass untrained=True for "
            "the untrained control") from err
    if spec.source == "file":
        load_state_dict_checked(module, read_state_dict(spec.weights), repr(str(spec.weights)))
    return module


def _model_id(spec: LoadSpec, kwargs: Mapping[str, Any]) -> str:
    opts = options_tag(kwargs)
    if spec.source == "default":
        return f"{spec.name}{opts}@hub:{get_model_weights(spec.arch).DEFAULT.name}"
    return f"{spec.name}{opts}{spec.variant()}"


@MODELS.register_prefix(
    "torchvision",
    description="torchvision classifiers: AlexNet, VGG, ResNet, DenseNet, MobileNet, ViT, Swin...",
    layers="features.i / layer1.0..layer4 / encoder blocks, avgpool, classifier.i, then logits",
    weights="torchvision DEFAULT weights (needs network), a local state_dict, or untrained=True",
    tiny={"name": "torchvision:resnet18", "untrained": True},
)
def build_torchvision(spec: LoadSpec, **kwargs: Any) -> TorchvisionAdapter:
    """Build ``torchvision:<arch>``; ``kwargs`` go to ``torchvision.models.get_model``
    (e.g. ``num_classes=10`` for an untrained or file model)."""
    module = create_torchvision(spec.arch, spec, kwargs)
    return TorchvisionAdapter(spec.name, _model_id(spec, kwargs), module,
                              torchvision_preprocess(spec.arch, kwargs), spec.device)
