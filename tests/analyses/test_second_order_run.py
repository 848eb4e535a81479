"""Both analyses from a config, end to end: run, store, report, and `results --discriminability`
on the run's feature cache (30 random images in an .npz, simulated regions, Gabor models: no
weights; examples/08_alignment_patterns.py runs the bundled images and human IT)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cortexalign.analyses import save_regions, simulate_regions
from cortexalign.bench import load_config, run_experiment
from cortexalign.cli import app
from cortexalign.reports import write_summary
from cortexalign.results import ResultsStore

N_IMAGES = 30
TINY = {"image_size": 32, "image_deg": None, "frequencies": [0.1, 0.25], "n_orientations": 4}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("so")
    rng = np.random.default_rng(0)
    ids = [f"im{i:02d}" for i in range(N_IMAGES)]
    np.savez(root / "images.npz", images=rng.integers(0, 256, (N_IMAGES, 48, 48, 3), np.uint8),
             stimulus_ids=np.asarray(ids))
    regions = simulate_regions(n_stimuli=len(ids), n_regions=4, n_subjects=3, n_neuroids=12,
                               seed=3, region_names=["VISp", "VISl", "VISal", "VISam"],
                               stimulus_ids=ids)
    cre = ["Cux2" if s != "sub1" else "Rorb" for s in regions["subject"].values]
    regions = regions.assign_coords(cre_line=("neuroid", cre))
    save_regions(regions, root / "regions.npz")
    cfg = load_config({
        "name": "second-order",
        "stimuli": {"source": str(root / "images.npz")},
        "models": [{"name": "gabor_v1", "label": "gabor grid", "layers": ["simple", "complex"],
                    "pooling": "grid4", "kwargs": TINY},
                   {"name": "gabor_v1", "label": "gabor mean", "layers": ["simple", "complex"],
                    "kwargs": TINY}],
        "neural": [{"source": str(root / "regions.npz"), "label": "regions"},
                   {"source": str(root / "regions.npz"), "label": "areas",
                    "split_by": ["area"]}],
        "metrics": [{"name": "rsa"}, {"name": "rsa", "options": {"rdm_method": "euclidean"}},
                    {"name": "cka_linear"},
                    {"name": "ridge", "options": {"alphas": [1.0, 100.0], "inner_folds": 3,
                                                  "n_folds": 3}}],
        "patterns": [{"target": "regions", "region_by": ["area"], "n_permutations": 19,
                      "n_bootstrap": 10}],
        "discriminability": {"rules": ["best", "cv"], "n_bootstrap": 20, "n_folds": 3},
        "n_bootstrap": 0, "batch_size": 30, "device": "cpu"})
    summary = run_experiment(cfg, root / "out", progress=False)
    write_summary(root / "out")  # what `cortexalign run` writes after the runner
    return root / "out", summary


def test_config_run_stores_patterns_and_discriminability(finished_run):
    out, summary = finished_run
    assert summary.ok, summary.failures
    rows = ResultsStore(out / "results.duckdb", read_only=True).second_order_frame()
    brain = rows[rows["kind"] == "brain_row"]
    assert list(brain["name"]) == ["VISp", "VISl", "VISal", "VISam"]
    pats = rows[rows["kind"] == "pattern"]
    assert set(pats["model"]) == {"gabor grid", "gabor mean"} and len(pats) == 8
    assert pats["p_value"].between(0.05, 1).all()  # 1 / 20 is the smallest possible
    summ = rows[rows["kind"] == "summary"]
    assert set(zip(summ["target"], summ["metric"], summ["rule"], strict=True)) == {
        (t, m, r)
        for t in ("regions", "areas/VISp", "areas/VISl", "areas/VISal", "areas/VISam")
        for m in ("rsa:correlation:spearman", "rsa:euclidean:spearman", "cka_linear", "ridge")
        for r in ("best", "cv")}
    html = (out / "report.html").read_text()
    assert "Alignment patterns across regions" in html and "layer rule: cv" in html


def test_results_discriminability_command(finished_run):
    out, _ = finished_run
    res = CliRunner().invoke(app, ["results", str(out), "--discriminability", "--n-bootstrap",
                                   "15", "--rule", "best", "--target", "areas/VISl"])
    assert res.exit_code == 0, res.output
    assert "areas/VISl | rsa:correlation:spearman | layer rule: best" in res.output
    assert "models told apart" in res.output and "regions |" not in res.output
    rows = ResultsStore(out / "results.duckdb", read_only=True).second_order_frame(
        analysis="discriminability", kind="summary")
    assert json.loads(rows[rows["target"] == "areas/VISl"]["extra"].iloc[-1])["n_bootstrap"] == 15


def test_patterns_of_mouse_areas_by_cre_lines(finished_run, tmp_path):
    out, _ = finished_run
    cfg = load_config({
        "name": "mouse", "stimuli": {"source": str(out.parent / "images.npz")},
        "models": [{"name": "gabor_v1", "layers": ["simple", "complex"], "kwargs": TINY}],
        "neural": [{"source": str(out.parent / "regions.npz"), "label": "mouse"}],
        "metrics": [{"name": "rsa"}],
        "patterns": [{"target": "mouse", "region_by": ["area", "cre_line"],
                      "n_permutations": 0, "n_bootstrap": 0}],
        "n_bootstrap": 0, "batch_size": 30, "device": "cpu",
        "cache_dir": str(out / "cache")})  # the first run's features: no extraction
    summary = run_experiment(cfg, tmp_path / "mouse", progress=False)
    assert summary.ok, summary.failures
    brain = ResultsStore(tmp_path / "mouse" / "results.duckdb", read_only=True) \
        .second_order_frame(kind="brain_row")
    assert set(brain["name"]) == {f"{a}/{c}" for a in ("VISp", "VISl", "VISal", "VISam")
                                  for c in ("Cux2", "Rorb")}


def test_a_bad_pattern_target_fails_the_analysis_not_the_run(finished_run, tmp_path):
    out, _ = finished_run
    cfg = load_config({
        "name": "bad", "stimuli": {"source": str(out.parent / "images.npz")},
        "models": [{"name": "gabor_v1", "layers": ["simple"], "kwargs": TINY}],
        "neural": [{"source": str(out.parent / "regions.npz"), "label": "areas",
                    "split_by": ["area"]}],
        "metrics": [{"name": "rsa"}],
        "patterns": [{"target": "nope"}], "n_bootstrap": 0, "device": "cpu",
        "batch_size": 30, "cache_dir": str(out / "cache")})
    summary = run_experiment(cfg, tmp_path / "bad", progress=False)
    assert [f["job"] for f in summary.failures] == ["patterns nope"]
    assert "patterns.target" in summary.failures[0]["error"]



def test_cv_best_layer_table_names_its_rule_and_is_not_optimistic(finished_run, tmp_path):
    """The simulated regions do not depend on the images, so every layer's score is noise: the
    best of an untrained ResNet's many layers, chosen on the data it is scored on, wins by
    chance; the cross-validated table is lower, and both tables say their rule."""
    import pandas as pd

    from cortexalign.bench import grid_best_layers
    from cortexalign.reports import best_layers

    root = finished_run[0].parent
    cfg = load_config({
        "name": "noise-layers", "stimuli": {"source": str(root / "images.npz")},
        "models": [{"name": "timm:resnet10t", "untrained": True, "label": "resnet"}],
        "neural": [{"source": str(root / "regions.npz"), "label": "areas",
                    "split_by": ["area", "subject"]}],  # 12 independent noise targets
        "metrics": [{"name": "rsa"}], "n_bootstrap": 0, "batch_size": 30, "device": "cpu"})
    out = tmp_path / "noise"
    assert run_experiment(cfg, out, progress=False).ok
    res = CliRunner().invoke(app, ["results", str(out), "--layer-rule", "cv", "--n-folds", "3"])
    assert res.exit_code == 0, res.output
    assert "layer rule: cv" in res.output and "cross-validated" in res.output
    cv = pd.read_csv(out / "best_layers_cv.csv")
    assert set(cv["rule"]) == {"cv"} and not cv["skipped"].notna().any()
    assert cv["layer"].str.count(",").eq(2).all()  # one layer per fold
    best = grid_best_layers(out, rule="best").set_index("target")
    stored = best_layers(ResultsStore(out / "results.duckdb", read_only=True).scores_frame())
    np.testing.assert_allclose(best["value"], stored.set_index("target").loc[best.index,
                                                                             "value"], atol=1e-10)
    gain = best["value"] - cv.set_index("target").loc[best.index, "value"]
    # per target the held-out score on 10-stimulus folds is noisy; over the 12 targets the
    # winner's curse shows (analyses/test_discriminability.py checks it with many simulations)
    assert len(gain) == 12 and gain.mean() > 0
