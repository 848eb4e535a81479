"""Two writers of one output directory or one feature cache (issue 20, case 1).

Real processes throughout: a run holding ``OUT``'s lock refuses a second ``cortexalign run`` at
once (naming its host, pid and start time), the store keeps exactly one row per job, a lock left
by a SIGKILLed process is taken over, and two processes writing the same feature-cache entry at
the same moment leave one complete entry that both read back identically.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

from cortexalign.bench._lock import LOCK_FILE, RunLock, RunLockedError
from cortexalign.features import FeatureCache

CONFIG = {
    "name": "concurrent",
    "stimuli": {"source": "kriegeskorte92"},
    "models": [{"name": "gabor_v1", "pooling": "grid2",  # 3 layers x 2 targets = 6 jobs
                "kwargs": {"image_size": 48, "image_deg": None,
                           "frequencies": [0.06, 0.12, 0.25]}}],
    "neural": [{"source": "kriegeskorte92.human_IT"}, {"source": "kriegeskorte92.monkey_IT"}],
    "metrics": [{"name": "rsa"}],
    "n_bootstrap": 5,
    "batch_size": 46,
}
N_JOBS = 6

# the first run pauses after its first job until the test lets it go
HOLDING_RUN = """
import pathlib, sys, time
from cortexalign.bench._run import run_experiment
cfg, out, flag = sys.argv[1:4]
def hook(job):
    started = pathlib.Path(flag + ".started")
    if not started.exists():
        started.write_text("x")
        deadline = time.monotonic() + 120
        while not pathlib.Path(flag + ".go").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
from cortexalign.reports import write_run_outputs  # what `cortexalign run` passes
run_experiment(cfg, out, progress=False, on_job_done=hook, outputs=write_run_outputs)
"""


def _wait_for(path, proc, timeout=300.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the first run ended early: {proc.communicate()}")
        assert time.monotonic() < deadline, "the first run never reached its first job"
        time.sleep(0.05)


def test_a_second_run_on_the_same_out_is_refused_and_each_job_is_stored_once(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    out, flag = tmp_path / "out", tmp_path / "flag"
    first = subprocess.Popen([sys.executable, "-c", HOLDING_RUN, str(cfg), str(out), str(flag)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(tmp_path / "flag.started", first)
        second = subprocess.run([sys.executable, "-c", "from cortexalign.cli import main; main()", "run", str(cfg),
                                 "--out", str(out), "-q"], capture_output=True, text=True,
                                timeout=300)
    finally:
        (tmp_path / "flag.go").write_text("x")
        out_first, err_first = first.communicate(timeout=600)
    assert first.returncode == 0, err_first
    assert second.returncode == 2, second.stderr
    msg = " ".join(second.stderr.split())
    assert f"pid {first.pid}" in msg and f"host {socket.gethostname()}" in msg, msg
    assert "started 20" in msg and "another --out" in msg and "Traceback" not in msg
    # refused at once: the first run was paused until the second had exited (a second run
    # that waited for the lock instead would have been refused nothing and exited 0)

    with duckdb.connect(str(out / "results.duckdb"), read_only=True) as con:
        per_job = con.execute("SELECT job_key, count(*) FROM scores GROUP BY job_key").fetchall()
        runs = con.execute("SELECT status FROM runs").fetchall()
        done = con.execute("SELECT count(*) FROM done_jobs").fetchone()[0]
    assert len(per_job) == N_JOBS and {n for _, n in per_job} == {1}  # one row per job
    assert runs == [("finished",)] and done == N_JOBS  # the refused run wrote nothing
    assert (out / "report.html").is_file() and (out / "best_layers.csv").is_file()
    assert (out / LOCK_FILE).read_text() == ""  # released cleanly
    # issue 20 case 7: monkey IT is one RDM: "no ceiling (one RDM)" in the table and the report
    best = pd.read_csv(out / "best_layers.csv")
    assert best.loc[best["target"] == "kriegeskorte92.monkey_IT", "ceiling"].tolist() == [
        "no ceiling (one RDM)"]
    assert "no ceiling (one RDM)" in (out / "report.html").read_text()


KILLED_HOLDER = """
import os, signal, sys
from cortexalign.bench._lock import RunLock
RunLock(sys.argv[1]).acquire(run="killed-run")
print("HELD", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", KILLED_HOLDER, str(out)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL and proc.stdout.strip() == "HELD"
    left = json.loads((out / LOCK_FILE).read_text())  # the dead holder's details stay behind
    assert left["run"] == "killed-run"
    with RunLock(out) as lock:
        assert lock.stale is not None and lock.stale["pid"] == left["pid"]
        assert json.loads((out / LOCK_FILE).read_text())["pid"] == os.getpid()
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):  # held: refused
            RunLock(out).acquire()
    with RunLock(out) as lock:  # released cleanly: nothing stale
        assert lock.stale is None


def test_a_refused_lock_on_a_new_directory_leaves_no_directory(tmp_path):
    out = tmp_path / "new"
    with RunLock(out):
        assert (out / LOCK_FILE).exists()
    assert not out.exists()  # created by the lock, nothing else written: removed


CACHE_WRITER = """
import hashlib, pathlib, sys, time
import numpy as np
from cortexalign.features import FeatureCache
root, key, barrier = sys.argv[1:4]
values = np.random.default_rng(7).standard_normal((600, 1000)).astype(np.float32)
pathlib.Path(barrier + "." + str(__import__("os").getpid())).write_text("x")
while len(list(pathlib.Path(barrier).parent.glob(pathlib.Path(barrier).name + ".*"))) < 2:
    time.sleep(0.001)
cache = FeatureCache(root)
cache.put(key, values, {"layer": "x"})
back, _ = cache.get(key, verify=True)
print(hashlib.sha256(back.tobytes()).hexdigest(), flush=True)
"""


def test_two_processes_writing_one_cache_entry_leave_one_complete_entry(tmp_path):
    root, key = tmp_path / "cache", "a" * 64
    procs = [subprocess.Popen([sys.executable, "-c", CACHE_WRITER, str(root), key,
                               str(tmp_path / "barrier")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    digests = {o[0].strip() for o in outs}
    want = np.random.default_rng(7).standard_normal((600, 1000)).astype(np.float32)
    assert digests == {__import__("hashlib").sha256(want.tobytes()).hexdigest()}
    cache = FeatureCache(root)
    assert cache.keys() == [key]
    values, meta = cache.get(key, verify=True)
    np.testing.assert_array_equal(values, want)
    assert meta["layer"] == "x"
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]  # no half entry left
