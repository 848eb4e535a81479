"""Layer outputs and spiking attention maps of a ``SpikingTransformer``, as alignment features.

Outputs are captured by forward hooks (removed on exit) and reduced on the fly: the sum
over time steps is kept, never every call's full tensor, unless ``time_reduce="none"``.
A layer that runs more than once per forward keeps the last pass (SpiLiFormer's pass 2,
the one that makes the prediction); TDFormer's sub-networks run successive time steps,
which are joined along time.

Names: ``stage{k}.embed`` -> (B, C, H, W); ``stage{k}.block{j}`` and ``stage{k}`` (its
last block) -> (B, N, D); attention maps ``stage{k}.block{j}.attn`` -> the module's
``map_layout`` without T: (B, h, N) token maps, (B, h, d) channel maps or (B, h, N, N).
With ``time_reduce="none"`` a leading T axis is kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import contextmanager

import torch
from torch import nn

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.spiking.models import SpikingTransformer

__all__ = ["layer_names", "attention_names", "extract_features", "extract_attention_maps"]

_NAME = re.compile(r"^stage([123])(?:\.(embed|block(\d+)))?(\.attn)?$")


def layer_names(model: SpikingTransformer) -> list[str]:
    """Every extractable layer name of ``model``, shallow to deep."""
    out = []
    for k in (1, 2, 3):
        stage = getattr(model, f"stage{k}")
        out += [f"stage{k}.embed"] + [f"stage{k}.block{j}" for j in range(len(stage.blocks))]
        out.append(f"stage{k}")
    return out


def attention_names(model: SpikingTransformer) -> list[str]:
    """Every block with a spiking attention map, ``stage{k}.block{j}.attn``."""
    return [f"stage{k}.block{j}.attn" for k in (1, 2, 3)
            for j in range(len(getattr(model, f"stage{k}").blocks))]


def _module(model: SpikingTransformer, name: str, attn: bool) -> nn.Module:
    valid = attention_names(model) if attn else layer_names(model)
    if name not in valid:
        raise UnknownNameError("attention layer" if attn else "layer", name, valid)
    k, part, j, _ = _NAME.match(name).groups()
    stage = getattr(model, f"stage{k}")
    if part == "embed":
        return stage.embed
    block = stage.blocks[int(j)] if j is not None else stage.blocks[-1]
    return block.attn.attn_probe if attn else block


class _Taps:
    """Forward hooks collecting per-pass sums over time (or chunks) of each module's output."""

    def __init__(self, model: SpikingTransformer, time_reduce: str, grad: bool = False):
        if time_reduce not in ("mean", "none"):
            raise InputError("time_reduce", "'mean' or 'none'", repr(time_reduce), "use 'mean'")
        self.model, self.reduce, self.store, self.grad = model, time_reduce, {}, grad

    def hook(self, name: str):
        def fn(module, args, out):
            per_pass = self.store.setdefault(name, {})
            p = self.model.pass_index
            out = out if self.grad else out.detach()
            if self.reduce == "mean":
                s, c = per_pass.get(p, (0.0, 0))
                per_pass[p] = (s + out.double().sum(0), c + out.shape[0])
            else:
                per_pass.setdefault(p, []).append(out)
        return fn

    def result(self, name: str) -> torch.Tensor:
        per_pass = self.store[name]
        last = per_pass[max(per_pass)]
        if self.reduce == "mean":
            return (last[0] / last[1]).float()
        return torch.cat(last, dim=0)


@contextmanager
def _hooked(model, names, attn, time_reduce, grad=False):
    taps = _Taps(model, time_reduce, grad)
    handles = [_module(model, n, attn).register_forward_hook(taps.hook(n)) for n in names]
    try:
        yield taps
    finally:
        for h in handles:
            h.remove()


def extract_features(model: SpikingTransformer, x: torch.Tensor, layers: Sequence[str],
                     time_reduce: str = "mean", grad: bool = False) -> dict[str, torch.Tensor]:
    """Outputs of ``layers`` for input ``x`` ((B, C, H, W) or (T, B, C, H, W)).

    Runs without gradients (``grad=True``: in the autograd graph, for alignment training) and
    does not change train/eval mode: call ``model.eval()`` first for features of a trained
    model. Token outputs come back as (B, N, D).
    """
    names = list(dict.fromkeys(layers))
    taps_ctx = _hooked(model, names, False, time_reduce, grad)
    with taps_ctx as taps, (torch.enable_grad() if grad else torch.no_grad()):
        model(x)
    out = {}
    for n in names:
        y = taps.result(n)
        out[n] = y if n.endswith("embed") else y.transpose(-1, -2)  # (..., C, N) -> (..., N, D)
    return out


def extract_attention_maps(model: SpikingTransformer, x: torch.Tensor,
                           layers: Sequence[str] | None = None,
                           time_reduce: str = "mean") -> dict[str, torch.Tensor]:
    """Spiking attention maps per block (see the module docstring for shapes)."""
    names = list(dict.fromkeys(layers if layers is not None else attention_names(model)))
    B = model.as_sequence(x).shape[1]
    with _hooked(model, names, True, time_reduce) as taps, torch.no_grad():
        model(x)
    out = {}
    for n in names:
        if n not in taps.store:
            raise InputError("layers", "blocks whose attention ran", repr(n), "check the layer name")
        m = taps.result(n)
        b_axis = 0 if time_reduce == "mean" else 1
        assert m.shape[b_axis] == B, f"attention map of {n} has shape {tuple(m.shape)}, batch {B}"
        out[n] = m
    return out
