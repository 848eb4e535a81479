"""Visual Coding two-photon natural-scenes responses, read from the experiment NWB files with h5py.

The Brain Observatory ophys files are NWB 1.0 (HDF5) files; pynwb reads only NWB 2, so we read the
layout AllenSDK's ``BrainObservatoryNwbDataSet`` reads (paths relative to the file root):

=============================================================  ===================================
``processing/brain_observatory_pipeline/DfOverF/imaging_plane_1/data``        dF/F, (cells, T)
``processing/brain_observatory_pipeline/DfOverF/imaging_plane_1/timestamps``  seconds, (T,)
``processing/brain_observatory_pipeline/ImageSegmentation/cell_specimen_ids`` (cells,)
``stimulus/presentation/natural_scenes_stimulus/data``                         template frame per
                                                                               trial, -1 = blank
``stimulus/presentation/natural_scenes_stimulus/frame_duration``               (trials, 2) start /
                                                                               end 2P frame index
``stimulus/presentation/natural_scenes_stimulus/timestamps``                   onset in seconds
                                                                               (used when
                                                                               frame_duration is
                                                                               absent)
``general/optophysiology/imaging_plane_1/location``            targeted area ("VISp")
``general/optophysiology/imaging_plane_1/imaging depth``       "175 microns"
``general/subject/genotype``                                   "Cux2-CreERT2/wt;...;Ai93(...)/wt"
``general/experiment_container_id``, ``general/session_id``    ids
=============================================================  ===================================

Trial response (ours; the seed paper used peak dF/F in the 250 ms presentation): with
``t0`` = the 2P timestamp of the trial's first frame, the samples with ``t0 + w0 <= t < t0 + w1``
form the response window and ``t0 + b0 <= t < t0 + b1`` the baseline. ``statistic="mean"``
(default) is the mean dF/F in the window minus the baseline mean; ``"peak"`` the largest
baseline-subtracted dF/F in the window; ``"time_to_peak"`` the time of that peak after onset, in
seconds. Defaults: window (0, 0.25) s, baseline (-0.5, 0) s. Natural scenes are shown back to back,
so the baseline holds the tail of the previous images' responses; pass ``baseline=None`` for the
raw window mean (AllenSDK's ``mean_sweep_response``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import xarray as xr

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.neural._data import make_responses
from cortexalign.neural.allen._meta import (
    BLANK_ID,
    cell_class,
    cortical_layer,
    natural_scene_ids,
    parse_area,
    parse_depth,
    parse_genotype,
)

__all__ = ["load_ophys_natural_scenes", "RESPONSE_STATISTICS", "read_ophys_experiment",
           "OphysExperiment", "NS_PRESENTATION", "DFF", "CELL_IDS", "NS_TEMPLATE"]

PIPELINE = "processing/brain_observatory_pipeline"
DFF = f"{PIPELINE}/DfOverF/imaging_plane_1"
CELL_IDS = f"{PIPELINE}/ImageSegmentation/cell_specimen_ids"
NS_PRESENTATION = ("stimulus/presentation/natural_scenes_stimulus",
                   "stimulus/presentation/natural_scenes")
NS_TEMPLATE = ("stimulus/templates/natural_scenes_image_stack",
               "stimulus/templates/natural_scenes")
PLANE = "general/optophysiology/imaging_plane_1"


def _window_mean(win_ntw, mask_tw, t_tw):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mask_tw, win_ntw, 0.0).sum(-1) / mask_tw.sum(-1)


def _window_peak(win_ntw, mask_tw, t_tw):
    peak = np.where(mask_tw, win_ntw, -np.inf).max(-1)
    return np.where(np.isneginf(peak), np.nan, peak)  # a trial with no samples has no peak


def _time_to_peak(win_ntw, mask_tw, t_tw):
    k = np.argmax(np.where(mask_tw, win_ntw, -np.inf), axis=-1)  # (n, trials)
    ttp = np.take_along_axis(np.broadcast_to(t_tw, win_ntw.shape), k[..., None], -1)[..., 0]
    empty = np.isnan(win_ntw).all(-1) | ~mask_tw.any(-1)
    return np.where(empty, np.nan, ttp)


RESPONSE_STATISTICS: dict[str, Callable] = {
    "mean": _window_mean, "peak": _window_peak, "time_to_peak": _time_to_peak}
"""``f(win_ntw, mask_tw, t_tw) -> (n, trials)``: baseline-subtracted window samples (cells x trials
x samples), which samples belong to each trial's window, and their time after onset (s)."""


@dataclass(frozen=True)
class OphysExperiment:
    """What the loader needs from one experiment file (arrays in file order)."""

    path: Path
    dff_nT: np.ndarray
    timestamps_T: np.ndarray
    cell_ids: np.ndarray
    frames: np.ndarray          # (trials,) template frame, -1 = blank
    onsets: np.ndarray          # (trials,) onset time in seconds
    n_template: int | None      # images in the file's template (None when absent)
    meta: dict


def _str(f: h5py.File, key: str, default: str = "unknown") -> str:
    if key not in f:
        return default
    v = f[key][()]
    if isinstance(v, np.ndarray):
        v = v.ravel()[0] if v.size else default
    return v.decode() if isinstance(v, bytes) else str(v)


def _require(f: h5py.File, key: str, path: Path, what: str) -> h5py.Dataset:
    if key not in f:
        raise InputError("path", f"an Allen Brain Observatory ophys NWB file with {what} at {key!r}",
                         f"{str(path)!r} without it", "point at an ophys_experiment NWB file from "
                         "the Brain Observatory cache (ophys_experiment_data/<id>.nwb)")
    return f[key]


def read_ophys_experiment(path: str | Path) -> OphysExperiment:
    """Read dF/F, cell ids, the natural-scenes presentations and metadata of one experiment file."""
    path = Path(path)
    if not path.is_file():
        raise InputError("path", "an existing ophys experiment NWB file", repr(str(path)),
                         "check the path (see the module docstring for the cache layout)")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise InputError("path", "an HDF5 (NWB) file", f"{str(path)!r} ({err})",
                         "download the file again; it is not readable HDF5") from None
    with f:
        group = next((f[k] for k in NS_PRESENTATION if k in f), None)
        if group is None:
            present = sorted(f["stimulus/presentation"].keys()) if "stimulus/presentation" in f else []
            raise InputError("path", "an experiment that showed the natural_scenes stimulus",
                             f"{path.name} with stimuli {present}", "natural scenes are shown in "
                             "three_session_B; use the session B experiment of the container")
        dff = _require(f, f"{DFF}/data", path, "dF/F traces")[()].astype(np.float64)
        ts = _require(f, f"{DFF}/timestamps", path, "dF/F timestamps")[()].astype(np.float64).ravel()
        cells = _require(f, CELL_IDS, path, "cell specimen ids")[()].ravel()
        frames = np.asarray(group["data"][()]).ravel().astype(np.int64)
        if "frame_duration" in group:
            start = np.asarray(group["frame_duration"][()])[:, 0].astype(np.int64)
            if start.min() < 0 or start.max() >= len(ts):
                raise InputError("frame_duration", f"2P frame indices in [0, {len(ts)})",
                                 f"[{start.min()}, {start.max()}] in {path.name}",
                                 "the stimulus table does not belong to these traces")
            onsets = ts[start]
        elif "timestamps" in group:
            onsets = np.asarray(group["timestamps"][()], dtype=np.float64).ravel()
        else:
            raise InputError("natural_scenes_stimulus", "frame_duration or timestamps",
                             f"neither in {path.name}", "use an unmodified Brain Observatory file")
        tmpl = next((f[k] for k in NS_TEMPLATE if k in f), None)
        n_template = None
        if tmpl is not None:
            n_template = int((tmpl["data"] if isinstance(tmpl, h5py.Group) else tmpl).shape[0])
        cre, reporter = parse_genotype(_str(f, "general/subject/genotype"))
        meta = {"area": parse_area(_str(f, f"{PLANE}/location")),
                "depth": parse_depth(_str(f, f"{PLANE}/imaging depth", "nan")),
                "cre_line": cre, "reporter": reporter,
                "experiment_container": _str(f, "general/experiment_container_id"),
                "ophys_experiment_id": _str(f, "general/session_id"),
                "subject": _str(f, "general/specimen_name", _str(f, "general/subject/subject_id"))}
    if dff.ndim != 2 or dff.shape != (len(cells), len(ts)):
        raise InputError("DfOverF data", f"(cells, samples) = ({len(cells)}, {len(ts)})",
                         f"shape {dff.shape} in {path.name}", "use an unmodified file")
    if len(frames) != len(onsets):
        raise InputError("natural_scenes_stimulus", "one onset per presented frame",
                         f"{len(frames)} frames vs {len(onsets)} onsets", "use an unmodified file")
    return OphysExperiment(path, dff, ts, cells, frames, onsets, n_template, meta)


def _trial_responses(exp: OphysExperiment, window, baseline, statistic) -> np.ndarray:
    """(cells, trials) responses: vectorised over cells and trials via padded sample windows."""
    ts, onsets = exp.timestamps_T, exp.onsets
    lo = np.searchsorted(ts, onsets + window[0], "left")
    hi = np.searchsorted(ts, onsets + window[1], "left")
    width = int((hi - lo).max(initial=0))
    if width == 0:
        raise InputError("window", "a window holding at least one 2P sample",
                         f"{window} s", "widen the window (the 2P rate is about 30 Hz)")
    idx_tw = lo[:, None] + np.arange(width)
    mask_tw = idx_tw < hi[:, None]
    idx_tw = np.minimum(idx_tw, len(ts) - 1)
    win_ntw = exp.dff_nT[:, idx_tw]
    t_tw = ts[idx_tw] - onsets[:, None]
    if baseline is not None:
        b_lo = np.searchsorted(ts, onsets + baseline[0], "left")
        b_hi = np.searchsorted(ts, onsets + baseline[1], "left")
        csum = np.concatenate([np.zeros((len(exp.dff_nT), 1)), np.cumsum(exp.dff_nT, 1)], 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            base_nt = (csum[:, b_hi] - csum[:, b_lo]) / (b_hi - b_lo)
        base_nt[:, b_hi <= b_lo] = np.nan  # trials whose baseline falls before the recording
        win_ntw = win_ntw - base_nt[:, :, None]
    return RESPONSE_STATISTICS[statistic](win_ntw, mask_tw, t_tw)


def _by_stimulus(resp_nt: np.ndarray, frames: np.ndarray, stim_frames: np.ndarray) -> np.ndarray:
    """(stimulus, cell, repetition) array, repetitions in presentation order, NaN-padded."""
    counts = np.array([(frames == fr).sum() for fr in stim_frames])
    out = np.full((len(stim_frames), resp_nt.shape[0], int(counts.max())), np.nan)
    for k, fr in enumerate(stim_frames):
        trials = np.flatnonzero(frames == fr)  # the file's (chronological) order
        out[k, :, : len(trials)] = resp_nt[:, trials]
    return out


def load_ophys_natural_scenes(paths: str | Path | Sequence[str | Path], *,
                              window: tuple[float, float] = (0.0, 0.25),
                              baseline: tuple[float, float] | None = (-0.5, 0.0),
                              statistic: str = "mean", include_blank: bool = False,
                              ) -> xr.DataArray:
    """Natural-scene trial responses of every cell in one or more two-photon experiments.

    Parameters
    ----------
    paths : one ophys experiment NWB file or several (cells are concatenated).
    window : response window (start, end) in seconds after onset.
    baseline : baseline window in seconds relative to onset, subtracted per trial; None for none.
    statistic : one of ``RESPONSE_STATISTICS`` ("mean", "peak", "time_to_peak").
    include_blank : add the grey screen (frame -1) as a stimulus ``"blank"`` (last).

    Returns
    -------
    (stimulus, neuroid, repetition) DataArray, stimulus ids ``ns000``..``ns117`` [+ ``blank``],
    NaN where a stimulus has fewer repetitions. Neuroid coords: ``cell_specimen_id``, ``area``,
    ``cre_line``, ``reporter``, ``cell_class``, ``depth`` (um), ``cortical_layer`` (L2/3, L4, L5,
    L6 from the Cre line and depth: ``cortical_layer``), ``experiment_container``,
    ``ophys_experiment_id``, ``subject``. Cells whose dF/F is all NaN are dropped, with a warning;
    ``attrs["n_dropped_all_nan"]`` and ``attrs["dropped_cell_specimen_ids"]`` record them.
    """
    if statistic not in RESPONSE_STATISTICS:
        raise UnknownNameError("response statistic", statistic, RESPONSE_STATISTICS)
    for name, w in (("window", window), ("baseline", baseline)):
        if w is not None and not (len(w) == 2 and float(w[0]) < float(w[1])):
            raise InputError(name, "(start, end) in seconds with start < end", repr(w),
                             "e.g. window=(0.0, 0.25), baseline=(-0.5, 0.0)")
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise InputError("paths", "at least one experiment file", "an empty list", "pass a path")
    blocks, coords, dropped = [], {}, []
    n_images = None
    for p in paths:
        exp = read_ophys_experiment(p)
        n_exp = _check_frames(exp)
        if n_images is not None and n_exp != n_images:
            raise InputError("paths", f"experiments showing the same {n_images} images",
                             f"{Path(p).name} shows {n_exp}", "load experiments separately")
        n_images = n_exp
        stim_frames = np.arange(n_images).tolist() + ([-1] if include_blank else [])
        if include_blank and not (exp.frames == -1).any():
            raise InputError("include_blank", f"blank trials (frame -1) in {Path(p).name}",
                             "none", "pass include_blank=False")
        dead = np.isnan(exp.dff_nT).all(axis=1)
        dropped += exp.cell_ids[dead].tolist()
        keep = ~dead
        exp = OphysExperiment(exp.path, exp.dff_nT[keep], exp.timestamps_T, exp.cell_ids[keep],
                              exp.frames, exp.onsets, exp.n_template, exp.meta)
        resp_nt = _trial_responses(exp, window, baseline, statistic)
        blocks.append(_by_stimulus(resp_nt, exp.frames, np.asarray(stim_frames)))
        n = int(keep.sum())
        cols = dict(exp.meta, cell_specimen_id=exp.cell_ids.astype(str),
                    cell_class=cell_class(exp.meta["cre_line"]),
                    cortical_layer=cortical_layer(exp.meta["cre_line"], exp.meta["depth"]))
        for key, val in cols.items():
            coords.setdefault(key, []).extend(np.broadcast_to(np.asarray(val), (n,)).tolist())
    if dropped:
        warnings.warn(f"dropped {len(dropped)} cell(s) whose dF/F trace is all NaN "
                      f"(cell_specimen_ids {dropped[:10]}{'...' if len(dropped) > 10 else ''})",
                      UserWarning, stacklevel=2)
    n_rep = max(b.shape[2] for b in blocks)
    values = np.concatenate([np.pad(b, ((0, 0), (0, 0), (0, n_rep - b.shape[2])),
                                    constant_values=np.nan) for b in blocks], axis=1)
    if values.shape[1] == 0:
        raise InputError("paths", "at least one cell with a finite dF/F trace",
                         f"{len(dropped)} cells, all NaN", "check the files")
    ids = coords["cell_specimen_id"]
    if len(set(ids)) != len(ids):
        raise InputError("paths", "each cell in one experiment only", "a cell_specimen_id in two "
                         "files", "load one natural-scenes session per container")
    da = make_responses(values, natural_scene_ids(n_images, include_blank), ids,
                        {k: np.asarray(v) for k, v in coords.items()},
                        name=f"allen_ophys_natural_scenes_{statistic}", allow_nan=True)
    da.attrs.update(n_dropped_all_nan=len(dropped),
                    dropped_cell_specimen_ids=np.asarray(dropped, dtype=str),
                    statistic=statistic, window_s=np.asarray(window, dtype=float),
                    baseline_s=np.asarray(baseline if baseline is not None else [], dtype=float),
                    blank_id=BLANK_ID if include_blank else "")
    return da


def _check_frames(exp: OphysExperiment) -> int:
    """The number of images; the trials' frames must index the template and cover it."""
    shown = exp.frames[exp.frames >= 0]
    n = exp.n_template if exp.n_template is not None else int(shown.max(initial=-1)) + 1
    bad = exp.frames[(exp.frames < -1) | (exp.frames >= n)]
    if bad.size:
        raise InputError("natural_scenes_stimulus/data", f"template frames in [-1, {n - 1}] "
                         f"(the template holds {n} images)", f"frame {int(bad[0])} in "
                         f"{exp.path.name}", "the presentations and the template disagree; use "
                         "an unmodified file")
    missing = sorted(set(range(n)) - set(shown.tolist()))
    if missing:
        raise InputError("natural_scenes_stimulus/data", f"every one of the {n} template images "
                         "presented at least once", f"images never shown: "
                         f"{natural_scene_ids(n)[missing[0]]!r}... ({len(missing)})",
                         "the presentations and the template disagree; use an unmodified file")
    return n
