"""Fused multi-step LIF kernels in Triton (CUDA only), forward and backward through time.

One program handles ``BLOCK`` neurons and loops over the T time steps in registers, so the
membrane potential never goes to memory between steps (T is a compile-time constant: the loop is
unrolled, one compiled kernel per number of time steps); the forward pass stores ``H`` and
``S`` for the backward pass, which runs the recursion of ``neurons._LIFBPTT`` backwards in
time. Arithmetic follows ``neurons._lif_reference`` operation by operation (in float32), so
spikes are identical and gradients agree to rounding. ``AVAILABLE`` is False without Triton
or CUDA, and ``neurons.lif_multistep`` then never dispatches here.

Tested only on a GPU (``tests/spiking/test_neurons.py::test_triton_matches_reference_on_gpu``,
marked ``gpu``).
"""

from __future__ import annotations

import torch

try:  # optional dependency, and useless without CUDA
    import triton
    import triton.language as tl

    AVAILABLE = torch.cuda.is_available()
except ImportError:  # pragma: no cover - depends on the installation
    triton = tl = None
    AVAILABLE = False

__all__ = ["AVAILABLE", "lif_triton"]

_SURROGATE_IDS = {"sigmoid": 0, "atan": 1}
_BLOCK = 1024

if tl is not None:

    @triton.jit
    def _lif_fwd(x_ptr, v0_ptr, h_ptr, s_ptr, v_ptr, T: tl.constexpr, numel, tau, v_th, v_reset,
                 BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < numel
        v = tl.load(v0_ptr + offs, mask=mask, other=0.0)
        for t in range(T):
            base = t * numel
            x = tl.load(x_ptr + base + offs, mask=mask, other=0.0)
            h = v + (x - (v - v_reset)) / tau
            s = tl.where(h - v_th >= 0.0, 1.0, 0.0)
            v = h * (1.0 - s) + v_reset * s
            tl.store(h_ptr + base + offs, h, mask=mask)
            tl.store(s_ptr + base + offs, s, mask=mask)
        tl.store(v_ptr + offs, v, mask=mask)

    @triton.jit
    def _lif_bwd(h_ptr, s_ptr, gs_ptr, gv_ptr, gx_ptr, gv0_ptr, T: tl.constexpr, numel, tau, v_th,
                 v_reset, alpha, SURROGATE: tl.constexpr, DETACH: tl.constexpr,
                 BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < numel
        g_v = tl.load(gv_ptr + offs, mask=mask, other=0.0)
        for i in range(T):
            base = (T - 1 - i) * numel
            h = tl.load(h_ptr + base + offs, mask=mask, other=0.0)
            s = tl.load(s_ptr + base + offs, mask=mask, other=0.0)
            gs = tl.load(gs_ptr + base + offs, mask=mask, other=0.0)
            z = h - v_th
            if SURROGATE == 0:
                sig = tl.sigmoid(z * alpha)
                sg = (1.0 - sig) * sig * alpha
            else:
                u = 1.5707963267948966 * alpha * z
                sg = alpha / 2.0 / (1.0 + u * u)
            if DETACH:
                dv_dh = 1.0 - s
            else:
                dv_dh = (1.0 - s) + (v_reset - h) * sg
            g_h = gs * sg + g_v * dv_dh
            tl.store(gx_ptr + base + offs, g_h / tau, mask=mask)
            g_v = g_h - g_h / tau
        tl.store(gv0_ptr + offs, g_v, mask=mask)


class _LIFTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_T, v0, tau, v_th, v_reset, surrogate, alpha, detach_reset):
        dtype = x_T.dtype
        x = x_T.detach().float().contiguous()
        v0c = v0.detach().float().contiguous()
        T, numel = x.shape[0], x[0].numel()
        h, s, v = torch.empty_like(x), torch.empty_like(x), torch.empty_like(v0c)
        grid = (triton.cdiv(numel, _BLOCK),)
        _lif_fwd[grid](x, v0c, h, s, v, T, numel, tau, v_th, v_reset, BLOCK=_BLOCK)
        ctx.save_for_backward(h, s)
        ctx.args = (tau, v_th, v_reset, surrogate, alpha, detach_reset, dtype, v0.dtype)
        return s.to(dtype), v.to(v0.dtype)

    @staticmethod
    def backward(ctx, g_s, g_v):
        h, s = ctx.saved_tensors
        tau, v_th, v_reset, surrogate, alpha, detach_reset, dtype, v_dtype = ctx.args
        T, numel = h.shape[0], h[0].numel()
        g_s = torch.zeros_like(h) if g_s is None else g_s.float().contiguous()
        g_v = torch.zeros_like(h[0]) if g_v is None else g_v.float().contiguous()
        g_x, g_v0 = torch.empty_like(h), torch.empty_like(h[0])
        grid = (triton.cdiv(numel, _BLOCK),)
        _lif_bwd[grid](h, s, g_s, g_v, g_x, g_v0, T, numel, tau, v_th, v_reset, alpha,
                       SURROGATE=_SURROGATE_IDS[surrogate], DETACH=bool(detach_reset), BLOCK=_BLOCK)
        return g_x.to(dtype), g_v0.to(v_dtype), None, None, None, None, None, None


def lif_triton(x_T, v0, tau, v_th, v_reset, surrogate, alpha, detach_reset):
    """Fused LIF on CUDA tensors; same contract as the other ``LIF_KERNELS``."""
    if not AVAILABLE or x_T.device.type != "cuda":
        raise RuntimeError("the Triton LIF kernel needs Triton and a CUDA tensor")
    return _LIFTriton.apply(x_T, v0, tau, v_th, v_reset, surrogate, alpha, detach_reset)
