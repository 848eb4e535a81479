"""Image encoders of the Segment Anything family, built from timm parts.

Every encoder maps a (b, 3, S, S) batch to SAM's image embedding (b, 256, S/16, S/16) and names its
layers the same way across the family: ``blocks.i`` for plain and hierarchical transformers
(SAM ViT, EfficientSAM, SAM 2 Hiera), ``stages.i.blocks.j`` for stage-wise networks (TinyViT,
and EdgeSAM's RepViT in ``_repvit``), and ``neck`` for the convolutional neck that produces the embedding (absent from SAM 2,
whose FPN neck is not part of the trunk we load).

- SAM ViT-B/L/H (Kirillov et al. 2023): timm ``samvit_*`` with LayerNorm eps 1e-6 as in
  ``segment_anything.build_sam``.
- EfficientSAM ViT-T/S (Xiong et al. 2024): a plain ViT with global attention in every block, an
  absolute position embedding and SAM's neck, i.e. timm's ``VisionTransformerSAM`` without windows
  or relative positions.
- SAM 2 Hiera (Ravi et al. 2024): timm ``sam2_hiera_*`` (``HieraDet``), trunk only.
- MobileSAM (Zhang et al. 2023): TinyViT-5M at 1024 px whose last patch merging keeps stride 1,
  so the last stage runs at 64 x 64 like MobileSAM's, followed by SAM's neck.
- EdgeSAM (Zhou et al. 2023): its own RepViT-M1 in the checkpoints' layout, see ``_repvit``.
"""

from __future__ import annotations

from functools import partial

import timm
import torch
from timm.layers import LayerNorm2d
from timm.models.tiny_vit import TinyVit
from torch import nn

from cortexalign.models.sam._attention import use_fused_attention

__all__ = ["sam_neck", "TinyVitSam", "build_samvit", "build_hiera", "build_tiny_vit_sam"]


def sam_neck(in_chans: int, out_chans: int = 256) -> nn.Sequential:
    """SAM's neck: 1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d (no biases on the convs)."""
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, kernel_size=1, bias=False),
        LayerNorm2d(out_chans, eps=1e-6),
        nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
        LayerNorm2d(out_chans, eps=1e-6),
    )


def build_samvit(arch: str, **kwargs) -> nn.Module:
    """timm ``samvit_*`` (or ``VisionTransformerSAM`` options for EfficientSAM) without a classifier,
    its attention switched to ``SamFusedAttention`` (same maths, fused SDPA kernels on CUDA)."""
    kwargs.setdefault("norm_layer", partial(nn.LayerNorm, eps=1e-6))
    return use_fused_attention(timm.create_model(arch, pretrained=kwargs.pop("pretrained", False),
                                                 num_classes=0, **kwargs))


def build_hiera(arch: str, **kwargs) -> nn.Module:
    """timm ``sam2_hiera_*`` without a classifier (its ``head.norm`` is not used by the trunk)."""
    kwargs.pop("img_size", None)  # Hiera is resolution-agnostic; the size lives in Preprocess
    return timm.create_model(arch, pretrained=kwargs.pop("pretrained", False), num_classes=0,
                             **kwargs)


class TinyVitSam(TinyVit):
    """TinyViT as MobileSAM's image encoder: last patch merging at stride 1, then SAM's neck.

    ``forward`` returns the image embedding (b, neck_chans, S/16, S/16).
    """

    def __init__(self, neck_chans: int = 256, **kwargs):
        super().__init__(num_classes=0, **kwargs)
        last = self.stages[-1].downsample
        last.conv2.conv.stride = (1, 1)  # MobileSAM's PatchMerging uses stride 1 for 320 channels
        self.neck = sam_neck(self.num_features, neck_chans)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The image embedding: patch embedding, stages, neck."""
        return self.neck(self.stages(self.patch_embed(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``forward_features`` (the image encoder has no head)."""
        return self.forward_features(x)


def build_tiny_vit_sam(arch: str, **kwargs) -> nn.Module:
    """MobileSAM's TinyViT (``arch`` is informational; dims come from ``kwargs``)."""
    kwargs.pop("pretrained", None)
    kwargs.pop("img_size", None)  # TinyViT is resolution-agnostic; the size lives in Preprocess
    return TinyVitSam(**kwargs)
