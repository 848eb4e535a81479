"""Fused paths: SAM attention with a fusable SDPA call, and the Triton received-map kernel.

The kernel's logic runs on the CPU under ``TRITON_INTERPRET=1`` (in a subprocess: the flag is read
when Triton is imported) against an explicit formula and against the chunked path, which the
reference tests check against naive loops. The interpreter cannot multiply bfloat16 (NumPy has no
such type), so reduced precision is checked with float16 there and with bfloat16 on a GPU.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import timm
import torch
from timm.models.vision_transformer_sam import Attention as TimmSamAttention
from timm.models.vision_transformer_sam import get_decomposed_rel_pos_bias

from cortexalign.errors import InputError
from cortexalign.models.attention import attention_maps
from cortexalign.models.attention._handlers import decomposed_rel_pos
from cortexalign.models.sam import SamFusedAttention, use_fused_attention
from cortexalign.models.sam._attention import padded_rel_pos_bias


def _tiny_sam(img: int = 160) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("samvit_base_patch16", img_size=img, depth=3, embed_dim=64,
                             num_heads=2, global_attn_indexes=(1,), window_size=4).eval()


def test_padded_bias_equals_timm_bias_with_aligned_rows():
    torch.manual_seed(1)
    attn = _tiny_sam().blocks[0].attn
    for hw in ((4, 4), (3, 5), (10, 10)):
        q = torch.randn(2, 2, hw[0] * hw[1], 32)
        rel = decomposed_rel_pos(q, attn.rel_pos_h, attn.rel_pos_w, hw)
        bias = padded_rel_pos_bias(*rel, dtype=torch.float32)
        ref = get_decomposed_rel_pos_bias(q.reshape(4, -1, 32), attn.rel_pos_h, attn.rel_pos_w,
                                          hw, hw).reshape(2, 2, hw[0] * hw[1], -1)
        torch.testing.assert_close(bias, ref, atol=1e-5, rtol=1e-5)
        assert bias.stride(-1) == 1 and bias.stride(-2) % 8 == 0
        assert bias.shape == ref.shape


@pytest.mark.parametrize("bf16", [False, True])
def test_fused_sam_forward_equals_timm(bf16):
    timm_model = _tiny_sam()
    fused = use_fused_attention(copy.deepcopy(timm_model))
    assert sum(type(m) is SamFusedAttention for m in fused.modules()) == 3
    assert not any(type(m) is TimmSamAttention for m in fused.modules())
    assert list(fused.state_dict()) == list(timm_model.state_dict())
    x = torch.randn(2, 3, 160, 160)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        ref, out = timm_model(x), fused(x)
    tol = 2e-2 if bf16 else 1e-5
    torch.testing.assert_close(out.float(), ref.float(), atol=tol, rtol=tol)


def test_fused_sam_gradients_equal_timm():
    timm_model = _tiny_sam().train()
    fused = use_fused_attention(copy.deepcopy(timm_model))
    x = torch.randn(1, 3, 160, 160)
    grads = []
    for model in (timm_model, fused):
        model.zero_grad()
        model(x).square().mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and "blocks.1.attn.rel_pos_h" in grads[0]
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, atol=1e-6, rtol=1e-4)


def test_fused_sam_attention_falls_back_to_timm_when_fused_attn_is_off():
    model = use_fused_attention(_tiny_sam())
    attn = model.blocks[1].attn
    x = torch.randn(1, 10, 10, 64)
    with torch.no_grad():
        fused = attn(x)
        attn.fused_attn = False
        unfused = attn(x)
    torch.testing.assert_close(fused, unfused, atol=1e-5, rtol=1e-5)


def test_maps_of_the_fused_model_equal_timm_model_maps():
    timm_model = _tiny_sam()
    fused = use_fused_attention(copy.deepcopy(timm_model))
    x = torch.randn(2, 3, 160, 160)
    a, b = attention_maps(timm_model, x), attention_maps(fused, x)
    assert list(a) == list(b)
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-5)


def test_load_model_builds_sam_vit_with_fused_attention():
    from cortexalign.models import load_model

    sam = load_model("sam_vit_b", untrained=True, tiny=True)
    kinds = {type(m) for m in sam.module.modules()}
    assert SamFusedAttention in kinds and TimmSamAttention not in kinds


def test_backend_is_validated():
    model = _tiny_sam(64)
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(InputError, match="backend"):
        attention_maps(model, x, backend="flash")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.importorskip("triton")
        with pytest.raises(InputError, match="backend"):  # CPU tensors: the kernel cannot run
            attention_maps(model, x, backend="triton")


_INTERPRETED = r"""
import torch, timm
from cortexalign.models.attention import attention_maps
from cortexalign.models.attention._layout import QK, grid_tokens
from cortexalign.models.attention._received_triton import received_triton

torch.manual_seed(0)
# 1. the kernel against the formula: global block, 2 groups, 3 heads, 150 tokens (3 tiles), d 24,
#    relative-position tables, query weights with zeros (padding rows)
g, h, t, d, kh, kw = 2, 3, 150, 24, 10, 15
q, k = torch.randn(g, h, t, d), torch.randn(g, h, t, d)
rel_h, rel_w = torch.randn(g, h, t, kh), torch.randn(g, h, t, kw)
w = torch.rand(g, t)
w[:, -7:] = 0
bias = rel_h[..., :, None] + rel_w[..., None, :]
p = torch.softmax((q.double() @ k.double().transpose(-1, -2)) + bias.reshape(g, h, t, t).double(), -1)
ref = torch.einsum("gq,ghqk->ghk", w.double(), p)
tok = grid_tokens((kh, kw))
qk = QK(q, k, lambda rows, s: None, tok, tok, (kh, kw), (kh, kw), rel_pos=(rel_h, rel_w))
out = received_triton(qk, w)
torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-4)
# 1a. key tiles inside one key row (kw 64, a multiple of the tile: the column + row-tile bias
#     path; case 1's kw 15 takes the general gathers)
kh2, kw2 = 3, 64
q2, k2 = torch.randn(1, 2, kh2 * kw2, d), torch.randn(1, 2, kh2 * kw2, d)
rh2, rw2 = torch.randn(1, 2, kh2 * kw2, kh2), torch.randn(1, 2, kh2 * kw2, kw2)
w2 = torch.rand(1, kh2 * kw2)
b2 = (rh2[..., :, None] + rw2[..., None, :]).reshape(1, 2, kh2 * kw2, -1).double()
ref2 = torch.einsum("gq,ghqk->ghk", w2.double(),
                    torch.softmax(q2.double() @ k2.double().transpose(-1, -2) + b2, -1))
tok2 = grid_tokens((kh2, kw2))
qk2 = QK(q2, k2, lambda rows, s: None, tok2, tok2, (kh2, kw2), (kh2, kw2), rel_pos=(rh2, rw2))
torch.testing.assert_close(received_triton(qk2, w2).double(), ref2, atol=1e-5, rtol=1e-4)

# 1b. a log-sum-exp handed over (padded rows, as SDPA kernels return it) skips the first pass
lse = torch.logsumexp(q.double() @ k.double().transpose(-1, -2) + bias.reshape(g, h, t, t).double(), -1)
padded = torch.cat([lse.float(), torch.full((g, h, 10), float("inf"))], -1)
qk.lse = padded[..., :t]
torch.testing.assert_close(received_triton(qk, w).double(), ref, atol=1e-5, rtol=1e-4)
qk.rel_pos, qk.bias, qk.lse = None, None, None
ref0 = torch.einsum("gq,ghqk->ghk", w.double(), torch.softmax(q.double() @ k.double().transpose(-1, -2), -1))
torch.testing.assert_close(received_triton(qk, w).double(), ref0, atol=1e-5, rtol=1e-4)

# 2. whole models: the fused and chunked paths agree (padded windows, global blocks, CLS)
sam = timm.create_model("samvit_base_patch16", img_size=160, depth=3, embed_dim=64, num_heads=2,
                        global_attn_indexes=(1,), window_size=4).eval()
vit = timm.create_model("vit_tiny_patch16_224", img_size=96, depth=2).eval()
for model, img in ((sam, 160), (vit, 96)):
    x = torch.randn(2, 3, img, img)
    for red in ("received", "per_head"):
        a = attention_maps(model, x, reduction=red, backend="triton")
        b = attention_maps(model, x, reduction=red, backend="chunked")
        for name in b:
            torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-5)
    with torch.autocast("cpu", dtype=torch.float16):  # reduced precision (see the docstring)
        a = attention_maps(model, x, backend="triton")
        b = attention_maps(model, x, backend="chunked")
    for name in b:
        torch.testing.assert_close(a[name], b[name], atol=1e-4, rtol=1e-3)
print("ok")
"""


def test_triton_received_kernel_in_interpreter():
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _INTERPRETED], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("bf16", [False, True])
def test_triton_received_maps_match_chunked_on_gpu(bf16):
    pytest.importorskip("triton")
    model = use_fused_attention(_tiny_sam(256)).cuda()
    x = torch.randn(2, 3, 256, 256, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        a = attention_maps(model, x, backend="triton")
        b = attention_maps(model, x, backend="chunked")
        with torch.inference_mode():
            fused_out = model(x)
    tol = 1e-2 if bf16 else 1e-5
    for name in b:
        torch.testing.assert_close(a[name], b[name], atol=tol * b[name].abs().max().item(), rtol=tol)
    assert torch.isfinite(fused_out).all()


def _record_launches(monkeypatch):
    """Replace both kernels by recorders of their launch grids (nothing runs)."""
    mod = pytest.importorskip("cortexalign.models.attention._received_triton")
    if mod.triton is None:
        pytest.skip("Triton is not installed")
    grids = []

    class Recorder:
        def __getitem__(self, grid):  # a function of the autotuned tile sizes: the smallest
            grids.append(tuple(grid({"BLOCK_Q": 32, "BLOCK_K": 32}) if callable(grid) else grid))
            return lambda *args, **kwargs: None

    monkeypatch.setattr(mod, "_lse_kernel", Recorder())
    monkeypatch.setattr(mod, "_colsum_kernel", Recorder())
    return mod, grids


def test_triton_launch_grid_fits_cuda_limits_for_many_groups(monkeypatch):
    # CUDA: grid axis 0 up to 2**31 - 1, axes 1 and 2 at most 65,535. g x h = 70,000 (HieraDet at
    # 1024 px has 1,024 windows x 1 head per image: batch 69) must not land on axis 1.
    from cortexalign.models.attention._layout import QK, grid_tokens

    mod, grids = _record_launches(monkeypatch)
    g, h, t, d = 35_000, 2, 4, 16
    q = torch.zeros(g, h, t, d)
    tok = grid_tokens((2, 2))
    qk = QK(q, q, None, tok.expand(1, t), tok.expand(1, t), (2, 2), (2, 2))
    mod.received_triton(qk, torch.full((g, t), 1.0 / t))
    assert len(grids) == 2
    for grid in grids:
        assert grid[0] <= 2**31 - 1 and all(n <= 65_535 for n in grid[1:]), grid
        assert grid[0] * int(torch.tensor(grid[1:]).prod()) >= g * h  # every group and head


def _received_reference(q, k, w):
    p = torch.softmax(q.double() @ k.double().transpose(-1, -2), -1)
    return torch.einsum("gq,ghqk->ghk", w.double(), p)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_triton_received_kernel_many_groups_on_gpu():
    pytest.importorskip("triton")
    from cortexalign.models.attention._layout import QK, grid_tokens
    from cortexalign.models.attention._received_triton import received_triton

    torch.manual_seed(0)
    g, h, t, d = 35_000, 2, 16, 16  # g x h = 70,000 programs per tile row
    q, k = torch.randn(g, h, t, d, device="cuda"), torch.randn(g, h, t, d, device="cuda")
    w = torch.rand(g, t, device="cuda")
    tok = grid_tokens((4, 4), device=torch.device("cuda"))
    out = received_triton(QK(q, k, None, tok, tok, (4, 4), (4, 4)), w)
    torch.testing.assert_close(out.double(), _received_reference(q, k, w), atol=1e-5, rtol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_triton_received_kernel_on_a_non_current_device():
    pytest.importorskip("triton")
    from cortexalign.models.attention._layout import QK, grid_tokens
    from cortexalign.models.attention._received_triton import received_triton

    dev = torch.device("cuda:1")
    torch.manual_seed(0)
    q, k, w = torch.randn(2, 3, 16, 16, device=dev), torch.randn(2, 3, 16, 16, device=dev), \
        torch.rand(2, 16, device=dev)
    tok = grid_tokens((4, 4), device=dev)
    with torch.cuda.device(0):
        out = received_triton(QK(q, k, None, tok, tok, (4, 4), (4, 4)), w)
        torch.cuda.synchronize(dev)
    torch.testing.assert_close(out.double(), _received_reference(q, k, w), atol=1e-5, rtol=1e-4)


def test_auto_backend_falls_back_to_chunks_when_the_kernel_does_not_fit(monkeypatch):
    """A GPU whose shared memory the kernel exceeds (Triton's OutOfResources at launch): "auto"
    warns once and gives the chunked maps; "triton" raises."""
    from cortexalign.models.attention import _reduce
    from cortexalign.models.attention._received_triton import KernelResourceError

    if KernelResourceError is RuntimeError:
        pytest.skip("Triton is not installed")
    calls = []

    def too_big(qk, w_gq):
        calls.append(qk.q_ghqd.shape)
        raise KernelResourceError(262144, 232448, "shared memory")

    monkeypatch.setattr(_reduce, "triton_usable", lambda qk: True)
    monkeypatch.setattr(_reduce, "received_triton", too_big)
    model = _tiny_sam(64)
    x = torch.randn(1, 3, 64, 64)
    with pytest.warns(RuntimeWarning, match="chunked path"):
        got = attention_maps(model, x)
    assert len(calls) == 1  # the later blocks went straight to the chunked path
    ref = attention_maps(model, x, backend="chunked")
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], atol=0, rtol=0)
    with pytest.raises(KernelResourceError):
        attention_maps(model, x, backend="triton")
