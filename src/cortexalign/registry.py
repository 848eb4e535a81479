"""One registry per extensible concept, filled by a decorator and looked up by name.

>>> METRICS = Registry("metric")
>>> @METRICS.register("rsa", citation="Kriegeskorte et al. 2008")
... def rsa(x, y): ...
>>> METRICS.get("rsa")  # doctest: +SKIP

Unknown names fail with the close matches and the list of valid names (STYLE.md habit 1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from cortexalign.errors import UnknownNameError

T = TypeVar("T")

__all__ = ["Registry", "Entry"]


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object with its name and free-form metadata (citation, description...)."""

    name: str
    obj: T
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def description(self) -> str:
        """One line: the ``description`` metadata, else the first line of the object's docstring."""
        doc = self.meta.get("description") or (getattr(self.obj, "__doc__", None) or "")
        return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry(Generic[T]):
    """A name -> object mapping with did-you-mean lookups.

    Parameters
    ----------
    kind : what the entries are ("model", "metric"...), used in error messages.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._prefixes: dict[str, Entry[T]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a duplicate name is a programming error."""

        def deco(obj: T) -> T:
            self.add(name, obj, **meta)
            return obj

        return deco

    def add(self, name: str, obj: T, **meta: Any) -> None:
        """Register ``obj`` under ``name`` with metadata ``meta``; a second registration of a name raises."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Entry(name, obj, dict(meta))

    def register_prefix(self, prefix: str, **meta: Any) -> Callable[[T], T]:
        """Register a factory for every name of the form ``prefix:<rest>`` (e.g. ``timm:resnet50``)."""

        def deco(obj: T) -> T:
            self._prefixes[prefix] = Entry(prefix + ":", obj, dict(meta))
            return obj

        return deco

    def resolve(self, name: str) -> tuple[Entry[T], str | None]:
        """The entry for ``name`` and, for prefixed names, the part after the prefix."""
        if name in self._entries:
            return self._entries[name], None
        if ":" in name:
            prefix, rest = name.split(":", 1)
            if prefix in self._prefixes:
                return self._prefixes[prefix], rest
        raise UnknownNameError(self.kind, name, self.names())

    def get(self, name: str) -> T:
        """The object registered as ``name`` (or made by a prefix entry); unknown names raise with close matches."""
        return self.resolve(name)[0].obj

    def entry(self, name: str) -> Entry[T]:
        """The ``Entry`` (object and metadata) of ``name``; unknown names raise with close matches."""
        return self.resolve(name)[0]

    def names(self) -> list[str]:
        """Every registered name, sorted, then the prefixes as ``prefix:<name>``."""
        return sorted(self._entries) + sorted(p + ":<name>" for p in self._prefixes)

    def entries(self) -> list[Entry[T]]:
        """Every registered entry, by name."""
        return [self._entries[k] for k in sorted(self._entries)]

    def prefix_entries(self) -> list[Entry[T]]:
        """The prefix entries (``prefix:<name>`` families), by prefix."""
        return [self._prefixes[k] for k in sorted(self._prefixes)]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self.resolve(name)
        except UnknownNameError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
