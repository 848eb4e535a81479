"""Building blocks applied to time-first tensors: (T, B, C, N) tokens or (T, B, C, H, W) maps.

Convolutions and batch norms fold time into the batch (``T * B``): the weights are shared
over time steps, as in Spikformer and QKFormer.
"""

from __future__ import annotations

import torch
from torch import nn

from cortexalign.spiking.neurons import MultiStepLIF

__all__ = ["SeqConvBN", "SpikeProj", "SpikingMLP", "seq_apply"]


def seq_apply(fn: nn.Module, x_T: torch.Tensor) -> torch.Tensor:
    """Apply a per-sample module to (T, B, ...) by folding time into the batch."""
    T, B = x_T.shape[:2]
    y = fn(x_T.flatten(0, 1))
    return y.reshape(T, B, *y.shape[1:])


class SeqConvBN(nn.Module):
    """Convolution (1d for tokens, 2d for maps) then batch norm, over (T, B, C, ...)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, dims: int = 1,
                 bias: bool = False):
        super().__init__()
        conv, bn = (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
        self.conv = conv(c_in, c_out, kernel, stride, padding=kernel // 2, bias=bias)
        self.bn = bn(c_out)

    def forward(self, x_T: torch.Tensor) -> torch.Tensor:
        T, B = x_T.shape[:2]
        y = self.bn(self.conv(x_T.flatten(0, 1)))
        return y.reshape(T, B, *y.shape[1:])


class SpikeProj(nn.Module):
    """``SN(BN(Conv1x1(x)))`` on tokens (T, B, C_in, N) -> spikes (T, B, C_out, N)."""

    def __init__(self, c_in: int, c_out: int, v_threshold: float = 1.0, **lif):
        super().__init__()
        self.proj = SeqConvBN(c_in, c_out)
        self.lif = MultiStepLIF(v_threshold=v_threshold, **lif)

    def forward(self, x_T: torch.Tensor) -> torch.Tensor:
        return self.lif(self.proj(x_T))


class SpikingMLP(nn.Module):
    """Two spiking 1x1 projections, C -> hidden -> C, on (T, B, C, N)."""

    def __init__(self, dim: int, hidden: int, **lif):
        super().__init__()
        self.fc1 = SpikeProj(dim, hidden, **lif)
        self.fc2 = SpikeProj(hidden, dim, **lif)

    def forward(self, x_T: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x_T))
