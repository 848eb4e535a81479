"""The full SAM 2 image model (Ravi et al. 2024) around our registry's Hiera trunk.

SAM 2's image path, as in sam2 1.1.0 (``SAM2ImagePredictor``): the Hiera trunk gives four stage
maps (strides 4, 8, 16, 32); the FPN neck projects them to ``d_model`` channels, adds the stride-32
level top-down to 16 (nearest-neighbour) and drops it (``scalp=1``); ``no_mem_embed`` is added to
the stride-16 map (a single image has no memory); the prompt encoder and mask decoder then read
that map plus the stride-4 and stride-8 maps (``use_high_res_features_in_sam``). The memory
attention and memory encoder are for video and are left out (their keys are not loaded).

The trunk is the adapter's own timm ``HieraDet`` (the module whose layers and attention maps we
score), wrapped to return its stage maps; everything else is built from the ``sam2`` package with
the options of its configs (identical across ``configs/sam2`` and ``configs/sam2.1``, t/s/b+/l).

Preprocessing is sam2's ``SAM2Transforms``: the image is resized to ``S x S`` (aspect ratio not
kept) and normalised with ImageNet's mean/std (equal to SAM's). The registry's encoder entries
instead pad the longest side, as for SAM; the predictor follows SAM 2's training.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cortexalign.errors import InputError
from cortexalign.models import read_state_dict, seeded
from cortexalign.models.sam import check_generation
from cortexalign.segmentation._predictor import PromptedPredictor

__all__ = ["SAM2_IMAGE_OPTIONS", "SAM2_IMAGE_KEYS", "HieraTrunk", "build_sam2",
           "Sam2MaskPredictor"]

#: ``SAM2Base`` options that shape the image path, from sam2's configs plus the mask-decoder
#: post-processing that ``sam2.build_sam.build_sam2`` adds by default (``apply_postprocessing``).
SAM2_IMAGE_OPTIONS: dict[str, object] = dict(
    backbone_stride=16,
    use_high_res_features_in_sam=True,
    directly_add_no_mem_embed=True,
    multimask_output_in_sam=True,
    iou_prediction_use_sigmoid=True,
    pred_obj_scores=True,
    pred_obj_scores_mlp=True,
    use_multimask_token_for_obj_ptr=True,
    sam_mask_decoder_extra_args=dict(dynamic_multimask_via_stability=True,
                                     dynamic_multimask_stability_delta=0.05,
                                     dynamic_multimask_stability_thresh=0.98),
)

#: the official keys the image path uses, besides the trunk (prefixes, and one parameter)
SAM2_IMAGE_KEYS: tuple[str, ...] = ("image_encoder.neck.", "sam_prompt_encoder.",
                                    "sam_mask_decoder.", "no_mem_embed")

_NECK_KEY = "image_encoder.neck.convs.0.conv.weight"  # (d_model, c_last_stage, 1, 1)


class HieraTrunk(nn.Module):
    """timm's ``HieraDet`` as sam2's ``ImageEncoder.trunk``.

    ``forward`` maps (b, 3, S, S) to one (b, c_i, S/2^(i+2), S/2^(i+2)) map per stage, finest
    first, like sam2's ``Hiera``; ``channel_list`` lists the stage widths coarsest first.
    """

    def __init__(self, hiera: nn.Module):
        super().__init__()
        self.hiera = hiera
        self.channel_list = [int(hiera.blocks[i].dim_out) for i in hiera.stage_ends[::-1]]

    def forward(self, x_bchw: torch.Tensor) -> list[torch.Tensor]:
        """The trunk's intermediate feature maps, one per stage."""
        return self.hiera.forward_intermediates(x_bchw, intermediates_only=True)


def _is_image_key(key: str) -> bool:
    return key.startswith(SAM2_IMAGE_KEYS[:-1]) or key == SAM2_IMAGE_KEYS[-1]


def _load_image_path(model: nn.Module, sd: Mapping[str, torch.Tensor], source: str) -> None:
    """Load the image-path tensors of an official checkpoint; name the first mismatched key."""
    own = {k: v for k, v in model.state_dict().items() if _is_image_key(k)}
    given = {k: v for k, v in sd.items() if _is_image_key(k)}
    missing = [k for k in own if k not in given]
    unexpected = [k for k in given if k not in own]
    if missing or unexpected:
        raise InputError("checkpoint", "a SAM 2 checkpoint with the image path's keys "
                         f"({', '.join(SAM2_IMAGE_KEYS)})",
                         f"{source} with {len(missing)} missing keys (first "
                         f"{missing[0] if missing else 'none'!r}) and {len(unexpected)} unexpected "
                         f"keys (first {unexpected[0] if unexpected else 'none'!r})",
                         "pass the official sam2 checkpoint ({'model': state_dict}) of this size")
    for k, v in own.items():
        if tuple(given[k].shape) != tuple(v.shape):
            raise InputError("checkpoint", f"{k!r} of shape {tuple(v.shape)}",
                             f"shape {tuple(given[k].shape)} in {source}",
                             "load the checkpoint with the trunk of the same size "
                             "(sam2_hiera_t/s/b_plus/l, tiny=False)")
    model.load_state_dict(given, strict=False)


def build_sam2(adapter, checkpoint: str | Path | None = None) -> nn.Module:
    """sam2's ``SAM2Base`` (image path) with ``adapter``'s Hiera trunk.

    Parameters
    ----------
    adapter : a ``sam2_hiera_*`` ``SamAdapter`` (``load_model``); its module becomes the trunk
        (shared, not copied).
    checkpoint : an official sam2 checkpoint (``{"model": state_dict}``, read with
        ``weights_only=True``) whose FPN neck, prompt encoder, mask decoder and ``no_mem_embed``
        are loaded; its ``d_model`` is read from the neck. Without one they are randomly
        initialised (seeded) with ``d_model = 256``. The trunk always comes from ``adapter``: load
        it from the same file (``load_model(name, weights=checkpoint)``) for the official model.

    Returns
    -------
    ``SAM2Base`` in eval mode on the adapter's device; ``image_size`` is the adapter's input size.
    Its ``memory_attention`` / ``memory_encoder`` are empty (image prediction only).
    """
    from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine
    from sam2.modeling.sam2_base import SAM2Base

    sd, source = None, ""
    if checkpoint is not None:
        sd, source = read_state_dict(checkpoint), repr(str(checkpoint))
        check_generation("sam2", sd, source)
    d_model = int(sd[_NECK_KEY].shape[0]) if sd is not None and _NECK_KEY in sd else 256
    trunk = HieraTrunk(adapter.module)
    with seeded(0):
        neck = FpnNeck(PositionEmbeddingSine(num_pos_feats=d_model, normalize=True, scale=None,
                                             temperature=10000),
                       d_model=d_model, backbone_channel_list=trunk.channel_list,
                       fpn_top_down_levels=[2, 3], fpn_interp_model="nearest")
        model = SAM2Base(ImageEncoder(trunk=trunk, neck=neck, scalp=1),
                         memory_attention=nn.Identity(), memory_encoder=nn.Identity(),
                         image_size=adapter.img_size, **SAM2_IMAGE_OPTIONS)
    if sd is not None:
        _load_image_path(model, sd, source)
    return model.to(adapter.device).eval()


class Sam2MaskPredictor(PromptedPredictor):
    """``Predictor`` over sam2's ``SAM2ImagePredictor`` (point: best of three masks; box: one).

    Parameters
    ----------
    model : a ``SAM2Base`` (``build_sam2``, or sam2's own ``build_sam2``) of any input size
        ``S``; the predictor's feature sizes (S/4, S/8, S/16) follow it (sam2 fixes them for 1024).
    """

    def __init__(self, model: nn.Module):
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        self.predictor = SAM2ImagePredictor(model, mask_threshold=self.mask_threshold)
        size, stride = int(model.image_size), int(model.backbone_stride)
        self.predictor._bb_feat_sizes = [(size * 4 // stride,) * 2, (size * 2 // stride,) * 2,
                                         (size // stride,) * 2]

    def _set_image(self, image_hwc: np.ndarray) -> None:
        self.predictor.set_image(image_hwc)
