"""Checkpoints of alignment training: safetensors weights and optimizer, the config beside.

``ckpt_{step:07d}.safetensors`` is the model's plain ``state_dict`` (so ``load_model(name,
weights=PATH)`` loads it, timm and ``snn:*`` alike); ``ckpt_{step:07d}.optim.safetensors`` the
optimizer's tensors; ``ckpt_{step:07d}.json`` the run config, the step, the curves so far, the
stimulus split and the training target. Every file is written atomically (temp + rename), the
JSON last: a checkpoint counts once its JSON exists.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from cortexalign.atomic import write_atomic as _atomic
from cortexalign.errors import InputError

__all__ = ["save_checkpoint", "list_checkpoints", "load_checkpoint", "read_checkpoint_meta"]


def save_checkpoint(directory: Path, step: int, module: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, meta: dict) -> Path:
    """Write checkpoint ``step`` into ``directory``; returns the weights' path."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    optim = {}
    for i, state in optimizer.state_dict()["state"].items():
        for key, val in state.items():
            t = val if isinstance(val, torch.Tensor) else torch.tensor(val)
            optim[f"{i}.{key}"] = t.detach().contiguous().cpu()
    path = directory / f"ckpt_{step:07d}.safetensors"
    _atomic(path, lambda p: save_file(weights, str(p)))
    _atomic(path.with_suffix(".optim.safetensors"), lambda p: save_file(optim, str(p)))
    _atomic(path.with_suffix(".json"),
            lambda p: p.write_text(json.dumps({"step": step, **meta}, indent=1)))
    return path


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints in ``directory`` (weights, optimizer and JSON present), oldest first."""
    if not directory.is_dir():
        return []
    out = []
    for j in sorted(directory.glob("ckpt_*.json")):
        w = j.with_suffix(".safetensors")
        if w.is_file() and w.with_suffix(".optim.safetensors").is_file():
            out.append(w)
    return out


def read_checkpoint_meta(path: Path) -> dict:
    """The JSON beside checkpoint ``path``."""
    j = Path(path).with_suffix(".json")
    if not j.is_file():
        raise InputError("checkpoint", "a ckpt_*.safetensors with its .json beside",
                         repr(str(path)), "point at a checkpoint written by train_aligned")
    return json.loads(j.read_text())


def load_checkpoint(path: Path, module: torch.nn.Module,
                    optimizer: torch.optim.Optimizer) -> dict:
    """Load weights and optimizer state of checkpoint ``path``; returns its metadata."""
    meta = read_checkpoint_meta(path)
    module.load_state_dict(load_file(str(path)))
    per_param: dict[int, dict] = {}
    for k, v in load_file(str(Path(path).with_suffix(".optim.safetensors"))).items():
        i, key = k.split(".", 1)
        per_param.setdefault(int(i), {})[key] = v
    state = optimizer.state_dict()
    state["state"] = per_param
    optimizer.load_state_dict(state)
    return meta
