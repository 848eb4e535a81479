"""Official CLIP checkpoints onto timm's vision transformers.

Two official layouts hold the image tower of CLIP ViT-B/16:

- OpenAI's release (``ViT-B-16.pt``): a TorchScript archive, read without running its code by
  ``cortexalign.models._torchscript``; tensors named ``visual.conv1.weight``,
  ``visual.transformer.resblocks.0.attn.in_proj_weight``... (fp16 in the release);
- open_clip's state dicts (``open_clip_pytorch_model.bin`` read with ``weights_only=True``, or
  ``open_clip_model.safetensors``), which keep OpenAI's names (a ``module.`` prefix from DDP is
  accepted).

Both are mapped onto timm's ``VisionTransformer`` by timm's own ``checkpoint_filter_fn`` (the
mapping timm uses for its ``*_clip_*.openai`` hub weights: ``conv1`` -> ``patch_embed.proj``,
``in_proj`` -> ``qkv``, ``proj`` -> ``head.weight`` transposed...), then cast to float32. The
text tower is dropped. OpenAI's CLIP was trained with QuickGELU: load it into
``timm:vit_base_patch16_clip_quickgelu_224`` (timm's ``vit_base_patch16_clip_224`` uses exact
GELU and does not reproduce the released activations).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from cortexalign.errors import InputError

__all__ = ["is_clip_state_dict", "clip_to_timm"]

_MARKERS = ("visual.class_embedding", "module.visual.class_embedding")


def is_clip_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state_dict`` is in OpenAI's / open_clip's CLIP layout."""
    return any(m in state_dict for m in _MARKERS)


def clip_to_timm(state_dict: Mapping[str, torch.Tensor], module: nn.Module,
                 source: str) -> dict[str, torch.Tensor]:
    """The image tower of an OpenAI / open_clip CLIP state dict in the names of timm ``module``.

    Raises ``InputError`` when ``module`` is not a timm ``VisionTransformer``.
    """
    from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

    if not isinstance(module, VisionTransformer):
        raise InputError("weights", "a timm VisionTransformer for a CLIP checkpoint",
                         f"{source} (CLIP layout) for a {type(module).__name__}",
                         "use timm:vit_base_patch16_clip_quickgelu_224 for OpenAI's ViT-B/16")
    dtype = next(module.parameters()).dtype
    out = checkpoint_filter_fn(dict(state_dict), module)
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in out.items()}
