"""``Preprocess``: turn a list of images into the normalised batch a network expects.

Three resize modes cover the models we ship:

- ``"shorter_side_center_crop"`` (timm / torchvision evaluation): scale the image so that it covers
  ``size / crop_pct`` keeping its aspect ratio, then crop the centre ``size`` (timm's eval
  transform, ``crop_mode="center"``, pixel for pixel for square and non-square sizes).
- ``"longest_side_pad"`` (Segment Anything, Kirillov et al. 2023): scale the longest side to fit
  ``size``, normalise, then pad bottom and right with zeros.
- ``"stretch"``: resize straight to ``floor(size / crop_pct)`` (aspect ratio not kept), then
  crop the centre ``size`` (timm's ``crop_mode="squash"``; with ``crop_pct=1`` just a resize).

Two paths compute the same numbers: ``preprocess(images)`` works image by image on the CPU, and
``preprocess(images, device=...)`` sends the uint8 pixels to ``device`` and resizes, crops and
normalises there, one batched ``interpolate`` per group of same-size images (``group`` stacks the
groups on the host, ``on_device`` finishes them), so that the host only decodes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cortexalign.errors import InputError
from cortexalign.stimuli import check_image

__all__ = ["Preprocess", "RESIZE_MODES", "INTERPOLATIONS", "MEAN_STD_PRESETS", "PREPROCESS_OPTIONS",
           "with_options"]

RESIZE_MODES = ("shorter_side_center_crop", "longest_side_pad", "stretch")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


@functools.lru_cache(maxsize=32)
def _channel_constants(mean: tuple[float, ...], std: tuple[float, ...],
                       device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3, 1, 1) mean and std on ``device``, made once: building them from Python lists on
    every batch is a pageable host-to-device copy, which waits for all queued device work."""
    def const(values: tuple[float, ...]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1).to(device)

    return const(mean), const(std)


@dataclass(frozen=True)
class Preprocess:
    """How images become the network's input batch.

    Parameters
    ----------
    size : (h, w) of the tensor fed to the network, in pixels.
    mean : per-channel mean subtracted after scaling pixels to [0, 1] (RGB order).
    std : per-channel standard deviation divided by after subtracting ``mean``.
    resize : one of ``RESIZE_MODES`` (see the module docstring).
    crop_pct : timm-style crop fraction for ``"shorter_side_center_crop"`` and ``"stretch"``: the
        image is scaled to cover (or, stretching, to) ``floor(size / crop_pct)`` and the centre
        ``size`` is kept. 1.0 keeps the full shorter side (the whole image, stretching).
    interpolation : ``"bicubic"``, ``"bilinear"`` (both antialiased when shrinking, like PIL) or
        ``"nearest"``.
    """

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "shorter_side_center_crop"
    crop_pct: float = 1.0
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        size = tuple(int(s) for s in self.size) if not isinstance(self.size, int) else (self.size,) * 2
        if len(size) != 2 or min(size) < 1:
            raise InputError("size", "(h, w) with positive integers", repr(self.size),
                             "pass e.g. size=(224, 224)")
        object.__setattr__(self, "size", size)
        for field_name in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, field_name))
            if len(value) != 3:
                raise InputError(field_name, "three values (R, G, B)", repr(value),
                                 "pass one value per RGB channel")
            object.__setattr__(self, field_name, value)
        if min(self.std) <= 0:
            raise InputError("std", "positive values", repr(self.std), "use the model's std")
        if self.resize not in RESIZE_MODES:
            raise InputError("resize", f"one of {RESIZE_MODES}", repr(self.resize),
                             "pick a supported resize mode")
        if self.interpolation not in INTERPOLATIONS:
            raise InputError("interpolation", f"one of {INTERPOLATIONS}", repr(self.interpolation),
                             "pick a supported interpolation")
        if not 0 < self.crop_pct <= 1:
            raise InputError("crop_pct", "a fraction in (0, 1]", repr(self.crop_pct),
                             "use 1.0 for no crop or timm's value (e.g. 0.875)")

    def key(self) -> str:
        """A stable string identifying this preprocessing, for cache keys.

        The leading version changes when the same settings start giving other pixels: v2,
        torchvision's crop offset and long-side rounding; v3, only for a non-square centre crop,
        timm's ``ResizeKeepRatio`` arithmetic for the cover size (one pixel off for a few image
        shapes before), and for ``"stretch"`` with ``crop_pct < 1``, which crops now (timm's squash
        mode) where it ignored ``crop_pct`` before. Everything else gives the pixels it gave, so
        it keeps v2 and its cached features stay valid.
        """
        fmt = ",".join
        changed = ((self.resize == "shorter_side_center_crop" and self.size[0] != self.size[1])
                   or (self.resize == "stretch" and self.crop_pct != 1.0))
        version = "v3" if changed else "v2"
        return (f"{version}|{self.resize}|{self.size[0]}x{self.size[1]}|crop={self.crop_pct:.6g}"
                f"|{self.interpolation}|mean={fmt(f'{m:.6g}' for m in self.mean)}"
                f"|std={fmt(f'{s:.6g}' for s in self.std)}")

    def __call__(self, images: Sequence[np.ndarray],
                 device: str | torch.device | None = None) -> torch.Tensor:
        """Preprocess ``images`` (each (H, W, C) uint8, C = 1 or 3) into a (b, 3, h, w) float32 batch.

        With ``device`` the pixels go to that device as uint8 and are resized there, one batched
        call per group of same-size images (same numbers as the per-image CPU path up to float
        rounding of the device's kernels); without it, image by image on the CPU.
        """
        self._check_images(images)
        if device is not None:
            pinned = torch.device(device).type == "cuda"
            return self.on_device(self.group(images, pin_memory=pinned), len(images), device)
        batch_b3hw = [self._one(check_image(img, f"images[{i}]")) for i, img in enumerate(images)]
        return torch.stack(batch_b3hw)

    @staticmethod
    def _check_images(images: Any) -> None:
        if isinstance(images, np.ndarray) and images.ndim in (2, 3) or not isinstance(images, Sequence | np.ndarray):
            raise InputError("images", "a sequence of (H, W, C) images",
                             f"{type(images).__name__}", "wrap a single image in a list: [img]")
        if len(images) == 0:
            raise InputError("images", "at least one image", "an empty sequence",
                             "pass one or more images")

    def group(self, images: Sequence[np.ndarray], pin_memory: bool = False
              ) -> list[tuple[list[int], torch.Tensor]]:
        """Host half of the batched path: checked images stacked by shape.

        Each group is written once, by NumPy, straight into its buffer (one plain copy per image:
        torch's stack would open an OpenMP region per image, which costs up to seconds per batch
        on a loaded CPU); with ``pin_memory`` (needs CUDA) that buffer is page-locked, so that the
        copy to the device can be asynchronous.

        Returns
        -------
        list of (positions in ``images``, (n, H, W, C) uint8 tensor), one per distinct (H, W, C),
        in order of first appearance.
        """
        self._check_images(images)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        checked = [check_image(img, f"images[{i}]") for i, img in enumerate(images)]
        for i, img in enumerate(checked):
            by_shape.setdefault(img.shape, []).append(i)
        groups = []
        for shape, idx in by_shape.items():
            stack_nhwc = torch.empty((len(idx), *shape), dtype=torch.uint8, pin_memory=pin_memory)
            np.stack([checked[i] for i in idx], out=stack_nhwc.numpy())
            groups.append((idx, stack_nhwc))
        return groups

    def on_device(self, groups: Sequence[tuple[list[int], Any]], n: int,
                  device: str | torch.device) -> torch.Tensor:
        """Device half of the batched path: ``group``'s output -> (n, 3, h, w) float32 on ``device``.

        The uint8 stacks (tensors, pinned for an asynchronous copy, or numpy arrays) are copied to
        ``device``; each group is scaled to [0, 1], resized in one ``interpolate`` call, cropped or
        padded and normalised, then written to its rows. Nothing here waits for the device: a
        single group in order is returned as is, and the row indices of several groups travel
        through pinned memory (a pageable host-to-device copy would synchronise the stream).
        """
        device = torch.device(device)
        out_b3hw = None
        for idx, stack_nhwc in groups:
            u8 = torch.as_tensor(stack_nhwc).to(device, non_blocking=True)
            # NCHW-contiguous while still uint8 (a quarter of the bytes): the float copy, the
            # resize and the normalisation then run on plain NCHW tensors, no layout conversion
            x_n3hw = u8.permute(0, 3, 1, 2).contiguous().float().div_(255)
            if x_n3hw.shape[1] == 1:
                x_n3hw = x_n3hw.expand(-1, 3, -1, -1)
            done_n3hw = self._geometry(x_n3hw)
            if len(groups) == 1 and list(idx) == list(range(n)):
                return done_n3hw.contiguous()
            if out_b3hw is None:
                out_b3hw = torch.empty(n, 3, *self.size, dtype=torch.float32, device=device)
            rows = torch.tensor(idx, dtype=torch.int64, pin_memory=device.type == "cuda")
            out_b3hw[rows.to(device, non_blocking=True)] = done_n3hw
        assert out_b3hw is not None, "on_device needs at least one group"
        return out_b3hw

    def _one(self, img_hwc: np.ndarray) -> torch.Tensor:
        img_hwc = np.ascontiguousarray(img_hwc)
        if not img_hwc.flags.writeable:  # read-only stimuli (cached, memory-mapped): torch warns
            img_hwc = img_hwc.copy()  # on sharing them, and .float() below copies anyway
        x_13hw = torch.from_numpy(img_hwc).permute(2, 0, 1)[None].float() / 255
        if x_13hw.shape[1] == 1:
            x_13hw = x_13hw.expand(1, 3, *x_13hw.shape[2:])
        return self._geometry(x_13hw)[0]

    def _geometry(self, x_n3hw: torch.Tensor) -> torch.Tensor:
        """Resize, crop or pad and normalise n same-size images in [0, 1]."""
        big_h, big_w = x_n3hw.shape[2:]
        h, w = self.size
        if self.resize in ("stretch", "shorter_side_center_crop"):
            if self.resize == "stretch":  # timm's squash: each side to floor(side / crop_pct)
                new_h, new_w = math.floor(h / self.crop_pct), math.floor(w / self.crop_pct)
            else:
                new_h, new_w = self._cover(big_h, big_w)
            x_n3hw = self._resize(x_n3hw, (new_h, new_w))
            # torchvision's CenterCrop: int(round(margin / 2)), Python's round (half to even)
            top, left = int(round((new_h - h) / 2.0)), int(round((new_w - w) / 2.0))
            return self._normalise(x_n3hw[:, :, top:top + h, left:left + w]).contiguous()
        # longest_side_pad; SAM's ResizeLongestSide rounds half up
        scale = min(h / big_h, w / big_w)
        new_h, new_w = min(h, int(big_h * scale + 0.5)), min(w, int(big_w * scale + 0.5))
        x_n3hw = self._normalise(self._resize(x_n3hw, (new_h, new_w)))
        return F.pad(x_n3hw, (0, w - new_w, 0, h - new_h))

    def _cover(self, big_h: int, big_w: int) -> tuple[int, int]:
        """(h, w) an image is resized to before the centre crop.

        timm's eval transform (``transforms_imagenet_eval``, ``crop_mode="center"``) exactly,
        with ``(sh, sw) = floor(size / crop_pct)`` (equal only for a square size, crop_pct <= 1).
        A square crop: torchvision ``Resize(sh)`` (shorter side ``sh``, the longer
        ``int(sh * long / short)``, truncated). A non-square crop: timm's
        ``ResizeKeepRatio((sh, sw))``, the aspect kept and the image covering (sh, sw):
        ``ratio = min(big_h / sh, big_w / sw)``, sides ``round(big / ratio)``, in that order of
        operations: ``big * (sh / big_h)`` can land on the other side of a half (649 x 236 to
        (224, 160) at 0.875: timm 500 x 182, that way 501 x 182).
        """
        h, w = self.size
        sh, sw = math.floor(h / self.crop_pct), math.floor(w / self.crop_pct)
        if h == w:
            if big_h <= big_w:
                return sh, int(sh * big_w / big_h)
            return int(sh * big_h / big_w), sh
        ratio = min(big_h / sh, big_w / sw)
        return round(big_h / ratio), round(big_w / ratio)

    def _resize(self, x_n3hw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(x_n3hw.shape[2:]) == tuple(size):
            return x_n3hw
        if self.interpolation == "nearest":
            return F.interpolate(x_n3hw, size=size, mode="nearest")
        out = F.interpolate(x_n3hw, size=size, mode=self.interpolation, align_corners=False,
                            antialias=True)
        return out.clamp_(0.0, 1.0)  # bicubic overshoots; PIL clips to the pixel range too

    def _normalise(self, x_n3hw: torch.Tensor) -> torch.Tensor:
        mean, std = _channel_constants(self.mean, self.std, x_n3hw.device)
        return (x_n3hw - mean) / std


#: Named per-channel (mean, std) for ``with_options(..., mean="imagenet")``: ImageNet's (timm,
#: torchvision; Conwell et al. use it for every model), CLIP's, and none (0, 1).
MEAN_STD_PRESETS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}

PREPROCESS_OPTIONS = ("size", "resize", "crop_pct", "interpolation", "mean", "std")
"""Keys of a ``preprocess:`` mapping (config model entries, ``load_model(preprocess=...)``)."""


def with_options(pre: Preprocess, options: dict[str, Any] | Preprocess) -> Preprocess:
    """``pre`` with some settings replaced (the class, e.g. SAM's size check, is kept).

    Parameters
    ----------
    pre : the model's own preprocessing.
    options : a ``Preprocess`` (used as is) or a mapping with keys from ``PREPROCESS_OPTIONS``:
        ``size`` (an int or [h, w]), ``resize`` (``RESIZE_MODES``), ``crop_pct``,
        ``interpolation``, ``mean`` / ``std`` (three numbers on the [0, 1] pixel scale, or a
        name of ``MEAN_STD_PRESETS`` given as ``mean`` alone, e.g. ``mean: imagenet``).
        Grey images are always repeated to RGB (every model takes three channels).
    """
    import dataclasses

    if isinstance(options, Preprocess):
        return options
    if not isinstance(options, dict):
        raise InputError("preprocess", f"a mapping with keys from {PREPROCESS_OPTIONS}",
                         type(options).__name__, "e.g. preprocess: {resize: stretch}")
    unknown = sorted(set(options) - set(PREPROCESS_OPTIONS))
    if unknown:
        raise InputError("preprocess", f"keys from {PREPROCESS_OPTIONS}", repr(unknown),
                         "remove or rename them")
    opts = dict(options)
    if isinstance(opts.get("mean"), str):
        name = opts["mean"]
        if name not in MEAN_STD_PRESETS or "std" in opts:
            raise InputError("preprocess.mean", f"three numbers, or one of "
                             f"{sorted(MEAN_STD_PRESETS)} without std", repr(name),
                             "e.g. mean: imagenet")
        opts["mean"], opts["std"] = MEAN_STD_PRESETS[name]
    if "size" in opts:
        size = opts["size"]
        opts["size"] = (int(size), int(size)) if isinstance(size, int | float) else tuple(size)
    return dataclasses.replace(pre, **opts)
