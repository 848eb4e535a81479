"""Subject-space volumes drawn on the subject's own FreeSurfer surfaces.

NSD's usual data are volumes in each subject's space (``func1pt8mm``), which no fsaverage
projection fits; NSD also ships each subject's FreeSurfer reconstruction
(``nsddata/freesurfer/subjXX/surf/{lh,rh}.{white,pial,inflated,sulc}``). ``load_subject_surfaces``
reads those files with ``nibabel.freesurfer``; ``volume_to_subject_surface`` samples per-voxel
values onto them with ``nilearn.surface.vol_to_surf`` along each vertex's white -> pial segment
(``kind='depth'``, five depths, trilinear), and the figures are drawn on the inflated surface
(``surface.plot_surface_values``).

Registration. FreeSurfer stores vertices in "tkr" coordinates (origin at the centre of the
conformed volume); scanner coordinates are tkr + ``c_ras`` (the ``cras`` of the surface file's
volume info, which FreeSurfer writes into every surface; absent: 0). The volume's affine must map
its voxels into the same scanner coordinates, as for volumes registered to the subject's T1
(fMRIPrep's ``T1w`` space, for instance). NSD says its functional and anatomical volumes are
*not* in rigid register (it estimated a nonlinear warp, applied by its ``nsd_mapdata``): the
affine route draws NSD's ``func1pt8mm`` values up to that misregistration. ``surface_to_world``
replaces the ``c_ras`` shift with any 4 x 4 map of surface coordinates to the volume's world.

Vertices without a value stay blank: a vertex gets a value only when at least ``min_coverage``
(default half) of its trilinear samples fall on voxels that have one; elsewhere it is NaN
(outside the brain mask, outside the volume, off the mapped voxels).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cortexalign.errors import InputError
from cortexalign.neural.fmri.surface import voxel_values

__all__ = ["SubjectSurfaces", "load_subject_surfaces", "volume_to_subject_surface",
           "SURFACE_DEPTHS"]

HEMIS = {"left": "lh", "right": "rh"}
#: Fractions of the way from pial (0) to white (1) at which each vertex samples the volume.
SURFACE_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class SubjectSurfaces:
    """One subject's FreeSurfer surfaces, per hemisphere (``left``, ``right``).

    Attributes
    ----------
    directory : the FreeSurfer subject directory (holding ``surf/``).
    white, pial, inflated : hemisphere -> ``(coords (V, 3) float64 in mm, faces (F, 3) int)``;
        white and pial in the surface files' (tkr) coordinates, all three with the same V.
    sulc : hemisphere -> (V,) sulcal depth (the figures' grey background), or None.
    surface_to_world : 4 x 4 map of surface coordinates to the volume's world (mm).
    """

    directory: Path
    white: dict[str, tuple[np.ndarray, np.ndarray]]
    pial: dict[str, tuple[np.ndarray, np.ndarray]]
    inflated: dict[str, tuple[np.ndarray, np.ndarray]]
    sulc: dict[str, np.ndarray | None] = field(default_factory=dict)
    surface_to_world: np.ndarray = field(default_factory=lambda: np.eye(4))

    def world(self, surface: str, hemi: str) -> np.ndarray:
        """(V, 3) vertices of ``surface`` (``white`` or ``pial``) in the volume's world (mm)."""
        xyz = getattr(self, surface)[hemi][0]
        return xyz @ self.surface_to_world[:3, :3].T + self.surface_to_world[:3, 3]

    def plot_mesh(self, hemi: str):
        """The inflated mesh of ``hemi`` (a nilearn ``InMemoryMesh``) the figures draw on."""
        from nilearn.surface import InMemoryMesh

        coords, faces = self.inflated[hemi]
        return InMemoryMesh(coordinates=coords, faces=faces)

    def background(self, hemi: str) -> np.ndarray | None:
        """The (V,) sulcal depth of ``hemi`` (grey shading of the figures), or None."""
        return self.sulc.get(hemi)


def load_subject_surfaces(directory: str | Path, surface_to_world: np.ndarray | None = None
                          ) -> SubjectSurfaces:
    """Read ``surf/{lh,rh}.{white,pial,inflated}`` (and ``.sulc`` when present) of a FreeSurfer
    subject directory (NSD: ``nsddata/freesurfer/subjXX``).

    Parameters
    ----------
    directory : the subject directory.
    surface_to_world : 4 x 4 map of the surface coordinates to the volume's world coordinates;
        None: a shift by the white surface's ``c_ras`` (FreeSurfer's tkr -> scanner convention).
    """
    from nibabel.freesurfer import read_geometry, read_morph_data

    d = Path(directory)
    surf = d / "surf"
    need = [surf / f"{h}.{s}" for h in HEMIS.values() for s in ("white", "pial", "inflated")]
    missing = [p.name for p in need if not p.is_file()]
    if missing:
        raise InputError("subject_surfaces", "a FreeSurfer subject directory with surf/"
                         "{lh,rh}.{white,pial,inflated}", f"{str(d)!r} (missing {missing})",
                         "point at the subject's FreeSurfer folder (NSD: nsddata/freesurfer/subjXX)")
    meshes: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    sulc: dict[str, np.ndarray | None] = {}
    c_ras = np.zeros(3)
    for hemi, short in HEMIS.items():
        for name in ("white", "pial", "inflated"):
            coords, faces, meta = read_geometry(str(surf / f"{short}.{name}"), read_metadata=True)
            meshes.setdefault(name, {})[hemi] = (np.asarray(coords, np.float64),
                                                 np.asarray(faces, np.int64))
            if name == "white" and hemi == "left" and "cras" in meta:
                c_ras = np.asarray(meta["cras"], np.float64)
        counts = {name: len(meshes[name][hemi][0]) for name in meshes}
        if len(set(counts.values())) != 1:
            raise InputError("subject_surfaces", f"{short}.white, .pial and .inflated with the "
                             "same vertices", f"vertex counts {counts}",
                             "use the surfaces of one FreeSurfer reconstruction")
        path = surf / f"{short}.sulc"
        sulc[hemi] = np.asarray(read_morph_data(str(path)), np.float64) if path.is_file() else None
        if sulc[hemi] is not None and len(sulc[hemi]) != counts["white"]:
            raise InputError(f"{short}.sulc", f"{counts['white']} values (one per vertex)",
                             f"{len(sulc[hemi])}", "use the sulc file of the same surfaces")
    if surface_to_world is None:
        surface_to_world = np.eye(4)
        surface_to_world[:3, 3] = c_ras
    surface_to_world = np.asarray(surface_to_world, np.float64)
    if surface_to_world.shape != (4, 4):
        raise InputError("surface_to_world", "a 4 x 4 matrix", f"shape {surface_to_world.shape}",
                         "pass an affine (surface mm -> volume world mm)")
    return SubjectSurfaces(d, meshes["white"], meshes["pial"], meshes["inflated"], sulc,
                           surface_to_world)


def volume_to_subject_surface(values_n: np.ndarray, ijk_n3: np.ndarray, affine: np.ndarray,
                              shape: tuple[int, int, int], surfaces: SubjectSurfaces,
                              categorical: bool = False, min_coverage: float = 0.5,
                              depths: tuple[float, ...] = SURFACE_DEPTHS
                              ) -> dict[str, np.ndarray]:
    """Sample per-voxel values onto a subject's surfaces: hemisphere -> (V,) values, NaN where none.

    Each vertex samples the volume at ``depths`` along its pial -> white segment (trilinear,
    ``nilearn.surface.vol_to_surf``) twice: once the voxels' coverage (1 at voxels with a value)
    and once the values times coverage. Its value is their ratio, the sample-weighted mean of the
    values of the voxels it touches; it is NaN when the coverage is under ``min_coverage``.
    ``categorical`` (labels such as the best layer): each label gets its own coverage and the
    vertex takes the label with the largest (no averaging of labels).

    Parameters
    ----------
    values_n : (n,) one value per voxel (NaN: no value).
    ijk_n3 : (n, 3) voxel indices in a volume of ``shape`` with ``affine``.
    surfaces : from ``load_subject_surfaces``.
    """
    import nibabel
    from nilearn.surface import InMemoryMesh, vol_to_surf

    values_n, ijk_n3 = voxel_values(values_n, ijk_n3, shape)
    if not 0 < min_coverage <= 1:
        raise InputError("min_coverage", "a fraction in (0, 1]", str(min_coverage), "e.g. 0.5")
    ok = np.isfinite(values_n)
    ijk, vals = ijk_n3[ok], values_n[ok]
    labels = np.unique(vals) if categorical else np.empty(0)
    n_frames = 1 + (len(labels) if categorical else 1)
    vol = np.zeros((*tuple(shape), n_frames), np.float32)
    idx = tuple(ijk.T)
    vol[idx + (0,)] = 1.0
    if categorical:
        for c, lab in enumerate(labels):
            vol[idx + (np.full(len(ijk), c + 1),)] = (vals == lab).astype(np.float32)
    else:
        vol[idx + (1,)] = vals
    img = nibabel.Nifti1Image(vol, np.asarray(affine, np.float64))
    out = {}
    for hemi in HEMIS:
        faces = surfaces.pial[hemi][1]
        pial = InMemoryMesh(coordinates=surfaces.world("pial", hemi), faces=faces)
        white = InMemoryMesh(coordinates=surfaces.world("white", hemi), faces=faces)
        with warnings.catch_warnings():  # vertices with every sample off the volume: NaN
            warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
            s_vf = np.asarray(vol_to_surf(img, pial, inner_mesh=white, kind="depth",
                                          depth=list(depths), interpolation="linear"), np.float64)
        cover = s_vf[:, 0]
        has = np.isfinite(cover) & (cover >= min_coverage)
        res = np.full(len(cover), np.nan)
        if categorical:
            res[has] = labels[np.argmax(s_vf[has, 1:], axis=1)] if len(labels) else np.nan
        else:
            res[has] = s_vf[has, 1] / cover[has]
        out[hemi] = res
    return out
