"""Writers of the Brain Observatory cache layout: ophys experiment NWB files and the tables.

The two-photon files are NWB 1.0 (HDF5), written at the paths AllenSDK's
``BrainObservatoryNwbDataSet`` and ``cortexalign.neural.allen.read_ophys_experiment`` read (see
that module's table). The cache root also gets the JSON tables AllenSDK's
``BrainObservatoryCache`` keeps beside ``manifest.json`` (``experiment_containers.json``,
``ophys_experiments.json``, ``cell_specimens.json``), with the fields its getters return.

Timing follows the survey: natural scenes are shown back to back for 250 ms each, in three
epochs, with a blank (frame -1) now and then; the 2P rate is 30 Hz; a trial's response is a
GCaMP6f-like transient (rise 50 ms, decay 150 ms) starting at onset, so part of it falls into
the next trials' baselines, as in the real recordings.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from scipy.signal import fftconvolve

__all__ = ["OphysFile", "presentation_order", "write_ophys_nwb", "write_json", "FS", "TRIAL_S"]

FS = 30.0             # 2P frames per second
TRIAL_S = 0.25        # one natural scene, seconds
EPOCH_GAP_S = 30.0    # between the three natural-scene epochs
BLANK_EVERY = 100     # one blank per this many scenes (the survey: about 1 in 118)
PIPE = "processing/brain_observatory_pipeline"
PLANE = "general/optophysiology/imaging_plane_1"


@dataclass(frozen=True)
class OphysFile:
    """One experiment's identity and metadata as the NWB file states it."""

    experiment_id: int
    container_id: int
    area: str
    depth: int
    genotype: str
    specimen: str


def presentation_order(n_images: int, trials: int, rng: np.random.Generator
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(frames, onsets_s): every image ``trials`` times in random order, blanks interleaved,
    split into three epochs with gaps; onsets in seconds from the start of the recording."""
    frames = rng.permutation(np.repeat(np.arange(n_images), trials))
    n_blank = max(1, len(frames) // BLANK_EVERY)
    at = np.sort(rng.choice(len(frames), n_blank, replace=False))
    frames = np.insert(frames, at, -1)
    epoch = np.minimum(3 * np.arange(len(frames)) // len(frames), 2)
    onsets = 10.0 + TRIAL_S * np.arange(len(frames)) + EPOCH_GAP_S * epoch
    return frames.astype(np.int64), onsets


def _kernel() -> np.ndarray:
    t = np.arange(int(1.0 * FS)) / FS
    k = (1 - np.exp(-t / 0.05)) * np.exp(-t / 0.15)
    return k / k[: int(TRIAL_S * FS)].mean()  # a response of 1 averages 1 over its window


def _dff(amp_nt: np.ndarray, onsets: np.ndarray, n_samples: int, noise: float,
         rng: np.random.Generator) -> np.ndarray:
    """(n, T) dF/F: each trial's amplitude times the transient at its onset, plus noise."""
    impulses = np.zeros((amp_nt.shape[0], n_samples))
    idx = np.ceil(onsets * FS).astype(np.int64)
    np.add.at(impulses, (slice(None), idx), amp_nt)
    trace = fftconvolve(impulses, _kernel()[None], axes=1)[:, :n_samples]
    return trace + noise * rng.normal(size=trace.shape)


def write_ophys_nwb(path: Path, meta: OphysFile, frames: np.ndarray, onsets: np.ndarray,
                    amp_nt: np.ndarray, cell_ids: np.ndarray, template: np.ndarray | None,
                    noise: float, rng: np.random.Generator) -> None:
    """Write one three_session_B experiment (atomically: a temp file renamed into place).

    ``amp_nt``: (cells, trials) response amplitude of each trial (dF/F averaged over the 250 ms
    window); ``template``: (n, h, w) uint8 scenes stored in the file, or None to leave it out.
    """
    n_samples = int(np.ceil((onsets[-1] + 2.0) * FS))
    ts = np.arange(n_samples) / FS
    dff = _dff(amp_nt, onsets, n_samples, noise, rng).astype(np.float32)
    start = np.searchsorted(ts, onsets - 1e-9)
    end = np.searchsorted(ts, onsets + TRIAL_S - 1e-9)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".nwb.tmp")
    os.close(fd)
    with h5py.File(tmp, "w") as f:
        f[f"{PIPE}/DfOverF/imaging_plane_1/data"] = dff
        f[f"{PIPE}/DfOverF/imaging_plane_1/timestamps"] = ts
        f[f"{PIPE}/ImageSegmentation/cell_specimen_ids"] = cell_ids.astype(np.int64)
        g = f.create_group("stimulus/presentation/natural_scenes_stimulus")
        g["data"] = frames.astype(np.float32)
        g["frame_duration"] = np.stack([start, end], 1).astype(np.float64)
        g["timestamps"] = onsets
        if template is not None:
            f.create_dataset("stimulus/templates/natural_scenes_image_stack/data", data=template,
                             compression="gzip", compression_opts=4, chunks=(1,) + template.shape[1:])
        f[f"{PLANE}/location"] = f"area: {meta.area}, depth: {meta.depth} microns".encode()
        f[f"{PLANE}/imaging depth"] = f"{meta.depth} microns".encode()
        f["general/subject/genotype"] = meta.genotype.encode()
        f["general/experiment_container_id"] = str(meta.container_id).encode()
        f["general/session_id"] = str(meta.experiment_id).encode()
        f["general/specimen_name"] = meta.specimen.encode()
        f["general/session_type"] = b"three_session_B"
    os.replace(tmp, path)


def write_json(path: Path, obj: object) -> None:
    """``json.dump`` to ``path`` atomically."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json.tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)
