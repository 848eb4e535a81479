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

The first (real-valued) layer: a static image is repeated over the T time steps, so the first
convolution computes the same output at every step. Spikformer (Zhou et al. 2023, eq. 19:
``E = E_MAC * FL_conv^1 + E_AC * (sum SOPs)``) counts it **once**; QKFormer (Zhou et al. 2024)
copies Spikformer's formula, and SpiLiFormer and TDFormer report energy the QKFormer way, so all
three families here follow it: ``first_layer="once"`` (the default) counts the MACs of a
real-valued layer only for the time steps whose input differs from the step before (once for a
static image; every step for real inputs that change, e.g. the head's per-step rates).
``first_layer="per_step"`` counts every step (an upper bound, the hardware that recomputes the
encoding layer at every step). ``EnergyReport.convention`` names the one used.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from cortexalign.errors import InputError
from cortexalign.spiking.neurons import MultiStepLIF

__all__ = ["E_MAC_PJ", "E_AC_PJ", "ENERGY_CONVENTIONS", "LayerOps", "EnergyReport", "measure_energy",
           "firing_rates"]

E_MAC_PJ = 4.6
E_AC_PJ = 0.9
_SYNAPTIC = (nn.Conv1d, nn.Conv2d, nn.Linear)

#: How the real-valued layers' MACs are counted over time steps (see the module docstring).
ENERGY_CONVENTIONS = {
    "once": "real-valued layers counted once per distinct input (a static image's first conv "
            "once, not T times): Spikformer eq. 19, as QKFormer, SpiLiFormer and TDFormer report",
    "per_step": "real-valued layers counted at every time step (upper bound)",
}


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
    first_layer: str = "once"
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

    @property
    def convention(self) -> str:
        """How the count was made, in words (for the outputs)."""
        return (f"E = {self.e_mac_pj} pJ x MACs + {self.e_ac_pj} pJ x SOPs (45 nm, Horowitz 2014); "
                f"first_layer={self.first_layer!r}: {ENERGY_CONVENTIONS[self.first_layer]}")

    def as_dict(self) -> dict:
        """The per-sample summary written to ``energy*.json``."""
        return {"energy_mj": self.energy_mj, "macs": self.macs, "sops": self.sops,
                "firing_rates": dict(self.firing_rates), "first_layer": self.first_layer,
                "convention": self.convention, "n_samples": self.n_samples}


def _dense_macs(module: nn.Module, out: torch.Tensor) -> float:
    if isinstance(module, nn.Linear):
        return float(out.numel() * module.in_features)
    k = 1
    for s in module.kernel_size:
        k *= s
    return float(out.numel() * (module.in_channels // module.groups) * k)


def _is_spike_like(x: torch.Tensor) -> bool:
    return bool((x >= 0).all() and torch.equal(x, torch.round(x)))


def _steps(x: torch.Tensor, n: int) -> torch.Tensor:
    """``x`` as (steps, rest): time steps folded into the batch (T*B, ...) or leading (T, B, ...)."""
    if x.shape[0] % n == 0 and x.shape[0] >= n:
        return x.reshape(x.shape[0] // n, -1)
    if x.ndim >= 2 and x.shape[1] == n:
        return x.reshape(x.shape[0], -1)
    return x.reshape(1, -1)


@contextmanager
def _counting(model: nn.Module, n_samples: int = 1, first_layer: str = "once"):
    ops: dict[str, LayerOps] = {}
    rates: dict[str, list[float]] = {}
    last_input: dict[str, torch.Tensor] = {}

    def new_steps(name: str, x: torch.Tensor) -> float:
        """Share of this call's time steps whose input differs from the step before."""
        steps = _steps(x, n_samples)
        prev = last_input.get(name)
        fresh = 0
        for t in range(steps.shape[0]):
            if prev is None or prev.shape != steps[t].shape or not torch.equal(prev, steps[t]):
                fresh += 1
            prev = steps[t]
        last_input[name] = prev
        return fresh / steps.shape[0]

    def synapse_hook(name):
        def fn(module, args, out):
            x = args[0].detach()
            dense = _dense_macs(module, out)
            rec = ops.setdefault(name, LayerOps(name))
            rec.dense_macs += dense
            if _is_spike_like(x):
                rec.sops += dense * float(x.double().mean())
            else:
                rec.macs += dense * (new_steps(name, x) if first_layer == "once" else 1.0)
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
                   e_mac_pj: float = E_MAC_PJ, e_ac_pj: float = E_AC_PJ,
                   first_layer: str = "once") -> EnergyReport:
    """Run ``model(x)`` once without gradients and count MACs, SOPs and firing rates.

    Parameters
    ----------
    model : any module built of ``Conv``/``Linear`` layers and ``MultiStepLIF`` neurons.
    x : its input; for a ``SpikingTransformer`` (B, C, H, W) or (T, B, C, H, W).
    n_samples : samples in ``x``; inferred for a ``SpikingTransformer``.
    first_layer : ``"once"`` (Spikformer's convention, followed by QKFormer, SpiLiFormer and
        TDFormer: a real-valued layer's MACs count once per distinct input, so a static image's
        first convolution once rather than T times) or ``"per_step"``.

    Returns
    -------
    EnergyReport with per-sample ``macs``, ``sops``, ``energy_pj``, per-neuron-layer
    ``firing_rates`` (mean spikes per neuron per time step) and its ``convention``.
    """
    if first_layer not in ENERGY_CONVENTIONS:
        raise InputError("first_layer", " or ".join(map(repr, ENERGY_CONVENTIONS)),
                         repr(first_layer), "use 'once' (the papers' convention)")
    n = _n_samples(model, x, n_samples)
    with _counting(model, n, first_layer) as (ops, rates), torch.no_grad():
        model(x)
    fr = {k: v[0] / v[1] for k, v in rates.items()}
    return EnergyReport(list(ops.values()), fr, n, e_mac_pj, e_ac_pj, first_layer)


def firing_rates(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Mean firing rate (spikes per neuron per time step) of every ``MultiStepLIF`` layer."""
    with _counting(model) as (_, rates), torch.no_grad():
        model(x)
    return {k: v[0] / v[1] for k, v in rates.items()}
