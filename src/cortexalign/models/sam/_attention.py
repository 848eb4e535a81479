"""SAM ViT attention that lets ``scaled_dot_product_attention`` pick a fused kernel.

timm's ``vision_transformer_sam.Attention`` calls SDPA on 3-D (b * heads, n, d) tensors with a
relative-position bias whose rows are n = 196 (windowed) elements long. On CUDA both block the
fused kernels: FlashAttention takes no additive bias at all, and the memory-efficient kernel
wants 4-D (b, heads, n, d) inputs and a bias whose row stride is a multiple of 16 bytes, so
SDPA falls back to its unfused math kernel (which writes and reads the whole (n, n) score and
probability tensors). ``SamFusedAttention`` is the same module, same parameters and the same
maths, with a forward that

- keeps q, k and v 4-D, as views of the qkv projection (no copies);
- builds the decomposed relative-position bias (Li et al. 2022, MViTv2; Kirillov et al. 2023)
  straight into a buffer whose rows are padded to a multiple of 8 elements, in q's dtype, and
  passes the unpadded view: the memory-efficient kernel takes it without another copy.

``use_fused_attention(model)`` switches every SAM attention module of a model to it in place
(``load_model`` does so for SAM ViT and EfficientSAM); ``attention_maps`` handles it like
timm's class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import apply_rot_embed_cat
from timm.models.vision_transformer_sam import Attention as SamAttention

from cortexalign.models.attention._handlers import (
    ATTENTION_HANDLERS,
    decomposed_rel_pos,
    register_handler,
)

__all__ = ["SamFusedAttention", "use_fused_attention", "padded_rel_pos_bias"]

_ALIGN = 8  # elements: 16 bytes of bfloat16 / float16, 32 of float32


def padded_rel_pos_bias(rel_h_bhqk: torch.Tensor, rel_w_bhqk: torch.Tensor,
                        dtype: torch.dtype) -> torch.Tensor:
    """(b, h, q, kh * kw) bias ``rel_h[..., q, kh] + rel_w[..., q, kw]`` in ``dtype``, rows padded.

    The result is a view of a (b, h, q, ceil8(kh * kw)) buffer: every row starts at an aligned
    address, which the memory-efficient SDPA kernel needs to read it in place.
    """
    b, h, q, kh = rel_h_bhqk.shape
    kw = rel_w_bhqk.shape[-1]
    n = kh * kw
    buf = rel_h_bhqk.new_empty(b, h, q, -(-n // _ALIGN) * _ALIGN, dtype=dtype)
    bias_bhqk = buf[..., :n]
    rel_h, rel_w, out = rel_h_bhqk[..., :, None], rel_w_bhqk[..., None, :], bias_bhqk.view(b, h, q, kh, kw)
    if torch.is_grad_enabled() and (rel_h.requires_grad or rel_w.requires_grad):
        out.copy_(rel_h + rel_w)  # out= does not record autograd; an in-place copy does
    else:
        torch.add(rel_h, rel_w, out=out)
    return bias_bhqk


class SamFusedAttention(SamAttention):
    """timm's SAM attention with a forward SDPA can fuse (see the module docstring).

    Input and output (b, H, W, c), as timm's. With ``fused_attn`` off (timm's switch) it runs
    timm's own forward.
    """

    def forward(self, x_bhwc: torch.Tensor) -> torch.Tensor:
        if not self.fused_attn:
            return super().forward(x_bhwc)
        b, gh, gw, _ = x_bhwc.shape
        n = gh * gw
        qkv = self.qkv(x_bhwc.reshape(b, n, -1)).view(b, n, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (b, heads, n, d) views
        q, k = self.q_norm(q), self.k_norm(k)
        bias = None
        if self.use_rel_pos:
            rel = decomposed_rel_pos(q, self.rel_pos_h, self.rel_pos_w, (gh, gw))
            bias = padded_rel_pos_bias(*rel, dtype=q.dtype)
        elif self.rope is not None:
            rope = self.rope.get_embed()
            q = apply_rot_embed_cat(q, rope).type_as(v)
            k = apply_rot_embed_cat(k, rope).type_as(v)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                             dropout_p=self.attn_drop.p if self.training else 0.0)
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, -1)))
        return out.view(b, gh, gw, -1)


def use_fused_attention(model: torch.nn.Module) -> torch.nn.Module:
    """Switch every timm SAM attention module of ``model`` to ``SamFusedAttention``, in place.

    Parameters, buffers and state-dict keys are unchanged (only the class is), so checkpoints
    load either way. Returns ``model``.
    """
    for module in model.modules():
        if type(module) is SamAttention:
            module.__class__ = SamFusedAttention
    return model


if SamFusedAttention not in ATTENTION_HANDLERS:  # attention maps read it as timm's class
    register_handler(SamFusedAttention, parent_grid=True,
                     description=ATTENTION_HANDLERS[SamAttention].description + " (fused SDPA)"
                     )(ATTENTION_HANDLERS[SamAttention].qk)
