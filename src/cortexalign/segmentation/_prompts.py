"""Prompts from ground-truth masks and the IoU of predicted masks.

Point prompt: the interior pixel farthest from the mask boundary (Euclidean distance transform;
the image border counts as boundary), the rule of SAM's interactive evaluation (Kirillov et al.
2023, sec. 7.1: "the point farthest from the object boundary"). Box prompt: the tight bounding
box, optionally jittered as in SAM's training (noise with a standard deviation of a fraction of
the box side).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

from cortexalign.errors import InputError

__all__ = ["PROMPTS", "point_prompt", "box_prompt", "mask_iou", "mean_iou", "check_mask"]


def check_mask(mask_hw: np.ndarray, what: str = "mask_hw") -> np.ndarray:
    """``mask_hw`` as a 2-D bool array with at least one pixel set."""
    mask_hw = np.asarray(mask_hw)
    if mask_hw.ndim != 2:
        raise InputError(what, "a 2-D (h, w) mask", f"shape {mask_hw.shape}",
                         "pass one instance mask at a time")
    mask_hw = mask_hw.astype(bool)
    if not mask_hw.any():
        raise InputError(what, "a mask with at least one pixel", "an empty mask",
                         "drop empty instances before building prompts")
    return mask_hw


def point_prompt(mask_hw: np.ndarray) -> np.ndarray:
    """The mask pixel farthest from its boundary, as SAM's ``(x, y)`` point (column, row).

    Parameters
    ----------
    mask_hw : (h, w) bool mask of one instance.

    Returns
    -------
    (2,) float array ``[x, y]`` in pixel coordinates of the original image. Ties go to the first
    pixel in row-major order.
    """
    mask_hw = check_mask(mask_hw)
    padded = np.pad(mask_hw, 1)  # the image border is boundary too
    dist_hw = ndimage.distance_transform_edt(padded)[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(dist_hw)), dist_hw.shape)
    return np.array([col, row], dtype=np.float64)


def box_prompt(mask_hw: np.ndarray, jitter: float = 0.0,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """The mask's bounding box ``[x0, y0, x1, y1]`` (pixel edges, so x1 - x0 = width), optionally jittered.

    Parameters
    ----------
    mask_hw : (h, w) bool mask of one instance.
    jitter : standard deviation of Gaussian noise added to each coordinate, as a fraction of the
        box's width (x) or height (y); 0 gives the tight box. Jittered boxes are clipped to the
        image and kept at least one pixel wide.
    rng : random generator for the jitter (``np.random.default_rng(0)`` when ``None``).
    """
    mask_hw = check_mask(mask_hw)
    if not np.isfinite(jitter) or jitter < 0:
        raise InputError("jitter", "a fraction >= 0", repr(jitter), "use e.g. 0.1, or 0 for none")
    rows = np.flatnonzero(mask_hw.any(axis=1))
    cols = np.flatnonzero(mask_hw.any(axis=0))
    box = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)
    if jitter > 0:
        rng = rng if rng is not None else np.random.default_rng(0)
        w, h = box[2] - box[0], box[3] - box[1]
        box = box + rng.normal(0.0, jitter, 4) * np.array([w, h, w, h])
        height, width = mask_hw.shape
        box[[0, 2]] = np.clip(box[[0, 2]], 0, width)
        box[[1, 3]] = np.clip(box[[1, 3]], 0, height)
        box[2] = max(box[2], min(box[0] + 1, width))
        box[3] = max(box[3], min(box[1] + 1, height))
    return box


def mask_iou(pred_hw: np.ndarray, gt_hw: np.ndarray) -> float:
    """Intersection over union of two (h, w) masks; two empty masks give 1."""
    pred_hw, gt_hw = np.asarray(pred_hw, dtype=bool), np.asarray(gt_hw, dtype=bool)
    if pred_hw.shape != gt_hw.shape:
        raise InputError("pred_hw", f"a mask of the ground truth's shape {gt_hw.shape}",
                         f"shape {pred_hw.shape}", "resize the prediction to the image size")
    union = np.logical_or(pred_hw, gt_hw).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred_hw, gt_hw).sum() / union)


def mean_iou(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray]) -> float:
    """Mean over instances of ``mask_iou`` (the mIoU of SAM's prompted evaluation)."""
    if len(preds) != len(gts) or not gts:
        raise InputError("preds", f"one prediction per ground-truth mask ({len(gts)})",
                         f"{len(preds)} predictions", "predict every instance once")
    return float(np.mean([mask_iou(p, g) for p, g in zip(preds, gts, strict=True)]))


def _point(mask_hw: np.ndarray, jitter: float, rng: np.random.Generator) -> dict:
    return {"point": point_prompt(mask_hw)}


def _box(mask_hw: np.ndarray, jitter: float, rng: np.random.Generator) -> dict:
    return {"box": box_prompt(mask_hw, jitter, rng)}


#: prompt kind -> fn(mask_hw, jitter, rng) -> keyword arguments of ``Predictor.predict``
PROMPTS: dict[str, Callable[[np.ndarray, float, np.random.Generator], dict]] = {
    "point": _point,
    "box": _box,
}
