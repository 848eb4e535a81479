"""Every key of the experiment config, read from its pydantic models: the listing behind
``cortexalign config keys`` and the commented template behind ``cortexalign config template``.

Both walk :class:`~cortexalign.bench.ExperimentConfig` and the models it nests (stimuli, models,
neural and its ``select``, metrics, partitions and their sets, ray), so a key added to a model
appears in both with its type, default and description; nothing is written twice.
"""

from __future__ import annotations

import textwrap
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from cortexalign.bench._config import ExperimentConfig

__all__ = ["ConfigKey", "config_keys", "config_template", "type_name"]

#: Values of the required keys in the template: a config that runs offline as it stands.
_EXAMPLES = {
    "stimuli.source": "kriegeskorte92",
    "models[].name": "efficientnet_lite0",
    "neural[].source": "kriegeskorte92.human_IT",
    "metrics[].name": "rsa",
}


@dataclass(frozen=True)
class ConfigKey:
    """One key of the config.

    Attributes
    ----------
    path : where it goes, ``models[].layers`` (``[]``: in each item of a list; ``<label>``: under
        a name of your choosing).
    type : its type, as YAML spells values (``str | null``, ``list[str] | 'all'``).
    default : its default in YAML, or ``required``.
    description : what it does.
    """

    path: str
    type: str
    default: str
    description: str


def type_name(annotation: Any) -> str:
    """An annotation as a config user reads it: ``str | null``, ``list[ModelSpec]``, ``'all'``."""
    origin = get_origin(annotation)
    if annotation is type(None):
        return "null"
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(annotation))
    if origin is list:
        return f"list[{type_name(get_args(annotation)[0])}]"
    if origin is tuple:
        return f"[{', '.join(type_name(a) for a in get_args(annotation))}]"
    if origin is dict:
        key, value = get_args(annotation)
        return "mapping" if value is Any else f"mapping of {type_name(key)} to {type_name(value)}"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _nested(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """``("", M)`` for a model field, ``("[]", M)`` for a list of models, ``(".<label>", M)`` for
    a mapping of names to models, else None."""
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        return _nested(inner[0]) if len(inner) == 1 else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "", annotation
    if origin is list:
        found = _nested(get_args(annotation)[0])
        return ("[]", found[1]) if found and not found[0] else None
    if origin is dict:
        found = _nested(get_args(annotation)[1])
        return (".<label>", found[1]) if found and not found[0] else None
    return None


def _default(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        value = info.default_factory()
        return value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    return PydanticUndefined if info.default is PydanticUndefined else info.default


def _yaml(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def config_keys(model: type[BaseModel] = ExperimentConfig, prefix: str = "") -> list[ConfigKey]:
    """Every key of ``model`` and of the models it nests, in declaration order."""
    keys = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        default = _default(info)
        nested = _nested(info.annotation)
        shown = ("required" if default is PydanticUndefined else "(keys below)" if
                 isinstance(default, dict) and nested else _yaml(default))
        keys.append(ConfigKey(path, type_name(info.annotation), shown,
                              _description(info, nested)))
        if nested is not None:
            keys += config_keys(nested[1], f"{path}{nested[0]}.")
    return keys


def _description(info: FieldInfo, nested: tuple[str, type[BaseModel]] | None) -> str:
    """A field's description, or the docstring of the model it holds."""
    text = info.description or (nested[1].__doc__ if nested else "") or ""
    return " ".join(text.split())


def _comment(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, width=96 - len(indent), initial_indent=f"{indent}# ",
                         subsequent_indent=f"{indent}# ", break_on_hyphens=False)


def _block(model: type[BaseModel], path: str, indent: str, commented: bool = False) -> list[str]:
    """The YAML lines of one mapping of ``model``, each key under its description."""
    lines: list[str] = []
    mark = "# " if commented else ""
    for name, info in model.model_fields.items():
        key_path = f"{path}{name}"
        default = _default(info)
        nested = _nested(info.annotation)
        doc = _description(info, nested)
        kind = type_name(info.annotation)
        shown = ("required" if default is PydanticUndefined else "keys below" if
                 isinstance(default, dict) and nested else f"default {_yaml(default)}")
        lines += _comment(f"{name} ({kind}; {shown}): {doc}", indent)
        if nested is not None and nested[0] == "[]":
            empty = default == []  # optional: no item, the item's keys commented out
            item_lines = _block(nested[1], f"{key_path}[].", indent + "    ",
                                commented or empty)
            if empty or commented:
                lines.append(f"{indent}{mark}{name}: []   # an item has these keys:")
                item_lines = [ln if ln.lstrip().startswith("#") else
                              f"{indent}    # {ln.strip()}" for ln in item_lines]
            else:
                lines.append(f"{indent}{name}:")
            lines += _list_item(item_lines, indent)
        elif nested is not None and nested[0] == "":
            if default is None:  # an optional section: its keys, commented out
                lines.append(f"{indent}{mark}{name}: null   # or a mapping of:")
                lines += _block(nested[1], f"{key_path}.", indent + "  ", commented=True)
            else:
                lines.append(f"{indent}{mark}{name}:")
                lines += _block(nested[1], f"{key_path}.", indent + "  ", commented)
        elif nested is not None:  # a mapping of labels to models (partition sets)
            lines.append(f"{indent}{mark}{name}:")
            lines.append(f"{indent}  {mark}<label>:")
            lines += _block(nested[1], f"{key_path}.<label>.", indent + "    ", commented)
        else:
            value = _EXAMPLES.get(key_path, default)
            value = "<required>" if value is PydanticUndefined else _yaml(value)
            lines.append(f"{indent}{mark}{_key(name)}: {value}")
    return lines


def _key(name: str) -> str:
    """``name`` as a YAML key: quoted where YAML would read it as something else (``null``)."""
    return name if yaml.safe_load(f"{name}: 0") == {name: 0} else repr(name)


def _list_item(item_lines: list[str], indent: str) -> list[str]:
    """Turn a mapping's lines (indented by ``indent + 4``) into one list item: the first key
    line gets the ``- `` marker."""
    out, marked = [], False
    for ln in item_lines:
        body = ln[len(indent) + 4:]
        if not marked and not body.startswith("#"):
            out.append(f"{indent}  - {body}")
            marked = True
        elif not marked and body.startswith("# ") and _is_key_line(body[2:]):
            out.append(f"{indent}  # - {body[2:]}")
            marked = True
        else:
            out.append(f"{indent}    {body}")
    return out


def _is_key_line(text: str) -> bool:
    head = text.split(":", 1)[0]
    return ":" in text and head.isidentifier() and "(" not in head


def config_template() -> str:
    """A complete experiment config in YAML with every key, each under a comment giving its type,
    default and meaning; it validates as it stands (EfficientNet-Lite0 vs human IT by RSA)."""
    header = ["# cortexalign experiment config: every key, with its type, default and meaning.",
              "# Run it with `cortexalign run THIS.yaml --out DIR`; check it with `cortexalign "
              "config check THIS.yaml`.",
              "# Keys left at their default may be deleted. `cortexalign config keys` lists them "
              "as a table.", ""]
    return "\n".join(header + _block(ExperimentConfig, "", "")) + "\n"
