"""Reproducible studies: one command per seed analysis (and per analysis added later).

A study is a catalogue entry naming two importable functions, so that ``cortexalign studies``
lists them without importing torch:

- ``simulate(out, size="cpu", seed=0, progress=True) -> Path``: writes a data directory in the
  real layouts of the study's sources, with structure planted so the study's answer can be
  checked (``size``: ``"cpu"`` for a laptop, ``"full"`` for the real sizes);
- ``run(data, out, subset=None, device="auto", progress=True) -> StudyResult``: runs the whole
  analysis on a data directory (real, fetched or simulated) into a results directory, through the
  one runner (``cortexalign.bench``), resumable like any run; ``subset="cpu"`` picks the light
  models and a subset of stimuli.

Register a study with :func:`register_study`; look it up with :func:`get_study`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cortexalign.registry import Registry

__all__ = ["Study", "StudyResult", "STUDIES", "register_study", "get_study", "list_studies"]


@dataclass(frozen=True)
class StudyResult:
    """What a study run wrote: named files (report, tables, figures) and a short plain summary."""

    out: Path
    files: dict[str, Path] = field(default_factory=dict)
    summary: str = ""


@dataclass(frozen=True)
class Study:
    """A catalogue entry: what the study reproduces and where its two functions live.

    ``simulate`` and ``run`` are ``"module:function"`` paths, imported only when called.
    """

    name: str
    title: str
    citation: str
    run: str
    simulate: str | None = None
    subsets: tuple[str, ...] = ("cpu",)
    sizes: tuple[str, ...] = ("cpu", "full")
    needs_data: bool = True

    def _load(self, path: str) -> Callable[..., Any]:
        module, _, name = path.partition(":")
        return getattr(importlib.import_module(module), name)

    def run_fn(self) -> Callable[..., StudyResult]:
        """The study's ``run`` function."""
        return self._load(self.run)

    def simulate_fn(self) -> Callable[..., Path] | None:
        """The study's ``simulate`` function, or None when it has no simulator."""
        return None if self.simulate is None else self._load(self.simulate)


STUDIES: Registry[Study] = Registry("study")


def register_study(study: Study) -> Study:
    """Add ``study`` to the catalogue (its name must be new)."""
    STUDIES.add(study.name, study, description=study.title, citation=study.citation)
    return study


def get_study(name: str) -> Study:
    """The study called ``name``; an unknown name fails with the close matches."""
    _load_catalogue()
    return STUDIES.get(name)


def list_studies() -> list[Study]:
    """Every registered study, by name."""
    _load_catalogue()
    return [e.obj for e in STUDIES.entries()]


def _load_catalogue() -> None:
    importlib.import_module("cortexalign.studies._catalogue")
