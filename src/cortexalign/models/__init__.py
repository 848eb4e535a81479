"""Models: a registry of loaders and one feature-extraction contract (``ModelAdapter``).

>>> from cortexalign.models import load_model
>>> model = load_model("efficientnet_lite0")                     # doctest: +SKIP
>>> x_bchw = model.preprocess(images)                            # doctest: +SKIP
>>> acts = model.forward_layers(x_bchw, ["blocks.4", "logits"])  # doctest: +SKIP
"""

# imported for their registrations (sam: the Segment Anything family)
from cortexalign.models import (  # noqa: F401
    _efficientnet_lite0,
    _gabor,
    _pixels,
    _spiking,
    _timm,
    _torchvision,
    sam,
)
from cortexalign.models._base import ModelAdapter, default_layer_paths
from cortexalign.models._efficientnet_lite0 import convert_lite0_state_dict
from cortexalign.models._gabor import GaborConfig, GaborV1, gabor_kernel
from cortexalign.models._hooks import capture_outputs, eval_mode, seeded
from cortexalign.models._hub import timm_hub_overlay
from cortexalign.models._preprocess import MEAN_STD_PRESETS, Preprocess, with_options
from cortexalign.models._registry import (
    MODELS,
    LoadSpec,
    ModelInfo,
    list_models,
    load_architecture,
    load_model,
)
from cortexalign.models._timm import TimmAdapter
from cortexalign.models._weights import (
    load_state_dict_checked,
    read_state_dict,
    state_dict_digest,
)

__all__ = [
    "MODELS", "load_model", "load_architecture", "list_models", "timm_hub_overlay", "ModelInfo", "LoadSpec",
    "ModelAdapter", "TimmAdapter", "Preprocess", "with_options", "MEAN_STD_PRESETS",
    "default_layer_paths",
    "GaborV1", "GaborConfig", "gabor_kernel", "convert_lite0_state_dict",
    "capture_outputs", "eval_mode", "seeded",
    "read_state_dict", "load_state_dict_checked", "state_dict_digest",
]
