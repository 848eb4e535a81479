"""``cortexalign results`` and ``cortexalign status``: what a results directory holds.

The work is ``ResultsStore`` and
``bench._status``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cortexalign.cli._app import app, console, fail


@app.command()
def results(
    out: Annotated[Path, typer.Argument(help="A results directory (or its results.duckdb).")],
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    layer: Annotated[str | None, typer.Option(help="Only this layer.")] = None,
    target: Annotated[str | None, typer.Option(help="Only this neural target.")] = None,
    metric: Annotated[str | None, typer.Option(help="Only this metric.")] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Only this run id.")] = None,
    export: Annotated[Path | None, typer.Option(help="Write the table to .csv or .parquet.")] = None,
    partitions: Annotated[bool, typer.Option("--partitions", help="The variance-partitioning and "
                                             "banded-ridge rows (medians over neuroids; the "
                                             "export has the per-neuroid values) instead of the "
                                             "scores.")] = False,
    discriminability: Annotated[bool, typer.Option(
        "--discriminability", help="How well the benchmark separates the models: for each "
        "(target, rsa entry) and layer rule, P(one model ranks above another) under paired "
        "resampling of stimuli (and subjects), pairs separated after FDR, rank intervals, the "
        "number of models told apart. Reads the run's feature cache; stores the result for the "
        "report.")] = False,
    n_bootstrap: Annotated[int, typer.Option(help="Resamples for --discriminability.")] = 200,
    alpha: Annotated[float, typer.Option(help="FDR level for --discriminability.")] = 0.05,
    rule: Annotated[list[str] | None, typer.Option(help="Layer rule(s) for --discriminability: "
                                                   "best, cv (default both).")] = None,
) -> None:
    """Show (or export) the scores stored in a results directory."""
    if discriminability:
        from cortexalign.cli._second_order import show_discriminability
        from cortexalign.errors import CortexAlignError

        try:
            show_discriminability(console, out, n_bootstrap=n_bootstrap, alpha=alpha,
                                  rules=rule or ["best", "cv"], target=target, device="cpu")
        except (CortexAlignError, ValueError) as err:
            fail(err)
        return
    from cortexalign.bench import export_frame, results_path
    from cortexalign.errors import CortexAlignError
    from cortexalign.results import ResultsStore

    try:
        store = ResultsStore(results_path(out), read_only=True)
        if partitions:
            frame = store.partitions_frame(target=target, run_id=run_id)
            cols = ["partition", "method", "target", "kind", "name", "value", "n_neuroids"]
        else:
            frame = store.scores_frame(model=model, layer=layer, target=target, metric=metric,
                                       run_id=run_id)
            cols = ["model", "layer", "target", "metric", "value", "ci_low", "ci_high",
                    "ceiling_low"]
        if export is not None:
            export_frame(frame, export)
    except CortexAlignError as err:
        fail(err)
    if export is not None:
        console.print(f"wrote {len(frame)} rows to {export}", markup=False, highlight=False)
        return
    table = Table()
    for c in cols:
        table.add_column(c)
    for r in frame[cols].itertuples(index=False):
        table.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r))
    console.print(table)


@app.command()
def status(
    out: Annotated[Path, typer.Argument(help="A results directory (or its results.duckdb).")],
    errors: Annotated[int, typer.Option(help="Failed jobs to list per run.")] = 20,
) -> None:
    """Runs of a results directory: status (a crashed run shows 'interrupted (no live
    process)'), jobs finished / failed / running, and the failed jobs with their errors."""
    from cortexalign.bench import run_status
    from cortexalign.errors import CortexAlignError

    try:
        runs = run_status(out)
    except CortexAlignError as err:
        fail(err)
    if not runs:
        console.print(f"no runs recorded in {out}", markup=False, highlight=False)
    for r in runs:
        style = {"finished": "green", "failed": "red"}.get(r.state, "yellow")
        console.print(f"run [bold]{r.run_id}[/]  [{style}]{r.state}[/]")
        ended = "-" if r.finished is None else f"{r.finished:%Y-%m-%d %H:%M:%S}"
        console.print(f"  started {r.started:%Y-%m-%d %H:%M:%S} UTC, finished {ended}, "
                      f"config {r.config_hash}", markup=False, highlight=False)
        console.print(f"  jobs: {r.n_finished} finished, {r.n_failed} failed, {r.n_running} "
                      "running" + ("" if r.state.startswith("running") or not r.n_running
                                   else " (never closed: lost with the process)"),
                      markup=False, highlight=False)
        for key, error in r.failures[:errors]:
            console.print(f"  failed {key}: {error.splitlines()[0]}", markup=False,
                          highlight=False)
        if len(r.failures) > errors:
            console.print(f"  ... and {len(r.failures) - errors} more failed jobs "
                          "(--errors N lists more)")
