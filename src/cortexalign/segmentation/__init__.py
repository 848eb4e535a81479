"""Prompted segmentation accuracy for the Segment Anything family: prompts from ground-truth masks,
mIoU, and readers for COCO-style annotations and image + instance-mask folders.

>>> from cortexalign.segmentation import read_mask_folder, evaluate_segmentation
>>> predictor = load_sam_predictor("sam2_hiera_t", weights="sam2_hiera_tiny.pt")  # doctest: +SKIP
>>> result = evaluate_segmentation(read_mask_folder("data/shapes"), predictor, prompt="box")  # doctest: +SKIP
"""

from cortexalign.segmentation._datasets import (
    SegmentationSample,
    check_coco,
    decode_rle,
    polygons_to_mask,
    read_coco,
    read_mask_folder,
)
from cortexalign.segmentation._evaluate import (
    Predictor,
    SegmentationResult,
    evaluate_segmentation,
)
from cortexalign.segmentation._predictor import PromptedPredictor
from cortexalign.segmentation._prompts import (
    PROMPTS,
    box_prompt,
    mask_iou,
    mean_iou,
    point_prompt,
)
from cortexalign.segmentation._sam import (
    PREDICTORS,
    SAM_BUILDERS,
    SamMaskPredictor,
    build_sam,
    build_sam_v1,
    load_sam_predictor,
    sam_predictor,
)
from cortexalign.segmentation._sam2 import (
    SAM2_IMAGE_KEYS,
    SAM2_IMAGE_OPTIONS,
    HieraTrunk,
    Sam2MaskPredictor,
    build_sam2,
)

__all__ = ["SegmentationSample", "check_coco", "decode_rle", "polygons_to_mask", "read_coco", "read_mask_folder",
           "Predictor", "PromptedPredictor", "SamMaskPredictor", "Sam2MaskPredictor",
           "SegmentationResult", "build_sam", "build_sam_v1", "build_sam2", "sam_predictor",
           "load_sam_predictor", "SAM_BUILDERS", "PREDICTORS", "SAM2_IMAGE_OPTIONS",
           "SAM2_IMAGE_KEYS", "HieraTrunk", "evaluate_segmentation", "PROMPTS", "box_prompt", "mask_iou", "mean_iou",
           "point_prompt"]
