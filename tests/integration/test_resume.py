"""A run killed with SIGKILL mid-way resumes without losing or duplicating results."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml

from cortexalign.results import ResultsStore

KILL_AFTER = [1, 4]


def _config(tmp_path):
    cfg = {
        "name": "resume",
        "stimuli": {"source": "kriegeskorte92"},
        "models": [{"name": "gabor_v1", "pooling": "grid2",
                    "kwargs": {"image_size": 48, "image_deg": None,
                               "frequencies": [0.06, 0.12, 0.25]}}],
        "neural": [{"source": "kriegeskorte92.human_IT"}, {"source": "kriegeskorte92.monkey_IT"}],
        "metrics": [{"name": "rsa"}],
        "n_bootstrap": 20,
        "batch_size": 46,
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run_killed(cfg_path, out, kill_after):
    script = textwrap.dedent(f"""
        import os, signal
        from cortexalign.bench._run import run_experiment
        done = []
        def hook(job):
            done.append(job)
            if len(done) == {kill_after}:
                os.kill(os.getpid(), signal.SIGKILL)
        run_experiment({str(cfg_path)!r}, {str(out)!r}, progress=False, on_job_done=hook)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600)
    return proc.returncode


def _table(out):
    store = ResultsStore(out / "results.duckdb", read_only=True)
    f = store.scores_frame()
    return f.sort_values(["layer", "target"])[["layer", "target", "value", "ci_low", "ci_high"]]


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", KILL_AFTER)
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, kill_after):
    from cortexalign.bench._run import run_experiment

    cfg = _config(tmp_path)
    ref_out, out = tmp_path / "ref", tmp_path / "killed"
    run_experiment(cfg, ref_out, progress=False)
    rc = _run_killed(cfg, out, kill_after)
    assert rc == -signal.SIGKILL
    store = ResultsStore(out / "results.duckdb", read_only=True)
    assert len(store.scores_frame()) == kill_after  # jobs before the kill are kept
    summary = run_experiment(cfg, out, progress=False)
    assert summary.n_skipped == kill_after and summary.ok
    ref, got = _table(ref_out), _table(out)
    assert len(got) == len(ref)
    np.testing.assert_allclose(got["value"].to_numpy(), ref["value"].to_numpy())
    np.testing.assert_allclose(got["ci_low"].to_numpy(), ref["ci_low"].to_numpy())
    assert os.path.isdir(out / "cache")
