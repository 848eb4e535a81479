"""Every catalogue entry fetched from a local server in its source's real layout, through
``--mirror``: download, resume after a cut, checksum refusal, and the loader reading the result."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import zipfile
from urllib.parse import urlsplit

import _layouts  # tests/fetch is on sys.path (conftest)
import pytest

import cortexalign.fetch._weights as weights_mod
from cortexalign.errors import InputError, UnknownNameError
from cortexalign.fetch import SOURCES, WEIGHT_FILES, FetchError, fetch, fetch_command, plan

FAKE = b"\x80\x02fake checkpoint " + bytes(range(256)) * 400


def _path(url: str) -> str:
    return urlsplit(url).path


def _serve_weights(srv, name: str, **faults) -> bytes:
    rf = WEIGHT_FILES[name]
    body = FAKE
    if rf.unpack == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(f"weights/{rf.unpack_member}", FAKE)
        body = buf.getvalue()
    srv.add(_path(rf.url), body, hub=rf.server_digest == "hf-sha256", **faults)
    return body


def _publish(monkeypatch, name: str, body: bytes) -> None:
    """Give the entry the fixture's digest, of the same kind as its published one."""
    rf = WEIGHT_FILES[name]
    kw = {}
    if rf.md5:
        kw["md5"] = hashlib.md5(body).hexdigest()
    if rf.sha256:
        kw["sha256"] = hashlib.sha256(body).hexdigest()
    if rf.git_sha1:
        kw["git_sha1"] = hashlib.sha1(f"blob {len(body)}\0".encode() + body).hexdigest()
    monkeypatch.setitem(weights_mod.WEIGHT_FILES, name, dataclasses.replace(rf, **kw))


@pytest.mark.parametrize("name", sorted(WEIGHT_FILES))
def test_weights_entry_downloads_resumes_and_checks(server, home, monkeypatch, name):
    srv, base = server
    body = _serve_weights(srv, name, cut=9000)
    _publish(monkeypatch, name, body)
    result = fetch(name, mirror=base)
    got = result.files[0]
    assert got.path == home / name / WEIGHT_FILES[name].path
    assert got.path.read_bytes() == FAKE  # unpacked where the source ships a zip
    assert [g.range for g in srv.gets(_path(WEIGHT_FILES[name].url))] == [None, "bytes=9000-"]
    assert got.checked != "size" or WEIGHT_FILES[name].checksum() == "size"


@pytest.mark.parametrize("name", [n for n in sorted(WEIGHT_FILES)
                                  if WEIGHT_FILES[n].checksum() != "size"])
def test_weights_entry_refuses_a_file_that_is_not_the_published_one(server, home, name):
    srv, base = server
    # published digests (md5, sha256, git blob) do not match a fake file; hub digests are the
    # server's, so the server sends a corrupted body with the original's digest
    _serve_weights(srv, name, corrupt=WEIGHT_FILES[name].server_digest is not None)
    with pytest.raises(FetchError, match="does not match") as err:
        fetch(name, mirror=base)
    assert base in str(err.value)
    assert not (home / name / WEIGHT_FILES[name].path).exists()


def test_list_covers_the_issue_entries():
    names = set(SOURCES.names())
    assert {"allen-ophys", "allen-ecephys", "nsd", "sam-vit-b", "sam-vit-l", "sam-vit-h",
            "sam2-hiera-t", "sam2-hiera-s", "sam2-hiera-b-plus", "sam2-hiera-l", "mobile-sam",
            "efficient-sam-vit-t", "efficient-sam-vit-s", "edge-sam", "edge-sam-3x",
            "clip-vit-b16", "open-clip-vit-b16", "timm:<name>"} <= names
    for entry in SOURCES.entries():
        source = entry.obj
        assert source.weight and source.terms and source.terms_url.startswith("https://")
        assert source.homepage.startswith("https://") and source.loader


def test_allen_ophys_filters_layout_and_loader(server, home, tmp_path):
    srv, base = server
    for path, body in _layouts.allen_ophys(tmp_path).items():
        srv.add(path, body, cut=3000 if path.endswith("501940850.nwb") else None)
    result = fetch("allen-ophys", {"area": "VISp"}, mirror=base)
    root = home / "allen-ophys"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
                  and ".partial" not in p.parts) == [
        "experiment_containers.json", "ophys_experiment_data/501940850.nwb",
        "ophys_experiments.json"]  # session A (502000000) never: it shows no natural scenes
    assert {f.checked for f in result.files} == {"S3 ETag md5"}
    assert srv.gets("/visual-coding-2p/ophys_experiment_data/501940850.nwb")[-1].range == \
        "bytes=3000-"
    from cortexalign.neural import NEURAL

    responses = NEURAL.get("allen.ophys_natural_scenes")(path=str(root))
    assert set(responses["area"].values) == {"VISp"} and responses.sizes["stimulus"] == 4
    by_cre = plan("allen-ophys", {"cre_line": "Sst", "cells": "true"}, mirror=base)
    assert [f.path for f in by_cre.files][2:] == ["ophys_experiment_data/501021421.nwb",
                                                  "cell_specimens.json"]
    assert [f.path for f in plan("allen-ophys", {"depth": "200-300"}, mirror=base).files][2:] \
        == ["ophys_experiment_data/501021421.nwb"]
    with pytest.raises(InputError, match="match at least one"):
        plan("allen-ophys", {"area": "VISrl"}, mirror=base)
    with pytest.raises(UnknownNameError, match="did you mean 'area'|Did you mean 'area'"):
        plan("allen-ophys", {"areas": "VISp"}, mirror=base)


def test_allen_ecephys_sessions_and_templates(server, home, tmp_path, write_ecephys):
    srv, base = server
    session, counts, _, _ = write_ecephys()
    for path, body in _layouts.allen_ecephys(tmp_path, session).items():
        srv.add(path, body)
    result = fetch("allen-ecephys", {"area": "VISl"}, mirror=base, jobs=8)
    root = home / "allen-ecephys"
    assert (root / "session_715093703/session_715093703.nwb").is_file()
    assert not (root / "session_766640955").exists()  # functional_connectivity: no scenes
    assert len(list((root / "natural_scene_templates").glob("*.tiff"))) == 118
    assert len(result.files) == 4 + 1 + 118
    from cortexalign.neural import NEURAL
    from cortexalign.stimuli import load_bundled

    with pytest.warns(UserWarning, match="2 of 5 units removed by the quality filter"):
        units = NEURAL.get("allen.ecephys_natural_scenes")(path=str(root))
    assert units.sizes["neuroid"] == counts.shape[0] - 2
    assert len(load_bundled("allen.natural_scenes", path=str(root))) == 118


def test_nsd_needs_the_agreement_then_fetches_a_loadable_root(server, home, tmp_path):
    srv, base = server
    filters = {"subject": 1, "sessions": 1}
    files = [f.path for f in plan("nsd", filters).files]
    assert "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR/" \
           "betas_session01.nii.gz" in files and "nsddata/experiments/nsd/nsd_expdesign.mat" in files
    for path, body in _layouts.nsd(tmp_path, files).items():
        srv.add(path, body)
    with pytest.raises(InputError, match="agree_terms.*--agree-terms"):
        fetch("nsd", filters, mirror=base)
    assert not (home / "nsd").exists()
    fetch("nsd", filters, mirror=base, agree_terms=True)
    from cortexalign.neural import load_nsd

    responses = load_nsd(home / "nsd", subject=1, sessions=[1], rois=["prf-visualrois"])
    assert responses.sizes["neuroid"] == 2 and responses.sizes["stimulus"] > 10
    fs = [f.path for f in plan("nsd", {"space": "fsaverage", "parts": "betas,surfaces"}).files]
    assert "nsddata_betas/ppdata/subj01/fsaverage/betas_fithrf_GLMdenoise_RR/" \
           "lh.betas_session01.mgh" in fs and "nsddata/freesurfer/subj01/surf/rh.pial" in fs
    with pytest.raises(InputError, match="sessions 1-30"):
        plan("nsd", {"subject": 4, "sessions": "1-31"})


def test_dry_run_lists_sizes_without_downloading(server, home):
    srv, base = server
    srv.add(_path(WEIGHT_FILES["sam2-hiera-t"].url), FAKE)
    p = plan("sam2-hiera-t", mirror=base)
    assert p.present == [False] and p.sizes == {"sam2_hiera_tiny.pt": len(FAKE)}  # from HEAD
    assert not srv.gets(_path(WEIGHT_FILES["sam2-hiera-t"].url))
    assert not (home / "sam2-hiera-t").exists()
    assert fetch_command("allen-ophys", {"area": ["VISp", "VISl"], "limit": 2}) == \
        "cortexalign fetch allen-ophys area=VISp,VISl limit=2"
