"""``cortexalign extract`` and ``save_features`` / ``load_features``: files equal to direct
extraction, every bad request fails before anything is written, and no temp file survives."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import scipy.io
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from cortexalign.cli import app
from cortexalign.errors import InputError
from cortexalign.features import Features, extract_features, load_features, save_features
from cortexalign.features._export import FEATURE_FORMATS, _field_names, _read_npz
from cortexalign.models import load_model
from cortexalign.stimuli import load_stimuli

runner = CliRunner()
GABOR = {"image_size": 32, "image_deg": None, "frequencies": [0.1, 0.25]}
GABOR_ARGS = ["--kwarg", "image_size=32", "--kwarg", "image_deg=null",
              "--kwarg", "frequencies=[0.1, 0.25]", "-q"]
SAM = {"tiny": True, "img_size": 64}
SAM_ARGS = ["--untrained", "--kwarg", "tiny=true", "--kwarg", "img_size=64", "-q"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """5 random PNGs of different sizes."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(5):
        img = rng.integers(0, 256, size=(40 + 4 * i, 48, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / f"img{i}.png")
    return root


def _invoke(*args):
    return runner.invoke(app, ["extract", *map(str, args)])


def _leftovers(path):
    return sorted(p.name for p in path.iterdir())


@pytest.mark.parametrize("suffix", list(FEATURE_FORMATS))
def test_cli_file_equals_extract_features(tmp_path, folder, suffix):
    out = tmp_path / f"feats{suffix}"
    res = _invoke("gabor_v1", folder, "--out", out, "-l", "pooled", "-l", "simple", *GABOR_ARGS)
    assert res.exit_code == 0, res.output
    assert str(out) in res.output and "(5, 16)" in res.output
    assert _leftovers(tmp_path) == [out.name]
    got = load_features(out)
    ref = extract_features(load_model("gabor_v1", **GABOR), load_stimuli(folder),
                           ["pooled", "simple"], progress=False)
    assert list(got) == ["pooled", "simple"]
    for name, f in ref.items():
        assert np.array_equal(got[name].values, f.values)
        assert got[name].values.dtype == f.values.dtype
        assert got[name].stimulus_ids == f.stimulus_ids
        assert (got[name].model_id, got[name].pooling, got[name].key) == (f.model_id, "mean",
                                                                            f.key)


def test_cache_is_read_on_the_second_run(tmp_path, folder):
    args = ["-l", "simple", "--cache", tmp_path / "cache", *GABOR_ARGS]
    first = _invoke("gabor_v1", folder, "--out", tmp_path / "a.npz", *args)
    second = _invoke("gabor_v1", folder, "--out", tmp_path / "b.npz", *args)
    assert first.exit_code == 0 and second.exit_code == 0, second.output
    assert "read from the cache" not in first.output and "1 layers read from" in second.output
    a, b = load_features(tmp_path / "a.npz"), load_features(tmp_path / "b.npz")
    assert np.array_equal(a["simple"].values, b["simple"].values)
    assert a["simple"].key == b["simple"].key


@pytest.mark.parametrize(("kind", "layers"), [("attention", ["--all-layers"]),
                                              ("conv_map", ["-l", "neck", "-l", "blocks.1"])])
def test_map_cache_hits_are_reported(tmp_path, folder, kind, layers):
    """Maps read from the cache are reported as the activations' are (ExtractSummary.from_cache,
    the CLI's "read from the cache" line); a new layer on a warm cache is not counted."""
    from cortexalign.cli.extract_file import extract_to_file

    kwargs = {"features": kind, "untrained": True, "model_kwargs": SAM, "progress": False,
              "cache": tmp_path / "cache"}
    names = ["neck", "blocks.1"] if kind == "conv_map" else None
    first = extract_to_file("sam_vit_b", folder, tmp_path / "a.npz", layers=names,
                            all_layers=names is None, **kwargs)
    assert first.from_cache == ()
    res = _invoke("sam_vit_b", folder, "--out", tmp_path / "b.npz", "--features", kind, *layers,
                  "--cache", tmp_path / "cache", *SAM_ARGS)
    assert res.exit_code == 0, res.output
    assert f"{len(first.shapes)} layers read from the cache" in res.output
    a, b = load_features(tmp_path / "a.npz"), load_features(tmp_path / "b.npz")
    assert all(np.array_equal(a[n].values, b[n].values) and a[n].key == b[n].key for n in a)
    if kind == "conv_map":  # one cached layer and one new one
        third = extract_to_file("sam_vit_b", folder, tmp_path / "c.npz",
                                layers=["blocks.1", "blocks.0"], **kwargs)
        assert third.from_cache == ("blocks.1",)


def test_mat_file_reads_in_scipy_with_matlab_names(tmp_path, folder):
    out = tmp_path / "feats.mat"
    res = _invoke("gabor_v1", folder, "--out", out, "--all-layers", "--pooling", "max",
                  *GABOR_ARGS)
    assert res.exit_code == 0, res.output
    mat = scipy.io.loadmat(out)
    meta = json.loads(str(mat["metadata"][0]))
    ref = extract_features(load_model("gabor_v1", **GABOR), load_stimuli(folder),
                           load_model("gabor_v1", **GABOR).layers(), pooling="max",
                           progress=False)
    assert [e["name"] for e in meta["layers"]] == list(ref)
    for entry in meta["layers"]:
        assert re.fullmatch(r"[A-Za-z]\w{0,62}", entry["field"])
        assert np.array_equal(mat[entry["field"]], ref[entry["name"]].values)
    assert [str(c[0]) for c in mat["stimulus_ids"].ravel()] == list(load_stimuli(folder).ids)


@pytest.mark.parametrize(("kind", "layers"), [("attention", ["--all-layers"]),
                                              ("conv_map", ["-l", "neck", "-l", "blocks.1"])])
def test_maps_equal_extract(tmp_path, folder, kind, layers):
    from cortexalign.features import extract, kind_layers

    out = tmp_path / "maps.npz"
    res = _invoke("sam_vit_b", folder, "--out", out, "--features", kind, *layers, *SAM_ARGS)
    assert res.exit_code == 0, res.output
    got = load_features(out)
    model = load_model("sam_vit_b", untrained=True, **SAM)
    stim = load_stimuli(folder)
    names = kind_layers(model, kind, "all" if kind == "attention" else ["neck", "blocks.1"], {},
                        stim)
    ref = extract(model, stim, names, kind, {}, progress=False)
    assert list(got) == names and len(names) > 0
    for n in names:
        assert ref[n].values.ndim == 3 and np.array_equal(got[n].values, ref[n].values)
        assert got[n].pooling.startswith("attn:" if kind == "attention" else "conv:")


def test_map_options_reach_the_maps(tmp_path, folder):
    """--map-option reduction=rollout gives the rollout maps of attention_maps, keyed as
    rollout."""
    from cortexalign.features import kind_layers
    from cortexalign.models.attention import attention_maps

    out = tmp_path / "rollout.npz"
    res = _invoke("sam_vit_b", folder, "--out", out, "--features", "attention", "--all-layers",
                  "--map-option", "reduction=rollout", *SAM_ARGS)
    assert res.exit_code == 0, res.output
    got = load_features(out)
    model = load_model("sam_vit_b", untrained=True, **SAM)
    stim = load_stimuli(folder)
    opts = {"reduction": "rollout"}
    names = kind_layers(model, "attention", "all", opts, stim)
    images = [stim.image(i) for i in range(len(stim))]
    ref = attention_maps(model.module.eval(), model.preprocess(images), blocks=names,
                         reduction="rollout")  # independent of the extraction loop
    assert list(got) == names
    for n in names:
        np.testing.assert_allclose(got[n].values, ref[n].numpy(), rtol=0, atol=1e-6)
        assert got[n].pooling.startswith("attn:rollout")


@pytest.mark.parametrize(("args", "needles"), [
    (["-l", "simple", "--map-option", "reduction=cls"], ["map_options", "--features"]),
    (["-l", "simpel"], ["layer", "'simple'", "cortexalign layers"]),
    ([], ["layers", "cortexalign layers gabor_v1", "--all-layers"]),
    (["-l", "simple", "--all-layers"], ["layers", "--all-layers"]),
    (["-l", "simple", "--features", "atention"], ["features", "'attention'"]),
    (["-l", "simple", "--pooling", "maen"], ["pooling", "'mean'"]),
    (["-l", "simple", "--batch-size", "0"], ["batch_size", "32"]),
])
def test_bad_request_exits_with_fix_and_writes_nothing(tmp_path, folder, args, needles):
    res = _invoke("gabor_v1", folder, "--out", tmp_path / "sub" / "f.npz", *args, *GABOR_ARGS)
    assert res.exit_code != 0
    text = " ".join(res.output.split())
    assert "Fix:" in text and all(n in text for n in needles), text
    assert _leftovers(tmp_path) == []


def test_bad_suffix_lists_the_supported_ones(tmp_path, folder):
    res = _invoke("gabor_v1", folder, "--out", tmp_path / "f.csv", "-l", "simple", *GABOR_ARGS)
    text = " ".join(res.output.split())
    assert res.exit_code != 0 and "path" in text and all(s in text for s in FEATURE_FORMATS)
    assert _leftovers(tmp_path) == []


def test_existing_file_needs_overwrite(tmp_path, folder):
    out = tmp_path / "f.npz"
    out.write_bytes(b"keep me")
    res = _invoke("gabor_v1", folder, "--out", out, "-l", "simple", *GABOR_ARGS)
    assert res.exit_code != 0 and "--overwrite" in " ".join(res.output.split())
    assert out.read_bytes() == b"keep me" and _leftovers(tmp_path) == ["f.npz"]
    res = _invoke("gabor_v1", folder, "--out", out, "-l", "simple", "--overwrite", *GABOR_ARGS)
    assert res.exit_code == 0, res.output
    assert list(load_features(out)) == ["simple"] and _leftovers(tmp_path) == ["f.npz"]


def _toy(names, dtype="float32", s=4):
    rng = np.random.default_rng(1)
    ids = tuple(f"stim {i}" for i in range(s))
    return {n: Features(rng.normal(size=(s, 3, 2)).astype(dtype), ids, "toy", n, "none",
                        f"key{i}") for i, n in enumerate(names)}


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_features(_toy(["a"]), tmp_path / "new" / "deeper" / "f.npz")
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("suffix", list(FEATURE_FORMATS))
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_awkward_layer_names_round_trip(tmp_path, suffix, dtype):
    names = ["0.conv", "a-b", "a_b", "stimulus_ids", "metadata", "x" * 80, "x" * 80 + "y",
             "blocks.5"]
    feats = _toy(names, dtype)
    path = save_features(feats, tmp_path / f"f{suffix}", provenance={"note": "toy"})
    got = load_features(path)
    assert list(got) == names
    for n in names:
        assert got[n].values.dtype == dtype and np.array_equal(got[n].values, feats[n].values)
        assert got[n].stimulus_ids == feats[n].stimulus_ids and got[n].key == feats[n].key


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=90), min_size=1, max_size=8, unique=True))
def test_field_names_are_unique_matlab_names(names):
    fields = _field_names(names)
    assert list(fields) == names
    assert len(set(fields.values())) == len(names)
    assert not {"stimulus_ids", "metadata"} & set(fields.values())
    assert all(re.fullmatch(r"[A-Za-z]\w{0,62}", f, flags=re.ASCII) for f in fields.values())


def test_bad_inputs_raise_before_writing(tmp_path):
    with pytest.raises(InputError, match="same stimuli"):
        save_features({**_toy(["a"]), **_toy(["b"], s=5)}, tmp_path / "f.npz")
    with pytest.raises(InputError, match="features"):
        save_features({}, tmp_path / "f.npz")
    pickled = tmp_path / "p.npz"
    np.savez(pickled, metadata=np.array([{"format": "x"}], dtype=object))
    with pytest.raises(InputError, match="save_features"):  # refused, never unpickled
        load_features(pickled)
    plain = tmp_path / "plain.npz"
    np.savez(plain, x=np.zeros(3))
    with pytest.raises(InputError, match="metadata format"):
        load_features(plain)
    assert _leftovers(tmp_path) == ["p.npz", "plain.npz"]


def test_help_explains_the_command():
    res = runner.invoke(app, ["extract", "--help"])
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    assert "cortexalign extract" in text and "--all-layers" in text and ".mat" in text


@pytest.mark.parametrize("name", ["file", "allow_pickle"])
def test_npz_layer_named_like_a_savez_parameter_round_trips(tmp_path, name):
    # np.savez(file, *, allow_pickle, **kwds): these fields raised TypeError or were swallowed
    feats = _toy([name, "b"])
    got = load_features(save_features(feats, tmp_path / "f.npz"))
    assert list(got) == [name, "b"]
    assert np.array_equal(got[name].values, feats[name].values)


@pytest.mark.parametrize("suffix", list(FEATURE_FORMATS))
def test_unicode_ids_and_nd_values_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(2)
    ids = ("α 😀", "bé", "c", "d")
    shapes = {"four": (4, 2, 3, 5), "three": (4, 7, 3), "one": (4, 1, 1)}
    feats = {n: Features(rng.normal(size=sh).astype("float16"), ids, "toy", n, "none", "k")
             for n, sh in shapes.items()}
    got = load_features(save_features(feats, tmp_path / f"f{suffix}"))
    for n, sh in shapes.items():
        assert got[n].shape == sh and got[n].stimulus_ids == ids
        assert np.array_equal(got[n].values, feats[n].values)


def test_mat_size_limit_counts_float16_as_stored_float32(tmp_path, monkeypatch):
    from cortexalign.features import _export

    feats = _toy(["a"], "float16")  # 4 x 3 x 2 float16: 48 bytes, stored as 96
    monkeypatch.setattr(_export, "_MAT5_MAX_BYTES", 64)
    with pytest.raises(InputError, match="2 GiB"):
        save_features(feats, tmp_path / "f.mat")
    assert _leftovers(tmp_path) == []


def _damaged_files(tmp_path):
    good = save_features(_toy(["a"]), tmp_path / "good.npz")
    (tmp_path / "trunc.npz").write_bytes(good.read_bytes()[:200])
    (tmp_path / "zip.npz").write_bytes(b"PK\x03\x04 not a zip")
    import h5py

    with h5py.File(tmp_path / "group.h5", "w") as f:
        f.create_group("blocks")
        f.attrs["metadata"] = "{}"
    meta = json.loads(_read_npz(good)[1])
    meta["layers"][0]["shape"] = [5, 5]  # disagrees with the array
    np.savez(tmp_path / "shape.npz", metadata=np.array(json.dumps(meta)),
             **{meta["layers"][0]["field"]: np.zeros((4, 3, 2))})
    del meta["stimulus_ids"]
    np.savez(tmp_path / "nokey.npz", metadata=np.array(json.dumps(meta)))
    return ["trunc.npz", "zip.npz", "group.h5", "shape.npz", "nokey.npz"]


def test_damaged_or_foreign_files_raise_input_error(tmp_path):
    for name in _damaged_files(tmp_path):
        with pytest.raises(InputError, match="save_features"):
            load_features(tmp_path / name)


def test_no_hard_links_second_writer_is_refused_not_clobbered(tmp_path, monkeypatch):
    """Without hard links, a writer that starts while another is publishing the same new name
    must be refused; before, both succeeded and the first silently replaced the second."""
    import os

    def no_link(src, dst):
        raise PermissionError(1, "Operation not permitted")

    real_replace, seen = os.replace, []

    def racing_replace(src, dst):
        if not seen and str(dst).endswith("f.npz"):
            seen.append(True)
            try:  # another writer, no overwrite, arrives between the check and the rename
                save_features(_toy(["other"]), dst)
            except InputError as err:
                seen.append(err)
        return real_replace(src, dst)

    monkeypatch.setattr(os, "link", no_link)
    monkeypatch.setattr(os, "replace", racing_replace)
    save_features(_toy(["mine"]), tmp_path / "f.npz")
    assert isinstance(seen[-1], InputError)
    assert list(load_features(tmp_path / "f.npz")) == ["mine"]
    assert _leftovers(tmp_path) == ["f.npz"]
