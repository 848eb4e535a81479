"""The predicted time and peak memory of a run, from the shipped scaling fits, running nothing.

``benchmarks/bench_scaling.py --fits`` measures, one size at a time around a base point, the time
and peak memory of ``score`` for RSA, CKA and ridge against stimuli s, features d and neuroids n,
the per-resample cost of the bootstrap against s, extraction against the model's parameter count,
and the runner's cost per job; it fits a power law to each (the slope of the log-log line) and
writes ``scaling_fits.json`` beside this module. The prediction multiplies them out:

- a job (one layer x target x metric) takes
  ``T(s, d, n) + (n_bootstrap + n_permutations) x R(s) + the runner's seconds per job``, where
  ``T = t0 (s/s0)^a (d/d0)^b (n/n0)^c`` is its measure's fit (:data:`METRIC_FAMILY` maps each
  metric to the measured one nearest in cost) and ``R = r0 (s/s0)^e`` the cost of one resample;
  its memory is ``M(s, d, n)``, fitted the same way;
- a model's extraction takes ``s x E(f)`` for f FLOPs per image (counted by torch's FLOP counter
  on the meta device; by parameter count when they cannot be counted) and holds its weights
  (4 bytes a parameter), a batch of activations (``batch x A(f)``) and its pooled features,
  ``s x sum of the layers' widths x 4`` bytes;
- the run: the sum of the times; the peak memory is the largest of the models' extraction
  memory + features + their largest job's memory.

Sizes come from the config without loading any weights: the stimulus count and the neuroids from
the data (as ``validate_request`` loads them), the layers and parameters from the architecture on
PyTorch's meta device, and the widths and FLOPs from one meta-device pass with hooks and torch's
FLOP counter (:func:`architecture_sizes`: shapes only; a width of 1,000 is assumed, and marked,
where the model's code cannot run on the meta device). The fits were
measured on one machine (``measured`` in the file: the CPU, its thread count and the load
average): a prediction is an order of magnitude, not a promise, and CPU fits say nothing of a GPU.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["FITS_FILE", "METRIC_FAMILY", "ASSUMED_WIDTH", "JobSize", "ModelEstimate",
           "RunEstimate", "ArchSizes", "load_fits", "power_law", "predict_job",
           "predict_extraction", "estimate_run", "architecture_sizes", "estimate_config",
           "estimate_table"]

#: The fitted coefficients shipped with the package (written by benchmarks/bench_scaling.py).
FITS_FILE = "scaling_fits.json"
#: Each metric -> the measured measure whose cost it follows (others: ``rsa``).
METRIC_FAMILY = {"rsa": "rsa", "rsa_cv": "rsa", "cka_linear": "cka", "cka_linear_debiased": "cka",
                 "cka_rbf": "cka", "cka_cv": "cka", "ridge": "ridge", "pls": "ridge",
                 "reverse_ridge": "ridge", "neuron_to_neuron": "ridge"}
#: Width assumed for a layer whose output shape the meta device cannot give.
ASSUMED_WIDTH = 1000


@cache
def load_fits() -> dict[str, Any]:
    """The shipped fits (``scaling_fits.json``: ``measured``, ``measures``, ``extraction``,
    ``runner``)."""
    text = resources.files("cortexalign.bench").joinpath(FITS_FILE).read_text()
    return json.loads(text)


def power_law(fit: dict[str, Any], **sizes: float) -> float:
    """``fit["at"] x prod((sizes[a] / fit["base"][a]) ** fit["exponents"][a])``: a fitted power
    law evaluated at ``sizes`` (axes the fit has no exponent for are ignored)."""
    value = float(fit["at"])
    for axis, exponent in fit["exponents"].items():
        value *= (max(float(sizes[axis]), 1e-12) / float(fit["base"][axis])) ** float(exponent)
    return value


@dataclass(frozen=True)
class JobSize:
    """What a job's cost depends on: its metric, s stimuli, d features, n neuroids (None for an
    RDM target: the fit's base), and the resamples (bootstrap + permutations)."""

    metric: str
    stimuli: int
    features: int
    neuroids: int | None
    resamples: int


def predict_job(fits: dict[str, Any], job: JobSize) -> tuple[float, float]:
    """``(seconds, bytes)`` of one job (module docstring)."""
    fit = fits["measures"][METRIC_FAMILY.get(job.metric, "rsa")]
    sizes = {"stimuli": job.stimuli, "features": job.features,
             "neuroids": job.neuroids if job.neuroids is not None
             else fit["time"]["base"]["neuroids"]}
    seconds = power_law(fit["time"], **sizes) + job.resamples * power_law(
        fit["resample"], stimuli=job.stimuli) + float(fits["runner"]["seconds_per_job"])
    return seconds, power_law(fit["memory"], **sizes)


def predict_extraction(fits: dict[str, Any], parameters: int, flops: int, stimuli: int,
                       batch_size: int) -> tuple[float, float]:
    """``(seconds, bytes)`` of one model's extraction of ``stimuli`` images, pooled features
    excluded: ``stimuli x E(flops)`` and ``4 x parameters + batch x A(flops)`` (E, A the per-image
    time and activation memory fits; by parameter count when ``flops`` is 0: not counted)."""
    ext = fits["extraction"]
    if flops > 0:
        per_image_s = power_law(ext["time"], flops=flops)
        per_image_b = power_law(ext["activation_memory"], flops=flops)
    else:
        per_image_s = power_law(ext["time_by_parameters"], parameters=parameters)
        per_image_b = power_law(ext["activation_memory_by_parameters"], parameters=parameters)
    return stimuli * per_image_s, 4.0 * parameters + min(batch_size, stimuli) * per_image_b


@dataclass
class ModelEstimate:
    """One model of the config: its sizes and predicted costs (seconds, bytes)."""

    label: str
    parameters: int
    widths: dict[str, int]
    flops: int = 0
    n_jobs: int = 0
    extract_s: float = 0.0
    score_s: float = 0.0
    peak_bytes: float = 0.0
    assumed_widths: bool = False


@dataclass
class RunEstimate:
    """The whole config: per-model estimates, stimuli, and the fits' provenance."""

    models: list[ModelEstimate] = field(default_factory=list)
    n_stimuli: int = 0
    measured: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """Predicted wall time of the run (every model one after the other)."""
        return sum(m.extract_s + m.score_s for m in self.models)

    @property
    def peak_bytes(self) -> float:
        """Predicted peak memory above the process's baseline."""
        return max((m.peak_bytes for m in self.models), default=0.0)


def estimate_run(fits: dict[str, Any], models: list[ModelEstimate], n_stimuli: int,
                 targets: dict[str, list[int | None]], metrics: list[str],
                 resamples: int, batch_size: int = 32) -> RunEstimate:
    """Fill each model's costs from the sizes (the formula of the module docstring).

    ``models`` : label, parameters, FLOPs and {layer: pooled width}; ``targets`` : label -> the
    neuroids of each of its groups (None for an RDM target; a target split into groups is one
    job that scores every group); ``metrics`` : the metric names.
    """
    for m in models:
        extract_s, extract_b = predict_extraction(fits, m.parameters, m.flops, n_stimuli,
                                                  batch_size)
        jobs = [predict_job(fits, JobSize(metric, n_stimuli, d, n, resamples))
                for d in m.widths.values() for groups in targets.values() for n in groups
                for metric in metrics]
        m.n_jobs = len(m.widths) * len(targets) * len(metrics)
        m.extract_s = extract_s
        m.score_s = sum(t for t, _ in jobs)
        features_b = 4.0 * n_stimuli * sum(m.widths.values())
        m.peak_bytes = extract_b + features_b + max((b for _, b in jobs), default=0.0)
    return RunEstimate(models, n_stimuli, dict(fits.get("measured", {})))


@dataclass(frozen=True)
class ArchSizes:
    """What the estimate knows of a model without its weights: parameters, FLOPs of one image
    (0 when they cannot be counted) and each layer's pooled width (``assumed``: some are
    :data:`ASSUMED_WIDTH`)."""

    parameters: int
    flops: int
    widths: dict[str, int]
    assumed: bool


def architecture_sizes(name: str, kwargs: dict[str, Any] | None = None,
                       layers: list[str] | str = "all", pooling: str = "mean") -> ArchSizes:
    """Sizes of model ``name`` from its architecture on the meta device: one forward pass on a
    meta image at the model's input size, with forward hooks on the layers (their output
    shapes, pooled by ``pooling``) and torch's FLOP counter (matrix products and convolutions).
    No weights, no arithmetic. A model whose code cannot run on the meta device gets
    ``ASSUMED_WIDTH`` and 0 FLOPs."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from cortexalign.features import POOLINGS
    from cortexalign.models import load_architecture

    arch = load_architecture(name, **(kwargs or {}))
    names = arch.layers() if layers == "all" else list(layers)
    modules = dict(arch.module.named_modules())
    if "logits" not in modules:  # the adapters' name for the model's own output
        modules["logits"] = arch.module
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for layer in names:
        if layer in modules:
            def keep(_m, _i, out, layer=layer):
                out = out[0] if isinstance(out, (tuple, list)) else out
                if isinstance(out, torch.Tensor):
                    shapes[layer] = tuple(out.shape)
            hooks.append(modules[layer].register_forward_hook(keep))
    size = tuple(getattr(arch.preprocess, "size", (224, 224)))
    flops = 0
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            arch.module(torch.empty(1, 3, *size, device="meta"))
        flops = int(counter.get_total_flops())
    except Exception:  # noqa: BLE001 - code the meta device cannot run: sizes are assumed
        pass
    finally:
        for h in hooks:
            h.remove()
    widths, assumed = {}, False
    for layer in names:
        try:
            pooled = POOLINGS[pooling](torch.empty(shapes[layer], device="meta"),
                                       arch.num_prefix_tokens)
            widths[layer] = math.prod(pooled.shape[1:])
        except Exception:  # noqa: BLE001 - unknown shape, or a pooling the shape does not take
            widths[layer], assumed = ASSUMED_WIDTH, True
    params = sum(p.numel() for p in arch.module.parameters())
    return ArchSizes(int(params), flops, widths, assumed)


def _model_sizes(spec: Any) -> ModelEstimate:
    pooling = spec.pooling if spec.features == "activations" else "mean"
    sizes = architecture_sizes(spec.name, spec.kwargs, spec.layers, pooling)
    return ModelEstimate(spec.display, sizes.parameters, sizes.widths, flops=sizes.flops,
                         assumed_widths=sizes.assumed)


def estimate_config(config: Any, source: str = "config") -> RunEstimate:
    """The prediction for a validated config: sizes read as the module docstring says (the
    request is checked first, as a run would), then :func:`estimate_run`."""
    from cortexalign.bench._validate import validate_request

    stimuli, targets = validate_request(config, source)
    sizes = {label: [int(g.data.sizes["neuroid"]) if hasattr(g.data, "sizes") else None
                     for g in groups] for label, groups in targets.items()}
    from cortexalign.features import CPU_BATCH_SIZE

    models = [_model_sizes(spec) for spec in config.models]
    return estimate_run(load_fits(), models, len(stimuli), sizes,
                        [m.name for m in config.metrics],
                        config.n_bootstrap + config.n_permutations,
                        config.batch_size or CPU_BATCH_SIZE)


def _seconds(s: float) -> str:
    if s < 100:
        return f"{s:.1f} s"
    if s < 6000:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _bytes(b: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if b >= scale:
            return f"{b / scale:.1f} {unit}"
    return f"{b / 1e3:.0f} kB"


def estimate_table(est: RunEstimate) -> Any:
    """A rich ``Table`` of the estimate (model, params, layers, jobs, extract, score, peak; a
    total row), under 80 columns; its caption says where the fits were measured."""
    from rich.table import Table

    m = est.measured
    load = m.get("load_average")
    where = (f"fits: {m.get('cpu', 'CPU')}, {m.get('threads', '?')} threads, load "
             f"{load[0]:.1f}" if load else "fits: see scaling_fits.json")
    table = Table(title=f"Predicted cost, {est.n_stimuli} stimuli", caption=where +
                  "; an order of magnitude (* widths assumed)", caption_justify="left")
    for col in ("model", "params", "layers", "jobs", "extract", "score", "peak mem"):
        table.add_column(col, justify="left" if col == "model" else "right",
                         overflow="fold", max_width=22 if col == "model" else None)
    for me in est.models:
        table.add_row(me.label + (" *" if me.assumed_widths else ""),
                      f"{me.parameters / 1e6:.1f}M", str(len(me.widths)), str(me.n_jobs),
                      _seconds(me.extract_s), _seconds(me.score_s), _bytes(me.peak_bytes))
    table.add_row("total", "", str(sum(len(x.widths) for x in est.models)),
                  str(sum(x.n_jobs for x in est.models)),
                  _seconds(sum(x.extract_s for x in est.models)),
                  _seconds(sum(x.score_s for x in est.models)), _bytes(est.peak_bytes),
                  style="bold", end_section=True)
    return table
