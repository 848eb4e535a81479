"""EdgeSAM's image encoder (Zhou et al. 2023), in the layout of its released checkpoints.

EdgeSAM distils SAM's ViT-H encoder into a RepViT (Wang et al. 2024) in the form of RepViT's
first release, which differs from timm's ``RepVit``: the stride-2 transition is a block of its
own (depthwise 3x3 conv at stride 2, optional squeeze-excite, 1x1 conv to the new width, then a
residual 1x1-GELU-1x1 channel mixer), and the 1x1 branch of the re-parameterisable depthwise
conv carries a BatchNorm. All layers sit in one flat list, ``features.0`` (the stem: two 3x3
stride-2 conv+BN with a GELU between, output stride 4) to ``features.N``, so the checkpoint keys
(``image_encoder.features.5.token_mixer.0.conv.c.weight``...) load here unchanged.

RepViT-M1 as EdgeSAM builds it (``build_edge_sam``: ``RepViT(arch="m1", fuse=True)``): widths
48, 96, 192, 384; 3, 4, 16 and 3 blocks per stage (the first block of stages 1-3 is the
stride-2 transition), so stage 2 ends at output stride 16 and stage 3 at 32. Squeeze-excite
(timm's ``SqueezeExcite``, ratio 0.25) sits in every other non-transition block of a stage,
starting with the first and never in its last block. GELU everywhere; BatchNorm in eval mode.

The fusion that gives SAM's 64 x 64 embedding at 1024 px: ``fuse_stage2`` (1x1 conv, no bias,
192 -> 256) of stage 2's output, plus ``fuse_stage3`` (1x1 conv, no bias, 384 -> 256, then x2
upsampling, bicubic with ``align_corners=False`` as in EdgeSAM's default; the ONNX export uses
bilinear), then SAM's neck (``neck.0..3``: 1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d).

Layer names follow the family (``stages.i.blocks.j``, ``fuse_stage2``, ``fuse_stage3``,
``neck``) and point to the flat modules (``stages.2.blocks.15`` is ``features.23`` in M1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import SqueezeExcite
from torch import nn

from cortexalign.errors import InputError
from cortexalign.models.sam._encoders import sam_neck

__all__ = ["EdgeSamRepVit", "build_edge_sam_repvit", "EDGE_SAM_M1"]

EDGE_SAM_M1 = dict(embed_dims=(48, 96, 192, 384), depths=(3, 4, 16, 3))
"""RepViT-M1 as EdgeSAM's released checkpoints use it (widths and blocks per stage)."""

_UPSAMPLE_MODES = ("bicubic", "bilinear")


class ConvBn(nn.Sequential):
    """A bias-free conv followed by BatchNorm, children named ``c`` and ``bn`` as in RepViT."""

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int = 1, stride: int = 1,
                 groups: int = 1):
        super().__init__()
        self.add_module("c", nn.Conv2d(in_chans, out_chans, kernel_size, stride,
                                       (kernel_size - 1) // 2, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_chans))


class RepDepthwise(nn.Module):
    """Depthwise 3x3 conv+BN plus depthwise 1x1 conv+BN plus the identity (RepVGG-style)."""

    def __init__(self, chans: int):
        super().__init__()
        self.conv = ConvBn(chans, chans, 3, groups=chans)
        self.conv1 = ConvBn(chans, chans, 1, groups=chans)

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        """``conv(x) + conv1(x) + x``."""
        return self.conv(x_bchw) + self.conv1(x_bchw) + x_bchw


class Residual(nn.Module):
    """``x + m(x)`` (the child is named ``m``, as in the checkpoints)."""

    def __init__(self, m: nn.Module):
        super().__init__()
        self.m = m

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        """The residual sum."""
        return x_bchw + self.m(x_bchw)


class RepVitBlock(nn.Module):
    """One RepViT block: ``token_mixer`` (spatial) then ``channel_mixer`` (residual 1x1 MLP).

    ``stride=1`` keeps the width (re-parameterisable depthwise conv, optional SE);
    ``stride=2`` is the stage transition (depthwise 3x3 at stride 2, optional SE, 1x1 conv from
    ``in_chans`` to ``out_chans``). The channel mixer's hidden width is twice its input.
    """

    def __init__(self, in_chans: int, out_chans: int, stride: int, use_se: bool):
        super().__init__()
        se: nn.Module = SqueezeExcite(in_chans, 0.25) if use_se else nn.Identity()
        if stride == 2:
            self.token_mixer = nn.Sequential(ConvBn(in_chans, in_chans, 3, 2, groups=in_chans), se,
                                             ConvBn(in_chans, out_chans, 1))
        else:
            assert in_chans == out_chans, (in_chans, out_chans)
            self.token_mixer = nn.Sequential(RepDepthwise(in_chans), se)
        self.channel_mixer = Residual(nn.Sequential(
            ConvBn(out_chans, 2 * out_chans, 1), nn.GELU(), ConvBn(2 * out_chans, out_chans, 1)))

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        """Token mixing, then channel mixing."""
        return self.channel_mixer(self.token_mixer(x_bchw))


class ConvUpsample(nn.Module):
    """A bias-free 1x1 conv then x2 upsampling, in a list named ``op_list`` (checkpoint keys
    ``fuse_stage3.op_list.0.weight``)."""

    def __init__(self, in_chans: int, out_chans: int, mode: str):
        super().__init__()
        self.op_list = nn.ModuleList([
            nn.Conv2d(in_chans, out_chans, kernel_size=1, bias=False),
            nn.Upsample(scale_factor=2, mode=mode, align_corners=False)])

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        """Project, then upsample."""
        for op in self.op_list:
            x_bchw = op(x_bchw)
        return x_bchw


def _check_arch(embed_dims: Sequence[int], depths: Sequence[int], img_size: int,
                upsample_mode: str) -> None:
    if len(embed_dims) != 4 or len(depths) != 4:
        raise InputError("embed_dims, depths", "four stages each (EdgeSAM fuses stages 2 and 3)",
                         f"{len(embed_dims)} widths and {len(depths)} depths",
                         "pass four of each, e.g. embed_dims=(48, 96, 192, 384), "
                         "depths=(3, 4, 16, 3)")
    if any(int(d) < 1 for d in depths) or any(int(c) < 2 or int(c) % 2 for c in embed_dims):
        raise InputError("embed_dims, depths", "depths >= 1 and even widths (the stem halves "
                         "the first)", f"{tuple(embed_dims)}, {tuple(depths)}",
                         "use RepViT-M1's (48, 96, 192, 384) and (3, 4, 16, 3)")
    if int(img_size) % 32:
        raise InputError("img_size", "a multiple of 32 (stage 3 at stride 32 is upsampled x2 "
                         "onto stage 2's stride-16 grid)", repr(img_size),
                         f"use {max(32, int(img_size) // 32 * 32)} or 1024")
    if upsample_mode not in _UPSAMPLE_MODES:
        raise InputError("upsample_mode", f"one of {_UPSAMPLE_MODES}", repr(upsample_mode),
                         "use 'bicubic' (EdgeSAM's default) or 'bilinear' (its ONNX export)")


class EdgeSamRepVit(nn.Module):
    """EdgeSAM's RepViT image encoder (see the module docstring).

    Parameters
    ----------
    embed_dims : widths of the four stages (even; EdgeSAM: 48, 96, 192, 384).
    depths : blocks per stage, the stride-2 transition counted in stages 1-3 (3, 4, 16, 3).
    img_size : input side in pixels (square, a multiple of 32; informational, as in SAM).
    neck_chans : width of the fusion convs and the neck (SAM's 256).
    upsample_mode : ``"bicubic"`` (EdgeSAM's default) or ``"bilinear"``.

    ``forward`` maps (b, 3, S, S) to the image embedding (b, neck_chans, S/16, S/16).
    """

    def __init__(self, embed_dims: Sequence[int] = EDGE_SAM_M1["embed_dims"],
                 depths: Sequence[int] = EDGE_SAM_M1["depths"], img_size: int = 1024,
                 neck_chans: int = 256, upsample_mode: str = "bicubic"):
        super().__init__()
        _check_arch(embed_dims, depths, img_size, upsample_mode)
        self.img_size = int(img_size)
        dims = [int(c) for c in embed_dims]
        layers: list[nn.Module] = [nn.Sequential(ConvBn(3, dims[0] // 2, 3, 2), nn.GELU(),
                                                 ConvBn(dims[0] // 2, dims[0], 3, 2))]
        self.stage_blocks: list[list[int]] = []  # feature indices of each stage's blocks
        in_chans = dims[0]
        for s, (chans, depth) in enumerate(zip(dims, depths, strict=True)):
            self.stage_blocks.append([])
            for j in range(int(depth)):
                transition = s > 0 and j == 0
                k = j - 1 if s > 0 else j  # position among the stage's stride-1 blocks
                use_se = not transition and k % 2 == 0 and j < int(depth) - 1
                self.stage_blocks[-1].append(len(layers))
                layers.append(RepVitBlock(in_chans, chans, 2 if transition else 1, use_se))
                in_chans = chans
        self.features = nn.ModuleList(layers)
        self.fuse_stage2 = nn.Conv2d(dims[2], neck_chans, kernel_size=1, bias=False)
        self.fuse_stage3 = ConvUpsample(dims[3], neck_chans, upsample_mode)
        self.neck = sam_neck(neck_chans, neck_chans)

    def block_paths(self) -> dict[str, str]:
        """Family layer name -> module path, in forward order (``stages.1.blocks.0`` ->
        ``features.4`` in M1)."""
        return {f"stages.{s}.blocks.{j}": f"features.{i}"
                for s, idx in enumerate(self.stage_blocks) for j, i in enumerate(idx)}

    def forward_features(self, x_bchw: torch.Tensor) -> torch.Tensor:
        """The image embedding (b, neck_chans, S/16, S/16)."""
        end2, end3 = self.stage_blocks[2][-1], self.stage_blocks[3][-1]
        x = x_bchw
        s2_bchw = None
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == end2:
                s2_bchw = x
            if i == end3:
                break
        return self.neck(self.fuse_stage2(s2_bchw) + self.fuse_stage3(x))

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        """``forward_features`` (the image encoder has no head)."""
        return self.forward_features(x_bchw)


def build_edge_sam_repvit(arch: str, **kwargs) -> EdgeSamRepVit:
    """EdgeSAM's encoder (``arch`` is informational; the architecture comes from ``kwargs``)."""
    kwargs.pop("pretrained", None)
    return EdgeSamRepVit(**kwargs)
