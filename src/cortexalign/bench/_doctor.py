"""``cortexalign doctor OUT``: check a results directory and say what a rerun would redo.

Read-only: nothing in ``OUT`` is changed (the feature cache is verified without discarding
anything, the lock is only tested). Checks, in order:

1. the lock: is a run writing ``OUT`` now (host, pid, start), or did one die holding it;
2. the store: readable, or which ``StoreError`` (truncated, bad header, not a store, another
   schema version, locked) and its fix;
3. the runs and jobs: runs that never closed, and the job keys with no finished attempt (a rerun
   redoes exactly these);
4. the outputs: ``report.html``, ``best_layers.csv``, ``figure.png`` (a rerun rewrites missing
   ones, with every job skipped);
5. the feature cache (``OUT/cache`` or ``--cache``): complete entries whose bytes match their
   sha256, damaged entries (recomputed on the next use), partial writes left behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import portalocker
import zarr

from cortexalign.bench._lock import LOCK_FILE
from cortexalign.errors import StoreError
from cortexalign.features import ARRAY_NAME, META_FILE, sha256_of

__all__ = ["Finding", "Diagnosis", "diagnose"]

OUTPUT_FILES = ("report.html", "best_layers.csv", "figure.png")


@dataclass(frozen=True)
class Finding:
    """One check: what was checked, whether it is fine, what was found, what a rerun does."""

    check: str
    ok: bool
    detail: str
    rerun: str = ""


@dataclass
class Diagnosis:
    """Every finding of ``diagnose``; ``ok`` when all are fine."""

    out: Path
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every finding is fine."""
        return all(f.ok for f in self.findings)

    def add(self, check: str, ok: bool, detail: str, rerun: str = "") -> None:
        """Record a finding: ``check`` passed (``ok``) or not, with ``detail`` and what a rerun does."""
        self.findings.append(Finding(check, ok, detail, rerun))


def _check_lock(out: Path, dx: Diagnosis) -> None:
    path = out / LOCK_FILE
    if not path.exists():
        dx.add("lock", True, "no run has held this directory's lock (or it predates locks)")
        return
    with path.open("r", encoding="utf-8") as fh:
        try:
            portalocker.lock(fh, portalocker.LOCK_SH | portalocker.LOCK_NB)
        except portalocker.exceptions.LockException:
            holder = fh.read().strip() or "{}"
            dx.add("lock", False, f"a run is writing this directory now: {holder}",
                   "wait for it to finish; a second run here is refused")
            return
        left = fh.read().strip()
        portalocker.unlock(fh)
    if left:
        dx.add("lock", True, f"free; left by a run that died holding it ({left}): the next run "
               "takes it over")
    else:
        dx.add("lock", True, "free (the last run released it cleanly)")


def _check_store(out: Path, dx: Diagnosis) -> None:
    from cortexalign.bench._status import run_status
    from cortexalign.results import RESULTS_FILE, ResultsStore

    path = out / RESULTS_FILE
    if not path.exists():
        dx.add("store", False, f"{path} is absent", "a rerun starts a new store and runs every "
               "job (features come from the cache when present)")
        return
    try:
        store = ResultsStore(path, read_only=True, lock_timeout_s=2.0)
        runs = run_status(out)
        jobs = store.frame("jobs")
    except StoreError as err:
        dx.add("store", False, f"{err.kind}: {err.problem}", f"{err.fix}")
        return
    dx.add("store", True, f"{path} opens: {len(runs)} runs, "
           f"{int((jobs['status'] == 'finished').sum())} finished job attempts")
    for r in runs:
        if r.status == "running":
            dx.add(f"run {r.run_id}", r.state.startswith("running ("),
                   f"{r.state}; {r.n_finished} jobs finished, {r.n_running} never closed")
    done = set(jobs.loc[jobs["status"] == "finished", "job_key"])
    todo = sorted(set(jobs["job_key"]) - done)
    if todo:
        dx.add("jobs", False, f"{len(todo)} jobs without a finished attempt: "
               + ", ".join(k[:16] for k in todo[:5]) + (" ..." if len(todo) > 5 else ""),
               f"a rerun with the same config redoes these {len(todo)} jobs and skips the "
               f"{len(done)} finished ones")
    else:
        dx.add("jobs", True, f"every recorded job finished ({len(done)})")
    last_ok = [r for r in runs if r.status == "finished"]
    missing = [f for f in OUTPUT_FILES if not (out / f).exists()]
    if missing and runs:
        dx.add("outputs", False, f"missing {', '.join(missing)}",
               "a rerun (every job skipped) writes them; `cortexalign report OUT` writes the "
               "report alone")
    elif runs:
        dx.add("outputs", True, f"{', '.join(OUTPUT_FILES)} present"
               + ("" if last_ok else " (no run has finished yet)"))


def _entry_problem(entry: Path) -> str | None:
    """What is wrong with one cache entry (None when its bytes match its sha256)."""
    try:
        meta = json.loads((entry / META_FILE).read_text())
        arr = zarr.open_array(entry / ARRAY_NAME, mode="r")
        if list(arr.shape) != meta["shape"] or str(arr.dtype) != meta["dtype"]:
            return "shape or dtype differs from its metadata"
        values = np.asarray(arr[...])
    except FileNotFoundError:
        return "metadata or array missing"
    except Exception as exc:  # any codec error of a damaged chunk
        return f"unreadable ({type(exc).__name__})"
    if sha256_of(values) != meta.get("sha256"):
        return "bytes differ from its sha256"
    return None


def _check_cache(root: Path, dx: Diagnosis) -> None:
    if not root.is_dir():
        dx.add("cache", True, f"no feature cache at {root}: a rerun extracts what it needs")
        return
    entries = [p for p in root.iterdir() if p.is_dir() and len(p.name) == 64
               and set(p.name) <= set("0123456789abcdef")]
    bad = {p.name: why for p in entries if (why := _entry_problem(p)) is not None}
    partial = [p.name for p in root.iterdir() if p.name.startswith(".tmp-")]
    dx.add("cache", not bad, f"{len(entries) - len(bad)} of {len(entries)} entries verified "
           f"(sha256) in {root}" + (f"; {len(partial)} partial writes left" if partial else ""),
           "" if not bad else f"{len(bad)} damaged entries ("
           + "; ".join(f"{k[:12]}: {v}" for k, v in list(bad.items())[:3])
           + ") are discarded and their features extracted again when a run needs them")


def diagnose(out: str | Path, cache: str | Path | None = None) -> Diagnosis:
    """Every check of the module docstring on results directory ``out`` (read-only)."""
    out = Path(out)
    dx = Diagnosis(out)
    if not out.is_dir():
        dx.add("directory", False, f"{out} is not a directory", "pass the --out of a run")
        return dx
    _check_lock(out, dx)
    _check_store(out, dx)
    _check_cache(Path(cache) if cache else out / "cache", dx)
    return dx
