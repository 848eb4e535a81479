"""Attention maps against naive, unfused computations written from the math on the same weights.

Each reference captures a block's input with its own hook, then recomputes q, k, the score terms
and the softmax with explicit loops over windows and relative positions; none of it calls
cortexalign's code.
"""

from __future__ import annotations

import math

import pytest
import timm
import torch
import torch.nn.functional as F

from cortexalign.models.attention import attention_maps

ATOL = 1e-5


def _capture_inputs(model, names, x):
    """Inputs of the named submodules during one forward pass."""
    got, handles = {}, []
    for n in names:
        def pre(mod, args, n=n):
            got[n] = args[0].detach().clone()
        handles.append(model.get_submodule(n).register_forward_pre_hook(pre))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return got


def _softmax_rows(scores):
    return torch.softmax(scores.double(), dim=-1)


def _received_from_windows(p_list, tok_list, n_tokens):
    """Mean over real queries, then scatter real keys to token space: explicit per-window loop."""
    out = torch.zeros(p_list[0].shape[0], n_tokens, dtype=torch.float64)  # (h, t)
    for p_hqk, (q_tok, k_tok) in zip(p_list, tok_list, strict=True):
        real_q = [i for i, t in enumerate(q_tok) if t >= 0]
        col = p_hqk[:, real_q, :].mean(dim=1)
        for j, t in enumerate(k_tok):
            if t >= 0:
                out[:, t] = col[:, j]
    return out


# ----------------------------------------------------------------------------- timm ViT
def vit_reference(model, x):
    names = [f"blocks.{i}.attn" for i in range(len(model.blocks))]
    inputs = _capture_inputs(model, names, x)
    prefix = model.num_prefix_tokens
    out = {}
    for n in names:
        attn, xin = model.get_submodule(n), inputs[n].double()
        w, b = attn.qkv.weight.double(), attn.qkv.bias.double()
        qkv = xin @ w.T + b
        bsz, t, _ = xin.shape
        hd = attn.head_dim
        q = qkv[..., : attn.attn_dim].reshape(bsz, t, -1, hd).transpose(1, 2)
        k = qkv[..., attn.attn_dim: 2 * attn.attn_dim].reshape(bsz, t, -1, hd).transpose(1, 2)
        p = _softmax_rows(q @ k.transpose(-1, -2) / math.sqrt(hd))  # (b, h, t, t)
        out[n] = p
    return out, prefix


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", img_size=48, depth=3).eval()
    return model, torch.randn(2, 3, 48, 48)


def test_vit_received_per_head_cls_full_match_naive(vit):
    model, x = vit
    ref, prefix = vit_reference(model, x)
    rec = attention_maps(model, x)
    per_head = attention_maps(model, x, reduction="per_head")
    cls_maps = attention_maps(model, x, reduction="cls")
    full = attention_maps(model, x, reduction="full")
    for n, p in ref.items():
        expect_ph = p.mean(dim=2)[:, :, prefix:].reshape(2, -1, 3, 3)
        torch.testing.assert_close(per_head[n].double(), expect_ph, atol=ATOL, rtol=0)
        torch.testing.assert_close(rec[n].double(), expect_ph.mean(1), atol=ATOL, rtol=0)
        expect_cls = p[:, :, 0, prefix:].mean(1).reshape(2, 3, 3)
        torch.testing.assert_close(cls_maps[n].double(), expect_cls, atol=ATOL, rtol=0)
        torch.testing.assert_close(full[n].double(), p, atol=ATOL, rtol=0)
        torch.testing.assert_close(full[n].sum(-1), torch.ones(p.shape[:-1]), atol=1e-5, rtol=0)


def test_rollout_matches_explicit_formula_on_two_blocks():
    torch.manual_seed(1)
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, depth=2).eval()
    x = torch.randn(3, 3, 32, 32)
    ref, prefix = vit_reference(model, x)
    eye = torch.eye(ref["blocks.0.attn"].shape[-1], dtype=torch.float64)
    a1 = 0.5 * ref["blocks.0.attn"].mean(1) + 0.5 * eye
    a2 = 0.5 * ref["blocks.1.attn"].mean(1) + 0.5 * eye
    got = attention_maps(model, x, reduction="rollout")
    torch.testing.assert_close(got["blocks.0.attn"].double(), a1[:, 0, prefix:].reshape(3, 2, 2),
                               atol=ATOL, rtol=0)
    torch.testing.assert_close(got["blocks.1.attn"].double(), (a2 @ a1)[:, 0, prefix:].reshape(3, 2, 2),
                               atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------- SAM ViT
def sam_model(img=80):
    torch.manual_seed(2)
    model = timm.create_model("samvit_base_patch16", img_size=img, embed_dim=32, depth=4, num_heads=2,
                              window_size=2, global_attn_indexes=(1, 3), neck_chans=8).eval()
    with torch.no_grad():  # SAM initialises relative positions at zero: make them matter
        for blk in model.blocks:
            blk.attn.rel_pos_h.normal_(0, 0.5)
            blk.attn.rel_pos_w.normal_(0, 0.5)
    return model


def sam_block_reference(blk, x_bhwc):
    """Per image, per head received map (b, h, H*W) of one SAM block, from explicit loops."""
    attn = blk.attn
    xn = blk.norm1(x_bhwc).double()
    b, gh, gw, c = xn.shape
    ws = blk.window_size or max(gh, gw)
    win = (ws, ws) if blk.window_size else (gh, gw)
    nh, nw = math.ceil(gh / win[0]), math.ceil(gw / win[1])
    xp = F.pad(xn, (0, 0, 0, nw * win[1] - gw, 0, nh * win[0] - gh))
    w, bias = attn.qkv.weight.double(), attn.qkv.bias.double()
    heads, hd = attn.num_heads, attn.head_dim
    rh, rw = attn.rel_pos_h.double(), attn.rel_pos_w.double()
    maps = []
    for i in range(b):
        p_list, tok_list = [], []
        for wy in range(nh):
            for wx in range(nw):
                xw = xp[i, wy * win[0]:(wy + 1) * win[0], wx * win[1]:(wx + 1) * win[1]].reshape(-1, c)
                qkv = xw @ w.T + bias
                q = qkv[:, :c].reshape(-1, heads, hd).transpose(0, 1)
                k = qkv[:, c:2 * c].reshape(-1, heads, hd).transpose(0, 1)
                pos = [(r, s) for r in range(win[0]) for s in range(win[1])]
                rel = torch.zeros(heads, len(pos), len(pos), dtype=torch.float64)
                for a, (qr, qc) in enumerate(pos):
                    for bb, (kr, kc) in enumerate(pos):
                        rel[:, a, bb] = (q[:, a] @ rh[qr - kr + win[0] - 1]
                                         + q[:, a] @ rw[qc - kc + win[1] - 1])
                p_list.append(_softmax_rows(q @ k.transpose(-1, -2) / math.sqrt(hd) + rel))
                toks = []
                for r, s in pos:
                    gr, gc = wy * win[0] + r, wx * win[1] + s
                    toks.append(gr * gw + gc if gr < gh and gc < gw else -1)
                tok_list.append((toks, toks))
        maps.append(_received_from_windows(p_list, tok_list, gh * gw))
    return torch.stack(maps).reshape(b, heads, gh, gw)


def test_sam_windowed_and_global_blocks_match_naive():
    model = sam_model(80)  # 5x5 grid, 2x2 windows: padded windows on the edges
    x = torch.randn(2, 3, 80, 80)
    names = [f"blocks.{i}" for i in range(4)]
    inputs = _capture_inputs(model, names, x)
    got = attention_maps(model, x, reduction="per_head")
    for i, n in enumerate(names):
        expect = sam_block_reference(model.blocks[i], inputs[n])
        torch.testing.assert_close(got[f"{n}.attn"].double(), expect, atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------- TinyViT
def test_tiny_vit_windows_with_attention_biases_match_naive():
    torch.manual_seed(3)
    model = timm.create_model("tiny_vit_5m_224", embed_dims=[8, 16, 16, 32], depths=[1, 1, 2, 1],
                              num_heads=[1, 2, 2, 4], window_sizes=[2, 2, 3, 2]).eval()
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "attention_biases"):
                m.attention_biases.normal_(0, 1.0)
    x = torch.randn(2, 3, 64, 64)
    names = ["stages.1.blocks.0", "stages.2.blocks.0", "stages.3.blocks.0"]
    inputs = _capture_inputs(model, names, x)
    got = attention_maps(model, x, blocks=names, reduction="per_head")
    for n in names:
        blk, xin = model.get_submodule(n), inputs[n].double()
        attn = blk.attn
        b, gh, gw, c = xin.shape
        ws = blk.window_size
        nh, nw = math.ceil(gh / ws), math.ceil(gw / ws)
        xp = F.pad(xin, (0, 0, 0, nw * ws - gw, 0, nh * ws - gh))
        table = attn.attention_biases[:, attn.attention_bias_idxs].double()
        per_image = []
        for i in range(b):
            p_list, tok_list = [], []
            for wy in range(nh):
                for wx in range(nw):
                    xw = xp[i, wy * ws:(wy + 1) * ws, wx * ws:(wx + 1) * ws].reshape(-1, c)
                    xw = F.layer_norm(xw, (c,), attn.norm.weight.double(), attn.norm.bias.double(),
                                      attn.norm.eps)
                    qkv = (xw @ attn.qkv.weight.double().T + attn.qkv.bias.double())
                    qkv = qkv.reshape(ws * ws, attn.num_heads, -1).transpose(0, 1)
                    q, k = qkv[..., :attn.key_dim], qkv[..., attn.key_dim:2 * attn.key_dim]
                    p_list.append(_softmax_rows(q @ k.transpose(-1, -2) * attn.key_dim ** -0.5 + table))
                    toks = [(wy * ws + r) * gw + wx * ws + s if wy * ws + r < gh and wx * ws + s < gw
                            else -1 for r in range(ws) for s in range(ws)]
                    tok_list.append((toks, toks))
            per_image.append(_received_from_windows(p_list, tok_list, gh * gw))
        expect = torch.stack(per_image).reshape(b, attn.num_heads, gh, gw)
        torch.testing.assert_close(got[n].double(), expect, atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------- SAM 2 Hiera
def test_sam2_hiera_pooled_and_windowed_blocks_match_naive():
    torch.manual_seed(4)
    model = timm.create_model("sam2_hiera_tiny", embed_dim=8, num_heads=1, stages=(1, 2, 3, 1),
                              global_att_blocks=(4, 5), window_spec=(4, 2, 2, 2),
                              global_pos_size=(2, 2)).eval()
    x = torch.randn(2, 3, 64, 64)
    names = [f"blocks.{i}" for i in range(7)]
    inputs = _capture_inputs(model, names, x)
    got = attention_maps(model, x, reduction="per_head")
    for n in names:
        blk, attn = model.get_submodule(n), model.get_submodule(n).attn
        xn = blk.norm1(inputs[n]).double()
        b, gh, gw, c = xn.shape
        win = blk.window_size if blk.is_windowed else (gh, gw)
        stride = blk.q_stride or (1, 1)
        heads, hd = attn.num_heads, attn.dim_out // attn.num_heads
        w, bias = attn.qkv.weight.double(), attn.qkv.bias.double()
        per_image = []
        for i in range(b):
            p_list, tok_list = [], []
            for wy in range(gh // win[0]):
                for wx in range(gw // win[1]):
                    xw = xn[i, wy * win[0]:(wy + 1) * win[0], wx * win[1]:(wx + 1) * win[1]]
                    qkv = xw @ w.T + bias  # (wh, ww, 3 * dim_out)
                    q = qkv[..., :attn.dim_out].permute(2, 0, 1)[None]
                    q = F.max_pool2d(q, stride, stride)[0].reshape(heads, hd, -1).transpose(1, 2)
                    k = qkv[..., attn.dim_out:2 * attn.dim_out].reshape(-1, heads, hd).transpose(0, 1)
                    p_list.append(_softmax_rows(q @ k.transpose(-1, -2) / math.sqrt(hd)))
                    toks = [(wy * win[0] + r) * gw + wx * win[1] + s
                            for r in range(win[0]) for s in range(win[1])]
                    tok_list.append(([0] * q.shape[1], toks))
            per_image.append(_received_from_windows(p_list, tok_list, gh * gw))
        expect = torch.stack(per_image).reshape(b, heads, gh, gw)
        torch.testing.assert_close(got[f"{n}.attn"].double(), expect, atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------- Hiera (mask units)
def test_hiera_mask_unit_attention_matches_naive_and_units_are_contiguous():
    torch.manual_seed(5)
    model = timm.create_model("hiera_tiny_224", img_size=64, embed_dim=8, num_heads=1,
                              stages=(1, 2, 2, 1), mask_unit_size=(4, 4)).eval()
    x = torch.randn(2, 3, 64, 64)
    names = ["blocks.0", "blocks.1"]  # stage-0 layout: placement from Unroll, not Reroll
    inputs = _capture_inputs(model, names, x)
    got = attention_maps(model, x, reduction="per_head")
    gh = gw = 16
    where = model.unroll(torch.arange(gh * gw, dtype=torch.float64).view(1, -1, 1))[0, :, 0].long()
    for n in names:
        blk, attn = model.get_submodule(n), model.get_submodule(n).attn
        xn = blk.norm1(inputs[n]).double()
        b, t, _ = xn.shape
        nw = t // (attn.q_stride * attn.window_size)
        heads, hd = attn.heads, attn.head_dim
        w, bias = attn.qkv.weight.double(), attn.qkv.bias.double()
        per_image = []
        for i in range(b):
            p_list, tok_list = [], []
            for unit in range(nw):
                members = list(range(unit, t, nw))  # unrolled token j*nw + unit
                qkv = xn[i, members] @ w.T + bias
                q = qkv[:, :attn.dim_out].reshape(-1, heads, hd).transpose(0, 1)
                k = qkv[:, attn.dim_out:2 * attn.dim_out].reshape(-1, heads, hd).transpose(0, 1)
                q = q.reshape(heads, attn.q_stride, -1, hd).amax(dim=1)
                p_list.append(_softmax_rows(q @ k.transpose(-1, -2) / math.sqrt(hd)))
                tok_list.append(([0] * q.shape[1], [int(where[j]) for j in members]))
            per_image.append(_received_from_windows(p_list, tok_list, gh * gw))
        expect = torch.stack(per_image).reshape(b, heads, gh, gw)
        torch.testing.assert_close(got[f"{n}.attn"].double(), expect, atol=ATOL, rtol=0)
    # every mask unit is a contiguous tile of the grid, so each tile's received mass is 1
    maps = attention_maps(model, x)
    for n, unit in [("blocks.0.attn", 4), ("blocks.2.attn", 2), ("blocks.3.attn", 2)]:
        m = maps[n]
        tiles = m.reshape(2, m.shape[1] // unit, unit, m.shape[2] // unit, unit).sum((2, 4))
        torch.testing.assert_close(tiles, torch.ones_like(tiles), atol=1e-5, rtol=0)
