"""Hierarchical spiking transformers: the QKFormer-style baseline, SpiLiFormer and TDFormer.

One network class (``SpikingTransformer``) built from an ``HSTConfig``; the three families
differ only in the attention per stage and in how the forward pass runs, a plain function
per family in ``FAMILY_FORWARDS``:

``hst``          one pass over the T time steps.
``spiliformer``  pass 1 gives logits and the stage-3 output spikes ``X'``; pass 2 reruns
                 stage 3 (its neurons reset) with ``X'`` fed back into every stage-3
                 block's value path. Stages 1-2 and the stage-3 embedding do not depend
                 on the feedback, so their pass-1 outputs are reused (an exact shortcut).
``tdformer``     the T steps are split into N sub-networks run in sequence (neuron state
                 carried over); sub-network n's stage-3 output goes through the processing
                 module and enters sub-network n+1's stage-3 attention through the control
                 module (ours: every stage-3 block receives the same top-down spikes).

Layer names for feature extraction: ``stage{k}.embed`` (B, C, H, W), ``stage{k}.block{j}``
and ``stage{k}`` (its last block) (B, N, D); outputs averaged over time steps, or kept per
step with ``time_reduce="none"`` ((T, B, ...)). See ``features.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from cortexalign.errors import InputError
from cortexalign.spiking._configs import SNN_MODELS, HSTConfig, snn_config
from cortexalign.spiking._layers import SeqConvBN, SpikingMLP, seq_apply
from cortexalign.spiking.attention import ATTENTIONS, ProcessingModule
from cortexalign.spiking.neurons import MultiStepLIF, reset_states

__all__ = ["SpikingTransformer", "create_snn", "FAMILY_FORWARDS", "SNN_MODELS"]


class Stem(nn.Module):
    """Stage-1 embedding: two 3x3 spiking convolutions, then ``stem_stride`` downsampling.

    The first convolution is the only layer that sees real-valued input.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, **lif):
        super().__init__()
        self.conv1 = SeqConvBN(c_in, c_out // 2, 3, dims=2)
        self.lif1 = MultiStepLIF(**lif)
        self.conv2 = SeqConvBN(c_out // 2, c_out, 3, dims=2)
        self.pool = nn.MaxPool2d(stride, stride) if stride > 1 else nn.Identity()
        self.lif2 = MultiStepLIF(**lif)

    def forward(self, x_TBCHW: torch.Tensor) -> torch.Tensor:
        y = self.lif1(self.conv1(x_TBCHW))
        return self.lif2(seq_apply(self.pool, self.conv2(y)))


class PatchEmbed(nn.Module):
    """Downsampling spiking patch embedding (T, B, C, H, W) -> (T, B, C', H/2, W/2), with a
    strided 1x1 shortcut (QKFormer's patch embedding stage)."""

    def __init__(self, c_in: int, c_out: int, **lif):
        super().__init__()
        self.conv1 = SeqConvBN(c_in, c_out, 3, dims=2)
        self.lif1 = MultiStepLIF(**lif)
        self.conv2 = SeqConvBN(c_out, c_out, 3, dims=2)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.shortcut = SeqConvBN(c_in, c_out, 1, stride=2, dims=2)
        self.lif2 = MultiStepLIF(**lif)

    def forward(self, x_TBCHW: torch.Tensor) -> torch.Tensor:
        y = seq_apply(self.pool, self.conv2(self.lif1(self.conv1(x_TBCHW))))
        return self.lif2(y + self.shortcut(x_TBCHW))


class Block(nn.Module):
    """``x + Attn(x)`` then ``x + MLP(x)`` on tokens (T, B, C, N)."""

    def __init__(self, dim: int, num_heads: int, attention: str, mlp_ratio: float,
                 attn_options: dict, **lif):
        super().__init__()
        self.attn = ATTENTIONS[attention](dim, num_heads, **attn_options, **lif)
        self.mlp = SpikingMLP(dim, int(dim * mlp_ratio), **lif)

    def forward(self, x_TBCN, topdown=None, feedback=None):
        x_TBCN = x_TBCN + self.attn(x_TBCN, topdown=topdown, feedback=feedback)
        return x_TBCN + self.mlp(x_TBCN)


class Stage(nn.Module):
    """An embedding followed by transformer blocks (a container; the model runs it)."""

    def __init__(self, embed: nn.Module, blocks: list[Block]):
        super().__init__()
        self.embed = embed
        self.blocks = nn.ModuleList(blocks)

    def run_blocks(self, x_TBCN, **ctx):
        for blk in self.blocks:
            x_TBCN = blk(x_TBCN, **ctx)
        return x_TBCN


def _attn_options(cfg: HSTConfig, stage: int) -> dict:
    kind = cfg.attention[stage]
    opts: dict = {}
    if kind == "ff_li":
        opts["inhibition"] = cfg.inhibition
    if kind == "fb_li":
        opts["clamp"] = cfg.feedback_clamp
    if cfg.family == "tdformer" and stage == 2:
        opts["control"] = cfg.control
    return opts


class SpikingTransformer(nn.Module):
    """A hierarchical spiking transformer (QKFormer-style) of family hst/spiliformer/tdformer.

    Parameters
    ----------
    config : an ``HSTConfig`` (see ``SNN_MODELS`` for the registered sizes).
    name : the registry name it was built from (stored in checkpoints).
    """

    def __init__(self, config: HSTConfig, name: str = "custom"):
        super().__init__()
        self.config, self.name = config, name
        lif = config.lif
        dims = config.stage_dims
        embeds = [Stem(config.in_chans, dims[0], config.stem_stride, **lif),
                  PatchEmbed(dims[0], dims[1], **lif), PatchEmbed(dims[1], dims[2], **lif)]
        self.stage1, self.stage2, self.stage3 = (
            Stage(embeds[k], [Block(dims[k], config.num_heads, config.attention[k],
                                    config.mlp_ratio, _attn_options(config, k), **lif)
                              for _ in range(config.depths[k])])
            for k in range(3))
        self.head = nn.Linear(dims[2], config.num_classes)
        self.pm = (ProcessingModule(dims[2], config.pm_bounds, config.pm_gate, **lif)
                   if config.family == "tdformer" else None)
        self.pass_index = 0  # which forward pass is running (read by feature taps)

    # ------------------------------------------------------------------ input checks
    def as_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) repeated over T, or (T, B, C, H, W) as is -> (T, B, C, H, W)."""
        cfg = self.config
        expected = (f"(T, B, {cfg.in_chans}, H, W) or (B, {cfg.in_chans}, H, W) with H and W "
                    f"multiples of {4 * cfg.stem_stride}")
        if not isinstance(x, torch.Tensor) or x.ndim not in (4, 5):
            raise InputError("x", expected, f"shape {tuple(getattr(x, 'shape', ()))}",
                             "pass images as (B, C, H, W) or time steps as (T, B, C, H, W)")
        if x.ndim == 4:
            x = x.unsqueeze(0).expand(cfg.time_steps, *x.shape)
        T, B, C, H, W = x.shape
        if T < 1:
            raise InputError("x", "at least one time step (T >= 1)", f"T={T}",
                             "pass T >= 1 time steps")
        if C != cfg.in_chans or H % (4 * cfg.stem_stride) or W % (4 * cfg.stem_stride) or B < 1:
            raise InputError("x", expected, f"shape {tuple(x.shape)}",
                             "resize or crop the images, or build the model for these channels")
        # (a CUDA graph cannot hold this host sync: TrainStep checks each batch before its replay)
        capturing = x.is_cuda and torch.cuda.is_current_stream_capturing()
        if not capturing and not torch.isfinite(x).all():
            raise InputError("x", "finite values", "NaN or Inf", "clean the input images")
        return x

    # ------------------------------------------------------------------ pieces
    def features_to_stage3(self, x_TBCHW):
        """Stages 1-2 and the stage-3 embedding -> tokens (T, B, D, N)."""
        for stage in (self.stage1, self.stage2):
            m = stage.embed(x_TBCHW)
            x_TBCHW = stage.run_blocks(m.flatten(3)).reshape(m.shape)
        return self.stage3.embed(x_TBCHW).flatten(3)

    def classify(self, x_TBDN) -> torch.Tensor:
        """Mean over tokens, linear head, mean over time -> logits (B, K)."""
        return self.head(x_TBDN.mean(-1)).mean(0)

    def loss_weights(self, n_heads: int) -> list[float]:
        """Weights of the ``n_heads`` outputs' losses (per family: passes or time-step sub-networks)."""
        cfg = self.config
        if cfg.family == "spiliformer":
            return [cfg.pass1_weight, 1.0 - cfg.pass1_weight]
        if cfg.family == "tdformer":
            if cfg.subnet_weights is not None:
                return list(cfg.subnet_weights)
            total = n_heads * (n_heads + 1) / 2
            return [(n + 1) / total for n in range(n_heads)]
        return [1.0]

    # ------------------------------------------------------------------ forward
    def forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits (B, K) of every training head in order; the last is the inference output.

        Neuron states are reset first: every call is a fresh presentation of the input.
        """
        x_TBCHW = self.as_sequence(x)
        reset_states(self)
        self.pass_index = 0
        return FAMILY_FORWARDS[self.config.family](self, x_TBCHW)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) or (T, B, C, H, W) -> logits (B, K) of the inference head."""
        return self.forward_heads(x)[-1]

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The family's training loss ``sum_i w_i CE(y, logits_i)`` and the inference logits."""
        heads = self.forward_heads(x)
        weights = self.loss_weights(len(heads))
        loss = sum(w * nn.functional.cross_entropy(lg, y) for w, lg in zip(weights, heads, strict=True))
        return loss, heads[-1]


def _forward_hst(model: SpikingTransformer, x_TBCHW):
    return [model.classify(model.stage3.run_blocks(model.features_to_stage3(x_TBCHW)))]


def _forward_spiliformer(model: SpikingTransformer, x_TBCHW):
    f = model.features_to_stage3(x_TBCHW)
    h1 = model.stage3.run_blocks(f)
    reset_states(model.stage3.blocks)
    model.pass_index = 1
    fb = h1.detach() if model.config.detach_feedback else h1
    h2 = model.stage3.run_blocks(f, feedback=fb)
    return [model.classify(h1), model.classify(h2)]


def _forward_tdformer(model: SpikingTransformer, x_TBCHW):
    T = x_TBCHW.shape[0]
    n = model.config.n_subnets or T
    if T % n:
        raise InputError("x", f"a number of time steps divisible by n_subnets={n}", f"T={T}",
                         f"pass T as a multiple of {n} or set n_subnets")
    logits, td = [], None
    for chunk in x_TBCHW.chunk(n, dim=0):
        h = model.stage3.run_blocks(model.features_to_stage3(chunk), topdown=td)
        logits.append(model.classify(h))
        td = model.pm(h)
    return logits


FAMILY_FORWARDS = {
    "hst": _forward_hst,
    "spiliformer": _forward_spiliformer,
    "tdformer": _forward_tdformer,
}


def create_snn(name: str, **overrides) -> SpikingTransformer:
    """Build the registered spiking transformer ``name`` (e.g. ``"spiliformer_4_384"``).

    ``overrides`` replace fields of its ``HSTConfig`` (e.g. ``num_classes=100``).
    """
    return SpikingTransformer(snn_config(name, **overrides), name=name)
