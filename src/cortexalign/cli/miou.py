"""``cortexalign miou``: the prompted-segmentation accuracy of one Segment Anything model on a
COCO set, optionally stored as its model card. The work is ``bench.model_card``, the path a run
with ``segmentation:`` in its config takes for every model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cortexalign.cli._app import CLI_SPELLING, app, console, err_console, fail, parse_kwargs


@app.command()
def miou(
    model: Annotated[str, typer.Argument(
        help="A Segment Anything family model: sam_vit_b/l/h, sam2_hiera_t/s/b_plus/l, "
             "mobile_sam, efficient_sam_vit_t/s, edge_sam, edge_sam_3x.")],
    coco: Annotated[Path, typer.Option(help="A COCO-format instance annotation file "
                                            "(polygons or RLE; crowd annotations skipped).")],
    images: Annotated[Path, typer.Option(help="The folder of the annotation file's images.")],
    weights: Annotated[str | None, typer.Option(
        help="The official checkpoint (its encoder and its prompt encoder and mask decoder are "
             "loaded), or a weights entry of `cortexalign fetch --list` (e.g. edge-sam). "
             "Default: the checkpoint `cortexalign fetch` got for MODEL.")] = None,
    prompt: Annotated[str, typer.Option(help="'box' (each instance's bounding box) or 'point' "
                                             "(the point farthest from its boundary; the best "
                                             "of three masks).")] = "box",
    limit: Annotated[int | None, typer.Option(help="Score only the first N images.")] = None,
    untrained: Annotated[bool, typer.Option(help="Random encoder and heads: a control, not "
                                                 "the model's accuracy.")] = False,
    device: Annotated[str, typer.Option(help="'auto', 'cpu' or 'cuda:N'.")] = "auto",
    out: Annotated[Path | None, typer.Option(help="A results directory: store the model card "
                                                  "in its results.duckdb (kept together with a "
                                                  "`profile --out` card of the same model and "
                                                  "device).")] = None,
    kwarg: Annotated[list[str] | None, typer.Option("--kwarg", help="Constructor option "
                                                    "KEY=VALUE (YAML value), repeatable: "
                                                    "--kwarg img_size=512")] = None,
) -> None:
    """Prompted-segmentation mIoU of a Segment Anything model on a COCO instance set.

    Each ground-truth instance is prompted once (its box, or one point) and the mean IoU of
    the predicted masks over all instances is reported, as in the SAM papers. The encoder and
    the prompt encoder / mask decoder come from the same official checkpoint; a model loaded
    without one (timm's hub encoder, --untrained) has random heads, and the output says so.
    The same measure runs for every model of a config with a `segmentation:` entry.
    """
    from pydantic import ValidationError

    from cortexalign.bench import (
        ModelSpec,
        SegmentationSpec,
        model_card,
        segmenter_name,
        store_card,
    )
    from cortexalign.device import resolve_device
    from cortexalign.errors import CortexAlignError, InputError

    kwargs = parse_kwargs(kwarg)
    try:
        seg = SegmentationSpec(coco=str(coco), images=str(images), prompt=prompt, limit=limit,
                               profile_repeats=0)
        spec = ModelSpec(name=model, weights=weights, untrained=untrained, kwargs=kwargs)
    except ValidationError as err:
        first = err.errors()[0]
        fail(InputError(f"--{first['loc'][0]}", first["msg"], repr(first.get("input")),
                        "see cortexalign miou --help"))
    if not segmenter_name(model):
        fail(InputError("MODEL", "a Segment Anything family model (sam_vit_b/l/h, "
                        "sam2_hiera_t/s/b_plus/l, mobile_sam, efficient_sam_vit_t/s, edge_sam, "
                        "edge_sam_3x)", repr(model), "mIoU needs a promptable segmenter; "
                        "`cortexalign profile` measures any model's cost"))
    if untrained and weights is not None:
        fail(InputError("--weights", "no checkpoint with --untrained", weights,
                        "pass one of --weights or --untrained"))
    try:
        card = model_card(spec, seg, resolve_device(device), console=err_console)
    except CortexAlignError as err:
        fail(err, CLI_SPELLING)
    info = card.extra["segmentation"]
    if card.miou is None:
        fail(InputError("model", "a model whose mIoU can be measured", info["note"],
                        "install cortexalign[sam], or pick a Segment Anything model"))
    table = Table(title=escape(f"{card.model_id} on {card.device}"))
    table.add_column("measure")
    table.add_column("value", justify="right", overflow="fold")
    table.add_row("mIoU", f"{card.miou:.4f}")
    table.add_row("prompt", info["prompt"])
    table.add_row("images", str(info["images"]))
    table.add_row("instances", str(info["instances"]))
    table.add_row("heads", escape(info["heads"]))
    console.print(table)
    if out is not None:
        from cortexalign.results import RESULTS_FILE, ResultsStore

        out.mkdir(parents=True, exist_ok=True)
        store_card(ResultsStore(out / RESULTS_FILE), card)
        console.print(f"stored in {out / RESULTS_FILE} (model_cards)")
