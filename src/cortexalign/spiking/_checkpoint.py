"""Checkpoints: safetensors (model and optimizer tensors) with a JSON description beside.

``ckpt_{step:07d}.safetensors`` holds ``model.*`` and ``optim.{i}.{key}`` tensors;
``ckpt_{step:07d}.json`` holds the model name and architecture, the training config,
step, epoch and metrics. Both are written atomically (temp file + rename), the JSON last,
so a checkpoint counts only once its JSON exists.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from cortexalign.atomic import write_atomic as _atomic
from cortexalign.errors import InputError
from cortexalign.spiking._configs import HSTConfig
from cortexalign.spiking.models import SpikingTransformer

__all__ = ["save_checkpoint", "list_checkpoints", "read_meta", "load_weights", "model_from_checkpoint"]


def save_checkpoint(directory: Path, step: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None, meta: dict) -> Path:
    """Write checkpoint ``step`` into ``directory``; returns the safetensors path.

    A ``SpikingTransformer``'s architecture is recorded beside its weights; another module (an
    ANN control) is recorded by ``meta["model_name"]`` alone.
    """
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if optimizer is not None:
        for i, state in optimizer.state_dict()["state"].items():
            for key, val in state.items():
                t = val if isinstance(val, torch.Tensor) else torch.tensor(val)
                tensors[f"optim.{i}.{key}"] = t.detach().contiguous().cpu()
    path = directory / f"ckpt_{step:07d}.safetensors"
    _atomic(path, lambda p: save_file(tensors, str(p)))
    arch = ({"model_name": model.name, "architecture": asdict(model.config)}
            if isinstance(model, SpikingTransformer) else {})
    full = {**arch, "step": step, **meta}
    _atomic(path.with_suffix(".json"), lambda p: p.write_text(json.dumps(full, indent=1)))
    return path


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints in ``directory`` (JSON present), oldest first."""
    if not directory.is_dir():
        return []
    return sorted(j.with_suffix(".safetensors") for j in directory.glob("ckpt_*.json")
                  if j.with_suffix(".safetensors").is_file())


def read_meta(path: str | Path) -> dict:
    p = Path(path)
    if p.suffix != ".safetensors" or not p.is_file() or not p.with_suffix(".json").is_file():
        raise InputError("checkpoint", "a ckpt_*.safetensors file with its .json beside",
                         repr(str(path)), "point at a checkpoint written by train_snn")
    return json.loads(p.with_suffix(".json").read_text())


def _architecture(meta: dict) -> HSTConfig:
    arch = dict(meta["architecture"])
    for k, v in arch.items():
        if isinstance(v, list):
            arch[k] = tuple(v)
    return HSTConfig(**arch)


def load_weights(model: torch.nn.Module, path: str | Path,
                 optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Load checkpoint ``path`` into ``model`` (and ``optimizer``); returns its metadata.

    A checkpoint of another architecture raises ``InputError`` naming the mismatch.
    """
    meta = read_meta(path)
    tensors = load_file(str(path))
    # train_snn's files prefix the weights with "model."; a plain state_dict (train_aligned's
    # checkpoints, which timm models load too) has no prefix
    weights = ({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
               or {k: v for k, v in tensors.items() if not k.startswith("optim.")})
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    shapes = [f"{k}: {tuple(weights[k].shape)} vs {tuple(own[k].shape)}"
              for k in own if k in weights and weights[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        detail = "; ".join(filter(None, [
            f"missing {missing[:3]}" + (f" (+{len(missing) - 3})" if len(missing) > 3 else "") if missing else "",
            f"unexpected {unexpected[:3]}" + (f" (+{len(unexpected) - 3})" if len(unexpected) > 3 else "") if unexpected else "",
            f"shape mismatch {shapes[:3]}" if shapes else ""]))
        cfg = getattr(model, "config", None)
        own_arch = (f"{model.name!r} ({cfg.family}, D={cfg.embed_dim})"
                    if isinstance(model, SpikingTransformer) else type(model).__name__)
        raise InputError("checkpoint", f"weights of {own_arch}",
                         f"a checkpoint of {meta.get('model_name')!r} "
                         f"({meta.get('architecture', {}).get('family')}, "
                         f"D={meta.get('architecture', {}).get('embed_dim')}): {detail}",
                         "build the model the checkpoint was trained with (model_from_checkpoint)")
    model.load_state_dict(weights)
    if optimizer is not None:
        state = optimizer.state_dict()
        per_param: dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, i, key = k.split(".", 2)
                per_param.setdefault(int(i), {})[key] = v
        state["state"] = per_param
        optimizer.load_state_dict(state)
    return meta


def model_from_checkpoint(path: str | Path) -> SpikingTransformer:
    """Rebuild the architecture recorded beside ``path`` and load its weights."""
    meta = read_meta(path)
    model = SpikingTransformer(_architecture(meta), name=meta.get("model_name", "custom"))
    load_weights(model, path)
    return model
