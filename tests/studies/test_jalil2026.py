"""The jalil2026 study end to end on a small simulation: the simulator's files read back through
the package's Allen readers, the study's CPU path through the one runner, and the planted (area,
Cre line, cortical layer) group recovered with p <= 0.05 after FDR.

The simulation has the ``--size cpu`` design (6 areas x 7 Cre line / depth experiments: 42
groups, so FDR corrects over 42 tests) and the study runs the ``cpu`` plan's statistics (its
scenes, metrics and permutation counts); only the model (a tiny SAM), the cells per group, the
trials and the image size are smaller."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from cortexalign.cli import app
from cortexalign.neural.allen import cortical_layer, load_ophys_natural_scenes
from cortexalign.neural.allen._datasets import find_nwb_files, natural_scenes
from cortexalign.results import ResultsStore
from cortexalign.studies.jalil2026 import PLANS, Planted, SimSpec, run_plan, simulate_spec
from cortexalign.studies.jalil2026._design import ALL_AREAS, CPU_EXPERIMENTS

TINY_SAM = {"name": "sam_vit_b", "untrained": True, "kwargs": {"tiny": True, "img_size": 128}}
SPEC = SimSpec(n_images=PLANS["cpu"].n_scenes, image_hw=(96, 120), trials=8, cells=4,
               coco_images=2, coco_hw=(64, 64),
               planted=Planted(model=TINY_SAM, block="blocks.3.attn", area="VISal",
                               cre_line="Cux2-CreERT2", depth=175))
PLAN = replace(PLANS["cpu"], models=("sam_vit_b", "pixels"),
               kwargs={"tiny": True, "img_size": 128},
               layers={"sam_vit_b": {"attention": ["blocks.1.attn", "blocks.3.attn"],
                                     "conv_map": ["neck"]}},
               min_neuroids=3, seg_images=2, profile_repeats=1, batch_size=32)
GROUPS = {f"allen/{a}/{c.split('-')[0]}/{cortical_layer(c, d)}"
          for a in ALL_AREAS for c, d in CPU_EXPERIMENTS}
PLANTED = "allen/VISal/Cux2/L2/3"


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    return simulate_spec(tmp_path_factory.mktemp("jalil") / "sim", SPEC, seed=0, progress=False)


@pytest.fixture(scope="module")
def study(sim, tmp_path_factory):
    out = tmp_path_factory.mktemp("jalil_run") / "run"
    result = run_plan(sim, out, PLAN, device="cpu", progress=False)
    frame = ResultsStore(out / "results.duckdb", read_only=True).scores_frame()
    frame["extra"] = [json.loads(e) if isinstance(e, str) else e for e in frame["extra"]]
    return result, frame


def test_simulation_reads_back_through_the_allen_readers(sim):
    files = find_nwb_files(sim / "allen", "ophys")
    assert len(files) == SPEC.n_experiments
    da = load_ophys_natural_scenes(files, statistic="peak")
    assert da.sizes["stimulus"] == SPEC.n_images and da.sizes["repetition"] == SPEC.trials
    assert da.sizes["neuroid"] == SPEC.n_experiments * SPEC.cells
    layers = set(zip(da["cre_line"].values, da["depth"].values, da["cortical_layer"].values,
                     strict=True))
    assert layers == {(c, d, cortical_layer(c, d)) for c, d in CPU_EXPERIMENTS}
    assert {"L2/3", "L4", "L5", "L6"} <= {lay for _, _, lay in layers}
    assert set(da["area"].values) == set(ALL_AREAS)
    stimuli = natural_scenes(str(sim / "allen"))
    assert stimuli.ids == tuple(da["stimulus"].values) and stimuli.image(0).shape[:2] == (96, 120)
    cells = json.loads((sim / "allen" / "cell_specimens.json").read_text())
    assert sorted(str(c["cell_specimen_id"]) for c in cells) == sorted(da["neuroid"].values)
    coco = json.loads((sim / "coco" / "annotations" / "instances.json").read_text())
    assert len(coco["images"]) == 2 and coco["annotations"]


def test_planted_group_is_recovered_after_fdr(study):
    """The planted group tops the 42 groups at the planted block, with p_FDR <= 0.05 (BH over
    the grid, at the cpu plan's permutation count); no other group passes."""
    result, frame = study
    rows = frame[(frame["model"] == "sam_vit_b attention") & (frame["layer"] == "blocks.3.attn")
                 & (frame["metric"] == "map_pearson")]
    assert set(rows["target"]) == GROUPS and len(GROUPS) == 42
    by_group = dict(zip(rows["target"], zip(rows["value"], rows["extra"], strict=True),
                        strict=True))
    value, extra = by_group[PLANTED]
    assert extra["p_fdr"] <= 0.05
    assert value == max(v for v, _ in by_group.values())
    assert all(e["p_fdr"] > 0.05 for t, (_, e) in by_group.items() if t != PLANTED)
    assert "recovered" in (result.out / "planted.md").read_text()


def test_unplanted_groups_are_calibrated(study):
    """Every other group's neurons have no spatial structure, so their permutation p-values are
    uniform: about 5% at or below 0.05 over every model, layer and tested metric, and none
    significant after FDR."""
    _, frame = study
    tested = frame[frame["p_value"].notna() & (frame["target"] != PLANTED)]
    assert set(tested["metric"]) == {"map_pearson", "rsa"}  # the cpu plan: RMSE unpermuted
    p = tested["p_value"].to_numpy()
    assert len(p) == 41 * 4 * 2
    assert (p <= 0.05).mean() < 0.1 and 0.35 < np.median(p) < 0.65
    assert not any(e["p_fdr"] <= 0.05 for e in tested["extra"])


def test_every_group_scored_with_cards_and_report(study):
    result, frame = study
    for (model, metric), sub in frame.groupby(["model", "metric"]):
        assert set(sub["target"]) == GROUPS, (model, metric)
    assert set(frame["metric"]) == {"map_rmse", "map_pearson", "rsa", "ridge"}
    cards = ResultsStore(result.out / "results.duckdb", read_only=True).frame("model_cards")
    assert set(cards["model_id"]) == set(frame["model_id"])
    sam = cards[cards["model_id"].str.startswith("sam_vit_b")]
    assert len(sam) == 1 and 0 <= sam["miou"].iloc[0] <= 1 and sam["params"].iloc[0] > 0
    pixels = cards[cards["model_id"].str.startswith("pixels")]
    assert len(pixels) == 1 and pixels["params"].iloc[0] == 0  # the baseline: no mIoU
    html = result.files["report"].read_text()
    assert "Accuracy / efficiency / alignment" in html
    table = result.files["comparisons"].read_text()
    assert "excitatory vs inhibitory" in table and "VISal" in table


def test_study_refuses_missing_data_and_unknown_subset(tmp_path):
    res = CliRunner().invoke(app, ["study", "jalil2026", "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "cortexalign simulate jalil2026" in res.output
    res = CliRunner().invoke(app, ["study", "jalil2026", "--data", str(tmp_path), "--out",
                                   str(tmp_path / "o"), "--subset", "gpu"])
    assert res.exit_code != 0 and "--subset" in res.output
    assert not (tmp_path / "o").exists()


def test_simulate_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "x").write_text("")
    res = CliRunner().invoke(app, ["simulate", "jalil2026", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "empty" in res.output


def test_drive_is_reproducible():
    from cortexalign.studies.jalil2026 import planted_drive
    from cortexalign.studies.jalil2026._scenes import scene_images

    images = scene_images(4, (48, 64), seed=1)
    a, b = planted_drive(images, SPEC), planted_drive(images, SPEC)
    np.testing.assert_array_equal(a, b)
    assert abs(a.mean()) < 1e-9 and abs(a.std() - 1) < 1e-9


def test_shipped_config_is_the_full_plan():
    from pathlib import Path

    from cortexalign.bench import load_config
    from cortexalign.studies.jalil2026._plan import CONFIG_DATA, study_config

    shipped = Path(__file__).resolve().parents[2] / "configs" / "attention_vs_mouse_cortex.yaml"
    plan = load_config(study_config(CONFIG_DATA, PLANS["full"], name="attention_vs_mouse_cortex"))
    assert load_config(shipped).config_hash() == plan.config_hash()
