"""ResultsStore: round trip, transactions, schema versions, exports, read-only access."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import duckdb
import numpy as np
import pandas as pd
import pytest

from cortexalign.errors import InputError
from cortexalign.metrics._score import Score
from cortexalign.results import (
    SCHEMA_VERSION,
    ModelCard,
    ResultsStore,
    ScoreRecord,
    git_revision,
    hardware,
    package_versions,
)
from cortexalign.results import _store as store_mod

CONFIG = "models: [timm:resnet18]\nmetrics: [rsa]\n"


def record(layer="layer1", target="VISp", value=0.25, **kw) -> ScoreRecord:
    return ScoreRecord(model="resnet18", model_id="timm:resnet18", layer=layer, target=target,
                       metric="rsa", value=value, **kw)


@pytest.fixture
def store(tmp_path) -> ResultsStore:
    return ResultsStore(tmp_path / "res" / "results.duckdb")


def test_round_trip_of_a_run(store):
    run = store.start_run(CONFIG)
    score = Score(value=0.4, ci_low=0.3, ci_high=0.5, ceiling_low=0.6, ceiling_high=0.7,
                  p_value=0.01, n_stimuli=92, extra={"alpha": np.float64(10.0), "folds": [1, 2]})
    recs = [ScoreRecord.from_score(score, model="resnet18", model_id="timm:resnet18",
                                   layer="layer4", target="IT", metric="rsa"),
            record(layer="layer1", ci_low=math.nan)]
    store.start_job("job-a", run)
    assert not store.has_job("job-a")
    assert store.record_job("job-a", run, recs) == 2
    store.finish_run(run)

    df = store.scores_frame()
    assert list(df["layer"]) == ["layer4", "layer1"]
    first = df.iloc[0]
    assert (first.value, first.ci_low, first.ci_high, first.ceiling_low, first.ceiling_high,
            first.p_value, first.n_stimuli) == (0.4, 0.3, 0.5, 0.6, 0.7, 0.01, 92)
    assert json.loads(first.extra) == {"alpha": 10.0, "folds": [1, 2]}
    assert first.run_id == run and first.job_key == "job-a"
    assert first.config_hash == store.frame("runs").config_hash[0]
    assert math.isnan(df.iloc[1].ci_low) and math.isnan(df.iloc[1].p_value)  # NULL, not 0

    assert store.has_job("job-a") and store.finished_jobs() == {"job-a"}
    assert store.finished_jobs(run) == {"job-a"} and store.finished_jobs("other") == set()
    jobs = store.frame("jobs")
    assert len(jobs) == 1 and jobs.status[0] == "finished" and jobs.finished[0] >= jobs.started[0]
    runs = store.frame("runs")
    assert runs.status[0] == "finished" and runs.config_yaml[0] == CONFIG
    assert json.loads(runs.package_versions[0])["torch"]
    assert json.loads(runs.hardware[0])["cpu_count"] >= 1


def test_filters(store):
    run = store.start_run(CONFIG)
    store.record_job("j1", run, [record("l1", "VISp"), record("l2", "VISp"), record("l1", "VISl")])
    assert len(store.scores_frame(layer="l1")) == 2
    assert len(store.scores_frame(layer="l1", target="VISl")) == 1
    assert len(store.scores_frame(target=["VISp", "VISl"])) == 3
    assert len(store.scores_frame(target=[])) == 0
    assert len(store.scores_frame(run_id=run, layer=None)) == 3
    with pytest.raises(InputError, match="filter"):
        store.scores_frame(colour="red")


def test_recording_a_job_twice_writes_it_once(store):
    """Issue 20 case 1: a job recorded by two runs was stored twice; the job key is a primary
    key now and the second recording is a no-op (closed as 'duplicate')."""
    runs = [store.start_run(CONFIG) for _ in range(2)]
    assert store.record_job("same-job", runs[0], [record(value=0.25)]) == 1
    assert store.record_job("same-job", runs[1], [record(value=0.5)]) == 0
    assert store.scores_frame()["value"].tolist() == [0.25] and len(store.frame("runs")) == 2
    jobs = store.frame("jobs").sort_values("status")
    assert jobs["status"].tolist() == ["duplicate", "finished"]
    assert runs[0] in jobs["error"].iloc[0]
    assert store.finished_jobs() == {"same-job"}
    # a forced recomputation replaces the rows, still once
    assert store.record_job("same-job", runs[1], [record(value=0.75)], replace=True) == 1
    assert store.scores_frame()["value"].tolist() == [0.75]


def test_failed_job_is_not_finished_and_can_be_retried(store):
    run = store.start_run(CONFIG)
    store.start_job("j", run)
    store.fail_job("j", run, "CUDA out of memory")
    assert not store.has_job("j")
    jobs = store.frame("jobs")
    assert jobs.status.tolist() == ["failed"] and jobs.error[0] == "CUDA out of memory"
    store.start_job("j", run)
    store.record_job("j", run, [record()])
    assert store.has_job("j") and sorted(store.frame("jobs").status) == ["failed", "finished"]


def test_failure_inside_the_transaction_rolls_everything_back(store, monkeypatch):
    run = store.start_run(CONFIG)
    store.start_job("j", run)

    def crash(*args, **kwargs):
        raise RuntimeError("crash after the scores were inserted")

    monkeypatch.setattr(store_mod.ResultsStore, "_close_job", staticmethod(crash))
    with pytest.raises(RuntimeError, match="crash"):
        store.record_job("j", run, [record("l1"), record("l2")])
    monkeypatch.undo()
    assert store.scores_frame().empty and not store.has_job("j")
    assert store.frame("jobs").status.tolist() == ["running"]


@pytest.mark.parametrize("bad,match", [
    (dict(value=math.nan), "score.value"),
    (dict(value=math.inf), "score.value"),
    (dict(p_value=1.5), "p_value"),
    (dict(ci_low=-math.inf), "ci_low"),
    (dict(n_stimuli=-1), "n_stimuli"),
    (dict(layer=""), "score.layer"),
    (dict(extra={"x": math.nan}), "extra"),
    (dict(extra={"x": object()}), "extra"),
])
def test_one_bad_record_writes_nothing(store, bad, match):
    run = store.start_run(CONFIG)
    with pytest.raises(InputError, match=match):
        store.record_job("j", run, [record("ok"), record(**{"layer": "bad", **bad})])
    assert store.scores_frame().empty and store.frame("jobs").empty


def test_unknown_run_is_refused(store):
    with pytest.raises(InputError, match="start_run"):
        store.record_job("j", "no-such-run", [record()])
    with pytest.raises(InputError, match="start_run"):
        store.finish_run("no-such-run")
    with pytest.raises(InputError, match="status"):
        store.finish_run(store.start_run(CONFIG), status="done")
    assert store.scores_frame().empty


def test_schema_version_mismatch_names_both_versions(store):
    with duckdb.connect(str(store.path)) as con:
        con.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(InputError) as err:
        ResultsStore(store.path)
    msg = str(err.value)
    assert f"schema version {SCHEMA_VERSION}" in msg and "schema version 99" in msg
    assert "new results file" in msg


def test_foreign_duckdb_file_is_refused(tmp_path):
    path = tmp_path / "other.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t (a INTEGER)")
    with pytest.raises(InputError, match="schema_version"):
        ResultsStore(path)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_round_trip(store, tmp_path, suffix):
    run = store.start_run(CONFIG)
    store.record_job("j", run, [record("l1", value=0.125, p_value=0.5), record("l2", value=-0.5)])
    out = store.export(tmp_path / f"scores{suffix}")
    if suffix == ".csv":
        back = pd.read_csv(out)
    else:
        with duckdb.connect() as con:
            back = con.execute("SELECT * FROM read_parquet(?)", [str(out)]).df()
    assert back["layer"].tolist() == ["l1", "l2"] and back["value"].tolist() == [0.125, -0.5]
    assert back["p_value"].iloc[0] == 0.5 and pd.isna(back["p_value"].iloc[1])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["res", out.name])


def test_export_rejects_unknown_format_and_table(store, tmp_path):
    with pytest.raises(InputError, match="scores.csv"):
        store.export(tmp_path / "scores.xlsx")
    with pytest.raises(InputError, match="table"):
        store.export(tmp_path / "x.csv", table="scores; DROP TABLE runs")


def test_model_cards_keep_the_newest_per_device(store):
    store.put_model_card(ModelCard("timm:samvit_base_patch16", "cpu", params=93_000_000,
                                   latency_ms=900.0, extra={"batch": 1}))
    store.put_model_card(ModelCard("timm:samvit_base_patch16", "cpu", params=93_000_000,
                                   latency_ms=850.0, miou=math.nan))
    store.put_model_card(ModelCard("timm:samvit_base_patch16", "cuda:H100", latency_ms=20.0))
    cards = store.frame("model_cards").sort_values("device")
    assert cards.device.tolist() == ["cpu", "cuda:H100"]
    assert cards.latency_ms.tolist() == [850.0, 20.0] and pd.isna(cards.miou.iloc[0])


def test_read_only_store_reads_and_refuses_writes(store):
    run = store.start_run(CONFIG)
    store.record_job("j", run, [record()])
    reader = ResultsStore(store.path, read_only=True)
    assert len(reader.scores_frame()) == 1 and reader.has_job("j")
    with pytest.raises(InputError, match="read_only"):
        reader.start_run(CONFIG)


def test_read_only_needs_an_existing_file(tmp_path):
    with pytest.raises(InputError, match="absent"):
        ResultsStore(tmp_path / "missing.duckdb", read_only=True)
    assert not (tmp_path / "missing.duckdb").exists()


HOLD_WRITE_LOCK = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("HELD", flush=True)
sys.stdin.readline()
con.close()
"""


def test_reader_gives_up_clearly_while_a_writer_holds_the_file(store):
    run = store.start_run(CONFIG)
    store.record_job("j", run, [record()])
    writer = subprocess.Popen([sys.executable, "-c", HOLD_WRITE_LOCK, str(store.path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "HELD"
        with pytest.raises(InputError, match="one writer"):
            ResultsStore(store.path, read_only=True, lock_timeout_s=0.2)
    finally:
        writer.communicate("\n", timeout=30)
    assert len(ResultsStore(store.path, read_only=True).scores_frame()) == 1


def test_git_revision_inside_and_outside_a_repo(tmp_path):
    assert git_revision(tmp_path) is None
    run = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True,  # noqa: E731
                                    capture_output=True, text=True).stdout.strip()
    run("init", "-q")
    (tmp_path / "f.txt").write_text("a")
    run("add", "f.txt")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    head = run("rev-parse", "HEAD")
    assert git_revision(tmp_path) == head
    (tmp_path / "f.txt").write_text("b")
    assert git_revision(tmp_path) == head + "-dirty"


def test_manifest_helpers():
    versions = package_versions()
    assert versions["python"].count(".") == 2 and "torch" in versions and "duckdb" in versions
    assert "not-a-package" not in package_versions(["not-a-package"])
    hw = hardware()
    assert hw["cpu_count"] >= 1 and "gpus" in hw
    json.dumps(hw)  # JSON-able, as stored in runs.hardware


@pytest.mark.parametrize("field", ["partition", "method", "target", "kind", "name"])
@pytest.mark.parametrize("bad", ["", None, 3])
def test_a_partition_record_without_a_text_field_is_refused_naming_it(field, bad):
    from cortexalign.results import PartitionRecord

    fields = dict(partition="p", method="variance_partitioning", target="t", kind="r2", name="A")
    record = PartitionRecord(**{**fields, field: bad}, values_n=np.array([0.1, 0.2]),
                             neuroid_ids=["n0", "n1"], n_stimuli=10, extra={})
    with pytest.raises(InputError) as err:
        record.checked()
    assert err.value.parameter == f"partition.{field}"
