"""Scaled dot-product attention that also hands back each query row's log-sum-exp.

PyTorch's fused attention kernels compute the log-sum-exp of every query row (their backward
pass needs it), but ``F.scaled_dot_product_attention`` drops it. The fused received-map kernel
needs exactly that row statistic, so a module whose attention maps are being taken can get it
from its own forward instead of paying a second pass over the scores (``_received_triton``).

``sdpa_with_lse`` calls the kernels' ATen ops directly (cuDNN, then memory-efficient), on CUDA
and outside autograd only. The ops are private and the layout of their statistic is not a public
contract, so each is checked once per (device, dtype, head dim, bias or not) on a small random
problem against ``F.scaled_dot_product_attention`` (output) and ``torch.logsumexp`` of explicit
scores (statistic). One that raises or disagrees is not used for that key again; with none left
the plain SDPA output comes back with ``None``, and the map kernel computes the statistic itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["sdpa_with_lse"]


def _cudnn(q, k, v, bias):
    out = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, bias, True, 0.0, False, False)
    return out[0], out[1]


def _efficient(q, k, v, bias):
    out = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, bias, True, 0.0, False)
    return out[0], out[1]


PROVIDERS = {"cudnn": _cudnn, "efficient": _efficient}
_checked: dict[tuple, tuple[str, ...]] = {}  # key -> providers that passed, in order


def lse_rows(lse: torch.Tensor, b: int, h: int, n: int) -> torch.Tensor | None:
    """A kernel's statistic as (b, h, n) float32 (kernels pad rows, e.g. to a multiple of 32, or
    add a trailing axis of 1), or None when its shape does not fit that reading."""
    if lse.dtype != torch.float32 or lse.shape[:2] != (b, h) or lse.numel() < b * h * n:
        return None
    rows = lse.reshape(b, h, -1)
    return rows[..., :n] if rows.shape[-1] >= n else None


def _passes(name: str, dtype: torch.dtype, device: torch.device, d: int, with_bias: bool) -> bool:
    """Whether provider ``name`` gives SDPA's output and the true row log-sum-exp here."""
    gen = torch.Generator(device=device).manual_seed(0)
    b, h, n = 2, 3, 77  # rows not a multiple of the kernels' tiles or of 32

    def rand(*shape):
        return torch.randn(*shape, device=device, generator=gen).to(dtype)

    q, k, v = rand(b, h, n, d), rand(b, h, n, d), rand(b, h, n, d)
    bias = None
    if with_bias:  # rows padded to 8 elements, as the SAM bias is (models.sam._attention)
        bias = torch.zeros(b, h, n, 80, device=device, dtype=dtype)[..., :n]
        bias.copy_(rand(b, h, n, n))
    try:
        out, lse = PROVIDERS[name](q, k, v, bias)
    except RuntimeError:
        return False
    rows = lse_rows(lse, b, h, n)
    if rows is None:
        return False
    with torch.autocast(device.type, enabled=False):  # the references in float32
        scores = (q.float() @ k.float().transpose(-1, -2)) * d ** -0.5
        if bias is not None:
            scores = scores + bias.float()
        want_out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).float()
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    return (torch.allclose(rows, torch.logsumexp(scores, -1), atol=tol, rtol=tol)
            and torch.allclose(out.float(), want_out, atol=tol, rtol=tol))


def _providers(q: torch.Tensor, with_bias: bool) -> tuple[str, ...]:
    key = (q.device, q.dtype, q.shape[-1], with_bias)
    if key not in _checked:
        _checked[key] = tuple(n for n in PROVIDERS
                              if _passes(n, q.dtype, q.device, q.shape[-1], with_bias))
    return _checked[key]


def sdpa_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``F.scaled_dot_product_attention(q, k, v, attn_mask=bias)`` (default scale, no dropout,
    not causal) and the (b, h, n) float32 natural log-sum-exp of each query row's scores, or
    None where no checked kernel returns it (CPU tensors, autograd, unsupported shapes)."""
    if q.is_cuda and not torch.is_grad_enabled():
        for name in _providers(q, bias is not None):
            try:
                out, lse = PROVIDERS[name](q, k, v, bias)
            except RuntimeError:  # this shape or layout: the next kernel, or plain SDPA
                continue
            rows = lse_rows(lse, *q.shape[:3])
            if rows is not None:
                return out, rows
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias), None
