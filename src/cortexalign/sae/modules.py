"""Sparse autoencoder architectures, registered by name in ``SAE_ARCHITECTURES``.

Every SAE maps ``x_bd`` (b tokens of width d) to latents ``z_bk`` (k = expansion x d) and back:
``encode(x_bd) -> z_bk``, ``decode(z_bk) -> xhat_bd``, ``forward(x_bd) -> (xhat_bd, z_bk)``.
``constrain()`` is called by the trainer after every optimiser step (unit-norm decoder directions
for the untied architectures). Parameters are plain tensors, so a checkpoint is a flat
safetensors file.

Input scale: every SAE holds a constant ``input_scale`` c (a buffer, 1 until set). ``encode``
works on c x and ``decode`` returns its reconstruction divided by c, so callers always pass and
get tokens in their own units while the parameters live in a normalised space. The trainer sets
c once, from the first batch, so that E||c x||^2 = d (``SAEConfig.normalize_inputs``): the
seed's objective and NMSE are unchanged by c (the same optimum, rescaled), but Adam's steps are
absolute, so without it the biases that set each latent's threshold move lr per step against
pre-activations of the tokens' own scale.

- ``relu_tied``: the SAE-BrainMap seed. z = ReLU(W (x - b_pre) + b_lat), x_hat = W^T z + b_pre.
- ``topk``: Gao et al. (2024), "Scaling and evaluating sparse autoencoders": only the k largest
  pre-activations of each token survive; untied decoder with unit-norm directions.
- ``batch_topk``: Bussmann, Leask & Nanda (2024), "BatchTopK sparse autoencoders": the k x b largest
  pre-activations of a batch survive; at inference a learned threshold replaces the batch rule.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cortexalign.errors import InputError
from cortexalign.registry import Registry
from cortexalign.sae.config import SAEConfig

__all__ = ["resolved_objective", "SAE_ARCHITECTURES", "SparseAutoencoder", "ReLUTiedSAE", "TopKSAE",
           "BatchTopKSAE", "build_sae"]

SAE_ARCHITECTURES: Registry = Registry("SAE architecture")


def _unit_rows(n: int, d: int, generator: torch.Generator) -> torch.Tensor:
    w = torch.randn(n, d, generator=generator)
    return w / w.norm(dim=1, keepdim=True)


class SparseAutoencoder(nn.Module):
    """Base class: shapes, the forward pass and the decoder constraint.

    Parameters
    ----------
    config : the ``SAEConfig`` (``d_in``, ``expansion``, ``k``, ``seed`` are used here).
    """

    def __init__(self, config: SAEConfig):
        super().__init__()
        self.config = config
        self.d_in, self.d_sae = config.d_in, config.d_sae
        self.b_pre = nn.Parameter(torch.zeros(config.d_in))
        self.register_buffer("input_scale", torch.ones(()))

    def normalise(self, x_bd: torch.Tensor) -> torch.Tensor:
        """Tokens in the SAE's normalised units: ``input_scale * x`` (b, d)."""
        return x_bd * self.input_scale

    @torch.no_grad()
    def set_input_scale(self, x_bd: torch.Tensor) -> float:
        """Set ``input_scale`` so that the mean squared norm of ``x_bd``'s tokens becomes d."""
        ms = float(x_bd.double().pow(2).sum(-1).mean())
        if not ms > 0:
            raise InputError("x_bd", "tokens with a non-zero norm", "all-zero tokens",
                             "check the feature extraction (a dead layer?)")
        self.input_scale.fill_((self.d_in / ms) ** 0.5)
        return float(self.input_scale)

    def encode(self, x_bd: torch.Tensor) -> torch.Tensor:
        """Latent activations (b, k) of inputs (b, d)."""
        raise NotImplementedError  # every registered subclass overrides it

    def decode(self, z_bk: torch.Tensor) -> torch.Tensor:
        """Reconstructions (b, d) of latents (b, k), in the tokens' units:
        ``(z @ W_dec + b_pre) / input_scale``."""
        return (z_bk @ self.decoder_kd() + self.b_pre) / self.input_scale

    def decoder_kd(self) -> torch.Tensor:
        """(k, d) decoder directions: row j is what latent j adds to the reconstruction."""
        raise NotImplementedError

    def encoder_kd(self) -> torch.Tensor:
        """(k, d) encoder rows: latent j's pre-activation is encoder_kd[j] . (c x - b_pre) + bias
        (c: ``input_scale``)."""
        raise NotImplementedError

    def forward(self, x_bd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(reconstruction (b, d), latents (b, k))`` of inputs (b, d)."""
        z_bk = self.encode(x_bd)
        return self.decode(z_bk), z_bk

    @torch.no_grad()
    def constrain(self) -> None:
        """Re-impose parameter constraints after an optimiser step (none by default)."""

    @torch.no_grad()
    def reinit_latents(self, idx: torch.Tensor, dirs_nd: torch.Tensor, enc_scale: float) -> None:
        """Point latents ``idx`` at unit directions ``dirs_nd`` (resampling of dead latents)."""
        raise NotImplementedError

    def parameter_groups(self) -> dict[str, list[str]]:
        """Which parameters have a latent axis (rows of the resampled latents get their optimiser
        state reset): name -> ``["k"]`` if axis 0 is the latent axis."""
        return {}


@SAE_ARCHITECTURES.register("relu_tied", default_objective="seed",
                            citation="SAE-BrainMap (arXiv 2506.11123)")
class ReLUTiedSAE(SparseAutoencoder):
    """The seed's SAE: one (k, d) matrix W encodes and, transposed, decodes.

    z = ReLU(W (x - b_pre) + b_lat);  x_hat = W^T z + b_pre (x in normalised units, see the module
    docstring). Rows of W start at unit norm scaled by
    1/sqrt(expansion), so that the initial reconstruction has the scale of the input; the tied
    decoder is left unconstrained (normalising it would also normalise the encoder).
    """

    def __init__(self, config: SAEConfig):
        super().__init__(config)
        g = torch.Generator().manual_seed(config.seed)
        scale = 1.0 / math.sqrt(config.expansion)
        self.W = nn.Parameter(_unit_rows(self.d_sae, self.d_in, g) * scale)
        self.b_lat = nn.Parameter(torch.zeros(self.d_sae))

    def encode(self, x_bd: torch.Tensor) -> torch.Tensor:
        """``relu((c x - b_pre) @ W.T + b_lat)`` (c: ``input_scale``)."""
        return torch.relu((self.normalise(x_bd) - self.b_pre) @ self.W.T + self.b_lat)

    def decoder_kd(self) -> torch.Tensor:
        """The (k, d) decoder: the tied weights ``W``."""
        return self.W

    def encoder_kd(self) -> torch.Tensor:
        """The (k, d) encoder: the tied weights ``W``."""
        return self.W

    @torch.no_grad()
    def reinit_latents(self, idx: torch.Tensor, dirs_nd: torch.Tensor, enc_scale: float) -> None:
        """Restart dead latents ``idx`` on directions ``dirs_nd`` scaled by ``enc_scale``."""
        self.W[idx] = dirs_nd.to(self.W) * enc_scale
        self.b_lat[idx] = 0.0

    def parameter_groups(self) -> dict[str, list[str]]:
        """Parameter name -> the dims indexed by latent (for optimiser state resets)."""
        return {"W": ["k"], "b_lat": ["k"]}


class _UntiedSAE(SparseAutoencoder):
    """Untied encoder (k, d) and decoder (k, d); decoder rows kept at unit norm."""

    def __init__(self, config: SAEConfig):
        super().__init__(config)
        g = torch.Generator().manual_seed(config.seed)
        w_dec = _unit_rows(self.d_sae, self.d_in, g)
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.clone())  # Gao et al.: encoder initialised as the transpose
        self.b_enc = nn.Parameter(torch.zeros(self.d_sae))

    def pre_acts(self, x_bd: torch.Tensor) -> torch.Tensor:
        return torch.relu((self.normalise(x_bd) - self.b_pre) @ self.W_enc.T + self.b_enc)

    def decoder_kd(self) -> torch.Tensor:
        return self.W_dec

    def encoder_kd(self) -> torch.Tensor:
        return self.W_enc

    @torch.no_grad()
    def constrain(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def reinit_latents(self, idx: torch.Tensor, dirs_nd: torch.Tensor, enc_scale: float) -> None:
        dirs_nd = dirs_nd.to(self.W_dec)
        self.W_dec[idx] = dirs_nd
        self.W_enc[idx] = dirs_nd * enc_scale
        self.b_enc[idx] = 0.0

    def parameter_groups(self) -> dict[str, list[str]]:
        return {"W_enc": ["k"], "W_dec": ["k"], "b_enc": ["k"]}


@SAE_ARCHITECTURES.register("topk", default_objective="nmse",
                            citation="Gao et al. (2024), arXiv 2406.04093")
class TopKSAE(_UntiedSAE):
    """TopK SAE: z = TopK_k(ReLU(W_enc (x - b_pre) + b_enc)), x_hat = W_dec^T z + b_pre."""

    def encode(self, x_bd: torch.Tensor) -> torch.Tensor:
        """The ``k`` largest pre-activations of each input, the others zero."""
        pre_bk = self.pre_acts(x_bd)
        k = min(self.config.k, self.d_sae)
        vals, idx = pre_bk.topk(k, dim=-1)
        return torch.zeros_like(pre_bk).scatter_(-1, idx, vals)


@SAE_ARCHITECTURES.register("batch_topk", default_objective="nmse",
                            citation="Bussmann, Leask & Nanda (2024), arXiv 2412.06410")
class BatchTopKSAE(_UntiedSAE):
    """BatchTopK SAE: in training the k x b largest pre-activations of the batch survive.

    A running threshold (exponential average of the smallest surviving activation per batch) is
    kept in the buffer ``threshold``; in eval mode z = pre * (pre > threshold), so a token's code no
    longer depends on the rest of its batch. That running average under-counts (8.8 active latents
    per token at inference for k = 16 on CLIP tokens): ``calibrate_threshold`` sets it from a set
    of tokens so that their mean L0 at inference is k (the batch rule applied to the whole set).
    """

    def __init__(self, config: SAEConfig):
        super().__init__(config)
        self.register_buffer("threshold", torch.zeros(()))
        self.register_buffer("threshold_seen", torch.zeros((), dtype=torch.bool))

    def encode(self, x_bd: torch.Tensor) -> torch.Tensor:
        """Training: the ``k x batch`` largest pre-activations of the batch; eval: those above the learned threshold."""
        pre_bk = self.pre_acts(x_bd)
        if not self.training:
            return pre_bk * (pre_bk > self.threshold)
        flat = pre_bk.flatten()
        n_keep = min(self.config.k * pre_bk.shape[0], flat.numel())
        vals, idx = flat.topk(n_keep)
        z_bk = torch.zeros_like(flat).scatter_(0, idx, vals).view_as(pre_bk)
        if vals.numel() == 0:  # an empty batch leaves the threshold as it is
            return z_bk
        with torch.no_grad():  # branch-free on the device: a training step never syncs the host
            positive = vals > 0
            low = vals.masked_fill(~positive, float("inf")).min().float()  # smallest positive value
            new = torch.where(self.threshold_seen, 0.99 * self.threshold + 0.01 * low, low)
            has_positive = positive.any()
            self.threshold.copy_(torch.where(has_positive, new, self.threshold))
            self.threshold_seen.logical_or_(has_positive)
        return z_bk


    @torch.no_grad()
    def calibrate_threshold(self, chunks) -> float:
        """Set ``threshold`` so that the tokens of ``chunks`` have mean L0 = k at inference.

        ``chunks``: a callable returning a fresh iterable of (N, d) tensors or arrays, or a list of
        them (read twice: once to count the n tokens, once to keep the k n + 1 largest positive
        pre-activations). The threshold lies halfway between the (k n)-th and (k n + 1)-th
        largest, so exactly k n pre-activations pass ``pre > threshold`` (ties aside): the
        training batch rule applied to the whole set. Returns the threshold.
        """
        fresh = chunks if callable(chunks) else lambda: chunks
        n = sum(int(c.shape[0]) for c in fresh())
        if n == 0:
            raise InputError("chunks", "at least one token", "none", "pass the tokens to calibrate on")
        target = self.config.k * n
        keep = torch.empty(0, device=self.b_pre.device)
        for chunk in fresh():
            x_bd = torch.as_tensor(chunk, device=self.b_pre.device, dtype=self.b_pre.dtype)
            pre = self.pre_acts(x_bd).flatten()
            pre = torch.cat([keep, pre[pre > 0]])
            keep = pre.topk(min(target + 1, pre.numel())).values
        if keep.numel() <= target:  # fewer positive pre-activations than k per token
            t = 0.0
        else:
            t = float(0.5 * (keep[target - 1] + keep[target]))
        self.threshold.fill_(t)
        self.threshold_seen.fill_(True)
        return t


def build_sae(config: SAEConfig) -> SparseAutoencoder:
    """The SAE named by ``config.architecture``, freshly initialised (seeded by ``config.seed``)."""
    return SAE_ARCHITECTURES.get(config.architecture)(config)


def resolved_objective(config: SAEConfig) -> str:
    """The objective name of ``config``: its ``objective``, or when that is None the default of
    its architecture (``seed`` for ReLU SAEs, ``nmse`` for top-k ones)."""
    if config.objective is not None:
        return config.objective
    return SAE_ARCHITECTURES.entry(config.architecture).meta["default_objective"]
