"""Task data for alignment-regularised training: an image dataset turned into model input once.

The task dataset is an .npz (``train_images``, ``train_labels``, ``test_images``, ``test_labels``;
e.g. the CIFAR-10 subset) or an image folder (``cortexalign.spiking.load_image_data``), or, when
none is given, scikit-learn's bundled handwritten digits (Alpaydin & Kaynak 1998, UCI; 1,797 8x8
grey images of 10 digits, upsampled and split 1,497 / 300 with a fixed seed) so that a run needs
no download.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cortexalign.models import Preprocess

__all__ = ["TaskData", "load_task_data", "model_input"]

DIGITS_CITATION = ("Alpaydin & Kaynak (1998), Optical recognition of handwritten digits, UCI "
                   "(scikit-learn's load_digits)")


@dataclass
class TaskData:
    """Task images (n, H, W, C) uint8 with (n,) int64 labels, train and test."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    source: str

    @property
    def num_classes(self) -> int:
        """Number of classes (largest label + 1)."""
        return int(max(self.train_y.max(), self.test_y.max()) + 1)


def _digits() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits

    d = load_digits()
    img = np.repeat((d.images / 16.0 * 255).round().astype(np.uint8)[..., None], 3, axis=-1)
    order = np.random.default_rng(0).permutation(len(img))
    tr, te = order[:1497], order[1497:]
    return img[tr], d.target[tr].astype(np.int64), img[te], d.target[te].astype(np.int64)


def load_task_data(path: Path | None, max_train: int | None = None,
                   max_test: int | None = None, image_size: int = 32) -> TaskData:
    """Load the task dataset (see the module docstring); ``image_size`` resizes folders."""
    if path is None:
        tr_x, tr_y, te_x, te_y = _digits()
        source = "sklearn digits"
    else:
        from cortexalign.spiking import load_image_data

        d = load_image_data(path, image_size)
        tr_x, tr_y, te_x, te_y = d.train_x, d.train_y, d.test_x, d.test_y
        source = Path(path).name
    if tr_x.shape[-1] == 1:
        tr_x, te_x = np.repeat(tr_x, 3, axis=-1), np.repeat(te_x, 3, axis=-1)
    return TaskData(tr_x[:max_train], tr_y[:max_train].astype(np.int64), te_x[:max_test],
                    te_y[:max_test].astype(np.int64), source)


def model_input(images, preprocess: Preprocess, chunk: int = 2048) -> torch.Tensor:
    """(n, 3, h, w) float32 CPU input of uint8 images (a sequence or an (n, H, W, C) array)."""
    out = [preprocess(list(images[i:i + chunk]), device="cpu")
           for i in range(0, len(images), chunk)]
    return torch.cat(out)
