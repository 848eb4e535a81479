"""Per-voxel values (best similarity, best layer) painted on the fsaverage surface with nilearn.

``volume_to_fsaverage`` builds a volume holding the voxels' values (NaN elsewhere) and samples it
along each vertex of the fsaverage pial surface (``nilearn.surface.vol_to_surf``); the volume must
be in MNI space (for NSD, use the subject's MNI-space data or the fsaverage betas directly, whose
values need no projection: ``plot_surface_values``). nilearn ships the fsaverage5 meshes, so this
works offline; a nilearn without them raises a clear error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cortexalign.errors import InputError

__all__ = ["volume_to_fsaverage", "vertex_values_to_mesh", "plot_surface_values",
           "plot_voxel_values", "blank_missing", "voxel_values"]

_HEMIS = {"left": "lh", "right": "rh"}


def _fsaverage(mesh: str):
    try:
        from nilearn import datasets
    except ImportError as exc:
        raise ImportError("surface maps need nilearn: pip install nilearn") from exc
    try:
        fs = datasets.load_fsaverage(mesh)
        sulc = datasets.load_fsaverage_data(mesh=mesh, data_type="sulcal")
    except Exception as exc:  # a missing mesh surfaces as a download attempt or an OSError
        raise InputError("mesh", "an fsaverage mesh nilearn has offline ('fsaverage5' is bundled)",
                         f"{mesh!r} ({type(exc).__name__}: {exc})",
                         "use mesh='fsaverage5' or fetch the mesh once with nilearn online") from None
    return fs, sulc


def voxel_values(values_n: np.ndarray, ijk_n3: np.ndarray, shape: tuple[int, int, int]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-voxel values as float64 and their (n, 3) int64 indices, checked against ``shape``:
    one index row per value, every index inside the volume."""
    values_n, ijk_n3 = np.asarray(values_n, np.float64), np.asarray(ijk_n3, np.int64)
    if ijk_n3.ndim != 2 or ijk_n3.shape != (len(values_n), 3):
        raise InputError("ijk_n3", f"({len(values_n)}, 3) voxel indices (one row per value)",
                         f"shape {ijk_n3.shape}", "pass the responses' x, y, z coordinates")
    if (ijk_n3 < 0).any() or (ijk_n3 >= np.asarray(shape)).any():
        raise InputError("ijk_n3", f"indices inside the volume shape {tuple(shape)}",
                         "out-of-range indices", "use the shape and affine of the betas")
    return values_n, ijk_n3


def volume_to_fsaverage(values_n: np.ndarray, ijk_n3: np.ndarray, affine: np.ndarray,
                        shape: tuple[int, int, int], mesh: str = "fsaverage5",
                        interpolation: str = "nearest_most_frequent", radius: float = 3.0
                        ) -> dict[str, np.ndarray]:
    """Project per-voxel values to fsaverage vertices: hemisphere -> (vertices,) values.

    Parameters
    ----------
    values_n : (n,) one value per voxel.
    ijk_n3 : (n, 3) voxel indices in a volume of ``shape`` with ``affine`` (MNI space).
    interpolation : ``nearest_most_frequent`` (right for labels such as the best layer) or
        ``linear`` (nilearn's names).
    """
    import nibabel
    from nilearn.surface import vol_to_surf

    values_n, ijk_n3 = voxel_values(values_n, ijk_n3, shape)
    vol = np.full(tuple(shape), np.nan, np.float32)
    vol[tuple(ijk_n3.T)] = values_n
    img = nibabel.Nifti1Image(vol, np.asarray(affine, np.float64))
    fs, _ = _fsaverage(mesh)
    return {hemi: vol_to_surf(img, fs.pial.parts[hemi], interpolation=interpolation, radius=radius)
            for hemi in _HEMIS}


def vertex_values_to_mesh(values_n: np.ndarray, hemi_n: np.ndarray, vertex_n: np.ndarray,
                          mesh: str = "fsaverage5") -> dict[str, np.ndarray]:
    """Per-vertex values of fsaverage-space responses on a nilearn mesh: hemisphere -> values.

    fsaverage meshes are nested icosahedra: the first 10,242 vertices of fsaverage (163,842 per
    hemisphere, NSD's ``fsaverage`` space) are fsaverage5's, so vertex i keeps its value on any
    coarser mesh that has it and vertices beyond the mesh are dropped. Vertices without a value
    are NaN.

    Parameters
    ----------
    values_n : (n,) values. hemi_n : (n,) ``lh``/``rh`` (or ``left``/``right``).
    vertex_n : (n,) 0-based vertex indices of fsaverage.
    """
    values_n, hemi_n = np.asarray(values_n, np.float64), np.asarray(hemi_n).astype(str)
    vertex_n = np.asarray(vertex_n, np.int64)
    if not len(values_n) == len(hemi_n) == len(vertex_n):
        raise InputError("hemi_n, vertex_n", f"{len(values_n)} entries each (one per value)",
                         f"{len(hemi_n)} and {len(vertex_n)}", "pass the responses' coordinates")
    fs, _ = _fsaverage(mesh)
    out = {}
    for hemi, short in _HEMIS.items():
        vals = np.full(fs.pial.parts[hemi].n_vertices, np.nan)
        sel = np.flatnonzero((hemi_n == short) | (hemi_n == hemi))
        sel = sel[(vertex_n[sel] >= 0) & (vertex_n[sel] < len(vals))]
        vals[vertex_n[sel]] = values_n[sel]
        out[hemi] = vals
    return out


def _plot_meshes(mesh: Any) -> dict[str, tuple[Any, np.ndarray | None]]:
    """hemisphere -> (inflated mesh, sulcal background) of an fsaverage name or a subject's
    surfaces (``subject_surface.SubjectSurfaces``)."""
    if isinstance(mesh, str):
        fs, sulc = _fsaverage(mesh)
        return {h: (fs.inflated.parts[h], sulc.data.parts[h]) for h in _HEMIS}
    return {h: (mesh.plot_mesh(h), mesh.background(h)) for h in _HEMIS}


def plot_surface_values(surf: dict[str, np.ndarray], path: str | Path, mesh: Any = "fsaverage5",
                        title: str | None = None, cmap: str = "viridis",
                        vmin: float | None = None, vmax: float | None = None,
                        views: tuple[str, ...] = ("lateral", "ventral"),
                        label: str | None = None,
                        tick_labels: dict[float, str] | None = None) -> Path:
    """Save a PNG of both hemispheres of vertex values, one row per view.

    ``mesh``: an fsaverage name (nilearn's meshes) or a subject's ``SubjectSurfaces`` (its
    inflated surfaces and sulcal depth); ``surf`` holds one value per vertex of that mesh.

    Each panel names its hemisphere and view; the colour bar carries ``label`` (what the values
    are) and, for categories such as layers, ``tick_labels`` (value -> name). Vertices without
    a value (NaN) show the bare cortex (sulcal depth in grey), not the lowest colour, and a
    note under the panels says so.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from nilearn import plotting

    meshes = _plot_meshes(mesh)
    finite = np.concatenate([np.asarray(v)[np.isfinite(v)] for v in surf.values()])
    if finite.size == 0:
        raise InputError("values", "some finite values on the surface", "none",
                         "check the volume's space (MNI for fsaverage, the subject's for its "
                         "own surfaces) and that it overlaps the cortex")
    vmin = float(finite.min()) if vmin is None else vmin
    vmax = float(finite.max()) if vmax is None else vmax
    n_missing = sum(int(np.sum(~np.isfinite(np.asarray(v)))) for v in surf.values())
    fig, axes = plt.subplots(len(views), 2, subplot_kw={"projection": "3d"},
                             figsize=(8, 0.6 + 2.9 * len(views)), squeeze=False)
    try:
        for col, hemi in enumerate(_HEMIS):
            data = blank_missing(surf[hemi], vmin, vmax)
            inflated, bg = meshes[hemi]
            for row, view in enumerate(views):
                plotting.plot_surf_stat_map(
                    inflated, data, bg_map=bg, hemi=hemi,
                    view=view, cmap=cmap, vmin=1.0, vmax=2.0, threshold=0.5, colorbar=False,
                    axes=axes[row, col], figure=fig, symmetric_cbar=False)
                axes[row, col].set_title(f"{hemi} hemisphere, {view}", fontsize=8, pad=0)
        bar = fig.colorbar(ScalarMappable(Normalize(vmin, vmax), cmap), ax=axes.ravel().tolist(),
                           shrink=0.6, pad=0.02)
        if label:
            bar.set_label(label, fontsize=8)
        if tick_labels:
            bar.set_ticks(list(tick_labels), labels=list(tick_labels.values()), fontsize=7)
        if title:
            fig.suptitle(title, fontsize=10)
        if n_missing:
            fig.text(0.5, 0.01, "grey: no value at that vertex (outside the mapped voxels)",
                     ha="center", fontsize=7, color="0.3")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def blank_missing(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Values rescaled to [1, 2] over [vmin, vmax] and 0 where there is none (NaN), so that a
    threshold of 0.5 leaves vertices without a value blank (the background shows) instead of
    drawing them in the lowest colour; the figure's colour bar is labelled in the original units.
    """
    v = np.asarray(values, np.float64)
    span = vmax - vmin if vmax > vmin else 1.0
    return np.where(np.isfinite(v), 1.0 + np.clip((v - vmin) / span, 0.0, 1.0), 0.0)


def plot_voxel_values(values_n: np.ndarray, ijk_n3: np.ndarray, affine: np.ndarray,
                      shape: tuple[int, int, int], path: str | Path, mesh: str = "fsaverage5",
                      title: str | None = None, cmap: str = "viridis",
                      interpolation: str = "nearest_most_frequent",
                      views: tuple[str, ...] = ("lateral", "ventral"), **labels: Any) -> Path:
    """Project per-voxel values (MNI volume) to fsaverage and save the PNG; returns its path.
    ``labels``: ``vmin``, ``vmax``, ``label``, ``tick_labels`` of ``plot_surface_values``."""
    surf = volume_to_fsaverage(values_n, ijk_n3, affine, shape, mesh, interpolation)
    return plot_surface_values(surf, path, mesh, title, cmap, views=views, **labels)
