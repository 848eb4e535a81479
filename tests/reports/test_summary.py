from __future__ import annotations

import json

import matplotlib.image as mpimg
import numpy as np
import pandas as pd

from cortexalign.reports import best_layers, write_summary


def _frame(model="net", layers=3):
    rows = []
    for t in ("human IT", "monkey IT"):
        for i in range(layers):
            v = 0.1 * (i + 1)
            rows.append(dict(model=model, layer=f"layer{i}", target=t, metric="rsa", value=v,
                             ci_low=v - 0.05, ci_high=v + 0.05, ceiling_low=0.5, ceiling_high=0.7,
                             extra=json.dumps({"layer_index": i, "n_layers": layers})))
    return pd.DataFrame(rows)


def test_best_layer_is_the_argmax_with_its_interval():
    best = best_layers(_frame())
    assert list(best["layer"]) == ["layer2", "layer2"]
    np.testing.assert_allclose(best["normalized"], 0.3 / 0.5)


def test_best_layer_skips_nan_scores():
    f = _frame()
    f.loc[2, "value"] = np.nan  # layer2 of human IT
    best = best_layers(f).set_index("target")
    assert best.loc["human IT", "layer"] == "layer1" and best.loc["monkey IT", "layer"] == "layer2"


def test_summary_writes_figure_table_and_report(real_run):
    # write_summary after the real run (as the command line calls it)
    for name in ("figure.png", "best_layers.csv", "report.html"):
        assert (real_run / name).is_file()
    img = mpimg.imread(real_run / "figure.png")
    assert img.ndim == 3 and img.shape[0] > 100 and img.std() > 0  # a drawn figure


def test_write_summary_without_scores_still_writes_the_report(real_run, tmp_path):
    import shutil

    from cortexalign.results import ResultsStore

    out = tmp_path / "copy"
    shutil.copytree(real_run, out, ignore=shutil.ignore_patterns("cache", "*.html"))
    store = ResultsStore(out / "results.duckdb")
    run_id = store.frame("runs")["run_id"].iloc[0]
    store.add_notes(run_id, "citation", [("measure: x", "<i>cite</i>")])
    store.add_notes(run_id, "failure", [("<b>m</b>", "did not load")])
    files = write_summary(out, _frame().iloc[:0], "empty")
    assert set(files) == {"report"}
    html = files["report"].read_text()
    assert "&lt;i&gt;cite&lt;/i&gt;" in html and "&lt;b&gt;m&lt;/b&gt;" in html
    assert "<b>m</b>" not in html


def test_report_command_writes_the_end_of_run_report_byte_for_byte(real_run, tmp_path):
    # the report reads the store only: `cortexalign report DIR` equals the end-of-run report
    from typer.testing import CliRunner

    from cortexalign.cli import app

    again = tmp_path / "again.html"
    done = CliRunner().invoke(app, ["report", str(real_run), "--out", str(again)])
    assert done.exit_code == 0, done.output
    end_of_run = (real_run / "report.html").read_bytes()
    assert again.read_bytes() == end_of_run
    html = end_of_run.decode()
    assert "Kriegeskorte" in html and "measure: rsa" in html  # stored citations are shown
