"""Model sets for sweeps: one config entry that names many models by pattern, with filters.

A ``models:`` entry with ``select:`` instead of ``name:`` expands, before validation, into one
model entry per match::

    models:
      - select: "timm:vit_*"          # a glob over timm's (or torchvision's) model names
        pretrained_tag: in1k          # only weights whose timm tag contains this (implies tags)
        max_params_m: 30              # parameter count bounds, in millions (built on the meta
        min_params_m: 1               #   device: no weights, no memory)
        exclude: ["*_giant*", "*dinov3*"]
        limit: 20                     # at most this many, in name order (refused beyond: say so)
        layers: all                   # every other key is given to each expanded model
        pooling: mean

:func:`expand_model_sets` returns the expanded list and one :class:`ModelSetExpansion` per
``select:`` entry; ``cortexalign run`` and ``cortexalign config check`` print them before anything
runs, so a sweep's size is known before it starts. Matching uses the model lists timm and
torchvision keep locally: no network.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cortexalign.errors import InputError

__all__ = ["ModelSetExpansion", "expand_model_sets", "SELECT_KEYS", "MAX_MODELS"]

#: keys of a ``select:`` entry that filter; the others pass through to every expanded model
SELECT_KEYS = ("select", "pretrained_tag", "max_params_m", "min_params_m", "exclude", "limit")
#: a sweep larger than this must say so with ``limit:``
MAX_MODELS = 500


@dataclass(frozen=True)
class ModelSetExpansion:
    """What one ``select:`` entry became: the pattern, the filters, the chosen names and why
    the others were dropped (``dropped``: reason -> count)."""

    select: str
    names: tuple[str, ...]
    filters: dict[str, Any] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for a terminal: the pattern, the count and the filters' effect."""
        drops = ", ".join(f"{n} {why}" for why, n in self.dropped.items() if n)
        shown = ", ".join(self.names[:6]) + (" ..." if len(self.names) > 6 else "")
        return (f"{self.select}: {len(self.names)} models" + (f" ({drops} dropped)" if drops
                                                               else "") + f": {shown}")


def _candidates(select: str, tagged: bool) -> tuple[str, list[str]]:
    prefix, sep, pattern = select.partition(":")
    if not sep or prefix not in ("timm", "torchvision") or not pattern:
        raise InputError("models[].select", "'timm:<glob>' or 'torchvision:<glob>', e.g. "
                         "'timm:vit_*'", repr(select), "prefix the pattern with its library")
    if prefix == "timm":
        import timm

        names = timm.list_models(pattern, pretrained=tagged)
    else:
        import torchvision

        names = [n for n in torchvision.models.list_models() if fnmatch.fnmatch(n, pattern)]
    return prefix, sorted(names)


def _params_m(prefix: str, name: str) -> float:
    """Parameters (millions) of the architecture, built on the meta device (no weights)."""
    import torch

    base = name.split(".")[0]
    with torch.device("meta"):
        if prefix == "timm":
            import timm

            model = timm.create_model(base, pretrained=False)
        else:
            import torchvision

            model = torchvision.models.get_model(base, weights=None)
    return sum(p.numel() for p in model.parameters()) / 1e6


def _check_filters(entry: dict, where: str) -> None:
    for key in ("max_params_m", "min_params_m"):
        v = entry.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or v <= 0):
            raise InputError(f"{where}.{key}", "a positive number of millions of parameters",
                             repr(v), f"e.g. {key}: 30")
    lim = entry.get("limit")
    if lim is not None and (isinstance(lim, bool) or not isinstance(lim, int) or lim < 1):
        raise InputError(f"{where}.limit", "a whole number >= 1", repr(lim), "e.g. limit: 20")
    excl = entry.get("exclude", [])
    if not isinstance(excl, list) or not all(isinstance(x, str) for x in excl):
        raise InputError(f"{where}.exclude", "a list of glob patterns", repr(excl),
                         "e.g. exclude: ['*_giant*']")
    tag = entry.get("pretrained_tag")
    if tag is not None and not isinstance(tag, str):
        raise InputError(f"{where}.pretrained_tag", "a substring of timm's weight tags",
                         repr(tag), "e.g. pretrained_tag: in1k")
    if "name" in entry:
        raise InputError(f"{where}", "either name: (one model) or select: (a set)",
                         "both", "drop one of them")


def _expand_one(entry: dict, where: str) -> tuple[list[dict], ModelSetExpansion]:
    _check_filters(entry, where)
    select, tag = str(entry["select"]), entry.get("pretrained_tag")
    prefix, names = _candidates(select, tagged=tag is not None)
    dropped: dict[str, int] = {}

    def keep(reason: str, pred) -> None:
        nonlocal names
        kept = [n for n in names if pred(n)]
        dropped[reason] = dropped.get(reason, 0) + len(names) - len(kept)
        names = kept

    if tag is not None:
        if prefix != "timm":
            raise InputError(f"{where}.pretrained_tag", "a timm pattern (torchvision names have "
                             "no tags)", repr(select), "drop pretrained_tag")
        keep("without the tag", lambda n: tag in n.partition(".")[2])
    for pat in entry.get("exclude", []):
        keep("excluded", lambda n, pat=pat: not fnmatch.fnmatch(n, pat))
    lo, hi = entry.get("min_params_m"), entry.get("max_params_m")
    if lo is not None or hi is not None:
        sizes = {n: _params_m(prefix, n) for n in names}
        keep("outside the size bounds", lambda n: (lo is None or sizes[n] >= lo)
             and (hi is None or sizes[n] <= hi))
    limit = entry.get("limit")
    if limit is None and len(names) > MAX_MODELS:
        raise InputError(f"{where}.select", f"at most {MAX_MODELS} models without limit:",
                         f"{len(names)} matches of {select!r}",
                         f"narrow the pattern or filters, or set limit: {len(names)} to mean it")
    if limit is not None and len(names) > limit:
        dropped["over the limit"] = len(names) - limit
        names = names[:limit]
    if not names:
        raise InputError(f"{where}.select", "a pattern and filters that match at least one "
                         "model", f"no match for {select!r} ({dropped or 'no model names'})",
                         "check the pattern with `cortexalign models` or loosen the filters")
    rest = {k: v for k, v in entry.items() if k not in SELECT_KEYS}
    expanded = [{"name": f"{prefix}:{n}", **rest} for n in names]
    filters = {k: entry[k] for k in SELECT_KEYS[1:] if k in entry}
    return expanded, ModelSetExpansion(select, tuple(names), filters, dropped)


def expand_model_sets(models: Sequence[Any]) -> tuple[list[Any], list[ModelSetExpansion]]:
    """Replace every ``select:`` entry of a config's ``models`` list by its matches.

    Entries without ``select:`` are returned unchanged, in place; expanded entries take the
    entry's position, in name order.
    """
    out: list[Any] = []
    notes: list[ModelSetExpansion] = []
    for i, entry in enumerate(models):
        if isinstance(entry, dict) and "select" in entry:
            expanded, note = _expand_one(entry, f"models[{i}]")
            out.extend(expanded)
            notes.append(note)
        else:
            out.append(entry)
    return out, notes
