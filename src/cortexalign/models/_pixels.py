"""``pixels``: the images themselves as a model, the baseline every alignment study reports.

Researchers of mouse visual cortex compare model features with the pixels (e.g. Conwell et al.
2024; de Vries et al. 2020 use pixel-based predictors): a network that aligns no better than its
input adds nothing. The one layer ``pixels`` is the (grey or RGB) image resized to ``size`` x
``size`` with values in [0, 1] (no normalisation), so ``features: conv_map`` gives the grey image
as the map, and ``activations`` with ``pooling: flatten`` gives the pixel vector for RSA and
encoding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cortexalign.errors import InputError
from cortexalign.models._base import ModelAdapter
from cortexalign.models._preprocess import Preprocess
from cortexalign.models._registry import MODELS, LoadSpec, options_tag

__all__ = ["PixelModel", "build_pixels"]


class PixelModel(nn.Module):
    """(b, 3, h, w) -> (b, 1, h, w) grey (mean over channels) or the RGB input unchanged."""

    def __init__(self, grey: bool = True):
        super().__init__()
        self.grey = bool(grey)
        self.pixels = nn.Identity()

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        return self.pixels(x_bchw.mean(1, keepdim=True) if self.grey else x_bchw)


@MODELS.register("pixels", description="The images as features: grey (or RGB) pixels at "
                 "size x size in [0, 1], the pixel baseline", layers="pixels",
                 weights="none (no parameters)", tiny={"size": 16})
def build_pixels(spec: LoadSpec, size: int = 64, grey: bool = True, **kwargs: Any
                 ) -> ModelAdapter:
    """``size``: side of the square the image is resized to (stretched; 64 by default);
    ``grey``: average the channels (default) or keep RGB."""
    if kwargs:
        raise InputError("kwargs", "size and grey for 'pixels'", repr(sorted(kwargs)),
                         "remove the other options")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InputError("size", "a positive integer (pixels per side)", repr(size),
                         "e.g. size: 64")
    pre = Preprocess(size=(size, size), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                     resize="stretch", interpolation="bilinear")
    opts = options_tag({"size": size, "grey": grey})
    return ModelAdapter(spec.name, f"pixels{opts}", PixelModel(grey), pre, spec.device,
                        layer_paths={"pixels": "pixels"})
