"""Neuron spatial maps: the response-weighted average of the stimuli, on a model map's grid.

``map_n = sum_i w_ni (image_i - mean_image)`` (Jalil, Qazi & Iqbal 2025/2026: N = sum_i r_i image_i,
a response-weighted stimulus average, akin to a spike-triggered average). Images become grayscale
floats in [0, 1] and are resized to the (gh, gw) grid by area averaging before weighting (both are
linear, so the order does not change the result). Weights per neuron (``WEIGHTINGS``):

- ``"raw"``: the responses divided by the sum of their absolute values (a weighted mean);
- ``"zscore"`` (default): responses z-scored over stimuli, divided by the number of stimuli, so the
  map is the covariance of the pixels with the response (Pearson-like, scale free);
- ``"positive"``: negative responses set to 0, then divided by their sum (a mean of the images that
  drive the neuron).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch
import xarray as xr

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.stimuli import StimulusSet

__all__ = ["neuron_maps", "WEIGHTINGS", "stimuli_on_grid"]


def _raw(r_ns: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return r_ns / np.abs(r_ns).sum(1, keepdims=True)


def _zscore(r_ns: np.ndarray) -> np.ndarray:
    sd = r_ns.std(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):  # constant rows -> NaN, caught later
        return (r_ns - r_ns.mean(1, keepdims=True)) / sd / r_ns.shape[1]


def _positive(r_ns: np.ndarray) -> np.ndarray:
    pos = np.clip(r_ns, 0.0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pos / pos.sum(1, keepdims=True)


WEIGHTINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "raw": _raw, "zscore": _zscore, "positive": _positive}


def stimuli_on_grid(images: StimulusSet | np.ndarray, grid: tuple[int, int],
                    pad_square: bool = False) -> np.ndarray:
    """(s, gh, gw) float64 grayscale images in [0, 1], area-averaged onto the grid.

    ``pad_square`` first pads each image at the bottom/right to a square with the mean grey, as
    SAM's preprocessing does (longest side resized, then padded), so that a 64 x 64 SAM token grid
    and the neuron map cover the same pixels.
    """
    gh, gw = (int(g) for g in grid)
    if gh < 1 or gw < 1:
        raise InputError("grid", "(gh, gw) positive integers", repr(grid), "e.g. grid=(64, 64)")
    if isinstance(images, StimulusSet):
        # every map job of a run asks again for the same grid: decoding and resizing 118 Allen
        # scenes each time cost more than scoring (a few MB of grids kept instead)
        key = (images.content_hash, gh, gw, bool(pad_square))
        if key not in _GRID_CACHE:
            arrs = [im.astype(np.float64).mean(-1) / 255.0 for im in images.images()]
            _GRID_CACHE[key] = _on_grid(arrs, gh, gw, pad_square)
            while len(_GRID_CACHE) > _GRID_CACHE_SIZE:
                _GRID_CACHE.popitem(last=False)
        _GRID_CACHE.move_to_end(key)
        return _GRID_CACHE[key].copy()
    a = np.asarray(images)
    if a.ndim not in (3, 4):
        raise InputError("images", "(s, H, W) or (s, H, W, C) pixels", f"shape {a.shape}",
                         "stack the images along axis 0")
    a = a.astype(np.float64) / (255.0 if a.dtype == np.uint8 else 1.0)
    return _on_grid(list(a.mean(-1) if a.ndim == 4 else a), gh, gw, pad_square)


_GRID_CACHE: OrderedDict[tuple, np.ndarray] = OrderedDict()
_GRID_CACHE_SIZE = 32


def _on_grid(arrs: list[np.ndarray], gh: int, gw: int, pad_square: bool) -> np.ndarray:
    out = np.empty((len(arrs), gh, gw))
    for k, im in enumerate(arrs):  # images may differ in size: resize one at a time
        if pad_square:
            side = max(im.shape)
            im = np.pad(im, ((0, side - im.shape[0]), (0, side - im.shape[1])),
                        constant_values=0.5)
        t = torch.from_numpy(np.ascontiguousarray(im))[None, None]
        out[k] = torch.nn.functional.interpolate(t, size=(gh, gw), mode="area")[0, 0].numpy()
    return out


def neuron_maps(responses: xr.DataArray | np.ndarray, images: StimulusSet | np.ndarray,
                grid: tuple[int, int], *, weighting: str = "zscore",
                subtract_mean_image: bool = True, pad_square: bool = False) -> np.ndarray:
    """(n, gh, gw) response-weighted stimulus maps, vectorised over neurons.

    Parameters
    ----------
    responses : (s, n) array or DataArray (stimulus, neuroid[, repetition]); repetitions are
        averaged (NaN ignored). Rows must be in the order of ``images``.
    images : the s stimuli (a StimulusSet or an (s, H, W[, C]) array; uint8 or floats in [0, 1]).
    grid : (gh, gw), the model map's grid.
    weighting : a key of ``WEIGHTINGS``.
    subtract_mean_image : remove the mean image first, so the map shows what distinguishes the
        images a neuron prefers rather than the average photograph.
    """
    if weighting not in WEIGHTINGS:
        raise UnknownNameError("map weighting", weighting, WEIGHTINGS)
    if isinstance(responses, xr.DataArray):
        if isinstance(images, StimulusSet) and list(responses["stimulus"].values) != list(images.ids):
            raise InputError("responses", f"stimuli in the order of the stimulus set {images.name!r}",
                             "different stimulus ids or order", "reorder with "
                             "responses.sel(stimulus=list(stimuli.ids))")
        r = responses.values
        r_sn = np.nanmean(r, axis=2) if r.ndim == 3 else r
    else:
        r_sn = np.asarray(responses, dtype=np.float64)
    if r_sn.ndim != 2:
        raise InputError("responses", "(s, n) responses", f"shape {r_sn.shape}", "reshape them")
    img_sgg = stimuli_on_grid(images, grid, pad_square)
    if img_sgg.shape[0] != r_sn.shape[0]:
        raise InputError("images", f"{r_sn.shape[0]} images (one per response row)",
                         f"{img_sgg.shape[0]}", "pass the stimuli the responses were recorded to")
    if not np.isfinite(r_sn).all():
        raise InputError("responses", "finite responses (after averaging repetitions)",
                         f"{int((~np.isfinite(r_sn)).sum())} NaN/Inf", "drop those neurons")
    w_ns = WEIGHTINGS[weighting](r_sn.T)
    if not np.isfinite(w_ns).all():
        bad = np.flatnonzero(~np.isfinite(w_ns).all(1))
        raise InputError("responses", f"neurons whose responses allow {weighting!r} weights",
                         f"{len(bad)} neuron(s) with constant/zero responses (first: column "
                         f"{bad[0]})", "drop unresponsive neurons or choose another weighting")
    if subtract_mean_image:
        img_sgg = img_sgg - img_sgg.mean(0, keepdims=True)
    s, gh, gw = img_sgg.shape
    return (w_ns @ img_sgg.reshape(s, gh * gw)).reshape(-1, gh, gw)
