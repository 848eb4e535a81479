"""What a run records about where it ran: package versions, git revision, hardware."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["package_versions", "git_revision", "hardware", "TRACKED_PACKAGES"]

#: Distributions whose versions can change a score.
TRACKED_PACKAGES = ("cortexalign", "torch", "torchvision", "timm", "numpy", "scipy", "xarray",
                    "zarr", "duckdb", "pandas", "himalaya", "scikit-learn", "rsatoolbox",
                    "spikingjelly", "segment-anything", "sam2", "open-clip-torch", "pynwb")


def package_versions(packages: Sequence[str] = TRACKED_PACKAGES) -> dict[str, str]:
    """``{distribution: version}`` of the installed ``packages`` (absent ones left out), plus python."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_revision(path: str | os.PathLike[str] | None = None) -> str | None:
    """The commit checked out at ``path`` (default: the working directory), ``-dirty`` appended
    when tracked files have uncommitted changes; None outside a git work tree or without git."""
    cwd = Path(path) if path is not None else Path.cwd()
    try:
        done = subprocess.run(["git", "-C", str(cwd), "describe", "--always", "--dirty",
                               "--abbrev=40", "--match=NO-TAGS-ONLY-HASHES"],
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    rev = done.stdout.strip()
    return rev if done.returncode == 0 and rev else None


def hardware() -> dict[str, Any]:
    """The host and accelerators: platform, CPU count, memory, CUDA devices (name, memory); the
    hostname and pid of this process (``cortexalign status`` tells a crashed run by them)."""
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                            "processor": platform.processor() or None, "cpu_count": os.cpu_count(),
                            "python": sys.version.split()[0],
                            "hostname": socket.gethostname(), "pid": os.getpid()}  # liveness
    try:
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        info["memory_gb"] = None
    try:
        import torch
    except ImportError:
        return info
    info["torch"] = torch.__version__
    info["cuda"] = torch.version.cuda if torch.cuda.is_available() else None
    info["gpus"] = [{"name": torch.cuda.get_device_name(i),
                     "memory_gb": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)}
                    for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return info
