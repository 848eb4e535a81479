"""Files an SAE-BrainMap run writes: tables, voxel maps (NIfTI) and fsaverage surface figures.

- ``dictionary.csv`` (voxel, layer, unit, r, best_layer[, p, p_fwe]), ``sae_metrics.csv`` (per
  layer: ``SAEMetrics`` plus ``sparse`` and the thresholds it was judged by),
  ``roi_consistency.csv`` (with labels), ``roi_rsa.csv``.
- Volumes (responses with ``x, y, z`` and ``attrs`` ``affine``/``shape``): ``best_r.nii.gz`` and
  ``best_layer.nii.gz`` (1-based layer, 0 outside), on the responses' grid.
- Surfaces: fsaverage responses (``hemi``, ``vertex``) are painted directly; MNI volumes are
  projected onto fsaverage with ``vol_to_surf``; subject-space volumes (``attrs['space']``
  ``func1pt8mm``/``func1mm``) are drawn on the subject's own FreeSurfer surfaces when they are
  given (``subject_surfaces``, or the responses' ``attrs['freesurfer']``, which ``load_nsd`` sets
  when NSD's ``freesurfer/subjXX/surf`` is there; ``neural.fmri.subject_surface``), else they get
  the NIfTI maps only. Vertices without a value are left blank.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from cortexalign.atomic import write_atomic as _atomic
from cortexalign.sae.objectives import DENSE_FREQUENCY, MAX_ACTIVE_FRACTION

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
                  mesh: str = "fsaverage5", subject_surfaces: str | Path | None = None
                  ) -> dict[str, Path]:
    """Write the tables and maps of a ``BrainMapResult`` into ``out``; return name -> path.

    ``subject_surfaces``: a FreeSurfer subject directory for subject-space volumes (None: the
    responses' ``attrs['freesurfer']`` when set).
    """
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    files["dictionary"] = out / "dictionary.csv"
    _csv(res.dictionary_table(), files["dictionary"])
    rows = [{"layer": k, **vars(m), "sparse": bool(m.active_fraction <= MAX_ACTIVE_FRACTION),
             "max_active_fraction": MAX_ACTIVE_FRACTION, "dense_frequency": DENSE_FREQUENCY}
            for k, m in res.sae_metrics.items()]
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
        target: Any = None
        if surface and attrs.get("space") not in SUBJECT_SPACES:
            target = mesh
        elif surface and (subject_surfaces or attrs.get("freesurfer")):
            from cortexalign.neural.fmri.subject_surface import load_subject_surfaces

            target = load_subject_surfaces(subject_surfaces or attrs["freesurfer"])
        files.update(_volume_maps(res, voxels, out, target))
    elif {"hemi", "vertex"} <= coords and surface:
        from cortexalign.neural.fmri.surface import plot_surface_values, vertex_values_to_mesh

        for name, vals, cmap in _maps(res):
            surf = vertex_values_to_mesh(vals, voxels["hemi"].values, voxels["vertex"].values,
                                         mesh)
            files[f"surface_{name}"] = plot_surface_values(surf, out / f"surface_{name}.png",
                                                           mesh, cmap=cmap,
                                                           **_surface_labels(res, name))
    return files


def _volume_maps(res: Any, voxels: xr.DataArray, out: Path, target: Any) -> dict[str, Path]:
    """NIfTI maps and, with a ``target`` (an fsaverage name or a subject's surfaces), figures."""
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
        if isinstance(target, str):
            from cortexalign.neural.fmri.surface import plot_voxel_values

            files[f"surface_{name}"] = plot_voxel_values(
                vals, ijk_n3, affine, shape, out / f"surface_{name}.png", target, cmap=cmap,
                **_surface_labels(res, name))
        elif target is not None:
            from cortexalign.neural.fmri.subject_surface import volume_to_subject_surface
            from cortexalign.neural.fmri.surface import plot_surface_values

            surf = volume_to_subject_surface(vals, ijk_n3, affine, shape, target,
                                             categorical=name == "best_layer")
            if not any(np.isfinite(v).any() for v in surf.values()):
                warnings.warn(f"SAE-BrainMap: no vertex of the surfaces in {target.directory} "
                              f"lies on the mapped voxels; {name} has no surface figure (check "
                              "that the surfaces belong to the volume's subject and space)",
                              RuntimeWarning, stacklevel=3)
                continue
            files[f"surface_{name}"] = plot_surface_values(
                surf, out / f"surface_{name}.png", target, cmap=cmap,
                **_surface_labels(res, name))
    return files
