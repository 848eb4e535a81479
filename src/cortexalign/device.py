"""Device choice at the edges: numerical code takes a ``device`` argument and never hard-codes one."""

from __future__ import annotations

import torch

from cortexalign.errors import InputError

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"`` picks CUDA when present, else the CPU; anything else is checked."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device", "a device that exists on this machine", repr(str(device)),
                         "pass device='cpu' or 'auto' (CUDA is not available here)")
    return dev
