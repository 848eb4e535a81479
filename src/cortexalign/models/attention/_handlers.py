"""Per-attention-class handlers: recompute q, k and score bias from a module's own input and weights.

Fused kernels (``F.scaled_dot_product_attention``) never materialise the attention probabilities,
so a handler recomputes them from what the module received, with the module's own parameters, the
same way the module's unfused branch does. Nothing on the module is changed: handlers only read.

A handler is ``fn(module, args, kwargs, ctx) -> QK``; ``ATTENTION_HANDLERS`` maps the exact
attention class to it, so supporting a new architecture is one decorated function.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from timm.layers import Attention as TimmAttention
from timm.layers import apply_rot_embed_cat
from timm.models.hiera import MaskUnitAttention
from timm.models.hieradet_sam2 import MultiScaleAttention
from timm.models.tiny_vit import Attention as TinyVitAttention
from timm.models.vision_transformer_sam import Attention as SamAttention
from timm.models.vision_transformer_sam import get_rel_pos

from cortexalign.errors import InputError
from cortexalign.models.attention._layout import QK, grid_tokens, window_tokens

__all__ = ["ATTENTION_HANDLERS", "AttentionHandler", "CallContext", "register_handler"]


@dataclass
class CallContext:
    """What a handler may know beyond the module's input: the model around it and the call."""

    root: torch.nn.Module
    name: str
    batch: int
    image_hw: tuple[int, int]
    parent_grid: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def parent_name(self) -> str:
        """Dotted name of the attention module's parent ('' at the root)."""
        return self.name.rsplit(".", 1)[0] if "." in self.name else ""

    @property
    def parent(self) -> torch.nn.Module:
        """The attention module's parent module."""
        return self.root.get_submodule(self.parent_name)

    def grid(self) -> tuple[int, int]:
        """(H, W) of the (b, H, W, c) tensor that entered the parent block (recorded by a pre-hook)."""
        return self.parent_grid[self.name]


@dataclass(frozen=True)
class AttentionHandler:
    """``qk`` recomputes the attention inputs; ``parent_grid``: the parent block's input is (b, H, W, c)
    and its (H, W) must be recorded by a pre-hook for the handler to place windows on the grid."""

    qk: Callable[[torch.nn.Module, tuple, dict, CallContext], QK]
    parent_grid: bool
    description: str


ATTENTION_HANDLERS: dict[type, AttentionHandler] = {}


def register_handler(cls: type, *, parent_grid: bool, description: str):
    """Decorator registering ``fn`` as the handler of attention class ``cls`` (exact type)."""

    def deco(fn):
        if cls in ATTENTION_HANDLERS:
            raise ValueError(f"attention class {cls.__qualname__} is registered twice")
        ATTENTION_HANDLERS[cls] = AttentionHandler(fn, parent_grid, description)
        return fn

    return deco


def _linear_rows(lin: torch.nn.Linear, x: torch.Tensor, n_rows: int) -> torch.Tensor:
    """The first ``n_rows`` outputs of ``lin`` (q and k of a fused qkv projection) without v."""
    bias = None if lin.bias is None else lin.bias[:n_rows]
    return F.linear(x, lin.weight[:n_rows], bias)


def block_windows(ctx: CallContext, g: int, win_hw: tuple[int, int],
             device: torch.device) -> tuple[tuple[int, int], torch.Tensor]:
    """Grid, and token placement of the windows of a windowed block (one window when global)."""
    gh, gw = ctx.grid()
    nh, nw = math.ceil(gh / win_hw[0]), math.ceil(gw / win_hw[1])
    if g != ctx.batch * nh * nw:
        raise InputError(f"block {ctx.name!r}", f"{ctx.batch} x {nh * nw} windows of {win_hw} on a "
                         f"{gh}x{gw} grid", f"{g} attention groups",
                         "this block partitions tokens in a way the handler does not know; "
                         "register a handler for it")
    return (gh, gw), window_tokens((gh, gw), win_hw, (nh, nw), device=device)


def _to_f32(*ts: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(t.float() for t in ts)


@register_handler(TimmAttention, parent_grid=False,
                  description="timm ViT / DeiT / CLIP ViT global attention with prefix tokens")
def vit_attention(module, args, kwargs, ctx: CallContext) -> QK:
    x = args[0] if args else kwargs["x"]
    b, n, _ = x.shape
    qk = _linear_rows(module.qkv, x, 2 * module.attn_dim)
    q, k = qk.reshape(b, n, 2, module.num_heads, module.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    q, k = _to_f32(module.q_norm(q), module.k_norm(k))
    num_prefix = int(getattr(ctx.root, "num_prefix_tokens", 0))
    gh, gw = _vit_grid(ctx, n - num_prefix)
    attn_mask = kwargs.get("attn_mask", args[1] if len(args) > 1 else None)
    is_causal = kwargs.get("is_causal", args[2] if len(args) > 2 else False)
    bias = _mask_bias(attn_mask, is_causal, n, q.device)
    tok = grid_tokens((gh, gw), num_prefix, device=q.device)
    return QK(q * module.scale, k, bias, tok, tok, (gh, gw), (gh, gw), num_prefix,
              has_cls=bool(getattr(ctx.root, "has_class_token", False)) and num_prefix > 0)


def _vit_grid(ctx: CallContext, n_patches: int) -> tuple[int, int]:
    embed = getattr(ctx.root, "patch_embed", None)
    if embed is not None and hasattr(embed, "dynamic_feat_size"):
        gh, gw = embed.dynamic_feat_size(ctx.image_hw)
        if gh * gw == n_patches:
            return int(gh), int(gw)
    side = math.isqrt(n_patches)
    if side * side != n_patches:
        raise InputError(f"block {ctx.name!r}", "patch tokens that form a known grid",
                         f"{n_patches} patch tokens and no patch_embed giving the grid",
                         "pass a whole timm ViT (its patch_embed gives the grid) or a square grid")
    return side, side


def _mask_bias(attn_mask, is_causal: bool, n: int, device) -> Callable | None:
    """An in-place bias from SDPA-style ``attn_mask`` / ``is_causal``, added per chunk of rows."""
    if is_causal:
        attn_mask = torch.ones(n, n, dtype=torch.bool, device=device).tril()
    if attn_mask is None:
        return None
    if attn_mask.dtype == torch.bool:
        attn_mask = torch.zeros(attn_mask.shape, device=device).masked_fill(~attn_mask, float("-inf"))
    mask = attn_mask.float()
    while mask.dim() < 4:
        mask = mask[None]

    def bias(rows: slice, scores_ghck: torch.Tensor) -> None:
        scores_ghck += mask[:, :, rows]

    return bias


@register_handler(SamAttention, parent_grid=True,
                  description="timm SAM ViT (samvit_*): windowed and global blocks, decomposed "
                              "relative positions or RoPE")
def sam_attention(module, args, kwargs, ctx: CallContext) -> QK:
    x = args[0] if args else kwargs["x"]
    g, wh, ww, _ = x.shape
    n, heads = wh * ww, module.num_heads
    dim = module.qkv.in_features
    qk = _linear_rows(module.qkv, x.reshape(g, n, -1), 2 * dim)
    q, k = qk.view(g, n, 2, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)  # (g, h, n, d)
    q, k = module.q_norm(q), module.k_norm(k)
    bias = rel_pos = None
    if module.use_rel_pos:
        rel_pos = decomposed_rel_pos(q.float(), module.rel_pos_h, module.rel_pos_w, (wh, ww))
        bias = rel_pos_bias(*rel_pos)
    elif module.rope is not None:
        rope = module.rope.get_embed()
        q, k = apply_rot_embed_cat(q, rope), apply_rot_embed_cat(k, rope)
    q, k = _to_f32(q, k)
    grid, tok = block_windows(ctx, g, (wh, ww), q.device)
    return QK(q * module.scale, k, bias, tok, tok, grid, grid, rel_pos=rel_pos)


def decomposed_rel_pos(q_ghnd: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor,
                       hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """MViTv2 / SAM decomposed relative positions (Li et al. 2022): the two factors of the bias.

    bias[q, (kh, kw)] = q . Rh[qh, kh] + q . Rw[qw, kw], with the *unscaled* query, as SAM does.
    Both terms are computed once per block for all groups, heads and queries, as timm's
    ``get_decomposed_rel_pos_bias`` does, a factor kw (kh) smaller than the scores.

    Returns
    -------
    rel_h_ghqk : (g, h, q, kh) and rel_w_ghqk : (g, h, q, kw), in ``q_ghnd``'s dtype.
    """
    h, w = hw
    g, heads, n, d = q_ghnd.shape
    r_h = get_rel_pos(h, h, rel_pos_h).to(q_ghnd.dtype)  # (qh, kh, d)
    r_w = get_rel_pos(w, w, rel_pos_w).to(q_ghnd.dtype)  # (qw, kw, d)
    q_ghyxd = q_ghnd.reshape(g, heads, h, w, d)
    rel_h_ghqk = torch.einsum("ghyxd,ykd->ghyxk", q_ghyxd, r_h).reshape(g, heads, n, h)
    rel_w_ghqk = torch.einsum("ghyxd,xkd->ghyxk", q_ghyxd, r_w).reshape(g, heads, n, w)
    return rel_h_ghqk, rel_w_ghqk


def rel_pos_bias(rel_h_ghqk: torch.Tensor, rel_w_ghqk: torch.Tensor) -> Callable:
    """The decomposed bias added per chunk of query rows: two broadcast adds in place."""
    g, heads, n, h = rel_h_ghqk.shape
    w = rel_w_ghqk.shape[-1]

    def bias(rows: slice, scores_ghck: torch.Tensor) -> None:
        s_ghcyx = scores_ghck.view(g, heads, -1, h, w)
        s_ghcyx += rel_h_ghqk[:, :, rows, :, None]
        s_ghcyx += rel_w_ghqk[:, :, rows, None, :]

    return bias


@register_handler(TinyVitAttention, parent_grid=True,
                  description="timm TinyViT (MobileSAM encoder): windowed attention with learned "
                              "attention biases")
def tiny_vit_attention(module, args, kwargs, ctx: CallContext) -> QK:
    x = args[0] if args else kwargs["x"]
    g, n, _ = x.shape
    qkv = module.qkv(module.norm(x)).view(g, n, module.num_heads, -1)
    q, k, _ = qkv.split([module.key_dim, module.key_dim, module.val_dim], dim=3)
    q, k = _to_f32(q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3))
    table_hqk = module.attention_biases.float()[:, module.attention_bias_idxs]  # once per block

    def bias(rows: slice, scores_ghck: torch.Tensor) -> None:
        scores_ghck += table_hqk[:, rows]

    gh, gw = ctx.grid()
    ws = int(ctx.parent.window_size)
    win = (gh, gw) if (gh, gw) == (ws, ws) else (ws, ws)
    grid, tok = block_windows(ctx, g, win, q.device)
    return QK(q * module.scale, k, bias, tok, tok, grid, grid)


@register_handler(MultiScaleAttention, parent_grid=True,
                  description="timm SAM 2 Hiera (HieraDet, sam2_hiera_*): windowed or global "
                              "attention with query pooling at stage changes")
def hieradet_attention(module, args, kwargs, ctx: CallContext) -> QK:
    x = args[0] if args else kwargs["x"]
    g, wh, ww, _ = x.shape
    heads = module.num_heads
    qk = _linear_rows(module.qkv, x, 2 * module.dim_out).reshape(g, wh * ww, 2, heads, -1)
    q, k = qk.unbind(2)  # (g, n, h, d)
    qh, qw = wh, ww
    if module.q_pool is not None:
        q = module.q_pool(q.reshape(g, wh, ww, -1).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        qh, qw = q.shape[1:3]
        q = q.reshape(g, qh * qw, heads, -1)
    q, k = _to_f32(q.transpose(1, 2), k.transpose(1, 2))
    grid, key_tok = block_windows(ctx, g, (wh, ww), q.device)
    sh, sw = wh // qh, ww // qw
    q_grid = (grid[0] // sh, grid[1] // sw)
    n_win = (math.ceil(grid[0] / wh), math.ceil(grid[1] / ww))
    query_tok = window_tokens(q_grid, (qh, qw), n_win, device=q.device)
    return QK(q * module.scale, k, None, key_tok, query_tok, grid, q_grid)


@register_handler(MaskUnitAttention, parent_grid=False,
                  description="timm Hiera (hiera_*): mask-unit or global attention over unrolled "
                              "tokens with query pooling")
def hiera_mask_unit_attention(module, args, kwargs, ctx: CallContext) -> QK:
    x = args[0] if args else kwargs["x"]
    b, n, _ = x.shape
    heads, hd, stride = module.heads, module.head_dim, module.q_stride
    nw = n // (stride * module.window_size) if module.use_mask_unit_attn else 1
    # unrolled token i*nw + w is slot i of mask unit w (timm's reshape(B, -1, num_windows, ...))
    qk = _linear_rows(module.qkv, x, 2 * module.dim_out).reshape(b, -1, nw, 2, heads, hd)
    q, k = qk.permute(3, 0, 2, 4, 1, 5).unbind(0)  # (b, nw, h, t, d)
    if stride > 1:
        q = q.reshape(b, nw, heads, stride, -1, hd).amax(dim=3)
    q, k = _to_f32(q.flatten(0, 1), k.flatten(0, 1))
    grid, tok_n = _hiera_key_grid(module, ctx, n)
    key_tok = tok_n.view(-1, nw).T.contiguous()
    if stride > 1:  # pooled queries: all real, on a coarser grid (rollout refuses them)
        s = math.isqrt(stride)
        return QK(q * module.scale, k, None, key_tok, torch.zeros(nw, q.shape[2], dtype=torch.long),
                  grid, (grid[0] // s, grid[1] // s))
    return QK(q * module.scale, k, None, key_tok, key_tok, grid, grid)


def _hiera_key_grid(module, ctx: CallContext, n: int) -> tuple[tuple[int, int], torch.Tensor]:
    """Grid position of each unrolled input token, from the model's own ``Reroll``.

    The input of block i is laid out like the output of block i - 1, so rerolling token indices
    with block i - 1's schedule gives, at each grid cell, the token that sits there.
    """
    blocks = getattr(ctx.root, "blocks", [])
    idx = next((i for i, blk in enumerate(blocks) if getattr(blk, "attn", None) is module), None)
    if idx is None or not hasattr(ctx.root, "reroll"):
        raise InputError("module", "a whole timm Hiera model (its Reroll places the unrolled tokens)",
                         f"{type(ctx.root).__name__} around {ctx.name!r}", "pass the Hiera model")
    cell_tok = ctx.root.reroll(torch.arange(n).view(1, n, 1), max(idx - 1, 0))[0, ..., 0]
    tok_n = torch.empty(n, dtype=torch.long)
    tok_n[cell_tok.flatten()] = torch.arange(n)
    return (int(cell_tok.shape[0]), int(cell_tok.shape[1])), tok_n
