"""The report's statistics say what they are (issue 20, cases 5 and 7): paired comparisons over
subjects (sessions averaged, the noise ceiling's unit), exact when every sign pattern fits; a
one-RDM target reads "no ceiling (one RDM)"; a published ceiling reads "published"; intervals of
different kinds in one column are labelled.
"""

from __future__ import annotations

import html
import itertools

import numpy as np
import pytest

from cortexalign.bench import record_statistics
from cortexalign.bench._stats import _per_unit  # the paired tests are the runner's, stored
from cortexalign.reports import write_report
from cortexalign.results import ResultsStore, ScoreRecord

GROUPS = ["1", "1", "2", "2", "3", "3", "4", "4"]  # 4 subjects x 2 sessions


def _rsa(model, value, per_rdm, target="human IT", ceiling=(0.4, 0.5), extra=None):
    return ScoreRecord(model=model, model_id=model, layer="l1", target=target, metric="rsa",
                       value=value, ci_low=value - 0.05, ci_high=value + 0.05,
                       ceiling_low=ceiling[0], ceiling_high=ceiling[1], n_stimuli=92,
                       extra={"per_rdm": list(per_rdm), "rdm_groups": GROUPS,
                              "ceiling_by": "subject", "layer_index": 0, "n_layers": 1,
                              "interval": "95% percentile bootstrap over stimuli (100 resamples)",
                              **(extra or {})})


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("honest")
    store = ResultsStore(out / "results.duckdb")
    run = store.start_run("name: honest\n")
    a = np.array([0.30, 0.32, 0.25, 0.27, 0.35, 0.33, 0.28, 0.30])
    b = a - np.array([0.05, 0.04, 0.02, 0.03, 0.06, 0.05, 0.01, 0.02])
    store.record_job("a-h", run, [_rsa("A", a.mean(), a)])
    store.record_job("b-h", run, [_rsa("B", b.mean(), b)])
    store.record_job("a-m", run, [ScoreRecord(
        model="A", model_id="A", layer="l1", target="monkey IT", metric="rsa", value=0.2,
        extra={"ceiling": "no ceiling (one RDM)", "per_rdm": [0.2], "layer_index": 0,
               "n_layers": 1})])
    store.record_job("a-r", run, [ScoreRecord(
        model="A", model_id="A", layer="l1", target="V1", metric="ridge", value=0.3,
        ci_low=0.2, ci_high=0.4, ceiling_low=0.6, ceiling_high=0.7,
        extra={"ceiling": "published (a paper)", "ci_over": "neuroids", "layer_index": 0,
               "n_layers": 1,
               "interval": "95% percentile bootstrap over neuroids (100 resamples)"})])
    record_statistics(store, run)  # as the runner does: the report shows the stored tests
    store.finish_run(run)
    return html.unescape(write_report(out).read_text()), a, b


def test_paired_test_is_over_subjects_and_exact(report):
    text, a, b = report
    d = np.array([(a - b)[i:i + 2].mean() for i in range(0, 8, 2)])  # per subject
    hits = sum(abs((np.array(s) * d).mean()) >= abs(d.mean()) - 1e-12
               for s in itertools.product((1, -1), repeat=4))
    p = hits / 16
    assert p == 2 / 16  # every subject favours A: the smallest p 4 subjects can give
    assert "sign flips over 4 subjects (8 RDMs, averaged within subject)" in text
    assert "exact: all 16 patterns enumerated" in text
    assert "0.125" in text  # the exact p (8 RDMs as units would have claimed 0.0078)


def test_one_rdm_and_published_ceilings_say_so(report):
    text, _, _ = report
    assert "no ceiling (one RDM)" in text
    assert "published (a paper)" in text


def test_interval_kinds_are_labelled_when_they_differ(report):
    text, _, _ = report
    assert "interval (kinds differ: each cell says what it resamples)" in text
    assert "over neuroids" in text and "over stimuli" in text


def test_per_unit_averages_sessions_within_subjects():
    v, unit = _per_unit({"per_rdm": [1.0, 3.0, 2.0, 4.0], "rdm_groups": ["x", "x", "y", "y"],
                         "ceiling_by": "subject"})
    assert v.tolist() == [2.0, 3.0] and unit.startswith("subjects")
    v, unit = _per_unit({"per_rdm": [1.0, 2.0]})  # stored before subject labels
    assert v.tolist() == [1.0, 2.0] and "no subject labels" in unit
