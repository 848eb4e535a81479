"""Spiking attention variants on tokens (T, B, C, N), gathered in ``ATTENTIONS``.

Every variant computes ``Q = SN(BN(Conv1x1(X)))`` (and K, V alike), mixes them per head
(``h`` heads of ``d = C / h`` channels), thresholds the mixture with an attention neuron
(``v_th = 0.5``) and projects back with ``SN(BN(Conv1x1(.)))``.

``token_qk``  QKFormer token attention (Zhou et al. 2024): ``A = SN(sum_c Q)`` per token
              and head, ``out = A * K``. Linear in tokens.
``channel_qk`` QKFormer channel attention: ``A = SN(sum_n Q)`` per channel, ``out = A * K``.
``ssa``       Spikformer spiking self-attention (Zhou et al. 2023): ``SN(Q K^T V * 0.125)``.
``ff_li``     SpiLiFormer feed-forward lateral inhibition (Zheng et al., ICCV 2025): the
              query's channels are split in two halves, excitatory ``Q1`` and inhibitory
              ``Q2``; ``mask = SN(sum_c Q1 - sum_c Q2)`` per token, ``out = mask * K``.
              Ours: the split is within each head (``inhibition="head"``, METHODS.md
              section 4); ``inhibition="global"`` splits all channels and shares the mask.
``fb_li``     SpiLiFormer feedback lateral inhibition, on linear-order attention
              ``SN(Q (K^T V) * 0.125)``. Given the stage's output spikes ``X'`` from a
              first pass, ``f1 = clamp(X' * y1)``, ``f2 = clamp(X' * y2)`` with learnable
              per-channel prompts ``y1, y2``, ``G = SN(BN(Conv1x1(f1 - f2)))``. Ours (the
              paper leaves this open): ``G`` goes through the value convolution (shared
              weights) and its own batch norm and is added before the value neuron,
              ``V = SN(BN_v(W_v X) + BN_g(W_v G))``; clamp bounds ``(0, 1)`` by default.

TDFormer control modules (Zhu et al. 2025, METHODS.md section 3), ``control=``:
``cm1`` top-down spikes enter the key only: ``K = SN(BN(Conv(concat[X, S_td])))``;
``cm2`` the same for the value; ``cm3`` ``S_td`` is added to the attention input.
When no top-down signal exists yet (the first sub-network) zeros stand in for it.

Spiking attention maps for alignment: each module routes its map through
``self.attn_probe`` (an ``nn.Identity``) only when a forward hook is attached to it, so a
hook captures the map per call at no cost otherwise. ``map_layout`` names the shape:
(T, B, h, N) token maps, (T, B, h, d) channel maps, (T, B, h, N, N) query-key maps
(for ``fb_li`` the ``Q K^T`` product its linear-order computation is equivalent to).
"""

from __future__ import annotations

import torch
from torch import nn

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.spiking._layers import SeqConvBN, SpikeProj
from cortexalign.spiking.neurons import MultiStepLIF

__all__ = ["ATTENTIONS", "CONTROLS", "SpikingAttention", "ProcessingModule"]

CONTROLS = (None, "cm1", "cm2", "cm3")
ATTN_THRESHOLD = 0.5
SCALE = 0.125


class SpikingAttention(nn.Module):
    """Shared Q/K/V projections, control module, attention neuron and output projection.

    Parameters
    ----------
    dim : channels C (divisible by ``num_heads``).
    num_heads : heads h.
    control : None or a TDFormer control module, one of ``CONTROLS``.
    lif : keyword arguments for every ``MultiStepLIF`` (surrogate, backend...).
    """

    uses_value = True
    map_layout = ""

    def __init__(self, dim: int, num_heads: int, control: str | None = None, **lif):
        super().__init__()
        if dim % num_heads:
            raise InputError("num_heads", f"a divisor of dim={dim}", repr(num_heads),
                             "choose heads so that dim / heads is an integer")
        if control not in CONTROLS:
            raise UnknownNameError("control module", str(control), [c for c in CONTROLS if c])
        if control == "cm2" and not self.uses_value:
            raise InputError("control", f"cm1 or cm3 for {type(self).__name__} (it has no value path)",
                             "'cm2'", "use control='cm1'")
        self.dim, self.num_heads, self.control = dim, num_heads, control
        self.q = SpikeProj(dim, dim, **lif)
        self.k = SpikeProj(2 * dim if control == "cm1" else dim, dim, **lif)
        if self.uses_value:
            self.v = SpikeProj(2 * dim if control == "cm2" else dim, dim, **lif)
        self.attn_lif = MultiStepLIF(v_threshold=ATTN_THRESHOLD, **lif)
        self.out = SpikeProj(dim, dim, **lif)
        self.attn_probe = nn.Identity()

    def _heads(self, x_TBCN: torch.Tensor) -> torch.Tensor:
        T, B, C, N = x_TBCN.shape
        return x_TBCN.reshape(T, B, self.num_heads, C // self.num_heads, N)

    def _probe(self, make_map) -> None:
        if self.attn_probe._forward_hooks:
            self.attn_probe(make_map())

    def _with_topdown(self, proj: nn.Module, which: str, x, topdown):
        if self.control != which:
            return proj(x)
        td = torch.zeros_like(x) if topdown is None else topdown
        return proj(torch.cat([x, td], dim=2))

    def _value(self, x, topdown, feedback):
        return self._with_topdown(self.v, "cm2", x, topdown)

    def forward(self, x_TBCN: torch.Tensor, topdown: torch.Tensor | None = None,
                feedback: torch.Tensor | None = None) -> torch.Tensor:
        """(T, B, C, N) -> spikes (T, B, C, N); ``topdown``/``feedback`` are (T, B, C, N)."""
        if topdown is not None and self.control is None:
            raise InputError("topdown", "None for attention without a control module",
                             "a tensor", "build the attention with control='cm1'")
        if self.control == "cm3" and topdown is not None:
            x_TBCN = x_TBCN + topdown
        q = self._heads(self.q(x_TBCN))
        k = self._heads(self._with_topdown(self.k, "cm1", x_TBCN, topdown))
        v = self._heads(self._value(x_TBCN, topdown, feedback)) if self.uses_value else None
        y_TBhdN = self._attend(q, k, v)
        return self.out(y_TBhdN.flatten(2, 3))

    def _attend(self, q, k, v) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class TokenQKAttention(SpikingAttention):
    """QKFormer token attention ``SN(sum_c Q) * K`` (linear in tokens)."""

    uses_value = False
    map_layout = "T B h N"

    def _attend(self, q, k, v):
        a = self.attn_lif(q.sum(3, keepdim=True))
        self._probe(lambda: a.squeeze(3))
        return a * k


class ChannelQKAttention(SpikingAttention):
    """QKFormer channel attention ``SN(sum_n Q) * K`` (linear in tokens)."""

    uses_value = False
    map_layout = "T B h d"

    def _attend(self, q, k, v):
        a = self.attn_lif(q.sum(4, keepdim=True))
        self._probe(lambda: a.squeeze(4))
        return a * k


class SpikingSelfAttention(SpikingAttention):
    """Spikformer SSA ``SN(Q K^T V * 0.125)``, quadratic in tokens."""

    map_layout = "T B h N N"

    def _attend(self, q, k, v):
        attn = q.transpose(-1, -2) @ k * SCALE  # (T, B, h, N, N)
        self._probe(lambda: attn)
        return self.attn_lif(v @ attn.transpose(-1, -2))


class FFLateralInhibitionAttention(SpikingAttention):
    """SpiLiFormer feed-forward lateral inhibition ``SN(sum Q1 - sum Q2) * K``."""

    uses_value = False
    map_layout = "T B h N"

    def __init__(self, dim: int, num_heads: int, control: str | None = None,
                 inhibition: str = "head", **lif):
        super().__init__(dim, num_heads, control, **lif)
        if inhibition not in ("head", "global"):
            raise UnknownNameError("inhibition scope", inhibition, ["head", "global"])
        if inhibition == "head" and (dim // num_heads) % 2:
            raise InputError("dim / num_heads", "an even head width (split into two halves)",
                             str(dim // num_heads), "choose dim and heads with an even ratio")
        self.inhibition = inhibition

    def _attend(self, q, k, v):
        if self.inhibition == "head":
            half = q.shape[3] // 2
            drive = q[:, :, :, :half].sum(3, keepdim=True) - q[:, :, :, half:].sum(3, keepdim=True)
        else:
            q_all = q.flatten(2, 3)
            half = q_all.shape[2] // 2
            drive = (q_all[:, :, :half].sum(2) - q_all[:, :, half:].sum(2))[:, :, None, None]
        mask = self.attn_lif(drive)
        mask = mask.expand(-1, -1, k.shape[2], -1, -1)
        self._probe(lambda: mask.squeeze(3))
        return mask * k


class FBLateralInhibitionAttention(SpikingAttention):
    """SpiLiFormer feedback lateral inhibition on linear attention ``SN(Q (K^T V) * 0.125)``."""

    map_layout = "T B h N N"

    def __init__(self, dim: int, num_heads: int, control: str | None = None,
                 clamp: tuple[float, float] = (0.0, 1.0), **lif):
        super().__init__(dim, num_heads, control, **lif)
        self.clamp = (float(clamp[0]), float(clamp[1]))
        self.prompt1 = nn.Parameter(torch.rand(dim))
        self.prompt2 = nn.Parameter(torch.rand(dim))
        self.fb = SpikeProj(dim, dim, **lif)
        self.fb_bn = nn.BatchNorm1d(dim)

    def _value(self, x, topdown, feedback):
        if feedback is None:
            return super()._value(x, topdown, feedback)
        if feedback.shape != x.shape:
            raise InputError("feedback", f"spikes shaped like the input {tuple(x.shape)}",
                             f"shape {tuple(feedback.shape)}", "feed back the stage output of pass 1")
        lo, hi = self.clamp
        f1 = (feedback * self.prompt1[:, None]).clamp(lo, hi)
        f2 = (feedback * self.prompt2[:, None]).clamp(lo, hi)
        g = self.fb(f1 - f2)
        if self.control == "cm2":
            g = torch.cat([g, torch.zeros_like(g)], dim=2)
            x = torch.cat([x, torch.zeros_like(x) if topdown is None else topdown], dim=2)
        T, B = x.shape[:2]
        proj = self.v.proj
        cur = proj.bn(proj.conv(x.flatten(0, 1))) + self.fb_bn(proj.conv(g.flatten(0, 1)))
        return self.v.lif(cur.reshape(T, B, *cur.shape[1:]))

    def _attend(self, q, k, v):
        kv = k @ v.transpose(-1, -2)  # (T, B, h, d, d): K^T V
        self._probe(lambda: q.transpose(-1, -2) @ k * SCALE)
        return self.attn_lif(kv.transpose(-1, -2) @ q * SCALE)


ATTENTIONS: dict[str, type[SpikingAttention]] = {
    "token_qk": TokenQKAttention,
    "channel_qk": ChannelQKAttention,
    "ssa": SpikingSelfAttention,
    "ff_li": FFLateralInhibitionAttention,
    "fb_li": FBLateralInhibitionAttention,
}


class ProcessingModule(nn.Module):
    """TDFormer processing module: ``M = clamp(BN(sum_c w_c X_c), b, a)``, ``O = SN(X * M)``.

    Parameters
    ----------
    dim : channels C of X (T, B, C, N).
    bounds : (b, a) clamp bounds; the paper uses b = 0 and a in [1, 2].
    gate : ``"token"`` one gate per token (the paper's sum over channels) or ``"channel"``
        one gate per token and channel (a C -> C projection).
    """

    def __init__(self, dim: int, bounds: tuple[float, float] = (0.0, 1.0), gate: str = "token",
                 **lif):
        super().__init__()
        if gate not in ("token", "channel"):
            raise UnknownNameError("processing-module gate", gate, ["token", "channel"])
        if not bounds[0] < bounds[1]:
            raise InputError("bounds", "(b, a) with b < a", repr(tuple(bounds)), "use (0.0, 1.0)")
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.gate = SeqConvBN(dim, 1 if gate == "token" else dim)
        self.lif = MultiStepLIF(**lif)

    def forward(self, x_TBCN: torch.Tensor) -> torch.Tensor:
        """Spikes of the input gated by the clamped processing signal."""
        m = self.gate(x_TBCN).clamp(*self.bounds)
        return self.lif(x_TBCN * m)
