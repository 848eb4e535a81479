"""``max_feature_memory_gb`` for partition jobs: estimate a partition's memory before loading it.

A partition's sets are the method's input, held whole in memory (streaming a ridge over cached
features is not done), so a budget cannot be met by streaming as the per-layer jobs do. Instead
the bytes a job needs are estimated before any set is loaded::

    estimate = s x (d_1 + ... + d_m) x 8          the sets in float64 (the methods' precision)
             + working_bytes(s, [d_1, ..., d_m])  the method's largest temporaries
                                                  (``PartitionMethod.working_bytes``)

with each d_i measured on one probe image, the way the runner's own size probes do
(``features.extract`` of the model's feature kind, as ``features.plan_extraction`` probes): one
forward pass per model for all its layers, not cached. A partition over the budget fails with an ``InputError`` that names it, the estimate,
the budget and the fixes: ``check_partition_memory`` when a run is validated (before anything
is written), and ``over_budget`` for each job before its sets are read (``_partitions.PartitionsKind``).
"""

from __future__ import annotations

import contextlib

from cortexalign.bench._config import ExperimentConfig
from cortexalign.bench._partition_spec import PARTITION_METHODS, PartitionSpec, set_model_index
from cortexalign.errors import CortexAlignError, InputError
from cortexalign.features import extract
from cortexalign.models import load_model

__all__ = ["set_widths", "partition_bytes", "over_budget", "check_partition_memory"]

#: (model label, layer) -> d, the width of that set's flattened (s, d) features.
Widths = dict[tuple[str, str], int]


def _probe_widths(adapter, probe, layers: list[str], spec) -> dict[str, int]:
    """Elements per stimulus of each layer's features (or map) on the one-image ``probe``."""
    feats = extract(adapter, probe, layers, spec.features, spec.kind_options, batch_size=1,
                    progress=False)
    return {layer: int(f.values[0].size) for layer, f in feats.items()}


def set_widths(config: ExperimentConfig, sets: dict[str, list[str]], stimuli,
               device) -> Widths:
    """The width d of each (model label -> layers) set, measured on one probe image.

    Each model is loaded once on ``device`` and probed once for all its layers; if that fails,
    layer by layer, so that a model that does not load or a layer it lacks is only left out
    (its jobs fail on their own error when they read the set).
    """
    probe = stimuli.subset(stimuli.ids[:1], name=f"{stimuli.name}[probe]")
    widths: Widths = {}
    for spec in config.models:
        if spec.display not in sets:
            continue
        try:
            adapter = load_model(spec.name, pretrained=spec.pretrained, weights=spec.weights,
                                 untrained=spec.untrained, seed=spec.seed, device=device,
                             preprocess=spec.preprocess or None,
                                 **spec.kwargs)
        except CortexAlignError:
            continue
        layers = sets[spec.display]
        try:
            found = _probe_widths(adapter, probe, layers, spec)
        except CortexAlignError:
            found = {}
            for layer in layers:
                with contextlib.suppress(CortexAlignError):
                    found.update(_probe_widths(adapter, probe, [layer], spec))
        widths.update({(spec.display, layer): d for layer, d in found.items()})
    return widths


def partition_bytes(method: str, n_stimuli: int, widths_m: list[int]) -> int:
    """Estimated bytes of one partition job: its m sets in float64 plus the method's working
    memory (see the module docstring)."""
    working = PARTITION_METHODS[method].working_bytes
    return n_stimuli * sum(widths_m) * 8 + (working(n_stimuli, widths_m) if working else 0)


def over_budget(config: ExperimentConfig, spec: PartitionSpec, widths: Widths, n_stimuli: int,
                where: str) -> InputError | None:
    """The ``InputError`` for partition ``spec`` if its estimate exceeds
    ``max_feature_memory_gb`` (None: within budget, no budget, or a set's width unknown)."""
    budget = config.max_feature_memory_gb
    keys = {label: (config.models[set_model_index(config.models, ref.model, label)].display,
                    ref.layer) for label, ref in spec.sets.items()}
    if budget is None or any(k not in widths for k in keys.values()):
        return None
    estimate = partition_bytes(spec.method, n_stimuli, [widths[k] for k in keys.values()])
    if estimate <= budget * 1e9:
        return None
    sizes = ", ".join(f"{label} {n_stimuli} x {widths[k]}" for label, k in keys.items())
    return InputError(
        where, f"sets that fit max_feature_memory_gb ({budget:g} GB): a partition holds its sets "
        "whole in float64 with the method's working memory (no streaming)",
        f"an estimated {estimate / 1e9:.3g} GB ({sizes} features)",
        "use a smaller pooling for those models (e.g. grid2 or mean), fewer or smaller sets, "
        f"or raise max_feature_memory_gb above {estimate / 1e9:.3g}")


def check_partition_memory(config: ExperimentConfig, stimuli, device) -> Widths:
    """Raise ``over_budget``'s error for the first partition over ``max_feature_memory_gb``,
    before any work (one probe image per set); return the widths measured ({} without a
    budget or partitions)."""
    if config.max_feature_memory_gb is None or not config.partitions:
        return {}
    sets: dict[str, list[str]] = {}
    for spec in config.partitions:
        for label, ref in spec.sets.items():
            model = config.models[set_model_index(config.models, ref.model, label)]
            layers = sets.setdefault(model.display, [])
            if ref.layer not in layers:
                layers.append(ref.layer)
    widths = set_widths(config, sets, stimuli, device)
    for i, spec in enumerate(config.partitions):
        err = over_budget(config, spec, widths, len(stimuli), f"partitions[{i}] ({spec.name})")
        if err is not None:
            raise err
    return widths
