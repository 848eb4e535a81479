"""Filter values as the command line gives them (``area=VISp,VISl``, ``depth=150-300``) or as a
config does (lists, numbers), turned into one form, with errors naming the filter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cortexalign.errors import InputError, UnknownNameError

__all__ = ["as_str_list", "as_int_list", "as_range", "check_limit", "parse_filters",
           "check_filters", "as_bool"]


def as_str_list(value: Any, name: str) -> list[str] | None:
    """``"VISp,VISl"`` or ``["VISp", "VISl"]`` -> ``["VISp", "VISl"]``; ``None`` stays ``None``."""
    if value is None or value == "":
        return None
    items = value.split(",") if isinstance(value, str) else list(value) \
        if isinstance(value, (list, tuple)) else [value]
    out = [str(v).strip() for v in items if str(v).strip()]
    if not out:
        raise InputError(name, "one or more comma-separated values", repr(value),
                         f"e.g. {name}=a,b")
    return out


def as_int_list(value: Any, name: str) -> list[int] | None:
    """Integers from ``"1,2"``, ``"1-3"`` (inclusive) or a list; ``None`` stays ``None``."""
    items = as_str_list(value, name)
    if items is None:
        return None
    out: list[int] = []
    try:
        for item in items:
            lo, sep, hi = item.partition("-")
            out += list(range(int(lo), int(hi) + 1)) if sep and lo else [int(item)]
    except ValueError:
        raise InputError(name, "integers, comma-separated or as ranges (1-3)", repr(value),
                         f"e.g. {name}=1,2 or {name}=1-40") from None
    return out


def as_range(value: Any, name: str) -> tuple[float, float] | None:
    """``"150-300"``, ``"150:300"`` or ``[150, 300]`` -> ``(150.0, 300.0)``."""
    if value is None or value == "":
        return None
    parts = value.replace(":", "-").split("-") if isinstance(value, str) else list(value)
    try:
        lo, hi = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise InputError(name, "a range MIN-MAX", repr(value), f"e.g. {name}=150-300") from None
    if lo > hi:
        raise InputError(name, "MIN <= MAX", repr(value), f"swap them: {name}={hi:g}-{lo:g}")
    return lo, hi


def as_bool(value: Any) -> bool:
    """``true``/``1``/``yes`` (any case) or a Python truth value."""
    return str(value).strip().lower() in ("1", "true", "yes", "on") if isinstance(value, str) \
        else bool(value)


def check_limit(value: Any) -> int | None:
    """``limit``: a positive integer or ``None`` (no limit)."""
    if value is None or value == "":
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or isinstance(value, bool):
        raise InputError("limit", "a positive integer", repr(value), "e.g. limit=2")
    return n


def parse_filters(items: list[str] | None) -> dict[str, str]:
    """``["area=VISp", "limit=2"]`` (the command line's ``KEY=VALUE`` words) -> a dict."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError("filters", "KEY=VALUE words after the name", repr(item),
                             "e.g. cortexalign fetch allen-ophys area=VISp limit=2")
        out[key.strip()] = value.strip()
    return out


def check_filters(entry: str, filters: Mapping[str, Any], valid: Mapping[str, str]) -> None:
    """Refuse a filter ``entry`` does not know, with the close matches and the valid ones."""
    for key in filters:
        if key not in valid:
            listed = ", ".join(f"{k} ({v})" for k, v in valid.items()) or "none"
            raise UnknownNameError(f"filter of {entry!r}", key, list(valid),
                                   fix=f"use one of: {listed}")
