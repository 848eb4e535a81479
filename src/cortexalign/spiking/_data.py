"""Image-classification data for SNN training: npz files and image-folder layouts.

npz: arrays ``train_images`` (n, H, W, C) uint8, ``train_labels`` (n,), ``test_images``,
``test_labels`` (the CIFAR-10 subset in ../shared/data/cifar10_subset). Folders: the
ImageNet/torchvision layout ``root/train/<class>/*.png`` and ``root/val/<class>/...``
(or ``test/``); images are resized to ``image_size``. Pickled CIFAR batches are not read
(we never unpickle): convert them to npz first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cortexalign.errors import InputError

__all__ = ["ImageData", "load_image_data", "augment_batch", "to_input"]

# CIFAR-10 channel statistics (also reasonable for natural images at large).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


@dataclass
class ImageData:
    """Train/test images (n, H, W, C) uint8 with integer labels (n,)."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray

    @property
    def num_classes(self) -> int:
        """Number of classes (largest label + 1)."""
        return int(max(self.train_y.max(), self.test_y.max()) + 1)


def _check(x: np.ndarray, y: np.ndarray, split: str, path: Path) -> None:
    if x.ndim != 4 or x.dtype != np.uint8 or x.shape[-1] not in (1, 3):
        raise InputError(f"{split}_images", "uint8 images (n, H, W, 1 or 3)",
                         f"{x.dtype} of shape {x.shape} in {str(path)!r}", "store images as uint8 NHWC")
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise InputError(f"{split}_labels", f"{len(x)} non-negative integer labels",
                         f"{y.dtype} of shape {y.shape}", "store one class index per image")


def _load_npz(path: Path) -> ImageData:
    with np.load(path, allow_pickle=False) as z:
        missing = {"train_images", "train_labels", "test_images", "test_labels"} - set(z.files)
        if missing:
            raise InputError("data", "an npz with train_images, train_labels, test_images, test_labels",
                             f"{str(path)!r} without {sorted(missing)}", "rename the arrays")
        d = ImageData(z["train_images"], z["train_labels"].astype(np.int64),
                      z["test_images"], z["test_labels"].astype(np.int64))
    _check(d.train_x, d.train_y, "train", path)
    _check(d.test_x, d.test_y, "test", path)
    return d


def _load_split(root: Path, classes: list[str], size: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    from cortexalign.stimuli import IMAGE_SUFFIXES, read_image

    xs, ys = [], []
    for ci, c in enumerate(classes):
        for f in sorted((root / c).iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                im = Image.fromarray(read_image(f)).convert("RGB").resize((size, size))
                xs.append(np.asarray(im))
                ys.append(ci)
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def _load_folder(path: Path, image_size: int) -> ImageData:
    test_dir = next((path / s for s in ("val", "test") if (path / s).is_dir()), None)
    if not (path / "train").is_dir() or test_dir is None:
        raise InputError("data", "a folder with train/<class>/ and val/<class>/ (or test/)",
                         repr(str(path)), "arrange the images in the ImageNet layout")
    classes = sorted(p.name for p in (path / "train").iterdir() if p.is_dir())
    tr = _load_split(path / "train", classes, image_size)
    te = _load_split(test_dir, classes, image_size)
    return ImageData(*tr, *te)


def load_image_data(path: str | Path, image_size: int = 32) -> ImageData:
    """Load an npz file or an image folder (see the module docstring)."""
    p = Path(path)
    if p.is_file() and p.suffix == ".npz":
        return _load_npz(p)
    if p.is_dir():
        return _load_folder(p, image_size)
    raise InputError("data", "an .npz file or an image folder", repr(str(path)),
                     "check the path (../shared/data/cifar10_subset/cifar10_subset.npz)")


def augment_batch(x_bhwc: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop (zero padding ``pad``) and horizontal flip of uint8 (B, H, W, C) images."""
    B, H, W, _ = x_bhwc.shape
    padded = torch.nn.functional.pad(x_bhwc, (0, 0, pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (B,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (B,), generator=generator)
    flip = torch.rand(B, generator=generator) < 0.5
    out = torch.empty_like(x_bhwc)
    for i in range(B):
        crop = padded[i, dy[i]:dy[i] + H, dx[i]:dx[i] + W]
        out[i] = crop.flip(1) if flip[i] else crop
    return out


def to_input(x_bhwc: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, C) -> normalised float (B, C, H, W)."""
    x = x_bhwc.permute(0, 3, 1, 2).float() / 255.0
    c = x.shape[1]
    mean = torch.tensor(MEAN[:c] if c == 3 else MEAN[:1], device=x.device).view(1, c, 1, 1)
    std = torch.tensor(STD[:c] if c == 3 else STD[:1], device=x.device).view(1, c, 1, 1)
    return (x - mean) / std
