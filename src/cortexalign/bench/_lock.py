"""One writer per output directory: an OS lock on ``OUT/.cortexalign.lock`` held for a whole run.

The lock is an exclusive ``flock`` (``portalocker``) on an open file, so the kernel releases it
when the holding process ends in any way (SIGKILL and power loss included): a lock can never be
left behind by a dead process. The file also holds the holder's host, pid, start time and run
id as JSON, written after the lock is taken and emptied on a clean release; a second run that
finds the lock held exits at once naming the holder. A run that takes the lock and finds holder
details left in the file knows their process died without releasing it (a stale lock) and says
it took over.

A network filesystem without working ``flock`` (some NFS setups) cannot give this guarantee;
keep output directories on a local disk or one with POSIX locks.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO

import portalocker

from cortexalign.errors import InputError

__all__ = ["RunLock", "RunLockedError", "LOCK_FILE"]

LOCK_FILE = ".cortexalign.lock"


class RunLockedError(InputError):
    """Another ``cortexalign run`` holds the output directory's lock."""

    def __init__(self, out: Path, holder: dict):
        self.out, self.holder = out, holder
        who = (f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, started "
               f"{holder.get('started', '?')} UTC" + (f", run {holder['run']}"
                                                       if holder.get("run") else ""))
        super().__init__("out_dir", "an output directory no other run is writing",
                         f"{str(out)!r}, locked by a running cortexalign run ({who})",
                         "wait for that run to finish (`cortexalign status "
                         f"{out}` shows its progress), or give this run another --out; two "
                         "runs writing one directory would duplicate and interleave their work")


@dataclass
class RunLock:
    """Exclusive lock of one output directory for the life of a run (a context manager).

    Parameters
    ----------
    out : the output directory (created if absent; removed again on release when the run wrote
        nothing else into it).

    Attributes
    ----------
    stale : holder details of a dead process whose lock this one took over (None otherwise).
    """

    out: Path
    stale: dict | None = None
    _fh: IO[str] | None = None
    _created: bool = False

    @property
    def path(self) -> Path:
        """The lock file, ``OUT/.cortexalign.lock``."""
        return Path(self.out) / LOCK_FILE

    def acquire(self, run: str = "") -> RunLock:
        """Take the lock or raise :class:`RunLockedError` at once (no waiting)."""
        out = Path(self.out)
        self._created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+", encoding="utf-8")
        try:
            portalocker.lock(fh, portalocker.LOCK_EX | portalocker.LOCK_NB)
        except portalocker.exceptions.LockException:
            holder = _read(fh)
            fh.close()
            raise RunLockedError(out, holder) from None
        self.stale = _read(fh) or None  # details left behind: that process died holding it
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                             "started": f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S}", "run": run}))
        fh.flush()
        os.fsync(fh.fileno())
        self._fh = fh
        return self

    def release(self) -> None:
        """Empty the holder details and unlock (idempotent)."""
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            fh.seek(0)
            fh.truncate()
            fh.flush()
        finally:
            portalocker.unlock(fh)
            fh.close()
        out = Path(self.out)
        if self._created and [p.name for p in out.iterdir()] == [LOCK_FILE]:
            self.path.unlink(missing_ok=True)  # the run stopped before writing anything
            out.rmdir()

    def __enter__(self) -> RunLock:
        return self.acquire() if self._fh is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _read(fh: IO[str]) -> dict:
    fh.seek(0)
    try:
        info = json.loads(fh.read() or "{}")
    except ValueError:
        return {"host": "?", "pid": "?", "started": "? (unreadable lock file)"}
    return info if isinstance(info, dict) else {}
