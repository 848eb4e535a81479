"""The whole request, checked in one pass before anything is written.

:func:`validate_request` checks every entry of a validated config against what it names — each
model (its name, constructor options and layers, on the architecture built on PyTorch's meta
device: no weights, no download), pooling, weights file, metric and its options, the stimuli and
each neural target (paths, and that their stimulus ids match), the metrics against the targets,
the folds against the stimulus count, the partitions and the model cards' COCO set — and reports every problem at once in
one :class:`~cortexalign.bench.ConfigError`. ``cortexalign run`` and ``cortexalign config
check`` use it; a run creates its output directory only after it passes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cortexalign.bench._config import CONFIG_HELP, ExperimentConfig
from cortexalign.errors import CortexAlignError, InputError, Problems, UnknownNameError

__all__ = ["validate_request", "check_model_entry", "check_metric_targets", "check_metric_folds",
           "check_metric_stimuli", "check_resample_counts"]


def _try(problems: Problems, where: str, check: Callable[[], Any]) -> Any:
    return problems.check(where, check)


def check_model_entry(spec, problems: Problems, where: str) -> None:
    """Name, options, weights file, pooling and layers of one ``models`` entry (problems are
    appended). The layers are checked on the architecture alone (``load_architecture``)."""
    from cortexalign.features import POOLINGS
    from cortexalign.fetch import is_weights_entry, weights_file
    from cortexalign.models import MODELS, load_architecture, timm_hub_overlay

    if _try(problems, f"{where}.name", lambda: MODELS.resolve(spec.name)) is None:
        return
    weights = weights_file(spec.weights)  # a weights entry ('sam-vit-b'): its fetched file
    if weights is not None and not Path(weights).expanduser().is_file():
        _try(problems, where, _raiser(InputError(
            "weights", "a checkpoint file or a weights entry of `cortexalign fetch --list`",
            f"{spec.weights!r}, which does not exist", f"run `cortexalign fetch {spec.weights}`"
            if is_weights_entry(spec.weights) else "check the path")))
    if spec.features == "activations" and spec.pooling not in POOLINGS:
        _try(problems, f"{where}.pooling", _raiser(UnknownNameError("pooling", spec.pooling,
                                                                    POOLINGS)))
    try:  # unknown timm / torchvision name, bad constructor option: a problem
        arch = _try(problems, where, lambda: load_architecture(spec.name, **spec.kwargs))
    except Exception:  # noqa: BLE001 - a builder the meta device cannot run: the run will tell
        return
    if arch is None:
        return
    if spec.name.startswith("timm:") and spec.weights is None and not spec.untrained and \
            spec.pretrained is not False:  # hub weights: cached or reachable, or fail at once
        _try(problems, where, lambda: timm_hub_overlay(spec.name.split(":", 1)[1]))
    if spec.features == "activations" and spec.layers != "all":
        for layer in spec.layers:
            _try(problems, f"{where}.layers", lambda layer=layer: arch.check_layers([layer]))


def _raiser(err: CortexAlignError) -> Callable[[], None]:
    def check() -> None:
        raise err
    return check


def check_metric_targets(config: ExperimentConfig, targets: dict) -> None:
    """Each metric against the targets: map metrics need a map model; RDM-only or
    responses-only metrics need targets of that kind."""
    from cortexalign.bench._scoring import uses_maps
    from cortexalign.metrics import METRICS
    from cortexalign.neural import RDMSet

    for spec in config.metrics:
        if uses_maps(spec.name) and all(m.features == "activations" for m in config.models):
            raise InputError(f"metrics ({spec.name})", "a model with features: attention or "
                             "conv_map (map metrics compare maps)", "only activations models",
                             "add features: attention / conv_map to a model, or drop the metric")
        kind = METRICS.entry(spec.name).meta.get("target", "any")
        for label, groups in targets.items():
            is_rdm = isinstance(groups[0].data, RDMSet)
            if (kind == "responses" and is_rdm) or (kind == "rdm" and not is_rdm):
                have = "RDMs" if is_rdm else "responses"
                raise InputError(f"metrics ({spec.name})", f"a target with {kind}",
                                 f"target {label!r} holds {have}",
                                 "use 'rsa' for RDM targets, or give responses for this metric")


def check_metric_stimuli(config: ExperimentConfig, n_stimuli: int) -> None:
    """Metrics that need more stimuli than the set has (``min_stimuli`` metadata: RSA and CKA
    need 4, ``rdm.MIN_STIMULI`` says why)."""
    from cortexalign.metrics import METRICS

    for i, spec in enumerate(config.metrics):
        need = METRICS.entry(spec.name).meta.get("min_stimuli")
        if need is not None and n_stimuli < need[0]:
            raise InputError(f"metrics[{i}] ({spec.name})", f"at least {need[0]} stimuli: "
                             f"{need[1]}", f"a stimulus set of {n_stimuli}",
                             "score on more stimuli (a meaningful RDM or Gram comparison "
                             "needs dozens)")


def check_resample_counts(config: ExperimentConfig, n_stimuli: int, k: int = 1) -> None:
    """``n_bootstrap`` and ``n_permutations`` within ``stats.MAX_RESAMPLES`` and this machine's
    memory (``stats._budget``: the refusal states the memory and time they would take for ``k``
    target RDMs per job)."""
    from cortexalign.stats import check_resamples

    for name in ("n_bootstrap", "n_permutations"):
        if getattr(config, name):
            check_resamples(getattr(config, name), n_stimuli, parameter=name, k=k)


def check_metric_folds(config: ExperimentConfig, n_stimuli: int) -> None:
    """Folds a metric cannot make from the stimuli: ``n_folds`` above their count, or
    ``inner_folds`` above the smallest outer fold's training stimuli (the bounds the encoding
    metrics check when they run, here before any job)."""
    from cortexalign.metrics import METRICS

    for i, spec in enumerate(config.metrics):
        params = inspect.signature(METRICS.get(spec.name)).parameters
        where = f"metrics[{i}] ({spec.name}).options"
        n_folds = spec.options.get("n_folds", params["n_folds"].default) if "n_folds" in params \
            else None
        if isinstance(n_folds, int) and n_folds > n_stimuli:
            raise InputError(f"{where}.n_folds", f"an int in 2..{n_stimuli} (the stimuli)",
                             repr(n_folds), "lower n_folds")
        if "inner_folds" in params and isinstance(n_folds, int) and n_folds >= 2:
            inner = spec.options.get("inner_folds", params["inner_folds"].default)
            n_train = n_stimuli - -(-n_stimuli // n_folds)  # the smallest training split
            if isinstance(inner, int) and inner > n_train:
                raise InputError(f"{where}.inner_folds", f"an int in 2..{n_train} (the training "
                                 f"stimuli of {n_folds} outer folds over {n_stimuli})",
                                 repr(inner), "lower inner_folds or n_folds")


def validate_request(config: ExperimentConfig, source: str = "config") -> tuple[Any, dict]:
    """Check everything ``config`` names; return the loaded stimuli and neural targets.

    Parameters
    ----------
    config : a validated config (``load_config``).
    source : how the problems' heading names the config (its file).

    Returns
    -------
    (StimulusSet, {target label: [Target, ...]}), ready for the run.

    Raises
    ------
    RequestError
        Listing every problem found (models, layers, pooling, weights, metrics and options,
        stimuli, neural targets and their stimulus ids, folds, partitions), not just the first.
    CortexAlignError
        The error itself (``InputError``, ``UnknownNameError``...) when it is the only one, its
        message led by the config entry.
    """
    from cortexalign.bench._partitions import check_partition_targets
    from cortexalign.bench._scoring import check_job_options
    from cortexalign.bench._targets import load_targets
    from cortexalign.metrics import METRICS
    from cortexalign.stimuli import load_stimuli

    problems = Problems()
    for i, spec in enumerate(config.models):
        check_model_entry(spec, problems, f"models[{i}] ({spec.name})")
    metrics_ok = True
    for i, spec in enumerate(config.metrics):
        where = f"metrics[{i}] ({spec.name})"
        if _try(problems, f"{where}.name", lambda spec=spec: METRICS.get(spec.name)) is None:
            metrics_ok = False
            continue
        n = len(problems)  # score()'s InputError (the metric's own option checks)
        _try(problems, "", lambda spec=spec, where=where: check_job_options(
            spec.name, spec.options, entry=where))
        metrics_ok &= len(problems) == n
    if config.cache_dir is not None and Path(config.cache_dir).exists() and \
            not Path(config.cache_dir).is_dir():
        _try(problems, "", _raiser(InputError("cache_dir", "a folder", f"the file "
                                              f"{config.cache_dir!r}", "choose another cache_dir")))
    stimuli = _try(problems, "stimuli.source", lambda: load_stimuli(config.stimuli.source,
                                                                    **config.stimuli.options))
    targets: dict = {}
    if stimuli is not None:
        for i, spec in enumerate(config.neural):
            got = _try(problems, f"neural[{i}] ({spec.display})",
                       lambda spec=spec: load_targets(spec, stimuli))
            if got is not None:
                targets[spec.display] = got
        if metrics_ok and len(targets) == len(config.neural):
            _try(problems, "", lambda: check_metric_targets(config, targets))
            _try(problems, "", lambda: check_metric_stimuli(config, len(stimuli)))
            _try(problems, "", lambda: check_metric_folds(config, len(stimuli)))
            _try(problems, "", lambda: check_partition_targets(config, targets, len(stimuli)))
        k = max([getattr(g.data, "n_rdms", 1) for groups in targets.values() for g in groups],
                default=1)
        _try(problems, "", lambda: check_resample_counts(config, len(stimuli), k))
    if config.segmentation is not None:  # the COCO set of the model cards
        from cortexalign.bench._cards import check_segmentation

        _try(problems, "segmentation", lambda: check_segmentation(config))
    problems.raise_if_any(source, CONFIG_HELP)
    return stimuli, targets
