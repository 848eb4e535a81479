"""``cortexalign compare-layers``: every layer of one model against every layer of another (or
of itself), by CKA or RSA, saved as a NetCDF / CSV matrix or a PNG heatmap.

:func:`compare_layers_to_file` does the work and is importable; :func:`compare_layers` is the
typer command. Features come from the same extraction and feature cache as
``cortexalign extract`` (``features.extract``, ``FeatureCache``); the similarity matrix from
``metrics.layer_similarity``. Everything a caller can get wrong (output name, metric and its
options, pooling, layer names) is checked before any extraction, and the output is written
atomically: a temporary file in the destination folder, renamed (or hard-linked, without
``--overwrite``) into place once complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cortexalign.cli._app import CLI_SPELLING, app, fail
from cortexalign.errors import InputError, UnknownNameError

if TYPE_CHECKING:  # xarray is imported with the metrics, not by `cortexalign --help`
    import xarray as xr

__all__ = ["compare_layers_to_file", "compare_layers", "CompareSummary", "OUTPUT_FORMATS"]


def _write_nc(da: xr.DataArray, tmp: Path) -> None:
    da.to_netcdf(tmp)


def _write_csv(da: xr.DataArray, tmp: Path) -> None:
    if "ci_low" in da.coords:  # with intervals: one row per layer pair
        frame = da.to_dataset(name="value").reset_coords()[["value", "ci_low", "ci_high"]]
        frame.to_dataframe().to_csv(tmp, float_format="%.10g")
        return
    frame = da.to_pandas()  # rows layer_a, columns layer_b
    frame.index.name = f"{da.attrs.get('model_a', 'A')} \\ {da.attrs.get('model_b', 'B')}"
    frame.to_csv(tmp, float_format="%.10g")


def _write_png(da: xr.DataArray, tmp: Path) -> None:
    from cortexalign.metrics import plot_layer_similarity, similarity_label

    ax = plot_layer_similarity(da)
    ax.set_title(f"{similarity_label(da)} over {da.attrs['n_stimuli']} stimuli", fontsize=9)
    ax.figure.savefig(tmp, format="png", dpi=130)


OUTPUT_FORMATS = {".nc": _write_nc, ".csv": _write_csv, ".png": _write_png}
"""Suffix -> ``writer(da, tmp_path)``: NetCDF (``xarray.open_dataarray``; intervals as its
``ci_low`` / ``ci_high`` coordinates), a CSV matrix (rows layers of A, columns layers of B; with
intervals one row per pair: layer_a, layer_b, value, ci_low, ci_high) or a PNG heatmap
(``plot_layer_similarity``)."""


@dataclass(frozen=True)
class CompareSummary:
    """What :func:`compare_layers_to_file` wrote.

    Attributes
    ----------
    path : the file.
    similarity : the (layer_a, layer_b) DataArray written.
    from_cache : layers read from the feature cache, as ``model_id:layer``.
    seconds : wall-clock time from loading the stimuli to the file being written.
    """

    path: Path
    similarity: xr.DataArray
    from_cache: tuple[str, ...]
    seconds: float


def _check_out(out: str | os.PathLike[str], overwrite: bool) -> Path:
    from cortexalign.features import check_new_file

    path = Path(out)
    if path.suffix.lower() not in OUTPUT_FORMATS:
        raise InputError("out", f"a file ending in {', '.join(OUTPUT_FORMATS)}",
                         repr(str(path)), "name the output e.g. sim.nc, sim.csv or sim.png")
    check_new_file(path, overwrite, "out", "similarity.nc")
    return path


def _check_request(layers: Sequence[str] | None, layers_b: Sequence[str] | None,
                   all_layers: bool, model_b: str | None, pooling: str, precision: str,
                   batch_size: int | None) -> None:
    from cortexalign.features import POOLINGS, PRECISIONS

    if pooling not in POOLINGS:
        raise UnknownNameError("pooling", str(pooling), POOLINGS)
    if pooling == "none":
        raise InputError("pooling", "a pooling that gives (s, d) features (mean, max, cls, grid2, "
                         "grid4, flatten)", "'none'", "pass --pooling mean (or flatten)")
    if precision not in PRECISIONS:
        raise UnknownNameError("precision", str(precision), PRECISIONS)
    if batch_size is not None and (isinstance(batch_size, bool)
                                   or not isinstance(batch_size, int) or batch_size < 1):
        raise InputError("batch_size", "a positive integer, or None (chosen from free memory)",
                         repr(batch_size), "pass e.g. 32")
    if all_layers and (layers or layers_b):
        raise InputError("layers", "either layer names or all_layers, not both",
                         f"{list(layers or layers_b)[:3]} and all_layers=True",
                         "drop --all-layers or the -l / --layers-b names")
    if not layers and not all_layers:
        raise InputError("layers", "the layers to compare", "none", "pass -l NAME (repeatable; "
                         "see `cortexalign layers MODEL`) or --all-layers")
    if layers_b and model_b is None:
        raise InputError("layers_b", "a second model for --layers-b", f"{list(layers_b)[:3]}",
                         "name MODEL_B before STIMULI, or drop --layers-b")


def _load(model: str, layers: Sequence[str] | None, all_layers: bool,
          load_options: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """The model adapter and its validated layer names (no forward pass yet)."""
    from cortexalign.cli.extract_file import _activation_layers
    from cortexalign.models import load_model

    adapter = load_model(model, **load_options)
    return adapter, _activation_layers(adapter, layers, all_layers)


def _publish(da: xr.DataArray, path: Path, overwrite: bool) -> None:
    """Write through a temporary file beside ``path``; nothing half-written is ever visible."""
    from cortexalign.features import link_new

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        OUTPUT_FORMATS[path.suffix.lower()](da, tmp)
        if overwrite:
            os.replace(tmp, path)
        else:
            link_new(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def compare_layers_to_file(model_a: str, stimuli: str | os.PathLike[str],
                           out: str | os.PathLike[str], *, model_b: str | None = None,
                           layers: Sequence[str] | None = None,
                           layers_b: Sequence[str] | None = None, all_layers: bool = False,
                           metric: str = "cka_linear", options: Mapping[str, Any] | None = None,
                           pooling: str = "mean", untrained: bool = False,
                           batch_size: int | None = None,
                           device: str = "auto", precision: str = "auto",
                           cache: str | os.PathLike[str] | None = None, overwrite: bool = False,
                           progress: bool = True, model_kwargs: Mapping[str, Any] | None = None,
                           model_kwargs_b: Mapping[str, Any] | None = None, n_bootstrap: int = 0,
                           seed: int = 0, ci_level: float = 0.95) -> CompareSummary:
    """Layer-by-layer similarity of ``model_a`` and ``model_b`` (or ``model_a`` with itself).

    Parameters
    ----------
    model_a, model_b : registered models, ``timm:<name>`` or ``torchvision:<name>``; no
        ``model_b``: A against itself.
    stimuli : a bundled set name, a folder of images or an ``.npz`` (``load_stimuli``).
    out : ``.nc``, ``.csv`` or ``.png`` (``OUTPUT_FORMATS``).
    layers : layers of A (and of B when ``layers_b`` is not given); ``all_layers``: every layer.
    metric, options : a ``LAYER_SIMILARITIES`` name and its options (``sigma_frac`` for cka_rbf;
        ``rdm_method``, ``compare`` for rsa).
    pooling, batch_size, precision, cache : as in ``cortexalign extract`` (cache: a feature-cache
        folder shared with it).
    untrained, device : passed to ``load_model`` for both models.
    model_kwargs, model_kwargs_b : constructor options of A and of B, passed to ``load_model``.
    overwrite : replace an existing ``out``; progress : show progress bars.
    n_bootstrap, seed, ci_level : CKA metrics: percentile intervals over stimulus resamples
        (``layer_similarity``), checked before any extraction.

    Returns
    -------
    CompareSummary

    Raises
    ------
    InputError / UnknownNameError for a bad output name, an existing file without
    ``overwrite``, an unknown metric, option or pooling, or unknown layers; raised before any
    extraction (layer names once the model is loaded, before its forward passes), and nothing
    is written.
    """
    from cortexalign.cli.extract_file import check_model_request
    from cortexalign.device import resolve_device
    from cortexalign.errors import Problems
    from cortexalign.features import FeatureCache, extract
    from cortexalign.metrics import check_bootstrap, check_layer_metric, layer_similarity
    from cortexalign.stimuli import load_stimuli

    path = _check_out(out, overwrite)
    full_options = check_layer_metric(metric, dict(options or {}))
    check_bootstrap(metric, n_bootstrap, seed, ci_level)
    _check_request(layers, layers_b, all_layers, model_b, pooling, precision, batch_size)
    dev = resolve_device(device)
    start = time.perf_counter()
    # both models' names, options and layers, and the stimuli: every problem at once, before
    # any weights load
    problems = Problems()
    check_model_request(problems, model_a, layers, all_layers, model_kwargs)
    if model_b is not None:
        check_model_request(problems, model_b, layers_b or layers, all_layers, model_kwargs_b)
    stim = problems.check("", lambda: load_stimuli(stimuli))
    problems.raise_if_any("compare-layers")
    store = FeatureCache(cache) if cache is not None else None
    common = {"batch_size": batch_size, "precision": precision, "cache": store,
              "progress": progress}
    load = {"untrained": untrained, "device": dev}
    # both models and their layer names are checked before either runs a forward pass
    models = [_load(model_a, layers, all_layers, {**load, **dict(model_kwargs or {})})]
    if model_b is not None:
        models.append(_load(model_b, layers_b or layers, all_layers,
                            {**load, **dict(model_kwargs_b or {})}))
    feats = [extract(adapter, stim, names, "activations", {"pooling": pooling}, **common)
             for adapter, names in models]
    id_a, feats_a = models[0][0].model_id, feats[0]
    id_b, feats_b = (id_a, None) if model_b is None else (models[1][0].model_id, feats[1])
    da = layer_similarity({k: f.values for k, f in feats_a.items()},
                          None if feats_b is None else {k: f.values for k, f in feats_b.items()},
                          metric, device=dev, n_bootstrap=n_bootstrap, seed=seed,
                          ci_level=ci_level, **full_options)
    da.attrs.update({"model_a": id_a, "model_b": id_b, "pooling": pooling,
                     "stimulus_set": stim.name, "stimuli_hash": stim.content_hash,
                     "weights": "untrained" if untrained else "default"})
    _publish(da, path, overwrite)
    cached = [f"{mid}:{k}" for mid, feats in ((id_a, feats_a), (id_b, feats_b or {}))
              for k, f in feats.items() if f.from_cache]
    return CompareSummary(path, da, tuple(cached), time.perf_counter() - start)


def _options(items: list[str] | None) -> dict[str, Any]:
    import yaml

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError("--option", "KEY=VALUE", repr(item),
                             "e.g. --option compare=pearson or --option sigma_frac=0.5")
        out[key] = yaml.safe_load(value)
    return out


@app.command("compare-layers")
def compare_layers(
    args: Annotated[list[str], typer.Argument(
        help="MODEL_A [MODEL_B] STIMULI: registered / timm:<name> / torchvision:<name> models "
             "(one: against itself) and a bundled set, image folder or .npz.",
        metavar="MODEL_A [MODEL_B] STIMULI")],
    out: Annotated[Path, typer.Option("--out", "-o", help="sim.nc (NetCDF), sim.csv (matrix) or "
                                      "sim.png (heatmap).")],
    layers: Annotated[list[str] | None, typer.Option("--layers", "-l", help="A layer of "
                      "MODEL_A (and of MODEL_B unless --layers-b), repeatable.")] = None,
    layers_b: Annotated[list[str] | None, typer.Option("--layers-b", help="A layer of MODEL_B, "
                        "repeatable.")] = None,
    all_layers: Annotated[bool, typer.Option("--all-layers", help="Every layer of each "
                                             "model.")] = False,
    metric: Annotated[str, typer.Option(help="cka_linear, cka_linear_debiased, cka_rbf or "
                                        "rsa.")] = "cka_linear",
    option: Annotated[list[str] | None, typer.Option("--option", help="Metric option KEY=VALUE, "
                      "repeatable: sigma_frac=0.5 (cka_rbf); rdm_method=euclidean, "
                      "compare=pearson (rsa).")] = None,
    pooling: Annotated[str, typer.Option(help="mean, max, cls, grid2, grid4 or flatten.")]
    = "mean",
    untrained: Annotated[bool, typer.Option("--untrained", help="Random initialisation (seed "
                                            "0) of both models. Off by default (unlike "
                                            "`layers` and `profile`): similarities depend on "
                                            "the weights.")] = False,
    kwarg: Annotated[list[str] | None, typer.Option("--kwarg", help="MODEL_A constructor option "
                     "KEY=VALUE (YAML value), repeatable.")] = None,
    kwarg_b: Annotated[list[str] | None, typer.Option("--kwarg-b", help="MODEL_B constructor "
                       "option KEY=VALUE, repeatable.")] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Images per forward pass (default: chosen from free GPU memory, 32 on the CPU; "
        "halved on out-of-memory either way).")] = None,
    device: Annotated[str, typer.Option(help="'auto', 'cpu' or 'cuda:N'.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32 or bf16.")] = "auto",
    cache: Annotated[Path | None, typer.Option(help="Feature-cache folder (shared with "
                                               "`cortexalign extract`).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out "
                                            "file.")] = False,
    n_bootstrap: Annotated[int, typer.Option(help="CKA metrics: bootstrap resamples of the "
                                             "stimuli for a percentile interval per layer pair "
                                             "(0: none).")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap resamples.")] = 0,
    ci_level: Annotated[float, typer.Option(help="Interval level.")] = 0.95,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Similarity of every layer of MODEL_A with every layer of MODEL_B (Kornblith et al. 2019).

    Example: cortexalign compare-layers timm:resnet18 timm:vit_small_patch16_224 kriegeskorte92
    -l layer3 -l layer4 --layers-b blocks.6 --layers-b blocks.11 --out sim.png
    """
    from rich.console import Console

    from cortexalign.errors import CortexAlignError

    try:
        if len(args) not in (2, 3):
            raise InputError("args", "MODEL_A [MODEL_B] STIMULI (2 or 3 arguments)",
                             f"{len(args)}: {args}", "e.g. cortexalign compare-layers "
                             "timm:resnet18 kriegeskorte92 -l layer3 --out sim.nc")
        model_a, model_b, stimuli = (args[0], None, args[1]) if len(args) == 2 else args
        summary = compare_layers_to_file(
            model_a, stimuli, out, model_b=model_b, layers=layers, layers_b=layers_b,
            all_layers=all_layers, metric=metric, options=_options(option), pooling=pooling,
            untrained=untrained, batch_size=batch_size, device=device, precision=precision,
            cache=cache, overwrite=overwrite, progress=not quiet,
            model_kwargs=_options_or_kwargs(kwarg, "--kwarg"),
            model_kwargs_b=_options_or_kwargs(kwarg_b, "--kwarg-b"), n_bootstrap=n_bootstrap,
            seed=seed, ci_level=ci_level)
    except CortexAlignError as err:
        fail(err, CLI_SPELLING)
    da, console = summary.similarity, Console()
    console.print(f"{da.attrs['metric']} of {da.shape[0]} x {da.shape[1]} layers "
                  f"({da.attrs['model_a']} vs {da.attrs['model_b']}, {da.attrs['n_stimuli']} "
                  f"stimuli, options {json.loads(da.attrs['options'])}) written to "
                  f"{summary.path} in {summary.seconds:.1f} s", markup=False, highlight=False,
                  soft_wrap=True)
    if summary.from_cache:
        console.print(f"({len(summary.from_cache)} layers read from the cache)", markup=False)


def _options_or_kwargs(items: list[str] | None, flag: str) -> dict[str, Any]:
    try:
        return _options(items)
    except InputError as err:
        raise InputError(flag, err.expected, err.received, f"e.g. {flag} img_size=64") from None
