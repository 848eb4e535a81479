"""``cortexalign models``, ``layers``, ``metrics``, ``datasets`` and ``profile``: what can go in a
config, and what a model costs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cortexalign.cli._app import app, console, fail, parse_kwargs
from cortexalign.cli._table import FORMATS, Column, render

#: ``list_models()`` as shipped, so that ``cortexalign models`` lists them without importing
#: torch and every model family (seconds); ``tests/test_cli_first_hour.py`` fails when it differs
#: from the registry, naming :func:`write_model_rows` to refresh it.
MODEL_ROWS = Path(__file__).with_name("models.json")


def read_model_rows() -> list[dict[str, str]]:
    """The registered models' rows (name, description, layers, weights), read from
    :data:`MODEL_ROWS`."""
    return json.loads(MODEL_ROWS.read_text())


def write_model_rows() -> Path:
    """Refresh :data:`MODEL_ROWS` from the live registry (after registering a model)."""
    from cortexalign.models import list_models

    tmp = MODEL_ROWS.with_suffix(".tmp")
    tmp.write_text(json.dumps([dict(r) for r in list_models()], indent=1) + "\n")
    tmp.replace(MODEL_ROWS)
    return MODEL_ROWS


@app.command()
def models(
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, csv, json or "
                                     "markdown.")] = "table",
) -> None:
    """List the registered models (and the timm:<name> / torchvision:<name> prefixes).

    Nothing is built or imported: use `cortexalign layers MODEL` for a model's exact layers.
    """
    from cortexalign.errors import InputError

    if fmt not in FORMATS:
        fail(InputError("--format", " | ".join(FORMATS), repr(fmt), "e.g. --format csv"))
    columns = (Column("name", identifier=True), Column("description", prose=True),
               Column("layers", prose=True), Column("weights", prose=True))
    render(console, columns, read_model_rows(), fmt)


@app.command()
def layers(
    model: Annotated[str, typer.Argument(
        help="A registered model, timm:<name> or torchvision:<name>.")],
    untrained: Annotated[bool, typer.Option(help="Build without loading weights (the default "
                                              "here, unlike extract and compare-layers: the "
                                              "layer names do not depend on the weights, and "
                                              "none are downloaded). --no-untrained loads the "
                                              "default weights too.")] = True,
) -> None:
    """List the layers of a model that can be extracted, in forward order.

    Any submodule path (`model.named_modules()`) can be extracted too; these are the ones
    scored with `layers: all`.
    """
    from cortexalign.errors import CortexAlignError
    from cortexalign.models import load_architecture, load_model

    try:
        adapter = (load_architecture(model) if untrained else
                   load_model(model, device="cpu"))
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
    untrained: Annotated[bool, typer.Option(help="Random weights: the default here, unlike "
                                                 "extract and compare-layers (whose features "
                                                 "depend on the weights), since size and speed "
                                                 "do not, and nothing is downloaded. "
                                                 "--no-untrained loads the default "
                                                 "weights.")] = True,
    weights: Annotated[Path | None, typer.Option(help="A checkpoint to profile with (an "
                                                 "official one is converted on load); implies "
                                                 "--no-untrained.")] = None,
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
        if weights is not None:
            kwargs["weights"] = str(weights)
        card = profile_model(model, device=device, batch_size=batch_size, n_repeat=repeats,
                             untrained=untrained and weights is None, **kwargs)
    except CortexAlignError as err:
        fail(err)
    table = Table(title=escape(f"{card.model_id} on {card.device}"))  # model ids hold [k=v]
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("parameters", f"{card.params / 1e6:,.2f} M")
    table.add_row("FLOPs / image", f"{card.flops / 1e9:,.2f} G")
    table.add_row("latency / image", f"{card.latency_ms:,.2f} ms")
    table.add_row("peak memory", f"{card.peak_mem_mb:,.1f} MB")
    console.print(table)
    if out is not None:
        from cortexalign.bench import store_card
        from cortexalign.results import RESULTS_FILE, ModelCard, ResultsStore

        out.mkdir(parents=True, exist_ok=True)  # kept together with a `miou --out` card
        store_card(ResultsStore(out / RESULTS_FILE), ModelCard.from_profile(card))
        console.print(f"stored in {out / RESULTS_FILE} (model_cards)")
