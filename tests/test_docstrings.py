"""Every public name has a docstring: the classes and functions in the ``__all__`` of every
public module of ``cortexalign`` (any depth), and their public methods and properties."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import cortexalign


def _public_modules() -> list[str]:
    names = ["cortexalign"]
    for info in pkgutil.walk_packages(cortexalign.__path__, "cortexalign."):
        if not any(p.startswith("_") for p in info.name.split(".")[1:]):
            names.append(info.name)
    return names


def _undocumented(obj) -> list[str]:
    where = f"{obj.__module__}.{obj.__qualname__}"
    out = [] if obj.__doc__ and obj.__doc__.strip() else [where]
    if inspect.isclass(obj):
        for name, member in vars(obj).items():
            fn = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
            if not name.startswith("_") and inspect.isfunction(fn) and not (fn.__doc__ or "").strip():
                out.append(f"{where}.{name}")
    return out


def test_every_public_class_and_function_has_a_docstring():
    missing, seen = [], set()
    for module_name in _public_modules():
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or id(obj) in seen:
                continue
            if not obj.__module__.startswith("cortexalign"):
                continue  # re-exported from a dependency
            seen.add(id(obj))
            missing += _undocumented(obj)
    assert len(seen) > 300
    assert not missing, f"{len(missing)} public names without a docstring:\n" + "\n".join(missing)
