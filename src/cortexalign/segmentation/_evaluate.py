"""Prompted segmentation accuracy: mIoU of a predictor given point or box prompts from ground truth.

A predictor has ``set_image(image_hwc)`` and ``predict(point=None, box=None) -> mask_hw`` (bool,
the image's size). ``SamMaskPredictor`` is the full Segment Anything model (segment-anything's
``SamPredictor``: image encoder, prompt encoder, mask decoder) around any encoder of our registry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.segmentation._datasets import SegmentationSample
from cortexalign.segmentation._prompts import PROMPTS, mask_iou

__all__ = ["Predictor", "SegmentationResult", "evaluate_segmentation", "SamMaskPredictor",
           "build_sam"]


class Predictor(Protocol):
    def set_image(self, image_hwc: np.ndarray) -> None: ...

    def predict(self, point: np.ndarray | None = None,
                box: np.ndarray | None = None) -> np.ndarray: ...


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


class _Encoder(nn.Module):
    """Our encoder as segment-anything's ``image_encoder`` (it reads ``img_size``)."""

    def __init__(self, module: nn.Module, img_size: int):
        super().__init__()
        self.encoder = module
        self.img_size = img_size

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        return self.encoder.forward_features(x_bchw)


def build_sam(adapter, checkpoint: str | Path | None = None) -> nn.Module:
    """segment-anything's ``Sam`` with ``adapter``'s encoder (a ``SamAdapter``, not SAM 2).

    The prompt encoder and mask decoder follow ``build_sam`` (256 channels, two-way transformer of
    depth 2) when the encoder's embedding has 256 channels, and a small version (depth 1) for tiny
    test encoders. ``checkpoint``: an official SAM-style file whose ``prompt_encoder.*`` and
    ``mask_decoder.*`` tensors are loaded (read with ``weights_only=True``); otherwise they stay
    randomly initialised.
    """
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    from cortexalign.models import load_state_dict_checked, read_state_dict

    if getattr(adapter, "family", None) not in ("sam", "mobile_sam", "efficient_sam", "edge_sam"):
        raise InputError("adapter", "a SAM-family encoder with a 256-channel-style neck "
                         "(sam_vit_*, mobile_sam, efficient_sam_*, edge_sam_*)",
                         repr(getattr(adapter, "model_id", adapter)),
                         "SAM 2 needs the sam2 package's own predictor")
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
    if checkpoint is not None:
        sd = read_state_dict(checkpoint)
        for part in ("prompt_encoder", "mask_decoder"):
            sub = {k[len(part) + 1:]: v for k, v in sd.items() if k.startswith(part + ".")}
            load_state_dict_checked(getattr(sam, part), sub, f"{part}.* of {str(checkpoint)!r}")
    return sam.to(adapter.device).eval()


class SamMaskPredictor:
    """``Predictor`` over segment-anything's ``SamPredictor``.

    A single point is ambiguous, so the point prompt asks for SAM's three masks and keeps the one
    with the highest predicted IoU (SAM's convention); a box asks for one mask.
    """

    def __init__(self, sam: nn.Module):
        from segment_anything import SamPredictor

        self.predictor = SamPredictor(sam)

    def set_image(self, image_hwc: np.ndarray) -> None:
        self.predictor.set_image(np.ascontiguousarray(image_hwc), image_format="RGB")

    def predict(self, point: np.ndarray | None = None,
                box: np.ndarray | None = None) -> np.ndarray:
        if point is not None:
            masks_khw, scores_k, _ = self.predictor.predict(
                point_coords=np.asarray(point, dtype=np.float32)[None],
                point_labels=np.ones(1, dtype=np.int64), multimask_output=True)
            return masks_khw[int(np.argmax(scores_k))]
        masks_khw, _, _ = self.predictor.predict(box=np.asarray(box, dtype=np.float32),
                                                 multimask_output=False)
        return masks_khw[0]
