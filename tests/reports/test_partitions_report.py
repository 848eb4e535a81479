"""The report's partitions section: a stacked-bar chart and a table per partition, drawn from the
``partitions`` table (newest rows), escaped, and absent when there are none."""

from __future__ import annotations

import re

import numpy as np

from cortexalign.reports import SECTIONS, load_report_data, write_report
from cortexalign.reports._partitions import latest_partitions
from cortexalign.results import PartitionRecord, ResultsStore

IDS = ("n0", "n1", "n2")


def _vpa_rows(name: str, target: str, shift: float = 0.0) -> list[PartitionRecord]:
    quantities = {("r2", "A"): [0.3, 0.4, 0.5], ("r2", "B"): [0.1, 0.2, 0.3],
                  ("r2", "A+B"): [0.35, 0.45, 0.55], ("component", "unique:A"): [0.25, 0.25, 0.3],
                  ("component", "unique:B"): [-0.05, -0.02, np.nan],
                  ("component", "shared:A&B"): [0.1, 0.2, 0.3]}
    return [PartitionRecord(name, "variance_partitioning", target, kind, key,
                            np.asarray(v) + shift, IDS, 20,
                            {"sets": {"A": {"model": "m1", "layer": "l1"},
                                      "B": {"model": "m2", "layer": "l2"}}})
            for (kind, key), v in quantities.items()]


def _store(tmp_path, batches) -> ResultsStore:
    store = ResultsStore(tmp_path / "results.duckdb")
    run = store.start_run("name: parts\n")
    for k, rows in enumerate(batches):
        store.start_job(f"job{k}", run)
        store.record_partition_job(f"job{k}", run, rows)
    store.finish_run(run)
    return store


def _section(html: str) -> str:
    found = re.findall(r'<section id="partitions".*?</section>', html, re.S)
    return found[0] if found else ""


def test_each_partition_gets_stacked_medians_a_total_tick_and_a_table(tmp_path):
    _store(tmp_path, [_vpa_rows("vpa", "VISp") + _vpa_rows("vpa", "VISl", 0.1)])
    sec = _section(write_report(tmp_path).read_text())
    assert "Variance partitioning and banded ridge" in sec and "A = m1 / l1; B = m2 / l2" in sec
    parts = re.findall(r'<rect class="part"[^>]*data-target="([^"]*)" data-component="([^"]*)" '
                       r'data-value="([^"]*)"', sec)
    want = {(t, c): float(np.nanmedian(v))
            for t, shift in (("VISp", 0.0), ("VISl", 0.1))
            for c, v in (("unique:A", np.array([0.25, 0.25, 0.3]) + shift),
                         ("unique:B", np.array([-0.05, -0.02, np.nan]) + shift),
                         ("shared:A&amp;B", np.array([0.1, 0.2, 0.3]) + shift))}
    assert {(t, c): float(v) for t, c, v in parts} == want
    totals = [float(v) for v in re.findall(r'class="total"[^>]*data-value="([^"]*)"', sec)]
    assert totals == [0.45, 0.55]  # the medians of r2 A+B, not of A or B
    assert sec.count("<tr>") == 1 + 12  # header + 6 quantities x 2 targets


def test_the_newest_rows_are_shown_and_labels_are_escaped(tmp_path):
    evil = "<script>alert(1)</script>"
    store = _store(tmp_path, [_vpa_rows(evil, "VISp"), _vpa_rows(evil, "VISp", 1.0)])
    assert len(latest_partitions(store.partitions_frame())) == 6
    sec = _section(write_report(tmp_path).read_text())
    assert evil not in sec and "&lt;script&gt;" in sec
    totals = [float(v) for v in re.findall(r'class="total"[^>]*data-value="([^"]*)"', sec)]
    assert totals == [1.45]


def test_no_partitions_no_section(tmp_path):
    store = ResultsStore(tmp_path / "results.duckdb")
    store.finish_run(store.start_run("name: plain\n"))
    data = load_report_data(tmp_path)
    assert data.partitions.empty and SECTIONS["partitions"][1](data, data.scores) is None
    assert 'id="partitions"' not in write_report(tmp_path).read_text()
