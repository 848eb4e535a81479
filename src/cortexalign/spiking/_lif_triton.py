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

import contextlib

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
                 HAS_V0: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < numel
        if HAS_V0:
            v = tl.load(v0_ptr + offs, mask=mask, other=0.0)
        else:  # no state given: start at v_reset without reading a tensor of it
            v = tl.zeros([BLOCK], tl.float32) + v_reset
        for t in range(T):
            base = tl.cast(t, tl.int64) * numel  # int32 t * numel wraps once T * numel > 2**31
            x = tl.load(x_ptr + base + offs, mask=mask, other=0.0)
            h = v + (x - (v - v_reset)) / tau
            s = tl.where(h - v_th >= 0.0, 1.0, 0.0)
            v = h * (1.0 - s) + v_reset * s
            tl.store(h_ptr + base + offs, h, mask=mask)
            tl.store(s_ptr + base + offs, s, mask=mask)
        tl.store(v_ptr + offs, v, mask=mask)

    @triton.jit
    def _lif_bwd(h_ptr, gs_ptr, gv_ptr, gx_ptr, gv0_ptr, T: tl.constexpr, numel, tau, v_th,
                 v_reset, alpha, SURROGATE: tl.constexpr, DETACH: tl.constexpr,
                 HAS_GS: tl.constexpr, HAS_GV: tl.constexpr, STORE_GV0: tl.constexpr,
                 BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < numel
        if HAS_GV:
            g_v = tl.load(gv_ptr + offs, mask=mask, other=0.0)
        else:  # the last state was not used: no gradient flows in from it
            g_v = tl.zeros([BLOCK], tl.float32)
        for i in range(T):
            base = tl.cast(T - 1 - i, tl.int64) * numel
            h = tl.load(h_ptr + base + offs, mask=mask, other=0.0)
            z = h - v_th
            s = tl.where(z >= 0.0, 1.0, 0.0)  # the forward's spike, recomputed from H
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
            if HAS_GS:
                gs = tl.load(gs_ptr + base + offs, mask=mask, other=0.0)
                g_h = gs * sg + g_v * dv_dh
            else:
                g_h = g_v * dv_dh
            tl.store(gx_ptr + base + offs, g_h / tau, mask=mask)
            g_v = g_h - g_h / tau
        if STORE_GV0:
            tl.store(gv0_ptr + offs, g_v, mask=mask)


def _on(device: torch.device):
    """Make ``device`` current while a kernel launches (the CPU: the interpreter, nothing to do)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


class _LIFTriton(torch.autograd.Function):
    """Forward and backward kernels; ``v0=None`` starts at ``v_reset`` inside the kernel, and
    gradients that do not exist (unused outputs, ``v0`` without grad) are neither materialised
    as zeros nor written: compile-time flags drop those loads and stores."""

    @staticmethod
    def forward(ctx, x_T, v0, tau, v_th, v_reset, surrogate, alpha, detach_reset):
        ctx.set_materialize_grads(False)
        dtype = x_T.dtype
        x = x_T.detach().float().contiguous()
        T, numel = x.shape[0], x[0].numel()
        v0c = x if v0 is None else v0.detach().float().contiguous()  # x: an unread placeholder
        h, s, v = torch.empty_like(x), torch.empty_like(x), torch.empty_like(x[0])
        grid = (triton.cdiv(numel, _BLOCK),)
        with _on(x.device):  # Triton launches on the current device
            _lif_fwd[grid](x, v0c, h, s, v, T, numel, tau, v_th, v_reset,
                           HAS_V0=v0 is not None, BLOCK=_BLOCK)
        ctx.save_for_backward(h)
        v_dtype = dtype if v0 is None else v0.dtype
        ctx.args = (tau, v_th, v_reset, surrogate, alpha, detach_reset, dtype, v_dtype)
        return s.to(dtype), v.to(v_dtype)

    @staticmethod
    def backward(ctx, g_s, g_v):
        (h,) = ctx.saved_tensors
        tau, v_th, v_reset, surrogate, alpha, detach_reset, dtype, v_dtype = ctx.args
        T, numel = h.shape[0], h[0].numel()
        want_v0 = ctx.needs_input_grad[1]
        gs = h if g_s is None else g_s.float().contiguous()  # h: an unread placeholder
        gv = h if g_v is None else g_v.float().contiguous()
        g_x = torch.empty_like(h)
        g_v0 = torch.empty_like(h[0]) if want_v0 else h
        grid = (triton.cdiv(numel, _BLOCK),)
        with _on(h.device):
            _lif_bwd[grid](h, gs, gv, g_x, g_v0, T, numel, tau, v_th, v_reset, alpha,
                           SURROGATE=_SURROGATE_IDS[surrogate], DETACH=bool(detach_reset),
                           HAS_GS=g_s is not None, HAS_GV=g_v is not None, STORE_GV0=want_v0,
                           BLOCK=_BLOCK)
        return (g_x.to(dtype), g_v0.to(v_dtype) if want_v0 else None,
                None, None, None, None, None, None)


def lif_triton(x_T, v0, tau, v_th, v_reset, surrogate, alpha, detach_reset):
    """Fused LIF on CUDA tensors; same contract as the other ``LIF_KERNELS`` (``v0`` may be
    None: the state starts at ``v_reset``)."""
    if not AVAILABLE or x_T.device.type != "cuda":
        raise RuntimeError("the Triton LIF kernel needs Triton and a CUDA tensor")
    return _LIFTriton.apply(x_T, v0, tau, v_th, v_reset, surrogate, alpha, detach_reset)
