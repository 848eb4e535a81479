"""The one feature-extraction contract every model follows: ``ModelAdapter``.

An adapter wraps a loaded ``torch.nn.Module`` (eval mode, on its device) with its preprocessing,
a weights fingerprint and named layers. ``forward_layers`` returns raw activations:
(b, c, h, w) for convolutional maps, (b, t, d) for token layers (prefix tokens such as CLS and
registers first; ``num_prefix_tokens`` says how many) and (b, d) for vectors such as logits.

This base class extracts with forward hooks on named submodules; subclasses (timm) override
``_forward_layers`` with a faster native path and keep the same contract.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property

import torch
from torch import nn

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.models._hooks import StopForward, capture_outputs, eval_mode
from cortexalign.models._preprocess import Preprocess
from cortexalign.models._weights import state_dict_digest

__all__ = ["ModelAdapter", "Preprocess", "default_layer_paths"]

OUTPUT = ""  # layer path meaning "the module's own output"


def default_layer_paths(module: nn.Module) -> dict[str, str]:
    """Layer name -> submodule path for a plain torch model: top-level children, with containers
    (``nn.Sequential``, ``nn.ModuleList``) opened one level (``features.0``, ``features.1``...)."""
    paths: dict[str, str] = {}
    for name, child in module.named_children():
        if isinstance(child, nn.Sequential | nn.ModuleList) and len(child) > 0:
            for sub, _ in child.named_children():
                paths[f"{name}.{sub}"] = f"{name}.{sub}"
        else:
            paths[name] = name
    return paths


class ModelAdapter:
    """A loaded model with named layers, its preprocessing and a weights fingerprint.

    Parameters
    ----------
    name : the name the model was requested under, e.g. ``"timm:resnet18"``.
    model_id : canonical id including the weights variant, e.g.
        ``"timm:resnet18@untrained-seed0"``; used in cache keys and results.
    module : the network; put in eval mode and moved to ``device`` here.
    preprocess : how images become its input batch.
    device : where the module lives; inputs are moved there.
    num_prefix_tokens : CLS/register tokens at the front of token layers (0 for CNNs).
    layer_paths : ordered layer name -> submodule path (``""`` = the module's output); defaults
        to ``default_layer_paths(module)``.
    """

    def __init__(self, name: str, model_id: str, module: nn.Module, preprocess: Preprocess,
                 device: torch.device, num_prefix_tokens: int = 0,
                 layer_paths: Mapping[str, str] | None = None):
        self.name = name
        self.model_id = model_id
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        self.preprocess = preprocess
        self.num_prefix_tokens = int(num_prefix_tokens)
        self._layer_paths = dict(layer_paths if layer_paths is not None
                                 else default_layer_paths(module))
        self._module_paths = {n for n, _ in module.named_modules() if n}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model_id={self.model_id!r}, layers={len(self.layers())}, "
                f"device={self.device})")

    @cached_property
    def weights_digest(self) -> str:
        """sha256 over the state_dict (names, dtypes, shapes, bytes); computed once."""
        return state_dict_digest(self.module)

    def layers(self) -> list[str]:
        """Extractable layer names, in forward order."""
        return list(self._layer_paths)

    def forward_layers(self, x_bchw: torch.Tensor, layers: Sequence[str], *,
                       grad: bool = False) -> dict[str, torch.Tensor]:
        """Run the network on a preprocessed batch and return the raw activations of ``layers``.

        Parameters
        ----------
        x_bchw : (b, 3, h, w) float tensor, as produced by ``self.preprocess``.
        layers : names from ``self.layers()``; any submodule path of ``self.module``
            (``module.named_modules()``) is accepted too and captured with a forward hook.

        Returns
        -------
        dict layer -> tensor in the order requested: (b, c, h, w), (b, t, d) or (b, d), on
        ``self.device``, computed under ``torch.inference_mode`` with the module in eval mode
        (its own train/eval flags are restored afterwards).
        grad : for training (``cortexalign.align``): the activations stay in the autograd graph
            and the module runs in its own train/eval mode (batch statistics in train mode).
        """
        names = self._check_layers(layers)
        x_bchw = self._check_input(x_bchw)
        if grad:
            with torch.enable_grad():
                out = self._forward_layers(x_bchw, names)
            return {name: out[name] for name in names}
        with torch.inference_mode(), eval_mode(self.module):
            out = self._forward_layers(x_bchw, names)
        for name in names:
            got = out[name]
            assert got.shape[0] == x_bchw.shape[0], (
                f"layer {name!r} returned shape {tuple(got.shape)} for a batch of {x_bchw.shape[0]}")
        return {name: out[name] for name in names}

    def check_layers(self, layers: Sequence[str]) -> list[str]:
        """Validate layer names (from ``layers()`` or any submodule path) before any work.

        Raises ``UnknownNameError`` with the close matches; returns the de-duplicated names.
        """
        return self._check_layers(layers)

    # -- implementation ---------------------------------------------------------------------

    def _path(self, name: str) -> str:
        return self._layer_paths.get(name, name)

    def _forward_layers(self, x_bchw: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        """Hook-based extraction; stops the forward as soon as every requested layer fired."""
        paths = [self._path(n) for n in names]
        hooked = [p for p in paths if p != OUTPUT]
        want_output = OUTPUT in paths
        with capture_outputs(self.module, hooked, stop_early=not want_output) as captured:
            try:
                output = self.module(x_bchw)
            except StopForward:
                output = None
        missing = [p for p in hooked if p not in captured]
        if missing:
            raise InputError("layers", "submodules that run in the forward pass",
                             f"{missing[:3]} never ran", "pick layers from adapter.layers()")
        if want_output and not isinstance(output, torch.Tensor):
            raise InputError("layers", "a model whose output is a tensor",
                             f"a {type(output).__name__}", "pick an inner layer instead")
        return {n: (output if p == OUTPUT else captured[p]) for n, p in zip(names, paths, strict=True)}

    def _check_layers(self, layers: Sequence[str]) -> list[str]:
        if isinstance(layers, str):
            layers = [layers]
        names = list(dict.fromkeys(layers))  # de-duplicate, keep order
        if not names:
            raise InputError("layers", "at least one layer name", "an empty list",
                             f"pick from adapter.layers(): {self.layers()[:8]}")
        known = self.layers()
        for name in names:
            if name not in self._layer_paths and name not in self._module_paths:
                raise UnknownNameError(
                    "layer", name, known + sorted(self._module_paths),
                    fix=f"use one of adapter.layers() ({', '.join(known[:20])}"
                        f"{', ...' if len(known) > 20 else ''}) or a submodule path of "
                        f"{self.model_id}")
        return names

    def _check_input(self, x_bchw: torch.Tensor) -> torch.Tensor:
        if not isinstance(x_bchw, torch.Tensor) or x_bchw.ndim != 4 or x_bchw.shape[1] != 3:
            got = (f"shape {tuple(x_bchw.shape)}" if isinstance(x_bchw, torch.Tensor)
                   else type(x_bchw).__name__)
            raise InputError("x_bchw", "a (b, 3, h, w) tensor", got,
                             "build the batch with adapter.preprocess(images)")
        if not x_bchw.is_floating_point():
            raise InputError("x_bchw", "a floating-point tensor", f"dtype {x_bchw.dtype}",
                             "build the batch with adapter.preprocess(images)")
        if x_bchw.shape[0] == 0:
            raise InputError("x_bchw", "at least one image", "an empty batch", "pass images")
        return x_bchw.to(self.device)
