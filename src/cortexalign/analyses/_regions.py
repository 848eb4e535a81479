"""Neural data of several regions, per subject: the input of alignment pattern analysis.

A *region* is any group of neuroids that a model layer could claim to model: a human ROI, a mouse
visual area, or an Allen area x Cre line (``region_by=("area", "cre_line")``). Each region holds
one RDM per subject; a subject need not have every region (an Allen mouse is usually imaged in one
area and one Cre line), the analysis uses the pairs that exist.

``simulate_regions`` makes such data with a planted cross-region structure, for the tests and
the worked example: a chain of latent factors, each region loading most on its own factor and
less on its neighbours', so that neighbouring regions align more than distant ones and every
region has its own profile of alignment to the others.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from cortexalign.errors import InputError
from cortexalign.metrics import compute_rdm
from cortexalign.neural import RDMSet, make_responses, validate_responses

__all__ = ["RegionRDMs", "region_rdms", "as_region_rdms", "simulate_regions", "copy_region",
           "save_regions"]


@dataclass(frozen=True)
class RegionRDMs:
    """One RDM per (subject, region), stacked.

    Attributes
    ----------
    rdms_kss : (k, s, s) RDMs. subjects_k, regions_k : the subject and region of each.
    regions : the distinct regions in order. stimulus_ids : the s stimuli.
    """

    rdms_kss: np.ndarray
    subjects_k: tuple[str, ...]
    regions_k: tuple[str, ...]
    regions: tuple[str, ...]
    stimulus_ids: tuple[str, ...]

    @property
    def subjects(self) -> tuple[str, ...]:
        """The distinct subjects, in the order their RDMs appear."""
        return tuple(dict.fromkeys(self.subjects_k))

    def upper_kp(self) -> np.ndarray:
        """(k, p) upper triangles (row-major, as ``RDMSet.upper``)."""
        iu = np.triu_indices(self.rdms_kss.shape[1], 1)
        return self.rdms_kss[:, iu[0], iu[1]]


def _label(values: Sequence) -> str:
    return "/".join(str(v) for v in values)


def region_rdms(responses: xr.DataArray, region_by: str | Sequence[str] = "area",
                subject_by: str = "subject", rdm_method: str = "correlation",
                min_neuroids: int = 2) -> RegionRDMs:
    """Per-(subject, region) RDMs of responses grouped by neuroid coordinates.

    Parameters
    ----------
    responses : (stimulus, neuroid[, repetition]) responses (repetitions are averaged).
    region_by : the coordinate(s) whose values name a region (``("area", "cre_line")`` for the
        Allen areas x Cre lines); several are joined with ``/``.
    subject_by : the coordinate naming the subject (animal, participant).
    rdm_method : how each group's RDM is made (``metrics.RDM_METHODS``).
    min_neuroids : groups with fewer neuroids are left out (an RDM of one neuroid is degenerate).
    """
    validate_responses(responses, allow_nan=True)
    by = [region_by] if isinstance(region_by, str) else list(region_by)
    for coord in [*by, subject_by]:
        if coord not in responses.coords or responses[coord].dims != ("neuroid",):
            have = sorted(c for c in responses.coords if responses[c].dims == ("neuroid",))
            raise InputError("region_by" if coord in by else "subject_by",
                             "a per-neuroid coordinate of the responses", repr(coord),
                             f"use one of {have}")
    x = responses.mean("repetition") if "repetition" in responses.dims else responses
    values = x.values
    keys = [tuple(str(v) for v in col) for col in zip(*(x[c].values for c in by), strict=True)]
    subj = [str(v) for v in x[subject_by].values]
    groups: dict[tuple[str, str], list[int]] = {}
    for j, (k, s) in enumerate(zip(keys, subj, strict=True)):
        groups.setdefault((_label(k), s), []).append(j)
    rdms, subjects, regions = [], [], []
    for (region, subject), cols in groups.items():
        if len(cols) < min_neuroids:
            continue
        block = values[:, cols]
        if not np.isfinite(block).all():
            block = block[:, np.isfinite(block).all(axis=0)]
            if block.shape[1] < min_neuroids:
                continue
        rdms.append(compute_rdm(block, rdm_method, device="cpu"))
        subjects.append(subject)
        regions.append(region)
    order = tuple(dict.fromkeys(regions))
    if len(order) < 2:
        raise InputError("region_by", "coordinates that split the neuroids into >= 2 regions "
                         f"of >= {min_neuroids} neuroids", f"{len(order)} region(s) ({order})",
                         "group by another coordinate or lower min_neuroids")
    return RegionRDMs(np.stack(rdms), tuple(subjects), tuple(regions), order,
                      tuple(str(s) for s in x["stimulus"].values))


def as_region_rdms(regions, subject_by: str = "subject", **options) -> RegionRDMs:
    """``RegionRDMs`` from itself, from responses (``region_rdms(**options)``), or from a
    mapping region -> ``RDMSet`` (one RDM per subject; several RDMs of one subject, e.g. sessions,
    are averaged; a set without the ``subject_by`` descriptor counts each RDM as a subject)."""
    if isinstance(regions, RegionRDMs):
        return regions
    if isinstance(regions, xr.DataArray):
        return region_rdms(regions, subject_by=subject_by, **options)
    if not isinstance(regions, Mapping) or not all(isinstance(v, RDMSet)
                                                   for v in regions.values()):
        raise InputError("regions", "responses, RegionRDMs, or a mapping region -> RDMSet",
                         type(regions).__name__, "pass e.g. {'V1': rdms_v1, 'V4': rdms_v4}")
    sets = list(regions.values())
    ids = sets[0].stimulus_ids
    rdms, subjects, names = [], [], []
    for name, rs in regions.items():
        rs = rs.reorder(ids) if rs.stimulus_ids != ids else rs
        labels = rs.groups(subject_by).astype(str)
        for subject in dict.fromkeys(labels.tolist()):
            rdms.append(rs.rdms[labels == subject].mean(axis=0))
            subjects.append(subject)
            names.append(str(name))
    return RegionRDMs(np.stack(rdms), tuple(subjects), tuple(names),
                      tuple(dict.fromkeys(names)), tuple(ids))


def _mixes(n_regions: int, width: float) -> np.ndarray:
    f = np.arange(n_regions)
    return np.exp(-np.abs(f[:, None] - f[None, :]) / width)  # (region, factor)


def simulate_regions(n_stimuli: int = 60, n_regions: int = 5, n_subjects: int = 4,
                     n_neuroids: int = 40, factor_dim: int = 6, width: float = 0.8,
                     noise: float = 0.5, seed: int = 0,
                     region_names: Sequence[str] | None = None,
                     stimulus_ids: Sequence[str] | None = None,
                     factors: np.ndarray | None = None) -> xr.DataArray:
    """Responses of ``n_regions`` regions in ``n_subjects`` subjects with planted structure.

    Stimuli have ``n_regions`` latent factors (each ``factor_dim`` wide, standard normal); region r
    is the mix ``sum_f exp(-|r - f| / width) Z_f`` (a hierarchy: neighbours share most), seen by
    each subject through its own random projection to ``n_neuroids`` neuroids plus Gaussian noise
    of standard deviation ``noise`` (relative to a unit-variance signal per neuroid). Neuroid
    coordinates ``area`` (the region) and ``subject``; the latent factors are kept in
    ``attrs["factors"]`` (``copy_region`` builds model features from them). ``stimulus_ids``
    (default ``stim000``...) names the stimuli, e.g. those of a real stimulus set. ``factors``
    (s, n_regions, factor_dim) replaces the random factors (e.g. features of real images at
    increasing depth); each factor is z-scored.
    """
    rng = np.random.default_rng(seed)
    names = list(region_names) if region_names is not None else [f"R{r}" for r in
                                                                 range(n_regions)]
    if len(names) != n_regions:
        raise InputError("region_names", f"{n_regions} names", f"{len(names)}",
                         "give one name per region")
    if factors is None:
        z = rng.standard_normal((n_stimuli, n_regions, factor_dim))
    else:
        z = np.asarray(factors, dtype=np.float64)
        if z.shape[:2] != (n_stimuli, n_regions):
            raise InputError("factors", f"an (s, n_regions, d) array with s = {n_stimuli}, "
                             f"n_regions = {n_regions}", f"shape {z.shape}",
                             "stack one (s, d) factor per region along axis 1")
        z = (z - z.mean(axis=0)) / (z.std(axis=0) + 1e-12)
    mix = _mixes(n_regions, width)
    blocks, area, subject = [], [], []
    for i in range(n_subjects):
        for r in range(n_regions):
            signal = (z * mix[r][None, :, None]).reshape(n_stimuli, -1)
            proj = rng.standard_normal((signal.shape[1], n_neuroids))
            y = signal @ proj
            y /= y.std(axis=0, keepdims=True)
            blocks.append(y + noise * rng.standard_normal(y.shape))
            area += [names[r]] * n_neuroids
            subject += [f"sub{i}"] * n_neuroids
    ids = [f"stim{j:03d}" for j in range(n_stimuli)] if stimulus_ids is None else \
        [str(x) for x in stimulus_ids]
    data = make_responses(np.concatenate(blocks, axis=1), ids,
                          coords={"area": area, "subject": subject}, name="simulated_regions")
    data.attrs.update(factors=z, mix=mix, region_names=names)
    return data


def save_regions(responses: xr.DataArray, path: str | os.PathLike[str]) -> Path:
    """Write responses with their per-neuroid coordinates to an ``.npz`` that
    ``neural.load_neural`` reads (``responses``, ``stimulus_ids``, ``coord_<name>``), atomically."""
    path = Path(path)
    if path.suffix != ".npz":
        raise InputError("path", "a .npz file path", repr(str(path)), "end the name in .npz")
    coords = {f"coord_{c}": np.asarray(responses[c].values).astype(str)
              for c in responses.coords if responses[c].dims == ("neuroid",) and c != "neuroid"}
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, responses=responses.values,
                 stimulus_ids=np.asarray(responses["stimulus"].values).astype(str),
                 neuroid_ids=np.asarray(responses["neuroid"].values).astype(str), **coords)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def copy_region(responses: xr.DataArray, region: str, width: int = 64, noise: float = 0.0,
                seed: int = 1) -> np.ndarray:
    """(s, width) features of a model built to copy ``region`` of ``simulate_regions`` data: the
    region's latent mix through a new random projection, plus optional noise."""
    names = list(responses.attrs["region_names"])
    if region not in names:
        raise InputError("region", f"one of {names}", repr(region), "pick a simulated region")
    z, mix = responses.attrs["factors"], responses.attrs["mix"]
    rng = np.random.default_rng(seed)
    signal = (z * mix[names.index(region)][None, :, None]).reshape(z.shape[0], -1)
    feats = signal @ rng.standard_normal((signal.shape[1], width))
    return feats + noise * feats.std() * rng.standard_normal(feats.shape)
