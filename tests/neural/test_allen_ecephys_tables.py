"""Neuropixels spike counts from a pynwb-written session, and precomputed response tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.neural.allen import load_ecephys_natural_scenes, load_response_table


def _by_stim(counts_ut, frames, keep):
    n_img = frames.max() + 1
    reps = max((frames == k).sum() for k in range(n_img))
    out = np.full((n_img, int(keep.sum()), reps), np.nan)
    for k in range(n_img):
        for r, t in enumerate(np.flatnonzero(frames == k)):
            out[k, :, r] = counts_ut[keep, t]
    return out


def test_spike_counts_recovered(write_ecephys):
    path, counts, frames, metrics = write_ecephys()
    with pytest.warns(UserWarning, match="2 of 5 units removed"):
        da = load_ecephys_natural_scenes(path)
    keep = (metrics["quality"] == "good") & (metrics["presence_ratio"] >= 0.95)
    np.testing.assert_array_equal(da.values, _by_stim(counts, frames, keep))
    assert list(da.neuroid.values) == [str(950_000 + u) for u in np.flatnonzero(keep)]
    assert list(da.area.values) == ["VISp", "VISl", "CA1"]
    assert da.attrs["n_units_filtered"] == 2
    np.testing.assert_allclose(da.snr.values, metrics["snr"][keep])
    assert set(da.session_id.values) == {"715093703"}


def test_rate_and_no_filter(write_ecephys):
    path, counts, frames, _ = write_ecephys(seed=1)
    da = load_ecephys_natural_scenes(path, statistic="rate", quality_filter={}, good_only=False)
    np.testing.assert_allclose(da.values, _by_stim(counts, frames, np.ones(5, bool)) / 0.25)


def test_ecephys_bad_input(write_ecephys, tmp_path):
    path, *_ = write_ecephys()
    with pytest.raises(UnknownNameError, match="presence_ratio"):
        load_ecephys_natural_scenes(path, quality_filter={"presense_ratio": (">=", 0.9)})
    with pytest.raises(InputError, match="keeps at least one unit"):
        load_ecephys_natural_scenes(path, quality_filter={"snr": (">=", 1e9)})
    with pytest.raises(UnknownNameError):
        load_ecephys_natural_scenes(path, statistic="spikes")
    import h5py

    with h5py.File(path, "a") as f:
        del f["intervals/natural_scenes_presentations"]
    with pytest.raises(InputError, match="natural_scenes"):
        load_ecephys_natural_scenes(path)


def _table(rng, n=5):
    df = pd.DataFrame({"cell_specimen_id": np.arange(100, 100 + n),
                       "area": ["VISp", "VISl", "VISp", "VISam", "VISal"][:n],
                       "cre_line": ["Cux2-CreERT2", "Sst-IRES-Cre", "Vip-IRES-Cre", "Rbp4-Cre_KL100",
                                    "Pvalb-IRES-Cre"][:n],
                       "depth": rng.integers(100, 400, n)})
    resp = rng.normal(size=(n, 4))
    for k in range(4):
        df[f"ns{k:03d}"] = resp[:, k]
    return df, resp


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_response_table_roundtrip(tmp_path, rng, suffix):
    df, resp = _table(rng)
    path = tmp_path / f"cells{suffix}"
    if suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        import duckdb

        duckdb.from_df(df).write_parquet(str(path))
    da = load_response_table(path)
    np.testing.assert_allclose(da.values, resp.T)
    assert list(da.stimulus.values) == ["ns000", "ns001", "ns002", "ns003"]
    assert list(da.neuroid.values) == ["100", "101", "102", "103", "104"]
    assert list(da.cell_class.values) == ["excitatory", "inhibitory", "inhibitory", "excitatory",
                                          "inhibitory"]
    np.testing.assert_array_equal(da.depth.values, df.depth.values)


def test_response_table_frame_numbers_and_bad_columns(tmp_path, rng):
    df, resp = _table(rng)
    df = df.rename(columns={f"ns{k:03d}": str(k) for k in range(4)})
    df["-1"] = 0.5
    df.to_csv(tmp_path / "t.csv", index=False)
    da = load_response_table(tmp_path / "t.csv")
    assert list(da.stimulus.values) == ["ns000", "ns001", "ns002", "ns003", "blank"]
    with pytest.raises(InputError, match="absent"):
        load_response_table(tmp_path / "t.csv", stimulus_columns=["ns000"])
    df[["cell_specimen_id", "area"]].to_csv(tmp_path / "meta.csv", index=False)
    with pytest.raises(InputError, match="image columns"):
        load_response_table(tmp_path / "meta.csv")
    with pytest.raises(InputError, match="csv or .parquet"):
        (tmp_path / "t.txt").write_text("x")
        load_response_table(tmp_path / "t.txt")
