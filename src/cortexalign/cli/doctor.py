"""``cortexalign doctor``: check a results directory (lock, store, jobs, outputs, feature cache)
and say what a rerun would redo. The work is ``bench._doctor``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cortexalign.cli._app import app, console


@app.command()
def doctor(
    out: Annotated[Path, typer.Argument(help="A results directory (the --out of a run).")],
    cache: Annotated[Path | None, typer.Option(help="The feature cache, when the config set "
                                               "cache_dir (default: OUT/cache).")] = None,
) -> None:
    """Check a results directory without changing it: is a run writing it, does the store open
    (or how is it damaged), which jobs a rerun would redo, are the report and CSVs there, do the
    cached features match their checksums. Exit status 1 when something needs attention."""
    from cortexalign.bench import diagnose

    dx = diagnose(out, cache)
    for f in dx.findings:
        mark = "[green]ok[/]     " if f.ok else "[red]problem[/]"
        console.print(f"{mark} [bold]{f.check}[/]: ", end="")
        console.print(f.detail, markup=False, highlight=False)
        if f.rerun:
            console.print(f"        -> {f.rerun}", markup=False, highlight=False)
    console.print("all checks passed" if dx.ok else "needs attention (see the problems above)",
                  markup=False, highlight=False)
    if not dx.ok:
        raise typer.Exit(1)
