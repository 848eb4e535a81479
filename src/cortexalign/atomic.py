"""One way to write a file atomically: into a temporary file beside it, then renamed into place."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["write_atomic"]


def write_atomic(path: str | os.PathLike[str], write: Callable[[Path], Any]) -> Path:
    """Run ``write(tmp)`` on a temporary file beside ``path`` (same suffixes, so libraries that
    choose the format by extension pick the same one), then rename it into place. A reader never
    sees half a file; a failed or killed write leaves no file at ``path`` and no temporary file
    (the rename is atomic on one file system). Creates the parent folder. Returns ``path``."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name.split('.')[0]}.{uuid.uuid4().hex[:8]}{''.join(out.suffixes)}")
    try:
        write(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
