"""Multi-step leaky integrate-and-fire neurons with surrogate gradients.

The neuron follows the LIF used by Spikformer, QKFormer, SpiLiFormer and TDFormer
(METHODS.md sections 3 and 4), with the input decayed and a hard reset::

    H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) / tau
    S[t] = step(H[t] - V_th)
    V[t] = H[t] (1 - S[t]) + V_reset S[t]

The backward pass replaces ``d step / dx`` by a surrogate (``SURROGATES``: ``sigmoid``
with alpha 4, ``atan`` with alpha 2, as in spikingjelly).

Implementations of the time loop live in ``LIF_KERNELS`` and give identical results:

``reference``
    the loop written step by step, differentiated by autograd (the specification).
``bptt``
    one autograd node for the whole loop; the backward pass through time is written
    by hand, so only ``H`` and ``S`` are stored (fewer graph nodes, less memory). The
    default on the CPU and wherever Triton is missing.
``triton``
    a fused CUDA kernel (``_lif_triton``), used on CUDA tensors when Triton imports.

``backend="auto"`` picks ``triton`` for CUDA tensors when available, else ``bptt``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from cortexalign.errors import InputError, UnknownNameError

__all__ = [
    "SURROGATES",
    "LIF_KERNELS",
    "Surrogate",
    "spike",
    "lif_multistep",
    "MultiStepLIF",
    "reset_states",
]


# --------------------------------------------------------------------------- surrogates
def _sigmoid_grad(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """``d/dx sigmoid(alpha x) = alpha s (1 - s)`` (spikingjelly ``surrogate.Sigmoid``)."""
    s = torch.sigmoid(x * alpha)
    return (1.0 - s) * s * alpha


def _atan_grad(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """``d/dx (arctan(pi/2 alpha x)/pi + 1/2) = alpha / (2 (1 + (pi/2 alpha x)^2))``."""
    return alpha / 2 / (1 + (math.pi / 2 * alpha * x) ** 2)


@dataclass(frozen=True)
class Surrogate:
    """A surrogate derivative of the Heaviside step and its default sharpness ``alpha``."""

    name: str
    grad: Callable[[torch.Tensor, float], torch.Tensor]
    alpha: float


SURROGATES: dict[str, Surrogate] = {
    "sigmoid": Surrogate("sigmoid", _sigmoid_grad, 4.0),
    "atan": Surrogate("atan", _atan_grad, 2.0),
}


def _surrogate(name: str) -> Surrogate:
    if name not in SURROGATES:
        raise UnknownNameError("surrogate", name, SURROGATES)
    return SURROGATES[name]


class _SpikeFn(torch.autograd.Function):
    """Heaviside forward (``x >= 0``), surrogate derivative backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, name: str, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.name, ctx.alpha = name, alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad_out * SURROGATES[ctx.name].grad(x, ctx.alpha), None, None


def spike(x: torch.Tensor, surrogate: str = "sigmoid", alpha: float | None = None) -> torch.Tensor:
    """Heaviside step ``x >= 0`` with the named surrogate gradient."""
    sg = _surrogate(surrogate)
    return _SpikeFn.apply(x, sg.name, sg.alpha if alpha is None else float(alpha))


# --------------------------------------------------------------------------- kernels
def _lif_reference(x_T, v0, tau, v_th, v_reset, surrogate, alpha, detach_reset):
    """The LIF loop step by step; autograd differentiates it. Returns (spikes_T, v_last)."""
    v = v0
    spikes = []
    for t in range(x_T.shape[0]):
        h = v + (x_T[t] - (v - v_reset)) / tau
        s = _SpikeFn.apply(h - v_th, surrogate, alpha)
        s_r = s.detach() if detach_reset else s
        v = h * (1.0 - s_r) + v_reset * s_r
        spikes.append(s)
    return torch.stack(spikes), v


class _LIFBPTT(torch.autograd.Function):
    """The whole LIF loop as one autograd node with a hand-written backward through time.

    With ``g_v`` the gradient reaching ``V[t]`` from the future and ``sg`` the surrogate
    derivative at ``H[t] - V_th``::

        dV/dH   = (1 - S) + (V_reset - H) sg        (the second term dropped with detach_reset)
        g_H[t]  = g_S[t] sg + g_V[t] dV/dH
        g_X[t]  = g_H[t] / tau;   g_V[t-1] = g_H[t] (1 - 1/tau)
    """

    @staticmethod
    def forward(ctx, x_T, v0, tau, v_th, v_reset, surrogate, alpha, detach_reset):
        h_T = torch.empty_like(x_T)
        s_T = torch.empty_like(x_T)
        v = v0
        for t in range(x_T.shape[0]):
            h = v + (x_T[t] - (v - v_reset)) / tau
            s = (h - v_th >= 0).to(x_T.dtype)
            v = h * (1.0 - s) + v_reset * s
            h_T[t], s_T[t] = h, s
        ctx.save_for_backward(h_T, s_T)
        ctx.args = (tau, v_th, v_reset, surrogate, alpha, detach_reset)
        return s_T, v

    @staticmethod
    def backward(ctx, g_s_T, g_v_last):
        h_T, s_T = ctx.saved_tensors
        tau, v_th, v_reset, surrogate, alpha, detach_reset = ctx.args
        grad = SURROGATES[surrogate].grad
        g_v = torch.zeros_like(h_T[0]) if g_v_last is None else g_v_last
        g_s_T = torch.zeros_like(h_T) if g_s_T is None else g_s_T
        g_x_T = torch.empty_like(h_T)
        for t in range(h_T.shape[0] - 1, -1, -1):
            h, s = h_T[t], s_T[t]
            sg = grad(h - v_th, alpha)
            dv_dh = 1.0 - s if detach_reset else (1.0 - s) + (v_reset - h) * sg
            g_h = g_s_T[t] * sg + g_v * dv_dh
            g_x_T[t] = g_h / tau
            g_v = g_h - g_h / tau
        return g_x_T, g_v, None, None, None, None, None, None


def _lif_bptt(x_T, v0, tau, v_th, v_reset, surrogate, alpha, detach_reset):
    return _LIFBPTT.apply(x_T, v0, tau, v_th, v_reset, surrogate, alpha, detach_reset)


def _lif_triton(x_T, v0, tau, v_th, v_reset, surrogate, alpha, detach_reset):
    from cortexalign.spiking._lif_triton import lif_triton

    return lif_triton(x_T, v0, tau, v_th, v_reset, surrogate, alpha, detach_reset)


LIF_KERNELS: dict[str, Callable] = {
    "reference": _lif_reference,
    "bptt": _lif_bptt,
    "triton": _lif_triton,
}


def _triton_usable(x: torch.Tensor) -> bool:
    if x.device.type != "cuda":
        return False
    try:
        from cortexalign.spiking._lif_triton import AVAILABLE
    except ImportError:
        return False
    return AVAILABLE


def _pick_backend(backend: str, x: torch.Tensor) -> str:
    if backend == "auto":
        return "triton" if _triton_usable(x) else "bptt"
    if backend not in LIF_KERNELS:
        raise UnknownNameError("LIF backend", backend, [*LIF_KERNELS, "auto"])
    if backend == "triton" and not _triton_usable(x):
        raise InputError("backend", "'triton' only for CUDA tensors with Triton installed",
                         f"'triton' with a {x.device.type} tensor",
                         "use backend='auto' (it falls back to 'bptt')")
    return backend


def lif_multistep(
    x_T: torch.Tensor,
    v0: torch.Tensor | None = None,
    tau: float = 2.0,
    v_th: float = 1.0,
    v_reset: float = 0.0,
    surrogate: str = "sigmoid",
    alpha: float | None = None,
    detach_reset: bool = False,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a LIF population over time, statelessly.

    Parameters
    ----------
    x_T : (T, ...) input currents, time first.
    v0 : (...) membrane potential before step 0; ``None`` means ``v_reset`` everywhere.
    tau, v_th, v_reset : time constant (> 1), threshold, hard-reset potential.
    surrogate, alpha : a name in ``SURROGATES`` and its sharpness (``None``: its default).
    detach_reset : stop gradients through the reset term.
    backend : a name in ``LIF_KERNELS`` or ``"auto"``.

    Returns
    -------
    spikes_T : (T, ...) spikes in {0, 1}, dtype of ``x_T``.
    v_last : (...) membrane potential after the last step (the state to carry on).
    """
    if not isinstance(x_T, torch.Tensor) or x_T.ndim < 1 or x_T.shape[0] < 1:
        raise InputError("x_T", "a tensor (T, ...) with T >= 1",
                         f"{type(x_T).__name__} of shape {tuple(getattr(x_T, 'shape', ()))}",
                         "put time steps on the first axis")
    if not x_T.is_floating_point():
        raise InputError("x_T", "a floating-point tensor", str(x_T.dtype), "cast with .float()")
    if not tau > 1.0:
        raise InputError("tau", "a time constant > 1", repr(tau), "use tau=2.0 (the papers' value)")
    sg = _surrogate(surrogate)
    if v0 is not None and v0.shape != x_T.shape[1:]:
        raise InputError("v0", f"shape {tuple(x_T.shape[1:])} (x_T without its time axis)",
                         f"shape {tuple(v0.shape)}", "pass the state of the same population or None")
    name = _pick_backend(backend, x_T)
    if v0 is None and name != "triton":  # the fused kernel starts at v_reset by itself
        v0 = torch.full_like(x_T[0], float(v_reset))
    kernel = LIF_KERNELS[name]
    return kernel(x_T, v0, float(tau), float(v_th), float(v_reset), sg.name,
                  sg.alpha if alpha is None else float(alpha), bool(detach_reset))


class MultiStepLIF(nn.Module):
    """A LIF layer over (T, ...) inputs with explicit membrane state.

    The membrane potential ``v`` is kept between calls (so a sequence can be fed in
    chunks, as TDFormer's sub-networks do) until ``reset()`` is called. A call whose
    population shape differs from the stored state raises instead of silently resetting.

    Parameters
    ----------
    tau, v_threshold, v_reset, surrogate, alpha, detach_reset, backend :
        as in ``lif_multistep``.
    """

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, v_reset: float = 0.0,
                 surrogate: str = "sigmoid", alpha: float | None = None,
                 detach_reset: bool = False, backend: str = "auto"):
        super().__init__()
        _surrogate(surrogate)
        if backend != "auto" and backend not in LIF_KERNELS:
            raise UnknownNameError("LIF backend", backend, [*LIF_KERNELS, "auto"])
        self.tau, self.v_threshold, self.v_reset = float(tau), float(v_threshold), float(v_reset)
        self.surrogate, self.alpha, self.detach_reset = surrogate, alpha, detach_reset
        self.backend = backend
        self.v: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget the membrane state; the next call starts from ``v_reset``."""
        self.v = None

    def forward(self, x_T: torch.Tensor) -> torch.Tensor:
        """(T, ...) currents -> (T, ...) spikes; updates ``self.v``."""
        if self.v is not None and self.v.shape != x_T.shape[1:]:
            raise InputError("x_T", f"a population of shape {tuple(self.v.shape)} (the stored state)",
                             f"shape {tuple(x_T.shape[1:])}",
                             "call reset() (or reset_states(model)) before a new input")
        s_T, self.v = lif_multistep(x_T, self.v, self.tau, self.v_threshold, self.v_reset,
                                    self.surrogate, self.alpha, self.detach_reset, self.backend)
        return s_T

    def extra_repr(self) -> str:
        """The neuron's parameters in ``repr``."""
        return (f"tau={self.tau}, v_threshold={self.v_threshold}, v_reset={self.v_reset}, "
                f"surrogate={self.surrogate!r}, backend={self.backend!r}")


def reset_states(module: nn.Module) -> None:
    """Call ``reset()`` on every ``MultiStepLIF`` inside ``module``."""
    for m in module.modules():
        if isinstance(m, MultiStepLIF):
            m.reset()
