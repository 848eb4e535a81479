"""The spiking study end to end: a shorter twin of the CPU subset (same data, models, recipe and
code path; fewer epochs) trains every family and the ANN control above chance, stores what it
measured and writes its report.

Above chance is checked independently of the study's own numbers: each trained model is
reloaded through the model registry (``snn:<name>`` / ``timm:<arch>`` with its checkpoint, as
the scoring runs load it), its predictions on the held-out images are counted here, and a
one-sided exact binomial test against chance (1/4, the classes are balanced) must give
p < 1e-4, which at 200 test images needs about 39% correct or more.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import scipy.stats
import torch
from typer.testing import CliRunner

from cortexalign.cli import app
from cortexalign.models import load_model
from cortexalign.results import ResultsStore
from cortexalign.spiking import load_image_data, to_input
from cortexalign.studies.spiking import PLANS, run_plan

PLAN = replace(PLANS["cpu"], epochs=5, n_bootstrap=0)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("spiking") / "run"
    result = run_plan(PLAN, None, out, device="cpu", progress=False, subset="cpu")
    return result, ResultsStore(out / "results.duckdb", read_only=True)


def _extra(frame):
    return [e if isinstance(e, dict) else json.loads(e) for e in frame["extra"]]


@pytest.mark.slow
def test_every_family_learns_above_chance_on_held_out_images(study):
    result, store = study
    tests = store.training_frame(kind="heldout")
    assert sorted(tests.model) == sorted(PLAN.names())
    task = load_image_data(result.out / "data" / "task.npz")
    assert len(task.test_y) == 200 and np.bincount(task.test_y).tolist() == [50] * 4
    x = to_input(torch.from_numpy(task.test_x))
    for model, extra in zip(tests.model, _extra(tests), strict=True):
        ann = model == PLAN.ann
        kwargs = {**PLAN.options(model, 4), **({} if ann else {"img_size": 32})}
        adapter = load_model(model if ann else f"snn:{model}", weights=extra["checkpoint"],
                             device="cpu", **kwargs)
        with torch.no_grad():
            correct = int((adapter.module.eval()(x).argmax(1).numpy() == task.test_y).sum())
        assert correct == extra["n_correct"], model
        p = scipy.stats.binomtest(correct, len(task.test_y), 0.25, alternative="greater").pvalue
        assert p < 1e-4, f"{model}: {correct}/200 correct, binomial p = {p:.2g}"


def test_the_store_holds_curves_energy_rates_information_and_scores(study):
    _, store = study
    rows = store.training_frame()
    epochs = rows[(rows.kind == "epoch") & (rows.name == "test_acc")]
    assert sorted(epochs.groupby("model").size().items()) == sorted(
        (m, PLAN.epochs) for m in PLAN.names())
    energy = rows[(rows.kind == "energy") & (rows.name == "energy_mj")]
    assert set(energy.model) == set(PLAN.names()) and (energy.value > 0).all()
    assert all("first_layer='once'" in e["convention"] for e in _extra(energy))
    rates = rows[rows.kind == "firing_rate"]
    snns = {PLAN.snn_name(f) for f in PLAN.families}
    assert set(rates.model) == snns and rates.value.between(0, 1).all()
    assert rates.groupby("model").value.max().gt(0).all()  # every spiking model fires
    mi = rows[rows.kind == "time_step_mi"]
    assert set(mi.model) == snns
    for extra in _extra(mi):
        m = np.asarray(extra["matrix"])
        assert m.shape == (4, 4) and np.allclose(m, m.T) and (m >= 0).all()
        assert "plug-in" in extra["estimator"]  # 64 dimensions per pair < 200 images
    scores = store.scores_frame()
    labels = {e for e in scores.model}
    assert len(labels) == 2 * len(PLAN.names())  # trained and untrained, each model
    for target in ("human IT", "monkey IT"):
        got = scores[scores.target == target]
        assert set(got.model) == labels and np.isfinite(got.value).all()
    assert scores.target.str.startswith("allen").any()


def test_the_report_shows_every_section(study):
    result, _ = study
    text = result.files["report"].read_text()
    for heading in ("## Learning: held-out accuracy", "## Energy, firing rates and time-step "
                    "information", "## Alignment with the brain"):
        assert heading in text
    for name in PLAN.names():
        assert f"| {name} |" in text
    assert "first_layer='once'" in text
    assert (result.out / "learning_curves.png").stat().st_size > 0
    assert (result.out / "alignment.png").stat().st_size > 0
    assert result.files["report_html"].is_file()


def test_the_study_is_listed_and_checks_its_request(tmp_path):
    runner = CliRunner()
    listing = runner.invoke(app, ["studies"], env={"COLUMNS": "300"})
    assert listing.exit_code == 0 and "spiking" in listing.output
    bad = runner.invoke(app, ["study", "spiking", "--out", str(tmp_path / "o"),
                              "--subset", "gpu"])
    assert bad.exit_code != 0 and "subset" in bad.output
    full = runner.invoke(app, ["study", "spiking", "--out", str(tmp_path / "o2"),
                               "--data", str(tmp_path)])
    assert full.exit_code != 0 and "CIFAR-10" in full.output


def test_data_without_the_plan_classes_is_refused_before_anything_is_written(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (8, 32, 32, 3)).astype(np.uint8)
    y = np.arange(8) % 2
    np.savez(tmp_path / "cifar10.npz", train_images=x, train_labels=y, test_images=x,
             test_labels=y, classes=np.array(["cat", "dog"]))
    with pytest.raises(ValueError, match="airplane"):
        run_plan(PLAN, tmp_path, tmp_path / "out", device="cpu", progress=False)
    assert not (tmp_path / "out").exists()
