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
    """Offline demo: 3 models x every layer vs human and monkey IT on 92 bundled images.

    EfficientNet-Lite0 (ImageNet weights), the same network untrained and a Gabor V1 model,
    scored by RSA with leave-one-subject-out noise ceilings and bootstrap intervals.
    """
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
    """List the registered models (and the timm:<name> / torchvision:<name> prefixes)."""
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
    model: Annotated[str, typer.Argument(
        help="A registered model, timm:<name> or torchvision:<name>.")],
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


def _kwargs(items: list[str] | None, flag: str = "--kwarg", example: str = "img_size=512") -> dict:
    import yaml

    kwargs = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(ValueError(f"{flag}: expected KEY=VALUE, received {item!r}. Fix: e.g. "
                             f"{flag} {example}"))
        kwargs[key] = yaml.safe_load(value)
    return kwargs


@app.command()
def extract(
    model: Annotated[str, typer.Argument(
        help="A registered model, timm:<name> or torchvision:<name>.")],
    stimuli: Annotated[str, typer.Argument(
        help="A bundled set (kriegeskorte92), a folder of images or an .npz.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write: .npz (NumPy), .mat "
                                      "(MATLAB) or .h5 (HDF5).")],
    layers: Annotated[list[str] | None, typer.Option("--layers", "-l", help="A layer to extract "
                      "(repeatable: -l blocks.3 -l blocks.5); see `cortexalign layers MODEL`.")]
    = None,
    all_layers: Annotated[bool, typer.Option("--all-layers", help="Every layer (for maps: every "
                                             "attention block / spatial layer).")] = False,
    pooling: Annotated[str | None, typer.Option(help="Activations only: mean, max, cls, grid2, "
                                                "grid4, flatten or none (default: mean).")] = None,
    features: Annotated[str, typer.Option(help="activations (pooled, (s, d)), attention "
                                          "(attention each patch receives, (s, gh, gw)) or "
                                          "conv_map (mean |activation|, (s, gh, gw)).")]
    = "activations",
    weights: Annotated[Path | None, typer.Option(help="A local checkpoint (.safetensors or "
                                                 "state_dict) instead of the default weights.")]
    = None,
    untrained: Annotated[bool, typer.Option("--untrained", help="Random initialisation (seed "
                                            "0): the untrained control.")] = False,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 32,
    device: Annotated[str, typer.Option(help="'auto', 'cpu' or 'cuda:N'.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto (bf16 on CUDA, fp32 elsewhere), fp32 or "
                                           "bf16.")] = "auto",
    cache: Annotated[Path | None, typer.Option(help="Feature-cache folder: layers extracted "
                                               "before are read, new ones stored.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out "
                                            "file.")] = False,
    kwarg: Annotated[list[str] | None, typer.Option("--kwarg", help="Model constructor option "
                                                    "KEY=VALUE (YAML value), repeatable.")] = None,
    map_option: Annotated[list[str] | None, typer.Option(
        "--map-option", help="Map option KEY=VALUE, repeatable: reduction=rollout (attention: "
        "received, cls, rollout), kind=topk / k=8 (conv_map).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Extract layers of a model for a stimulus set and save them to one file.

    Example: cortexalign extract timm:resnet50 my_images/ --layers layer3 --layers layer4
    --out feats.npz

    Load it back with cortexalign.features.load_features (or np.load, scipy.io.loadmat, MATLAB's
    load): one array per layer, stimulus_ids, and JSON metadata mapping layers to array names.
    """
    from cortexalign.cli_extract import extract_to_file
    from cortexalign.errors import CortexAlignError

    try:
        summary = extract_to_file(model, stimuli, out, layers=layers, all_layers=all_layers,
                                  pooling=pooling, features=features, weights=weights,
                                  untrained=untrained, batch_size=batch_size, device=device,
                                  precision=precision, cache=cache, overwrite=overwrite,
                                  progress=not quiet, model_kwargs=_kwargs(kwarg),
                                  map_options=_kwargs(map_option, "--map-option",
                                                      "reduction=rollout"))
    except CortexAlignError as err:
        _fail(err)
    for name, shape in summary.shapes.items():
        console.print(f"  {name:24s} {str(shape):20s} {summary.pooling[name]}", markup=False,
                      highlight=False)
    console.print(f"wrote {len(summary.shapes)} layers x {summary.n_stimuli} stimuli of "
                  f"{summary.model_id} to {summary.path} in {summary.seconds:.1f} s",
                  markup=False, highlight=False, soft_wrap=True)
    if summary.from_cache:
        console.print(f"({len(summary.from_cache)} layers read from the cache)", markup=False,
                      highlight=False)


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
def profile(
    model: Annotated[str, typer.Argument(
        help="A registered model, timm:<name> or torchvision:<name>.")],
    untrained: Annotated[bool, typer.Option(help="Random weights (size and speed do not "
                                                 "depend on the values).")] = True,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 1,
    repeats: Annotated[int, typer.Option(help="Timed forward passes (median reported).")] = 10,
    device: Annotated[str, typer.Option(help="'auto', 'cpu' or 'cuda:N'.")] = "auto",
    out: Annotated[Path | None, typer.Option(help="A results directory: store the model card "
                                                  "in its results.duckdb.")] = None,
    kwarg: Annotated[list[str] | None, typer.Option("--kwarg", help="Constructor option "
                                                    "KEY=VALUE (YAML value), repeatable: "
                                                    "--kwarg tiny=true")] = None,
) -> None:
    """Parameters, FLOPs, latency and peak memory of a model at its native input size."""
    from cortexalign.errors import CortexAlignError
    from cortexalign.models.profile import profile_model

    kwargs = _kwargs(kwarg)
    try:
        card = profile_model(model, device=device, batch_size=batch_size, n_repeat=repeats,
                             untrained=untrained, **kwargs)
    except CortexAlignError as err:
        _fail(err)
    table = Table(title=f"{card.model_id} on {card.device}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("parameters", f"{card.params / 1e6:,.2f} M")
    table.add_row("FLOPs / image", f"{card.flops / 1e9:,.2f} G")
    table.add_row("latency / image", f"{card.latency_ms:,.2f} ms")
    table.add_row("peak memory", f"{card.peak_mem_mb:,.1f} MB")
    console.print(table)
    if out is not None:
        from cortexalign.results import ResultsStore

        out.mkdir(parents=True, exist_ok=True)
        ResultsStore(out / "results.duckdb").put_model_card(card)
        console.print(f"stored in {out / 'results.duckdb'} (model_cards)")


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
        _fail(err)
    console.print(f"wrote {path}", markup=False, highlight=False)


def _mount_subcommands() -> None:
    from cortexalign.spiking.cli import app as spiking_app

    for command in spiking_app.registered_commands:
        app.registered_commands.append(command)
    from cortexalign.sae.cli import sae_brainmap

    app.command("sae-brainmap")(sae_brainmap)
    from cortexalign.cli_compare import compare_layers

    app.command("compare-layers")(compare_layers)
    from cortexalign.cli_results import results, status

    app.command()(results)
    app.command()(status)


_mount_subcommands()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
