"""Second-order analyses of a run: alignment patterns and benchmark discriminability.

Both need every layer's features, not just the stored scores: they read them from the run's
feature cache through the same keys as the per-layer jobs (``_partitions._model_sets``: a layer
the jobs extracted is read, not computed again; a missing one is extracted once), then call
``cortexalign.analyses`` and write the ``second_order`` table (``results.SecondOrderRecord``).

The ``second_order`` analysis kind (:class:`SecondOrderKind`) runs the config's ``patterns:``
and ``discriminability:`` at the end of ``run_experiment``, one keyed job each (a rerun of the
same config skips them; the report shows the newest run's rows of each analysis).
``grid_discriminability`` does the latter for any finished results directory (the config is
read from the store), for ``cortexalign results OUT --discriminability``.
Discriminability covers every metric entry of a config (``analyses.bootstrap_model_scores``:
rsa and CKA exactly, encoding by resampling held-out predictions, map measures by
re-weighting neuron maps on each resample, others with few generic resamples), each on the
models it scores in the run: a map metric on the maps models (``features: attention`` or
``conv_map``, their (s, gh, gw) maps and ``pad_square``), any other on every model (maps
flattened, as their jobs flatten them). An entry that cannot be resampled (a responses measure
on an RDM target, fewer than two models for it, a generic run above ``max_seconds``) is listed
as skipped with the reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

from cortexalign.analyses import (
    alignment_patterns,
    benchmark_discriminability,
    discriminability_records,
    pattern_records,
)
from cortexalign.bench._analysis import ANALYSES, AnalysisKind, Plan, Unit
from cortexalign.bench._config import ExperimentConfig, NeuralSpec
from cortexalign.bench._config_load import load_config
from cortexalign.bench._context import RunContext
from cortexalign.bench._jobs import model_payload, target_payload
from cortexalign.bench._partitions import _model_sets
from cortexalign.bench._scoring import uses_maps
from cortexalign.bench._second_order_spec import DiscriminabilitySpec, PatternSpec
from cortexalign.bench._targets import load_targets
from cortexalign.errors import CortexAlignError, InputError
from cortexalign.features import FeatureCache, kind_layers
from cortexalign.results import ResultsStore
from cortexalign.stimuli import load_stimuli

__all__ = ["SecondOrderKind", "SecondOrderJob", "second_order_key", "grid_discriminability",
           "GridDiscriminability", "SECOND_ORDER_JOB_VERSION"]

SECOND_ORDER_JOB_VERSION = 1

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


@dataclass(frozen=True)
class _GridModels:
    """Every model's layers read from the run's cache: ``feats`` label -> layer -> (s, d)
    activations or (s, gh, gw) maps; ``maps``: the labels of maps models (``features:
    attention``/``conv_map``); ``pad_square``: label -> the model pads images to a square."""

    feats: dict[str, dict[str, np.ndarray]]
    maps: frozenset[str]
    pad_square: dict[str, bool]

    def activations(self) -> dict[str, dict[str, np.ndarray]]:
        """The activations models' layers (alignment patterns use these)."""
        return {k: v for k, v in self.feats.items() if k not in self.maps}

    def for_metric(self, name: str) -> dict[str, dict[str, np.ndarray]]:
        """The models a metric scores in the run: maps models' (s, gh, gw) maps for a map
        metric; for any other, every model, maps flattened to (s, gh * gw) as its jobs do."""
        if uses_maps(name):
            return {k: v for k, v in self.feats.items() if k in self.maps}
        return {k: {layer: x.reshape(len(x), -1) for layer, x in v.items()}
                for k, v in self.feats.items()}


def _features(cfg: ExperimentConfig, labels: list[str] | None, stimuli, cache, device,
              progress: bool) -> tuple[_GridModels, dict]:
    """Every model's layers (all of them; attention blocks or spatial layers for maps models)
    from the cache (extracted once where missing), and the errors per (label, layer)."""
    out, errors = {}, {}
    for spec in cfg.models:
        if labels is not None and spec.display not in labels:
            continue
        if spec.layers == "all" or spec.features != "activations":
            from cortexalign.models import load_model

            adapter = load_model(spec.name, pretrained=spec.pretrained, weights=spec.weights,
                                 untrained=spec.untrained, seed=spec.seed, device=device,
                                 preprocess=spec.preprocess or None, **spec.kwargs)
            layers = (adapter.layers() if spec.features == "activations" else
                      kind_layers(adapter, spec.features, spec.layers, spec.feature_options,
                                  stimuli))
        else:
            layers = list(spec.layers)
        _model_sets(cfg, spec, layers, stimuli, cache, device, progress, out, errors)
    feats: dict[str, dict] = {}
    maps, pads = set(), {}
    for (label, layer), f in out.items():
        feats.setdefault(label, {})[layer] = (f.values_sd.reshape(-1, *f.shape) if f.shape
                                              else f.values_sd)
        pads[label] = f.pad_square
        if f.shape:
            maps.add(label)
    return _GridModels(feats, frozenset(maps), pads), errors


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
    if m.name != "rsa" and not isinstance(data, xr.DataArray):
        return f"{m.name} needs responses; this target holds RDMs"
    return ""


def _options(m, spec: DiscriminabilitySpec, models: _GridModels, stimuli) -> dict:
    if m.name == "rsa":
        return _rsa_options(m.options)
    options = dict(m.options)
    if uses_maps(m.name):
        options.update(stimuli=stimuli, pad_square=dict(models.pad_square))
    return {"metric": m.name, "metric_options": options,
            "generic_n_bootstrap": spec.generic_n_bootstrap, "max_seconds": spec.max_seconds}


def discriminability_of(cfg: ExperimentConfig, spec: DiscriminabilitySpec, targets,
                        models: _GridModels, seed: int, stimuli) -> list[GridDiscriminability]:
    """Every (target group, metric entry, rule) of the grid, on the models the entry scores in
    the run (map metrics: the maps models; others: every model, maps flattened): rsa and CKA
    exactly (pair weights), encoding measures by resampling their held-out predictions, map
    measures by re-weighting the neuron maps on each resample, any other measure
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
                        res = benchmark_discriminability(
                            models.for_metric(m.name), group.data, rules=tuple(spec.rules),
                            alpha=spec.alpha,
                            n_bootstrap=spec.n_bootstrap, n_folds=spec.n_folds,
                            bootstrap_subjects=spec.bootstrap_subjects, seed=seed,
                            **_options(m, spec, models, stimuli))
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


def _discriminability_rows(results: list[GridDiscriminability]) -> list:
    rows = []
    for r in results:
        if r.result is not None:
            rows += discriminability_records(*r.result, target=r.target, metric=r.metric)
    return rows


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


def _run_patterns(ctx: RunContext, spec: PatternSpec, all_models: _GridModels) -> list:
    data = _pattern_target(ctx.config, spec, ctx.stimuli)
    all_models = all_models.activations()
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


@dataclass(frozen=True)
class SecondOrderJob:
    """One second-order analysis of a config: a ``patterns:`` entry, or ``discriminability``.

    Attributes
    ----------
    key : the job key (everything that determines the rows, hashed). analysis : ``patterns`` or
    ``discriminability``. spec : its config entry.
    """

    key: str
    analysis: str
    spec: PatternSpec | DiscriminabilitySpec

    @property
    def label(self) -> str:
        """What failures name it by (``patterns <target>``, ``discriminability``)."""
        return (f"patterns {self.spec.target}" if self.analysis == "patterns"
                else "discriminability")


def second_order_key(cfg: ExperimentConfig, analysis: str, spec, stimuli_hash: str) -> str:
    """A stable key: the analysis, its entry, every activations model (as a score job's key
    has it, with its layers), the stimuli, the targets, the metrics and the seed."""
    payload = {
        "v": SECOND_ORDER_JOB_VERSION, "kind": "second_order", "analysis": analysis,
        "spec": spec.model_dump(mode="json"),
        "models": [{"model": model_payload(m), "label": m.display, "layers": m.layers}
                   for m in cfg.models if m.features == "activations"],
        "stimuli": stimuli_hash, "targets": [target_payload(n) for n in cfg.neural],
        "metrics": [m.model_dump(mode="json") for m in cfg.metrics], "seed": cfg.seed,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


class SecondOrderKind(AnalysisKind):
    """The config's ``patterns:`` and ``discriminability:``: one unit in the driver, after the
    per-layer jobs, on every activations model's layers (read once from the cache)."""

    name = "second_order"
    placement = "driver"

    def units(self, ctx: RunContext) -> list[Unit]:
        """One unit when the config has patterns or discriminability."""
        cfg = ctx.config
        if not cfg.patterns and cfg.discriminability is None:
            return []
        return [Unit("second_order", "second-order analyses")]

    def plan(self, ctx: RunContext, unit: Unit) -> Plan:
        """A job per ``patterns:`` entry, then one for ``discriminability:``."""
        cfg, h = ctx.config, ctx.stimuli.content_hash
        specs = [("patterns", spec) for spec in cfg.patterns]
        if cfg.discriminability is not None:
            specs.append(("discriminability", cfg.discriminability))
        return Plan([SecondOrderJob(second_order_key(cfg, a, spec, h), a, spec)
                     for a, spec in specs])

    def prepare(self, ctx: RunContext, plan: Plan, todo: list) -> dict[str, dict]:
        """Every activations model's layers, read once (failures stored as notes)."""
        models, errors = _features(ctx.config, None, ctx.stimuli, ctx.cache, ctx.device,
                                   ctx.progress)
        failed = [(f"second-order {label}/{layer}", msg) for (label, layer), msg in errors.items()]
        ctx.summary.failures += [{"job": job, "error": msg} for job, msg in failed]
        ctx.store.add_notes(ctx.run_id, "failure", failed)  # the report lists them
        return models

    def execute(self, ctx: RunContext, job: SecondOrderJob, models: dict) -> list:
        """The ``second_order`` rows of one analysis."""
        if job.analysis == "patterns":
            return _run_patterns(ctx, job.spec, models)
        cfg = ctx.config
        return _discriminability_rows(discriminability_of(cfg, job.spec, ctx.targets, models,
                                                          cfg.seed, ctx.stimuli))

    def write(self, ctx: RunContext, job: SecondOrderJob, rows: list) -> None:
        """``record_second_order`` with the job's finished mark, in one transaction."""
        ctx.store.record_second_order(ctx.run_id, rows, job_key=job.key)


ANALYSES.add("second_order", SecondOrderKind(), description="alignment patterns and "
             "benchmark discriminability over every activations model's layers")


def load_run(out: str | Path) -> tuple:
    """The newest run of a results directory: (results path, its runs row, config, stimuli,
    targets by label, feature cache), for analyses that read the run's features again."""
    from cortexalign.bench._status import results_path

    path = results_path(out)
    runs = ResultsStore(path, read_only=True).frame("runs").sort_values("started")
    if runs.empty:
        raise InputError("out", "a results directory with a finished run", str(out),
                         "run `cortexalign run CONFIG --out OUT` first")
    run = runs.iloc[-1]
    cfg = load_config(yaml.safe_load(str(run["config_yaml"])))
    stimuli = load_stimuli(cfg.stimuli.source, **cfg.stimuli.options)
    targets = {n.display: load_targets(n, stimuli) for n in cfg.neural}
    cache = (FeatureCache(cfg.cache_dir, storage_options=cfg.cache_storage_options)
             if cfg.cache_dir else FeatureCache(path.parent / "cache"))
    return path, run, cfg, stimuli, targets, cache


def grid_discriminability(out: str | Path, spec: DiscriminabilitySpec | None = None, *,
                          seed: int | None = None, device: str = "cpu",
                          progress: bool = False) -> list[GridDiscriminability]:
    """Discriminability of a finished results directory: the newest run's config and feature
    cache (features a run extracted are read, not recomputed), every (target, metric entry, rule).
    The rows are written to the store under that run, replacing earlier ones."""
    path, run, cfg, stimuli, targets, cache = load_run(out)
    spec = spec or cfg.discriminability or DiscriminabilitySpec()
    models, errors = _features(cfg, None, stimuli, cache, device, progress)
    for (label, layer), msg in errors.items():
        log.warning("discriminability: %s/%s left out: %s", label, layer, msg)
    results = discriminability_of(cfg, spec, targets, models, cfg.seed if seed is None else seed,
                                  stimuli)
    ResultsStore(path).record_second_order(str(run["run_id"]),
                                           _discriminability_rows(results))
    return results
