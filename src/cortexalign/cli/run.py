"""``cortexalign run``, ``quickstart`` and ``report``: run a config, the offline demo, and the
HTML report of a results directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cortexalign.cli._app import CONFIG_SPELLING, app, console, err_console, fail
from cortexalign.cli._table import Column, ceiling_cells, interval_text, render

#: The quickstart's closing table (long model names get codes and a legend on narrow terminals).
BEST_COLUMNS = (Column("model", identifier=True), Column("target", identifier=True),
                Column("layer", identifier=True), Column("value", "score"),
                Column("ci", "95% CI"), Column("ceiling"))


def _print_run(summary) -> None:
    console.print(f"[bold]{summary.n_done}[/] scores computed, {summary.n_skipped} already in the "
                  f"store, {len(summary.failures)} failed, in {summary.seconds:.1f} s.")
    for name, path in summary.files.items():
        console.print(f"  {name:12s} {path}")
    if summary.failures:
        console.print("[red]Failed jobs:[/]")
        for f in summary.failures:
            console.print(f"  - {f['job']}: {f['error'].splitlines()[0]}", markup=False)


def _outputs(summary) -> dict:
    """The figure, the best-layer table and the report, written from the store while the run
    still holds its directory (``cortexalign report DIR`` writes the same report): the run is
    finished only once they exist."""
    from cortexalign.reports import write_run_outputs

    return write_run_outputs(summary)


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Experiment YAML: stimuli, models, neural, "
                                                "metrics (see configs/ for examples).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Results directory: "
                                             "results.duckdb, figure.png, report.html, cache/. "
                                             "Required unless --estimate.")] = None,
    update: Annotated[bool, typer.Option(help="Allow a changed config in an existing results "
                                              "directory; only new jobs run.")] = False,
    estimate: Annotated[bool, typer.Option(
        "--estimate", help="Print the predicted time and peak memory of the config (per model "
        "and in all) from the shipped scaling fits, and run nothing: sizes come from the data "
        "and the architectures (no weights are loaded). An order of magnitude, measured on a "
        "CPU.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Run an experiment. Finished jobs are skipped, so a killed run resumes where it stopped."""
    from cortexalign.errors import CortexAlignError, InputError
    from cortexalign.fetch import prefetch_config_file

    try:  # catalogue sources (source: allen-ophys) first: offline, this fails before torch loads
        if out is None and not estimate:
            raise InputError("--out", "a results directory", "none", "pass --out DIR (or "
                             "--estimate to print the predicted cost without running)")
        prefetch_config_file(config, None if quiet else err_console)
        if estimate:
            _print_estimate(config)
            return
        from cortexalign.bench import run_experiment

        summary = run_experiment(config, out, progress=not quiet, allow_config_change=update,
                                 outputs=_outputs)
    except CortexAlignError as err:
        fail(err, CONFIG_SPELLING)
    _print_run(summary)
    if not summary.ok:
        raise typer.Exit(1)


def _print_estimate(config: Path) -> None:
    from cortexalign.bench import estimate_config, estimate_table, load_config

    est = estimate_config(load_config(config), str(config))
    console.print(estimate_table(est))
    console.print(f"[bold]about {_duration(est.seconds)}[/] and "
                  f"{est.peak_bytes / 1e9:.2f} GB of peak memory above the process's own, "
                  "run one model after the other on this kind of machine.")


def _duration(seconds: float) -> str:
    return (f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
            if seconds < 7200 else f"{seconds / 3600:.1f} h")


@app.command()
def quickstart(
    out: Annotated[Path, typer.Option("--out", "-o", help="Results directory.")] = Path("quickstart-out"),
    show_config: Annotated[bool, typer.Option(help="Print the quickstart config (YAML, verbatim) "
                                              "and exit: `cortexalign quickstart --show-config "
                                              "> my.yaml`, edit, `cortexalign run my.yaml --out "
                                              "DIR`. `cortexalign config template` prints "
                                              "every key.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Offline demo: 3 models x every layer vs human and monkey IT on 92 bundled images.

    EfficientNet-Lite0 (ImageNet weights), the same network untrained and a Gabor V1 model,
    scored by RSA with leave-one-subject-out noise ceilings and bootstrap intervals.
    """
    from importlib import resources

    # the file bench.quickstart_config_path() names, found without importing bench (torch)
    path = Path(str(resources.files("cortexalign").joinpath("configs", "quickstart.yaml")))
    if show_config:
        typer.echo(path.read_text(), nl=False)  # verbatim: rich would wrap it at 80 columns
        return
    from cortexalign.bench import run_experiment
    from cortexalign.errors import CortexAlignError
    try:
        summary = run_experiment(path, out, progress=not quiet, outputs=_outputs)
    except CortexAlignError as err:
        fail(err)
    _print_run(summary)
    from cortexalign.reports import best_layers, ceiling_text
    from cortexalign.results import ResultsStore

    best = best_layers(ResultsStore(summary.files["results"], read_only=True).scores_frame())
    rows = [{**r, "ci": interval_text(r["ci_low"], r["ci_high"])}
            for r in best.to_dict("records")]
    notes = ceiling_cells(rows, ceiling_text)
    render(console, BEST_COLUMNS, rows, title="Best layer per model (RSA, Spearman)",
           notes=notes)
    if not summary.ok:
        raise typer.Exit(1)


@app.command()
def report(
    results_dir: Annotated[Path, typer.Argument(help="A results directory (the --out of a run).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="HTML file to write "
                                             "(default: DIR/report.html).")] = None,
) -> None:
    """Write the self-contained HTML report of a results directory (opens offline)."""
    from cortexalign.errors import CortexAlignError
    from cortexalign.reports import write_report

    try:
        path = write_report(results_dir, out)
    except CortexAlignError as err:
        fail(err)
    console.print(f"wrote {path}", markup=False, highlight=False)
