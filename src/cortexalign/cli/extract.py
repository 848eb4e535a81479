"""``cortexalign extract``: layers of one model for one stimulus set, saved to one file (the work
is :func:`cortexalign.cli.extract_file.extract_to_file`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cortexalign.cli._app import CLI_SPELLING, app, console, fail, parse_kwargs


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
                                            "0): the untrained control. Off by default (unlike "
                                            "`layers` and `profile`): features depend on the "
                                            "weights.")] = False,
    batch_size: Annotated[int | None, typer.Option(
        help="Images per forward pass (default: chosen from free GPU memory, 32 on the CPU; "
        "halved on out-of-memory either way).")] = None,
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
    from cortexalign.cli.extract_file import extract_to_file
    from cortexalign.errors import CortexAlignError

    try:
        summary = extract_to_file(model, stimuli, out, layers=layers, all_layers=all_layers,
                                  pooling=pooling, features=features, weights=weights,
                                  untrained=untrained, batch_size=batch_size, device=device,
                                  precision=precision, cache=cache, overwrite=overwrite,
                                  progress=not quiet, model_kwargs=parse_kwargs(kwarg),
                                  map_options=parse_kwargs(map_option, "--map-option",
                                                      "reduction=rollout"))
    except CortexAlignError as err:
        fail(err, CLI_SPELLING)
    for name, shape in summary.shapes.items():
        console.print(f"  {name:24s} {str(shape):20s} {summary.pooling[name]}", markup=False,
                      highlight=False)
    console.print(f"wrote {len(summary.shapes)} layers x {summary.n_stimuli} stimuli of "
                  f"{summary.model_id} to {summary.path} in {summary.seconds:.1f} s",
                  markup=False, highlight=False, soft_wrap=True)
    if summary.from_cache:
        console.print(f"({len(summary.from_cache)} layers read from the cache)", markup=False,
                      highlight=False)
