"""``SamAdapter``: a Segment Anything encoder with SAM preprocessing and spatial layer outputs.

Every layer comes back as a spatial map (b, c, h, w) on the token grid: SAM's transformer blocks
work on (b, h, w, d) tensors and are permuted; there are no prefix tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cortexalign.errors import InputError
from cortexalign.models._base import ModelAdapter
from cortexalign.models._preprocess import Preprocess
from cortexalign.stimuli import check_image

__all__ = ["SamAdapter", "SamPreprocess", "sam_preprocess", "SAM_PIXEL_MEAN", "SAM_PIXEL_STD"]

#: Segment Anything's normalisation, on the 0-255 pixel scale (Kirillov et al. 2023).
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class SamPreprocess(Preprocess):
    """``Preprocess`` in SAM's ``longest_side_pad`` mode that refuses images too small to encode.

    Parameters
    ----------
    min_side : smallest accepted image side in pixels (one 16-px patch by default); an image
        whose shorter side, once the longest side is scaled to ``size``, covers less than one
        patch is refused too.
    """

    min_side: int = 16

    def __call__(self, images: Sequence[np.ndarray],
                 device: str | torch.device | None = None) -> torch.Tensor:
        if device is None:  # the device path checks in ``group``
            self._check_sizes(images)
        return super().__call__(images, device=device)

    def group(self, images: Sequence[np.ndarray], pin_memory: bool = False
              ) -> list[tuple[list[int], torch.Tensor]]:
        """``Preprocess.group`` (the host half of the device path, which feature extraction
        calls directly on CUDA) after the size check."""
        self._check_sizes(images)
        return super().group(images, pin_memory=pin_memory)

    def _check_sizes(self, images: Sequence[np.ndarray]) -> None:
        if isinstance(images, Sequence | np.ndarray) and not (
                isinstance(images, np.ndarray) and images.ndim in (2, 3)):
            for i, img in enumerate(images):
                img_hwc = check_image(img, f"images[{i}]")
                self._check_size(img_hwc.shape[:2], f"images[{i}]")

    def _check_size(self, hw: tuple[int, int], what: str) -> None:
        h, w = hw
        scaled_short = min(h, w) * min(self.size[0] / h, self.size[1] / w)
        if min(h, w) < self.min_side or scaled_short < self.min_side:
            raise InputError(what, f"an image with both sides >= {self.min_side} px whose "
                             f"shorter side spans >= {self.min_side} px once the longer side is "
                             f"scaled to {max(self.size)}", f"an image of {h} x {w} px",
                             "use a larger image, or crop it to a less elongated region")


def sam_preprocess(img_size: int, min_side: int = 16) -> SamPreprocess:
    """SAM's preprocessing: longest side to ``img_size``, SAM mean/std, zero padding bottom-right."""
    return SamPreprocess(size=(img_size, img_size),
                         mean=tuple(m / 255 for m in SAM_PIXEL_MEAN),
                         std=tuple(s / 255 for s in SAM_PIXEL_STD),
                         resize="longest_side_pad", interpolation="bilinear",
                         min_side=min(min_side, img_size))


class SamAdapter(ModelAdapter):
    """``ModelAdapter`` for SAM-family encoders.

    Parameters
    ----------
    layer_paths : layer name -> submodule path (``blocks.3``, ``stages.2.blocks.1``, ``neck``).
    channels_last : layer names whose module outputs (b, h, w, d); they are returned as
        (b, d, h, w).
    family : ``"sam"``, ``"sam2"``, ``"mobile_sam"``, ``"efficient_sam"`` or ``"edge_sam"``.
    """

    def __init__(self, name: str, model_id: str, module: nn.Module, preprocess: Preprocess,
                 device: torch.device, layer_paths: Mapping[str, str],
                 channels_last: Sequence[str], family: str):
        super().__init__(name, model_id, module, preprocess, device, 0, layer_paths)
        self.family = family
        self._channels_last = set(channels_last)

    @property
    def img_size(self) -> int:
        """The encoder's input size (pixels, square)."""
        return int(self.preprocess.size[0])

    def encode(self, x_bchw: torch.Tensor) -> torch.Tensor:
        """The image embedding (b, c, S/16, S/16) (SAM 2: the last trunk stage, (b, c, S/32, S/32))."""
        x_bchw = self._check_input(x_bchw)
        with torch.inference_mode():
            out = self.module.forward_features(x_bchw)
        return out.permute(0, 3, 1, 2) if self.family == "sam2" else out  # HieraDet: NHWC

    def _forward_layers(self, x_bchw: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        out = super()._forward_layers(x_bchw, names)
        return {n: (t.permute(0, 3, 1, 2) if n in self._channels_last and t.ndim == 4 else t)
                for n, t in out.items()}

    def _check_input(self, x_bchw: torch.Tensor) -> torch.Tensor:
        x_bchw = super()._check_input(x_bchw)
        size = tuple(self.preprocess.size)
        if tuple(x_bchw.shape[2:]) != size:
            raise InputError("x_bchw", f"a (b, 3, {size[0]}, {size[1]}) batch (SAM encoders take "
                             "a fixed, padded square input)", f"shape {tuple(x_bchw.shape)}",
                             "build the batch with adapter.preprocess(images), which resizes "
                             "the longest side and pads")
        return x_bchw
