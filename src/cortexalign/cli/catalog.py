"""``cortexalign models``, ``layers``, ``metrics``, ``datasets`` and ``profile``: what can go in a
config, and what a model costs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cortexalign.cli._app import app, console, fail, parse_kwargs


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
        fail(err)
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
    """List the registered neural datasets and bundled stimulus sets (catalogue entries of
    `cortexalign fetch` included: a config may name them)."""
    import cortexalign.fetch.sources  # noqa: F401  (registers the catalogue's data entries)
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

    kwargs = parse_kwargs(kwarg)
    try:
        card = profile_model(model, device=device, batch_size=batch_size, n_repeat=repeats,
                             untrained=untrained, **kwargs)
    except CortexAlignError as err:
        fail(err)
    table = Table(title=f"{card.model_id} on {card.device}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("parameters", f"{card.params / 1e6:,.2f} M")
    table.add_row("FLOPs / image", f"{card.flops / 1e9:,.2f} G")
    table.add_row("latency / image", f"{card.latency_ms:,.2f} ms")
    table.add_row("peak memory", f"{card.peak_mem_mb:,.1f} MB")
    console.print(table)
    if out is not None:
        from cortexalign.results import RESULTS_FILE, ModelCard, ResultsStore

        out.mkdir(parents=True, exist_ok=True)
        ResultsStore(out / RESULTS_FILE).put_model_card(ModelCard.from_profile(card))
        console.print(f"stored in {out / RESULTS_FILE} (model_cards)")
