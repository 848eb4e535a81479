"""``cortexalign results`` and ``cortexalign status``: what a results directory holds.

The work is ``ResultsStore`` and
``bench._status``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cortexalign.cli._app import app, console, err_console, fail
from cortexalign.cli._table import FORMATS, Column, ceiling_cells, interval_text, render

#: The columns of ``cortexalign results --format csv | json | markdown``: every one, in full.
SCORE_COLUMNS = (
    Column("model", identifier=True), Column("layer", identifier=True),
    Column("target", identifier=True), Column("metric", identifier=True), Column("value"),
    Column("ci_low"), Column("ci_high"), Column("ceiling_low"), Column("ceiling_high"),
    Column("normalized"),
)
#: The terminal table's columns (intervals as [low, high]); higher priority numbers are left out
#: first when a terminal is too narrow, after long identifiers are abbreviated with a legend.
SCORE_TABLE_COLUMNS = (
    Column("model", identifier=True), Column("layer", identifier=True),
    Column("target", identifier=True), Column("metric", identifier=True), Column("value"),
    Column("ci", "interval", priority=2), Column("ceiling", priority=3),
    Column("normalized", priority=1),
)
PARTITION_COLUMNS = (
    Column("partition", identifier=True), Column("method", identifier=True),
    Column("target", identifier=True), Column("kind", identifier=True),
    Column("name", identifier=True), Column("value"), Column("n_neuroids", "neuroids", priority=1),
)


@app.command()
def results(
    out: Annotated[Path, typer.Argument(help="A results directory (or its results.duckdb).")],
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    layer: Annotated[str | None, typer.Option(help="Only this layer.")] = None,
    target: Annotated[str | None, typer.Option(help="Only this neural target.")] = None,
    metric: Annotated[str | None, typer.Option(help="Only this metric.")] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Only this run id.")] = None,
    export: Annotated[Path | None, typer.Option(help="Write the table to .csv or .parquet.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table (fitted to the terminal: "
                                     "long names abbreviated with a legend), or every column "
                                     "in full as csv, json or markdown (for pipes).")] = "table",
    partitions: Annotated[bool, typer.Option("--partitions", help="The variance-partitioning and "
                                             "banded-ridge rows (medians over neuroids; the "
                                             "export has the per-neuroid values) instead of the "
                                             "scores.")] = False,
    discriminability: Annotated[bool, typer.Option(
        "--discriminability", help="How well the benchmark separates the models: for each "
        "(target, metric entry) and layer rule, P(one model ranks above another) under paired "
        "resampling of stimuli (and subjects), pairs separated after FDR, rank intervals, the "
        "number of models told apart. Reads the run's feature cache; stores the result for the "
        "report. Run it from the directory the run was started in: relative paths in the "
        "stored config resolve from there.")] = False,
    n_bootstrap: Annotated[int, typer.Option(help="Resamples for --discriminability.")] = 200,
    alpha: Annotated[float, typer.Option(help="FDR level for --discriminability.")] = 0.05,
    rule: Annotated[list[str] | None, typer.Option(help="Layer rule(s) for --discriminability: "
                                                   "best, cv (default both).")] = None,
    layer_rule: Annotated[str | None, typer.Option(
        "--layer-rule", help="Recompute the best-layer table from the run's feature cache under "
        "this layer rule: cv (each model's layer chosen on the other stimulus folds and scored "
        "on the held-out fold: not optimistic) or best (chosen on the same data). Any measure; "
        "--target and --metric narrow it. Writes best_layers_<rule>.csv beside the "
        "results.")] = None,
    n_folds: Annotated[int, typer.Option(help="Stimulus folds for --layer-rule cv.")] = 5,
) -> None:
    """Show (or export) the scores stored in a results directory.

    Missing values print as '-'; a note under the table says why a target has no ceiling ("no
    ceiling (one RDM)"), and which ceilings (marked *) are published ones. 'normalized' is the
    score as a fraction of the lower bound of the ceiling, as in the report.
    """
    if layer_rule is not None:
        from cortexalign.cli._second_order import show_layer_table
        from cortexalign.errors import CortexAlignError

        try:
            show_layer_table(console, out, rule=layer_rule, n_folds=n_folds, target=target,
                             metric=metric, device="cpu")
        except (CortexAlignError, ValueError) as err:
            fail(err)
        return
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
    from cortexalign.errors import CortexAlignError, InputError
    from cortexalign.results import ResultsStore

    try:
        if fmt not in FORMATS:
            raise InputError("--format", " | ".join(FORMATS), repr(fmt), "e.g. --format csv")
        store = ResultsStore(results_path(out), read_only=True)
        if partitions:
            frame = store.partitions_frame(target=target, run_id=run_id)
            columns = PARTITION_COLUMNS
        else:
            from cortexalign.reports import normalized_scores

            frame = store.scores_frame(model=model, layer=layer, target=target, metric=metric,
                                       run_id=run_id)
            frame = frame.assign(normalized=normalized_scores(frame))
            columns = SCORE_COLUMNS
        if export is not None:
            export_frame(frame.drop(columns=["normalized"], errors="ignore")
                         if not partitions else frame, export)
    except CortexAlignError as err:
        fail(err)
    if export is not None:
        console.print(f"wrote {len(frame)} rows to {export}", markup=False, highlight=False)
        return
    if frame.empty:
        err_console.print(f"no rows in {out} match", markup=False, highlight=False)
        return
    rows, notes = frame.to_dict("records"), []
    if fmt == "table" and not partitions:  # intervals as one column each
        from cortexalign.reports import ceiling_text

        for r in rows:
            r["ci"] = interval_text(r["ci_low"], r["ci_high"])
        notes = ceiling_cells(rows, ceiling_text)
        columns = SCORE_TABLE_COLUMNS
    render(console, columns, rows, fmt, notes=notes)


@app.command()
def status(
    out: Annotated[Path, typer.Argument(help="A results directory (or its results.duckdb).")],
    errors: Annotated[int, typer.Option(help="Failed jobs to list per run.")] = 20,
) -> None:
    """Runs of a results directory: status (a crashed run shows 'interrupted (no live
    process)'), jobs finished / failed / running, and the failed jobs with their errors."""
    from cortexalign.bench import run_status
    from cortexalign.errors import CortexAlignError, StoreError

    try:
        runs = run_status(out)
    except StoreError as err:  # the store's state first ("damaged (truncated)"...), then why
        console.print(f"store {err.path}: [red]{err.kind}[/]", highlight=False)
        fail(err)
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
