"""BatchedWrites: one connection per run, job writes committed in batches (issue 21).

The same rows, job marks and idempotency as ``ResultsStore``'s own writes; reads and other
calls see every queued write; a job is reported (``when_committed``) only once committed; and a
process killed with SIGKILL keeps every job it reported and none partly.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from cortexalign.errors import InputError
from cortexalign.results import BatchedWrites, ResultsStore, ScoreRecord

CONFIG = "models: [timm:resnet18]\nmetrics: [rsa]\n"


def record(layer="layer1", value=0.25) -> ScoreRecord:
    return ScoreRecord(model="m", model_id="m", layer=layer, target="VISp", metric="rsa",
                       value=value)


def _tables(store: ResultsStore, run: str) -> tuple[list, list]:
    scores = store.scores_frame()[["job_key", "layer", "value"]].sort_values("job_key")
    jobs = store.frame("jobs")[["job_key", "status", "error"]].sort_values(["job_key", "status"])
    jobs["error"] = jobs["error"].fillna("").str.replace(run, "RUN")
    return scores.values.tolist(), jobs.values.tolist()


def _writes(store, run: str) -> None:
    """A mix of every job write: finished, failed then retried, duplicate, replaced."""
    for k in range(5):
        store.start_job(f"j{k}", run)
        store.record_job(f"j{k}", run, [record(f"l{k}", value=k / 8)])
    store.start_job("f", run)
    store.fail_job("f", run, "CUDA out of memory")
    store.start_job("f", run)
    store.record_job("f", run, [record("lf"), record("lf2")])
    store.fail_job("never-started", run, "bad layer")
    store.record_job("j0", run, [record("again")])  # already recorded: a duplicate, no rows
    store.record_job("j1", run, [record("l1", value=0.75)], replace=True)


@pytest.mark.parametrize("max_jobs", [1, 3, 1000])
def test_batched_writes_store_what_direct_writes_store(tmp_path, max_jobs):
    direct = ResultsStore(tmp_path / "direct.duckdb")
    direct_run = direct.start_run(CONFIG)
    _writes(direct, direct_run)
    store = ResultsStore(tmp_path / "batched.duckdb")
    run = store.start_run(CONFIG)
    with store.batched(max_jobs=max_jobs, max_delay_s=1e9) as writes:
        _writes(writes, run)
    assert _tables(store, run) == _tables(direct, direct_run)
    assert "running" not in set(store.frame("jobs")["status"])


def _finished_only(store, run: str, other: str) -> None:
    """Finished jobs only (the set-wise path): one already recorded by another run, one whose
    running mark was written before, two groups in one job."""
    store.record_job("taken", other, [record("t")])
    store.start_job("marked", run)
    if isinstance(store, BatchedWrites):
        store.flush()  # the mark on disk, "taken" recorded; the rest is one batch
    for k in range(6):
        store.start_job(f"j{k}", run)
        store.record_job(f"j{k}", run, [record(f"l{k}", value=k / 8), record("g2", value=-k)])
    store.record_job("taken", run, [record("again")])
    store.record_job("marked", run, [record("m")])


def test_a_batch_of_finished_jobs_stores_what_direct_writes_store(tmp_path):
    direct = ResultsStore(tmp_path / "direct.duckdb")
    runs = [direct.start_run(CONFIG) for _ in range(2)]
    _finished_only(direct, *runs)
    store = ResultsStore(tmp_path / "batched.duckdb")
    other, run = store.start_run(CONFIG), store.start_run(CONFIG)
    with store.batched(max_jobs=1000, max_delay_s=1e9) as writes:
        _finished_only(writes, run, other)
        assert writes.n_commits == 1  # the rest: one batch, committed on close
    got, want = _tables(store, other), _tables(direct, runs[1])
    assert got == want and ["taken", "duplicate"] in [r[:2] for r in got[1]]
    frame = store.scores_frame()
    assert frame["layer"].tolist() == direct.scores_frame()["layer"].tolist()  # write order
    assert set(frame["config_hash"]) == set(direct.scores_frame()["config_hash"])


def test_reads_and_other_calls_see_the_queued_writes(tmp_path):
    store = ResultsStore(tmp_path / "r.duckdb")
    run = store.start_run(CONFIG)
    with store.batched(max_jobs=1000, max_delay_s=1e9) as writes:
        writes.start_job("a", run)
        assert writes.finished_jobs() == set()
        assert list(writes.frame("jobs")["status"]) == ["running"]  # its mark, once flushed
        writes.record_job("a", run, [record()])
        assert writes.has_job("a") and len(writes.scores_frame()) == 1
        assert list(writes.frame("jobs")["status"]) == ["finished"]  # the mark closed
        writes.finish_run(run)
        assert writes.path == store.path
    assert store.frame("runs")["status"].tolist() == ["finished"]


def test_a_job_is_reported_only_once_committed(tmp_path):
    store = ResultsStore(tmp_path / "r.duckdb")
    run = store.start_run(CONFIG)
    reported, on_disk = [], []

    def report(key):
        reported.append(key)
        on_disk.append(ResultsStore(store.path).has_job(key))  # another store object: the file

    with store.batched(max_jobs=4, max_delay_s=1e9) as writes:
        for k in range(6):
            writes.start_job(f"j{k}", run)
            writes.record_job(f"j{k}", run, [record()])
            writes.when_committed(lambda key=f"j{k}": report(key))
        assert reported == ["j0", "j1", "j2", "j3"] and writes.n_commits == 1  # 4 jobs a commit
        writes.flush()
        assert reported == [f"j{k}" for k in range(6)]
        writes.when_committed(lambda: report("nothing queued: at once"))
        assert reported[-1] == "nothing queued: at once"
    assert on_disk[:6] == [True] * 6


def test_bad_records_and_keys_are_refused_before_anything_is_queued(tmp_path):
    store = ResultsStore(tmp_path / "r.duckdb")
    run = store.start_run(CONFIG)
    with store.batched() as writes:
        with pytest.raises(InputError):
            writes.record_job("j", run, [record(value=float("nan")), "not a record"])
        with pytest.raises(InputError):
            writes.start_job("", run)
        assert writes.flush() == 0
    with pytest.raises(InputError, match="run_id"):
        with store.batched() as writes:
            writes.record_job("j", "no-such-run", [record()])
    assert store.finished_jobs() == set() and store.scores_frame().empty


def test_slow_jobs_are_written_through(tmp_path):
    """Jobs taking max_delay_s or longer: each write committed at once, as without batching,
    so the running job's mark is on disk while it runs."""
    store = ResultsStore(tmp_path / "r.duckdb")
    run = store.start_run(CONFIG)
    with store.batched(max_jobs=1000, max_delay_s=0.0) as writes:
        writes.start_job("a", run)
        writes.record_job("a", run, [record()])
        writes.start_job("b", run)
        assert not writes._ops and not writes._started  # nothing queued
        writes.when_committed(lambda: None)
        assert writes._callbacks == []
    jobs = store.frame("jobs").sort_values("job_key")
    assert jobs["status"].tolist() == ["finished", "running"]


_CHILD = """
    import os, signal, sys
    from cortexalign.results import BatchedWrites, ResultsStore, ScoreRecord
    store = ResultsStore(sys.argv[1])
    run = store.start_run("x: 1\\n")
    log = open(sys.argv[2], "a")
    def report(key):
        log.write(key + "\\n"); log.flush(); os.fsync(log.fileno())
        if key == "j29":
            os.kill(os.getpid(), signal.SIGKILL)
    writes = store.batched(max_jobs=8, max_delay_s=1e9)
    for k in range(100):
        writes.start_job(f"j{k}", run)
        writes.record_job(f"j{k}", run, [ScoreRecord(model="m", model_id="m", layer=f"l{k}",
                                                      target="t", metric="rsa", value=k)])
        writes.when_committed(lambda key=f"j{k}": report(key))
"""


def test_sigkill_loses_nothing_reported(tmp_path):
    path, log = tmp_path / "r.duckdb", tmp_path / "reported.txt"
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_CHILD), str(path), str(log)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    reported = log.read_text().split()
    assert reported == [f"j{k}" for k in range(30)]
    store = ResultsStore(path, read_only=True)
    kept = store.finished_jobs()
    assert set(reported) <= kept  # nothing reported is lost
    # commits of 8 jobs: the kill came while reporting the commit of j24-j31, which is whole on
    # disk, and nothing after it
    assert kept == {f"j{k}" for k in range(32)}
    scores = store.scores_frame()
    assert sorted(scores["job_key"]) == sorted(kept) and len(scores) == len(kept)
    assert set(store.frame("jobs")["status"]) == {"finished"}
