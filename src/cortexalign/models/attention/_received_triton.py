"""Attention received per key, fused in Triton: no (q, k) probability tensor is ever stored.

``received[g, h, k] = sum_q w[g, q] * softmax_k(s[g, h, q, :])[k]`` with ``s = q . k + bias``,
computed in two passes over the scores in the manner of FlashAttention (Dao et al. 2022):

1. ``_lse_kernel``: one program per (group x head, tile of ``BLOCK_Q`` queries) loops over the
   key tiles with a running maximum and sum and stores each query row's log-sum-exp.
2. ``_colsum_kernel``: one program per (group x head, tile of ``BLOCK_K`` keys) loops over all
   query tiles, recomputes the scores, ``p = exp(s - lse)``, and accumulates ``w . p`` over the
   queries in registers. Each program owns its keys, so there are no atomics and the order of
   the sum is fixed (the result is deterministic).

The scores are computed twice, but nothing of size q x k goes to memory: the cost is two
q k^T matmuls per block, against the chunked path's float32 probabilities written and read back
(SAM ViT-B: 12 x 4096 x 4096 per image and global block). Bias: none, or SAM / MViTv2 decomposed
relative positions, ``bias[q, k] = rel_h[q, k // kw] + rel_w[q, k % kw]``, gathered per tile
from the (q, kh) and (q, kw) tables the handler computed (``QK.rel_pos``).

Runs on CUDA; on the CPU only under ``TRITON_INTERPRET=1`` (how the tests check the kernel
logic without a GPU). ``usable(qk)`` says whether a block can take this path.
"""

from __future__ import annotations

import contextlib
import os

import torch

from cortexalign.models.attention._layout import QK

try:  # optional: Triton ships with CUDA builds of torch
    import triton
    import triton.language as tl
    from triton.runtime.errors import OutOfResources as KernelResourceError
except ImportError:  # pragma: no cover - depends on the installation
    triton = tl = None
    KernelResourceError = RuntimeError  # never raised by this module then

__all__ = ["usable", "received_triton", "INTERPRET", "KernelResourceError"]

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
BLOCK_Q = 64
BLOCK_K = 64

if tl is not None:

    @triton.jit
    def _load_q(q_ptr, gh, offs_q, TQ, D, BLOCK_D: tl.constexpr):
        """(BLOCK_Q, BLOCK_D) query tile, zeros outside the rows and channels."""
        offs_d = tl.arange(0, BLOCK_D)
        return tl.load(q_ptr + gh * TQ * D + offs_q[:, None] * D + offs_d[None, :],
                       mask=(offs_q < TQ)[:, None] & (offs_d < D)[None, :], other=0.0)

    @triton.jit
    def _load_kt(k_ptr, gh, offs_k, TK, D, BLOCK_D: tl.constexpr):
        """(BLOCK_D, BLOCK_K) transposed key tile, zeros outside the keys and channels."""
        offs_d = tl.arange(0, BLOCK_D)
        return tl.load(k_ptr + gh * TK * D + offs_k[None, :] * D + offs_d[:, None],
                       mask=(offs_d < D)[:, None] & (offs_k < TK)[None, :], other=0.0)

    @triton.jit
    def _scores(q, kt, rh_ptr, rw_ptr, gh, offs_q, offs_k, TQ, TK, KH, KW,
                HAS_REL: tl.constexpr, PRECISION: tl.constexpr):
        """(BLOCK_Q, BLOCK_K) float32 scores of one tile, bias added; masked rows/cols are 0."""
        s = tl.dot(q, kt, input_precision=PRECISION)
        if HAS_REL:
            both = (offs_q < TQ)[:, None] & (offs_k < TK)[None, :]
            kh = offs_k // KW
            kw = offs_k - kh * KW
            s += tl.load(rh_ptr + gh * TQ * KH + offs_q[:, None] * KH + kh[None, :],
                         mask=both, other=0.0)
            s += tl.load(rw_ptr + gh * TQ * KW + offs_q[:, None] * KW + kw[None, :],
                         mask=both, other=0.0)
        return s

    @triton.jit
    def _lse_kernel(q_ptr, k_ptr, rh_ptr, rw_ptr, lse_ptr, N_TILES, TQ, TK, D, KH, KW,
                    HAS_REL: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
                    BLOCK_D: tl.constexpr, PRECISION: tl.constexpr):
        pid = tl.program_id(0).to(tl.int64)  # one axis (see _launch_grid): tiles of one g x h
        gh = pid // N_TILES                  # run next to each other and share its keys in L2
        offs_q = (pid % N_TILES) * BLOCK_Q + tl.arange(0, BLOCK_Q)
        q = _load_q(q_ptr, gh, offs_q, TQ, D, BLOCK_D)  # the same for every key tile
        m = tl.full([BLOCK_Q], float("-inf"), tl.float32)
        acc = tl.zeros([BLOCK_Q], tl.float32)
        for k0 in range(0, TK, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            kt = _load_kt(k_ptr, gh, offs_k, TK, D, BLOCK_D)
            s = _scores(q, kt, rh_ptr, rw_ptr, gh, offs_q, offs_k, TQ, TK, KH, KW, HAS_REL,
                        PRECISION)
            s = tl.where((offs_k < TK)[None, :], s, float("-inf"))
            m_new = tl.maximum(m, tl.max(s, 1))
            acc = acc * tl.exp(m - m_new) + tl.sum(tl.exp(s - m_new[:, None]), 1)
            m = m_new
        tl.store(lse_ptr + gh * TQ + offs_q, m + tl.log(acc), mask=offs_q < TQ)

    @triton.jit
    def _colsum_kernel(q_ptr, k_ptr, rh_ptr, rw_ptr, lse_ptr, w_ptr, out_ptr, N_TILES, H, TQ,
                       TK, D, KH, KW, HAS_REL: tl.constexpr, BLOCK_Q: tl.constexpr,
                       BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr):
        pid = tl.program_id(0).to(tl.int64)
        gh = pid // N_TILES
        g = gh // H
        offs_k = (pid % N_TILES) * BLOCK_K + tl.arange(0, BLOCK_K)
        kt = _load_kt(k_ptr, gh, offs_k, TK, D, BLOCK_D)  # the same for every query tile
        acc = tl.zeros([BLOCK_K], tl.float32)
        for q0 in range(0, TQ, BLOCK_Q):
            offs_q = q0 + tl.arange(0, BLOCK_Q)
            q_ok = offs_q < TQ
            q = _load_q(q_ptr, gh, offs_q, TQ, D, BLOCK_D)
            s = _scores(q, kt, rh_ptr, rw_ptr, gh, offs_q, offs_k, TQ, TK, KH, KW, HAS_REL,
                        PRECISION)
            lse = tl.load(lse_ptr + gh * TQ + offs_q, mask=q_ok, other=0.0)
            w = tl.load(w_ptr + g * TQ + offs_q, mask=q_ok, other=0.0)
            p = tl.exp(s - lse[:, None]) * w[:, None]
            acc += tl.sum(tl.where(q_ok[:, None], p, 0.0), 0)  # 0 * exp(overflow) would be NaN
        tl.store(out_ptr + gh * TK + offs_k, acc, mask=offs_k < TK)


def usable(qk: QK) -> bool:
    """Whether this block can take the fused path: Triton present, a CUDA tensor (or the CPU
    under ``TRITON_INTERPRET=1``), and a score bias the kernel knows (none, or ``rel_pos``)."""
    if tl is None:
        return False
    dev = qk.q_ghqd.device.type
    if not (dev == "cuda" or (INTERPRET and dev == "cpu")):
        return False
    return qk.bias is None or qk.rel_pos is not None


def _launch_grid(n_gh: int, n_tiles: int) -> tuple[int]:
    """One grid axis of ``groups x heads x tiles`` programs, tiles fastest. CUDA allows 2**31 - 1
    programs on axis 0 but only 65,535 on axes 1 and 2, and g x h alone passes that at moderate
    batches (HieraDet at 1024 px: 1,024 windows x batch 64; SAM ViT-B windowed blocks: 300 per
    image); tiles fastest keeps the programs that share one group-head's q and k together."""
    return (n_gh * n_tiles,)


def _matmul_dtype(q: torch.Tensor) -> torch.dtype:
    dev = q.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else q.dtype


def received_triton(qk: QK, w_gq: torch.Tensor) -> torch.Tensor:
    """(g, h, k) float32: ``sum_q w[g, q] softmax(s)[g, h, q, k]`` for every group and head.

    ``w_gq`` weights the query rows (``_reduce._query_weights``: 1 / real queries, 0 for padding).
    q and k are cast once to the matmul dtype the chunked path would use (the autocast dtype, or
    their own); float32 matmuls run in IEEE float32 unless ``torch.backends.cuda.matmul.
    allow_tf32`` is set, like ``torch.matmul``.
    """
    g, h, tq, d = qk.q_ghqd.shape
    tk = qk.k_ghkd.shape[2]
    dtype = _matmul_dtype(qk.q_ghqd)
    q = qk.q_ghqd.to(dtype).contiguous()
    k = qk.k_ghkd.to(dtype).contiguous()
    dev = q.device
    if qk.rel_pos is not None:
        rel_h, rel_w = (t.float().contiguous() for t in qk.rel_pos)
        kh, kw = rel_h.shape[-1], rel_w.shape[-1]
        assert kh * kw == tk, f"relative-position grid {kh}x{kw} is not the {tk} keys"
    else:
        rel_h = rel_w = torch.empty(1, device=dev)
        kh = kw = 1
    tf32 = dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32
    precision = "tf32" if tf32 else "ieee"
    block_d = max(16, triton.next_power_of_2(d))
    lse = torch.empty(g * h, tq, device=dev, dtype=torch.float32)
    out = torch.empty(g, h, tk, device=dev, dtype=torch.float32)
    w = w_gq.to(device=dev, dtype=torch.float32).contiguous()
    meta = dict(HAS_REL=qk.rel_pos is not None, BLOCK_Q=BLOCK_Q, BLOCK_K=BLOCK_K,
                BLOCK_D=block_d, PRECISION=precision)
    if dtype == torch.float32 and not INTERPRET:
        # float32 tiles are twice the bytes: fewer pipeline stages keep the shared memory of a
        # head dim of 80-128 (BLOCK_D 128) within smaller GPUs' limits
        meta["num_stages"] = 2
    n_q, n_k = triton.cdiv(tq, BLOCK_Q), triton.cdiv(tk, BLOCK_K)
    # Triton launches on the current CUDA device: make it the tensors' one (device="cuda:1")
    on_dev = torch.cuda.device(dev) if dev.type == "cuda" else contextlib.nullcontext()
    with on_dev:
        _lse_kernel[_launch_grid(g * h, n_q)](q, k, rel_h, rel_w, lse, n_q, tq, tk, d, kh, kw,
                                              **meta)
        _colsum_kernel[_launch_grid(g * h, n_k)](q, k, rel_h, rel_w, lse, w, out, n_k, h, tq,
                                                 tk, d, kh, kw, **meta)
    return out
