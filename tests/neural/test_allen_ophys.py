"""The two-photon loader recovers planted responses exactly from files in the Allen layout."""

from __future__ import annotations

import numpy as np
import pytest
from allen_nwb_files import CUX2, FS, SHAPE, SST

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.neural import align_ids
from cortexalign.neural.allen import (
    BLANK_LEVEL,
    load_natural_scenes_stimuli,
    load_ophys_natural_scenes,
)


def _expected(planted, value_t, include_blank=False):
    """(stimulus, cell, repetition) from per-trial values by an explicit loop."""
    stim = list(range(planted.template.shape[0])) + ([-1] if include_blank else [])
    reps = max((planted.frames == fr).sum() for fr in stim)
    alive = ~np.isnan(planted.amp_nt).all(1)
    out = np.full((len(stim), int(alive.sum()), reps), np.nan)
    for i, fr in enumerate(stim):
        for r, t in enumerate(np.flatnonzero(planted.frames == fr)):
            out[i, :, r] = value_t[alive, t]
    return out


def test_mean_response_recovered_exactly(write_ophys):
    p = write_ophys()
    da = load_ophys_natural_scenes(p.path)
    assert da.dims == ("stimulus", "neuroid", "repetition")
    assert list(da.stimulus.values) == ["ns000", "ns001", "ns002", "ns003"]
    np.testing.assert_allclose(da.values, _expected(p, p.amp_nt * SHAPE.mean()), atol=1e-6,
                               equal_nan=True)
    # image 0 was shown 3 times, the others twice: the third repetition is NaN-padded
    assert np.isfinite(da.values[0, :, 2]).all() and np.isnan(da.values[1:, :, 2]).all()


@pytest.mark.parametrize("statistic", ["peak", "time_to_peak"])
def test_peak_and_time_to_peak(write_ophys, statistic):
    write = write_ophys(seed=3)
    da = load_ophys_natural_scenes(write.path, statistic=statistic)
    amp = write.amp_nt  # positive amplitudes peak at the SHAPE maximum, negative at its minimum
    if statistic == "peak":
        value = np.where(amp > 0, amp * SHAPE.max(), amp * SHAPE.min())
    else:
        value = np.where(amp > 0, np.argmax(SHAPE), np.argmin(SHAPE)) / FS
    np.testing.assert_allclose(da.values, _expected(write, value), atol=1e-6, equal_nan=True)


def test_no_baseline_gives_raw_window_mean(write_ophys):
    p = write_ophys()
    da = load_ophys_natural_scenes(p.path, baseline=None)
    raw = p.amp_nt * SHAPE.mean() + p.offset_n[:, None]
    np.testing.assert_allclose(da.values, _expected(p, raw), atol=1e-6, equal_nan=True)


def test_metadata_coordinates(write_ophys):
    da = load_ophys_natural_scenes(write_ophys().path)
    assert set(da.area.values) == {"VISal"}
    assert set(da.cre_line.values) == {"Sst-IRES-Cre"}
    assert set(da.reporter.values) == {"Ai148(TIT2L-GC6f-ICL-tTA2)"}
    assert set(da.cell_class.values) == {"inhibitory"}
    assert set(da.depth.values) == {275.0}
    assert set(da.experiment_container.values) == {"511510650"}
    assert list(da.neuroid.values) == ["1000", "1001", "1002", "1003"]


def test_two_experiments_concatenate_with_padding(write_ophys):
    a = write_ophys("a.nwb", SST, reps=(2, 2, 2, 2))
    b = write_ophys("b.nwb", CUX2, reps=(3, 3, 2, 3), seed=1, first_id=2000, n_cells=2)
    da = load_ophys_natural_scenes([a.path, b.path])
    assert da.shape == (4, 6, 3)
    assert list(da.cell_class.values) == ["inhibitory"] * 4 + ["excitatory"] * 2
    assert np.isnan(da.values[:, :4, 2]).all()  # experiment a has 2 repetitions only
    np.testing.assert_allclose(da.values[:, 4:], _expected(b, b.amp_nt * SHAPE.mean()),
                               atol=1e-6, equal_nan=True)


def test_all_nan_cells_dropped_and_reported(write_ophys):
    p = write_ophys(dead=(1,))
    with pytest.warns(UserWarning, match="dropped 1 cell"):
        da = load_ophys_natural_scenes(p.path)
    assert da.attrs["n_dropped_all_nan"] == 1
    assert list(da.attrs["dropped_cell_specimen_ids"]) == ["1001"]
    assert "1001" not in da.neuroid.values and da.sizes["neuroid"] == 3
    np.testing.assert_allclose(da.values, _expected(p, p.amp_nt * SHAPE.mean()), atol=1e-6,
                               equal_nan=True)


def test_blank_and_template_ids_match(write_ophys):
    p = write_ophys()
    da = load_ophys_natural_scenes(p.path, include_blank=True)
    stim = load_natural_scenes_stimuli(p.path, include_blank=True)
    assert da.stimulus.values[-1] == "blank" and stim.ids[-1] == "blank"
    np.testing.assert_array_equal(align_ids(stim.ids, da.stimulus.values), np.arange(5))
    np.testing.assert_allclose(da.values, _expected(p, p.amp_nt * SHAPE.mean(), True), atol=1e-6,
                               equal_nan=True)
    np.testing.assert_array_equal(stim.image("ns002")[:, :, 0], p.template[2])
    assert (stim.image("blank") == BLANK_LEVEL).all()
    assert list(stim.metadata["frame"]) == [0, 1, 2, 3, -1]


def test_template_folder(tmp_path, write_ophys):
    from PIL import Image

    p = write_ophys()
    folder = tmp_path / "natural_scene_templates"
    folder.mkdir()
    for k, img in enumerate(p.template):
        Image.fromarray(img).save(folder / f"natural_scene_{k}.tiff")
    stim = load_natural_scenes_stimuli(folder)
    assert stim.ids == ("ns000", "ns001", "ns002", "ns003")
    np.testing.assert_array_equal(stim.image(3)[:, :, 0], p.template[3])


def test_template_and_responses_that_disagree(write_ophys, tmp_path):
    p = write_ophys()
    da = load_ophys_natural_scenes(p.path)
    stim = load_natural_scenes_stimuli(p.path, include_blank=True)
    with pytest.raises(InputError, match="blank"):
        align_ids(stim.ids, da.stimulus.values)


def test_frames_beyond_template_rejected(write_ophys):
    import h5py

    p = write_ophys()
    with h5py.File(p.path, "a") as f:
        del f["stimulus/templates/natural_scenes_image_stack/data"]
        f["stimulus/templates/natural_scenes_image_stack/data"] = p.template[:3]
    with pytest.raises(InputError, match="template holds 3 images"):
        load_ophys_natural_scenes(p.path)


def test_image_never_shown_rejected(write_ophys):
    p = write_ophys(reps=(2, 0, 2, 2))
    with pytest.raises(InputError, match="never shown"):
        load_ophys_natural_scenes(p.path)


def test_experiment_without_natural_scenes(write_ophys):
    p = write_ophys(with_ns=False)
    with pytest.raises(InputError, match="drifting_gratings_stimulus") as err:
        load_ophys_natural_scenes(p.path)
    assert "three_session_B" in str(err.value)


def test_bad_options(write_ophys, tmp_path):
    p = write_ophys()
    with pytest.raises(UnknownNameError, match="peak"):
        load_ophys_natural_scenes(p.path, statistic="peek")
    with pytest.raises(InputError, match="window"):
        load_ophys_natural_scenes(p.path, window=(0.25, 0.0))
    with pytest.raises(InputError, match="at least one 2P sample"):
        load_ophys_natural_scenes(p.path, window=(0.01, 0.02))
    with pytest.raises(InputError, match="existing"):
        load_ophys_natural_scenes(tmp_path / "missing.nwb")
    (tmp_path / "junk.nwb").write_text("not hdf5")
    with pytest.raises(InputError, match="HDF5"):
        load_ophys_natural_scenes(tmp_path / "junk.nwb")
