"""Prompted segmentation accuracy for the Segment Anything family: prompts from ground-truth masks,
mIoU, and readers for COCO-style annotations and image + instance-mask folders.

>>> from cortexalign.segmentation import read_mask_folder, evaluate_segmentation
>>> result = evaluate_segmentation(read_mask_folder("data/shapes"), predictor, prompt="box")  # doctest: +SKIP
"""

from cortexalign.segmentation._datasets import (
    SegmentationSample,
    decode_rle,
    polygons_to_mask,
    read_coco,
    read_mask_folder,
)
from cortexalign.segmentation._evaluate import (
    Predictor,
    SamMaskPredictor,
    SegmentationResult,
    build_sam,
    evaluate_segmentation,
)
from cortexalign.segmentation._prompts import (
    PROMPTS,
    box_prompt,
    mask_iou,
    mean_iou,
    point_prompt,
)

__all__ = ["SegmentationSample", "decode_rle", "polygons_to_mask", "read_coco", "read_mask_folder",
           "Predictor", "SamMaskPredictor", "SegmentationResult", "build_sam",
           "evaluate_segmentation", "PROMPTS", "box_prompt", "mask_iou", "mean_iou",
           "point_prompt"]
