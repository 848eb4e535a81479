"""``cortexalign studies``, ``study`` and ``simulate``: the reproducible studies, their simulated
data, and one command that runs each whole analysis."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cortexalign.cli._app import app, console, fail


@app.command()
def studies() -> None:
    """List the reproducible studies (run one with `cortexalign study NAME`)."""
    from cortexalign.studies import list_studies

    table = Table(title="Studies")
    for col in ("name", "what it reproduces", "subsets", "simulator"):
        table.add_column(col, overflow="fold")
    for s in list_studies():
        table.add_row(s.name, f"{s.title} ({s.citation})", ", ".join(s.subsets),
                      "yes" if s.simulate else "no")
    console.print(table)


def _check_study_request(name: str, out: Path, data: Path | None, subset: str | None,
                         device: str):
    """The study's entry, after every problem of the command line is reported at once: the
    name, the subset, the data folder, the output path and the device (the study then checks
    its data's contents itself)."""
    from cortexalign.errors import InputError, Problems, UnknownNameError
    from cortexalign.studies import get_study

    problems = Problems()
    entry = problems.check("", lambda: get_study(name))
    if entry is not None and subset is not None and subset not in entry.subsets:
        problems.add("--subset", UnknownNameError(f"subset of study {name!r}", subset,
                                                  entry.subsets))
    if entry is not None and entry.needs_data and data is None:
        problems.add("", InputError("--data", f"the data folder of study {name!r}", "none",
                                    f"pass --data DIR (fetched data, or `cortexalign simulate "
                                    f"{name} --out DIR`)"))
    if data is not None and not data.is_dir():
        problems.add("", InputError("--data", "a folder", f"{str(data)!r}, which is not one",
                                    "check the path"))
    if out.exists() and not out.is_dir():
        problems.add("", InputError("--out", "a results folder", f"the file {str(out)!r}",
                                    "choose another --out"))
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        problems.add("", InputError("--device", "'auto', 'cpu' or 'cuda:N'", repr(device),
                                    "e.g. --device cpu"))
    problems.raise_if_any(f"study {name}")
    return entry


@app.command()
def study(
    name: Annotated[str, typer.Argument(help="A study from `cortexalign studies`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Results directory (resumable).")],
    data: Annotated[Path | None, typer.Option(help="Data directory: fetched real data or the "
                                              "output of `cortexalign simulate NAME`.")] = None,
    subset: Annotated[str | None, typer.Option(help="A lighter subset, e.g. 'cpu' (light "
                                               "models, fewer stimuli).")] = None,
    device: Annotated[str, typer.Option(help="'auto', 'cpu' or 'cuda:N'.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Run a whole study: every model, the alignment grid, statistics and the report."""
    from cortexalign.errors import CortexAlignError

    try:
        entry = _check_study_request(name, out, data, subset, device)
        result = entry.run_fn()(data, out, subset=subset, device=device, progress=not quiet)
    except CortexAlignError as err:
        fail(err)
    if result.summary:
        console.print(result.summary, markup=False, highlight=False)
    for key, path in result.files.items():
        console.print(f"  {key:16s} {path}", markup=False, highlight=False)


@app.command()
def simulate(
    name: Annotated[str, typer.Argument(help="A study from `cortexalign studies`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Data directory to write.")],
    size: Annotated[str, typer.Option(help="'cpu' (a laptop) or 'full' (the real sizes).")]
    = "cpu",
    seed: Annotated[int, typer.Option(help="Seed of the simulation.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Write simulated data in the study's real file layouts, with planted structure."""
    from cortexalign.errors import CortexAlignError, InputError
    from cortexalign.studies import get_study

    try:
        entry = get_study(name)
        fn = entry.simulate_fn()
        if fn is None:
            raise InputError("name", "a study with a simulator", repr(name),
                             "see `cortexalign studies` (column 'simulator')")
        if size not in entry.sizes:
            raise InputError("--size", " or ".join(entry.sizes), repr(size),
                             f"pass --size {entry.sizes[0]}")
        path = fn(out, size=size, seed=seed, progress=not quiet)
    except CortexAlignError as err:
        fail(err)
    console.print(f"wrote simulated {name} data to {path}", markup=False, highlight=False)
