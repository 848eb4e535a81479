"""Reductions of attention probabilities, computed chunk by chunk while the forward pass runs.

Chunk logic (bounded memory). The probabilities of one block are (g, h, q, k): for SAM ViT-H at
1024 px a global block has 16 x 4096 x 4096 = 268 M of them (1 GiB in float32), more than the
image encoder's activations. Softmax normalises each query row over all keys, so rows are
independent: we score and normalise ``chunk`` query rows of *all* attention groups (images x
windows) and heads at once, in one batched matmul, and fold each chunk into the reduction (one more
batched matmul for received maps) before the next one is made. Only query rows are chunked, so
the number of kernels per block is a few per chunk, not per window. With ``chunk_size=None`` the
chunk holds at most ``CHUNK_ELEMENTS`` (2**24, 64 MiB of float32) probabilities (scores and
softmax output are two such tensors at once; the score bias is added in place); the accumulators
are (g, h, k) (received maps) or, for rollout only, one (b, t, t) matrix. ``full`` is the one reduction that keeps a block's whole tensor, and only for the blocks
asked for.

Fused path. ``received`` and ``per_head`` need only each key's weighted column sum; on CUDA
(``state["backend"]`` "auto" or "triton") they go through ``_received_triton``, which never
stores a probability: two passes over the scores in registers, as FlashAttention does.

Each reduction is ``fn(qk, batch, chunk_size, state) -> Tensor`` in ``REDUCTIONS``; ``state`` is
a dict shared by the blocks of one call (rollout keeps its running product there, ``backend``
picks the path of the received maps).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import torch

from cortexalign.errors import InputError
from cortexalign.models.attention._layout import QK
from cortexalign.models.attention._received_triton import KernelResourceError, received_triton
from cortexalign.models.attention._received_triton import usable as triton_usable

__all__ = ["REDUCTIONS", "CHUNK_ELEMENTS", "iter_probs", "ROLLOUT_MAX_TOKENS", "BACKENDS"]

CHUNK_ELEMENTS = 2**24
BACKENDS = ("auto", "chunked", "triton")
ROLLOUT_MAX_TOKENS = 4096


def iter_probs(qk: QK, chunk_size: int | None,
               rows: slice | None = None) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield ``(rows, p_ghck)``: softmax(q k^T * scale + bias) of all groups and heads, by query rows.

    All groups (images x windows) and heads are scored in one batched matmul per chunk; only the
    query rows are chunked. ``chunk_size`` is the number of rows per chunk (None: as many as
    ``CHUNK_ELEMENTS`` allow, at least one).
    """
    g, h, tq, _ = qk.q_ghqd.shape
    tk = qk.k_ghkd.shape[2]
    rows = rows or slice(0, tq)
    chunk = chunk_size or max(1, CHUNK_ELEMENTS // (g * h * tk))
    # Once per block, not per chunk: q and k come out of the qkv projection in a permuted layout
    # that a batched matmul cannot view as (g h, rows, d), so every chunk would copy all of k (and
    # cast it to the autocast dtype); a contiguous copy in that dtype is made once instead.
    dev = qk.q_ghqd.device.type
    dtype = (torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev)
             else qk.q_ghqd.dtype)
    q_ghqd = qk.q_ghqd.to(dtype).contiguous()
    k_ghdk = qk.k_ghkd.to(dtype).contiguous().transpose(-1, -2)
    for r0 in range(rows.start, rows.stop, chunk):
        rs = slice(r0, min(rows.stop, r0 + chunk))
        scores_ghck = torch.matmul(q_ghqd[:, :, rs], k_ghdk)
        if qk.bias is not None:
            qk.bias(rs, scores_ghck)
        yield rs, scores_ghck.softmax(dim=-1, dtype=torch.float32)  # float32 under autocast too


def _query_weights(qk: QK, batch: int) -> torch.Tensor:
    """(g, q) float32 weights averaging over the real (non-padding) queries of each window."""
    valid_wq = (qk.query_tok_wq.to(qk.q_ghqd.device) >= 0).float()
    w_wq = valid_wq / valid_wq.sum(dim=1, keepdim=True).clamp(min=1)
    return w_wq.repeat(batch, 1)


def _to_token_space(per_key_ghk: torch.Tensor, qk: QK, batch: int) -> torch.Tensor:
    """Scatter per-window key values (g, h, k) to the image's token space (b, h, t).

    Padding keys (index -1) go to a spare slot t that is dropped, so no boolean mask (and no
    device-to-host sync) is needed.
    """
    g, h, tk = per_key_ghk.shape
    w, t = g // batch, qk.num_tokens
    vals = per_key_ghk.reshape(batch, w, h, tk).permute(0, 2, 1, 3).reshape(batch, h, w * tk)
    idx = qk.key_tok_wk.flatten().to(vals.device)
    idx = torch.where(idx >= 0, idx, t)
    out = vals.new_zeros(batch, h, t + 1)
    out.index_copy_(2, idx, vals)
    return out[:, :, :t]


def _grid(tokens_bht: torch.Tensor, qk: QK) -> torch.Tensor:
    """Drop prefix tokens and reshape to (b, h, gh, gw)."""
    b, h, _ = tokens_bht.shape
    return tokens_bht[:, :, qk.num_prefix:].reshape(b, h, *qk.grid_hw)


def received_per_head(qk: QK, batch: int, chunk_size: int | None, state: dict) -> torch.Tensor:
    """(b, h, gh, gw): per head, the attention each token receives, averaged over the queries.

    Column mean of the probabilities over the real queries of the token's window (all queries,
    prefix tokens included, for global attention); prefix and padding keys are dropped.
    """
    g, h, tq, tk = *qk.q_ghqd.shape[:3], qk.k_ghkd.shape[2]
    w_gq = _query_weights(qk, batch)
    backend = state.get("backend", "auto")
    if _use_triton(qk, backend):
        try:
            return _grid(_to_token_space(received_triton(qk, w_gq), qk, batch), qk)
        except KernelResourceError as err:  # e.g. shared memory of a smaller GPU
            if backend == "triton":
                raise
            warnings.warn(f"the fused attention-map kernel does not fit this GPU ({err}); "
                          "using the chunked path (same maps, slower)", RuntimeWarning,
                          stacklevel=2)
            state["backend"] = "chunked"  # the next blocks too: do not fail again per block
    w_gh1q = w_gq[:, None, None, :].expand(g, h, 1, tq).reshape(g * h, 1, tq)
    acc_gh1k = torch.zeros(g * h, 1, tk, device=qk.q_ghqd.device)
    no_autocast = torch.autocast(acc_gh1k.device.type, enabled=False)  # fold in float32
    for rs, p in iter_probs(qk, chunk_size):  # acc += w[rows] @ p: one batched matmul per chunk
        with no_autocast:
            acc_gh1k.baddbmm_(w_gh1q[:, :, rs], p.reshape(g * h, -1, tk))
    return _grid(_to_token_space(acc_gh1k.view(g, h, tk), qk, batch), qk)


def _use_triton(qk: QK, backend: str) -> bool:
    """``backend``: "auto" takes the fused kernel where ``usable``, "chunked" never, "triton"
    always (an error where it cannot run)."""
    if backend == "chunked":
        return False
    ok = triton_usable(qk)
    if backend == "triton" and not ok:
        raise InputError("backend", "a block the fused Triton kernel can run: Triton installed, "
                         "CUDA tensors, no score bias or SAM's relative positions",
                         f"a {qk.q_ghqd.device.type} block with "
                         f"{'a bias it does not know' if qk.bias is not None else 'no bias'}",
                         "use backend='auto' (falls back to the chunked path) or 'chunked'")
    return ok


def received(qk: QK, batch: int, chunk_size: int | None, state: dict) -> torch.Tensor:
    """(b, gh, gw): ``per_head`` averaged over heads (the default map)."""
    return received_per_head(qk, batch, chunk_size, state).mean(dim=1)


def cls(qk: QK, batch: int, chunk_size: int | None, state: dict) -> torch.Tensor:
    """(b, gh, gw): attention of the CLS token (query 0) to the patch tokens, mean over heads."""
    if not qk.has_cls:
        raise InputError("reduction", "a model with a CLS token for reduction='cls'",
                         "a block without one (windowed, or no class token)",
                         "use reduction='received' (attention received per token) instead")
    _, p = next(iter_probs(qk, chunk_size, rows=slice(0, 1)))
    return _grid(_to_token_space(p[:, :, 0], qk, batch), qk).mean(dim=1)


def full(qk: QK, batch: int, chunk_size: int | None, state: dict) -> torch.Tensor:
    """(g, h, q, k): the probabilities as the module computes them (g = images x windows)."""
    g, h, tq, _ = qk.q_ghqd.shape
    out = torch.empty(g, h, tq, qk.k_ghkd.shape[2], device=qk.q_ghqd.device)
    for rs, p in iter_probs(qk, chunk_size):
        out[:, :, rs] = p
    return out


def _head_mean_matrix(qk: QK, batch: int, chunk_size: int | None) -> torch.Tensor:
    """(b, t, t) head-mean attention over the image's token space; block diagonal when windowed."""
    t = qk.num_tokens
    w, tk = qk.key_tok_wk.shape
    dev = qk.q_ghqd.device
    a_btt = torch.zeros(batch, t, t, device=dev)
    q_tok = qk.query_tok_wq.to(dev).repeat(batch, 1)  # (g, q)
    k_tok = qk.key_tok_wk.to(dev).repeat(batch, 1)  # (g, k)
    img = torch.arange(batch, device=dev).repeat_interleave(w)  # (g,)
    for rs, p in iter_probs(qk, chunk_size):
        p_gck = p.mean(dim=1)
        qi, ki = q_tok[:, rs], k_tok
        bi = img[:, None, None].expand_as(p_gck)
        sel = (qi[:, :, None] >= 0) & (ki[:, None, :] >= 0)
        a_btt[bi[sel], qi[:, :, None].expand_as(p_gck)[sel], ki[:, None, :].expand_as(p_gck)[sel]] = p_gck[sel]
    # padding keys took part in the softmax but are not tokens: renormalise the real rows
    return a_btt / a_btt.sum(dim=-1, keepdim=True).clamp(min=1e-30)


def rollout(qk: QK, batch: int, chunk_size: int | None, state: dict) -> torch.Tensor:
    """(b, gh, gw): attention rollout (Abnar & Zuidema 2020) through this block.

    ``A_l = 0.5 * mean_h(P_l) + 0.5 * I`` and ``R_l = A_l R_{l-1}`` over the blocks asked for, in
    forward order. The map is R's CLS row over the patches when the model has a CLS token,
    otherwise R's column mean over all tokens (attention received through the rollout).
    """
    if qk.grid_hw != qk.query_grid_hw:
        raise InputError("reduction", "blocks whose queries and keys are the same tokens for "
                         "reduction='rollout'", f"a block pooling {qk.grid_hw} keys to "
                         f"{qk.query_grid_hw} queries", "leave query-pooling blocks out of blocks=")
    t = qk.num_tokens
    limit = state.get("rollout_max_tokens", ROLLOUT_MAX_TOKENS)
    if qk.windowed and t > limit:
        raise InputError("reduction", f"at most {limit} tokens to build a windowed "
                         "block's block-diagonal matrix for rollout", f"{t} tokens",
                         "restrict blocks= to global-attention blocks, or use smaller images")
    prev = state.get("rollout")
    if prev is not None and prev.shape[-1] != t:
        raise InputError("blocks", "blocks over one token set for reduction='rollout'",
                         f"{prev.shape[-1]} tokens then {t}", "roll out within one stage")
    a_btt = 0.5 * _head_mean_matrix(qk, batch, chunk_size)
    a_btt.diagonal(dim1=-2, dim2=-1).add_(0.5)
    with torch.autocast(a_btt.device.type, enabled=False):  # the running product stays float32
        r_btt = a_btt if prev is None else a_btt @ prev
    state["rollout"] = r_btt
    p = qk.num_prefix
    rows = r_btt[:, :1, p:] if qk.has_cls else r_btt[:, :, p:]
    return rows.mean(dim=1).reshape(batch, *qk.grid_hw)


REDUCTIONS = {
    "received": received,
    "per_head": received_per_head,
    "cls": cls,
    "rollout": rollout,
    "full": full,
}
