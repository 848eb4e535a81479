"""The prompt-to-mask contract shared by the full SAM models (segment-anything and SAM 2).

Both official predictors (``SamPredictor``, ``SAM2ImagePredictor``) take the same ``predict``
arguments, so one class turns our prompts into their calls: a single point is ambiguous, so it
asks for three masks and keeps the one with the highest predicted IoU (Kirillov et al. 2023, sec.
3); a box asks for one mask. Masks are the logits thresholded at 0, the official threshold.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from cortexalign.errors import InputError
from cortexalign.stimuli import check_image

__all__ = ["PromptedPredictor", "check_prompt"]


def check_prompt(point: np.ndarray | None, box: np.ndarray | None,
                 image_hw: tuple[int, int]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Exactly one of ``point`` (2,) ``[x, y]`` or ``box`` (4,) ``[x0, y0, x1, y1]``, finite, as float32.

    Coordinates are pixels of the original image; a point must lie on it, a box must have
    ``x0 < x1`` and ``y0 < y1``.
    """
    if (point is None) == (box is None):
        raise InputError("point, box", "exactly one prompt: point=[x, y] or box=[x0, y0, x1, y1]",
                         "both" if point is not None else "neither",
                         "pass one prompt per call (the evaluation prompts each instance once)")
    h, w = image_hw
    if point is not None:
        point = np.asarray(point, dtype=np.float32)
        if point.shape != (2,) or not np.isfinite(point).all() or not (
                0 <= point[0] <= w and 0 <= point[1] <= h):
            raise InputError("point", f"a finite [x, y] on the {h} x {w} image",
                             f"{np.asarray(point).tolist()!r}", "pass one (column, row) pixel")
        return point, None
    box = np.asarray(box, dtype=np.float32)
    if box.shape != (4,) or not np.isfinite(box).all() or not (
            box[0] < box[2] and box[1] < box[3]):
        raise InputError("box", "a finite [x0, y0, x1, y1] with x0 < x1 and y0 < y1",
                         f"{np.asarray(box).tolist()!r}", "pass the box in pixel coordinates")
    return None, box


class PromptedPredictor(ABC):
    """``Predictor`` (``set_image``, ``predict``) over an official SAM-family predictor.

    Subclasses set ``self.predictor`` (whose ``predict`` takes ``point_coords``, ``point_labels``,
    ``box``, ``multimask_output``, ``return_logits``) and implement ``_set_image``.
    """

    predictor: Any
    mask_threshold: float = 0.0

    @abstractmethod
    def _set_image(self, image_hwc: np.ndarray) -> None:
        """Hand a checked (h, w, 3) uint8 RGB image to ``self.predictor``."""

    def set_image(self, image_hwc: np.ndarray) -> None:
        """Encode one (h, w, 3) uint8 RGB image (grayscale is repeated to three channels)."""
        img = check_image(image_hwc, "image_hwc")
        if img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)
        self._set_image(np.ascontiguousarray(img))
        self._image_hw = img.shape[:2]

    def predict_logits(self, point: np.ndarray | None = None,
                       box: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mask logits (k, h, w) at the image's size and predicted IoUs (k,): k = 3 for a point, 1 for a box."""
        image_hw = getattr(self, "_image_hw", None)
        if image_hw is None:
            raise InputError("predict", "a call after set_image(image_hwc)", "no image set",
                             "call set_image first")
        point, box = check_prompt(point, box, image_hw)
        if point is not None:
            kwargs = dict(point_coords=point[None], point_labels=np.ones(1, dtype=np.int64),
                          multimask_output=True)
        else:
            kwargs = dict(box=box, multimask_output=False)
        logits_khw, iou_k, _ = self.predictor.predict(return_logits=True, **kwargs)
        return np.asarray(logits_khw, dtype=np.float32), np.asarray(iou_k, dtype=np.float32)

    def predict(self, point: np.ndarray | None = None,
                box: np.ndarray | None = None) -> np.ndarray:
        """The (h, w) bool mask of the prompt (the best of three for a point)."""
        logits_khw, iou_k = self.predict_logits(point, box)
        return logits_khw[int(np.argmax(iou_k))] > self.mask_threshold
