"""The full Segment Anything models around our registry's encoders, one builder per family.

``build_sam(adapter)`` dispatches on the adapter's family through ``SAM_BUILDERS``: the
segment-anything generation (SAM ViT-B/L/H, MobileSAM, EfficientSAM, the EdgeSAM-style RepViT)
gets segment-anything's ``Sam`` (Kirillov et al. 2023), SAM 2 gets sam2's ``SAM2Base`` (Ravi et
al. 2024, see ``_sam2``). ``PREDICTORS`` wraps each in its official predictor.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cortexalign.errors import InputError
from cortexalign.models import load_model, load_state_dict_checked, read_state_dict
from cortexalign.models.sam import check_generation
from cortexalign.segmentation._predictor import PromptedPredictor
from cortexalign.segmentation._sam2 import Sam2MaskPredictor, build_sam2

__all__ = ["SAM_BUILDERS", "PREDICTORS", "build_sam", "build_sam_v1", "SamMaskPredictor",
           "sam_predictor", "load_sam_predictor"]


class _Encoder(nn.Module):
    """Our encoder as segment-anything's ``image_encoder`` (it reads ``img_size``)."""

    def __init__(self, module: nn.Module, img_size: int):
        super().__init__()
        self.encoder = module
        self.img_size = img_size

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        return self.encoder.forward_features(x_bchw)


def build_sam_v1(adapter, checkpoint: str | Path | None = None) -> nn.Module:
    """segment-anything's ``Sam`` with ``adapter``'s encoder (SAM ViT, MobileSAM, EfficientSAM, RepViT).

    The prompt encoder and mask decoder follow ``build_sam`` (256 channels, two-way transformer of
    depth 2) when the encoder's embedding has 256 channels, and a small version (depth 1) for tiny
    test encoders. ``checkpoint``: an official SAM-style file whose ``prompt_encoder.*`` and
    ``mask_decoder.*`` tensors are loaded (read with ``weights_only=True``); otherwise they stay
    randomly initialised.
    """
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    sd, source = None, ""
    if checkpoint is not None:  # read and checked before anything is built
        sd, source = read_state_dict(checkpoint), repr(str(checkpoint))
        check_generation(adapter.family, sd, source)
    img = adapter.img_size
    with torch.inference_mode():
        emb = adapter.encode(torch.zeros(1, 3, img, img, device=adapter.device))
    dim, grid = int(emb.shape[1]), tuple(emb.shape[2:])
    full = dim == 256
    sam = Sam(
        image_encoder=_Encoder(adapter.module, img),
        prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=grid,
                                     input_image_size=(img, img), mask_in_chans=16 if full else 4),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2 if full else 1, embedding_dim=dim,
                                          mlp_dim=2048 if full else 2 * dim,
                                          num_heads=8 if full else 2),
            transformer_dim=dim, iou_head_depth=3 if full else 1,
            iou_head_hidden_dim=256 if full else dim),
    )
    if sd is not None:
        for part in ("prompt_encoder", "mask_decoder"):
            sub = {k[len(part) + 1:]: v for k, v in sd.items() if k.startswith(part + ".")}
            load_state_dict_checked(getattr(sam, part), sub, f"{part}.* of {source}")
    return sam.to(adapter.device).eval()


class SamMaskPredictor(PromptedPredictor):
    """``Predictor`` over segment-anything's ``SamPredictor`` (point: best of three; box: one)."""

    def __init__(self, sam: nn.Module):
        from segment_anything import SamPredictor

        self.predictor = SamPredictor(sam)

    def _set_image(self, image_hwc: np.ndarray) -> None:
        self.predictor.set_image(image_hwc, image_format="RGB")


#: adapter family -> builder(adapter, checkpoint) -> the full model
SAM_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "sam": build_sam_v1,
    "mobile_sam": build_sam_v1,
    "efficient_sam": build_sam_v1,
    "edge_sam": build_sam_v1,
    "sam2": build_sam2,
}

#: adapter family -> predictor class around the model ``SAM_BUILDERS`` builds
PREDICTORS: dict[str, Callable[[nn.Module], PromptedPredictor]] = {
    "sam": SamMaskPredictor,
    "mobile_sam": SamMaskPredictor,
    "efficient_sam": SamMaskPredictor,
    "edge_sam": SamMaskPredictor,
    "sam2": Sam2MaskPredictor,
}


def _family(adapter) -> str:
    family = getattr(adapter, "family", None)
    if family not in SAM_BUILDERS:
        raise InputError("adapter", "an encoder of the Segment Anything family "
                         f"(load_model of an entry of family {', '.join(SAM_BUILDERS)})",
                         repr(getattr(adapter, "model_id", type(adapter).__name__)),
                         "load e.g. load_model('sam_vit_b', ...) or load_model('sam2_hiera_t', ...)")
    return family


def build_sam(adapter, checkpoint: str | Path | None = None) -> nn.Module:
    """The full SAM model (image encoder, prompt encoder, mask decoder) around ``adapter``.

    Parameters
    ----------
    adapter : a ``SamAdapter`` from ``load_model`` (any entry of ``SAM_BUILDERS``' families).
    checkpoint : the official checkpoint whose prompt encoder and mask decoder (SAM 2: also the
        FPN neck and ``no_mem_embed``) are loaded; ``None`` leaves them randomly initialised. A
        checkpoint of the other generation (SAM 2 vs segment-anything) is refused by name.

    Returns
    -------
    segment-anything's ``Sam`` or sam2's ``SAM2Base``, in eval mode on the adapter's device.
    """
    return SAM_BUILDERS[_family(adapter)](adapter, checkpoint)


def sam_predictor(adapter, checkpoint: str | Path | None = None) -> PromptedPredictor:
    """``build_sam(adapter, checkpoint)`` wrapped in its family's predictor (``PREDICTORS``)."""
    family = _family(adapter)
    return PREDICTORS[family](SAM_BUILDERS[family](adapter, checkpoint))


def load_sam_predictor(name: str, weights: str | Path | None = None,
                       **load_kwargs: Any) -> PromptedPredictor:
    """The predictor of a registry entry, encoder and heads from the same official checkpoint.

    >>> predictor = load_sam_predictor("sam2_hiera_t", weights="sam2_hiera_tiny.pt")  # doctest: +SKIP
    >>> evaluate_segmentation(read_coco("ann.json", "images"), predictor, "box")  # doctest: +SKIP

    ``load_kwargs`` go to ``load_model`` (``device``, ``tiny``, ``untrained``...).
    """
    adapter = load_model(name, weights=weights, **load_kwargs)
    return sam_predictor(adapter, weights)
