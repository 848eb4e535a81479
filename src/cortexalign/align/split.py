"""Stimulus splits: train / held-out by stimulus, stratified by category, made before any fit."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cortexalign.errors import InputError

__all__ = ["StimulusSplit", "split_stimuli"]


@dataclass(frozen=True)
class StimulusSplit:
    """Which stimuli the alignment loss may use (``train``) and which only measure (``heldout``)."""

    train: tuple[str, ...]
    heldout: tuple[str, ...]
    stratified_by: str | None
    seed: int

    def __post_init__(self) -> None:
        overlap = set(self.train) & set(self.heldout)
        if overlap:
            raise InputError("split", "disjoint train and held-out stimuli",
                             f"{len(overlap)} in both (e.g. {sorted(overlap)[:3]})",
                             "split by stimulus with split_stimuli")

    def to_json(self) -> dict:
        """The split as a JSON-able dict (``split.json``)."""
        return {"train": list(self.train), "heldout": list(self.heldout),
                "stratified_by": self.stratified_by, "seed": self.seed}

    @classmethod
    def from_json(cls, d: dict) -> StimulusSplit:
        """The split read back from ``to_json``'s dict."""
        return cls(tuple(d["train"]), tuple(d["heldout"]), d.get("stratified_by"), int(d["seed"]))

    def write(self, path: Path) -> None:
        """Write atomically (temp file + rename)."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        os.replace(tmp, path)


def split_stimuli(ids, labels=None, heldout_fraction: float = 0.25, seed: int = 0,
                  stratified_by: str | None = None) -> StimulusSplit:
    """Split stimulus ids into train and held-out, stratified by ``labels`` when given.

    Each category keeps ``round(heldout_fraction * n_c)`` held-out stimuli (at least one when it
    has two or more), so every category is on both sides; the draw is seeded.

    Parameters
    ----------
    ids : the stimulus ids; labels : one category per id (None: no stratification).
    heldout_fraction : in (0, 1); seed : seed of the draw; stratified_by : recorded name of the
        label column.

    Returns
    -------
    StimulusSplit, both sides in the order of ``ids``.
    """
    ids = [str(i) for i in ids]
    if len(ids) < 8:
        raise InputError("stimuli", "at least 8 stimuli to split into train and held-out",
                         f"{len(ids)}", "use a target with more stimuli")
    rng = np.random.default_rng(seed)
    groups = np.zeros(len(ids), dtype=int) if labels is None else np.unique(
        np.asarray(labels).astype(str), return_inverse=True)[1]
    if labels is not None and len(groups) != len(ids):
        raise InputError("labels", f"{len(ids)} labels (one per stimulus)", f"{len(groups)}",
                         "pass one category per stimulus")
    held = np.zeros(len(ids), dtype=bool)
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        k = int(round(heldout_fraction * len(members)))
        k = min(max(k, 1 if len(members) >= 2 else 0), len(members) - 1)
        held[rng.choice(members, size=k, replace=False)] = True
    if held.sum() < 4 or (~held).sum() < 4:
        raise InputError("heldout_fraction", "a split with at least 4 stimuli on each side",
                         f"{int((~held).sum())} train / {int(held.sum())} held-out",
                         "change heldout_fraction")
    return StimulusSplit(tuple(np.asarray(ids)[~held]), tuple(np.asarray(ids)[held]),
                         stratified_by if labels is not None else None, int(seed))
