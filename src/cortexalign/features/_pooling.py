"""Pooling of layer activations to one vector per stimulus, as plain functions in a dict.

Every function has the signature ``fn(acts, num_prefix_tokens) -> Tensor`` and accepts the three
layouts of the model contract:

- ``acts_bchw`` (b, c, h, w): convolutional maps;
- ``acts_btd`` (b, t, d): token sequences, the ``num_prefix_tokens`` prefix (CLS, register,
  distillation) tokens first;
- ``acts_bd`` (b, d): already one vector per image.

All but ``none`` return (b, d) and reduce in float32, so bf16 activations from autocast are
averaged at full precision. Functions run on whatever device the activations live on: the
extractor pools on the accelerator and moves only the pooled vectors to the host.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from cortexalign.errors import InputError, UnknownNameError

__all__ = ["POOLINGS", "PoolFn", "pool"]

PoolFn = Callable[[torch.Tensor, int], torch.Tensor]


def _shape_error(name: str, acts: torch.Tensor) -> InputError:
    return InputError("acts", "a (b, c, h, w), (b, t, d) or (b, d) activation",
                      f"shape {tuple(acts.shape)} for pooling {name!r}",
                      "use pooling='flatten' or 'none' for layers of other ranks")


def _patch_tokens(acts_btd: torch.Tensor, num_prefix_tokens: int, name: str) -> torch.Tensor:
    """The non-prefix tokens (b, t - p, d); raise if there are none."""
    if num_prefix_tokens >= acts_btd.shape[1]:
        raise InputError("acts", f"more tokens than the {num_prefix_tokens} prefix tokens",
                         f"{acts_btd.shape[1]} tokens for pooling {name!r}",
                         "use pooling='cls' or 'flatten' for a layer made of prefix tokens only")
    return acts_btd[:, num_prefix_tokens:]


def pool_none(acts: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
    """The raw activations, shape unchanged (cast to float32)."""
    return acts.float()


def pool_mean(acts: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
    """Spatial mean of a conv map; mean over the non-prefix (patch) tokens of a token layer."""
    if acts.ndim == 4:
        return acts.float().mean(dim=(2, 3))
    if acts.ndim == 3:
        return _patch_tokens(acts, num_prefix_tokens, "mean").float().mean(dim=1)
    if acts.ndim == 2:
        return acts.float()
    raise _shape_error("mean", acts)


def pool_max(acts: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
    """Spatial max of a conv map; max over the non-prefix tokens of a token layer."""
    if acts.ndim == 4:
        return acts.float().amax(dim=(2, 3))
    if acts.ndim == 3:
        return _patch_tokens(acts, num_prefix_tokens, "max").float().amax(dim=1)
    if acts.ndim == 2:
        return acts.float()
    raise _shape_error("max", acts)


def pool_cls(acts: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
    """The first prefix token (CLS) of a token layer."""
    if acts.ndim != 3 or num_prefix_tokens < 1:
        kind = "a token layer without prefix tokens" if acts.ndim == 3 else f"shape {tuple(acts.shape)}"
        raise InputError("pooling", "a token layer (b, t, d) with a CLS/prefix token for 'cls'",
                         kind, "use pooling='mean' (mean over patch tokens or spatial positions)")
    return acts[:, 0].float()


def _grid_pool(acts: torch.Tensor, num_prefix_tokens: int, g: int) -> torch.Tensor:
    """Average over a g x g grid of regions, then flatten to (b, c * g * g): keeps coarse
    spatial layout (what retinotopic data needs) at a fixed, small width."""
    name = f"grid{g}"
    if acts.ndim == 3:
        patches = _patch_tokens(acts, num_prefix_tokens, name)
        side = math.isqrt(patches.shape[1])
        if side * side != patches.shape[1]:
            raise InputError("acts", f"a square grid of patch tokens for pooling {name!r}",
                             f"{patches.shape[1]} patch tokens",
                             "use pooling='mean' for token layers that are not a square grid")
        acts = patches.transpose(1, 2).reshape(patches.shape[0], -1, side, side)
    if acts.ndim == 2:
        return acts.float()
    if acts.ndim != 4:
        raise _shape_error(name, acts)
    return F.adaptive_avg_pool2d(acts.float(), g).flatten(1)


def pool_grid2(acts: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
    """Mean over a 2 x 2 grid of image regions, flattened (b, 4 c)."""
    return _grid_pool(acts, num_prefix_tokens, 2)


def pool_grid4(acts: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
    """Mean over a 4 x 4 grid of image regions, flattened (b, 16 c)."""
    return _grid_pool(acts, num_prefix_tokens, 4)


def pool_flatten(acts: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
    """Every value of the layer, flattened to (b, c*h*w) or (b, t*d), in C order."""
    return acts.float().reshape(acts.shape[0], -1)


POOLINGS: dict[str, PoolFn] = {
    "none": pool_none,
    "mean": pool_mean,
    "max": pool_max,
    "cls": pool_cls,
    "flatten": pool_flatten,
    "grid2": pool_grid2,
    "grid4": pool_grid4,
}


def pool(acts: torch.Tensor, pooling: str, num_prefix_tokens: int = 0) -> torch.Tensor:
    """Apply ``POOLINGS[pooling]``; an unknown name fails with the valid ones."""
    if pooling not in POOLINGS:
        raise UnknownNameError("pooling", pooling, POOLINGS)
    return POOLINGS[pooling](acts, num_prefix_tokens)
