"""``plan`` and ``fetch`` a catalogue entry by name, and the command line that does the same.

>>> result = fetch("sam-vit-b")                              # doctest: +SKIP
>>> result.files[0].path                                     # doctest: +SKIP
PosixPath('~/.cache/cortexalign/sam-vit-b/sam_vit_b_01ec64.pth')
>>> plan("allen-ophys", {"area": "VISp", "limit": 2}).total_bytes()   # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cortexalign.errors import InputError
from cortexalign.fetch._catalogue import SOURCES, RemoteFile, Source
from cortexalign.fetch._download import FetchedFile, Fetcher
from cortexalign.fetch._env import parse_mirrors, source_dir
from cortexalign.fetch._filters import check_filters
from cortexalign.fetch._weights import WEIGHT_FILES

__all__ = ["FetchPlan", "FetchResult", "plan", "fetch", "fetch_command", "get_source",
           "list_sources", "weights_path", "weights_file", "is_weights_entry"]


@dataclass
class FetchPlan:
    """What a fetch would do: the files, which are present, their sizes (``None``: unknown)."""

    source: Source
    root: Path
    files: list[RemoteFile]
    present: list[bool]
    sizes: dict[str, int | None]
    command: str

    def total_bytes(self, missing_only: bool = True) -> int:
        """Bytes still to fetch (every file's with ``missing_only=False``); unknown sizes count 0."""
        return sum(self.sizes.get(f.path) or 0 for f, have in zip(self.files, self.present,
                                                                    strict=True)
                   if not (missing_only and have))

    def unknown_sizes(self) -> int:
        """How many missing files have no known size."""
        return sum(self.sizes.get(f.path) is None for f, have in zip(self.files, self.present,
                                                                      strict=True) if not have)


@dataclass
class FetchResult:
    """What a fetch did: every file with its status and check, the folder, the time taken."""

    source: Source
    root: Path
    files: list[FetchedFile] = field(default_factory=list)
    seconds: float = 0.0
    command: str = ""

    @property
    def transferred(self) -> int:
        """Bytes transferred for every file of the fetch."""
        return sum(f.transferred for f in self.files)


def get_source(name: str) -> Source:
    """The catalogue entry ``name`` (did-you-mean on unknown names)."""
    entry, _ = SOURCES.resolve(name)
    return entry.obj


def list_sources() -> list[Source]:
    """Every catalogue entry (data first, then weights), ``timm:<name>`` last."""
    entries = [e.obj for e in SOURCES.entries()]
    return sorted(entries, key=lambda s: (s.kind != "data", s.name)) + \
        [e.obj for e in SOURCES.prefix_entries()]


def _word(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def fetch_command(name: str, filters: dict[str, Any] | None = None, to: str | Path | None = None,
                  agree_terms: bool = False) -> str:
    """The ``cortexalign fetch`` command line that fetches ``name`` with ``filters``."""
    words = ["cortexalign", "fetch", name] + [f"{k}={_word(v)}" for k, v in (filters or {}).items()
                                              if v is not None]
    if to is not None:
        words += ["--to", str(to)]
    if agree_terms:
        words.append("--agree-terms")
    return " ".join(words)


def _prepare(name: str, filters: dict[str, Any] | None, to, mirror, jobs, timeout, progress,
             agree_terms: bool) -> tuple[Source, dict[str, Any], Fetcher]:
    source = get_source(name)
    filters = {k: v for k, v in (filters or {}).items() if v is not None}
    check_filters(name, filters, source.filters)
    filters = {**source.defaults, **filters}
    root = source_dir(name, to)
    command = fetch_command(name, filters, to, agree_terms=source.agreement is not None)
    fetcher = Fetcher(root, command, mirrors=parse_mirrors(mirror), jobs=jobs, timeout=timeout,
                      progress=progress)
    return source, filters, fetcher


def plan(name: str, filters: dict[str, Any] | None = None, *, to: str | Path | None = None,
         mirror: str | list[str] | None = None, jobs: int = 4, timeout: float = 30.0,
         progress=None) -> FetchPlan:
    """The files ``fetch`` would get, and their sizes (``--dry-run``).

    Entries that choose files from an index table (Allen) fetch that table first (a few MB);
    sizes come from the catalogue, else the server (HEAD requests), else the hint.
    """
    if name.startswith("timm:"):
        return _timm_plan(name, mirror)
    source, filters, fetcher = _prepare(name, filters, to, mirror, jobs, timeout, progress, False)
    files = source.plan(fetcher, filters)
    present = [fetcher.local_path(f).is_file() for f in files]
    sizes = fetcher.sizes([f for f, have in zip(files, present, strict=True) if not have])
    for f, have in zip(files, present, strict=True):
        if have:
            sizes[f.path] = fetcher.local_path(f).stat().st_size
    return FetchPlan(source, fetcher.root, files, present, sizes, fetcher.command)


def fetch(name: str, filters: dict[str, Any] | None = None, *, to: str | Path | None = None,
          mirror: str | list[str] | None = None, jobs: int = 4, timeout: float = 30.0,
          agree_terms: bool = False, progress=None) -> FetchResult:
    """Fetch catalogue entry ``name`` (filters as ``--list`` shows them) into its folder.

    Parameters
    ----------
    name : a catalogue entry (``cortexalign fetch --list``) or ``timm:<model name>``.
    filters : the entry's filters, e.g. ``{"area": ["VISp"], "limit": 2}``.
    to : the folder (default ``$CORTEXALIGN_HOME/<name>``).
    mirror : ``URL`` or ``HOST=URL`` items replacing official hosts (default
        ``$CORTEXALIGN_MIRROR``).
    jobs : parallel downloads (1-8). timeout : seconds a connection may stay silent.
    agree_terms : accept the entry's terms where it requires that (NSD).
    progress : a ``rich.progress.Progress`` for bars, or ``None``.

    Returns
    -------
    FetchResult. Raises ``OfflineError`` at once when files are missing and the network may not
    be used, ``FetchError`` naming the URL and the fix when a download fails.
    """
    t0 = time.perf_counter()
    if name.startswith("timm:"):
        return _timm_fetch(name, mirror, t0)
    source, filters, fetcher = _prepare(name, filters, to, mirror, jobs, timeout, progress,
                                        agree_terms)
    if source.agreement is not None and not agree_terms:
        raise InputError("agree_terms", f"an explicit agreement to the terms of {name!r}",
                         "no agreement", f"read them: {source.agreement} Then rerun with "
                         "--agree-terms (agree_terms: true in a config's options)")
    files = source.plan(fetcher, filters)
    fetched = fetcher.fetch(files)
    return FetchResult(source, fetcher.root, fetched, time.perf_counter() - t0, fetcher.command)


def _timm_plan(name: str, mirror) -> FetchPlan:
    from cortexalign.fetch._timm import fetch_timm

    weights, path, _ = fetch_timm(name.split(":", 1)[1], parse_mirrors(mirror), dry_run=True)
    rf = RemoteFile(weights.filenames[0], f"https://huggingface.co/{weights.repo_id}")
    root = path.parent if path is not None else Path("<hub cache>")
    return FetchPlan(get_source(name), root, [rf], [path is not None],
                     {rf.path: path.stat().st_size if path is not None else None},
                     fetch_command(name))


def _timm_fetch(name: str, mirror, t0: float) -> FetchResult:
    from cortexalign.fetch._timm import fetch_timm

    weights, path, checked = fetch_timm(name.split(":", 1)[1], parse_mirrors(mirror))
    rf = RemoteFile(path.name, f"https://huggingface.co/{weights.repo_id}")
    status = "present" if checked == "present" else "downloaded"
    got = FetchedFile(rf, path, status, 0 if status == "present" else path.stat().st_size,
                      checked)
    return FetchResult(get_source(name), path.parent, [got], time.perf_counter() - t0,
                       fetch_command(name))


def is_weights_entry(weights: str | Path | None) -> bool:
    """Whether ``weights`` names a weights entry (``"sam-vit-b"``) rather than a file."""
    return weights is not None and str(weights) in WEIGHT_FILES and \
        not Path(weights).expanduser().exists()


def weights_file(weights: str | Path | None) -> str | Path | None:
    """Where a weights entry's file is once fetched (it may not be there yet); paths and
    ``None`` pass through. Nothing is downloaded."""
    if not is_weights_entry(weights):
        return weights
    return source_dir(str(weights)) / WEIGHT_FILES[str(weights)].path


def weights_path(weights: str | Path | None) -> str | Path | None:
    """A weights entry name (``"sam-vit-b"``) -> its fetched file, fetched now if missing
    (offline: ``OfflineError`` naming the command); paths and ``None`` pass through."""
    if not is_weights_entry(weights):
        return weights
    return fetch(str(weights)).files[0].path
