"""Neural targets of a run: load each ``NeuralSpec``, align it to the stimuli, select, split.

A spec with ``split_by`` becomes one ``Target`` per group of neuroids (``allen/VISp/Cux2``); the
group values travel with every score (``extra["group"]``) so a report can pivot scores into
layer x area and layer x Cre-line matrices. Cre lines are grouped by driver gene (``Cux2`` for
``Cux2-CreERT2``), areas in the visual hierarchy's order (``AREAS``), other values sorted.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from cortexalign.bench._config import NeuralSpec
from cortexalign.errors import InputError
from cortexalign.neural import (
    RDMSet,
    align_ids,
    load_neural,
    select_cluster_centres,
    select_neuroids,
)
from cortexalign.neural.allen import AREAS, cre_gene
from cortexalign.stimuli import StimulusSet

__all__ = ["Target", "load_targets", "split_targets", "GROUP_VALUE"]

GROUP_VALUE = {"cre_line": cre_gene}
"""Coordinate -> how a neuroid's value becomes its group value (identity for the others)."""


@dataclass(frozen=True, eq=False)
class Target:
    """One neural target as scored: a label, the data, and the group it stands for.

    Attributes
    ----------
    label : the ``target`` column of its scores (``"allen/VISp/Cux2"``; the spec's label when
        not split).
    data : ``RDMSet`` or responses (stimulus, neuroid[, repetition]) in the stimuli's order.
    group : split coordinate -> value (empty when not split).
    source : the spec's label (all groups of one spec share it).
    ceiling : the spec's published ceiling ``(low, high, source)``, or None (computed).
    """

    label: str
    data: RDMSet | xr.DataArray
    group: dict[str, str] = field(default_factory=dict)
    source: str = ""
    ceiling: tuple[float, float, str] | None = None

    def extra(self) -> dict[str, Any]:
        """What every score of this target records about it."""
        if not self.group:
            return {}
        n = self.data.sizes["neuroid"] if isinstance(self.data, xr.DataArray) else 0
        return {"group": dict(self.group), "target_source": self.source, "n_neuroids": int(n)}


def _order(coord: str, values: list[str]) -> list[str]:
    if coord == "area":
        rank = {a: i for i, a in enumerate(AREAS)}
        return sorted(values, key=lambda v: (rank.get(v, len(rank)), v))
    return sorted(values)


def split_targets(data: xr.DataArray, split_by: list[str], label: str,
                  min_neuroids: int = 1) -> list[Target]:
    """One ``Target`` per combination of the ``split_by`` coordinates' values present in ``data``.

    Groups with fewer than ``min_neuroids`` neuroids are left out with a warning; if none is left
    the spec is refused (``InputError``).
    """
    if not split_by:
        return [Target(label, data, {}, label)]
    have = sorted(k for k, c in data.coords.items() if c.dims == ("neuroid",))
    for coord in split_by:
        if coord not in have:
            raise InputError("split_by", f"neuroid coordinates of {label!r} ({', '.join(have)})",
                             repr(coord), "split by a coordinate the data carry (the Allen "
                             "loaders add area, cre_line, cell_class, depth)")
    keys = [np.asarray([GROUP_VALUE.get(c, str)(v) for v in data[c].values.astype(str)])
            for c in split_by]
    combos = sorted(set(zip(*(k.tolist() for k in keys), strict=True)))
    for j in reversed(range(len(split_by))):  # stable sort: the first coordinate varies slowest
        order = _order(split_by[j], sorted({c[j] for c in combos}))
        combos.sort(key=lambda c, j=j, order=order: order.index(c[j]))
    out, small = [], []
    for combo in combos:
        idx = np.flatnonzero(np.logical_and.reduce([k == v for k, v in zip(keys, combo,
                                                                             strict=True)]))
        name = "/".join([label, *combo])
        if len(idx) < min_neuroids:
            small.append(f"{name} ({len(idx)})")
            continue
        out.append(Target(name, data.isel(neuroid=idx), dict(zip(split_by, combo, strict=True)),
                          label))
    if small:
        warnings.warn(f"left out {len(small)} group(s) with fewer than {min_neuroids} neuroids: "
                      f"{', '.join(small[:10])}", UserWarning, stacklevel=2)
    if not out:
        raise InputError("min_neuroids", f"at most the largest group's size in {label!r}",
                         f"{min_neuroids} (groups: {', '.join(small[:10])})",
                         "lower min_neuroids or split by fewer coordinates")
    return out


def load_targets(spec: NeuralSpec, stimuli: StimulusSet) -> list[Target]:
    """Load ``spec`` (with its options), put it in the stimuli's order, select and split it."""
    data = load_neural(spec.source, **spec.options)
    what = f"neural target {spec.display!r}"
    if isinstance(data, RDMSet):
        if spec.select is not None or spec.split_by:
            raise InputError(f"neural ({spec.display})", "select/split_by on responses (RDM "
                             "targets have no neuroids)", "an RDM target with select/split_by",
                             "remove select and split_by from this target")
        align_ids(stimuli.ids, data.stimulus_ids, what=what)
        return [Target(spec.display, data, {}, spec.display, _ceiling(spec))]
    neural_ids = [str(s) for s in data["stimulus"].values]
    align_ids(stimuli.ids, neural_ids, what=what)  # the same ids on both sides, or the error
    row = {s: i for i, s in enumerate(neural_ids)}
    data = data.isel(stimulus=[row[s] for s in stimuli.ids])  # in the stimulus set's order
    if spec.select is not None:
        criteria = spec.select.model_dump(exclude_none=True, exclude={"cluster_centres",
                                                                      "embedding"})
        data = select_neuroids(data, **criteria)
        if spec.select.cluster_centres is not None:
            data = select_cluster_centres(data, spec.select.cluster_centres,
                                          embedding=spec.select.embedding or "umap")
    targets = split_targets(data, list(spec.split_by), spec.display, spec.min_neuroids)
    return [dataclasses.replace(t, ceiling=_ceiling(spec)) for t in targets]


def _ceiling(spec: NeuralSpec) -> tuple[float, float, str] | None:
    c = spec.ceiling
    return None if c is None else (c.low, c.high, c.source)
