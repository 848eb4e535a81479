"""The ``scores`` analysis kind: the (model x layer x target x metric) grid of a config.

A unit is one model, placed on the run's executor (local, or one Ray task per model): it is
loaded once (``plan``: a model that does not load is a stored failure note; a layer it lacks
fails that layer's jobs and the others go on), the layers its unfinished jobs need are extracted
once through the feature cache (``prepare``; a model's attention and conv entries from the
same forward passes, ``features.extract_kinds``), and each job scores one layer against one target
with one metric (``execute``: ``bench._scoring.score_job``, one row per group of the target),
written with ``record_job``. Job keys: ``bench._jobs``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cortexalign.bench._analysis import ANALYSES, AnalysisKind, Plan, Unit
from cortexalign.bench._context import RunContext
from cortexalign.bench._jobs import ScoreJob, plan_model_jobs
from cortexalign.bench._scoring import CachedLayer, score_job, uses_maps
from cortexalign.errors import CortexAlignError
from cortexalign.features import (
    FEATURE_KINDS,
    SHARED_FORWARD,
    BatchShrink,
    extract,
    extract_kinds,
    kind_layers,
)
from cortexalign.metrics import METRICS
from cortexalign.models import load_model
from cortexalign.neural import NEURAL
from cortexalign.stimuli import BUNDLED

__all__ = ["ScoresKind"]


@dataclass
class _Values:
    """The features of a model's needed layers (arrays, or ``CachedLayer`` views streamed from
    the cache), and the layer the last job read (jobs come layer by layer)."""

    adapter: Any
    by_layer: dict[str, Any]
    current: list[str] = field(default_factory=list)

    def layer(self, name: str) -> Any:
        """The features of ``name``, releasing the previous layer's streamed state."""
        if self.current and self.current[0] != name:
            self._release(self.current[0])
        self.current[:] = [name]
        return self.by_layer[name]

    def _release(self, name: str) -> None:
        if isinstance(self.by_layer[name], CachedLayer):
            self.by_layer[name].release()


class ScoresKind(AnalysisKind):
    """The score grid: one unit per model, one job per (layer, target, metric)."""

    name = "scores"
    placement = "executor"

    def units(self, ctx: RunContext) -> list[Unit]:
        """One unit per model of the config, in order."""
        return [Unit("scores", spec.display, spec, f"scoring {spec.display}")
                for spec in ctx.config.models]

    def plan(self, ctx: RunContext, unit: Unit) -> Plan:
        """Load the model; its jobs, and the jobs of the layers it lacks as failed."""
        cfg, spec, stimuli = ctx.config, unit.item, ctx.stimuli
        adapter = load_model(spec.name, pretrained=spec.pretrained, weights=spec.weights,
                             untrained=spec.untrained, seed=spec.seed, device=ctx.device,
                             preprocess=spec.preprocess or None,
                             **spec.kwargs)
        bad_layers: dict[str, str] = {}
        if spec.features == "activations":
            layers, bad_layers = _check_layers(adapter, spec)
        else:  # attention blocks or spatial layers (features.FEATURE_KINDS)
            layers = kind_layers(adapter, spec.features, spec.layers, spec.feature_options,
                                 stimuli)
        # a layer the model does not have fails its jobs; the others go on
        failed = [(job, bad_layers[job.layer])
                  for job in plan_model_jobs(cfg, spec, list(bad_layers), stimuli.content_hash)
                  if not uses_maps(job.metric.name)]
        jobs = [j for j in plan_model_jobs(cfg, spec, layers, stimuli.content_hash)
                if spec.features != "activations" or not uses_maps(j.metric.name)]
        return Plan(jobs, failed, state=adapter)

    def prepare(self, ctx: RunContext, plan: Plan, todo: list[ScoreJob]) -> _Values:
        """The features of the layers the unfinished jobs need, extracted once."""
        needed = list(dict.fromkeys(j.layer for j in todo))
        return _Values(plan.state, _feature_values(ctx, todo[0].model, plan.state, needed))

    def execute(self, ctx: RunContext, job: ScoreJob, shared: _Values) -> list:
        """One ``ScoreRecord`` per group of the job's target."""
        # one row per group of the target, written together (bench._scoring)
        cfg = ctx.config
        return score_job(job, shared.adapter, shared.layer(job.layer),
                         ctx.targets[job.target.display], ctx.stimuli,
                         n_bootstrap=cfg.n_bootstrap, seed=cfg.seed,
                         n_permutations=cfg.n_permutations)

    def release(self, shared: _Values) -> None:
        """Drop what the streamed layers hold."""
        for name in shared.by_layer:
            shared._release(name)

    def citations(self, config: Any) -> list[tuple[str, str]]:
        """The measures, the bundled stimuli and the neural datasets of the config."""
        items = [(f"measure: {m.name}", METRICS.entry(m.name).meta.get("citation", ""))
                 for m in config.metrics]
        if config.stimuli.source in BUNDLED:
            items.append((f"stimuli: {config.stimuli.source}",
                          BUNDLED.entry(config.stimuli.source).meta.get("citation", "")))
        items += [(f"neural data: {n.source}", NEURAL.entry(n.source).meta.get("citation", ""))
                  for n in config.neural if n.source in NEURAL]
        return items


ANALYSES.add("scores", ScoresKind(),
             description="every (model, layer, target, metric) of the config")


def _feature_values(ctx: RunContext, spec, adapter, needed: list[str]) -> dict[str, Any]:
    """Layer -> the features of ``needed`` for every stimulus, through ``features.extract``:
    in memory, or streamed into the cache (a ``CachedLayer`` view) when they exceed
    ``max_feature_memory_gb`` (features decides)."""
    cfg, budget = ctx.config, ctx.config.max_feature_memory_gb

    def shrunk(event: BatchShrink) -> None:  # the extraction printed it; the report keeps it
        ctx.store.add_notes(ctx.run_id, "execution", [(spec.display, event.message)])

    siblings = _sibling_maps(ctx, spec, adapter) if budget is None else {}
    if siblings:  # one forward pass for this entry's maps and its sibling's (to the cache)
        feats = extract_kinds(adapter, ctx.stimuli, {spec.features: (needed, spec.kind_options),
                                                      **siblings},
                              batch_size=cfg.batch_size, cache=ctx.cache,
                              progress=ctx.progress)[spec.features]
    else:
        feats = extract(adapter, ctx.stimuli, needed, spec.features, spec.kind_options,
                        batch_size=cfg.batch_size, cache=ctx.cache, progress=ctx.progress,
                        memory_budget=None if budget is None else budget * 1e9,
                        on_shrink=shrunk)
    return {layer: CachedLayer(ctx.cache, f.key, layer, int(budget * 1e9),
                               maps=FEATURE_KINDS.get(spec.features).maps)
            if f.streamed else f.values for layer, f in feats.items()}


_SAME_MODEL = ("name", "pretrained", "weights", "untrained", "seed", "kwargs", "preprocess")


def _sibling_maps(ctx: RunContext, spec, adapter) -> dict[str, tuple[list[str], dict]]:
    """The other map kind the config asks of the same model (same weights, options and
    preprocessing; e.g. ``sam_vit_b attention`` and ``sam_vit_b conv``), when both kinds share a
    forward pass (``features.SHARED_FORWARD``): kind -> (layers whose jobs are unfinished,
    options). Extracted with ``spec``'s maps, they reach the cache from the same passes and the
    sibling's own unit reads them there. A sibling whose layers do not resolve is left to its
    own unit, which reports the error. Without a memory budget only (in memory)."""
    if spec.features not in SHARED_FORWARD:
        return {}
    for other in ctx.config.models:
        if other.features in SHARED_FORWARD and other.features != spec.features and \
                all(getattr(other, f) == getattr(spec, f) for f in _SAME_MODEL):
            try:
                layers = kind_layers(adapter, other.features, other.layers,
                                     other.feature_options, ctx.stimuli)
            except CortexAlignError:
                return {}
            jobs = plan_model_jobs(ctx.config, other, layers, ctx.stimuli.content_hash)
            todo = list(dict.fromkeys(j.layer for j in jobs
                                      if ctx.replace or j.key not in ctx.finished))
            return {other.features: (todo, other.kind_options)} if todo else {}
    return {}


def _check_layers(adapter, spec) -> tuple[list[str], dict[str, str]]:
    """The valid layers, and each bad one with its error: a bad layer fails its jobs only."""
    if spec.layers == "all":
        return adapter.layers(), {}
    good, bad = [], {}
    for layer in spec.layers:
        try:
            good += [x for x in adapter.check_layers([layer]) if x not in good]
        except CortexAlignError as err:
            bad[layer] = f"{type(err).__name__}: {err}"
    return good, bad
