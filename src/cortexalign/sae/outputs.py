"""Files an SAE-BrainMap run writes: tables, voxel maps (NIfTI) and fsaverage surface figures.

- ``dictionary.csv`` (voxel, layer, unit, r, best_layer[, p, p_fwe]), ``sae_metrics.csv``,
  ``roi_consistency.csv`` (with labels), ``roi_rsa.csv``.
- Volumes (responses with ``x, y, z`` and ``attrs`` ``affine``/``shape``): ``best_r.nii.gz`` and
  ``best_layer.nii.gz`` (1-based layer, 0 outside), on the responses' grid.
- Surfaces: fsaverage responses (``hemi``, ``vertex``) are painted directly; volumes are projected
  with ``vol_to_surf`` only when they are in MNI space, i.e. not NSD subject space (``attrs
  ['space']`` ``func1pt8mm``/``func1mm``: map those with NSD's own tools from the NIfTI maps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from cortexalign.atomic import write_atomic as _atomic

__all__ = ["write_outputs", "SUBJECT_SPACES"]

#: Spaces whose volumes are a subject's native grid (no projection onto fsaverage by affine).
SUBJECT_SPACES = ("func1pt8mm", "func1mm")


def _maps(res: Any) -> tuple[tuple[str, np.ndarray, str], ...]:
    return (("best_r", np.asarray(res.dictionary.r_n, np.float64), "viridis"),
            ("best_layer", res.best_layer_n.astype(np.float64) + 1, "turbo"))


def _surface_labels(res: Any, name: str) -> dict[str, Any]:
    """Title, colour-bar label and (for layers) tick names of a map's surface figure."""
    if name == "best_r":
        return {"title": "how well the best SAE unit predicts each voxel",
                "label": "Pearson r of the best-matching unit (held out)"}
    layers = list(res.match.layers)
    return {"title": "layer of each voxel's best-matching SAE unit", "label": "layer",
            "tick_labels": {float(i + 1): str(x) for i, x in enumerate(layers)},
            "vmin": 1.0, "vmax": float(max(len(layers), 2))}


def _csv(frame: pd.DataFrame, path: Path) -> Path:
    return _atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def write_outputs(res: Any, voxels: xr.DataArray, out: Path, surface: bool = True,
                  mesh: str = "fsaverage5") -> dict[str, Path]:
    """Write the tables and maps of a ``BrainMapResult`` into ``out``; return name -> path."""
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    files["dictionary"] = out / "dictionary.csv"
    _csv(res.dictionary_table(), files["dictionary"])
    rows = [{"layer": k, **vars(m)} for k, m in res.sae_metrics.items()]
    files["sae_metrics"] = out / "sae_metrics.csv"
    _csv(pd.DataFrame(rows), files["sae_metrics"])
    if res.consistency is not None:
        files["consistency"] = out / "roi_consistency.csv"
        _csv(res.consistency, files["consistency"])
    if res.roi_rsa:
        files["roi_rsa"] = out / "roi_rsa.csv"
        _csv(pd.DataFrame({"roi": list(res.roi_rsa),
                           "spearman_rho": list(res.roi_rsa.values())}), files["roi_rsa"])
    coords, attrs = set(voxels.coords), voxels.attrs
    if {"x", "y", "z"} <= coords and {"affine", "shape"} <= set(attrs):
        files.update(_volume_maps(res, voxels, out,
                                  surface and attrs.get("space") not in SUBJECT_SPACES, mesh))
    elif {"hemi", "vertex"} <= coords and surface:
        from cortexalign.neural.fmri.surface import plot_surface_values, vertex_values_to_mesh

        for name, vals, cmap in _maps(res):
            surf = vertex_values_to_mesh(vals, voxels["hemi"].values, voxels["vertex"].values,
                                         mesh)
            files[f"surface_{name}"] = plot_surface_values(surf, out / f"surface_{name}.png",
                                                           mesh, cmap=cmap,
                                                           **_surface_labels(res, name))
    return files


def _volume_maps(res: Any, voxels: xr.DataArray, out: Path, surface: bool, mesh: str
                 ) -> dict[str, Path]:
    import nibabel

    ijk_n3 = np.stack([voxels[c].values for c in ("x", "y", "z")], 1).astype(np.int64)
    affine, shape = np.asarray(voxels.attrs["affine"], np.float64), tuple(voxels.attrs["shape"])
    files = {}
    for name, vals, cmap in _maps(res):
        vol = np.zeros(shape, np.float32)
        vol[tuple(ijk_n3.T)] = np.nan_to_num(vals)
        files[f"volume_{name}"] = out / f"{name}.nii.gz"
        image = nibabel.Nifti1Image(vol, affine)
        _atomic(files[f"volume_{name}"], lambda tmp, image=image: nibabel.save(image, tmp))
        if surface:
            from cortexalign.neural.fmri.surface import plot_voxel_values

            files[f"surface_{name}"] = plot_voxel_values(
                vals, ijk_n3, affine, shape, out / f"surface_{name}.png", mesh, cmap=cmap,
                **_surface_labels(res, name))
    return files
