"""Disk primitives of the feature cache: fsync a published tree, whether a writer's process
is alive, how many bytes an entry holds."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_tree", "fsync_dir", "pid_alive", "dir_bytes"]


def fsync_tree(path: Path) -> None:
    """fsync every file and directory under ``path`` (data reaches the disk before the rename)."""
    for dirpath, _, files in os.walk(path):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def fsync_dir(path: Path) -> None:
    """fsync a directory (its entries' names reach the disk)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def dir_bytes(path: Path) -> int:
    """Bytes of the files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
