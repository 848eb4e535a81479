"""The one runner with a toy analysis kind registered here: validate before anything is written,
plan -> execute -> store, a failing job recorded while the others go on, resume after a crash
with only the unfinished jobs computed, and rows equal to an uninterrupted run's."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from cortexalign.bench import (
    ANALYSES,
    EXPERIMENT_KINDS,
    AnalysisKind,
    Plan,
    RunRequest,
    Unit,
    analysis_kind,
    run_analyses,
)
from cortexalign.errors import InputError
from cortexalign.results import ResultsStore, ScoreRecord


@dataclass(frozen=True)
class ToyConfig:
    """n jobs in each of two units; job ``fail`` raises; ``n < 1`` is refused."""

    name: str = "toy"
    n: int = 3
    fail: str = ""


@dataclass(frozen=True)
class ToyJob:
    key: str
    label: str
    unit: str
    k: int


EXECUTED: list[str] = []


class ToyKind(AnalysisKind):
    """Squares: job k of unit u stores the value (k + offset of u) ** 2."""

    name = "toy"

    def validate(self, request):
        if request.config.n < 1:
            raise InputError("n", "at least one job", repr(request.config.n), "raise n")
        return {"offset": {"a": 0, "b": 10}}

    def units(self, ctx):
        return [Unit("toy", u, u, f"toy {u}") for u in ("a", "b")]

    def plan(self, ctx, unit):
        return Plan([ToyJob(f"toy-{unit.item}-{k}", f"{unit.item}/{k}", unit.item, k)
                     for k in range(ctx.config.n)])

    def prepare(self, ctx, plan, todo):
        return ctx.inputs["offset"]  # what the jobs share

    def execute(self, ctx, job, offset):
        EXECUTED.append(job.key)
        if job.label == ctx.config.fail:
            raise ValueError(f"job {job.label} fails")
        return [ScoreRecord(model=job.unit, model_id=job.unit, layer=str(job.k), target="t",
                            metric="square", value=float((job.k + offset[job.unit]) ** 2))]

    def citations(self, config):
        return [("toy: squares", "Pythagoras (c. 500 BC)")]


if "toy" not in ANALYSES:
    ANALYSES.add("toy", ToyKind(), description="squares, for the runner's tests")


def _request(cfg: ToyConfig) -> RunRequest:
    return RunRequest(cfg, ("toy",), f"name: toy\nn: {cfg.n}\n", f"toy{cfg.n}")


def _values(out) -> dict[str, float]:
    frame = ResultsStore(out / "results.duckdb", read_only=True).scores_frame()
    return dict(zip(frame["job_key"], frame["value"], strict=True))


@pytest.fixture(autouse=True)
def _clear():
    EXECUTED.clear()


def test_every_kind_is_registered_and_the_experiment_kinds_exist():
    assert {"scores", "partitions", "second_order"} <= set(ANALYSES)
    assert set(EXPERIMENT_KINDS) <= set(ANALYSES)
    assert analysis_kind("sae_brainmap").name == "sae_brainmap"  # imported by name, above bench
    for name in ANALYSES:
        assert isinstance(analysis_kind(name), AnalysisKind) and ANALYSES.entry(name).description


def test_validate_refuses_before_anything_is_written(tmp_path):
    with pytest.raises(InputError, match="at least one job"):
        run_analyses(_request(ToyConfig(n=0)), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() and EXECUTED == []


def test_a_toy_kind_runs_through_plan_execute_store_and_notes(tmp_path):
    summary = run_analyses(_request(ToyConfig(fail="b/1")), tmp_path, progress=False)
    assert (summary.n_jobs, summary.n_done, summary.n_skipped) == (6, 5, 0)
    assert [f["job"] for f in summary.failures] == ["b/1"]
    assert "ValueError: job b/1 fails" in summary.failures[0]["error"]
    assert _values(tmp_path) == {"toy-a-0": 0, "toy-a-1": 1, "toy-a-2": 4,
                                 "toy-b-0": 100, "toy-b-2": 144}
    store = ResultsStore(tmp_path / "results.duckdb", read_only=True)
    jobs = store.frame("jobs").set_index("job_key")
    assert jobs.loc["toy-b-1", "status"] == "failed"
    assert store.frame("runs")["status"].tolist() == ["failed"]
    assert ("toy: squares", "Pythagoras (c. 500 BC)") in \
        store.frame("notes")[["subject", "text"]].apply(tuple, axis=1).tolist()
    # a rerun computes the failed job only, and then the run is complete
    again = run_analyses(_request(ToyConfig()), tmp_path, progress=False)
    assert EXECUTED[-1:] == ["toy-b-1"] and (again.n_done, again.n_skipped) == (1, 5)
    assert again.ok and _values(tmp_path)["toy-b-1"] == 121


def test_a_crashed_run_resumes_with_only_the_unfinished_jobs(tmp_path):
    full = run_analyses(_request(ToyConfig()), tmp_path / "full", progress=False)
    assert full.ok and len(EXECUTED) == 6
    EXECUTED.clear()
    reported = []

    def crash(job):  # the process dies after the fourth job is reported done
        reported.append(job.key)
        if len(reported) == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_analyses(_request(ToyConfig()), tmp_path / "crashed", progress=False,
                     on_job_done=crash)
    store = ResultsStore(tmp_path / "crashed" / "results.duckdb", read_only=True)
    assert store.frame("runs")["status"].tolist() == ["interrupted"]
    kept = store.finished_jobs()
    assert set(reported) <= kept  # every job reported done is in the store
    EXECUTED.clear()
    resumed = run_analyses(_request(ToyConfig()), tmp_path / "crashed", progress=False)
    assert sorted(EXECUTED) == sorted(set(full.job_keys) - kept)  # nothing computed twice
    assert (resumed.n_skipped, resumed.n_done) == (len(kept), 6 - len(kept))
    assert _values(tmp_path / "crashed") == _values(tmp_path / "full")
    # replace=True (--force) recomputes every job and replaces its rows
    EXECUTED.clear()
    forced = run_analyses(_request(ToyConfig()), tmp_path / "crashed", progress=False,
                          replace=True)
    assert forced.n_done == 6 and len(EXECUTED) == 6
    assert _values(tmp_path / "crashed") == _values(tmp_path / "full")
