"""ROI masks as labelled voxel sets.

NSD's ROIs are label volumes (``roi/prf-visualrois.nii.gz``: 0 = unlabelled, -1 = outside the
brain, k > 0 = the k-th region) with a FreeSurfer colour table beside them
(``prf-visualrois.mgz.ctab``: lines ``k name [r g b a]``). The NSD atlases and their labels:
``prf-visualrois`` (V1v, V1d, V2v, V2d, V3v, V3d, hV4), ``floc-faces`` (OFA, FFA-1, FFA-2, ...),
``floc-bodies`` (EBA, FBA-1, ...), ``floc-places`` (OPA, PPA, RSC), ``floc-words`` (OWFA, VWFA-1,
...), ``streams`` (early, midventral, ... ventral), ``nsdgeneral`` (1 = the visual mask).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cortexalign.errors import InputError

__all__ = ["NSD_ATLASES", "read_ctab", "RoiSelection", "select_roi_voxels"]

NSD_ATLASES = ("prf-visualrois", "floc-faces", "floc-bodies", "floc-places", "floc-words",
               "streams", "nsdgeneral")


def read_ctab(path: str | Path) -> dict[int, str]:
    """Label value -> name from a FreeSurfer ``.ctab`` (or any ``value name ...`` text) file."""
    path = Path(path)
    if not path.is_file():
        raise InputError("label table", "an existing .ctab file", repr(str(path)),
                         "pass the table beside the ROI volume or give labels explicitly")
    table: dict[int, str] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.lstrip().startswith("#"):
            try:
                table[int(parts[0])] = parts[1]
            except ValueError:
                continue
    return table


@dataclass(frozen=True, eq=False)
class RoiSelection:
    """Voxels selected by ROI label volumes.

    Attributes
    ----------
    ijk_n3 : (n, 3) voxel indices in the volume grid, in C order of the grid.
    roi_n : (n,) the first atlas label that names the voxel ("" if none does).
    labels : atlas -> (n,) that atlas's label name per voxel ("" = unlabelled).
    """

    ijk_n3: np.ndarray
    roi_n: np.ndarray
    labels: Mapping[str, np.ndarray]

    @property
    def mask(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The (i, j, k) index arrays of the selected voxels, for indexing a volume."""
        return self.ijk_n3[:, 0], self.ijk_n3[:, 1], self.ijk_n3[:, 2]


def select_roi_voxels(label_volumes: Mapping[str, np.ndarray], tables: Mapping[str, dict[int, str]],
                      within: np.ndarray | None = None, regions: Mapping[str, list[str]] | None = None
                      ) -> RoiSelection:
    """Voxels labelled by any of the atlases (and inside ``within``, if given).

    Parameters
    ----------
    label_volumes : atlas -> integer label volume, all of one grid shape.
    tables : atlas -> {label value: name}; values missing from a table are named ``<atlas>-<k>``.
    within : optional boolean volume (e.g. nsdgeneral > 0) the voxels must also lie in.
    regions : atlas -> the label names to keep (default: all positive labels).
    """
    if not label_volumes:
        raise InputError("rois", "at least one ROI atlas", "none", "name atlases, e.g. ['prf-visualrois']")
    shapes = {k: np.shape(v) for k, v in label_volumes.items()}
    if len(set(shapes.values())) != 1:
        raise InputError("rois", "label volumes of one grid shape", f"{shapes}",
                         "use ROI files of the same space")
    names: dict[str, np.ndarray] = {}
    selected = np.zeros(next(iter(shapes.values())), bool)
    for atlas, vol in label_volumes.items():
        vol = np.rint(np.asarray(vol)).astype(np.int64)
        table = tables.get(atlas, {})
        name_vol = np.full(vol.shape, "", dtype=object)
        for value in np.unique(vol[vol > 0]):
            name = table.get(int(value), f"{atlas}-{int(value)}")
            if regions is None or atlas not in regions or name in regions[atlas]:
                name_vol[vol == value] = name
        unknown = set((regions or {}).get(atlas, [])) - set(name_vol[vol > 0].tolist())
        if unknown:
            raise InputError(f"regions[{atlas!r}]", f"label names of {atlas} ({sorted(set(table.values()))})",
                             f"{sorted(unknown)}", "use the names in the atlas's .ctab table")
        names[atlas] = name_vol
        selected |= name_vol != ""
    if within is not None:
        selected &= np.asarray(within, bool)
    ijk = np.argwhere(selected)
    if len(ijk) == 0:
        raise InputError("rois", "ROIs that contain voxels", "no labelled voxel selected",
                         "check the atlases, region names and the mask")
    idx = tuple(ijk.T)
    labels = {a: names[a][idx].astype(str) for a in names}
    roi = np.full(len(ijk), "", dtype=object)
    for atlas in names:
        roi = np.where(roi == "", labels[atlas], roi)
    return RoiSelection(ijk_n3=ijk, roi_n=roi.astype(str), labels=labels)
