"""``cortexalign status``: what the runs of a results directory did, and whether they still run.

A run whose process was killed (SIGKILL, power loss, a lost node) cannot close its row, so the
store still says ``running``. The run's manifest records the hostname and pid of the process
that wrote it (``results.hardware``); on that host, a pid that is gone, a zombie, or a process
started after the run (a reused pid) means the run is ``interrupted (no live process)``.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from cortexalign.results import ResultsStore, results_path

__all__ = ["RunStatus", "run_status", "results_path", "export_frame", "INTERRUPTED"]

INTERRUPTED = "interrupted (no live process)"


@dataclass(frozen=True)
class RunStatus:
    """One run as ``cortexalign status`` shows it.

    Attributes
    ----------
    run_id, config_hash, started, finished : from the ``runs`` table (UTC; finished None while
        running). status : as stored (``running``, ``finished``, ``failed``, ``interrupted``).
    state : what is true now: the stored status, or for a ``running`` run ``running (pid N)``,
        ``interrupted (no live process)``, or ``running on HOST (...)`` when it cannot be checked.
    n_finished, n_failed, n_running : jobs of this run by status (``running`` = started, never
        closed). failures : ``(job_key, error)`` of the failed jobs.
    """

    run_id: str
    config_hash: str
    started: datetime
    finished: datetime | None
    status: str
    state: str
    n_finished: int = 0
    n_failed: int = 0
    n_running: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


def _proc_start(pid: int) -> tuple[float | None, str | None]:
    """(start time as a UNIX timestamp, state letter) of a process from /proc; Nones elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        btime = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime"))
    except (OSError, StopIteration, ValueError, IndexError):
        return None, None
    rest = stat.rsplit(")", 1)[1].split()  # fields after "pid (comm)": state is field 3
    return btime + int(rest[19]) / os.sysconf("SC_CLK_TCK"), rest[0]


def _alive(pid: int, started: datetime) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    t_start, state = _proc_start(pid)
    if state == "Z":
        return False
    run_t = started.replace(tzinfo=UTC).timestamp()
    return t_start is None or t_start <= run_t + 5.0  # a process started after the run: reused


def _state(status: str, hardware: str | None, started: datetime) -> str:
    if status != "running":
        return status
    try:
        info = json.loads(hardware) if hardware else {}
    except ValueError:
        info = {}
    host, pid = info.get("hostname"), info.get("pid")
    if host is None or pid is None:
        return "running (liveness unknown: no pid recorded)"
    here = socket.gethostname()
    if host != here:
        return f"running on {host} (pid {pid}; cannot be checked from {here})"
    return f"running (pid {pid})" if _alive(int(pid), started) else INTERRUPTED


def _ts(x: object) -> datetime | None:
    return None if x is None or pd.isna(x) else pd.Timestamp(x).to_pydatetime()


def run_status(out: str | os.PathLike[str]) -> list[RunStatus]:
    """The runs of a results directory, oldest first, with job counts and failures.

    Raises ``InputError`` for a missing file or a store of another schema version.
    """
    store = ResultsStore(results_path(out), read_only=True)
    runs, jobs = store.frame("runs"), store.frame("jobs")
    out_runs = []
    for r in runs.sort_values("started").itertuples(index=False):
        mine = jobs[jobs["run_id"] == r.run_id]
        counts = mine["status"].value_counts()
        failed = mine[mine["status"] == "failed"]
        started = _ts(r.started)
        out_runs.append(RunStatus(
            run_id=r.run_id, config_hash=r.config_hash, started=started,
            finished=_ts(r.finished), status=r.status,
            state=_state(r.status, r.hardware, started),
            n_finished=int(counts.get("finished", 0)), n_failed=int(counts.get("failed", 0)),
            n_running=int(counts.get("running", 0)),
            failures=[(k, str(e)) for k, e in zip(failed["job_key"], failed["error"], strict=True)]))
    return out_runs


def export_frame(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """``cortexalign.results.export_frame`` with the CLI's parameter name (``--export``)."""
    from cortexalign.results import export_frame as _export

    return _export(frame, path, parameter="export")
