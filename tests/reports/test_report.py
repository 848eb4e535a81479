"""The report's content and its bad-input handling (HTML text checks; the browser checks are in
test_browser.py)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cortexalign.cli import app
from cortexalign.errors import InputError
from cortexalign.reports import (
    MapPanel,
    ReportData,
    load_report_data,
    render_report,
    target_labels,
    write_report,
)
from cortexalign.results import ModelCard, ResultsStore

CONFIG = {"name": "half", "stimuli": {"source": "kriegeskorte92"},
          "models": [{"name": "a", "label": "A", "layers": ["l0", "l1", "l2"]},
                     {"name": "b", "label": "B", "layers": "all"}],
          "neural": [{"source": "kriegeskorte92.human_IT", "label": "human IT"}],
          "metrics": [{"name": "rsa"}]}


def _rows(model, values, target="human IT", **kw):
    return [dict(model=model, layer=f"l{i}", target=target, value=v, index=i,
                 n_layers=len(values), **kw) for i, v in enumerate(values)]


def test_a_directory_without_runs_is_refused_with_the_fix(tmp_path):
    with pytest.raises(InputError, match="holding results.duckdb") as err:
        write_report(tmp_path)
    assert str(tmp_path) in str(err.value) and "cortexalign run" in err.value.fix
    ResultsStore(tmp_path / "results.duckdb")  # a database, but no run in it
    with pytest.raises(InputError, match="no runs recorded") as err:
        write_report(tmp_path)
    assert "cortexalign run" in err.value.fix
    with pytest.raises(InputError, match="not a directory"):
        write_report(tmp_path / "absent")
    assert not (tmp_path / "report.html").exists()


def test_a_run_stopped_half_way_reports_what_exists_and_what_is_missing(tmp_path, make_results):
    rows = [(f"a{i}", [r]) for i, r in enumerate(_rows("A", [0.1, 0.3, 0.2])[:2])]
    rows += [("a2", "FAILED: RuntimeError: out of memory"), ("b0", "RUNNING")]
    make_results(tmp_path, CONFIG, rows, finish=False)
    html = write_report(tmp_path).read_text()
    assert "did not finish (killed, or still in progress): the results below are what it" in html
    assert "out of memory" in html and "still running when the run stopped" in html
    assert "A vs human IT (rsa): no scores for layers l2" in html
    assert "B vs human IT (rsa): no scores" in html
    cells = re.findall(r'<td class="cell[^"]*" data-layer="(\w+)"[^>]*data-value="([^"]*)"', html)
    assert cells == [("l0", repr(0.1)), ("l1", repr(0.3))]  # what exists is shown


def test_significance_is_marked_after_fdr(tmp_path, make_results):
    p = [0.001, 0.04, 0.03, 0.5]
    rows = [(f"j{i}", [dict(model="A", layer=f"l{i}", target="human IT", value=0.1 * (i + 1),
                            index=i, n_layers=4, p_value=pv)]) for i, pv in enumerate(p)]
    make_results(tmp_path, CONFIG, rows)
    html = write_report(tmp_path).read_text()
    q = dict(re.findall(r'data-layer="(l\d)"[^>]*data-q="([^"]+)"', html))
    # Benjamini-Hochberg by hand: q_(i) = min_{j >= i} p_(j) m / j over the sorted p-values
    order = np.argsort(p)
    ranked = np.array(p)[order] * len(p) / np.arange(1, len(p) + 1)
    expect = np.empty(len(p))
    expect[order] = np.minimum.accumulate(ranked[::-1])[::-1]
    np.testing.assert_allclose([float(q[f"l{i}"]) for i in range(4)], expect)
    starred = re.findall(r'data-layer="(l\d)"[^>]*>[^<]*<span class="sig">\*', html)
    assert starred == [f"l{i}" for i in range(4) if expect[i] <= 0.05]


def test_targets_with_area_and_cre_line_group_the_heatmap_columns():
    assert target_labels("allen/VISp/Cux2", {}) == ("VISp", "Cux2", "Cre line")
    assert target_labels("nsd/subj01", {"roi": "V1v"}) == ("", "V1v", "ROI")
    assert target_labels("human IT", {}) == ("", "", "")
    rows = [dict(model="A", layer="l0", target=f"allen/{a}/{c}", metric="rsa", value=v)
            for (a, c), v in zip([("VISp", "Cux2"), ("VISl", "Sst"), ("VISp", "Sst")],
                                 [0.1, 0.2, 0.3], strict=True)]
    html = render_report(ReportData(scores=pd.DataFrame(rows)), title="t")
    start = html.index('<table class="heat"')
    head = html[start:html.index("</thead>", start)]
    assert re.findall(r'<th colspan="(\d)">(VIS\w+)</th>', head) == [("1", "VISl"), ("2", "VISp")]
    assert "<th>Cre line</th><th>Sst</th><th>Cux2</th><th>Sst</th>" in head


def test_paired_comparison_of_two_models_over_subject_rdms(tmp_path, make_results):
    rng = np.random.default_rng(0)
    per_a, per_b = rng.normal(0.3, 0.05, 8), rng.normal(0.1, 0.05, 8)
    rows = [("a", _rows("A", [0.2, per_a.mean()], extra={"per_rdm": per_a.tolist()})),
            ("b", _rows("B", [per_b.mean(), 0.05], extra={"per_rdm": per_b.tolist()}))]
    rows = [(f"{k}{i}", [r]) for k, rs in rows for i, r in enumerate(rs)]
    make_results(tmp_path, CONFIG, rows)
    html = write_report(tmp_path).read_text()
    pairs = html[html.index("<h3>Paired comparisons"):]
    diff = re.search(r"sign flips over 8 RDMs", pairs)
    assert diff is not None and "A · l1" in pairs and "B · l0" in pairs
    shown = re.findall(r'<td class="num" data-sort="([^"]+)"', pairs)
    assert float(shown[0]) == pytest.approx((per_a - per_b).mean())
    assert float(shown[1]) < 0.05  # 8 of 8 differences positive: p = 2/256 for sign flips


def test_trade_off_sae_spiking_and_maps_sections(tmp_path, make_results):
    rows = [(f"a{i}", [r]) for i, r in enumerate(_rows("A", [0.1, 0.4, 0.2], model_id="a@x"))]
    rows += [(f"b{i}", [r]) for i, r in enumerate(_rows("B", [0.3, 0.2], model_id="b@y"))]
    store = make_results(tmp_path, CONFIG, rows)
    store.put_model_card(ModelCard("a@x", "cpu", params=1_000_000, flops=2e9, latency_ms=5.0,
                                   miou=0.6))
    store.put_model_card(ModelCard("b@y", "cpu", params=5_000_000, flops=8e9, latency_ms=9.0))
    sae = tmp_path / "sae"
    sae.mkdir()
    pd.DataFrame({"voxel": [0, 1, 2], "layer": ["blocks.1", "blocks.1", "blocks.3"],
                  "unit": [4, 5, 6], "r": [0.5, 0.3, 0.7], "best_layer": ["blocks.1"] * 3}
                 ).to_csv(sae / "dictionary.csv", index=False)
    pd.DataFrame({"layer": ["blocks.1"], "nmse": [0.2], "explained_variance": [0.8], "l0": [12.0],
                  "dead_fraction": [0.01], "n_tokens": [100]}).to_csv(sae / "sae_metrics.csv",
                                                                       index=False)
    pd.DataFrame({"roi": ["V1", "FFA"], "spearman_rho": [0.4, 0.2]}).to_csv(sae / "roi_rsa.csv",
                                                                          index=False)
    import matplotlib.pyplot as plt

    plt.imsave(sae / "surface_best_r.png", np.random.default_rng(0).random((20, 30)))
    snn = tmp_path / "snn"
    snn.mkdir()
    (snn / "metrics.jsonl").write_text("".join(json.dumps(
        {"model": "spikformer", "epoch": e, "step": 10 * e, "train_loss": 2.0 / e,
         "train_acc": 0.1 * e, "test_acc": 0.08 * e}) + "\n" for e in (1, 2, 3)) + '{"cut')
    (snn / "energy.json").write_text(json.dumps({"model": "spikformer", "energy_mj": 0.5,
                                                 "macs": 1e6, "sops": 2e6, "first_layer": "once",
                                                 "firing_rates": {"l1": 0.1, "l2": 0.3}}))
    rgb = np.random.default_rng(1).random((32, 32, 3))
    panel = MapPanel("A · blocks.1 · image 0", rgb, np.random.default_rng(2).random((4, 4)),
                     {"VISp Cux2": np.random.default_rng(3).random((16, 16))})
    html = write_report(tmp_path, maps=[panel]).read_text()
    for sec in ("tradeoff", "sae", "spiking", "maps"):
        assert f'<section id="{sec}"' in html
    # one point per model: x = params, y = best layer score (one target here)
    tradeoff = html[html.index('<section id="tradeoff"'):html.index('<section id="sae"')]
    first = tradeoff[:tradeoff.index("</svg>")]
    pts = re.findall(r'data-x="([^"]+)" data-y="([^"]+)"', first)
    assert sorted((float(x), float(y)) for x, y in pts) == [(1e6, 0.4), (5e6, 0.3)]
    assert tradeoff.count("<svg") == 4 and "mIoU" in tradeoff  # params, FLOPs, latency, mIoU
    sae_html = html[html.index('<section id="sae"'):html.index('<section id="spiking"')]
    assert 'alt="surface map: best_r"' in sae_html and "explained_variance" in sae_html
    assert "spearman_rho" in sae_html and "FFA" in sae_html
    spiking = html[html.index('<section id="spiking"'):html.index('<section id="citations"')]
    assert spiking.count("<svg") == 2 and len(re.findall(r'class="pt"', spiking)) == 3 * 3
    assert "Horowitz" in html and "SAE-BrainMap" in html and "Firing rates: spikformer" in html
    assert "first real-valued layer counted" in spiking and ">once<" in spiking


def test_map_panels_validate_their_arrays():
    with pytest.raises(InputError, match="model_map_gh"):
        MapPanel("x", np.zeros((8, 8, 3)), np.zeros((2, 3, 4))).checked()
    with pytest.raises(InputError, match="image_hw3"):
        MapPanel("x", np.zeros((8, 8, 5)), np.zeros((2, 3))).checked()
    with pytest.raises(InputError, match="maps"):
        write_report("unused", maps=["not a panel"])


def test_cli_report_writes_the_file_and_fails_clearly(tmp_path, make_results):
    make_results(tmp_path, CONFIG, [("a0", _rows("A", [0.2]))])
    out = tmp_path / "sub" / "r.html"
    done = CliRunner().invoke(app, ["report", str(tmp_path), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert out.is_file() and '<section id="heatmaps"' in out.read_text()
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert bad.exit_code == 2 and "not a directory" in bad.output


def test_load_report_data_reads_every_table(tmp_path, make_results):
    make_results(tmp_path, CONFIG, [("a0", _rows("A", [0.2])), ("a1", "FAILED: boom")])
    data = load_report_data(tmp_path, failures=[{"job": "B", "error": "did not load"}])
    assert len(data.scores) == 1 and len(data.runs) == 1 and set(data.jobs["status"]) == {
        "finished", "failed"}
    html = render_report(data)
    assert "did not load" in html and "boom" in html
