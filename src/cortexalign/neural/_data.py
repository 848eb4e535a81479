"""Labelled neural data: responses as ``xarray.DataArray`` and sets of RDMs.

Responses have dims ``("stimulus", "neuroid")`` or ``("stimulus", "neuroid", "repetition")``.
The ``stimulus`` dim is indexed by the stimulus ids (coordinate ``stimulus``); neuroid
coordinates may carry ``area``, ``cre_line``, ``depth``, ``subject``, ``roi``, ``voxel``...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from cortexalign.errors import InputError

__all__ = ["make_responses", "validate_responses", "RDMSet", "align_ids", "check_finite"]


def check_finite(x: np.ndarray, name: str) -> None:
    """Raise if ``x`` holds NaN or Inf, naming where the first bad value sits."""
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.number) and not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))
        raise InputError(name, "finite values", f"{len(bad)} NaN/Inf values (first at index "
                         f"{tuple(int(i) for i in bad[0])})",
                         "drop or impute those entries before scoring (e.g. select reliable units)")


def make_responses(values: np.ndarray, stimulus_ids: Sequence[str],
                   neuroid_ids: Sequence[str] | None = None,
                   coords: Mapping[str, Sequence] | None = None,
                   name: str = "responses", allow_nan: bool = False) -> xr.DataArray:
    """Wrap an array of responses as validated neural data.

    Parameters
    ----------
    values : (s, n) or (s, n, r) array: stimuli x neuroids [x repetitions].
    stimulus_ids : s unique ids, matching the stimulus set.
    neuroid_ids : n ids (default ``n0000``...).
    coords : per-neuroid coordinates, each of length n (area, cre_line, depth, subject, roi...).
    allow_nan : keep NaN (e.g. missing repetitions); otherwise NaN/Inf is an error.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim not in (2, 3):
        raise InputError("values", "an array of shape (stimulus, neuroid) or (stimulus, neuroid, "
                         "repetition)", f"shape {values.shape}", "reshape the responses")
    s, n = values.shape[:2]
    stimulus_ids = [str(x) for x in stimulus_ids]
    if len(stimulus_ids) != s:
        raise InputError("stimulus_ids", f"{s} ids (values has {s} stimuli on axis 0)",
                         f"{len(stimulus_ids)} ids", "give one id per row of values")
    neuroid_ids = [str(x) for x in neuroid_ids] if neuroid_ids is not None else [f"n{k:04d}" for k in range(n)]
    if len(neuroid_ids) != n:
        raise InputError("neuroid_ids", f"{n} ids (values has {n} neuroids on axis 1)",
                         f"{len(neuroid_ids)} ids", "give one id per column of values")
    dims = ("stimulus", "neuroid") + (("repetition",) if values.ndim == 3 else ())
    c: dict[str, object] = {"stimulus": stimulus_ids, "neuroid": neuroid_ids}
    for key, col in (coords or {}).items():
        col = np.asarray(col)
        if len(col) != n:
            raise InputError(f"coords[{key!r}]", f"{n} values (one per neuroid)", f"{len(col)}",
                             "give one value per neuroid")
        c[key] = ("neuroid", col)
    da = xr.DataArray(values, dims=dims, coords=c, name=name)
    return validate_responses(da, allow_nan=allow_nan)


def validate_responses(da: xr.DataArray, allow_nan: bool = False) -> xr.DataArray:
    """Check dims, unique ids and finiteness of neural responses; returns ``da`` unchanged."""
    if not isinstance(da, xr.DataArray):
        raise InputError("responses", "an xarray.DataArray", type(da).__name__,
                         "build it with cortexalign.neural.make_responses")
    if da.dims[:2] != ("stimulus", "neuroid") or da.ndim not in (2, 3) or (
            da.ndim == 3 and da.dims[2] != "repetition"):
        raise InputError("responses.dims", "('stimulus', 'neuroid'[, 'repetition'])", f"{da.dims}",
                         "transpose with da.transpose('stimulus', 'neuroid', ...)")
    for dim in ("stimulus", "neuroid"):
        # the dim's pandas index (a range without a coordinate): is_unique is hashed once and
        # cached by pandas, where building da[dim] cost ~0.5 ms a call
        if not da.get_index(dim).is_unique:
            raise InputError(f"responses.{dim}", f"unique {dim} ids", "repeated ids",
                             f"make the {dim} ids unique")
    if not allow_nan:
        check_finite(da.values, "responses")
    return da


def align_ids(model_ids: Sequence[str], neural_ids: Sequence[str],
              what: str = "neural data") -> np.ndarray:
    """Positions in ``model_ids`` (the stimulus set's ids) of each of ``neural_ids``; raise
    naming the mismatch on each side.

    The two sides must hold exactly the same ids (order may differ). The error counts each
    side's ids and lists, for each side, the ids it lacks (up to 10, then how many more).
    """
    model_ids, neural_ids = [str(x) for x in model_ids], [str(x) for x in neural_ids]
    pos = {s: i for i, s in enumerate(model_ids)}
    not_in_stimuli = [s for s in neural_ids if s not in pos]
    neural = set(neural_ids)
    not_in_neural = [s for s in model_ids if s not in neural]
    if not_in_stimuli or not_in_neural:
        def listed(ids: list[str]) -> str:
            more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
            return f"{ids[:10]!r}{more}"

        raise InputError(
            "stimulus ids", f"the same stimulus ids in the stimulus set and the {what}",
            f"{len(model_ids)} ids in the stimulus set and {len(neural_ids)} in the {what}; "
            f"missing from the stimulus set (only in the {what}): {listed(not_in_stimuli)}; "
            f"missing from the {what} (only in the stimulus set): {listed(not_in_neural)}",
            "use the stimulus set the neural data were recorded with, or subset both to "
            "shared ids")
    return np.asarray([pos[s] for s in neural_ids], dtype=np.int64)


@dataclass(frozen=True, eq=False)
class RDMSet:
    """One or more representational dissimilarity matrices over the same stimuli.

    Parameters
    ----------
    rdms : (r, s, s) symmetric matrices with zero diagonals (one per subject/session), or (s, s).
    stimulus_ids : s ids, the row order.
    descriptors : per-RDM labels, each of length r (e.g. ``subject``, ``session``).
    name : the target's name ("human_IT").
    """

    rdms: np.ndarray
    stimulus_ids: tuple[str, ...]
    descriptors: Mapping[str, np.ndarray] = field(default_factory=dict)
    name: str = "rdm"
    citation: str = ""

    def __post_init__(self) -> None:
        rdms = np.asarray(self.rdms, dtype=np.float64)
        if rdms.ndim == 2:
            rdms = rdms[None]
        if rdms.ndim != 3 or rdms.shape[1] != rdms.shape[2]:
            raise InputError("rdms", "an (s, s) or (r, s, s) array of square matrices",
                             f"shape {np.shape(self.rdms)}", "stack square RDMs along axis 0")
        s = rdms.shape[1]
        ids = tuple(str(x) for x in self.stimulus_ids)
        if len(ids) != s:
            raise InputError("stimulus_ids", f"{s} ids (the RDMs are {s} x {s})", f"{len(ids)} ids",
                             "give one id per RDM row")
        if len(set(ids)) != s:
            raise InputError("stimulus_ids", "unique ids", "repeated ids", "make the ids unique")
        check_finite(rdms, "rdms")
        if not np.allclose(rdms, rdms.transpose(0, 2, 1), atol=1e-6 * max(1.0, np.abs(rdms).max())):
            raise InputError("rdms", "symmetric matrices", "an asymmetric matrix",
                             "symmetrise with (R + R.T) / 2 if it is a rounding issue")
        iu = np.triu_indices(s, 1)
        if (np.ptp(rdms[:, iu[0], iu[1]], axis=1) == 0).any():
            raise InputError("rdms", "RDMs whose dissimilarities vary", "a constant RDM",
                             "check the source: a constant RDM cannot be compared by correlation")
        desc = {}
        for key, col in dict(self.descriptors).items():
            col = np.asarray(col)
            if len(col) != rdms.shape[0]:
                raise InputError(f"descriptors[{key!r}]", f"{rdms.shape[0]} values (one per RDM)",
                                 f"{len(col)}", "give one label per RDM")
            desc[key] = col
        object.__setattr__(self, "rdms", rdms)
        object.__setattr__(self, "stimulus_ids", ids)
        object.__setattr__(self, "descriptors", desc)

    @property
    def n_rdms(self) -> int:
        """Number of RDMs (subjects x sessions)."""
        return self.rdms.shape[0]

    @property
    def n_stimuli(self) -> int:
        """Number of stimuli (rows of each RDM)."""
        return self.rdms.shape[1]

    def mean(self) -> np.ndarray:
        """The (s, s) average RDM."""
        return self.rdms.mean(axis=0)

    def upper(self) -> np.ndarray:
        """(r, s*(s-1)/2) upper-triangle vectors, row-major (rsatoolbox's order)."""
        iu = np.triu_indices(self.n_stimuli, 1)
        return self.rdms[:, iu[0], iu[1]]

    def reorder(self, stimulus_ids: Sequence[str]) -> RDMSet:
        """The same RDMs with rows and columns in the order of ``stimulus_ids``."""
        align_ids(stimulus_ids, self.stimulus_ids, what=f"RDM {self.name!r}")  # or the error
        row = {s: i for i, s in enumerate(self.stimulus_ids)}
        idx = np.asarray([row[str(s)] for s in stimulus_ids], dtype=np.int64)
        return RDMSet(self.rdms[:, idx][:, :, idx], tuple(stimulus_ids), self.descriptors,
                      self.name, self.citation)

    def groups(self, by: str) -> np.ndarray:
        """Per-RDM group labels for a descriptor (e.g. ``subject``), or one group per RDM."""
        if by in self.descriptors:
            return np.asarray(self.descriptors[by])
        return np.arange(self.n_rdms)
