"""The ``cortexalign`` command. It parses and dispatches; every stage is an importable function."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="cortexalign",
    help="Measure how vision models line up with the visual brain: RSA, CKA and encoding "
         "scores per layer, with noise ceilings and bootstrap intervals, stored in DuckDB and "
         "summarised in an HTML report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _fail(err: Exception) -> None:
    err_console.print(f"error: {err}", style="red", highlight=False, markup=False)
    raise typer.Exit(2)


def _print_run(summary) -> None:
    console.print(f"[bold]{summary.n_done}[/] scores computed, {summary.n_skipped} already in the "
                  f"store, {len(summary.failures)} failed, in {summary.seconds:.1f} s.")
    for name, path in summary.files.items():
        console.print(f"  {name:12s} {path}")
    if summary.failures:
        console.print("[red]Failed jobs:[/]")
        for f in summary.failures:
            console.print(f"  - {f['job']}: {f['error'].splitlines()[0]}", markup=False)


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Experiment YAML: stimuli, models, neural, "
                                                "metrics (see configs/ for examples).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Results directory: results.duckdb, "
                                                          "figure.png, report.html, cache/.")],
    update: Annotated[bool, typer.Option(help="Allow a changed config in an existing results "
                                              "directory; only new jobs run.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Run an experiment. Finished jobs are skipped, so a killed run resumes where it stopped."""
    from cortexalign.bench._run import run_experiment
    from cortexalign.errors import CortexAlignError

    try:
        summary = run_experiment(config, out, progress=not quiet, allow_config_change=update)
    except CortexAlignError as err:
        _fail(err)
    _print_run(summary)
    if not summary.ok:
        raise typer.Exit(1)


@app.command()
def quickstart(
    out: Annotated[Path, typer.Option("--out", "-o", help="Results directory.")] = Path("quickstart-out"),
    show_config: Annotated[bool, typer.Option(help="Print the quickstart config and exit.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Offline demo: EfficientNet-Lite0 (pretrained and untrained) and a Gabor V1 model against
    human and monkey IT on the 92 bundled object images, with ceilings and bootstrap intervals."""
    from cortexalign.bench import quickstart_config_path
    from cortexalign.bench._run import run_experiment
    from cortexalign.errors import CortexAlignError

    path = quickstart_config_path()
    if show_config:
        console.print(path.read_text(), markup=False, highlight=False)
        return
    try:
        summary = run_experiment(path, out, progress=not quiet)
    except CortexAlignError as err:
        _fail(err)
    _print_run(summary)
    from cortexalign.reports import best_layers
    from cortexalign.results import ResultsStore

    best = best_layers(ResultsStore(summary.files["results"], read_only=True).scores_frame())
    table = Table(title="Best layer per model (RSA, Spearman)")
    for col in ("model", "target", "layer", "score", "95% CI", "ceiling"):
        table.add_column(col)
    for r in best.itertuples():
        table.add_row(str(r.model), str(r.target), str(r.layer), f"{r.value:.3f}",
                      f"{r.ci_low:.3f}-{r.ci_high:.3f}",
                      "-" if r.ceiling_low != r.ceiling_low else f"{r.ceiling_low:.3f}-{r.ceiling_high:.3f}")
    console.print(table)
    if not summary.ok:
        raise typer.Exit(1)


@app.command()
def models() -> None:
    """List the registered models (and the timm:<name> prefix for any timm model)."""
    from cortexalign.models import list_models

    table = Table(title="Models")
    rows = list_models()
    keys = list(rows[0].keys()) if rows else ["name"]
    for k in keys:
        table.add_column(k)
    for r in rows:
        table.add_row(*(str(r.get(k, "")) for k in keys))
    console.print(table)


@app.command()
def layers(
    model: Annotated[str, typer.Argument(help="A registered model or timm:<name>.")],
    untrained: Annotated[bool, typer.Option(help="Build without loading weights.")] = True,
) -> None:
    """List the layers of a model that can be extracted, in forward order."""
    from cortexalign.errors import CortexAlignError
    from cortexalign.models import load_model

    try:
        adapter = load_model(model, untrained=untrained, device="cpu")
    except CortexAlignError as err:
        _fail(err)
    for name in adapter.layers():
        console.print(name, markup=False)


@app.command()
def metrics() -> None:
    """List the registered metrics with their citations."""
    from cortexalign.metrics import list_metrics

    table = Table(title="Metrics")
    for col in ("name", "target", "description", "citation"):
        table.add_column(col, overflow="fold")
    for r in list_metrics():
        table.add_row(*(str(r.get(k, "")) for k in ("name", "target", "description", "citation")))
    console.print(table)


@app.command()
def datasets() -> None:
    """List the registered neural datasets and bundled stimulus sets."""
    from cortexalign.neural import NEURAL
    from cortexalign.stimuli import BUNDLED

    table = Table(title="Neural datasets and stimulus sets")
    for col in ("name", "kind", "description", "citation"):
        table.add_column(col, overflow="fold")
    for kind, reg in (("neural", NEURAL), ("stimuli", BUNDLED)):
        for e in reg.entries():
            table.add_row(e.name, kind, e.description, e.meta.get("citation", ""))
    console.print(table)


@app.command()
def results(
    out: Annotated[Path, typer.Argument(help="A results directory (or its results.duckdb).")],
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    target: Annotated[str | None, typer.Option(help="Only this neural target.")] = None,
    metric: Annotated[str | None, typer.Option(help="Only this metric.")] = None,
    export: Annotated[Path | None, typer.Option(help="Write the table to .csv or .parquet.")] = None,
) -> None:
    """Show (or export) the scores stored in a results directory."""
    from cortexalign.errors import CortexAlignError
    from cortexalign.results import ResultsStore

    path = out / "results.duckdb" if out.is_dir() else out
    if not path.is_file():
        _fail(FileNotFoundError(f"out: expected a results directory holding results.duckdb, "
                                f"received {str(out)!r}. Fix: pass the --out of a run."))
    try:
        store = ResultsStore(path, read_only=True)
        frame = store.scores_frame(model=model, target=target, metric=metric)
    except CortexAlignError as err:
        _fail(err)
    if export is not None:
        if export.suffix == ".parquet":
            frame.to_parquet(export)
        else:
            frame.to_csv(export, index=False)
        console.print(f"wrote {len(frame)} rows to {export}")
        return
    table = Table()
    cols = ["model", "layer", "target", "metric", "value", "ci_low", "ci_high", "ceiling_low"]
    for c in cols:
        table.add_column(c)
    for r in frame[cols].itertuples(index=False):
        table.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r))
    console.print(table)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
