"""Reading checkpoints safely and fingerprinting weights.

Only ``.safetensors`` files and ``torch.load(..., weights_only=True)`` are ever used: a checkpoint
that needs unpickling (arbitrary code) is refused with a message saying how to convert it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from cortexalign.errors import InputError

__all__ = ["read_state_dict", "load_state_dict_checked", "state_dict_digest"]

# containers that training scripts commonly wrap a state_dict in
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a tensor dict from ``path`` (``.safetensors``, a torch file saved with ``torch.save``,
    or a TorchScript archive, whose tensors are read without running its code).

    Common wrappers (``{"state_dict": ...}``, ``{"model": ...}``) and a DDP ``module.`` prefix are
    removed. Raises ``InputError`` for a missing file, a file that needs unpickling, or one that
    holds no tensors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError("weights", "the path of an existing checkpoint file", repr(str(path)),
                         "check the path (a .safetensors file or a torch state_dict file)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return _model_part(load_file(str(path), device="cpu"))
        except Exception as err:  # safetensors raises its own error types
            raise InputError("weights", "a valid .safetensors file", f"{path.name!r} ({err})",
                             "re-export the checkpoint with safetensors.torch.save_file") from err
    from cortexalign.models._torchscript import is_torchscript_archive, read_torchscript_tensors

    if is_torchscript_archive(path):  # e.g. OpenAI's CLIP release: tensors read, no code run
        return read_torchscript_tensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError... for bad files
        if "unsupported global" not in str(err).lower():  # not a pickled Python object
            raise InputError("weights", "a safetensors or torch state_dict file",
                             f"{str(path)!r}, which torch cannot read ({type(err).__name__})",
                             "check the file is a complete checkpoint") from err
        raise InputError(
            "weights", "a file of plain tensors (safetensors, or torch.save of a state_dict)",
            f"{str(path)!r}, which needs unpickling of Python objects to load",
            "convert it once, in a trusted environment, to safetensors: "
            "safetensors.torch.save_file(model.state_dict(), 'model.safetensors')",
        ) from err
    return _unwrap(obj, path)


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(obj, Mapping) and not _all_tensors(obj):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not obj or not _all_tensors(obj):
        raise InputError("weights", "a mapping of parameter names to tensors (a state_dict)",
                         f"{type(obj).__name__} in {path.name!r}",
                         "save model.state_dict() (not the model object) to the file")
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):  # saved from DistributedDataParallel
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _model_part(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ``cortexalign train-snn`` checkpoint (``model.*`` weights beside ``optim.*`` optimizer
    state, e.g. an ANN control trained by the spiking recipe): its ``model.*`` tensors, prefix
    removed. Any other file as it is."""
    if any(k.startswith("optim.") for k in sd) and all(k.startswith(("model.", "optim."))
                                                       for k in sd):
        return {k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")}
    return sd


def _all_tensors(mapping: Mapping) -> bool:
    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in mapping.items())


def load_state_dict_checked(module: nn.Module, state_dict: Mapping[str, torch.Tensor],
                            source: str) -> None:
    """Load ``state_dict`` into ``module`` after checking keys and shapes; name the first mismatch."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    if missing or unexpected:
        first_missing = repr(missing[0]) if missing else "none"
        first_unexpected = repr(unexpected[0]) if unexpected else "none"
        raise InputError(
            "weights", f"the parameter names of {type(module).__name__}",
            f"{source} with {len(missing)} missing keys (first {first_missing}) and "
            f"{len(unexpected)} unexpected keys (first {first_unexpected})",
            "load a checkpoint of this architecture (same model name and kwargs, e.g. num_classes)",
        )
    for k, v in own.items():
        if tuple(state_dict[k].shape) != tuple(v.shape):
            raise InputError("weights", f"{k!r} of shape {tuple(v.shape)}",
                             f"shape {tuple(state_dict[k].shape)} in {source}",
                             "build the model with the checkpoint's config (e.g. num_classes, img_size)")
    module.load_state_dict(dict(state_dict), strict=True)


def state_dict_digest(module: nn.Module) -> str:
    """sha256 over every state_dict entry: its name, dtype, shape and raw bytes, in order."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()
