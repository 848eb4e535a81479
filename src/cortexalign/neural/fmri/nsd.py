"""The Natural Scenes Dataset (Allen et al. 2022): single-trial betas of one subject as responses.

Paths are relative to the NSD root (the layout of the public S3 bucket)::

    nsddata/experiments/nsd/nsd_expdesign.mat            masterordering (30000,), subjectim (8, 10000)
    nsddata/ppdata/subj01/func1pt8mm/roi/<atlas>.nii.gz  ROI label volumes
    nsddata/freesurfer/subj01/label/<atlas>.mgz.ctab     their label tables
    nsddata/freesurfer/fsaverage/label/lh.<atlas>.mgz    fsaverage ROI labels (+ <atlas>.mgz.ctab)
    nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR/
        betas_session01.nii.gz   (x, y, z, 750) int16, percent signal change x 300
        betas_session01.hdf5     dataset 'betas' (750, z, y, x), the same values
        ncsnr.nii.gz             (x, y, z) noise-ceiling SNR
    nsddata_betas/ppdata/subj01/fsaverage/betas_fithrf_GLMdenoise_RR/
        lh.betas_session01.mgh   (163842, 1, 1, 750), rh.* likewise; lh.ncsnr.mgh

Processing (the seed's, METHODS.md section 2): betas / 300 (percent signal change), z-scored per
voxel within each session (NSD's convention; the seed says per run), averaged over the repetitions
of each image. Trial t of the experiment (0-based over all sessions, 750 per session) showed the
73k image ``subjectim[subject - 1, masterordering[t] - 1]`` (1-based); stimulus ids are
``nsd%05d`` of that 1-based 73k id. Voxels with zero variance in any session are excluded (warned,
counted in ``attrs['excluded_zero_variance']``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.neural._data import make_responses
from cortexalign.neural.fmri._volume import (
    average_repetitions,
    check_same_space,
    drop_constant_voxels,
    load_image,
    zscore_trials,
)
from cortexalign.neural.fmri.ceiling import ncsnr_from_trials, noise_ceiling_from_ncsnr
from cortexalign.neural.fmri.rois import read_ctab, select_roi_voxels

__all__ = ["TRIALS_PER_SESSION", "NSD_SCALE", "read_nsd_design", "load_nsd", "nsd_stimulus_id"]

TRIALS_PER_SESSION = 750
NSD_SCALE = 300.0  # int16 betas are percent signal change x 300
FORMATS = ("nifti", "hdf5", "mgh")


def nsd_stimulus_id(nsd_id: int) -> str:
    """The stimulus id of a 1-based 73k image id."""
    return f"nsd{int(nsd_id):05d}"


def read_nsd_design(path: str | Path, subject: int) -> np.ndarray:
    """(trials,) 1-based 73k image id of every trial of ``subject``, in experiment order.

    ``path``: NSD's ``nsd_expdesign.mat``, or for small data a ``.csv`` with columns
    ``trial,nsd_id`` (trial 0-based) or an ``.npz`` with an array ``nsd_id`` in trial order.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("design", "the NSD design file (nsd_expdesign.mat, .csv or .npz)",
                         repr(str(path)), "pass design=PATH or place it in nsddata/experiments/nsd")
    if path.suffix == ".mat":
        from scipy.io import loadmat  # MATLAB v5 arrays; no code is executed

        d = loadmat(str(path))
        order = np.asarray(d["masterordering"]).ravel().astype(np.int64)
        return np.asarray(d["subjectim"])[subject - 1, order - 1].astype(np.int64)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as d:
            return np.asarray(d["nsd_id"]).astype(np.int64)
    if path.suffix == ".csv":
        table = np.genfromtxt(path, delimiter=",", names=True, dtype=np.int64)
        if table.dtype.names is None or not {"trial", "nsd_id"} <= set(table.dtype.names):
            raise InputError("design", "a CSV with columns trial,nsd_id", f"columns {table.dtype.names}",
                             "write one row per trial")
        out = np.zeros(int(table["trial"].max()) + 1, np.int64)
        out[table["trial"]] = table["nsd_id"]
        return out
    raise InputError("design", "a .mat, .csv or .npz file", repr(path.suffix), "convert the design")


def _subj(subject: int) -> str:
    if not 1 <= int(subject) <= 8:
        raise InputError("subject", "an NSD subject number 1-8", str(subject), "use e.g. subject=1")
    return f"subj{int(subject):02d}"


def _volume_source(root: Path, subj: str, space: str, betas_dir: Path, file_format: str,
                   rois: Sequence[str], regions, within: str | None, sessions: Sequence[int]):
    first = betas_dir / f"betas_session{sessions[0]:02d}.{'nii.gz' if file_format == 'nifti' else 'hdf5'}"
    ref = load_image(first, "betas") if file_format == "nifti" else None
    grid = tuple(ref.shape[:3]) if ref is not None else _hdf5_grid(first)
    roi_dir = root / "nsddata" / "ppdata" / subj / space / "roi"
    label_dir = root / "nsddata" / "freesurfer" / subj / "label"
    vols, tables = {}, {}
    for atlas in list(rois) + ([within] if within else []):
        img = load_image(roi_dir / f"{atlas}.nii.gz", f"rois[{atlas!r}]")
        if ref is not None:
            check_same_space(img, ref, f"ROI {atlas!r}", f"the betas ({first.name})")
        elif tuple(img.shape[:3]) != grid:  # hdf5 betas carry no affine: the grid must match
            raise InputError(f"ROI {atlas!r}", f"a volume on the grid of the betas ({first.name}: "
                             f"(x, y, z) = {grid})", f"shape {tuple(img.shape)}",
                             "use the ROI files of the betas' space (func1pt8mm vs func1mm)")
        affine = np.asarray(img.affine)
        vols[atlas] = np.asarray(img.dataobj)
        ctab = label_dir / f"{atlas}.mgz.ctab"
        tables[atlas] = read_ctab(ctab) if ctab.is_file() else {}
    mask = vols.pop(within) > 0 if within else None
    sel = select_roi_voxels({a: vols[a] for a in rois}, tables, mask, regions)
    i, j, k = sel.mask

    def read(session: int) -> np.ndarray:
        if file_format == "nifti":
            img = load_image(betas_dir / f"betas_session{session:02d}.nii.gz", "betas")
            if ref is not None and session != sessions[0]:
                check_same_space(img, ref, f"betas session {session}", "session 1")
            return np.asarray(img.dataobj)[i, j, k, :]
        return _read_hdf5_betas(betas_dir / f"betas_session{session:02d}.hdf5", grid, (i, j, k))

    def ncsnr() -> np.ndarray | None:
        path = betas_dir / "ncsnr.nii.gz"
        return np.asarray(load_image(path, "ncsnr").dataobj, np.float64)[i, j, k] if path.is_file() else None

    coords = {"x": i, "y": j, "z": k, "roi": sel.roi_n,
              **{f"roi_{a}": v for a, v in sel.labels.items()}}
    ids = [f"{subj}_{a}_{b}_{c}" for a, b, c in sel.ijk_n3]
    attrs = {"affine": (np.asarray(ref.affine) if ref is not None else affine).tolist(),
             "shape": list(grid)}
    fs_dir = root / "nsddata" / "freesurfer" / subj
    if all((fs_dir / "surf" / f"{h}.{k}").is_file() for h in ("lh", "rh")
           for k in ("white", "pial", "inflated")):  # the subject's own surfaces, for figures
        attrs["freesurfer"] = str(fs_dir)
    return ids, coords, read, ncsnr, attrs


def _hdf5_grid(path: Path) -> tuple[int, int, int]:
    """(x, y, z) grid of an NSD hdf5 betas file (dataset ``betas`` stored (trials, z, y, x))."""
    import h5py

    if not path.is_file():
        raise InputError("betas", "an existing hdf5 betas file", repr(str(path)), "check the root")
    with h5py.File(path, "r") as f:
        if "betas" not in f or f["betas"].ndim != 4:
            raise InputError("betas", "an hdf5 file with a 4-D dataset 'betas' (trials, z, y, x)",
                             f"{path.name} with {sorted(f.keys())}", "use NSD's betas_sessionNN.hdf5")
        _, z, y, x = f["betas"].shape
    return x, y, z


def _read_hdf5_betas(path: Path, grid: tuple[int, int, int], ijk: tuple[np.ndarray, ...],
                     trials_per_read: int = 50) -> np.ndarray:
    """(n, trials) betas of the selected voxels, read ``trials_per_read`` volumes at a time (a
    whole NSD session is ~1 GB as int16; this keeps ~70 MB in memory)."""
    import h5py

    if not path.is_file():
        raise InputError("betas", "an existing hdf5 betas file", repr(str(path)), "check the root")
    i, j, k = ijk
    with h5py.File(path, "r") as f:
        data = f["betas"]
        if tuple(data.shape[1:][::-1]) != grid:
            raise InputError(f"betas {path.name}", f"volumes on the grid of the first session "
                             f"((x, y, z) = {grid})", f"(x, y, z) = {tuple(data.shape[1:][::-1])}",
                             "load sessions of one space")
        out = np.empty((len(i), data.shape[0]), data.dtype)
        for t0 in range(0, data.shape[0], trials_per_read):
            out[:, t0:t0 + trials_per_read] = data[t0:t0 + trials_per_read][:, k, j, i].T
    return out


def _surface_source(root: Path, subj: str, betas_dir: Path, rois: Sequence[str], regions,
                    within: str | None):
    label_dir = root / "nsddata" / "freesurfer" / "fsaverage" / "label"
    per_hemi, n_vertices = [], {}
    for hemi in ("lh", "rh"):
        vols, tables = {}, {}
        for atlas in list(rois) + ([within] if within else []):
            vols[atlas] = np.asarray(load_image(label_dir / f"{hemi}.{atlas}.mgz",
                                                f"rois[{atlas!r}]").dataobj).reshape(-1, 1, 1)
            n_vertices[hemi] = len(vols[atlas])
            ctab = label_dir / f"{atlas}.mgz.ctab"
            tables[atlas] = read_ctab(ctab) if ctab.is_file() else {}
        mask = vols.pop(within) > 0 if within else None
        per_hemi.append((hemi, select_roi_voxels({a: vols[a] for a in rois}, tables, mask, regions)))

    def read(session: int) -> np.ndarray:
        parts = []
        for hemi, sel in per_hemi:
            img = load_image(betas_dir / f"{hemi}.betas_session{session:02d}.mgh", "betas")
            if img.shape[0] != n_vertices[hemi]:
                raise InputError(f"ROI labels ({hemi})", f"one label per vertex of the betas "
                                 f"({hemi}.betas_session{session:02d}.mgh: {img.shape[0]} vertices)",
                                 f"{n_vertices[hemi]} labels", "use fsaverage labels with fsaverage "
                                 "betas (163,842 vertices per hemisphere)")
            parts.append(np.asarray(img.dataobj).reshape(img.shape[0], -1)[sel.ijk_n3[:, 0]])
        return np.concatenate(parts)

    def ncsnr() -> np.ndarray | None:
        paths = [betas_dir / f"{h}.ncsnr.mgh" for h, _ in per_hemi]
        if not all(p.is_file() for p in paths):
            return None
        return np.concatenate([np.asarray(load_image(p, "ncsnr").dataobj).ravel()[s.ijk_n3[:, 0]]
                               for p, (_, s) in zip(paths, per_hemi, strict=True)]).astype(np.float64)

    coords = {"hemi": np.concatenate([[h] * len(s.ijk_n3) for h, s in per_hemi]),
              "vertex": np.concatenate([s.ijk_n3[:, 0] for _, s in per_hemi]),
              "roi": np.concatenate([s.roi_n for _, s in per_hemi])}
    ids = [f"{subj}_{h}_{v}" for h, v in zip(coords["hemi"], coords["vertex"], strict=True)]
    return ids, coords, read, ncsnr, {}


def load_nsd(root: str | Path, subject: int = 1, sessions: Sequence[int] = (1,),
             rois: Sequence[str] = ("prf-visualrois",), regions: Mapping[str, list[str]] | None = None,
             within: str | None = "nsdgeneral", space: str = "func1pt8mm",
             betas: str = "betas_fithrf_GLMdenoise_RR", file_format: str = "nifti",
             design: str | Path | None = None, average: bool = True) -> xr.DataArray:
    """NSD responses of one subject: (stimulus, voxel) z-scored betas averaged over repetitions.

    Parameters
    ----------
    root : the NSD root (layout in the module docstring).
    subject : 1-8. sessions : 1-based session numbers to load.
    rois : atlases whose labelled voxels are kept (see ``rois.NSD_ATLASES``).
    regions : atlas -> label names to keep (e.g. ``{"floc-faces": ["FFA-1", "FFA-2"]}``).
    within : an atlas the voxels must also lie in (``nsdgeneral``), or None.
    space : ``func1pt8mm``, ``func1mm`` (volumes) or ``fsaverage`` (surface, ``file_format='mgh'``).
    file_format : ``nifti`` or ``hdf5`` for volumes, ``mgh`` for fsaverage.
    design : the trial -> image file (default: ``nsddata/experiments/nsd/nsd_expdesign.mat``).
    average : average repetitions (dims (stimulus, neuroid)); False keeps them as a
        ``repetition`` dim, NaN-padded for images shown fewer times.

    Returns
    -------
    DataArray with neuroid coords ``roi``, ``roi_<atlas>``, ``x``, ``y``, ``z`` (voxel indices)
    or ``hemi``, ``vertex``; ``subject``, ``ncsnr`` and ``noise_ceiling`` (percent; from NSD's
    ncsnr file when present, else from the loaded repetitions). ``attrs``: ``space``, ``betas``,
    ``sessions``, ``n_repetitions``, ``excluded_zero_variance`` and, for volumes, the grid's
    ``affine`` and ``shape`` (subject space, not MNI) and, when ``nsddata/freesurfer/subjXX/surf``
    holds the subject's surfaces, ``freesurfer`` (that directory, for surface figures).
    """
    if file_format not in FORMATS:
        raise UnknownNameError("NSD file format", file_format, FORMATS)
    if (space == "fsaverage") != (file_format == "mgh"):
        raise InputError("file_format", "'mgh' with space='fsaverage', 'nifti'/'hdf5' otherwise",
                         f"{file_format!r} with space={space!r}", "match the format to the space")
    root, subj = Path(root), _subj(subject)
    sessions = [int(s) for s in sessions]
    if not sessions:
        raise InputError("sessions", "at least one session number", "none", "e.g. sessions=[1]")
    design = Path(design) if design else root / "nsddata" / "experiments" / "nsd" / "nsd_expdesign.mat"
    nsd_id_t = read_nsd_design(design, subject)
    betas_dir = root / "nsddata_betas" / "ppdata" / subj / space / betas
    if space == "fsaverage":
        ids, coords, read, read_ncsnr, attrs = _surface_source(root, subj, betas_dir, rois,
                                                               regions, within)
    else:
        ids, coords, read, read_ncsnr, attrs = _volume_source(root, subj, space, betas_dir,
                                                              file_format, rois, regions, within,
                                                              sessions)
    z_parts, img_parts, constant = [], [], np.zeros(len(ids), bool)
    for s in sessions:
        raw_nt = read(s)
        start = (s - 1) * TRIALS_PER_SESSION
        trials = nsd_id_t[start:start + raw_nt.shape[1]]
        if raw_nt.shape[1] != TRIALS_PER_SESSION or len(trials) != raw_nt.shape[1]:
            raise InputError(f"betas session {s}", f"{TRIALS_PER_SESSION} trials, all in the design "
                             f"({len(nsd_id_t)} trials listed)", f"{raw_nt.shape[1]} trials "
                             f"({len(trials)} of them in the design)",
                             "use the design file of this subject and complete session files")
        z_nt, const_n = zscore_trials(raw_nt.astype(np.float64) / NSD_SCALE)
        z_parts.append(z_nt)
        img_parts.append(trials)
        constant |= const_n
    keep = drop_constant_voxels(constant, f"NSD {subj} betas")
    z_nt, image_t = np.concatenate(z_parts, 1)[keep], np.concatenate(img_parts)
    ncsnr_n = read_ncsnr()
    ncsnr_n = ncsnr_n[keep] if ncsnr_n is not None else (
        ncsnr_from_trials(z_nt, image_t) if len(np.unique(image_t)) < len(image_t) else
        np.full(int(keep.sum()), np.nan))
    mean_sn, images, n_reps = average_repetitions(z_nt, image_t)
    values = mean_sn if average else _stack_repetitions(z_nt, image_t, images, n_reps)
    coords = {k: np.asarray(v)[keep] for k, v in coords.items()}
    coords.update(subject=np.full(int(keep.sum()), subj), ncsnr=ncsnr_n,
                  noise_ceiling=noise_ceiling_from_ncsnr(ncsnr_n, n_reps))
    da = make_responses(values, [nsd_stimulus_id(i) for i in images],
                        [v for v, k in zip(ids, keep, strict=True) if k], coords,
                        name=f"nsd_{subj}", allow_nan=not average)
    da.attrs.update(excluded_zero_variance=int((~keep).sum()), space=space, betas=betas,
                    sessions=sessions, n_repetitions=n_reps.tolist(), **attrs)
    return da


def _stack_repetitions(z_nt: np.ndarray, image_t: np.ndarray, images: list, n_reps: np.ndarray
                       ) -> np.ndarray:
    out = np.full((len(images), z_nt.shape[0], int(n_reps.max())), np.nan)
    pos: dict = {im: i for i, im in enumerate(images)}
    seen = np.zeros(len(images), np.int64)
    for t, im in enumerate(image_t):
        i = pos[im]
        out[i, :, seen[i]] = z_nt[:, t]
        seen[i] += 1
    return out
