"""``cortexalign doctor OUT``: lock, store, jobs a rerun redoes, outputs, cache checksums; it
changes nothing in OUT."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from cortexalign.bench._lock import RunLock
from cortexalign.cli import app
from cortexalign.features import FeatureCache
from cortexalign.results import ResultsStore, ScoreRecord

runner = CliRunner()
KEY = "b" * 64


@pytest.fixture
def out(tmp_path):
    out = tmp_path / "out"
    store = ResultsStore(out / "results.duckdb")
    run = store.start_run("name: doctor\n")
    store.record_job("done-job", run, [ScoreRecord(model="m", model_id="m", layer="l",
                                                   target="t", metric="rsa", value=0.2)])
    store.start_job("lost-job", run)
    store.fail_job("lost-job", run, "CUDA out of memory")
    store.finish_run(run, "failed")
    for name in ("report.html", "best_layers.csv", "figure.png"):
        (out / name).write_text("x")
    FeatureCache(out / "cache").put(KEY, np.arange(4000, dtype=np.float32).reshape(100, 40))
    return out


def _snapshot(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in root.rglob("*") if p.is_file())


def test_doctor_names_the_jobs_a_rerun_redoes_and_changes_nothing(out):
    before = _snapshot(out)
    res = runner.invoke(app, ["doctor", str(out)])
    assert res.exit_code == 1, res.output  # one job never finished
    text = " ".join(res.output.split())
    assert "1 jobs without a finished attempt" in text and "redoes these 1 jobs" in text
    assert "1 of 1 entries verified" in text and "report.html" in text
    assert _snapshot(out) == before


def test_doctor_finds_a_damaged_cache_entry_and_a_missing_report(out):
    (out / "report.html").unlink()
    chunks = [p for p in (out / "cache" / KEY).rglob("*") if p.is_file()
              and "cortexalign.json" not in p.name and "zarr.json" not in p.name]
    biggest = max(chunks, key=lambda p: p.stat().st_size)
    biggest.write_bytes(bytes(255 - b for b in biggest.read_bytes()))
    text = " ".join(runner.invoke(app, ["doctor", str(out)]).output.split())
    assert "missing report.html" in text and "writes them" in text
    assert "0 of 1 entries verified" in text and "extracted again" in text
    assert (out / "cache" / KEY).is_dir()  # reported, not discarded


def test_doctor_reports_a_damaged_store_and_a_held_lock(out):
    with RunLock(out):
        text = " ".join(runner.invoke(app, ["doctor", str(out)]).output.split())
        assert "a run is writing this directory now" in text
    data = (out / "results.duckdb").read_bytes()
    (out / "results.duckdb").write_bytes(data[:20000])
    res = runner.invoke(app, ["doctor", str(out)])
    text = " ".join(res.output.split())
    assert res.exit_code == 1 and "damaged (truncated)" in text and "move results.duckdb" in text
    assert "Traceback" not in res.output


def test_doctor_passes_a_healthy_directory(out):
    store = ResultsStore(out / "results.duckdb")
    run = store.start_run("name: doctor\n")
    store.record_job("lost-job", run, [ScoreRecord(model="m", model_id="m", layer="l2",
                                                   target="t", metric="rsa", value=0.1)])
    store.finish_run(run)
    res = runner.invoke(app, ["doctor", str(out)])
    assert res.exit_code == 0, res.output
    assert "all checks passed" in res.output
