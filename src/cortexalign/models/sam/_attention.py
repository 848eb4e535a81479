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

On CUDA in bfloat16 / float16 the bias is written by one matrix product with a cached one-hot
matrix, ``[rel_h | rel_w] @ E`` (E maps each key to its row and column), instead of a broadcast
add: the add's strided, broadcast kernel moved the global blocks' (b, heads, 4096, 4096) bias
at a fraction of the bandwidth. Each output is a sum of exactly two products by 1, rounded once,
so the bias is bit for bit the add's.

``use_fused_attention(model)`` switches every SAM attention module of a model to it in place
(``load_model`` does so for SAM ViT and EfficientSAM). ``attention_maps`` sets ``maps_capture``
on the modules it takes maps of: their forward then keeps q, k, the relative-position tables and
the row log-sum-exp of its attention kernel (``sdpa_with_lse``) for the map handler, which
otherwise recomputes q and k from the block's input as it does for timm's class.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from timm.layers import apply_rot_embed_cat
from timm.models.vision_transformer_sam import Attention as SamAttention

from cortexalign.models.attention._handlers import (
    ATTENTION_HANDLERS,
    CallContext,
    block_windows,
    decomposed_rel_pos,
    register_handler,
    rel_pos_bias,
    sam_attention,
)
from cortexalign.models.attention._layout import QK
from cortexalign.models.attention._sdpa_lse import sdpa_with_lse

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
    needs_grad = torch.is_grad_enabled() and (rel_h_bhqk.requires_grad or rel_w_bhqk.requires_grad)
    if buf.is_cuda and dtype in (torch.bfloat16, torch.float16) and not needs_grad:
        _bias_by_matmul(rel_h_bhqk, rel_w_bhqk, buf)
        return bias_bhqk
    rel_h, rel_w, out = rel_h_bhqk[..., :, None], rel_w_bhqk[..., None, :], bias_bhqk.view(b, h, q, kh, kw)
    if needs_grad:
        out.copy_(rel_h + rel_w)  # out= does not record autograd; an in-place copy does
    else:
        torch.add(rel_h, rel_w, out=out)
    return bias_bhqk


@functools.lru_cache(maxsize=16)
def _one_hot_keys(kh: int, kw: int, width: int, dtype: torch.dtype,
                  device: torch.device) -> torch.Tensor:
    """(ceil8(kh + kw), width) 0/1 matrix: row i < kh is 1 on the keys of key row i, row kh + j
    on the keys of key column j; columns past kh * kw (row padding) and padded rows are 0."""
    e = torch.zeros(-(-(kh + kw) // _ALIGN) * _ALIGN, width, dtype=dtype, device=device)
    keys = torch.arange(kh * kw, device=device)
    e[keys // kw, keys] = 1
    e[kh + keys % kw, keys] = 1
    return e


def _bias_by_matmul(rel_h_bhqk: torch.Tensor, rel_w_bhqk: torch.Tensor, buf: torch.Tensor) -> None:
    """Write ``rel_h[..., k // kw] + rel_w[..., k % kw]`` into every padded row of ``buf`` with one
    matrix product (padding columns get 0). Inner size padded to 8 for aligned tensor-core rows."""
    kh, kw, width = rel_h_bhqk.shape[-1], rel_w_bhqk.shape[-1], buf.shape[-1]
    e = _one_hot_keys(kh, kw, width, buf.dtype, buf.device)
    rel = rel_h_bhqk.new_zeros(*rel_h_bhqk.shape[:-1], e.shape[0], dtype=buf.dtype)
    rel[..., :kh] = rel_h_bhqk
    rel[..., kh:kh + kw] = rel_w_bhqk
    torch.matmul(rel.view(-1, e.shape[0]), e, out=buf.view(-1, width))


class SamFusedAttention(SamAttention):
    """timm's SAM attention with a forward SDPA can fuse (see the module docstring).

    Input and output (b, H, W, c), as timm's. With ``fused_attn`` off (timm's switch) it runs
    timm's own forward. ``maps_capture`` (set by ``attention_maps`` for the call) keeps what
    the map handler needs in ``_maps_stash`` (see the module docstring).
    """

    maps_capture = False

    def forward(self, x_bhwc: torch.Tensor) -> torch.Tensor:
        """SAM attention with relative positions through fused scaled-dot-product attention."""
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
        dropout = self.attn_drop.p if self.training else 0.0
        if self.maps_capture and dropout == 0.0:
            out, lse = sdpa_with_lse(q, k, v, bias)
            self._maps_stash = (q, k, rel if self.use_rel_pos else None, lse)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
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


def fused_sam_attention(module: SamFusedAttention, args, kwargs, ctx: CallContext) -> QK:
    """Map handler: what the forward kept under ``maps_capture`` (q, k, relative-position
    tables, its kernel's row log-sum-exp), or timm's handler (recomputing q and k) without it."""
    stash = module.__dict__.pop("_maps_stash", None)
    if stash is None:
        return sam_attention(module, args, kwargs, ctx)
    q, k, rel, lse = stash
    x = args[0] if args else kwargs["x"]
    g, wh, ww, _ = x.shape
    grid, tok = block_windows(ctx, g, (wh, ww), q.device)
    bias = rel_pos_bias(*rel) if rel is not None else None
    return QK(q * module.scale, k, bias, tok, tok, grid, grid, rel_pos=rel, lse=lse)


if SamFusedAttention not in ATTENTION_HANDLERS:
    register_handler(SamFusedAttention, parent_grid=True,
                     description=ATTENTION_HANDLERS[SamAttention].description + " (fused SDPA)"
                     )(fused_sam_attention)
