"""``cortexalign compare-layers``: the written matrix equals layer_similarity on the extracted
features, every bad request fails before anything is extracted or written, and no temporary
file survives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from PIL import Image
from typer.testing import CliRunner

# imported before any test patches cortexalign.features.extract_features: compare-layers imports
# cli_extract lazily, and a first import during test_bad_requests_... would bind the fake into
# cli_extract for the rest of the process (cortexalign extract then failed in other tests)
import cortexalign.cli.extract_file  # noqa: F401
from cortexalign.cli import app
from cortexalign.cli.compare import compare_layers_to_file
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.features import extract_features
from cortexalign.metrics import layer_similarity
from cortexalign.models import load_model
from cortexalign.stimuli import load_stimuli

runner = CliRunner()
VIT = ["timm:test_vit", "--untrained", "--kwarg", "img_size=32"]
VIT_LAYERS = ["-l", "blocks.0", "-l", "blocks.1", "-l", "norm"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """8 random PNGs."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, size=(36, 40, 3), dtype=np.uint8)).save(
            root / f"img{i}.png")
    return root


def _invoke(*args):
    return runner.invoke(app, ["compare-layers", *map(str, args)])


def _features(name, folder, layers, **kwargs):
    adapter = load_model(name, untrained=True, device="cpu", **kwargs)
    feats = extract_features(adapter, load_stimuli(folder), layers, progress=False)
    return {k: f.values for k, f in feats.items()}


def test_vit_against_resnet_nc_and_csv_equal_layer_similarity(tmp_path, folder):
    nc, csv = tmp_path / "sim.nc", tmp_path / "sim.csv"
    args = ["timm:test_vit", "timm:test_resnet", folder, *VIT_LAYERS[:4], "--layers-b", "layer1",
            "--layers-b", "layer3", "--untrained", "--kwarg", "img_size=32", "--device", "cpu",
            "-q", "--metric", "rsa", "--option", "compare=pearson"]
    for out in (nc, csv):
        res = _invoke(*args, "--out", out)
        assert res.exit_code == 0, res.output
        assert str(out) in res.output
    ref = layer_similarity(_features("timm:test_vit", folder, ["blocks.0", "blocks.1"],
                                     img_size=32),
                           _features("timm:test_resnet", folder, ["layer1", "layer3"]), "rsa",
                           device="cpu", compare="pearson")
    got = xr.open_dataarray(nc).load()
    np.testing.assert_allclose(got.values, ref.values, rtol=0, atol=1e-12)
    assert list(got.layer_a.values) == ["blocks.0", "blocks.1"]
    assert list(got.layer_b.values) == ["layer1", "layer3"]
    assert got.attrs["metric"] == "rsa" and got.attrs["n_stimuli"] == 8
    assert "test_resnet" in got.attrs["model_b"]
    frame = pd.read_csv(csv, index_col=0)
    assert list(frame.index) == ["blocks.0", "blocks.1"] and list(frame.columns) == ["layer1",
                                                                                     "layer3"]
    np.testing.assert_allclose(frame.to_numpy(), ref.values, rtol=1e-9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim.csv", "sim.nc"]


def test_one_model_against_itself_writes_a_png_on_the_bundled_stimuli(tmp_path):
    out = tmp_path / "sim.png"
    res = _invoke(*VIT, "kriegeskorte92", *VIT_LAYERS, "--device", "cpu", "-q", "--out", out)
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["sim.png"]
    res = _invoke(*VIT, "kriegeskorte92", *VIT_LAYERS, "--device", "cpu", "-q", "--out", out)
    assert res.exit_code == 2 and "--overwrite" in res.output
    res = _invoke(*VIT, "kriegeskorte92", *VIT_LAYERS, "--device", "cpu", "-q", "--out", out,
                  "--overwrite", "--metric", "cka_rbf")
    assert res.exit_code == 0, res.output
    assert [p.name for p in tmp_path.iterdir()] == ["sim.png"]


def test_the_cache_is_shared_with_extract(tmp_path, folder):
    cache = tmp_path / "cache"
    kwargs = {"layers": ["blocks.0", "norm"], "untrained": True, "device": "cpu",
              "model_kwargs": {"img_size": 32}, "cache": cache, "progress": False,
              "metric": "cka_linear_debiased"}
    first = compare_layers_to_file("timm:test_vit", folder, tmp_path / "a.nc", **kwargs)
    second = compare_layers_to_file("timm:test_vit", folder, tmp_path / "b.nc", **kwargs)
    assert first.from_cache == () and len(second.from_cache) == 2
    np.testing.assert_array_equal(first.similarity.values, second.similarity.values)
    np.testing.assert_allclose(np.diag(first.similarity.values), 1.0, atol=1e-12)


@pytest.mark.parametrize(("out", "kwargs", "error", "parameter"), [
    ("sim.txt", {}, InputError, "out"),
    ("sim.nc", {"metric": "cka"}, UnknownNameError, None),
    ("sim.nc", {"metric": "cka_linear", "options": {"sigma_frac": 1}}, InputError, "options"),
    ("sim.nc", {"metric": "rsa", "options": {"compare": "pearsn"}}, UnknownNameError, None),
    ("sim.nc", {"pooling": "none"}, InputError, "pooling"),
    ("sim.nc", {"pooling": "avg"}, UnknownNameError, None),
    ("sim.nc", {"layers": None}, InputError, "layers"),
    ("sim.nc", {"all_layers": True}, InputError, "layers"),
    ("sim.nc", {"layers_b": ["layer1"]}, InputError, "layers_b"),
    ("sim.nc", {"layers": ["blocks.9"]}, UnknownNameError, None),
    ("sim.nc", {"model_b": "timm:test_resnet"}, UnknownNameError, None),
    ("sim.nc", {"metric": "rsa", "n_bootstrap": 10}, InputError, "n_bootstrap"),
    ("sim.nc", {"n_bootstrap": 10, "ci_level": 2.0}, InputError, "ci_level"),
])
def test_bad_requests_fail_before_extraction_and_write_nothing(tmp_path, folder, monkeypatch,
                                                               out, kwargs, error, parameter):
    def no_extraction(*args, **kw):
        raise AssertionError("extraction started")

    monkeypatch.setattr("cortexalign.features.extract", no_extraction)
    request = {"layers": ["blocks.0"], "untrained": True, "device": "cpu",
               "model_kwargs": {"img_size": 32}, "progress": False, **kwargs}
    with pytest.raises(error) as info:
        compare_layers_to_file("timm:test_vit", folder, tmp_path / out, **request)
    if parameter is not None:
        assert info.value.parameter == parameter
    assert list(tmp_path.iterdir()) == []


def test_bootstrap_intervals_reach_the_nc_and_csv_outputs(tmp_path, folder):
    args = [*VIT, folder, "-l", "blocks.0", "-l", "norm", "--device", "cpu", "-q",
            "--n-bootstrap", "20", "--seed", "3", "--ci-level", "0.8"]
    for name in ("sim.nc", "sim.csv"):
        res = _invoke(*args, "--out", tmp_path / name)
        assert res.exit_code == 0, res.output
    ref = layer_similarity(_features("timm:test_vit", folder, ["blocks.0", "norm"], img_size=32),
                           device="cpu", n_bootstrap=20, seed=3, ci_level=0.8)
    got = xr.open_dataarray(tmp_path / "sim.nc").load()
    np.testing.assert_allclose(got.ci_low.values, ref.ci_low.values, rtol=1e-10)
    np.testing.assert_allclose(got.ci_high.values, ref.ci_high.values, rtol=1e-10)
    frame = pd.read_csv(tmp_path / "sim.csv")
    assert list(frame.columns) == ["layer_a", "layer_b", "value", "ci_low", "ci_high"]
    assert len(frame) == 4
    np.testing.assert_allclose(frame["ci_high"].to_numpy(), ref.ci_high.values.ravel(), rtol=1e-9)


def test_cli_argument_count_and_option_syntax_fail_cleanly(tmp_path):
    res = _invoke("timm:test_vit", "--out", tmp_path / "s.nc", "-l", "norm")
    assert res.exit_code == 2 and "MODEL_A [MODEL_B] STIMULI" in res.output
    res = _invoke(*VIT, "kriegeskorte92", "-l", "norm", "--option", "compare", "--out",
                  tmp_path / "s.nc")
    assert res.exit_code == 2 and "--option" in res.output
    assert list(tmp_path.iterdir()) == []
