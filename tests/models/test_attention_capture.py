"""SAM's fused attention handing q, k and its row log-sum-exp to the map handler.

References: the handler that recomputes q and k from the block input (timm's class, checked
against naive loops in test_attention_reference.py), ``torch.logsumexp`` of explicit scores,
and the broadcast add for the bias written by a matrix product.
"""

from __future__ import annotations

import copy

import pytest
import timm
import torch
import torch.nn.functional as F

from cortexalign.models.attention import attention_maps
from cortexalign.models.attention._sdpa_lse import lse_rows, sdpa_with_lse
from cortexalign.models.sam import SamFusedAttention, use_fused_attention
from cortexalign.models.sam._attention import _bias_by_matmul

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _tiny_sam(img: int = 160) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("samvit_base_patch16", img_size=img, depth=3, embed_dim=64,
                             num_heads=2, global_attn_indexes=(1,), window_size=4).eval()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("hw", [(4, 4), (3, 5), (14, 14)])
def test_bias_by_matmul_equals_the_broadcast_add_bit_for_bit(dtype, hw):
    torch.manual_seed(0)
    kh, kw = hw
    rel_h, rel_w = torch.randn(2, 3, 20, kh).to(dtype), torch.randn(2, 3, 20, kw).to(dtype)
    width = -(-kh * kw // 8) * 8
    buf = torch.full((2, 3, 20, width), float("nan"), dtype=dtype)
    _bias_by_matmul(rel_h, rel_w, buf)
    want = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(2, 3, 20, kh * kw)
    assert torch.equal(buf[..., :kh * kw], want)
    assert torch.equal(buf[..., kh * kw:], torch.zeros_like(buf[..., kh * kw:]))  # no NaN left


def test_sdpa_with_lse_is_plain_sdpa_without_a_statistic_on_the_cpu():
    q, k, v = (torch.randn(2, 3, 10, 8) for _ in range(3))
    with torch.no_grad():
        out, lse = sdpa_with_lse(q, k, v)
    assert lse is None
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))


def test_lse_rows_reads_padded_and_trailing_axis_layouts():
    rows = torch.randn(2, 3, 10)
    padded = torch.cat([rows, torch.full((2, 3, 22), float("inf"))], -1)  # rows to 32
    assert torch.equal(lse_rows(padded, 2, 3, 10), rows)
    assert torch.equal(lse_rows(rows[..., None], 2, 3, 10), rows)  # (b, h, n, 1)
    assert lse_rows(rows[:, :2], 2, 3, 10) is None  # heads missing
    assert lse_rows(rows[..., :9], 2, 3, 10) is None  # rows missing
    assert lse_rows(rows.half(), 2, 3, 10) is None  # not float32


@pytest.mark.parametrize("bf16", [False, True])
def test_maps_from_the_captured_forward_equal_recomputed_maps(bf16):
    timm_model = _tiny_sam()
    fused = use_fused_attention(copy.deepcopy(timm_model))
    x = torch.randn(2, 3, 160, 160)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for red in ("received", "per_head", "full"):
            a = attention_maps(timm_model, x, reduction=red)  # q, k recomputed from the input
            b = attention_maps(fused, x, reduction=red)  # q, k kept by the forward
            tol = 2e-2 if bf16 else 1e-6
            for name in a:
                torch.testing.assert_close(b[name], a[name], atol=tol, rtol=tol)


def test_capture_flag_and_stash_are_cleared_after_the_call_and_after_an_error():
    model = use_fused_attention(_tiny_sam())
    attns = [m for m in model.modules() if isinstance(m, SamFusedAttention)]
    attention_maps(model, torch.randn(1, 3, 160, 160))
    assert all(not a.maps_capture and "_maps_stash" not in a.__dict__ for a in attns)

    def boom(mod, args, output):
        raise RuntimeError("boom")

    handle = model.blocks[2].register_forward_hook(boom)  # after blocks 0-1 kept their q, k
    with pytest.raises(RuntimeError, match="boom"):
        attention_maps(model, torch.randn(1, 3, 160, 160))
    handle.remove()
    assert all(not a.maps_capture and "_maps_stash" not in a.__dict__ for a in attns)
    assert "maps_capture" not in attns[0].__dict__  # the class default again


def test_forward_outside_maps_keeps_nothing():
    model = use_fused_attention(_tiny_sam())
    with torch.inference_mode():
        model(torch.randn(1, 3, 160, 160))
    assert not any("_maps_stash" in m.__dict__ for m in model.modules())


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_bias", [False, True])
def test_sdpa_with_lse_on_gpu_returns_the_row_log_sum_exp(dtype, with_bias):
    torch.manual_seed(0)
    b, h, n, d = 2, 4, 300, 64
    q, k, v = (torch.randn(b, h, n, d, device="cuda").to(dtype) for _ in range(3))
    bias = None
    if with_bias:
        bias = torch.zeros(b, h, n, 304, device="cuda", dtype=dtype)[..., :n]
        bias.copy_(torch.randn(b, h, n, n, device="cuda"))
    with torch.inference_mode():
        out, lse = sdpa_with_lse(q, k, v, bias)
    assert lse is not None, "no fused kernel returned the statistic on this GPU"
    scores = (q.float() @ k.float().transpose(-1, -2)) / d ** 0.5
    if bias is not None:
        scores = scores + bias.float()
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(lse, torch.logsumexp(scores, -1), atol=tol, rtol=tol)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    torch.testing.assert_close(out.float(), want.float(), atol=tol, rtol=tol)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("bf16", [False, True])
def test_gpu_maps_with_the_kernels_statistic_equal_recomputed_chunked_maps(bf16):
    timm_model = _tiny_sam(256).cuda()
    fused = use_fused_attention(copy.deepcopy(timm_model))
    x = torch.randn(2, 3, 256, 256, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        a = attention_maps(timm_model, x, backend="chunked")
        b = attention_maps(fused, x, backend="triton")
    tol = 2e-2 if bf16 else 1e-5
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=tol * a[name].abs().max().item(), rtol=tol)
