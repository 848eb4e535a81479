"""BrainIO assemblies load as responses; time-resolved scores are per-bin scores; a cortexalign
model answers Brain-Score's BrainModel calls with what extract_features gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from PIL import Image

import cortexalign as ca
from cortexalign.errors import InputError
from cortexalign.interop import BrainScoreModel
from cortexalign.metrics import plot_time_resolved, time_resolved_score
from cortexalign.neural import load_brainio_assembly, load_neural


def _brainio_file(tmp_path, n_stim=30, n_neuroid=12, n_rep=4, n_bins=3, seed=0):
    """An assembly as brainio.packaging.write_netcdf leaves it: MultiIndexes reset to coords."""
    rng = np.random.default_rng(seed)
    truth = rng.standard_normal((n_stim, n_neuroid, n_bins))
    trials = []
    order = rng.permutation(n_stim * n_rep)  # trials in recording order, not grouped
    stim_ids, reps, objects = [], [], []
    for t in order:
        s, r = divmod(int(t), n_rep)
        trials.append(truth[s] + 0.1 * rng.standard_normal((n_neuroid, n_bins)))
        stim_ids.append(f"img{s:03d}")
        reps.append(r)
        objects.append(f"obj{s % 3}")
    da = xr.DataArray(np.stack(trials), dims=("presentation", "neuroid", "time_bin"))
    for dim, index in (
            ("presentation", pd.MultiIndex.from_arrays(
                [stim_ids, reps, objects], names=["stimulus_id", "repetition", "object_name"])),
            ("neuroid", pd.MultiIndex.from_arrays(
                [[f"n{k}" for k in range(n_neuroid)], ["IT"] * n_neuroid],
                names=["neuroid_id", "region"])),
            ("time_bin", pd.MultiIndex.from_arrays(
                [[70 + 20 * b for b in range(n_bins)], [90 + 20 * b for b in range(n_bins)]],
                names=["time_bin_start", "time_bin_end"]))):
        da = da.assign_coords(xr.Coordinates.from_pandas_multiindex(index, dim))
    path = tmp_path / "assy_dicarlo_toy.nc"
    da.reset_index(["presentation", "neuroid", "time_bin"]).to_netcdf(path)
    return path, truth, np.array(stim_ids), np.array(reps), np.stack(trials)


def test_brainio_assembly_gathers_trials_by_stimulus_and_repetition(tmp_path):
    path, truth, stim_ids, reps, trials = _brainio_file(tmp_path)
    da = load_brainio_assembly(path)
    assert da.dims == ("stimulus", "neuroid", "repetition", "time_bin")
    assert da.sizes == {"stimulus": 30, "neuroid": 12, "repetition": 4, "time_bin": 3}
    for t in range(len(stim_ids)):  # every trial lands at its (stimulus, repetition)
        np.testing.assert_array_equal(
            da.sel(stimulus=stim_ids[t]).isel(repetition=reps[t]).values, trials[t])
    assert list(da["region"].values) == ["IT"] * 12
    assert set(da["object_name"].values) == {"obj0", "obj1", "obj2"}
    assert list(da["time_bin_start"].values) == [70, 90, 110]


def test_a_single_bin_assembly_loads_as_plain_responses(tmp_path):
    path, *_ = _brainio_file(tmp_path, n_bins=1)
    da = load_neural(path)
    assert da.dims == ("stimulus", "neuroid", "repetition")
    ca.neural.validate_responses(da, allow_nan=True)


def test_brainio_refuses_what_it_cannot_read(tmp_path):
    bad = xr.DataArray(np.zeros((3, 2)), dims=("presentation", "neuroid"))
    with pytest.raises(InputError, match="stimulus_id"):
        load_brainio_assembly(bad)
    with pytest.raises(InputError, match="presentation"):
        load_brainio_assembly(xr.DataArray(np.zeros((3, 2)), dims=("stimulus", "neuroid")))


def test_time_resolved_equals_per_bin_scores_and_finds_the_planted_bin(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((60, 20))
    signal = x @ rng.standard_normal((20, 15))
    gain = np.array([0.0, 1.0, 0.2])  # the model's information peaks in bin 1
    reps = (signal[:, :, None, None] * gain + rng.standard_normal((60, 15, 4, 3)))
    resp = xr.DataArray(reps, dims=("stimulus", "neuroid", "repetition", "time_bin"),
                        coords={"stimulus": [f"s{i}" for i in range(60)],
                                "neuroid": [f"n{k}" for k in range(15)],
                                "time_bin_start": ("time_bin", [0, 50, 100]),
                                "time_bin_end": ("time_bin", [50, 100, 150])})
    out = time_resolved_score("ridge", x, resp, seed=0)
    for b in range(3):
        s = ca.score("ridge", x, resp.isel(time_bin=b, drop=True), seed=0)
        assert out["value"][b] == pytest.approx(s.value)
        assert out["ceiling_low"][b] == pytest.approx(s.ceiling_low)
    assert int(np.argmax(out["value"].values)) == 1
    assert out["ceiling_low"][1] > out["ceiling_low"][0]  # bin 0 is noise: lower ceiling
    ax = plot_time_resolved(out)
    assert "ms" in ax.get_xlabel() and ax.get_legend() is not None
    with pytest.raises(InputError, match="time_bin"):
        time_resolved_score("ridge", x, resp.isel(time_bin=0))


class _ToyStimulusSet(pd.DataFrame):
    """Brain-Score's StimulusSet: a table with stimulus_id and get_stimulus(id) -> path."""

    _metadata = ["paths"]

    def get_stimulus(self, stimulus_id):
        return self.paths[stimulus_id]


def test_brainscore_model_records_the_mapped_layer(tmp_path):
    rng = np.random.default_rng(0)
    ids, paths = [f"im{k}" for k in range(6)], {}
    for i in ids:
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(p)
        paths[i] = str(p)
    stimuli = _ToyStimulusSet({"stimulus_id": ids, "object_name": ["a", "b"] * 3})
    stimuli.paths = paths
    model = BrainScoreModel("gabor_v1", {"V1": "complex"}, pooling="mean")
    assert model.identifier and model.visual_degrees() == 8
    with pytest.raises(InputError, match="start_recording"):
        model.look_at(stimuli)
    model.start_recording("V1", time_bins=[(70, 170)])
    assy = model.look_at(stimuli, number_of_trials=1)
    assert assy.dims == ("presentation", "neuroid", "time_bin")
    assert list(assy["stimulus_id"].values) == ids
    assert list(assy["object_name"].values) == ["a", "b"] * 3
    assert set(assy["region"].values) == {"V1"}
    stim = ca.stimuli.StimulusSet.from_arrays(
        [np.asarray(Image.open(paths[i])) for i in ids], ids)
    ref = ca.extract_features(ca.load_model("gabor_v1"), stim, ["complex"], pooling="mean",
                              progress=False)["complex"].values
    np.testing.assert_allclose(assy.isel(time_bin=0).values, ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="recording_target"):
        model.start_recording("IT")
    with pytest.raises(InputError, match="task"):
        model.start_task("label")
    with pytest.raises(InputError, match="layer"):
        BrainScoreModel("gabor_v1", {"V1": "complx"})
