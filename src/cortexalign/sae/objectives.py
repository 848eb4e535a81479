"""SAE objectives (plain functions in ``OBJECTIVES``) and reconstruction metrics.

The seed's objective (SAE-BrainMap, METHODS.md section 2), per token then averaged over the batch:

    loss = mean_b ||x_hat - x||^2 / ||x||^2  +  lambda * mean_b ||z||_1 / ||x||_2

Normalising by the input norm makes the loss invariant to the scale of a layer's residual stream,
so one lambda serves all 12 layers. Every objective has the signature
``fn(x_bd, xhat_bd, z_bk, l1_coef) -> (loss, parts)`` with ``parts`` a dict of detached scalar
tensors (converted to floats only when logged, so a GPU step never waits on the host).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["OBJECTIVES", "seed_objective", "nmse_objective", "SAEMetrics", "MetricAccumulator",
           "DENSE_FREQUENCY", "MAX_ACTIVE_FRACTION"]

_EPS = 1e-8

Objective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float],
                        tuple[torch.Tensor, dict[str, torch.Tensor]]]


def _normalised_sq_error_b(x_bd: torch.Tensor, xhat_bd: torch.Tensor) -> torch.Tensor:
    dtype = torch.promote_types(x_bd.dtype, torch.float32)  # bf16 -> f32; f64 stays f64
    x, xhat = x_bd.to(dtype), xhat_bd.to(dtype)
    return (xhat - x).pow(2).sum(-1) / x.pow(2).sum(-1).clamp_min(_EPS)


def seed_objective(x_bd: torch.Tensor, xhat_bd: torch.Tensor, z_bk: torch.Tensor,
                   l1_coef: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The seed's loss: normalised MSE + lambda * L1 scaled by the input norm (floats in float32)."""
    mse = _normalised_sq_error_b(x_bd, xhat_bd).mean()
    l1 = (z_bk.float().abs().sum(-1) / x_bd.float().norm(dim=-1).clamp_min(_EPS)).mean()
    loss = mse + l1_coef * l1
    return loss, {"loss": loss.detach(), "nmse": mse.detach(), "l1": l1.detach()}


def nmse_objective(x_bd: torch.Tensor, xhat_bd: torch.Tensor, z_bk: torch.Tensor,
                   l1_coef: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Normalised MSE only: the TopK family sets sparsity by k, not by a penalty."""
    mse = _normalised_sq_error_b(x_bd, xhat_bd).mean()
    return mse, {"loss": mse.detach(), "nmse": mse.detach()}


OBJECTIVES: dict[str, Objective] = {"seed": seed_objective, "nmse": nmse_objective}


@dataclass(frozen=True)
class SAEMetrics:
    """Reconstruction quality of an SAE over a set of tokens.

    Attributes
    ----------
    nmse : mean over tokens of ||x_hat - x||^2 / ||x||^2 (the seed's normalisation).
    explained_variance : 1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 (over all tokens).
    l0 : mean number of non-zero latents per token.
    dead_fraction : fraction of latents that never fired on these tokens.
    n_tokens : number of tokens evaluated.
    dense_fraction : fraction of latents that fire on more than ``DENSE_FREQUENCY`` (10%) of the
        tokens (dense latents carry little dictionary meaning).
    active_fraction : ``l0`` over the number of latents: the share of the dictionary one token
        uses (``MAX_ACTIVE_FRACTION`` is where an SAE stops counting as sparse).
    """

    nmse: float
    explained_variance: float
    l0: float
    dead_fraction: float
    n_tokens: int
    dense_fraction: float = float("nan")
    active_fraction: float = float("nan")


#: A latent firing on more than this share of tokens is dense.
DENSE_FREQUENCY = 0.1
#: A trained SAE whose tokens use more than this share of its latents is not sparse (warned).
MAX_ACTIVE_FRACTION = 0.05


class MetricAccumulator:
    """Streaming sums for ``SAEMetrics`` (float64, so millions of tokens add up exactly enough).

    The sums stay on the device and are read back once, in ``result``: ``update`` never waits on
    the host.
    """

    def __init__(self, d_in: int, d_sae: int, device: torch.device | str = "cpu"):
        self.n = 0
        # nmse, squared error, squared norm, non-zero latents: summed over tokens
        self.sums_4 = torch.zeros(4, dtype=torch.float64, device=device)
        self.x_sum_d = torch.zeros(d_in, dtype=torch.float64, device=device)
        self.fired_k = torch.zeros(d_sae, dtype=torch.long, device=device)  # tokens fired on

    @torch.no_grad()
    def update(self, x_bd: torch.Tensor, xhat_bd: torch.Tensor, z_bk: torch.Tensor) -> None:
        """Add a batch: inputs, reconstructions and latents."""
        x, xhat = x_bd.double(), xhat_bd.double()
        self.n += x.shape[0]
        nz_bk = z_bk != 0
        self.sums_4 += torch.stack([_normalised_sq_error_b(x, xhat).double().sum(),
                                    (xhat - x).pow(2).sum(), x.pow(2).sum(),
                                    nz_bk.sum().double()])
        self.x_sum_d += x.sum(0)
        self.fired_k += nz_bk.sum(0)

    def result(self) -> SAEMetrics:
        """The metrics over every batch added so far."""
        n = max(self.n, 1)
        nmse_sum, err_sum, sq_sum, l0_sum = self.sums_4.tolist()
        # sum ||x - mean||^2 = sum ||x||^2 - n ||mean||^2
        total_var = sq_sum - float(self.x_sum_d.pow(2).sum()) / n
        ev = 1.0 - err_sum / total_var if total_var > 0 else float("nan")
        freq_k = self.fired_k.double() / n
        return SAEMetrics(nmse=nmse_sum / n, explained_variance=ev, l0=l0_sum / n,
                          dead_fraction=float((self.fired_k == 0).double().mean()), n_tokens=self.n,
                          dense_fraction=float((freq_k > DENSE_FREQUENCY).double().mean()),
                          active_fraction=l0_sum / n / len(freq_k))
