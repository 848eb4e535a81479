"""A config that names catalogue entries instead of paths: the run fetches them first, then runs;
offline it fails before anything is written, naming the fetch command; a model's ``weights`` may
name a weights entry."""

from __future__ import annotations

import hashlib

import _layouts  # tests/fetch is on sys.path (conftest)
import pytest

CONFIG = {
    "name": "fetched-allen",
    "stimuli": {"source": "allen-ophys"},
    "models": [{"name": "gabor_v1", "layers": ["simple"]}],
    "neural": [{"source": "allen-ophys", "options": {"area": "VISal", "statistic": "mean"}}],
    "metrics": [{"name": "rsa"}],
    "n_bootstrap": 0,
    "batch_size": 4,
    "device": "cpu",
}


def _serve_tiny_sam(srv, home, monkeypatch):
    """A tiny encoder saved in segment-anything's key layout, served as sam_vit_b_01ec64.pth
    (the entry's md5 set to the fixture's); returns the model it was saved from."""
    import torch

    import cortexalign.fetch._weights as weights_mod
    from cortexalign.models import load_model

    tiny = load_model("sam_vit_b", untrained=True, tiny=True, seed=3, device="cpu")
    official = {"image_encoder." + k.replace(".mlp.fc1.", ".mlp.lin1.").replace(
        ".mlp.fc2.", ".mlp.lin2."): v for k, v in tiny.module.state_dict().items()}
    ckpt = home.parent / "sam_vit_b_tiny.pth"
    torch.save(official, ckpt)
    body = ckpt.read_bytes()
    rf = weights_mod.WEIGHT_FILES["sam-vit-b"]
    monkeypatch.setitem(weights_mod.WEIGHT_FILES, "sam-vit-b",
                        rf.__class__(**{**rf.__dict__, "md5": hashlib.md5(body).hexdigest()}))
    srv.add("/segment_anything/sam_vit_b_01ec64.pth", body)
    return tiny


def test_a_config_naming_a_source_fetches_it_then_runs(server, home, tmp_path, monkeypatch):
    from cortexalign.bench._run import run_experiment

    srv, base = server
    for path, body in _layouts.allen_ophys(tmp_path).items():
        srv.add(path, body)
    _serve_tiny_sam(srv, home, monkeypatch)
    monkeypatch.setenv("CORTEXALIGN_MIRROR", base)
    cfg = dict(CONFIG, models=CONFIG["models"] + [
        {"name": "sam_vit_b", "weights": "sam-vit-b", "kwargs": {"tiny": True},
         "layers": ["blocks.3"]}])
    summary = run_experiment(cfg, tmp_path / "run", progress=False)
    assert summary.ok and summary.n_done == 2
    assert (home / "sam-vit-b/sam_vit_b_01ec64.pth").is_file()
    fetched = sorted(p.name for p in (home / "allen-ophys/ophys_experiment_data").glob("*.nwb"))
    assert fetched == ["501021421.nwb"]  # the VISal experiment only
    assert len(srv.gets("/visual-coding-2p/ophys_experiment_data/501021421.nwb")) == 1
    from cortexalign.results import ResultsStore

    scores = ResultsStore(tmp_path / "run/results.duckdb", read_only=True).scores_frame()
    assert len(scores) == 2 and set(scores["target"]) == {"allen-ophys"}
    assert any(m.endswith("@file:sam_vit_b_01ec64.pth") for m in scores["model_id"])
    # a rerun finds everything fetched: no new request at all
    from cortexalign.bench import load_config
    from cortexalign.fetch.sources import fetch_config_sources

    n_requests = len(srv.log)
    assert [r.files[0].status for r in fetch_config_sources(load_config(cfg))] == \
        ["present", "present", "present"]
    assert len(srv.log) == n_requests


def test_offline_a_config_naming_a_missing_source_fails_at_once(home, tmp_path, monkeypatch,
                                                                no_network):
    from cortexalign.bench._run import run_experiment
    from cortexalign.fetch import OfflineError

    monkeypatch.setenv("CORTEXALIGN_OFFLINE", "1")
    cfg = dict(CONFIG, models=[{"name": "sam_vit_b", "weights": "sam-vit-b"}])
    with pytest.raises(OfflineError) as err:
        run_experiment(cfg, tmp_path / "run", progress=False)
    msg = str(err.value)
    assert "CORTEXALIGN_OFFLINE=1 is set" in msg
    assert "`cortexalign fetch allen-ophys area=VISal` (neural[0], stimuli)" in msg
    assert "`cortexalign fetch sam-vit-b` (models[0].weights)" in msg
    assert not (tmp_path / "run").exists()


def test_weights_naming_an_entry_load_the_fetched_checkpoint(server, home, monkeypatch):
    """``weights="sam-vit-b"`` fetches the official file and converts it on load; the default
    weights of a SAM-family entry are the fetched checkpoint once it is there."""
    import torch

    from cortexalign.models import load_model

    srv, base = server
    tiny = _serve_tiny_sam(srv, home, monkeypatch)
    monkeypatch.setenv("CORTEXALIGN_MIRROR", base)
    by_name = load_model("sam_vit_b", weights="sam-vit-b", tiny=True, device="cpu")
    assert by_name.model_id.endswith("@file:sam_vit_b_01ec64.pth")
    monkeypatch.setenv("CORTEXALIGN_OFFLINE", "1")  # the default now finds it, offline
    default = load_model("sam_vit_b", tiny=True, device="cpu")
    assert default.model_id.endswith("@fetched:sam_vit_b_01ec64.pth")
    for k, v in tiny.module.state_dict().items():
        assert torch.equal(default.module.state_dict()[k], v)
        assert torch.equal(by_name.module.state_dict()[k], v)


@pytest.mark.parametrize("model,entry", [("sam_vit_b", "sam-vit-b"), ("sam2_hiera_t",
                                                                    "sam2-hiera-t"),
                                         ("mobile_sam", "mobile-sam")])
def test_sam_family_default_weights_offline_fail_at_once_with_the_fix(home, monkeypatch,
                                                                      no_network, model, entry):
    from cortexalign.errors import InputError
    from cortexalign.models import load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match=f"cortexalign fetch {entry}.*weights=PATH"):
        load_model(model, tiny=True, device="cpu")


def test_nsd_as_a_config_source_fetches_and_aligns(server, home, tmp_path, monkeypatch):
    """``source: nsd`` (neural and stimuli): the options are both the fetch filters and
    load_nsd's arguments; the stimuli are the subject's images of those sessions."""
    from cortexalign.errors import InputError
    from cortexalign.fetch import plan
    from cortexalign.fetch.sources import fetch_config_sources  # noqa: F401 (registers)
    from cortexalign.neural import load_neural
    from cortexalign.stimuli import load_stimuli

    srv, base = server
    files = {f.path for p in ({"subject": 1, "sessions": 1},
                              {"subject": 1, "sessions": 1, "parts": "design,stimuli"})
             for f in plan("nsd", p).files}
    for path, body in _layouts.nsd(tmp_path, sorted(files)).items():
        srv.add(path, body)
    monkeypatch.setenv("CORTEXALIGN_MIRROR", base)
    options = {"subject": 1, "sessions": [1], "rois": ["prf-visualrois"]}
    with pytest.raises(InputError, match="--agree-terms"):
        load_neural("nsd", **options)
    responses = load_neural("nsd", **options, agree_terms=True)
    stimuli = load_stimuli("nsd", subject=1, sessions=[1], agree_terms=True)
    assert responses.sizes["neuroid"] == 2
    assert sorted(responses["stimulus"].values.tolist()) == sorted(stimuli.ids)
    assert (home / "nsd/nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5").is_file()
