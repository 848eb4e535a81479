"""Spatial maps of convolutional feature maps: plain functions in ``CONV_MAPS``."""

from __future__ import annotations

import torch

from cortexalign.errors import InputError, UnknownNameError

__all__ = ["CONV_MAPS", "conv_maps"]


def mean_abs(acts_bchw: torch.Tensor, k: int) -> torch.Tensor:
    """(b, h, w): mean over channels of the absolute activation."""
    return acts_bchw.abs().mean(dim=1)


def topk(acts_bchw: torch.Tensor, k: int) -> torch.Tensor:
    """(b, h, w): mean of the ``k`` channel maps with the largest spatial-mean activation, per image."""
    score_bc = acts_bchw.mean(dim=(2, 3))
    idx_bk = score_bc.topk(k, dim=1).indices
    chosen = torch.gather(acts_bchw, 1, idx_bk[:, :, None, None].expand(-1, -1, *acts_bchw.shape[2:]))
    return chosen.mean(dim=1)


CONV_MAPS = {"mean_abs": mean_abs, "topk": topk}


def conv_maps(acts_bchw: torch.Tensor, kind: str = "mean_abs", k: int = 8) -> torch.Tensor:
    """One spatial map per image from a convolutional layer's activations.

    Parameters
    ----------
    acts_bchw : (b, c, h, w) activations of a CNN layer (NCHW, as torch convolutions produce).
    kind : ``"mean_abs"`` (mean |activation| over channels, the SAM-vs-mouse-cortex convention)
        or ``"topk"`` (mean of the ``k`` channels with the largest mean activation in that image).
    k : number of channels for ``"topk"`` (1 <= k <= c).

    Returns
    -------
    maps_bhw : (b, h, w) float tensor on the activations' device.
    """
    if kind not in CONV_MAPS:
        raise UnknownNameError("conv map kind", kind, CONV_MAPS)
    if not isinstance(acts_bchw, torch.Tensor) or acts_bchw.dim() != 4:
        got = tuple(acts_bchw.shape) if isinstance(acts_bchw, torch.Tensor) else type(acts_bchw).__name__
        raise InputError("acts_bchw", "a 4-D (b, c, h, w) tensor", str(got),
                         "pass a convolutional layer's output; for tokens (b, t, d) reshape to a grid")
    if kind == "topk" and not (isinstance(k, int) and 1 <= k <= acts_bchw.shape[1]):
        raise InputError("k", f"an int in [1, {acts_bchw.shape[1]}] (the channel count)", repr(k),
                         "pick fewer channels")
    return CONV_MAPS[kind](acts_bchw.float(), k)
