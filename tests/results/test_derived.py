"""What a run derives and stores beside its scores: notes (citations, failures), FDR q-values and
paired comparisons, and the migration of a version-3 store that has none of them."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
import scipy.stats

from cortexalign.bench import record_statistics, run_statistics
from cortexalign.errors import InputError
from cortexalign.results import SCHEMA_VERSION, ResultsStore, ScoreRecord


def _score(model, layer, target, metric, value, p=None, **extra):
    return ScoreRecord(model=model, model_id=f"{model}@x", layer=layer, target=target,
                       metric=metric, value=value, p_value=p, n_stimuli=10, extra=extra)


@pytest.fixture
def store(tmp_path):
    return ResultsStore(tmp_path / "results.duckdb")


def test_notes_round_trip_in_order_and_refuse_unknown_kinds_and_runs(store):
    run = store.start_run("name: x\n")
    store.add_notes(run, "citation", [("measure: rsa", "Kriegeskorte 2008"), ("stimuli: k", "K")])
    store.add_notes(run, "failure", [("model B", "InputError: no such weights")])
    notes = store.frame("notes")
    assert list(zip(notes["kind"], notes["subject"], strict=True)) == [
        ("citation", "measure: rsa"), ("citation", "stimuli: k"), ("failure", "model B")]
    with pytest.raises(InputError, match="kind"):
        store.add_notes(run, "remark", [("a", "b")])
    with pytest.raises(InputError, match="run_id"):
        store.add_notes("no-such-run", "citation", [("a", "b")])


def test_q_values_are_benjamini_hochberg_per_metric_over_the_newest_scores(store):
    rng = np.random.default_rng(0)
    run = store.start_run("name: x\n")
    ps = rng.uniform(0, 0.2, size=12)
    rows = [_score("A", f"l{i}", "t", "rsa", 0.1 * i, p) for i, p in enumerate(ps[:6])]
    rows += [_score("A", f"l{i}", "t", "ridge", 0.1 * i, p) for i, p in enumerate(ps[6:])]
    rows.append(_score("A", "l0", "t", "cka", 0.5))  # no p-value: no q-value
    store.record_job("j1", run, rows)
    store.record_job("j2", run, [_score("A", "l0", "t", "rsa", 0.9, 0.01)])  # newest l0/rsa wins
    record_statistics(store, run)
    q = store.frame("q_values").set_index(["layer", "metric"])["q_value"]
    rsa_p = np.r_[0.01, ps[1:6]]
    np.testing.assert_allclose(q.xs("rsa", level="metric").sort_index(),
                               scipy.stats.false_discovery_control(rsa_p), rtol=1e-12)
    np.testing.assert_allclose(q.xs("ridge", level="metric").sort_index(),
                               scipy.stats.false_discovery_control(ps[6:]), rtol=1e-12)
    assert ("l0", "cka") not in q.index
    record_statistics(store, run)  # replaced, not appended
    assert len(store.frame("q_values")) == 12


def test_paired_comparisons_at_best_layers_over_per_rdm_scores(tmp_path):
    rng = np.random.default_rng(1)
    per_a, per_b = rng.normal(0.3, 0.05, 8), rng.normal(0.1, 0.05, 8)
    frame = pd.DataFrame([
        dict(model="A", layer="l0", target="t", metric="rsa", value=per_a.mean(), p_value=None,
             ci_low=None, ci_high=None, ceiling_low=None, ceiling_high=None,
             extra=f'{{"per_rdm": {per_a.tolist()}}}'),
        dict(model="B", layer="l1", target="t", metric="rsa", value=per_b.mean(), p_value=None,
             ci_low=None, ci_high=None, ceiling_low=None, ceiling_high=None,
             extra=f'{{"per_rdm": {per_b.tolist()}}}')])
    q_values, pairs = run_statistics(frame)
    assert q_values.empty and len(pairs) == 1
    row = pairs.iloc[0]
    assert (row.model_a, row.model_b) == ("A · l0", "B · l1")
    assert row.difference == pytest.approx((per_a - per_b).mean())
    # 8 of 8 differences positive: the exact sign-flip p is 2/256; 2000 random flips estimate it
    # (Monte Carlo s.d. 0.002)
    assert row.p_value == pytest.approx(2 / 256, abs=0.005)
    assert row.q_value == pytest.approx(row.p_value)


def test_a_version_3_store_reads_empty_derived_tables_and_migrates_on_write(tmp_path):
    path = tmp_path / "results.duckdb"
    ResultsStore(path).start_run("name: old\n")
    with duckdb.connect(str(path)) as con:
        for table in ("notes", "q_values", "comparisons"):
            con.execute(f"DROP TABLE {table}")
        con.execute("UPDATE schema_version SET version = 3")
    old = ResultsStore(path, read_only=True)
    assert old.frame("notes").empty and list(old.frame("q_values").columns)[:4] == [
        "model", "layer", "target", "metric"]
    run = ResultsStore(path).start_run("name: new\n")  # a writer migrates it
    ResultsStore(path).add_notes(run, "citation", [("a", "b")])
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    assert len(ResultsStore(path, read_only=True).frame("notes")) == 1
