"""Converters from the official checkpoints of the Segment Anything family to our encoders.

Each converter takes the tensors of an official checkpoint (already read safely by
``cortexalign.models.read_state_dict``: ``torch.load(weights_only=True)`` or safetensors, wrappers
such as ``{"model": ...}`` removed) and returns the encoder's state_dict in timm's key layout.
A state_dict already in that layout (e.g. ``adapter.module.state_dict()`` saved to a file) passes
through unchanged. Keys of the prompt encoder and mask decoder are dropped.

Supported layouts
-----------------
``sam`` (segment-anything ``sam_vit_*.pth``, or ``ImageEncoderViT.state_dict()``):
    ``image_encoder.{patch_embed.proj, pos_embed, blocks.N.{norm1, attn.qkv, attn.proj,
    attn.rel_pos_h, attn.rel_pos_w, norm2, mlp.lin1, mlp.lin2}, neck.0..3}``;
    ``mlp.lin1/lin2`` become ``mlp.fc1/fc2``.
``sam2`` (sam2 ``sam2_hiera_*.pt`` = ``{"model": ...}``, or ``Hiera.state_dict()``):
    ``image_encoder.trunk.{patch_embed.proj, pos_embed, pos_embed_window, blocks.N.{norm1,
    attn.qkv, attn.proj, norm2, mlp.layers.0, mlp.layers.1, proj}}``; ``mlp.layers.0/1`` become
    ``mlp.fc1/fc2``. The FPN neck (``image_encoder.neck``) is dropped. SAM 2 trunks have no final
    norm: timm's unused ``head.norm`` keeps its identity initialisation.
``mobile_sam`` (``mobile_sam.pt``, TinyViT of the MobileSAM repository):
    ``image_encoder.patch_embed.seq.{0,2}.{c,bn}`` -> ``patch_embed.conv{1,2}.{conv,bn}``;
    ``image_encoder.layers.i.blocks.j.*`` -> ``stages.i.blocks.j.*``; the patch merging that ends
    layer i (``layers.i.downsample``) starts timm's stage i+1 (``stages.{i+1}.downsample``);
    ``Conv2d_BN`` children ``.c`` become ``.conv``; ``norm_head`` -> ``head.norm``; the ImageNet
    classifier ``head`` and the ``attention_bias_idxs`` buffers are dropped; ``neck.0..3`` kept.
``efficient_sam`` (``efficient_sam_vit{t,s}.pt`` = ``{"model": ...}``):
    ``image_encoder.{patch_embed.proj, pos_embed (1, 1 + 14*14, d), blocks.N.{norm1, attn.qkv,
    attn.proj, norm2, mlp.fc1, mlp.fc2}, neck.0..3}``. The position embedding, trained at 224 px
    with a CLS slot, is resized once here exactly as EfficientSAM does at every call (CLS dropped,
    bicubic, ``align_corners=False``) to the encoder's token grid, stored (1, g, g, d).
Testing: ``sam`` and ``sam2`` are tested against the official packages (segment-anything 1.0,
sam2 1.1.0) built with random weights. MobileSAM is tested against the official TinyViT of
``mobilesam-mirror`` (the MobileSAM repository's package, dev extra;
tests/models/test_mobile_sam_official.py) and EfficientSAM against its official encoder written
in the test from ``efficient_sam_encoder.py`` (tests/models/test_efficient_sam_official.py), both
with random weights in the official layout.
``edge_sam`` (EdgeSAM ``edge_sam.pth`` / ``edge_sam_3x.pth``: the full model's flat state_dict):
    ``image_encoder.{features.N..., fuse_stage2, fuse_stage3.op_list.0, neck.0..3}`` is our
    ``EdgeSamRepVit``'s own layout (``_repvit``), so only the prefix is removed; the prompt
    encoder, mask decoder and any detection head (``fpn.*``, ``rpn_head.*``) are dropped. Tested
    against EdgeSAM's RepViT written in the test from ``edge_sam/modeling/rep_vit.py``
    (tests/models/test_edge_sam_official.py), full RepViT-M1 and a tiny variant, random weights.
Which generation a full checkpoint comes from is told by its keys (``checkpoint_generation``):
SAM 2 names its heads ``sam_prompt_encoder`` / ``sam_mask_decoder`` and its trunk
``image_encoder.trunk``; segment-anything and its descendants name them ``prompt_encoder`` /
``mask_decoder``. A checkpoint of the other generation is refused by name, before any key check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from cortexalign.errors import InputError

__all__ = ["CONVERTERS", "convert_state_dict", "convert_sam", "convert_sam2",
           "convert_mobile_sam", "convert_efficient_sam", "convert_edge_sam", "resize_positions",
           "checkpoint_generation", "check_generation"]

StateDict = dict[str, torch.Tensor]


def _strip(sd: Mapping[str, torch.Tensor], prefix: str) -> StateDict | None:
    """Keys under ``prefix`` with it removed; ``None`` when no key has it."""
    if not any(k.startswith(prefix) for k in sd):
        return None
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def convert_sam(sd: Mapping[str, torch.Tensor], module: nn.Module) -> StateDict:
    """segment-anything ``image_encoder.*`` -> timm ``samvit``; at another input size than the
    checkpoint's, the position embedding and relative-position tables are resized
    (``resize_positions``)."""
    enc = _strip(sd, "image_encoder.")
    enc = dict(sd) if enc is None else enc
    out = {k.replace(".mlp.lin1.", ".mlp.fc1.").replace(".mlp.lin2.", ".mlp.fc2."): v
           for k, v in enc.items()}
    return resize_positions(out, module)


def resize_positions(sd: StateDict, module: nn.Module) -> StateDict:
    """Resize ``pos_embed`` (1, g, g, d) and ``*.rel_pos_{h,w}`` (2g - 1, c) to the module's
    shapes, as timm does for position embeddings (``resample_abs_pos_embed_nhwc``, its
    defaults: bicubic, antialiased when shrinking) and as segment-anything's ``get_rel_pos``
    does for the tables (linear), so an official 1024-px checkpoint loads at another
    ``img_size``. Same shapes: unchanged."""
    from timm.layers import resample_abs_pos_embed_nhwc

    target = module.state_dict()
    out = dict(sd)
    for key, v in sd.items():
        want = target.get(key)
        if want is None or tuple(v.shape) == tuple(want.shape):
            continue
        if key == "pos_embed" and v.ndim == 4:
            out[key] = resample_abs_pos_embed_nhwc(v.float(), list(want.shape[1:3])).to(v.dtype)
        elif key.endswith((".rel_pos_h", ".rel_pos_w")) and v.ndim == 2:
            table = F.interpolate(v.float().T[None], size=want.shape[0], mode="linear")
            out[key] = table[0].T.to(v.dtype)
    return out


def convert_sam2(sd: Mapping[str, torch.Tensor], module: nn.Module) -> StateDict:
    """sam2 ``image_encoder.trunk.*`` -> timm ``sam2_hiera`` (HieraDet)."""
    enc = _strip(sd, "image_encoder.trunk.")
    enc = dict(sd) if enc is None else enc
    out = {k.replace(".mlp.layers.0.", ".mlp.fc1.").replace(".mlp.layers.1.", ".mlp.fc2."): v
           for k, v in enc.items()}
    for k, v in module.state_dict().items():
        if k.startswith("head.") and k not in out:  # unused final norm: identity init
            out[k] = v.detach().clone()
    return out


_MOBILE_RULES: tuple[tuple[re.Pattern, Callable[[re.Match], str]], ...] = (
    (re.compile(r"^patch_embed\.seq\.0\.(c|bn)\.(.*)$"),
     lambda m: f"patch_embed.conv1.{'conv' if m[1] == 'c' else 'bn'}.{m[2]}"),
    (re.compile(r"^patch_embed\.seq\.2\.(c|bn)\.(.*)$"),
     lambda m: f"patch_embed.conv2.{'conv' if m[1] == 'c' else 'bn'}.{m[2]}"),
    (re.compile(r"^layers\.(\d+)\.downsample\.(.*)$"),
     lambda m: f"stages.{int(m[1]) + 1}.downsample.{m[2]}"),
    (re.compile(r"^layers\.(\d+)\.blocks\.(.*)$"), lambda m: f"stages.{m[1]}.blocks.{m[2]}"),
    (re.compile(r"^norm_head\.(.*)$"), lambda m: f"head.norm.{m[1]}"),
)


def convert_mobile_sam(sd: Mapping[str, torch.Tensor], module: nn.Module) -> StateDict:
    """MobileSAM ``image_encoder.*`` (TinyViT) -> ``TinyVitSam`` (timm TinyViT + neck)."""
    enc = _strip(sd, "image_encoder.")
    if enc is None:
        return dict(sd)
    out: StateDict = {}
    for key, v in enc.items():
        if key.endswith("attention_bias_idxs") or key.startswith("head."):
            continue
        for pattern, repl in _MOBILE_RULES:
            m = pattern.match(key)
            if m:
                key = repl(m)
                break
        out[re.sub(r"\.c\.(weight|bias)$", r".conv.\1", key)] = v
    return out


def convert_efficient_sam(sd: Mapping[str, torch.Tensor], module: nn.Module) -> StateDict:
    """EfficientSAM ``image_encoder.*`` -> timm ``VisionTransformerSAM`` (global attention)."""
    enc = _strip(sd, "image_encoder.")
    if enc is None:
        return dict(sd)
    pos = enc.get("pos_embed")
    target = module.state_dict().get("pos_embed")
    if pos is not None and target is not None and pos.ndim == 3:
        n = pos.shape[1] - 1  # the CLS slot of the 224-px pretraining
        side = int(round(n ** 0.5))
        if side * side == n:
            grid_11dg = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
            resized = F.interpolate(grid_11dg.float(), size=tuple(target.shape[1:3]),
                                    mode="bicubic", align_corners=False)
            enc["pos_embed"] = resized.permute(0, 2, 3, 1).to(pos.dtype)
    return enc


def convert_edge_sam(sd: Mapping[str, torch.Tensor], module: nn.Module) -> StateDict:
    """EdgeSAM ``image_encoder.*`` -> ``EdgeSamRepVit`` (same names: the prefix is removed)."""
    enc = _strip(sd, "image_encoder.")
    return dict(sd) if enc is None else enc


#: family -> converter(official_state_dict, module) -> state_dict in the module's layout
CONVERTERS: dict[str, Callable[[Mapping[str, torch.Tensor], nn.Module], StateDict]] = {
    "sam": convert_sam,
    "sam2": convert_sam2,
    "mobile_sam": convert_mobile_sam,
    "efficient_sam": convert_efficient_sam,
    "edge_sam": convert_edge_sam,
}


def convert_state_dict(family: str, sd: Mapping[str, torch.Tensor], module: nn.Module) -> StateDict:
    """Convert ``sd`` for ``module`` unless it already is in the module's own layout."""
    if set(sd) == set(module.state_dict()):
        return dict(sd)
    return CONVERTERS[family](sd, module)


#: generation -> (key prefixes that only its checkpoints have, what it is, how to load it)
_GENERATIONS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "sam2": (("image_encoder.trunk.", "sam_mask_decoder.", "sam_prompt_encoder."),
             "a SAM 2 checkpoint", "load it with a sam2_hiera_* entry (e.g. 'sam2_hiera_t')"),
    "sam": (("mask_decoder.", "prompt_encoder."),
            "a segment-anything-style (SAM, MobileSAM, EfficientSAM, EdgeSAM) checkpoint",
            "load it with a sam_vit_*, mobile_sam, efficient_sam_* or edge_sam* entry"),
}


def checkpoint_generation(sd: Mapping[str, torch.Tensor]) -> tuple[str, str] | None:
    """``(generation, first telling key)`` of a full checkpoint: ``"sam2"`` or ``"sam"``.

    ``None`` when no key tells (an encoder-only state_dict, or our own layout).
    """
    for generation, (prefixes, _, _) in _GENERATIONS.items():
        key = next((k for k in sd if k.startswith(prefixes)), None)
        if key is not None:
            return generation, key
    return None


def check_generation(family: str, sd: Mapping[str, torch.Tensor], source: str,
                     detail: str = "") -> None:
    """Refuse ``sd`` when it is a full checkpoint of the other SAM generation than ``family``.

    ``detail`` is appended to the received part of the message (e.g. the key counts).
    """
    found = checkpoint_generation(sd)
    if found is None:
        return
    generation, key = found
    wanted = "sam2" if family == "sam2" else "sam"
    if generation != wanted:
        _, what, fix = _GENERATIONS[generation]
        raise InputError("weights", f"{_GENERATIONS[wanted][1]} for a {family!r} model",
                         f"{source}, {what} (key {key!r}){detail}", fix)
