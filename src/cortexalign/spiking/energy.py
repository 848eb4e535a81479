"""Firing rates and the energy estimate spiking-transformer papers report.

Following Spikformer, QKFormer, SpiLiFormer and TDFormer (45 nm figures of Horowitz 2014)::

    E = E_MAC * MACs + E_AC * SOPs,   E_MAC = 4.6 pJ, E_AC = 0.9 pJ

Every ``Conv1d``/``Conv2d``/``Linear`` call is counted by a forward hook. Its dense
multiply-accumulate count is ``output elements * (C_in / groups) * kernel size`` (conv) or
``output elements * in_features`` (linear). When the layer's input is spike-like (all
values non-negative integers: spikes, or sums of spikes through residual paths), it costs
synaptic operations ``SOPs = dense MACs * mean(input)`` (each spike triggers one
accumulate per synapse it drives, a count of 2 triggers two); otherwise (the first layer,
which sees the image, and the head, which sees time-averaged rates) it costs MACs.
Batch norm is taken as folded into the convolution, and the spike-by-spike products inside
attention (``Q K^T``) are not counted (they are AND/accumulate on spikes, a small share).
Counts are per sample: totals divided by ``n_samples``.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from cortexalign.errors import InputError
from cortexalign.spiking.neurons import MultiStepLIF

__all__ = ["E_MAC_PJ", "E_AC_PJ", "LayerOps", "EnergyReport", "measure_energy", "firing_rates"]

E_MAC_PJ = 4.6
E_AC_PJ = 0.9
_SYNAPTIC = (nn.Conv1d, nn.Conv2d, nn.Linear)


@dataclass
class LayerOps:
    """Operations of one synaptic layer, summed over its calls (all samples)."""

    name: str
    macs: float = 0.0
    sops: float = 0.0
    dense_macs: float = 0.0
    spiking_input: bool = True


@dataclass
class EnergyReport:
    """Per-sample operation counts and energy of one forward pass."""

    layers: list[LayerOps]
    firing_rates: dict[str, float]
    n_samples: int
    e_mac_pj: float = E_MAC_PJ
    e_ac_pj: float = E_AC_PJ
    macs: float = field(init=False)
    sops: float = field(init=False)

    def __post_init__(self):
        self.macs = sum(lay.macs for lay in self.layers) / self.n_samples
        self.sops = sum(lay.sops for lay in self.layers) / self.n_samples

    @property
    def energy_pj(self) -> float:
        """Energy per sample in picojoules."""
        return self.macs * self.e_mac_pj + self.sops * self.e_ac_pj

    @property
    def energy_mj(self) -> float:
        """Energy per sample in millijoules (the unit papers report)."""
        return self.energy_pj * 1e-9


def _dense_macs(module: nn.Module, out: torch.Tensor) -> float:
    if isinstance(module, nn.Linear):
        return float(out.numel() * module.in_features)
    k = 1
    for s in module.kernel_size:
        k *= s
    return float(out.numel() * (module.in_channels // module.groups) * k)


def _is_spike_like(x: torch.Tensor) -> bool:
    return bool((x >= 0).all() and torch.equal(x, torch.round(x)))


@contextmanager
def _counting(model: nn.Module):
    ops: dict[str, LayerOps] = {}
    rates: dict[str, list[float]] = {}

    def synapse_hook(name):
        def fn(module, args, out):
            x = args[0].detach()
            dense = _dense_macs(module, out)
            rec = ops.setdefault(name, LayerOps(name))
            rec.dense_macs += dense
            if _is_spike_like(x):
                rec.sops += dense * float(x.double().mean())
            else:
                rec.macs += dense
                rec.spiking_input = False
        return fn

    def neuron_hook(name):
        def fn(module, args, out):
            acc = rates.setdefault(name, [0.0, 0.0])
            acc[0] += float(out.detach().double().sum())
            acc[1] += out.numel()
        return fn

    handles = []
    for name, m in model.named_modules():
        if isinstance(m, _SYNAPTIC):
            handles.append(m.register_forward_hook(synapse_hook(name)))
        elif isinstance(m, MultiStepLIF):
            handles.append(m.register_forward_hook(neuron_hook(name)))
    try:
        yield ops, rates
    finally:
        for h in handles:
            h.remove()


def _n_samples(model: nn.Module, x: torch.Tensor, n_samples: int | None) -> int:
    if n_samples is not None:
        if n_samples < 1:
            raise InputError("n_samples", "an integer >= 1", repr(n_samples), "pass the batch size")
        return n_samples
    if hasattr(model, "as_sequence"):
        return model.as_sequence(x).shape[1]
    raise InputError("n_samples", "the number of samples in x (for a generic module)", "None",
                     "pass n_samples=batch size")


def measure_energy(model: nn.Module, x: torch.Tensor, n_samples: int | None = None,
                   e_mac_pj: float = E_MAC_PJ, e_ac_pj: float = E_AC_PJ) -> EnergyReport:
    """Run ``model(x)`` once without gradients and count MACs, SOPs and firing rates.

    Parameters
    ----------
    model : any module built of ``Conv``/``Linear`` layers and ``MultiStepLIF`` neurons.
    x : its input; for a ``SpikingTransformer`` (B, C, H, W) or (T, B, C, H, W).
    n_samples : samples in ``x``; inferred for a ``SpikingTransformer``.

    Returns
    -------
    EnergyReport with per-sample ``macs``, ``sops``, ``energy_pj`` and per-neuron-layer
    ``firing_rates`` (mean spikes per neuron per time step).
    """
    n = _n_samples(model, x, n_samples)
    with _counting(model) as (ops, rates), torch.no_grad():
        model(x)
    fr = {k: v[0] / v[1] for k, v in rates.items()}
    return EnergyReport(list(ops.values()), fr, n, e_mac_pj, e_ac_pj)


def firing_rates(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Mean firing rate (spikes per neuron per time step) of every ``MultiStepLIF`` layer."""
    with _counting(model) as (_, rates), torch.no_grad():
        model(x)
    return {k: v[0] / v[1] for k, v in rates.items()}
