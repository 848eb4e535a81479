"""The Segment Anything family: SAM ViT-B/L/H, SAM 2 Hiera, MobileSAM, EfficientSAM, EdgeSAM;
official-checkpoint converters and SAM preprocessing.

>>> from cortexalign.models import load_model
>>> sam = load_model("sam_vit_b", weights="sam_vit_b_01ec64.pth")   # doctest: +SKIP
>>> acts = sam.forward_layers(sam.preprocess(images), ["blocks.2", "neck"])  # doctest: +SKIP
"""

from cortexalign.models.sam._adapter import (
    SAM_PIXEL_MEAN,
    SAM_PIXEL_STD,
    SamAdapter,
    SamPreprocess,
    sam_preprocess,
)
from cortexalign.models.sam._attention import SamFusedAttention, use_fused_attention
from cortexalign.models.sam._configs import SAM_CONFIGS, SamConfig
from cortexalign.models.sam._convert import (
    CONVERTERS,
    check_generation,
    checkpoint_generation,
    convert_state_dict,
)
from cortexalign.models.sam._encoders import TinyVitSam, sam_neck
from cortexalign.models.sam._entries import BUILDERS, build_sam_family, sam_layer_paths
from cortexalign.models.sam._repvit import EdgeSamRepVit

__all__ = ["SAM_CONFIGS", "SamConfig", "CONVERTERS", "convert_state_dict", "check_generation",
           "checkpoint_generation", "BUILDERS",
           "build_sam_family", "sam_layer_paths", "SamAdapter", "SamPreprocess", "sam_preprocess",
           "SAM_PIXEL_MEAN", "SAM_PIXEL_STD", "TinyVitSam", "EdgeSamRepVit", "sam_neck",
           "SamFusedAttention", "use_fused_attention"]
