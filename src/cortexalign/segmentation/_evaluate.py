"""Prompted segmentation accuracy: mIoU of a predictor given point or box prompts from ground truth.

A predictor has ``set_image(image_hwc)`` and ``predict(point=None, box=None) -> mask_hw`` (bool,
the image's size). The full Segment Anything models are in ``_sam`` (segment-anything's
``SamPredictor``) and ``_sam2`` (sam2's ``SAM2ImagePredictor``), around encoders of our registry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.segmentation._datasets import SegmentationSample
from cortexalign.segmentation._prompts import PROMPTS, mask_iou

__all__ = ["Predictor", "SegmentationResult", "evaluate_segmentation"]


class Predictor(Protocol):
    """What ``evaluate_segmentation`` needs of a promptable segmenter (SAM's ``SamPredictor``)."""

    def set_image(self, image_hwc: np.ndarray) -> None:
        """Embed an (h, w, 3) uint8 image for the prompts that follow."""

    def predict(self, point: np.ndarray | None = None,
                box: np.ndarray | None = None) -> np.ndarray:
        """An (h, w) boolean mask for a point (x, y) or a box (x0, y0, x1, y1) prompt."""


@dataclass(frozen=True)
class SegmentationResult:
    """mIoU over instances and the per-instance IoUs (in dataset order)."""

    miou: float
    ious: np.ndarray
    prompt: str
    n_images: int
    image_ids: tuple[str, ...] = field(default=())

    @property
    def n_instances(self) -> int:
        """Number of instances scored."""
        return int(self.ious.size)


def evaluate_segmentation(samples: Iterable[SegmentationSample], predictor: Predictor,
                          prompt: str = "point", jitter: float = 0.0,
                          seed: int = 0) -> SegmentationResult:
    """Prompt ``predictor`` once per ground-truth instance and average the IoUs.

    Parameters
    ----------
    samples : images with instance masks (``read_coco``, ``read_mask_folder``).
    predictor : see the module docstring.
    prompt : a key of ``PROMPTS`` (``"point"``: farthest-from-boundary point; ``"box"``).
    jitter : box noise as a fraction of the box side (boxes only).
    seed : seed of the jitter.
    """
    if prompt not in PROMPTS:
        raise UnknownNameError("prompt", prompt, PROMPTS)
    rng = np.random.default_rng(seed)
    ious, ids = [], []
    for sample in samples:
        ids.append(sample.image_id)
        if not len(sample.masks_nhw):
            continue
        predictor.set_image(sample.image_hwc)
        for gt_hw in sample.masks_nhw:
            pred_hw = np.asarray(predictor.predict(**PROMPTS[prompt](gt_hw, jitter, rng)))
            if pred_hw.shape != gt_hw.shape:
                raise InputError("predictor", f"masks of the image's size {gt_hw.shape}",
                                 f"shape {pred_hw.shape}", "return masks at image resolution")
            ious.append(mask_iou(pred_hw, gt_hw))
    if not ious:
        raise InputError("samples", "at least one image with an instance mask", "none",
                         "check the dataset (crowd and empty annotations are skipped)")
    ious_n = np.asarray(ious, dtype=np.float64)
    return SegmentationResult(float(ious_n.mean()), ious_n, prompt, len(ids), tuple(ids))
