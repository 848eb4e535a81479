"""Second-order results in the store and the report: rows, replacement, migration, sections."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from cortexalign.analyses import (
    alignment_patterns,
    benchmark_discriminability,
    copy_region,
    discriminability_records,
    pattern_records,
    simulate_regions,
)
from cortexalign.errors import InputError
from cortexalign.reports import load_report_data, render_report
from cortexalign.results import SCHEMA_VERSION, ResultsStore, SecondOrderRecord


@pytest.fixture(scope="module")
def analyses():
    data = simulate_regions(n_stimuli=30, n_regions=5, n_subjects=3, seed=2)
    feats = {"a": copy_region(data, "R1", seed=1), "b": copy_region(data, "R3", seed=2)}
    pat = alignment_patterns(feats, data, region_by="area", n_permutations=19, n_bootstrap=10)
    resp = data.isel(neuroid=data["area"] == "R2")
    models = {"m1": {"l0": feats["a"]}, "m2": {"l0": feats["b"]},
              "m3": {"l0": np.random.default_rng(0).standard_normal((30, 8))}}
    disc = benchmark_discriminability(models, resp, n_bootstrap=30, n_folds=3)
    return pat, disc


def _store(tmp_path):
    store = ResultsStore(tmp_path / "results.duckdb")
    return store, store.start_run("name: t\n", "cfg")


def test_rows_are_written_and_replaced(tmp_path, analyses):
    pat, disc = analyses
    store, run = _store(tmp_path)
    rows = pattern_records(pat, model="net", target="regions", metric="rsa:spearman")
    for samples, d in disc.values():
        rows += discriminability_records(samples, d, target="R2", metric="rsa:spearman")
    n = store.record_second_order(run, rows)
    frame = store.second_order_frame()
    assert len(frame) == n
    assert set(frame["kind"]) == {"brain_row", "pattern", "summary", "model", "pair"}
    assert (frame[frame["kind"] == "brain_row"]["name"] == [f"R{i}" for i in range(5)]).all()
    pairs = frame[(frame["kind"] == "pair") & (frame["rule"] == "best")]
    assert len(pairs) == 6  # ordered pairs of 3 models
    # recomputing one (target, metric) replaces its rows, leaves the others
    samples, d = disc["best"]
    store.record_second_order(run, discriminability_records(samples, d, target="R2",
                                                            metric="rsa:spearman"))
    again = store.second_order_frame(analysis="discriminability")
    assert set(again["rule"]) == {"best"}
    assert len(store.second_order_frame(analysis="patterns")) == len(
        frame[frame["analysis"] == "patterns"])


def test_bad_records_are_refused_before_writing(tmp_path):
    store, run = _store(tmp_path)
    good = SecondOrderRecord("discriminability", "t", "rsa", "best", "summary", value=0.5)
    with pytest.raises(InputError, match="kind"):
        store.record_second_order(run, [good, SecondOrderRecord("patterns", "t", "rsa", "best",
                                                                "summary")])
    with pytest.raises(InputError, match="p_value"):
        store.record_second_order(run, [SecondOrderRecord("discriminability", "t", "rsa",
                                                          "best", "pair", p_value=2.0)])
    with pytest.raises(InputError, match="records"):
        store.record_second_order(run, [{"kind": "summary"}])
    assert store.second_order_frame().empty


def test_an_older_file_gains_the_table(tmp_path):
    path = tmp_path / "results.duckdb"
    ResultsStore(path).start_run("name: t\n", "cfg")
    con = duckdb.connect(str(path))
    for table in ("second_order", "notes", "q_values", "comparisons"):  # versions 3 and 4
        con.execute(f"DROP TABLE {table}")
    con.execute("UPDATE schema_version SET version = 2")
    con.close()
    assert ResultsStore(path, read_only=True).second_order_frame().empty  # read as it is
    store = ResultsStore(path)  # a writer migrates
    run = store.frame("runs")["run_id"].iloc[0]
    store.record_second_order(run, [SecondOrderRecord("discriminability", "t", "rsa", "cv",
                                                      "summary", value=0.25)])
    assert len(store.second_order_frame()) == 1 and SCHEMA_VERSION >= 3


def test_report_sections_show_matrix_profiles_and_rankings(tmp_path, analyses):
    pat, disc = analyses
    store, run = _store(tmp_path)
    rows = pattern_records(pat, model="net", target="regions", metric="rsa:spearman")
    for samples, d in disc.values():
        rows += discriminability_records(samples, d, target="R2", metric="rsa:spearman")
    store.record_second_order(run, rows)
    html = render_report(load_report_data(tmp_path))
    assert "Alignment patterns across regions" in html
    assert "How well the benchmark separates the models" in html
    assert "layer rule: cv" in html and "layer rule: best" in html
    assert "region ← layer" in html and "R1 ← a" in html  # the model's profile rows
    assert html.count('class="heat"') >= 2 + 2  # brain + model, and one per rule
