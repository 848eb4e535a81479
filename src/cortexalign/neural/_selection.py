"""Select neuroids by area, Cre line, depth, cell class and reliability; balanced sampling.

Every criterion is checked against the values the data hold: an unknown area or Cre line fails
with the close matches and the list of valid values (never an empty selection in silence).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.neural._reliability import split_half_reliability

__all__ = ["select_neuroids", "balanced_sample", "add_reliability"]


def _as_list(x: str | Sequence[str]) -> list[str]:
    return [x] if isinstance(x, str) else [str(v) for v in x]


def _coord(da: xr.DataArray, name: str) -> np.ndarray:
    if name not in da.coords or da[name].dims != ("neuroid",):
        have = sorted(k for k, c in da.coords.items() if c.dims == ("neuroid",))
        raise InputError(name, f"a neuroid coordinate {name!r}", f"coordinates {have}",
                         "load data that carry it (the Allen loaders add area, cre_line, depth, "
                         "cell_class) or drop this criterion")
    return np.asarray(da[name].values)


def _match(values: np.ndarray, wanted: list[str], kind: str, prefix: bool = False) -> np.ndarray:
    """Mask of neuroids whose value is one of ``wanted`` (for Cre lines, the driver gene also
    matches: "Sst" selects "Sst-IRES-Cre")."""
    present = sorted(set(values.astype(str).tolist()))
    mask = np.zeros(len(values), dtype=bool)
    for w in wanted:
        hit = values.astype(str) == w
        if prefix and not hit.any():
            hit = np.asarray([v.split("-")[0] == w for v in values.astype(str)])
        if not hit.any():
            raise UnknownNameError(kind, w, present, fix=f"use one of the values in the data: "
                                   f"{', '.join(present)}")
        mask |= hit
    return mask


def add_reliability(responses: xr.DataArray, n_splits: int = 100, seed: int = 0) -> xr.DataArray:
    """``responses`` with a ``reliability`` neuroid coordinate (split-half, Spearman-Brown)."""
    rel = split_half_reliability(responses, n_splits=n_splits, seed=seed)
    return responses.assign_coords(reliability=("neuroid", rel))


def select_neuroids(responses: xr.DataArray, *, area: str | Sequence[str] | None = None,
                    cre_line: str | Sequence[str] | None = None,
                    cell_class: str | Sequence[str] | None = None,
                    depth: tuple[float, float] | None = None,
                    min_reliability: float | None = None, n_splits: int = 100,
                    seed: int = 0) -> xr.DataArray:
    """The neuroids that meet every given criterion (criteria left as None are not applied).

    Parameters
    ----------
    responses : DataArray with dims (stimulus, neuroid[, repetition]) and neuroid coordinates.
    area, cre_line, cell_class : one value or several (any of them); Cre lines also match by driver
        gene ("Sst" for "Sst-IRES-Cre").
    depth : (min, max) imaging depth in micrometres, inclusive.
    min_reliability : keep neuroids whose split-half reliability is >= this; uses the
        ``reliability`` coordinate when present, else computes it (``n_splits``, ``seed``) and
        keeps it as a coordinate.
    """
    if not isinstance(responses, xr.DataArray) or "neuroid" not in responses.dims:
        raise InputError("responses", "a DataArray with a neuroid dim", type(responses).__name__,
                         "build it with cortexalign.neural.make_responses or a loader")
    keep = np.ones(responses.sizes["neuroid"], dtype=bool)
    for key, wanted, prefix in (("area", area, False), ("cre_line", cre_line, True),
                                ("cell_class", cell_class, False)):
        if wanted is not None:
            keep &= _match(_coord(responses, key), _as_list(wanted), key.replace("_", " "), prefix)
    if depth is not None:
        if len(depth) != 2 or depth[0] > depth[1]:
            raise InputError("depth", "(min, max) in micrometres", repr(depth), "e.g. (100, 300)")
        d = _coord(responses, "depth").astype(np.float64)
        keep &= (d >= depth[0]) & (d <= depth[1])
    if min_reliability is not None:
        if "reliability" not in responses.coords:
            responses = add_reliability(responses, n_splits, seed)
        keep &= np.nan_to_num(responses["reliability"].values, nan=-np.inf) >= min_reliability
    if not keep.any():
        raise InputError("selection", "criteria that keep at least one neuroid",
                         f"0 of {responses.sizes['neuroid']} neuroids pass (area={area}, "
                         f"cre_line={cre_line}, cell_class={cell_class}, depth={depth}, "
                         f"min_reliability={min_reliability})", "relax a criterion")
    return responses.isel(neuroid=np.flatnonzero(keep))


def balanced_sample(responses: xr.DataArray, by: str = "cell_class",
                    groups: Sequence[str] | None = None, n_per_group: int | None = None,
                    seed: int = 0) -> xr.DataArray:
    """An equal number of neuroids from each group of a coordinate, drawn without replacement.

    Parameters
    ----------
    by : the neuroid coordinate that defines the groups (``cell_class``, ``area``, ``cre_line``).
    groups : the groups to draw from (default: every value present).
    n_per_group : neuroids per group (default: the size of the smallest group).

    Returns
    -------
    The sampled neuroids, grouped in the order of ``groups`` (original order within a group).
    """
    values = _coord(responses, by).astype(str)
    present = sorted(set(values.tolist()))
    groups = present if groups is None else _as_list(groups)
    for g in groups:
        if g not in present:
            raise UnknownNameError(by, g, present)
    sizes = {g: int((values == g).sum()) for g in groups}
    n = min(sizes.values()) if n_per_group is None else int(n_per_group)
    if n < 1 or n > min(sizes.values()):
        raise InputError("n_per_group", f"1..{min(sizes.values())} (the smallest group)",
                         f"{n_per_group} (group sizes {sizes})", "lower n_per_group")
    rng = np.random.default_rng(seed)
    picked = [np.sort(rng.choice(np.flatnonzero(values == g), n, replace=False)) for g in groups]
    return responses.isel(neuroid=np.concatenate(picked))
