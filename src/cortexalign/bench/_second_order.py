"""Second-order analyses of a run: alignment patterns and benchmark discriminability.

Both need every layer's features, not just the stored scores: they read them from the run's
feature cache through the same keys as the per-layer jobs (``_partitions._model_sets``: a layer
the jobs extracted is read, not computed again; a missing one is extracted once), then call
``cortexalign.analyses`` and write the ``second_order`` table (``results.SecondOrderRecord``).

``run_second_order`` runs the config's ``patterns:`` and ``discriminability:`` at the end of
``run_experiment``; ``grid_discriminability`` does the latter for any finished results directory
(the config is read from the store), for ``cortexalign results OUT --discriminability``.
Discriminability covers every metric entry of a config (``analyses.bootstrap_model_scores``:
rsa and CKA exactly, encoding by resampling held-out predictions, others with few generic
resamples); an entry that cannot be resampled (map measures, a responses measure on an RDM
target, a generic run above ``max_seconds``) is listed as skipped with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import xarray as xr
import yaml

from cortexalign.analyses import (
    alignment_patterns,
    benchmark_discriminability,
    discriminability_records,
    pattern_records,
)
from cortexalign.bench._config import ExperimentConfig, NeuralSpec, load_config
from cortexalign.bench._executors import RunContext
from cortexalign.bench._partitions import _model_sets
from cortexalign.bench._second_order_spec import DiscriminabilitySpec, PatternSpec
from cortexalign.bench._targets import load_targets
from cortexalign.errors import CortexAlignError, InputError
from cortexalign.features import FeatureCache
from cortexalign.results import ResultsStore
from cortexalign.stimuli import load_stimuli

__all__ = ["run_second_order", "grid_discriminability", "GridDiscriminability"]

log = logging.getLogger("cortexalign.bench")


@dataclass(frozen=True)
class GridDiscriminability:
    """One (target, metric entry, rule) of a grid: the samples and their discriminability, or
    why it was skipped (``skipped``: the reason; ``result`` is then None)."""

    target: str
    metric: str
    rule: str
    result: tuple | None
    skipped: str = ""


def _features(cfg: ExperimentConfig, labels: list[str] | None, stimuli, cache, device,
              progress: bool) -> tuple[dict[str, dict], dict]:
    """Model label -> layer -> (s, d) features of the activations models (all their layers)."""
    out, errors = {}, {}
    for spec in cfg.models:
        if spec.features != "activations" or (labels is not None and spec.display not in labels):
            continue
        if spec.layers == "all":
            from cortexalign.models import load_model

            layers = load_model(spec.name, pretrained=spec.pretrained, weights=spec.weights,
                                untrained=spec.untrained, seed=spec.seed, device=device,
                                **spec.kwargs).layers()
        else:
            layers = list(spec.layers)
        _model_sets(cfg, spec, layers, stimuli, cache, device, progress, out, errors)
    models: dict[str, dict] = {}
    for (label, layer), feats in out.items():
        models.setdefault(label, {})[layer] = feats.values_sd
    return models, errors


def _metric_label(options: dict) -> str:
    """``rsa:<rdm_method>:<compare>``: two RSA entries of a config differ in one of them."""
    return f"rsa:{options.get('rdm_method', 'correlation')}:{options.get('compare', 'spearman')}"


def _rsa_options(options: dict) -> dict:
    keep = {"rdm_method": options.get("rdm_method", "correlation"),
            "compare": options.get("compare", "spearman"),
            "neural_rdm_method": options.get("neural_rdm_method")}
    ceiling_by = options.get("ceiling_by", "subject")
    keep["subject_by"] = ceiling_by if ceiling_by is not None else "__each_rdm__"
    return keep


def _entry_label(m, cfg: ExperimentConfig) -> str:
    """``rsa:<rdm_method>:<compare>`` for rsa; else the metric name (with ``#k``, its place
    among the config's entries of that name, when there are several)."""
    if m.name == "rsa":
        return _metric_label(m.options)
    same = [e for e in cfg.metrics if e.name == m.name]
    return m.name if len(same) == 1 else f"{m.name}#{same.index(m) + 1}"


def _skip_reason(m, data) -> str:
    if m.name.startswith("map_"):
        return ("map measures score maps models (features: maps); discriminability resamples "
                "the activations models' layers")
    if m.name != "rsa" and not isinstance(data, xr.DataArray):
        return f"{m.name} needs responses; this target holds RDMs"
    return ""


def discriminability_of(cfg: ExperimentConfig, spec: DiscriminabilitySpec, targets, models,
                        seed: int) -> list[GridDiscriminability]:
    """Every (target group, metric entry, rule) of the grid: rsa and CKA exactly (pair
    weights), encoding measures by resampling their held-out predictions, any other measure
    with ``metrics.score`` on resampled stimuli (``spec.generic_n_bootstrap`` resamples); an
    entry that cannot be resampled is listed as skipped with the reason."""
    out = []
    for groups in targets.values():
        for group in groups:
            for m in cfg.metrics:
                label = _entry_label(m, cfg)
                reason = _skip_reason(m, group.data)
                if not reason:
                    try:
                        opts = (_rsa_options(m.options) if m.name == "rsa" else
                                {"metric": m.name, "metric_options": dict(m.options),
                                 "generic_n_bootstrap": spec.generic_n_bootstrap,
                                 "max_seconds": spec.max_seconds})
                        res = benchmark_discriminability(
                            models, group.data, rules=tuple(spec.rules), alpha=spec.alpha,
                            n_bootstrap=spec.n_bootstrap, n_folds=spec.n_folds,
                            bootstrap_subjects=spec.bootstrap_subjects, seed=seed, **opts)
                    except CortexAlignError as err:
                        reason = str(err)
                if reason:
                    log.warning("discriminability of %s on %s skipped: %s", label, group.label,
                                reason)
                    out += [GridDiscriminability(group.label, label, rule, None, reason)
                            for rule in spec.rules]
                    continue
                out += [GridDiscriminability(group.label, label, rule, pair)
                        for rule, pair in res.items()]
    return out


def _store_discriminability(store: ResultsStore, run_id: str,
                            results: list[GridDiscriminability]) -> None:
    rows = []
    for r in results:
        if r.result is not None:
            rows += discriminability_records(*r.result, target=r.target, metric=r.metric)
    store.record_second_order(run_id, rows)


def _pattern_target(cfg: ExperimentConfig, spec: PatternSpec, stimuli) -> xr.DataArray:
    entry = next((n for n in cfg.neural if n.display == spec.target), None)
    if entry is None:
        raise InputError("patterns.target", f"a neural entry's label, one of "
                         f"{[n.display for n in cfg.neural]}", repr(spec.target),
                         "name the multi-region responses target")
    whole = NeuralSpec.model_validate({**entry.model_dump(), "split_by": []})
    data = load_targets(whole, stimuli)[0].data
    if not isinstance(data, xr.DataArray):
        raise InputError("patterns.target", "responses with region and subject coordinates",
                         f"{spec.target!r} holds RDMs", "point patterns at a responses target")
    return data


def _run_patterns(ctx: RunContext, spec: PatternSpec, all_models: dict[str, dict]) -> list:
    data = _pattern_target(ctx.config, spec, ctx.stimuli)
    models = {k: v for k, v in all_models.items() if spec.models is None or k in spec.models}
    if not models:
        raise InputError("patterns.models", f"labels of activations models among "
                         f"{list(all_models)}", repr(spec.models), "name models of the config")
    rows = []
    for k, (label, layers) in enumerate(models.items()):
        res = alignment_patterns(
            layers, data, assign=spec.assign, rdm_method=spec.rdm_method, compare=spec.compare,
            similarity=spec.similarity, null=spec.null, n_permutations=spec.n_permutations,
            n_bootstrap=spec.n_bootstrap, bootstrap_subjects=spec.bootstrap_subjects,
            seed=ctx.config.seed, subject_by=spec.subject_by, region_by=spec.region_by,
            min_neuroids=spec.min_neuroids)
        rows += pattern_records(res, model=label, target=spec.target,
                                metric=f"rsa:{spec.rdm_method}:{spec.compare}",
                                with_brain=k == 0)
    return rows


def run_second_order(ctx: RunContext) -> None:
    """The config's ``patterns:`` and ``discriminability:``, after the per-layer jobs, on every
    activations model's layers (read once from the cache); a failure is recorded in the run
    summary (the run's scores stand)."""
    cfg = ctx.config
    if not cfg.patterns and cfg.discriminability is None:
        return
    models, errors = _features(cfg, None, ctx.stimuli, ctx.cache, ctx.device, ctx.progress)
    for (label, layer), msg in errors.items():
        ctx.summary.failures.append({"job": f"second-order {label}/{layer}", "error": msg})
    for spec in cfg.patterns:
        try:
            ctx.store.record_second_order(ctx.run_id, _run_patterns(ctx, spec, models))
        except CortexAlignError as err:
            ctx.summary.failures.append({"job": f"patterns {spec.target}", "error": str(err)})
    if cfg.discriminability is not None:
        try:
            _store_discriminability(ctx.store, ctx.run_id, discriminability_of(
                cfg, cfg.discriminability, ctx.targets, models, cfg.seed))
        except CortexAlignError as err:
            ctx.summary.failures.append({"job": "discriminability", "error": str(err)})


def grid_discriminability(out: str | Path, spec: DiscriminabilitySpec | None = None, *,
                          seed: int | None = None, device: str = "cpu",
                          progress: bool = False) -> list[GridDiscriminability]:
    """Discriminability of a finished results directory: the newest run's config and feature
    cache (features a run extracted are read, not recomputed), every (target, metric entry, rule).
    The rows are written to the store under that run, replacing earlier ones."""
    from cortexalign.bench._status import results_path

    path = results_path(out)
    runs = ResultsStore(path, read_only=True).frame("runs").sort_values("started")
    if runs.empty:
        raise InputError("out", "a results directory with a finished run", str(out),
                         "run `cortexalign run CONFIG --out OUT` first")
    run = runs.iloc[-1]
    cfg = load_config(yaml.safe_load(str(run["config_yaml"])))
    spec = spec or cfg.discriminability or DiscriminabilitySpec()
    stimuli = load_stimuli(cfg.stimuli.source, **cfg.stimuli.options)
    targets = {n.display: load_targets(n, stimuli) for n in cfg.neural}
    cache = (FeatureCache(cfg.cache_dir, storage_options=cfg.cache_storage_options)
             if cfg.cache_dir else FeatureCache(path.parent / "cache"))
    models, errors = _features(cfg, None, stimuli, cache, device, progress)
    for (label, layer), msg in errors.items():
        log.warning("discriminability: %s/%s left out: %s", label, layer, msg)
    results = discriminability_of(cfg, spec, targets, models, cfg.seed if seed is None else seed)
    _store_discriminability(ResultsStore(path), str(run["run_id"]), results)
    return results
