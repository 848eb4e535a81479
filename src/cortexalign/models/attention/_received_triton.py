"""Attention received per key, fused in Triton: no (q, k) probability tensor is ever stored.

``received[g, h, k] = sum_q w[g, q] * softmax_k(s[g, h, q, :])[k]`` with ``s = q . k + bias``,
computed in two passes over the scores in the manner of FlashAttention (Dao et al. 2022):

1. ``_lse_kernel``: one program per (group x head, tile of ``BLOCK_Q`` queries) loops over the
   key tiles with a running maximum and sum and stores each query row's log-sum-exp. Skipped
   when the module's own attention kernel already returned it (``QK.lse``: SAM's fused
   attention does, see ``models.sam._attention``).
2. ``_colsum_kernel``: one program per (group x head, tile of ``BLOCK_K`` keys) loops over all
   query tiles, recomputes the scores, ``p = exp(s - lse)``, and accumulates ``w . p`` into a
   (``BLOCK_Q``, ``BLOCK_K``) register tile, reduced over the rows once at the end. Each program
   owns its keys, so there are no atomics and the order of the sum is fixed (deterministic).

Nothing of size q x k goes to memory: the cost is one or two q k^T matmuls per block, against
the chunked path's float32 probabilities written and read back (SAM ViT-B: 12 x 4096 x 4096 per
image and global block). Bias: none, or SAM / MViTv2 decomposed relative positions,
``bias[q, k] = rel_h[q, k // kw] + rel_w[q, k % kw]``, gathered per tile from the (q, kh) and
(q, kw) tables (``QK.rel_pos``). Exponentials are base 2 (``exp2``, one multiply by log2 e).
Tile shapes are autotuned once per (q, k, d, bias) shape on the first call.

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


def _configs() -> list:
    """Tile shapes the autotuner times once per problem shape (key: q, k, d and the bias).

    Under the interpreter one small shape (the tests check logic, not speed). On a GPU, shapes a
    card cannot hold in shared memory (float32 tiles of a head dim of 128 at 3 stages) fail to
    compile and the autotuner skips them; the last is the smallest. Where none fits, the launch
    raises ``KernelResourceError`` and ``attention_maps`` falls back to the chunked path.
    """
    if INTERPRET:
        return [triton.Config({"BLOCK_Q": 32, "BLOCK_K": 32}, num_warps=4, num_stages=1)]
    shapes = ((64, 64, 4, 3), (128, 64, 4, 3), (128, 64, 8, 3), (64, 128, 4, 3),
              (128, 128, 8, 2), (32, 64, 4, 2))
    return [triton.Config({"BLOCK_Q": bq, "BLOCK_K": bk}, num_warps=w, num_stages=st)
            for bq, bk, w, st in shapes]


if tl is not None:
    LOG2E = tl.constexpr(1.4426950408889634)  # kernels read globals only as constexpr

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
    def _gathered_bias(rh_rows, rw_rows, offs_k, both, KW):
        """``rel_h[q, k // KW] + rel_w[q, k % KW]`` gathered per score (any key tile)."""
        kh = offs_k // KW
        b = tl.load(rh_rows[:, None] + kh[None, :], mask=both, other=0.0).to(tl.float32)
        return b + tl.load(rw_rows[:, None] + (offs_k - kh * KW)[None, :], mask=both,
                           other=0.0).to(tl.float32)

    @triton.jit
    def _scores(q, kt, rh_ptr, rw_ptr, gh, offs_q, k0, TQ, TK, KH, KW, HAS_REL: tl.constexpr,
                PRECISION: tl.constexpr, BIAS_DTYPE: tl.constexpr, BLOCK_K: tl.constexpr):
        """(BLOCK_Q, BLOCK_K) float32 scores of the key tile starting at ``k0``, bias added;
        masked rows/cols are 0.

        The bias ``rel_h + rel_w`` is rounded to ``BIAS_DTYPE`` (the matmul dtype) before it is
        added, as the bias tensor the module's own attention reads is: the scores then match the
        ones behind a log-sum-exp that the module's SDPA call returned. When a key tile lies in
        one key row (``KW`` a multiple of ``BLOCK_K``, SAM's global blocks) the bias is one
        column of ``rel_h`` plus a contiguous tile of ``rel_w``, not two gathers per score.
        """
        s = tl.dot(q, kt, input_precision=PRECISION)
        if HAS_REL:
            offs_k = k0 + tl.arange(0, BLOCK_K)
            q_ok = offs_q < TQ
            both = q_ok[:, None] & (offs_k < TK)[None, :]
            rh_rows = rh_ptr + gh * TQ * KH + offs_q * KH
            rw_rows = rw_ptr + gh * TQ * KW + offs_q * KW
            if KW % BLOCK_K == 0:  # the tile lies in one key row: kh fixed, kw contiguous
                kh0 = k0 // KW
                b = tl.load(rh_rows + kh0, mask=q_ok, other=0.0).to(tl.float32)[:, None]
                b += tl.load(rw_rows[:, None] + (k0 - kh0 * KW + tl.arange(0, BLOCK_K))[None, :],
                             mask=both, other=0.0).to(tl.float32)
            else:  # windowed blocks (kw 14): two gathers per score
                b = _gathered_bias(rh_rows, rw_rows, offs_k, both, KW)
            s += b.to(BIAS_DTYPE).to(tl.float32)
        return s

    @triton.autotune(configs=_configs(), key=["TQ", "TK", "D", "HAS_REL"])
    @triton.jit
    def _lse_kernel(q_ptr, k_ptr, rh_ptr, rw_ptr, lse_ptr, TQ, TK, D, KH, KW,
                    HAS_REL: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
                    BIAS_DTYPE: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr):
        n_tiles = tl.cdiv(TQ, BLOCK_Q)
        pid = tl.program_id(0).to(tl.int64)  # one axis (see _launch_grid): tiles of one g x h
        gh = pid // n_tiles                  # run next to each other and share its keys in L2
        offs_q = (pid % n_tiles) * BLOCK_Q + tl.arange(0, BLOCK_Q)
        q = _load_q(q_ptr, gh, offs_q, TQ, D, BLOCK_D)  # the same for every key tile
        m = tl.full([BLOCK_Q], float("-inf"), tl.float32)  # running max and sum, base 2
        acc = tl.zeros([BLOCK_Q], tl.float32)
        for k0 in range(0, TK, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            kt = _load_kt(k_ptr, gh, offs_k, TK, D, BLOCK_D)
            s = _scores(q, kt, rh_ptr, rw_ptr, gh, offs_q, k0, TQ, TK, KH, KW, HAS_REL,
                        PRECISION, BIAS_DTYPE, BLOCK_K) * LOG2E
            s = tl.where((offs_k < TK)[None, :], s, float("-inf"))
            m_new = tl.maximum(m, tl.max(s, 1))
            acc = acc * tl.exp2(m - m_new) + tl.sum(tl.exp2(s - m_new[:, None]), 1)
            m = m_new
        tl.store(lse_ptr + gh * TQ + offs_q, (m + tl.log2(acc)) / LOG2E, mask=offs_q < TQ)

    @triton.autotune(configs=_configs(), key=["TQ", "TK", "D", "HAS_REL"])
    @triton.jit
    def _colsum_kernel(q_ptr, k_ptr, rh_ptr, rw_ptr, lse_ptr, w_ptr, out_ptr, H, TQ, TK, D,
                       KH, KW, LSE_STRIDE, HAS_REL: tl.constexpr, BLOCK_D: tl.constexpr,
                       PRECISION: tl.constexpr, BIAS_DTYPE: tl.constexpr,
                       BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr):
        n_tiles = tl.cdiv(TK, BLOCK_K)
        pid = tl.program_id(0).to(tl.int64)
        gh = pid // n_tiles
        g = gh // H
        k0 = (pid % n_tiles) * BLOCK_K
        offs_k = k0 + tl.arange(0, BLOCK_K)
        kt = _load_kt(k_ptr, gh, offs_k, TK, D, BLOCK_D)  # the same for every query tile
        # w . p summed over the query tiles elementwise; the one reduction across rows (and
        # warps) happens once, after the loop, not once per tile
        acc = tl.zeros([BLOCK_Q, BLOCK_K], tl.float32)
        for q0 in range(0, TQ, BLOCK_Q):
            offs_q = q0 + tl.arange(0, BLOCK_Q)
            q_ok = offs_q < TQ
            q = _load_q(q_ptr, gh, offs_q, TQ, D, BLOCK_D)
            s = _scores(q, kt, rh_ptr, rw_ptr, gh, offs_q, k0, TQ, TK, KH, KW, HAS_REL,
                        PRECISION, BIAS_DTYPE, BLOCK_K)
            # rows past TQ get lse = +inf: p = exp(-inf) = 0, never 0 * inf
            lse = tl.load(lse_ptr + gh * LSE_STRIDE + offs_q, mask=q_ok, other=float("inf"))
            w = tl.load(w_ptr + g * TQ + offs_q, mask=q_ok, other=0.0)
            acc += tl.exp2((s - lse[:, None]) * LOG2E) * w[:, None]
        tl.store(out_ptr + gh * TK + offs_k, tl.sum(acc, 0), mask=offs_k < TK)


def usable(qk: QK) -> bool:
    """Whether this block can take the fused path: Triton present, a CUDA tensor (or the CPU
    under ``TRITON_INTERPRET=1``), and a score bias the kernel knows (none, or ``rel_pos``)."""
    if tl is None:
        return False
    dev = qk.q_ghqd.device.type
    if not (dev == "cuda" or (INTERPRET and dev == "cpu")):
        return False
    return qk.bias is None or qk.rel_pos is not None


def _launch_grid(n_gh: int, n: int, block: str):
    """One grid axis of ``groups x heads x tiles`` programs, tiles fastest: a function of the
    autotuned tile size ``meta[block]`` (``"BLOCK_Q"`` tiles the ``n`` queries, ``"BLOCK_K"``
    the keys).

    CUDA allows 2**31 - 1 programs on axis 0 but only 65,535 on axes 1 and 2, and g x h alone
    passes that at moderate batches (HieraDet at 1024 px: 1,024 windows x batch 64; SAM ViT-B
    windowed blocks: 300 per image); tiles fastest keeps the programs that share one
    group-head's q and k together."""

    def grid(meta: dict) -> tuple[int]:
        return (n_gh * triton.cdiv(n, meta[block]),)

    return grid


def _matmul_dtype(q: torch.Tensor) -> torch.dtype:
    dev = q.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else q.dtype


def _tl_dtype(dtype: torch.dtype):
    """Triton's name for a matmul dtype (the bias is rounded to it; float32: no rounding)."""
    return {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}.get(dtype, tl.float32)


def received_triton(qk: QK, w_gq: torch.Tensor) -> torch.Tensor:
    """(g, h, k) float32: ``sum_q w[g, q] softmax(s)[g, h, q, k]`` for every group and head.

    ``w_gq`` weights the query rows (``_reduce._query_weights``: 1 / real queries, 0 for padding).
    q and k are cast once to the matmul dtype the chunked path would use (the autocast dtype, or
    their own); float32 matmuls run in IEEE float32 unless ``torch.backends.cuda.matmul.
    allow_tf32`` is set, like ``torch.matmul``. When ``qk.lse`` holds the rows' log-sum-exp (the
    module's own attention kernel returned it), the first pass is skipped.
    """
    g, h, tq, d = qk.q_ghqd.shape
    tk = qk.k_ghkd.shape[2]
    dtype = _matmul_dtype(qk.q_ghqd)
    q = qk.q_ghqd.to(dtype).contiguous()
    k = qk.k_ghkd.to(dtype).contiguous()
    dev = q.device
    if qk.rel_pos is not None:
        rel_h, rel_w = (t.contiguous() for t in qk.rel_pos)
        kh, kw = rel_h.shape[-1], rel_w.shape[-1]
        assert kh * kw == tk, f"relative-position grid {kh}x{kw} is not the {tk} keys"
    else:
        rel_h = rel_w = torch.empty(1, device=dev)
        kh = kw = 1
    tf32 = dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32
    meta = dict(HAS_REL=qk.rel_pos is not None, BLOCK_D=max(16, triton.next_power_of_2(d)),
                PRECISION="tf32" if tf32 else "ieee",
                BIAS_DTYPE=_tl_dtype(dtype))
    out = torch.empty(g, h, tk, device=dev, dtype=torch.float32)
    w = w_gq.to(device=dev, dtype=torch.float32).contiguous()
    lse = None
    if qk.lse is not None:  # (g, h, tq) rows, possibly a view of padded ones
        assert qk.lse.shape == (g, h, tq) and qk.lse.dtype == torch.float32, "QK.lse layout"
        lse = qk.lse.reshape(g * h, tq)
        lse = lse if lse.stride(1) == 1 else lse.contiguous()
    # Triton launches on the current CUDA device: make it the tensors' one (device="cuda:1")
    on_dev = torch.cuda.device(dev) if dev.type == "cuda" else contextlib.nullcontext()
    with on_dev:
        if lse is None:
            lse = torch.empty(g * h, tq, device=dev, dtype=torch.float32)
            _lse_kernel[_launch_grid(g * h, tq, "BLOCK_Q")](q, k, rel_h, rel_w, lse, tq, tk, d,
                                                            kh, kw, **meta)
        _colsum_kernel[_launch_grid(g * h, tk, "BLOCK_K")](q, k, rel_h, rel_w, lse, w, out, h, tq,
                                                           tk, d, kh, kw, lse.stride(0), **meta)
    return out
