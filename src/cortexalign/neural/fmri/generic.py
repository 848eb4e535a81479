"""Generic voxel responses: a 4-D NIfTI (x, y, z, stimulus) or a stimulus x voxel table, plus ROIs.

No preprocessing is assumed beyond what the caller asks for: values are read as stored (one volume
or row per stimulus, already averaged over repetitions), optionally z-scored per voxel over stimuli.
Voxels with zero variance are excluded with a warning and counted in
``attrs['excluded_zero_variance']``.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from cortexalign.errors import InputError
from cortexalign.neural._data import make_responses
from cortexalign.neural.fmri._volume import (
    check_same_space,
    drop_constant_voxels,
    load_image,
    zscore_trials,
)
from cortexalign.neural.fmri.rois import read_ctab, select_roi_voxels

__all__ = ["load_nifti_responses", "load_voxel_table"]


def _check_count(n_values: int, stimulus_ids: Sequence[str], what: str) -> list[str]:
    ids = [str(s) for s in stimulus_ids]
    if len(ids) != n_values:
        raise InputError("stimulus_ids", f"{n_values} ids (one per {what})", f"{len(ids)} ids",
                         f"give exactly one stimulus id per {what}, in order")
    return ids


def load_nifti_responses(betas: str | Path, stimulus_ids: Sequence[str], roi_mask: str | Path,
                         label_table: str | Path | Mapping[int, str] | None = None,
                         zscore: bool = False, name: str | None = None) -> xr.DataArray:
    """Responses from a 4-D NIfTI (x, y, z, s) and an ROI label (or boolean) volume.

    Parameters
    ----------
    betas : path of the 4-D image; volume i is the response to ``stimulus_ids[i]``.
    stimulus_ids : s ids.
    roi_mask : a 3-D label volume on the same grid and affine (0 / negative = outside).
    label_table : a ``.ctab`` path or {value: name}; default names are ``roi-<value>``.
    zscore : z-score each voxel over stimuli.
    """
    img = load_image(betas, "betas")
    if len(img.shape) != 4:
        raise InputError("betas", "a 4-D image (x, y, z, stimulus)", f"shape {img.shape}",
                         "stack one volume per stimulus along the 4th axis")
    ids = _check_count(img.shape[3], stimulus_ids, "volume of the betas")
    mask_img = load_image(roi_mask, "roi_mask")
    check_same_space(mask_img, img, "roi_mask", "the betas")
    table = label_table if isinstance(label_table, Mapping) else (
        read_ctab(label_table) if label_table is not None else {})
    table = {int(k): v for k, v in table.items()} or None
    labels = np.asarray(mask_img.dataobj)
    sel = select_roi_voxels({"roi": labels}, {"roi": table or {}})
    i, j, k = sel.mask
    vals_ns = np.asarray(img.dataobj, dtype=np.float64)[i, j, k, :]
    roi = sel.roi_n if table else np.array([f"roi-{v.split('-')[-1]}" for v in sel.roi_n])
    return _finish(vals_ns, ids, roi, {"x": i, "y": j, "z": k},
                   [f"v{a}_{b}_{c}" for a, b, c in sel.ijk_n3], zscore, name or Path(betas).stem,
                   attrs={"affine": np.asarray(img.affine).tolist(), "shape": list(img.shape[:3])})


def load_voxel_table(table: str | Path, rois: str | Path | Mapping[str, str] | None = None,
                     zscore: bool = False, name: str | None = None) -> xr.DataArray:
    """Responses from a CSV table: a ``stimulus_id`` column, then one column per voxel.

    ``rois`` maps voxel column names to ROI names (a dict, or a CSV with columns ``voxel,roi``);
    voxels it does not name are dropped. None keeps every voxel with roi "".
    """
    path = Path(table)
    if not path.is_file():
        raise InputError("table", "an existing CSV file", repr(str(path)), "check the path")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], [r for r in rows[1:] if r]
    if not header or header[0] != "stimulus_id" or len(header) < 2:
        raise InputError("table", "a header 'stimulus_id,<voxel>,<voxel>...'", f"{header[:4]}",
                         "put the stimulus ids in the first column, named stimulus_id")
    bad = [i for i, r in enumerate(body) if len(r) != len(header)]
    if bad:
        raise InputError("table", f"{len(header)} fields per row", f"row {bad[0] + 2} has "
                         f"{len(body[bad[0]])}", "fill every voxel of every stimulus")
    ids = [r[0] for r in body]
    vals_sn = np.asarray([[float(x) for x in r[1:]] for r in body])
    voxels = header[1:]
    if rois is None:
        roi_map = {v: "" for v in voxels}
    elif isinstance(rois, Mapping):
        roi_map = dict(rois)
    else:
        with Path(rois).open(newline="") as f:
            roi_map = {r["voxel"]: r["roi"] for r in csv.DictReader(f)}
    unknown = sorted(set(roi_map) - set(voxels))
    if unknown:
        raise InputError("rois", "voxel names that are columns of the table", f"{unknown[:5]}",
                         "use the table's column names")
    cols = [c for c, v in enumerate(voxels) if v in roi_map]
    return _finish(vals_sn[:, cols].T, ids, np.array([roi_map[voxels[c]] for c in cols]), {},
                   [voxels[c] for c in cols], zscore, name or path.stem)


def _finish(vals_ns: np.ndarray, ids: list[str], roi_n: np.ndarray, coords: dict,
            neuroid_ids: list[str], zscore: bool, name: str, attrs: dict | None = None
            ) -> xr.DataArray:
    z_ns, constant = zscore_trials(vals_ns)
    keep = drop_constant_voxels(constant, f"responses {name!r}")
    out_ns = (z_ns if zscore else vals_ns)[keep]
    coords = {k: np.asarray(v)[keep] for k, v in coords.items()}
    coords["roi"] = np.asarray(roi_n)[keep]
    da = make_responses(out_ns.T, ids, [v for v, k in zip(neuroid_ids, keep, strict=True) if k],
                        coords, name=name)
    da.attrs.update(excluded_zero_variance=int((~keep).sum()), **(attrs or {}))
    return da
