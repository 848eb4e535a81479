"""One fused training step for the seed's SAE (``relu_tied`` + the seed's objective) on the CPU.

The step computes the seed's loss and, in ``backward``, its gradients by hand, with two savings
over autograd of ``sae(x)`` + ``seed_objective`` (the same maths, summed in another order):

1. The pre-bias gradient sums before it multiplies: autograd forms d(x_c)_bd = dpre_bk @ W_kd
   (a sixth (b, k, d) GEMM) and then sums it over b; here db_pre = sum_b g_bd - (sum_b dpre_bk) @ W_kd,
   a (k,) x (k, d) product. The dense path therefore runs 5 GEMMs where autograd runs 6.
2. When the codes are sparse (a ReLU SAE trained with an L1 penalty: a few per cent of the latents
   fire on a token), every product but the encoder's is restricted to the active entries of z:
   the decoder x_hat = z W (CSR @ dense), the latent gradient g W^T only where z > 0 (a sampled
   dense-dense product, ``torch.sparse.sampled_addmm``, taken at the pattern of z^T) and the
   weight gradient z^T g + dpre^T x_c (CSR of z^T @ dense). The multiply-adds fall from 5 b k d
   to about b k d (1 + 4 density); the sparse kernels run at a lower rate than the dense GEMM and
   the codes must be indexed (one ``nonzero``, one sort of the active entries), so the sparse
   path pays only below a few per cent (``SPARSE_MAX_DENSITY``).

The path is chosen per step by the measured density (the share of non-zero entries of z, on a
sample of at least 512 of the batch's tokens): sparse at or below ``max_density`` (``SPARSE_MAX_DENSITY`` by default), dense above it. Counting
the non-zeros reads one number back to the host, which costs nothing on the CPU; the trainer uses
this step on the CPU only.

Gradients (B tokens, x_n = c x, x_c = x_n - b_pre, r = x_hat - x_n, a = 1 / B):
    g_bd = 2 a r_bd / max(||x_n,b||^2, eps)        (d loss / d x_hat)
    dpre_bk = [z > 0] (g W^T + lambda a / max(||x_n,b||, eps))_bk
    dW = z^T g + dpre^T x_c,  db_lat = sum_b dpre,  db_pre = sum_b g - (sum_b dpre) W.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from cortexalign.sae.modules import ReLUTiedSAE
from cortexalign.sae.objectives import _EPS

__all__ = ["FUSED_LOSSES", "SPARSE_MAX_DENSITY", "relu_tied_seed_loss"]

#: Largest share of non-zero latents at which the step uses the sparse kernels: on the 2-core
#: CPU (d=768, 3,840 latents, batch 4,096) the sparse step beat the dense one at 5% and lost at
#: 10% (BENCHMARKS.md, "SAE training on the CPU: the sparse step (issue 21)").
SPARSE_MAX_DENSITY = 0.05


def _csr(crow_counts: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape, idx):
    crow = torch.zeros(shape[0] + 1, dtype=idx)
    torch.cumsum(crow_counts, 0, out=crow[1:])
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, shape)


def _density(z_bk: torch.Tensor) -> float:
    """Share of non-zero entries of z, counted on every s-th token (at least 512 tokens counted;
    the batch is shuffled). A comparison and a sum: ``count_nonzero`` branches per entry and took
    4 ms per 1e6 entries at 50% density against 0.6 ms at 1%."""
    sample = z_bk[:: max(1, z_bk.shape[0] // 512)]
    return float((sample > 0).sum()) / max(sample.numel(), 1)


def _sparse_codes(z_bk: torch.Tensor):
    """z as CSR (b, k) and its transpose as CSR (k, b), with each transposed entry's token b and
    latent j (built from one ``nonzero`` and one sort of the entries' keys j n_b + b)."""
    n_b, n_k = z_bk.shape
    idx = torch.int32 if n_b * n_k < 2 ** 31 else torch.int64  # MKL's native index width
    row, col = z_bk.nonzero().to(idx).unbind(1)  # row-major; z >= 0, so non-zero <=> active
    vals = z_bk[row, col]
    key = col * n_b + row  # distinct keys: sorted, they give the transposed (j, b) order
    # numpy's sort: torch.sort of ~1e5 ints took 80 ms on 2 busy threads, numpy's 1 ms
    perm = torch.from_numpy(np.argsort(key.numpy()))
    key_t = key[perm]
    row_t, j_t = key_t % n_b, key_t // n_b
    z_csr = _csr(torch.bincount(row, minlength=n_b), col, vals, (n_b, n_k), idx)
    zt_csr = _csr(torch.bincount(col, minlength=n_k), row_t, vals[perm], (n_k, n_b), idx)
    return z_csr, zt_csr, row_t, j_t


class _ReluTiedSeedLoss(torch.autograd.Function):
    """loss(x, W, b_pre, b_lat) of the seed's objective for a tied ReLU SAE; z as a second output."""

    @staticmethod
    def forward(ctx, x_bd, scale, w_kd, b_pre_d, b_lat_k, l1_coef: float, max_density: float):
        xn_bd = x_bd * scale
        xc_bd = xn_bd - b_pre_d
        z_bk = torch.addmm(b_lat_k, xc_bd, w_kd.t()).relu_()
        sparse = _density(z_bk) <= max_density
        codes = _sparse_codes(z_bk) if sparse else None
        r_bd = (codes[0] @ w_kd if sparse else z_bk @ w_kd).add_(b_pre_d).sub_(xn_bd)
        xn2_b = xn_bd.pow(2).sum(-1).clamp_min(_EPS)
        xnorm_b = xn_bd.norm(dim=-1).clamp_min(_EPS)
        mse = (r_bd.pow(2).sum(-1) / xn2_b).mean()
        l1 = (z_bk.sum(-1) / xnorm_b).mean()  # z >= 0: |z| = z
        ctx.save_for_backward(xc_bd, z_bk, r_bd, xn2_b, xnorm_b, w_kd)
        ctx.codes, ctx.l1_coef = codes, l1_coef
        mse, l1 = mse.detach(), l1.detach()
        ctx.mark_non_differentiable(mse, l1, z_bk)
        return mse + l1_coef * l1, mse, l1, z_bk

    @staticmethod
    def backward(ctx, grad_loss, _g_mse, _g_l1, _g_z):
        xc_bd, z_bk, r_bd, xn2_b, xnorm_b, w_kd = ctx.saved_tensors
        a = grad_loss / z_bk.shape[0]
        g_bd = r_bd * (2 * a / xn2_b).unsqueeze(1)
        lam_b = (ctx.l1_coef * a) / xnorm_b
        if ctx.codes is None:
            dW, db_lat = _dense_grads(xc_bd, z_bk, g_bd, lam_b, w_kd)
        else:
            dW, db_lat = _sparse_grads(xc_bd, *ctx.codes[1:], g_bd, lam_b, w_kd)
        db_pre = g_bd.sum(0) - db_lat @ w_kd
        return None, None, dW, db_pre, db_lat, None, None


def _dense_grads(xc_bd, z_bk, g_bd, lam_b, w_kd):
    # relu's own backward (grad where z > 0): branch-free, unlike masked_fill_ (5 ms vs 0.5 ms per
    # 1e6 entries at 50% density)
    dpre_bk = torch.ops.aten.threshold_backward((g_bd @ w_kd.t()).add_(lam_b.unsqueeze(1)), z_bk, 0)
    dW = torch.mm(z_bk.t(), g_bd).addmm_(dpre_bk.t(), xc_bd)
    return dW, dpre_bk.sum(0)


def _sparse_grads(xc_bd, zt_csr, row_t, j_t, g_bd, lam_b, w_kd):
    """The weight and latent-bias gradients from the transposed code only: dpre^T is sampled
    at z^T's pattern (W_j . g_b at each active (j, b)), so no entry is ever re-ordered."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dz_t = torch.sparse.sampled_addmm(zt_csr, w_kd, g_bd.t(), beta=0.0)
        dpre = dz_t.values().add_(lam_b[row_t])  # the pattern of z is where pre > 0
        dpre_t = torch.sparse_csr_tensor(zt_csr.crow_indices(), zt_csr.col_indices(), dpre,
                                         zt_csr.shape)
        dW = (zt_csr @ g_bd).add_(dpre_t @ xc_bd)
    return dW, torch.zeros(w_kd.shape[0], dtype=dpre.dtype).index_add_(0, j_t, dpre)


def relu_tied_seed_loss(sae: ReLUTiedSAE, x_bd: torch.Tensor, l1_coef: float,
                        max_density: float | None = None):
    """The seed's loss of a ``relu_tied`` SAE on a batch, with the fused backward.

    Parameters
    ----------
    sae : the SAE (its parameters on the CPU).
    x_bd : (b, d) tokens in their own units (the SAE scales them by ``input_scale``).
    l1_coef : lambda (after any warm-up).
    max_density : use the sparse kernels when at most this share of z is non-zero
        (``None``: ``SPARSE_MAX_DENSITY``; 0 forces the dense path, 1 the sparse one).

    Returns
    -------
    loss : the scalar loss (``loss.backward()`` fills the parameters' ``.grad``).
    parts : ``{"loss", "nmse", "l1"}`` as detached scalars (as ``seed_objective``).
    z_bk : (b, k) latents (no gradient).
    """
    dens = SPARSE_MAX_DENSITY if max_density is None else max_density
    loss, mse, l1, z_bk = _ReluTiedSeedLoss.apply(x_bd, sae.input_scale, sae.W, sae.b_pre,
                                                  sae.b_lat, float(l1_coef), float(dens))
    return loss, {"loss": loss.detach(), "nmse": mse, "l1": l1}, z_bk


#: (architecture, objective) -> fused loss ``fn(sae, x_bd, l1_coef) -> (loss, parts, z_bk)``, used
#: by ``train_sae`` on the CPU in place of ``sae(x)`` + the objective.
FUSED_LOSSES = {("relu_tied", "seed"): relu_tied_seed_loss}
