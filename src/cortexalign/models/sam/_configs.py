"""The Segment Anything family as a table: one ``SamConfig`` per registry entry.

``kwargs`` build the full encoder; ``tiny`` replaces them for contract tests (random weights,
64 px input, a handful of channels). Global-attention block indices follow the papers:
SAM ViT-B 2,5,8,11; ViT-L 5,11,17,23; ViT-H 7,15,23,31 (windowed 14 x 14 elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["SamConfig", "SAM_CONFIGS"]


@dataclass(frozen=True)
class SamConfig:
    """One member of the family.

    Attributes
    ----------
    name : registry name (``"sam_vit_b"``).
    family : key of ``BUILDERS`` and ``CONVERTERS`` (``"sam"``, ``"sam2"``, ``"mobile_sam"``,
        ``"efficient_sam"``, ``"edge_sam"``).
    arch : timm architecture the encoder is built from (EdgeSAM: the official ``rep_vit_m1``,
        built by ``_repvit``, not timm).
    img_size : encoder input size in pixels (square).
    kwargs : architecture options of the full model.
    tiny : architecture options of the tiny test config (includes ``img_size``).
    hub : whether timm's hub has weights for ``arch`` (``load_model(name)`` without ``weights``).
    checkpoint : the official checkpoint file this entry converts (``weights=PATH``).
    description : one line for ``list_models``.
    """

    name: str
    family: str
    arch: str
    img_size: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    tiny: dict[str, Any] = field(default_factory=dict)
    hub: bool = False
    checkpoint: str = ""
    description: str = ""


_SAMVIT_TINY = dict(img_size=64, embed_dim=32, depth=4, num_heads=2, global_attn_indexes=(1, 3),
                    window_size=2, neck_chans=16)
_HIERA_TINY = dict(img_size=64, embed_dim=16, num_heads=1, stages=(1, 1, 2, 1),
                   global_att_blocks=(3,), window_spec=(4, 2, 2, 1), global_pos_size=(4, 4))
_EFFICIENT = dict(use_rel_pos=False, window_size=0, use_abs_pos=True)
_EDGE_M1 = dict(embed_dims=(48, 96, 192, 384), depths=(3, 4, 16, 3))
_EDGE_TINY = dict(img_size=64, embed_dims=(8, 16, 24, 32), depths=(2, 2, 3, 2), neck_chans=16)

SAM_CONFIGS: dict[str, SamConfig] = {c.name: c for c in [
    SamConfig("sam_vit_b", "sam", "samvit_base_patch16", 1024,
              dict(global_attn_indexes=(2, 5, 8, 11)), _SAMVIT_TINY, hub=True,
              checkpoint="sam_vit_b_01ec64.pth",
              description="Segment Anything ViT-B image encoder (Kirillov et al. 2023), 1024 px"),
    SamConfig("sam_vit_l", "sam", "samvit_large_patch16", 1024,
              dict(global_attn_indexes=(5, 11, 17, 23)), _SAMVIT_TINY, hub=True,
              checkpoint="sam_vit_l_0b3195.pth",
              description="Segment Anything ViT-L image encoder (Kirillov et al. 2023), 1024 px"),
    SamConfig("sam_vit_h", "sam", "samvit_huge_patch16", 1024,
              dict(global_attn_indexes=(7, 15, 23, 31)), _SAMVIT_TINY, hub=True,
              checkpoint="sam_vit_h_4b8939.pth",
              description="Segment Anything ViT-H image encoder (Kirillov et al. 2023), 1024 px"),
    SamConfig("sam2_hiera_t", "sam2", "sam2_hiera_tiny", 1024, {}, _HIERA_TINY, hub=True,
              checkpoint="sam2_hiera_tiny.pt",
              description="SAM 2 Hiera-T trunk (Ravi et al. 2024), 1024 px"),
    SamConfig("sam2_hiera_s", "sam2", "sam2_hiera_small", 1024, {}, _HIERA_TINY, hub=True,
              checkpoint="sam2_hiera_small.pt",
              description="SAM 2 Hiera-S trunk (Ravi et al. 2024), 1024 px"),
    SamConfig("sam2_hiera_b_plus", "sam2", "sam2_hiera_base_plus", 1024, {}, _HIERA_TINY, hub=True,
              checkpoint="sam2_hiera_base_plus.pt",
              description="SAM 2 Hiera-B+ trunk (Ravi et al. 2024), 1024 px"),
    SamConfig("sam2_hiera_l", "sam2", "sam2_hiera_large", 1024, {}, _HIERA_TINY, hub=True,
              checkpoint="sam2_hiera_large.pt",
              description="SAM 2 Hiera-L trunk (Ravi et al. 2024), 1024 px"),
    SamConfig("mobile_sam", "mobile_sam", "tiny_vit_5m_224", 1024,
              dict(embed_dims=(64, 128, 160, 320), depths=(2, 2, 6, 2), num_heads=(2, 4, 5, 10),
                   window_sizes=(7, 7, 14, 7), drop_path_rate=0.0),
              dict(img_size=64, embed_dims=(8, 16, 16, 32), depths=(1, 1, 2, 1),
                   num_heads=(1, 2, 2, 2), window_sizes=(2, 2, 2, 2), drop_path_rate=0.0,
                   neck_chans=16),
              checkpoint="mobile_sam.pt",
              description="MobileSAM TinyViT-5M image encoder (Zhang et al. 2023), 1024 px"),
    SamConfig("efficient_sam_vit_t", "efficient_sam", "samvit_base_patch16", 1024,
              dict(embed_dim=192, depth=12, num_heads=3, global_attn_indexes=(), **_EFFICIENT),
              dict(img_size=64, embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(),
                   neck_chans=16, **_EFFICIENT),
              checkpoint="efficient_sam_vitt.pt",
              description="EfficientSAM ViT-T image encoder (Xiong et al. 2024), 1024 px"),
    SamConfig("efficient_sam_vit_s", "efficient_sam", "samvit_base_patch16", 1024,
              dict(embed_dim=384, depth=12, num_heads=6, global_attn_indexes=(), **_EFFICIENT),
              dict(img_size=64, embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(),
                   neck_chans=16, **_EFFICIENT),
              checkpoint="efficient_sam_vits.pt",
              description="EfficientSAM ViT-S image encoder (Xiong et al. 2024), 1024 px"),
    SamConfig("edge_sam", "edge_sam", "rep_vit_m1", 1024, dict(_EDGE_M1), _EDGE_TINY,
              checkpoint="edge_sam.pth",
              description="EdgeSAM RepViT-M1 image encoder (Zhou et al. 2023), 1024 px"),
    SamConfig("edge_sam_3x", "edge_sam", "rep_vit_m1", 1024, dict(_EDGE_M1), _EDGE_TINY,
              checkpoint="edge_sam_3x.pth",
              description="EdgeSAM-3x RepViT-M1 image encoder (Zhou et al. 2023; the same "
                          "network trained on three times the images), 1024 px"),
]}
