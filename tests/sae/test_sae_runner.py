"""The config-driven SAE-BrainMap runner end to end on a tiny random ViT and a tiny NSD on disk:
planted voxels are recovered, scores land in the results store, the CLI runs and reruns skip."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from _nsd_files import BETAS_DIR, VOXELS, write_betas, write_nsd
from typer.testing import CliRunner

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.neural.fmri import nsd_stimulus_id
from cortexalign.results import ResultsStore
from cortexalign.sae.runner import brainmap_scores, run_brainmap

REPO = Path(__file__).resolve().parents[2]
TINY_VIT = {"untrained": True, "img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2,
            "num_heads": 2, "num_classes": 0}


def _config(root: Path, **update) -> dict:
    cfg = {"model": "timm:vit_tiny_patch16_224", "model_kwargs": TINY_VIT,
           "layers": ["blocks.0", "blocks.1"], "device": "cpu", "epochs": 10, "min_steps": 0,
           "images_per_chunk": 16,
           "sae": {"architecture": "topk", "expansion": 2, "k": 4, "lr": 3e-3, "batch_size": 128},
           "one_to_one": True, "n_permutations": 19, "top_units": 3, "n_images": 5,
           "selectivity_threshold": 2, "labels": str(root / "labels.csv"),
           "neural": {"root": str(root), "subject": 1, "sessions": [1],
                      "rois": ["prf-visualrois", "floc-faces"], "within": "nsdgeneral"},
           "stimuli": {"source": str(root / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5")}}
    cfg.update(update)
    return cfg


def _write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def nsd(tmp_path):
    root = tmp_path / "nsd"
    nsd_id_t = write_nsd(root)
    write_betas(root, nsd_id_t)
    ids = [nsd_stimulus_id(i) for i in dict.fromkeys(nsd_id_t)]
    (root / "labels.csv").write_text("stimulus_id,category\n" + "\n".join(
        f"{s},{'faces' if k % 2 else 'places'}" for k, s in enumerate(ids)))
    return root, nsd_id_t


def test_runner_recovers_planted_units_and_records_scores(nsd, tmp_path):
    from cortexalign.cli import app

    root, nsd_id_t = nsd
    out = tmp_path / "out"
    config = _write_config(tmp_path / "c.yaml", _config(root))
    with warnings.catch_warnings():  # a report that fails is only a warning: make it an error
        warnings.filterwarnings("error", message="SAE-BrainMap: the report was not written")
        first = run_brainmap(config, out)  # trains and checkpoints the SAEs on the tiny ViT's tokens
    assert not first.skipped and (out / "saes/blocks.1/sae.safetensors").is_file()
    html = (out / "report.html").read_text()
    assert "neural data: nsd" in html or "Natural Scenes" in html or "massive 7T fMRI" in html
    units = first.result.units
    assert len(first.result.match.voxel_ids) == len(VOXELS)
    # plant: each ROI voxel's betas are a noisy copy of a chosen unit (units that vary)
    var = {k: np.flatnonzero(units[k].std(0) > 1e-3) for k in units}
    chosen = [("blocks.0", var["blocks.0"][0]), ("blocks.1", var["blocks.1"][1]),
              ("blocks.1", var["blocks.1"][-1]), ("blocks.0", var["blocks.0"][-1])]
    image_ids = list(dict.fromkeys(nsd_id_t.tolist()))  # the responses' stimulus order
    planted = {ijk: dict(zip(image_ids, units[layer][:, j].tolist(), strict=True))
               for ijk, (layer, j) in zip(VOXELS, chosen, strict=True)}
    write_betas(root, nsd_id_t, planted)
    result = CliRunner().invoke(app, ["sae-brainmap", str(config), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert "FFA-1" in result.output
    store = ResultsStore(out / "results.duckdb", read_only=True)
    jobs = store.frame("jobs")
    # the runner's jobs: an SAE per layer (trained once: the planted run reuses them, as its
    # tokens are the same) and the matching of each run (the placeholder and the planted one)
    done = jobs[jobs["status"] == "finished"]
    assert sorted(k.split(":")[0] for k in done["job_key"]) == ["sae_brainmap"] * 2 + \
        ["sae_train"] * 2
    key = sorted(set(done["job_key"]) - {first.job_key} - set(
        k for k in done["job_key"] if k.startswith("sae_train:")))[0]
    scores = store.scores_frame(job_key=key)
    best = scores[scores["metric"] == "sae_best_r"].set_index(["target", "layer"])["value"]
    # the voxels are ordered x, y, z: (0,0,0) V1v, (1,0,0) V1v, (2,1,1) FFA-1, (3,2,1) FFA-1
    assert best[("nsd_subj01/V1v", "blocks.0")] > 0.99 and best[("nsd_subj01/FFA-1", "blocks.1")] > 0.99
    assert set(scores["target"]) >= {"nsd_subj01/all", "nsd_subj01/V1v", "nsd_subj01/FFA-1"}
    table = (out / "dictionary.csv").read_text().splitlines()[1:]
    got = [(row.split(",")[1], int(row.split(",")[2])) for row in table]
    assert got == [(layer, int(j)) for layer, j in chosen]
    assert [row.split(",")[4] for row in table] == [layer for layer, _ in chosen]  # hierarchy
    assert all(float(row.split(",")[3]) > 0.99 and float(row.split(",")[5]) <= 0.05
               for row in table)
    for name in ("best_r.nii.gz", "best_layer.nii.gz", "roi_consistency.csv", "figure.png",
                 "sae_metrics.csv", "best_layers.csv"):
        assert (out / name).is_file(), name
    # rerun: the store holds it, nothing recomputes; `cortexalign results` lists the scores
    again = CliRunner().invoke(app, ["sae-brainmap", str(config), "--out", str(out)])
    assert again.exit_code == 0 and "Already in" in again.output
    listed = CliRunner().invoke(app, ["results", str(out), "--metric", "sae_best_r"])
    assert listed.exit_code == 0 and "blocks.1" in listed.output


def test_changed_model_refuses_the_old_sae_checkpoints(nsd, tmp_path):
    root, _ = nsd
    out = tmp_path / "out"
    cfg = _config(root, epochs=1, n_permutations=0, one_to_one=False, labels=None)
    run_brainmap(_write_config(tmp_path / "a.yaml", cfg), out)
    other = {**cfg, "model_kwargs": {**TINY_VIT, "seed": 1}}
    with pytest.raises(InputError, match="trained on"):
        run_brainmap(_write_config(tmp_path / "b.yaml", other), out)
    jobs = ResultsStore(out / "results.duckdb", read_only=True).frame("jobs")
    # the first run's two SAEs and matching finished; the second stopped at its first SAE
    assert sorted(jobs["status"]) == ["failed"] + ["finished"] * 3
    assert jobs.loc[jobs["status"] == "failed", "error"].str.contains("trained on").all()


@pytest.mark.parametrize("update, error, match", [
    ({"layers": ["blocks.0", "block.1"]}, UnknownNameError, "block.1"),
    ({"neural": {"root": "ROOT", "sesions": [1]}}, InputError, "neural.sesions"),
    ({"neural": {"source": "nwb"}}, UnknownNameError, "nwb"),
    ({"stimuli": {"source": "ROOT/missing.hdf5"}}, InputError, "nsd_stimuli.hdf5"),
    ({"labels": "ROOT/none.csv"}, InputError, "labels"),
])
def test_bad_inputs_write_nothing(nsd, tmp_path, update, error, match):
    root, _ = nsd
    fixed = yaml.safe_load(yaml.safe_dump(update).replace("ROOT", str(root)))
    out = tmp_path / "out"
    with pytest.raises(error, match=match):
        run_brainmap(_write_config(tmp_path / "c.yaml", _config(root, **fixed)), out)
    assert not out.exists()


def test_every_bad_input_is_reported_at_once(nsd, tmp_path):
    """Two unknown layers, a missing labels file and a missing stimulus file: one error naming
    all four, before any weights load or anything is written."""
    from cortexalign.errors import RequestError

    root, _ = nsd
    out = tmp_path / "out"
    cfg = _config(root, layers=["blocks.0", "block.1", "blocks.99"],
                  labels=str(root / "none.csv"),
                  stimuli={"source": str(root / "missing.hdf5")})
    with pytest.raises(RequestError) as err:
        run_brainmap(_write_config(tmp_path / "c.yaml", cfg), out)
    assert len(err.value.problems) == 4
    text = str(err.value)
    for name in ("block.1", "blocks.99", "missing.hdf5", "none.csv"):
        assert name in text
    assert not out.exists()


def test_stimuli_missing_a_subject_image_are_refused(nsd, tmp_path):
    root, _ = nsd
    import h5py

    path = root / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5"
    with h5py.File(path, "a") as f:
        data = f["imgBrick"][:10]
        del f["imgBrick"]
        f.create_dataset("imgBrick", data=data)
    with pytest.raises(InputError, match="outside"):
        run_brainmap(_write_config(tmp_path / "c.yaml", _config(root)), tmp_path / "out")
    assert not (tmp_path / "out").exists() and (root / BETAS_DIR).is_dir()


def test_scores_are_the_match_reductions():
    """brainmap_scores against explicit max/mean over each ROI's voxels."""
    from types import SimpleNamespace

    from cortexalign.neural import make_responses
    from cortexalign.sae.match import match_units_to_voxels, voxel_dictionary
    from cortexalign.sae.objectives import SAEMetrics

    g = np.random.default_rng(0)
    units = {"a": g.random((30, 6)), "b": g.random((30, 5))}
    vox = make_responses(g.standard_normal((30, 4)), [f"s{i}" for i in range(30)],
                         coords={"roi": ["X", "X", "Y", ""], "noise_ceiling": [64.0, 36, 100, 1]})
    match = match_units_to_voxels(units, vox)
    metrics = SAEMetrics(**{f: 0.0 for f in SAEMetrics.__dataclass_fields__})
    res = SimpleNamespace(match=match, units=units, dictionary=voxel_dictionary(match),
                          sae_metrics={"a": metrics, "b": metrics}, permutation=None,
                          roi_rsa={})
    rows = {(r.layer, r.target, r.metric): r for r in brainmap_scores(res, vox, model="m",
                                                                      model_id="m")}
    for li, layer in enumerate(("a", "b")):
        r_kn = np.corrcoef(units[layer].T, vox.values.T)[:units[layer].shape[1], -4:]
        best_n = r_kn.max(0)
        assert rows[(layer, "responses/X", "sae_best_r")].value == pytest.approx(best_n[:2].max(), abs=1e-5)
        x = rows[(layer, "responses/X", "sae_mean_best_r")]
        assert x.value == pytest.approx(best_n[:2].mean(), abs=1e-5)
        assert x.ceiling_low == pytest.approx((0.8 + 0.6) / 2)
        assert rows[(layer, "responses/all", "sae_best_r")].value == pytest.approx(best_n.max(), abs=1e-5)
        assert rows[(layer, "responses/Y", "sae_best_r")].extra["layer_index"] == li


def test_repo_config_options_are_loader_arguments():
    """configs/sae_brainmap.yaml names only real load_nsd options (checked without data)."""
    import inspect

    from cortexalign.sae.pipeline import load_brainmap_config
    from cortexalign.sae.runner import VOXEL_SOURCES

    cfg = load_brainmap_config(REPO / "configs" / "sae_brainmap.yaml")
    params = inspect.signature(VOXEL_SOURCES[cfg.neural.get("source", "nsd")]).parameters
    assert set(cfg.neural) - {"source"} <= set(params)
    assert cfg.stimuli["source"].endswith("nsd_stimuli.hdf5") and cfg.layers_per_pass == 2


def test_a_killed_analysis_resumes_after_its_last_sae(nsd, tmp_path, monkeypatch):
    """SAE-BrainMap runs as jobs of the runner: killed while training the second layer's SAE,
    a rerun trains only that one (the first is a finished job) and gives the uninterrupted
    run's dictionary and scores."""
    import cortexalign.sae.runner as runner_module

    root, _ = nsd
    config = _write_config(tmp_path / "c.yaml", _config(root, epochs=1, n_permutations=0,
                                                        one_to_one=False, labels=None))
    whole = run_brainmap(config, tmp_path / "whole")
    real, trained = runner_module.train_or_load_sae, []

    def train(layer, *args, kill: str = "", **kwargs):
        if layer == kill:
            raise KeyboardInterrupt  # think: SIGINT while this SAE trains
        trained.append(layer)
        return real(layer, *args, **kwargs)

    out = tmp_path / "out"
    monkeypatch.setattr(runner_module, "train_or_load_sae",
                        lambda *a, **k: train(*a, kill="blocks.1", **k))
    with pytest.raises(KeyboardInterrupt):
        run_brainmap(config, out)
    store = ResultsStore(out / "results.duckdb", read_only=True)
    assert store.frame("runs")["status"].tolist() == ["interrupted"]
    assert [k.split(":")[0] for k in store.finished_jobs()] == ["sae_train"]
    trained.clear()
    monkeypatch.setattr(runner_module, "train_or_load_sae", train)
    again = run_brainmap(config, out)
    assert trained == ["blocks.1"] and not again.skipped
    assert (out / "dictionary.csv").read_text() == (tmp_path / "whole" / "dictionary.csv").read_text()
    cols = ["layer", "target", "metric", "value"]
    assert again.scores[cols].equals(whole.scores[cols])
    assert run_brainmap(config, out).skipped and trained == ["blocks.1"]
