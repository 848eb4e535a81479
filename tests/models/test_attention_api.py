"""Contract of attention_maps: the model is left as it was, chunking changes nothing, errors are clear."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from timm.layers import Attention as TimmAttention
from timm.models.hiera import MaskUnitAttention
from timm.models.hieradet_sam2 import MultiScaleAttention
from timm.models.tiny_vit import Attention as TinyVitAttention
from timm.models.vision_transformer_sam import Attention as SamAttention
from timm.models.vision_transformer_sam import Block as SamBlock

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.models.attention import (
    ATTENTION_HANDLERS,
    REDUCTIONS,
    attention_maps,
    conv_maps,
    list_attention_blocks,
)
from cortexalign.models.sam import SamFusedAttention, use_fused_attention


def _vit():
    return timm.create_model("vit_tiny_patch16_224", img_size=32, depth=2), torch.randn(2, 3, 32, 32)


def _sam():
    m = timm.create_model("samvit_base_patch16", img_size=80, embed_dim=32, depth=4, num_heads=2,
                          window_size=2, global_attn_indexes=(1, 3), neck_chans=8)
    with torch.no_grad():
        for blk in m.blocks:
            blk.attn.rel_pos_h.normal_(0, 0.5)
            blk.attn.rel_pos_w.normal_(0, 0.5)
    return m, torch.randn(2, 3, 80, 80)


def _sam_fused():
    model, x = _sam()
    return use_fused_attention(model), x


def _tiny_vit():
    m = timm.create_model("tiny_vit_5m_224", embed_dims=[8, 16, 16, 32], depths=[1, 1, 2, 1],
                          num_heads=[1, 2, 2, 4], window_sizes=[2, 2, 3, 2])
    return m, torch.randn(2, 3, 64, 64)


def _hiera():
    m = timm.create_model("sam2_hiera_tiny", embed_dim=8, num_heads=1, stages=(1, 2, 3, 1),
                          global_att_blocks=(4, 5), window_spec=(4, 2, 2, 2), global_pos_size=(2, 2))
    return m, torch.randn(2, 3, 64, 64)


def _hiera_mae():
    m = timm.create_model("hiera_tiny_224", img_size=64, embed_dim=8, num_heads=1,
                          stages=(1, 2, 2, 1), mask_unit_size=(4, 4))
    return m, torch.randn(2, 3, 64, 64)


FACTORIES = {TimmAttention: _vit, SamAttention: _sam, SamFusedAttention: _sam_fused,
             TinyVitAttention: _tiny_vit,
             MultiScaleAttention: _hiera, MaskUnitAttention: _hiera_mae}


def test_every_handler_has_a_tiny_model():
    assert set(FACTORIES) == set(ATTENTION_HANDLERS)


def _build(cls):
    torch.manual_seed(0)
    model, x = FACTORIES[cls]()
    return model.eval(), x


def _hook_state(model):
    return [(n, len(m._forward_hooks), len(m._forward_pre_hooks), "forward" in vars(m),
             getattr(m, "fused_attn", None)) for n, m in model.named_modules()]


@pytest.mark.parametrize("cls", list(ATTENTION_HANDLERS), ids=lambda c: c.__module__)
def test_model_is_exactly_as_before(cls):
    model, x = _build(cls)
    with torch.no_grad():
        before = model(x)
    state = _hook_state(model)
    maps = attention_maps(model, x)
    with torch.no_grad():
        after = model(x)
    assert torch.equal(before, after)
    assert _hook_state(model) == state
    assert list(maps) == list_attention_blocks(model)


@pytest.mark.parametrize("cls", list(ATTENTION_HANDLERS), ids=lambda c: c.__module__)
def test_probability_rows_sum_to_one_and_received_maps_are_finite(cls):
    model, x = _build(cls)
    for name, p in attention_maps(model, x, reduction="full").items():
        torch.testing.assert_close(p.sum(-1), torch.ones(p.shape[:-1]), atol=1e-5, rtol=0, msg=name)
        assert (p >= 0).all()
    for m in attention_maps(model, x).values():
        assert m.shape[0] == 2 and torch.isfinite(m).all()


def test_received_sums_to_one_per_window_without_padding():
    model, x = _build(SamAttention)
    x = x[:, :, :64, :64]  # 4x4 grid, 2x2 windows: no padding
    maps = attention_maps(model, x)
    torch.testing.assert_close(maps["blocks.1.attn"].sum((1, 2)), torch.ones(2))  # global
    torch.testing.assert_close(maps["blocks.0.attn"].sum((1, 2)), torch.full((2,), 4.0))  # 4 windows


@pytest.mark.parametrize("cls", [TimmAttention, SamAttention, TinyVitAttention])
def test_chunked_equals_unchunked(cls):
    model, x = _build(cls)
    for reduction in ("per_head", "full"):
        whole = attention_maps(model, x, reduction=reduction, chunk_size=10_000)
        for chunk in (1, None):
            got = attention_maps(model, x, reduction=reduction, chunk_size=chunk)
            for name in whole:
                torch.testing.assert_close(got[name], whole[name], atol=1e-6, rtol=0)


def test_one_row_chunks_under_a_tiny_budget_change_nothing(monkeypatch):
    import cortexalign.models.attention._reduce as reduce_mod

    model, x = _build(SamAttention)
    whole = attention_maps(model, x, reduction="per_head")
    monkeypatch.setattr(reduce_mod, "CHUNK_ELEMENTS", 8)  # forces one query row (of all groups) per chunk
    got = attention_maps(model, x, reduction="per_head")
    for name in whole:
        torch.testing.assert_close(got[name], whole[name], atol=1e-6, rtol=0)


def test_all_windows_and_heads_are_scored_in_one_matmul_per_row_chunk(monkeypatch):
    """Batched scoring: each chunk holds every group (images x windows) and head; only rows split."""
    import cortexalign.models.attention._reduce as reduce_mod

    model, x = _build(SamAttention)  # blocks.0: 5x5 grid padded to 9 windows of 2x2, batch 2
    shapes = []
    real_matmul = torch.matmul

    def counting_matmul(a, b):
        shapes.append(tuple(a.shape))
        return real_matmul(a, b)

    monkeypatch.setattr(reduce_mod.torch, "matmul", counting_matmul)
    attention_maps(model, x, blocks=["blocks.0.attn"], chunk_size=3)
    monkeypatch.undo()
    heads = model.blocks[0].attn.num_heads
    d = model.blocks[0].attn.qkv.in_features // heads
    assert shapes == [(2 * 9, heads, 3, d), (2 * 9, heads, 1, d)]  # 4 query rows per window: 3 + 1


@pytest.mark.parametrize("reduction", ["received", "per_head", "full", "rollout"])
def test_bf16_autocast_gives_float32_maps_close_to_float32(reduction):
    model, x = _build(SamAttention)
    ref = attention_maps(model, x, reduction=reduction)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = attention_maps(model, x, reduction=reduction)
    for name in ref:
        assert got[name].dtype == torch.float32, name
        torch.testing.assert_close(got[name], ref[name], atol=1e-2, rtol=0, msg=name)


def test_rollout_chunked_and_over_windowed_blocks_matches_block_diagonal_formula():
    model, x = _build(SamAttention)
    names = ["blocks.0.attn", "blocks.1.attn"]  # windowed (padded 5x5 grid in 2x2 windows), global
    full = attention_maps(model, x, blocks=names, reduction="full")
    gh = gw = 5
    a = []
    for name in names:
        p = full[name].double().mean(1)  # (g, q, k)
        n_win = p.shape[0] // 2
        side = int(np.ceil(gh / 2)) if n_win > 1 else 1
        win = 2 if n_win > 1 else gh
        mat = torch.zeros(2, gh * gw, gh * gw, dtype=torch.float64)
        for g in range(p.shape[0]):
            img, w = divmod(g, n_win)
            wy, wx = divmod(w, side)
            toks = [(wy * win + r) * gw + wx * win + c if wy * win + r < gh and wx * win + c < gw
                    else -1 for r in range(win) for c in range(win)]
            for i, ti in enumerate(toks):
                for j, tj in enumerate(toks):
                    if ti >= 0 and tj >= 0:
                        mat[img, ti, tj] = p[g, i, j]
        mat = mat / mat.sum(-1, keepdim=True)
        a.append(0.5 * mat + 0.5 * torch.eye(gh * gw, dtype=torch.float64))
    expect = (a[1] @ a[0]).mean(1).reshape(2, gh, gw)
    for chunk in (None, 2):
        got = attention_maps(model, x, blocks=names, reduction="rollout", chunk_size=chunk)
        torch.testing.assert_close(got["blocks.1.attn"].double(), expect, atol=1e-5, rtol=0)
    with pytest.raises(InputError, match="block-diagonal"):
        attention_maps(model, x, blocks=names, reduction="rollout", rollout_max_tokens=4)


def test_rollout_defaults_to_global_blocks():
    model, x = _build(SamAttention)
    assert list(attention_maps(model, x, reduction="rollout")) == ["blocks.1.attn", "blocks.3.attn"]


def test_planted_token_tiles_back_to_its_window():
    """q constant, k large only at a planted token: its window attends to it, others are uniform."""
    torch.manual_seed(0)
    dim, ws = 8, 4
    blk = SamBlock(dim, num_heads=1, window_size=ws, use_rel_pos=False).eval()
    with torch.no_grad():
        blk.attn.qkv.weight.zero_()
        blk.attn.qkv.bias.zero_()
        blk.attn.qkv.bias[:dim] = 1.0  # q = 1
        blk.attn.qkv.weight[dim, 0] = 50.0  # k_0 = 50 * normalised channel 0
    x = torch.zeros(1, 6, 6, dim)  # 6x6 grid in 4x4 windows: three of the four windows are padded
    planted = (5, 1)  # bottom-left window, rows 4-5 only
    x[0, planted[0], planted[1], 0] = 1.0
    got = attention_maps(blk, x)["attn"][0]
    assert got.shape == (6, 6)
    assert got[planted] > 0.99  # every real query of that window looks at it
    bottom_left = got[4:, :4].clone()
    bottom_left[planted[0] - 4, planted[1]] = 0
    assert bottom_left.max() < 1e-3
    uniform = torch.full((), 1.0 / ws**2)
    torch.testing.assert_close(got[:4, :4], uniform.expand(4, 4))  # no padding in this window
    torch.testing.assert_close(got[:4, 4:], uniform.expand(4, 2))  # padding keys share the mass
    torch.testing.assert_close(got[4:, 4:], uniform.expand(2, 2))


# ----------------------------------------------------------------------------- errors
def test_exception_inside_capture_leaves_model_untouched():
    model, x = _build(SamAttention)
    state = _hook_state(model)
    with pytest.raises(InputError, match="CLS"):
        attention_maps(model, x, reduction="cls")  # raised inside a hook, mid-forward
    assert _hook_state(model) == state


def test_exception_from_the_model_forward_removes_hooks():
    vit, x = _build(TimmAttention)

    class Boom(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model = torch.nn.Sequential(vit.patch_embed, vit.blocks, Boom())
    state = _hook_state(model)
    with pytest.raises(RuntimeError, match="boom"):
        attention_maps(model, x)
    assert _hook_state(model) == state


def test_block_without_attention_names_it_and_lists_the_blocks():
    model, x = _build(TimmAttention)
    with pytest.raises(InputError) as err:
        attention_maps(model, x, blocks=["blocks.0.mlp"])
    assert "'blocks.0.mlp'" in str(err.value) and "blocks.1.attn" in str(err.value)
    with pytest.raises(UnknownNameError, match="blocks.0.attn"):
        attention_maps(model, x, blocks=["blocks.0.atn"])


def test_parent_block_name_resolves_and_keys_the_result():
    model, x = _build(TimmAttention)
    got = attention_maps(model, x, blocks=["blocks.1"])
    torch.testing.assert_close(got["blocks.1"], attention_maps(model, x)["blocks.1.attn"])


def test_unsupported_attention_class_is_named():
    class MyAttention(torch.nn.Module):
        def forward(self, x):
            return x

    model = torch.nn.Sequential(MyAttention())
    with pytest.raises(InputError) as err:
        list_attention_blocks(model)
    assert "MyAttention" in str(err.value) and "vision_transformer_sam.Attention" in str(err.value)


@pytest.mark.parametrize("kwargs, exc", [
    ({"reduction": "recieved"}, UnknownNameError),
    ({"chunk_size": 0}, InputError),
    ({"blocks": "blocks.0.attn"}, InputError),
    ({"blocks": []}, InputError),
    ({"blocks": ["blocks.1", "blocks.1.attn"]}, InputError),
])
def test_bad_arguments(kwargs, exc):
    model, x = _build(TimmAttention)
    with pytest.raises(exc):
        attention_maps(model, x, **kwargs)
    with pytest.raises(InputError, match="4-D"):
        attention_maps(model, x[0])


def test_rollout_on_an_all_windowed_model_asks_for_blocks():
    model, x = _build(TinyVitAttention)
    with pytest.raises(InputError, match="windowed"):
        attention_maps(model, x, reduction="rollout")


def test_reductions_are_all_documented():
    assert set(REDUCTIONS) == {"received", "per_head", "cls", "rollout", "full"}
    assert all(fn.__doc__ for fn in REDUCTIONS.values())


# ----------------------------------------------------------------------------- conv maps
def test_conv_maps_match_explicit_loops():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(2, 5, 3, 4))
    got = conv_maps(torch.tensor(acts), "mean_abs").numpy()
    np.testing.assert_allclose(got, np.abs(acts).mean(axis=1), atol=1e-6)
    got = conv_maps(torch.tensor(acts), "topk", k=2).numpy()
    for b in range(2):
        order = np.argsort(-acts[b].mean(axis=(1, 2)))[:2]
        np.testing.assert_allclose(got[b], acts[b, order].mean(axis=0), atol=1e-6)


def test_conv_maps_bad_input():
    with pytest.raises(InputError, match="acts_bchw"):
        conv_maps(torch.zeros(2, 3, 4))
    with pytest.raises(InputError, match="k"):
        conv_maps(torch.zeros(1, 3, 2, 2), "topk", k=4)
    with pytest.raises(UnknownNameError):
        conv_maps(torch.zeros(1, 3, 2, 2), "max")


@pytest.mark.parametrize("cls", [MultiScaleAttention, MaskUnitAttention])
def test_hiera_rollout_uses_global_unpooled_blocks_and_refuses_pooled_ones(cls):
    model, x = _build(cls)
    got = attention_maps(model, x, reduction="rollout")
    assert got and all(m.shape[0] == 2 for m in got.values())
    pooled = [n for n in list_attention_blocks(model) if n.startswith("blocks.1.")]
    with pytest.raises(InputError, match="pool"):
        attention_maps(model, x, blocks=pooled, reduction="rollout")


@pytest.mark.parametrize("name, kwargs, hw, has_cls", [
    ("vit_base_patch16_clip_224", dict(img_size=32, embed_dim=32, depth=1, num_heads=2), (32, 32), True),
    ("deit_tiny_distilled_patch16_224", dict(img_size=32, depth=1), (32, 32), True),  # cls + dist
    ("vit_small_patch16_224", dict(img_size=32, depth=1, reg_tokens=4, class_token=False,
                                   global_pool="avg"), (32, 32), False),
    ("vit_tiny_patch16_224", dict(img_size=48, depth=1, dynamic_img_size=True), (32, 48), True),
])
def test_vit_variants_drop_prefix_tokens_and_keep_the_grid(name, kwargs, hw, has_cls):
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).eval()
    x = torch.randn(1, 3, *hw)
    p = model.num_prefix_tokens
    full = attention_maps(model, x, reduction="full")["blocks.0.attn"]
    grid = (hw[0] // 16, hw[1] // 16)
    rec = attention_maps(model, x)["blocks.0.attn"]
    torch.testing.assert_close(rec[0], full[0].mean((0, 1))[p:].reshape(grid))
    if has_cls:
        got = attention_maps(model, x, reduction="cls")["blocks.0.attn"]
        torch.testing.assert_close(got[0], full[0, :, 0, p:].mean(0).reshape(grid))
    else:
        with pytest.raises(InputError, match="CLS"):
            attention_maps(model, x, reduction="cls")
