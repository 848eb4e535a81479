"""End to end through `cortexalign run`: tiny SAM attention and conv maps and a tiny CNN against
offline Allen-layout NWB files, split by area x Cre line, with permutation p-values and FDR."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from allen_planted import GROUPS, PLANTED_BLOCK, SAM_TINY, write_planted
from typer.testing import CliRunner

from cortexalign.cli import app
from cortexalign.results import ResultsStore

N_PERM = 49


def tiny_config(data_dir) -> dict:
    """The tiny twin of configs/attention_vs_mouse_cortex.yaml (same keys, offline data)."""
    return {
        "name": "attention_vs_mouse_cortex_tiny",
        "stimuli": {"source": "allen.natural_scenes", "options": {"path": str(data_dir)}},
        "models": [
            dict(SAM_TINY, label="SAM-B tiny attention", features="attention"),
            dict(SAM_TINY, label="SAM-B tiny conv", features="conv_map", layers=["neck"]),
            {"name": "timm:resnet10t", "untrained": True, "label": "ResNet-10t",
             "features": "conv_map", "layers": ["layer2"]},
        ],
        "neural": [{"source": "allen.ophys_natural_scenes", "label": "allen",
                    "options": {"path": str(data_dir)}, "split_by": ["area", "cre_line"]}],
        "metrics": [{"name": "map_pearson"}, {"name": "map_rmse"}, {"name": "rsa", "options": {"n_splits": 3}},
                    {"name": "ridge", "options": {"n_folds": 3, "inner_folds": 3,
                                                  "alphas": [0.1, 10.0, 1000.0]}}],
        "n_bootstrap": 0,
        "n_permutations": N_PERM,
        "batch_size": 24,
    }


@pytest.fixture(scope="module")
def run_frame(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("attn_mouse")
    data = write_planted(tmp / "allen_cache")
    cfg = tmp / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(data)))
    result = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp / "out"), "--quiet"])
    assert result.exit_code == 0, result.output
    frame = ResultsStore(tmp / "out" / "results.duckdb", read_only=True).scores_frame()
    frame["extra"] = [json.loads(e) if isinstance(e, str) else e for e in frame["extra"]]
    frame.attrs["out"] = tmp / "out"
    return frame


def test_every_area_and_cre_line_is_scored(run_frame):
    labels = {f"allen/{a}/{c}" for a, c in GROUPS}
    for (model, metric), sub in run_frame.groupby(["model", "metric"]):
        assert set(sub["target"]) == labels, (model, metric)
        for e, t in zip(sub["extra"], sub["target"], strict=True):
            assert t == "allen/" + "/".join([e["group"]["area"], e["group"]["cre_line"]])
    assert set(run_frame["metric"]) == {"map_pearson", "map_rmse", "rsa", "ridge"}
    assert np.isfinite(run_frame["value"]).all()


def test_p_values_in_range_and_fdr_not_below_raw(run_frame):
    tested = run_frame[run_frame["metric"].isin(["map_pearson", "map_rmse", "rsa"])]
    p = tested["p_value"].to_numpy()
    assert ((p > 0) & (p <= 1)).all() and p.min() >= 1 / (N_PERM + 1) - 1e-12
    q = np.array([e["p_fdr"] for e in tested["extra"]])
    assert (q >= p - 1e-12).all() and (q <= 1).all()


def test_planted_neurons_beat_shuffled_ones(run_frame):
    sub = run_frame[(run_frame["model"] == "SAM-B tiny attention")
                    & (run_frame["layer"] == PLANTED_BLOCK)]
    pearson = sub[sub["metric"] == "map_pearson"].set_index("target")
    rmse = sub[sub["metric"] == "map_rmse"].set_index("target")
    for area in ("VISp", "VISal"):
        planted, control = f"allen/{area}/Cux2", f"allen/{area}/Sst"
        assert pearson.loc[planted, "value"] > pearson.loc[control, "value"] + 0.2
        assert rmse.loc[planted, "value"] < rmse.loc[control, "value"]
        assert pearson.loc[planted, "p_value"] <= 0.05
        assert pearson.loc[planted, "extra"]["p_fdr"] <= 0.05
        assert pearson.loc[planted, "ceiling_low"] > 0.5  # reliable planted neuron maps


def test_conv_maps_and_ceilings_are_recorded(run_frame):
    conv = run_frame[run_frame["model"] == "ResNet-10t"]
    assert set(conv["layer"]) == {"layer2"}
    assert {e["features"] for e in conv["extra"]} == {"conv_map"}
    ridge = run_frame[run_frame["metric"] == "ridge"]
    assert np.isfinite(ridge["ceiling_low"]).all()  # split-half over the 4 repetitions
    rmse = run_frame[run_frame["metric"] == "map_rmse"]
    assert {e["scaling"] for e in rmse["extra"]} == {"minmax"}


def test_map_measures_are_discriminated_not_skipped(run_frame):
    """`results --discriminability` on this run: the map entries resample the maps models'
    cached maps (no longer skipped); on a planted group the planted attention ranks first."""
    from cortexalign.bench import DiscriminabilitySpec, grid_discriminability

    spec = DiscriminabilitySpec(rules=["best", "cv"], n_bootstrap=50, n_folds=3)
    got = grid_discriminability(run_frame.attrs["out"], spec)
    maps = [g for g in got if g.metric in ("map_pearson", "map_rmse")]
    assert maps and not [g.skipped for g in maps if g.skipped]
    assert {g.rule for g in maps} == {"best", "cv"}
    planted = next(g for g in maps if g.metric == "map_pearson" and g.rule == "best"
                   and g.target == "allen/VISp/Cux2")
    samples, d = planted.result
    assert set(samples.names) == {"SAM-B tiny attention", "SAM-B tiny conv", "ResNet-10t"}
    assert d.names[int(np.argmin(d.rank_m))] == "SAM-B tiny attention"
    assert samples.layers["SAM-B tiny attention"] == (PLANTED_BLOCK,)
