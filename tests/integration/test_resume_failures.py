"""A failing job is recorded while the others finish; the CLI exits 1 with a summary of what
failed; `status` and `results` read the directory; a results file of another schema version is a
clear error with exit status 2. (A layer the model does not have no longer fails its jobs: it
stops the run before anything is written, tests/test_cli_first_hour.py; the failure here is
raised inside the scoring of one layer's jobs.)"""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from cortexalign.cli import app
from cortexalign.results import ResultsStore

runner = CliRunner()

CONFIG = {
    "name": "failures",
    "stimuli": {"source": "kriegeskorte92"},
    "models": [{"name": "gabor_v1", "pooling": "grid2", "layers": ["simple", "complex"],
                "kwargs": {"image_size": 48, "image_deg": None, "frequencies": [0.12]}}],
    "neural": [{"source": "kriegeskorte92.monkey_IT"}],
    "metrics": [{"name": "rsa"}, {"name": "rsa", "options": {"compare": "pearson"}}],
    "n_bootstrap": 0,
    "batch_size": 46,
}


FAILURE = "not_scorable: a failure inside scoring (simulated)"


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory):
    import cortexalign.bench._scores as run_module

    root = tmp_path_factory.mktemp("failures")
    cfg = root / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    real = run_module.score_job

    def score_job(job, *args, **kwargs):
        if job.layer == "complex":
            raise RuntimeError(FAILURE)
        return real(job, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_module, "score_job", score_job)
        res = runner.invoke(app, ["run", str(cfg), "--out", str(root / "out"), "--quiet"])
    return root / "out", res


def test_a_failing_job_fails_alone_and_the_cli_exits_1(failed_run):
    out, res = failed_run
    assert res.exit_code == 1, res.output
    assert "2 scores computed" in res.output and "2 failed" in res.output
    assert res.output.count("not_scorable") >= 2 and "Failed jobs" in res.output
    store = ResultsStore(out / "results.duckdb", read_only=True)
    jobs = store.frame("jobs")
    assert sorted(jobs["status"]) == ["failed", "failed", "finished", "finished"]
    assert jobs.loc[jobs["status"] == "failed", "error"].str.contains("not_scorable").all()
    assert set(store.scores_frame()["layer"]) == {"simple"}
    assert store.frame("runs")["status"].tolist() == ["failed"]


def test_status_lists_the_run_and_its_failures(failed_run):
    out, _ = failed_run
    res = runner.invoke(app, ["status", str(out)])
    assert res.exit_code == 0, res.output
    assert "failed" in res.output and "2 finished, 2 failed, 0 running" in res.output
    assert res.output.count("not_scorable") >= 2


def test_results_filters_and_exports(failed_run, tmp_path):
    out, _ = failed_run
    dest = tmp_path / "scores.parquet"
    res = runner.invoke(app, ["results", str(out), "--layer", "simple", "--export", str(dest)])
    assert res.exit_code == 0, res.output
    back = duckdb.sql(f"SELECT metric, value FROM '{dest}'").df()
    assert len(back) == 2 and back["value"].notna().all()
    csv = tmp_path / "scores.csv"
    assert runner.invoke(app, ["results", str(out), "--export", str(csv)]).exit_code == 0
    assert len(pd.read_csv(csv)) == 2
    res = runner.invoke(app, ["results", str(out), "--export", str(tmp_path / "scores.xlsx")])
    assert res.exit_code == 2 and ".csv or .parquet" in res.output


def test_another_schema_version_is_a_clear_error_with_exit_2(failed_run, tmp_path):
    out, _ = failed_run
    old = tmp_path / "old"
    old.mkdir()
    (old / "results.duckdb").write_bytes((out / "results.duckdb").read_bytes())
    with duckdb.connect(str(old / "results.duckdb")) as con:
        con.execute("UPDATE schema_version SET version = 999")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    for args in (["results", str(old)], ["status", str(old)],
                 ["run", str(cfg), "--out", str(old), "-q"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert "schema version 999" in res.output and "Traceback" not in res.output
    assert runner.invoke(app, ["status", str(tmp_path / "nowhere")]).exit_code == 2
