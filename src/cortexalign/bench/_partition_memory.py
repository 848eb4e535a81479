"""``max_feature_memory_gb`` for partition jobs: estimate a partition's memory before loading it.

A partition's sets are the method's input, held whole in memory (streaming a ridge over cached
features is not done), so a budget cannot be met by streaming as the per-layer jobs do. Instead
the bytes a job needs are estimated before any set is loaded::

    estimate = s x (d_1 + ... + d_m) x 8          the sets in float64 (the methods' precision)
             + working_bytes(s, [d_1, ..., d_m])  the method's largest temporaries
                                                  (``PartitionMethod.working_bytes``)

with each d_i measured on one probe image by the runner's own probes (``_pooled_bytes`` for
pooled activations, ``_map_bytes`` for attention / conv maps: one forward pass per layer, not
cached). A partition over the budget fails with an ``InputError`` that names it, the estimate,
the budget and the fixes: ``check_partition_memory`` when a run is validated (before anything
is written), and ``over_budget`` for each job before its sets are read (``run_partitions``).
"""

from __future__ import annotations

from cortexalign.bench._config import ExperimentConfig
from cortexalign.bench._partition_spec import PARTITION_METHODS, PartitionSpec, set_model_index
from cortexalign.errors import CortexAlignError, InputError
from cortexalign.models import load_model

__all__ = ["set_widths", "partition_bytes", "over_budget", "check_partition_memory"]

#: (model label, layer) -> d, the width of that set's flattened (s, d) features.
Widths = dict[tuple[str, str], int]


def set_widths(config: ExperimentConfig, sets: dict[str, list[str]], stimuli,
               device) -> Widths:
    """The width d of each (model label -> layers) set, measured on one probe image.

    Each model is loaded once on ``device``; a model that does not load or a layer it lacks is
    left out (its jobs fail on their own error when they read the set).
    """
    from cortexalign.bench._run import _map_bytes, _pooled_bytes  # the runner's probes

    widths: Widths = {}
    for spec in config.models:
        if spec.display not in sets:
            continue
        try:
            adapter = load_model(spec.name, pretrained=spec.pretrained, weights=spec.weights,
                                 untrained=spec.untrained, seed=spec.seed, device=device,
                                 **spec.kwargs)
        except CortexAlignError:
            continue
        for layer in sets[spec.display]:
            try:
                n_bytes = (_pooled_bytes(adapter, stimuli, [layer], spec.pooling)
                           if spec.features == "activations"
                           else _map_bytes(adapter, stimuli, [layer], spec))
            except CortexAlignError:
                continue
            widths[(spec.display, layer)] = n_bytes // (4 * len(stimuli))  # float32 probes
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
