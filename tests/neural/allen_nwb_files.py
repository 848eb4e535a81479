"""Writers of small Allen Brain Observatory files with planted responses (nothing downloads).

``write_ophys``: the NWB 1.0 layout of a two-photon experiment (h5py; pynwb reads NWB 2 only).
``write_ecephys``: a Visual Coding Neuropixels session in NWB 2, written with pynwb itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import h5py
import numpy as np
import pytest

FS = 30.0                      # 2P sampling rate (Hz)
SHAPE = np.array([0.0, 0.5, 1.0, 0.6, 0.3, 0.2, 0.1, 0.05])  # 8 samples = the 0-250 ms window
GAP = 40                       # samples between onsets: baselines never overlap windows


@dataclass
class PlantedOphys:
    path: Path
    frames: np.ndarray          # (trials,) presented template frame, -1 blank
    amp_nt: np.ndarray          # (cells, trials) planted amplitude (NaN row = dead cell)
    cell_ids: np.ndarray
    offset_n: np.ndarray        # per-cell constant dF/F level outside the windows
    template: np.ndarray        # (n_images, h, w) uint8


def _ophys_file(path: Path, frames, amp_nt, cell_ids, offset_n, template, meta,
                with_ns: bool = True) -> None:
    n_trials = len(frames)
    starts = 30 + GAP * np.arange(n_trials)
    T = int(starts[-1] + GAP + 30)
    dff = np.repeat(offset_n[:, None], T, axis=1).astype(np.float64)
    for k, s in enumerate(starts):
        dff[:, s:s + len(SHAPE)] += amp_nt[:, k:k + 1] * SHAPE
    dff[np.isnan(amp_nt).all(1)] = np.nan
    ts = 7.0 + np.arange(T) / FS
    pipe = "processing/brain_observatory_pipeline"
    with h5py.File(path, "w") as f:
        f[f"{pipe}/DfOverF/imaging_plane_1/data"] = dff.astype(np.float32)
        f[f"{pipe}/DfOverF/imaging_plane_1/timestamps"] = ts
        f[f"{pipe}/ImageSegmentation/cell_specimen_ids"] = cell_ids
        if with_ns:
            g = f.create_group("stimulus/presentation/natural_scenes_stimulus")
            g["data"] = frames.astype(np.float32)
            g["frame_duration"] = np.stack([starts, starts + 7], 1).astype(np.float64)
            g["timestamps"] = ts[starts]
            f["stimulus/templates/natural_scenes_image_stack/data"] = template
        else:
            g = f.create_group("stimulus/presentation/drifting_gratings_stimulus")
            g["data"] = np.zeros((n_trials, 3))
        plane = "general/optophysiology/imaging_plane_1"
        f[f"{plane}/location"] = meta["location"].encode()
        f[f"{plane}/imaging depth"] = meta["depth"].encode()
        f["general/subject/genotype"] = meta["genotype"].encode()
        f["general/experiment_container_id"] = meta["container"].encode()
        f["general/session_id"] = meta["session"].encode()
        f["general/specimen_name"] = meta["specimen"].encode()
        f["general/session_type"] = b"three_session_B" if with_ns else b"three_session_A"


SST = dict(location="VISal", depth="275 microns", genotype="Sst-IRES-Cre/wt;Ai148(TIT2L-GC6f-ICL-"
           "tTA2)/wt", container="511510650", session="501021421", specimen="Sst-IRES-Cre;Ai148-1")
CUX2 = dict(location="VISp", depth="175 microns", genotype="Cux2-CreERT2/wt;Camk2a-tTA/wt;Ai93("
            "TITL-GCaMP6f)/wt", container="511507650", session="501940850", specimen="Cux2-2")


@pytest.fixture
def write_ophys(tmp_path):
    """``write_ophys(name, meta=SST, reps=..., dead=..., seed=..., with_ns=True) -> PlantedOphys``.

    Four images (frames 0..3) shown ``reps[k]`` times each plus two blanks, in a shuffled order;
    amplitudes drawn per cell and trial; cells listed in ``dead`` have all-NaN traces.
    """

    def make(name="exp.nwb", meta=SST, reps=(3, 2, 2, 2), dead=(), seed=0, with_ns=True,
             n_cells=4, first_id=1000):
        rng = np.random.default_rng(seed)
        frames = np.concatenate([np.full(r, k) for k, r in enumerate(reps)] + [[-1, -1]])
        frames = rng.permutation(frames).astype(np.int64)
        amp = rng.normal(1.0, 0.5, (n_cells, len(frames)))
        amp[list(dead)] = np.nan
        cell_ids = np.arange(first_id, first_id + n_cells, dtype=np.int64)
        offset = rng.normal(0.0, 0.1, n_cells)
        template = rng.integers(0, 256, (len(reps), 6, 8), dtype=np.uint8)
        path = tmp_path / name
        _ophys_file(path, frames, amp, cell_ids, offset, template, meta, with_ns)
        return PlantedOphys(path, frames, amp, cell_ids, offset, template)

    return make


@pytest.fixture
def write_ecephys(tmp_path):
    """``write_ecephys() -> (path, counts_ut, frames, metrics)``: a pynwb session with planted
    spike counts per unit and trial inside 0-250 ms (plus spikes outside the window)."""
    from datetime import datetime

    from pynwb import NWBHDF5IO, NWBFile

    def make(seed=0, n_units=5, reps=3, n_images=3):
        rng = np.random.default_rng(seed)
        nwb = NWBFile(session_description="planted", identifier="715093703",
                      session_start_time=datetime(2019, 1, 1, tzinfo=UTC))
        dev = nwb.create_device("probeA")
        grp = nwb.create_electrode_group("probeA", description="", location="", device=dev)
        areas = ["VISp", "VISl", "CA1"]
        for ch in range(3):
            nwb.add_electrode(id=850 + ch, x=0.0, y=0.0, z=0.0, location=areas[ch], group=grp,
                              imp=0.0, filtering="")
        frames = rng.permutation(np.concatenate([np.repeat(np.arange(n_images), reps), [-1]]))
        starts = 10.0 + 0.5 * np.arange(len(frames))
        from pynwb.epoch import TimeIntervals

        pres = TimeIntervals(name="natural_scenes_presentations", description="ns")
        pres.add_column("frame", "template frame, -1 blank")
        for s, fr in zip(starts, frames, strict=True):
            pres.add_row(start_time=s, stop_time=s + 0.25, frame=float(fr))
        nwb.add_time_intervals(pres)
        counts = rng.integers(0, 6, (n_units, len(frames)))
        metrics = {"quality": np.array(["good"] * (n_units - 1) + ["noise"]),
                   "presence_ratio": np.r_[np.full(n_units - 2, 0.99), 0.5, 0.99],
                   "amplitude_cutoff": np.full(n_units, 0.01),
                   "isi_violations": np.full(n_units, 0.1),
                   "snr": rng.uniform(1, 5, n_units), "firing_rate": rng.uniform(1, 9, n_units)}
        for name in metrics:
            nwb.add_unit_column(name, name)
        nwb.add_unit_column("peak_channel_id", "peak channel")
        for u in range(n_units):
            inside = [s + np.sort(rng.uniform(0.0, 0.249, c)) for s, c in zip(starts, counts[u],
                                                                              strict=True)]
            outside = [s + rng.uniform(0.26, 0.49, 2) for s in starts]
            spikes = np.sort(np.concatenate(inside + outside))
            nwb.add_unit(id=950_000 + u, spike_times=spikes, peak_channel_id=850 + (u % 3),
                         **{k: v[u] for k, v in metrics.items()})
        path = tmp_path / "session.nwb"
        with NWBHDF5IO(str(path), "w") as io:
            io.write(nwb)
        return path, counts, frames, metrics

    return make
