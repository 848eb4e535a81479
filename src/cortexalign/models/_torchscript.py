"""The tensors of a TorchScript archive, read without running any of its code.

OpenAI released CLIP (e.g. ``ViT-B-16.pt``) as TorchScript archives: a zip holding
``<name>/code/`` (TorchScript source), ``<name>/data.pkl`` (the module tree, pickled) and
``<name>/data/<key>`` (raw tensor storages). ``torch.jit.load`` compiles and runs that code,
and ``torch.load(..., weights_only=True)`` refuses such archives. This reader parses
``data.pkl`` with a restricted unpickler that rebuilds only what a module tree needs:

- module objects (classes under ``__torch__.``) become plain attribute records (their
  ``__setstate__`` dict is kept, nothing of the class is imported or run);
- tensors (``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter``) are rebuilt from the
  archive's raw storages by ``torch.as_strided``, with the storage's dtype;
- ``collections.OrderedDict`` is the only other global allowed.

Any other global (a pickled function, an arbitrary class) stops the read with an
``InputError``. The module tree is then flattened into a state dict with dotted names
(``visual.conv1.weight``), as ``module.state_dict()`` would give.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from cortexalign.errors import InputError

__all__ = ["is_torchscript_archive", "read_torchscript_tensors"]

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


def _data_pkl(names: list[str]) -> str | None:
    found = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    return found[0] if found else None


def is_torchscript_archive(path: str | Path) -> bool:
    """Whether ``path`` is a zip holding ``<name>/data.pkl`` and ``<name>/code/`` (TorchScript)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    pkl = _data_pkl(names)
    return pkl is not None and any(n.startswith(pkl.split("/")[0] + "/code/") for n in names)


class _ModuleRecord:
    """A TorchScript module object: its pickled attribute dict, nothing else."""

    def __init__(self, qualname: str):
        self.qualname = qualname
        self.attrs: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.attrs = dict(state) if isinstance(state, dict) else {}


def _record_class(qualname: str) -> type:
    def new(cls, *args, **kwargs):
        obj = object.__new__(cls)
        _ModuleRecord.__init__(obj, qualname)
        return obj

    return type("ScriptModuleRecord", (_ModuleRecord,), {"__new__": new})


def _rebuild_tensor(storage: torch.Tensor, offset: int, size, stride, *_rest) -> torch.Tensor:
    if not size:
        return storage[offset].clone()
    return torch.as_strided(storage, tuple(size), tuple(stride), offset).clone()


def _rebuild_parameter(data: torch.Tensor, *_rest) -> torch.Tensor:
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str, path: Path):
        import io

        super().__init__(io.BytesIO(data))
        self.archive, self.root, self.path = archive, root, path

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__"):
            return _record_class(f"{module}.{name}")
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        raise InputError("weights", "a TorchScript archive of modules and tensors only",
                         f"{self.path.name!r}, whose data.pkl refers to {module}.{name}",
                         "convert it once, in a trusted environment, to safetensors: "
                         "safetensors.torch.save_file(torch.jit.load(path).state_dict(), "
                         "'model.safetensors')")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise InputError("weights", "tensor storages in the archive", f"persistent id {pid!r}",
                             "convert the checkpoint to safetensors")
        _, dtype, key, _location, numel = pid[:5]
        if not isinstance(dtype, torch.dtype):
            raise InputError("weights", "a typed tensor storage", repr(dtype),
                             "convert the checkpoint to safetensors")
        raw = bytearray(self.archive.read(f"{self.root}/data/{key}"))
        flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        return flat[:numel]


def _flatten(obj: Any, prefix: str, out: dict[str, torch.Tensor], seen: set[int]) -> None:
    if isinstance(obj, torch.Tensor):
        out[prefix[:-1]] = obj
    elif isinstance(obj, _ModuleRecord) and id(obj) not in seen:
        seen.add(id(obj))
        for key, value in obj.attrs.items():
            _flatten(value, f"{prefix}{key}.", out, seen)


def read_torchscript_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of the TorchScript archive ``path``, by dotted attribute name.

    Raises ``InputError`` when ``path`` is not a TorchScript archive, or when its ``data.pkl``
    refers to anything but modules and tensors.
    """
    path = Path(path).expanduser()
    if not is_torchscript_archive(path):
        raise InputError("weights", "a TorchScript archive (a zip with <name>/data.pkl and "
                         "<name>/code/)", repr(str(path)), "pass the released .pt file as is")
    with zipfile.ZipFile(path) as z:
        pkl = _data_pkl(z.namelist())
        root = pkl.split("/")[0]
        try:
            tree = _RestrictedUnpickler(z.read(pkl), z, root, path).load()
        except InputError:
            raise
        except Exception as err:  # a truncated or foreign pickle
            raise InputError("weights", "a readable TorchScript data.pkl",
                             f"{path.name!r} ({type(err).__name__}: {err})",
                             "check the download is complete") from err
    out: dict[str, torch.Tensor] = {}
    _flatten(tree, "", out, set())
    if not out:
        raise InputError("weights", "a TorchScript archive holding tensors",
                         f"{path.name!r} with none", "check the file")
    return out
