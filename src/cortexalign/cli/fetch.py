"""``cortexalign fetch``: download a catalogue entry (data or weights) from its official source."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cortexalign.cli._app import app, console, err_console, fail

_SHOWN = 25  # files listed by --dry-run before "... and N more"


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} B"


def _list() -> None:
    from cortexalign.fetch import list_sources

    table = Table(title="Catalogue (cortexalign fetch NAME [KEY=VALUE ...])")
    for col in ("name", "kind", "weight", "terms", "filters"):
        table.add_column(col, overflow="fold")
    for s in list_sources():
        table.add_row(s.name, s.kind, s.weight, s.terms, ", ".join(s.filters) or "-")
    console.print(table)


def _dry_run(name: str, filters: dict, to, mirror, jobs: int, timeout: float) -> None:
    from cortexalign.fetch import plan

    p = plan(name, filters, to=to, mirror=mirror, jobs=jobs, timeout=timeout)
    table = Table(title=f"{name}: {len(p.files)} files in {p.root}")
    for col in ("file", "size", "state", "checked by"):
        table.add_column(col, overflow="fold")
    for f, have in list(zip(p.files, p.present, strict=True))[:_SHOWN]:
        table.add_row(f.path, _size(p.sizes.get(f.path)), "present" if have else "to fetch",
                      f.checksum())
    console.print(table)
    if len(p.files) > _SHOWN:
        console.print(f"... and {len(p.files) - _SHOWN} more files", markup=False)
    missing = len(p.files) - sum(p.present)
    unknown = p.unknown_sizes()
    console.print(f"would fetch {missing} of {len(p.files)} files, {_size(p.total_bytes())}"
                  + (f" (+{unknown} of unknown size)" if unknown else "")
                  + f" into {p.root}", markup=False)
    if p.source.agreement:
        console.print(f"terms: {p.source.agreement} (fetching needs --agree-terms)",
                      markup=False)


def _fetch(name: str, filters: dict, to, mirror, jobs: int, timeout: float, agree: bool,
           quiet: bool) -> None:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from cortexalign.fetch import fetch

    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                        TransferSpeedColumn(), TimeRemainingColumn(), console=err_console,
                        disable=quiet, transient=True)
    with progress:
        result = fetch(name, filters, to=to, mirror=mirror, jobs=jobs, timeout=timeout,
                       agree_terms=agree, progress=progress)
    got = [f for f in result.files if f.status != "present"]
    checks = sorted({f.checked for f in got})
    resumed = sum(f.status == "resumed" for f in got)
    console.print(f"{name}: {len(got)} fetched" + (f" ({resumed} resumed)" if resumed else "")
                  + f" ({_size(result.transferred)} in "
                  f"{result.seconds:.1f} s), {len(result.files) - len(got)} already present, "
                  f"in {result.root}" + (f"; checked by {', '.join(checks)}" if checks else ""),
                  markup=False)
    console.print(f"use it: {result.source.loader}", markup=False)


@app.command("fetch")
def fetch_command(
    name: Annotated[str | None, typer.Argument(
        help="A catalogue entry (see --list), or timm:<model name>.")] = None,
    filters: Annotated[list[str] | None, typer.Argument(
        help="KEY=VALUE filters of the entry, e.g. area=VISp,VISl cre_line=Cux2 depth=150-300 "
             "limit=2 (allen-ophys); subject=1 sessions=1-4 space=fsaverage (nsd).")] = None,
    to: Annotated[str | None, typer.Option(
        help="Folder to fetch into (default: $CORTEXALIGN_HOME/NAME, "
             "~/.cache/cortexalign/NAME).")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List every entry with its weight, "
                                        "terms and filters.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be fetched and "
                                          "how much (index tables of Allen entries are "
                                          "fetched to choose the files).")] = False,
    mirror: Annotated[list[str] | None, typer.Option(
        help="URL replacing every official host, or HOST=URL for one host (repeatable; "
             "default: $CORTEXALIGN_MIRROR).")] = None,
    jobs: Annotated[int, typer.Option(help="Parallel downloads (1-8).")] = 4,
    timeout: Annotated[float, typer.Option(help="Seconds a connection may stay "
                                           "silent.")] = 30.0,
    agree_terms: Annotated[bool, typer.Option("--agree-terms", help="Accept the entry's terms "
                                              "where it requires that (nsd).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Download data or weights from their official source into the cache, checksummed and
    resumable. Offline (CORTEXALIGN_OFFLINE=1, HF_HUB_OFFLINE=1, no network) it fails at once."""
    from cortexalign.errors import CortexAlignError
    from cortexalign.fetch import parse_filters

    if list_:
        _list()
        return
    if not name:
        fail(ValueError("NAME: expected a catalogue entry, received nothing. Fix: see "
                        "`cortexalign fetch --list`"))
    try:
        parsed = parse_filters(filters)
        if dry_run:
            _dry_run(name, parsed, to, mirror, jobs, timeout)
        else:
            _fetch(name, parsed, to, mirror, jobs, timeout, agree_terms, quiet)
    except CortexAlignError as err:
        fail(err)
