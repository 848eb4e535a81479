"""Errors raised at the public boundary, with messages that say what to do.

Every message names the parameter, what was expected, what was received, and the fix
(STYLE.md habit 5). ``CortexAlignError`` subclasses ``ValueError`` so callers that
catch ``ValueError`` keep working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["CortexAlignError", "InputError", "UnknownNameError", "close_matches", "RequestError",
           "Problems", "StoreError", "StoreTruncatedError", "StoreCorruptError", "NotAStoreError",
           "StoreVersionError", "StoreLockedError"]


class CortexAlignError(ValueError):
    """Base class of every error cortexalign raises for bad input."""


class InputError(CortexAlignError):
    """A parameter received a value it cannot use.

    Parameters
    ----------
    parameter : name of the offending parameter (or config key).
    expected : what would have been accepted.
    received : what was given (summarised, never a whole array).
    fix : one sentence telling the caller what to do.
    """

    def __init__(self, parameter: str, expected: str, received: str, fix: str):
        self.parameter = parameter
        self.expected = expected
        self.received = received
        self.fix = fix
        super().__init__(f"{parameter}: expected {expected}, received {received}. Fix: {fix}")


def close_matches(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """Names in ``choices`` that look like ``name`` (case-insensitive, substring aware)."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
    out = [lowered[h] for h in hits]
    if len(out) < n:
        needle = name.lower()
        out += [c for c in choices if needle and needle in c.lower() and c not in out]
    return out[:n]


class UnknownNameError(CortexAlignError, KeyError):
    """A name was looked up in a registry (or a list of layers, keys...) and is not there."""

    def __init__(self, kind: str, name: str, choices: Iterable[str], fix: str | None = None):
        choices = sorted(choices)
        matches = close_matches(name, choices)
        self.kind, self.name, self.matches, self.choices = kind, name, matches, choices
        hint = f" Did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""
        shown = ", ".join(choices[:30]) + (f", ... ({len(choices)} in all)" if len(choices) > 30 else "")
        fix = fix or f"use one of the valid names: {shown}"
        msg = f"unknown {kind} {name!r}.{hint} Fix: {fix}"
        CortexAlignError.__init__(self, msg)

    def __str__(self) -> str:  # KeyError would otherwise wrap the message in quotes
        return str(self.args[0])


class StoreError(InputError):
    """A results store (``results.duckdb``) that cannot be used as it is.

    One subclass per way a store can be unusable, so callers can tell them apart: a lock is only
    ever reported as :class:`StoreLockedError`, damage never is.

    Parameters
    ----------
    path : the store file.
    problem : what is wrong with it, in words.
    fix : one sentence telling the user what to do.
    """

    kind = "unusable"

    def __init__(self, path: object, problem: str, fix: str):
        self.path = str(path)
        self.problem = problem
        super().__init__("results store", "a readable cortexalign results database",
                         f"{self.path}: {self.kind}: {problem}", fix)


class StoreTruncatedError(StoreError):
    """The file ends before the data its header points to: it was cut short."""

    kind = "damaged (truncated)"


class StoreCorruptError(StoreError):
    """A header or data block fails its checksum: the bytes were changed after writing."""

    kind = "damaged (bad header or block checksum)"


class NotAStoreError(StoreError):
    """The file is not a cortexalign results database (another format, or another DuckDB)."""

    kind = "not a cortexalign results database"


class StoreVersionError(StoreError):
    """The store was written with a schema version this cortexalign cannot read."""

    kind = "another schema version"


class StoreLockedError(StoreError):
    """Another process holds the store's lock (a writer, or a reader while we want to write)."""

    kind = "locked by another process"


class RequestError(CortexAlignError):
    """Several problems with one request (a config, a command line), reported together.

    Attributes
    ----------
    problems : one message per problem, each naming its entry and the fix.
    """

    def __init__(self, heading: str, problems: list[str], footer: str = ""):
        self.problems = list(problems)
        lines = [heading, *(f"  - {p}" for p in problems)] + ([footer] if footer else [])
        super().__init__("\n".join(lines))


class Problems:
    """Collects the errors of a whole request so they are reported at once.

    >>> problems = Problems()
    >>> value = problems.check("models[0].layers", lambda: check_layers(...))  # doctest: +SKIP
    >>> problems.raise_if_any("my.yaml")                                       # doctest: +SKIP

    ``check`` returns the callable's result, or None after recording its ``CortexAlignError``
    (its message led by ``where``). ``raise_if_any`` raises nothing when all passed, the error
    itself when there was one (so its type and ``parameter`` survive), else a ``RequestError``
    listing every message.
    """

    def __init__(self) -> None:
        self.errors: list[CortexAlignError] = []

    def __len__(self) -> int:
        return len(self.errors)

    def check(self, where: str, fn):
        """``fn()``, or None with its ``CortexAlignError`` recorded under ``where``."""
        try:
            return fn()
        except CortexAlignError as err:
            self.add(where, err)
            return None

    def add(self, where: str, err: CortexAlignError) -> None:
        """Record ``err`` under ``where`` (an entry such as ``models[0] (timm:resnet18)``)."""
        if where and err.args and isinstance(err.args[0], str):
            err.args = (f"{where}: {err.args[0]}", *err.args[1:])
        self.errors.append(err)

    def raise_if_any(self, source: str, footer: str = "") -> None:
        """Raise the one error recorded, or a ``RequestError`` listing them all (from ``source``)."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise RequestError(f"{source}: {len(self.errors)} problems, nothing was written:",
                               [str(e) for e in self.errors], footer)
