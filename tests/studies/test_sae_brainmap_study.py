"""`cortexalign simulate sae_brainmap` writes NSD's layouts with planted voxels; `cortexalign
study sae_brainmap` recovers every planted unit and layer (tiny size: seconds, not minutes)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cortexalign.cli import app
from cortexalign.errors import InputError
from cortexalign.neural.fmri import load_nsd
from cortexalign.studies import get_study
from cortexalign.studies.sae_brainmap import SIZES, simulate


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    return simulate(tmp_path_factory.mktemp("sim") / "nsd", size="tiny", progress=False)


def test_simulated_nsd_reads_in_both_spaces(sim):
    size = SIZES["tiny"]
    planted = json.loads((sim / "planted.json").read_text())
    vol = load_nsd(sim, rois=["prf-visualrois", "floc-faces"])
    assert vol.sizes["stimulus"] == size.n_images
    assert sorted(set(vol["roi"].values)) == ["FFA-1", "V1v"]
    assert {p["id"] for p in planted} <= set(vol["neuroid"].values)
    surf = load_nsd(sim, rois=["prf-visualrois", "floc-faces"], space="fsaverage",
                    file_format="mgh")
    assert surf.sizes["neuroid"] == 2 * 2 * size.roi_edge ** 3
    # a planted vertex and the planted voxel copying the same unit agree (both noisy copies)
    v1 = vol.sel(neuroid=planted[0]["id"]).values
    lh0 = surf.sel(neuroid="subj01_lh_0").values
    assert np.corrcoef(v1, lh0)[0, 1] > 0.8


def test_study_recovers_planted_units_and_layers(sim, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["study", "sae_brainmap", "--data", str(sim), "--out",
                                      str(out), "--subset", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    rec = pd.read_csv(out / "recovery.csv")
    assert len(rec) == 2 * SIZES["tiny"].planted_per_roi
    assert rec["unit_recovered"].all() and rec["layer_recovered"].all()
    assert (rec["r"] > 0.9).all()
    metrics = pd.read_csv(out / "sae_metrics.csv")
    assert {"l0", "dead_fraction", "dense_fraction", "active_fraction"} <= set(metrics.columns)
    assert (out / "report.html").is_file() and "recovered" in result.output
    # subject-space maps drawn on the simulated subject's own FreeSurfer surfaces
    assert (out / "surface_best_r.png").is_file() and (out / "surface_best_layer.png").is_file()


def test_catalogue_entry_and_bad_inputs(tmp_path, sim):
    entry = get_study("sae_brainmap")
    assert entry.simulate_fn() is simulate and entry.sizes == ("cpu", "full")
    with pytest.raises(InputError, match="--data"):
        entry.run_fn()(None, tmp_path / "o")
    with pytest.raises(InputError, match="already holds"):
        simulate(sim, size="tiny")
    with pytest.raises(InputError, match="size"):
        simulate(tmp_path / "x", size="huge")


def test_surface_vertices_without_a_value_are_left_blank(tmp_path):
    from matplotlib.image import imread

    from cortexalign.neural.fmri.surface import blank_missing, plot_surface_values

    vals = np.array([np.nan, 0.2, 0.5, 0.8, np.nan])
    got = blank_missing(vals, 0.2, 0.8)
    np.testing.assert_allclose(got, [0.0, 1.0, 1.5, 2.0, 0.0])  # 0 is below the 0.5 threshold
    pytest.importorskip("nilearn")
    empty = {h: np.full(10242, np.nan) for h in ("left", "right")}
    some = {h: v.copy() for h, v in empty.items()}
    some["left"][:50] = np.linspace(0, 1, 50)
    a = imread(plot_surface_values(some, tmp_path / "a.png", vmin=0.0, vmax=1.0))
    empty["left"][:50] = np.nan
    empty["left"][0] = 0.5  # one vertex: nearly the whole mesh has no value
    b = imread(plot_surface_values(empty, tmp_path / "b.png", vmin=0.0, vmax=1.0))
    # the lowest colour of viridis (dark purple) must not paint the vertices without a value
    purple = np.array([0.267, 0.005, 0.329])
    share = lambda im: (np.abs(im[..., :3] - purple).sum(-1) < 0.08).mean()  # noqa: E731
    assert share(b) < 0.01 and share(a) < 0.05


def test_full_size_checks_the_disk_before_writing(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 0, 10**9))
    with pytest.raises(InputError, match="GB free"):
        simulate(tmp_path / "full", size="full")
    assert not (tmp_path / "full").exists()
