"""A run killed with SIGKILL at any point resumes without losing, duplicating or half-reading
anything, and ends with the table of an uninterrupted run.

Kill points (each in a real subprocess): after 4 of 6 jobs were reported finished, during
extraction (the cache entry written to its temp directory, not yet renamed into place),
inside a store write (the job's score rows inserted, the transaction not yet committed), and
while the report is written (every job done: the run is not finished until the report is).

The run commits the writes of fast jobs in batches (``results.BatchedWrites``) and reports a job
finished (``on_job_done``) only once committed: after a kill the store holds every reported job
(perhaps more: a committed batch not yet reported) and no job partly; a kill inside a commit
loses that whole batch and nothing reported.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml

from cortexalign.bench._run import run_experiment
from cortexalign.bench._status import INTERRUPTED, run_status
from cortexalign.reports import write_run_outputs
from cortexalign.results import ResultsStore

CONFIG = {
    "name": "resume",
    "stimuli": {"source": "kriegeskorte92"},
    "models": [{"name": "gabor_v1", "pooling": "grid2",  # 3 layers x 2 targets = 6 jobs
                "kwargs": {"image_size": 48, "image_deg": None,
                           "frequencies": [0.06, 0.12, 0.25]}}],
    "neural": [{"source": "kriegeskorte92.human_IT"}, {"source": "kriegeskorte92.monkey_IT"}],
    "metrics": [{"name": "rsa"}],
    "n_bootstrap": 5,
    "batch_size": 46,
}

_KILL = "os.kill(os.getpid(), signal.SIGKILL)"
# name -> (code run in the child before run_experiment, jobs reported before the kill or None
# when that depends on how the jobs were batched)
KILL_POINTS = {
    "after_4_jobs": (f"""
        def hook(job):
            done.append(job)
            if len(done) == 4:
                {_KILL}
        """, 4),
    "during_extraction": (f"""
        from cortexalign.features._cache import FeatureCache
        def publish(self, tmp, dest):  # the entry is complete in its temp dir, not yet renamed
            {_KILL}
        FeatureCache._publish = publish
        """, 0),
    "during_store_write": (f"""
        from cortexalign.results._store import ResultsStore
        insert = ResultsStore._insert_rows
        def insert_then_die(con, table, columns, rows, chunk=256):
            insert(con, table, columns, rows, chunk)
            done.extend(rows if table == "scores" else [])
            if len(done) >= 3:  # rows of job 3 inserted, not committed
                {_KILL}
        ResultsStore._insert_rows = staticmethod(insert_then_die)
        """, None),
    # issue 20 case 3: a kill while the report is written left the run 'finished' without a
    # report; the report is part of the run now, so the run reads interrupted and a rerun
    # (every job skipped) writes it
    "during_report": (f"""
        import cortexalign.reports._summary as summary_module
        def die(*args, **kwargs):
            {_KILL}
        summary_module.write_report = die
        """, 6),
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The config file and the score table of an uninterrupted run."""
    root = tmp_path_factory.mktemp("resume")
    path = root / "cfg.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    run_experiment(path, root / "ref", progress=False)
    return path, _table(root / "ref")


def _run_killed(cfg_path, out, setup):
    """Run in a child until it kills itself; returns its exit code, stderr and the keys of the
    jobs it reported finished (each written to a file, synced, before the hook runs)."""
    log = out.parent / f"{out.name}-reported.txt"
    script = "import os, signal\ndone = []\nhook = None\n" + textwrap.dedent(setup) + (
        "from cortexalign.bench._run import run_experiment\n"
        "from cortexalign.reports import write_run_outputs\n"
        f"log = open({str(log)!r}, 'a')\n"
        "def report(job):\n"
        "    log.write(job.key + '\\n'); log.flush(); os.fsync(log.fileno())\n"
        "    if hook is not None:\n"
        "        hook(job)\n"
        f"run_experiment({str(cfg_path)!r}, {str(out)!r}, progress=False, on_job_done=report,"
        " outputs=write_run_outputs)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600)
    reported = set(log.read_text().split()) if log.exists() else set()
    return proc.returncode, proc.stderr, reported


def _table(out):
    f = ResultsStore(out / "results.duckdb", read_only=True).scores_frame()
    return f.sort_values(["layer", "target"])[["layer", "target", "value", "ci_low", "ci_high",
                                               "ceiling_low"]].reset_index(drop=True)


@pytest.mark.slow
@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_sigkill_then_resume_equals_uninterrupted(reference, tmp_path, point):
    cfg, ref = reference
    setup, n_reported = KILL_POINTS[point]
    out = tmp_path / "killed"
    rc, err, reported = _run_killed(cfg, out, setup)
    assert rc == -signal.SIGKILL, err[-2000:]
    if n_reported is not None:
        assert len(reported) == n_reported
    store = ResultsStore(out / "results.duckdb", read_only=True)
    kept = store.finished_jobs()
    assert reported <= kept  # nothing reported finished is lost
    scores = store.scores_frame()
    assert set(scores["job_key"]) == kept and len(scores) == len(kept)  # no job written partly
    if point == "during_store_write":  # the batch being committed is lost whole
        assert kept == reported
    [run] = run_status(out)
    assert run.state == INTERRUPTED and run.n_running <= 1

    if point == "during_extraction":
        assert [p.name[:5] for p in (out / "cache").iterdir()] == [".tmp-"]  # never read
    if point == "during_report":
        assert not (out / "report.html").exists() and run.status == "running"

    summary = run_experiment(cfg, out, progress=False, outputs=write_run_outputs)
    assert summary.n_skipped == len(kept) and summary.n_done == 6 - len(kept) and summary.ok
    got = _table(out)
    assert got[["layer", "target"]].equals(ref[["layer", "target"]])
    np.testing.assert_array_equal(got[["value", "ci_low", "ci_high", "ceiling_low"]].to_numpy(),
                                  ref[["value", "ci_low", "ci_high", "ceiling_low"]].to_numpy())
    assert not [p for p in (out / "cache").iterdir() if p.name.startswith(".tmp-")]
    runs = run_status(out)
    assert [r.state for r in runs] == [INTERRUPTED, "finished"]
    assert (out / "report.html").is_file() and (out / "best_layers.csv").is_file()
