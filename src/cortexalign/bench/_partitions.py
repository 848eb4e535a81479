"""Partition jobs of a run: variance partitioning and banded ridge over several feature sets.

After the per-layer jobs, the ``partitions`` analysis kind (:class:`PartitionsKind`, run by the
runner in the driver) runs one job per (partition, neural target) of the config's
``partitions:`` (``_partition_spec``). Each set's (s, d) features come through the
feature cache with the same keys as the per-layer jobs (``features.extract`` with the run's
feature kind, pooling, batch size and cache), so a layer those jobs extracted is read, not
computed again; a layer they did not need (its jobs finished in an earlier run and the cache was
cleared, or ``layers: all``) is extracted once. The models of the unfinished partition jobs are
loaded one at a time, only to read or compute their sets; the sets' features are held in memory
while the jobs run (they are the method's input), so with ``max_feature_memory_gb`` a job whose
estimated memory exceeds the budget fails before its sets are read (``_partition_memory``).

With ``executor: ray`` the partition jobs run in the driver after the model tasks. The workers
write their features to the same ``cache_dir`` (absolute), so on one machine, or with the cache
on a filesystem the driver shares, the driver reads every set the workers extracted, whatever
precision their device chose (a GPU worker's ``auto`` is bf16: the driver looks the entry up
under each precision). A set the driver cannot find is extracted in the driver, and a log line
(logger ``cortexalign.bench``) says so.

A job's key hashes the partition (name, method, options), each set's model (as a score job's
key does) and layer, the stimuli, the target and the seed; its rows (``results.PartitionRecord``,
every group of a split target) are written in the transaction that marks it finished, so a
killed run resumes without redoing finished partitions, and a failure is recorded like a score
job's (the others go on).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import time
from dataclasses import dataclass

import numpy as np

from cortexalign.bench._analysis import ANALYSES, AnalysisKind, Plan, Unit
from cortexalign.bench._config import ExperimentConfig, ModelSpec, NeuralSpec
from cortexalign.bench._context import RunContext, RunRequest
from cortexalign.bench._jobs import model_payload, target_payload
from cortexalign.bench._partition_memory import (
    Widths,
    check_partition_memory,
    over_budget,
    set_widths,
)
from cortexalign.bench._partition_spec import (
    PARTITION_METHODS,
    PartitionSpec,
    check_partitions,
    set_model_index,
)
from cortexalign.bench._scoring import jsonable
from cortexalign.bench._targets import Target
from cortexalign.device import resolve_device
from cortexalign.errors import CortexAlignError, InputError
from cortexalign.features import extract, feature_keys
from cortexalign.models import load_model
from cortexalign.neural import RDMSet
from cortexalign.results import PartitionRecord

__all__ = ["PartitionJob", "partition_key", "plan_partition_jobs", "check_partition_targets",
           "PartitionsKind", "PARTITION_JOB_VERSION"]

PARTITION_JOB_VERSION = 1

log = logging.getLogger("cortexalign.bench")


@dataclass(frozen=True)
class PartitionJob:
    """One partition to compute against one neural target (every group of it).

    Attributes
    ----------
    key : the job key (``partition_key``). spec : the config entry. target : the neural spec.
    sets : set label -> (model spec, layer), in the config's order.
    """

    key: str
    spec: PartitionSpec
    target: NeuralSpec
    sets: dict[str, tuple[ModelSpec, str]]

    @property
    def label(self) -> str:
        return f"partition {self.spec.name} ({self.spec.method}) / {self.target.display}"


def partition_key(config: ExperimentConfig, spec: PartitionSpec,
                  sets: dict[str, tuple[ModelSpec, str]], target: NeuralSpec,
                  stimuli_hash: str) -> str:
    """A stable sha256 key for one partition job (see module docstring)."""
    payload = {
        "v": PARTITION_JOB_VERSION,
        "kind": "partition",
        "partition": spec.name,
        "method": spec.method,
        "sets": {label: {"model": model_payload(m), "layer": layer}
                 for label, (m, layer) in sets.items()},
        "stimuli": stimuli_hash,
        "target": target_payload(target),
        "options": spec.options,
        "seed": config.seed,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def _is_responses(groups: list[Target]) -> bool:
    return not isinstance(groups[0].data, RDMSet)


def _partition_targets(config: ExperimentConfig, spec: PartitionSpec,
                       targets: dict[str, list[Target]]) -> list[NeuralSpec]:
    if spec.targets == "all":
        return [n for n in config.neural if _is_responses(targets[n.display])]
    return [n for n in config.neural if n.display in spec.targets]


def plan_partition_jobs(config: ExperimentConfig, stimuli_hash: str,
                        targets: dict[str, list[Target]]) -> list[PartitionJob]:
    """Every partition job of ``config``: partitions in order, then their targets."""
    jobs = []
    for spec in config.partitions:
        sets = {label: (config.models[set_model_index(config.models, ref.model, label)],
                        ref.layer) for label, ref in spec.sets.items()}
        for target in _partition_targets(config, spec, targets):
            jobs.append(PartitionJob(partition_key(config, spec, sets, target, stimuli_hash),
                                     spec, target, sets))
    return jobs


def check_partition_targets(config: ExperimentConfig, targets: dict[str, list[Target]],
                            n_stimuli: int) -> None:
    """What needs the loaded data, checked before anything is written: every target a
    partition names holds responses, each partition has one, and ``n_folds`` <= the stimuli.
    (The config-only checks, ``check_partitions``, run again for configs built in Python.)"""
    check_partitions(config)
    for i, spec in enumerate(config.partitions):
        where = f"partitions[{i}] ({spec.name})"
        if spec.targets != "all":
            rdms = [t for t in spec.targets if not _is_responses(targets[t])]
            if rdms:
                raise InputError(f"{where}.targets", "targets holding responses (stimulus x "
                                 "neuroid): the methods fit encoding models", f"{rdms} (RDMs)",
                                 "remove the RDM targets from this partition's targets")
        if not _partition_targets(config, spec, targets):
            raise InputError(f"{where}.targets", "at least one neural target holding responses",
                             "only RDM targets in the config", "add a responses target "
                             "(e.g. an Allen or fMRI dataset), or remove the partition")
        fn = PARTITION_METHODS[spec.method].fn
        n_folds = spec.options.get("n_folds",
                                   inspect.signature(fn).parameters["n_folds"].default)
        if isinstance(n_folds, int) and n_folds > n_stimuli:
            raise InputError(f"{where}.options.n_folds", f"an int in 2..{n_stimuli} (the "
                             "number of stimuli)", repr(n_folds), "lower n_folds")


@dataclass(frozen=True)
class _SetFeatures:
    """One layer's features flattened to (s, d); ``shape``: the per-stimulus shape of maps
    ((gh, gw); () for activations); ``pad_square``: the model pads images to a square."""

    values_sd: np.ndarray
    model_id: str
    from_cache: bool
    shape: tuple[int, ...] = ()
    pad_square: bool = False


def _model_sets(cfg, spec: ModelSpec, layers: list[str], stimuli, cache, device, progress,
                out: dict, errors: dict) -> None:
    """Read (or extract) ``layers`` of one model as the per-layer jobs do, into ``out``."""
    def fail(layer_list, err) -> None:
        msg = f"{type(err).__name__}: {err}"
        errors.update({(spec.display, layer): msg for layer in layer_list})

    try:
        adapter = load_model(spec.name, pretrained=spec.pretrained, weights=spec.weights,
                             untrained=spec.untrained, seed=spec.seed, device=device,
                             preprocess=spec.preprocess or None,
                             **spec.kwargs)
    except CortexAlignError as err:
        return fail(layers, err)
    good = []
    for layer in layers:
        try:
            if spec.features == "activations":
                adapter.check_layers([layer])
            good.append(layer)
        except CortexAlignError as err:
            fail([layer], err)
    if not good:
        return None
    try:
        # maps are flattened as the per-layer encoding jobs flatten them
        groups = (_by_cached_precision(adapter, stimuli, good, spec.pooling, cache)
                  if spec.features == "activations" else {"auto": good})
        feats = {}
        for precision, layers_p in groups.items():
            feats.update(extract(adapter, stimuli, layers_p, spec.features, spec.kind_options,
                                 batch_size=cfg.batch_size, cache=cache, progress=progress,
                                 precision=precision))
    except CortexAlignError as err:
        return fail(good, err)
    maps = spec.features != "activations"
    pads = getattr(getattr(adapter, "preprocess", None), "resize", "") == "longest_side_pad"
    for layer in good:
        values = np.asarray(feats[layer].values)
        out[(spec.display, layer)] = _SetFeatures(
            values.reshape(len(stimuli), -1), adapter.model_id, feats[layer].from_cache,
            tuple(values.shape[1:]) if maps else (), pads)
    return None


def _by_cached_precision(adapter, stimuli, layers: list[str], pooling: str,
                         cache) -> dict[str, list[str]]:
    """``layers`` grouped by the precision of their cache entry for these stimuli ('auto' when
    there is none): an entry a GPU worker wrote ('auto' = bf16 there) is read by a CPU driver."""
    groups: dict[str, list[str]] = {}
    for layer in layers:
        found = "auto"
        for precision in ("auto", "fp32", "bf16"):
            key = feature_keys(adapter, stimuli, [layer], pooling, precision)[layer]
            if (cache.metadata(key) or {}).get("stimulus_ids") == list(stimuli.ids):
                found = precision
                break
        groups.setdefault(found, []).append(layer)
    return groups


def _needed_sets(jobs: list[PartitionJob]) -> dict[str, list[str]]:
    """Model label -> the layers the sets of ``jobs`` take from it, in first-use order."""
    needed: dict[str, list[str]] = {}
    for job in jobs:
        for model, layer in job.sets.values():
            layers = needed.setdefault(model.display, [])
            if layer not in layers:
                layers.append(layer)
    return needed


def _set_features(cfg, needed: dict[str, list[str]], stimuli, cache, device, progress):
    """(model label, layer) -> ``_SetFeatures`` for every set in ``needed``, and the errors of
    those that could not be had; each model is loaded once."""
    out: dict = {}
    errors: dict = {}
    for spec in cfg.models:
        if spec.display in needed:
            _model_sets(cfg, spec, needed[spec.display], stimuli, cache, device, progress, out,
                        errors)
    return out, errors


def partition_records(job: PartitionJob, features: dict[str, _SetFeatures],
                      groups: list[Target], *, seed: int, device) -> list[PartitionRecord]:
    """The ``partitions`` rows of one job: the method on every group of the target."""
    method = PARTITION_METHODS[job.spec.method]
    feats = {label: f.values_sd for label, f in features.items()}
    sets = {label: {"model": m.display, "model_id": features[label].model_id, "layer": layer}
            for label, (m, layer) in job.sets.items()}
    records = []
    for group in groups:
        started = time.time()
        result = method.fn(feats, group.data, seed=seed, device=device, **job.spec.options)
        extra = jsonable({"sets": sets, "options": job.spec.options, **group.extra(),
                          "n_folds": result.n_folds, "scaling": result.scaling,
                          "seconds": round(time.time() - started, 4)})
        records += [PartitionRecord(job.spec.name, job.spec.method, group.label, kind, name,
                                    values_n, result.neuroid_ids, result.n_stimuli, extra)
                    for kind, name, values_n in method.quantities(result)]
    return records


def driver_device(config: ExperimentConfig, device):
    """The device of this process: the runner's ``device`` (local), or ``config.device``
    resolved here (Ray: the driver may lack the workers' GPU; then the CPU)."""
    if config.executor == "local":
        return device
    try:
        return resolve_device(config.device)
    except CortexAlignError:
        return resolve_device("cpu")


def _refused(cfg, todo: list[PartitionJob], stimuli, device,
             widths: Widths) -> dict[str, InputError]:
    """Job key -> the ``max_feature_memory_gb`` error of each job over the budget; the widths
    not measured yet (``widths``: by ``check_partition_memory``) are measured here."""
    if cfg.max_feature_memory_gb is None:
        return {}
    missing = {m: [layer for layer in layers if (m, layer) not in widths]
               for m, layers in _needed_sets(todo).items()}
    if any(missing.values()):
        widths = {**widths, **set_widths(cfg, {m: ls for m, ls in missing.items() if ls},
                                         stimuli, device)}
    index = {spec.name: i for i, spec in enumerate(cfg.partitions)}
    errors = {job.key: over_budget(cfg, job.spec, widths, len(stimuli),
                                   f"partitions[{index[job.spec.name]}] ({job.spec.name})")
              for job in todo}
    return {key: err for key, err in errors.items() if err is not None}


def _log_extracted(cfg, cache, values: dict) -> None:
    """Say which sets the driver computed instead of reading them from the cache."""
    extracted = [f"{m}/{layer}" for (m, layer), v in values.items() if not v.from_cache]
    if not extracted:
        return
    if cfg.executor == "ray":
        log.warning("partitions: %s not in the feature cache at %s: extracting in the driver. "
                    "Either the Ray workers' cache is not visible here (put cache_dir on a "
                    "filesystem the driver and the workers share, so the driver reads their "
                    "features), or no worker extracted these layers in this run",
                    ", ".join(extracted), cache.root)
    else:
        log.info("partitions: %s not in the feature cache at %s: extracted for the partitions",
                 ", ".join(extracted), cache.root)


class PartitionsKind(AnalysisKind):
    """The config's ``partitions:``: one unit in the driver, one job per (partition, target)."""

    name = "partitions"
    placement = "driver"  # after the per-layer jobs: their features are cached

    def validate(self, request: RunRequest) -> dict:
        """Refuse a partition over ``max_feature_memory_gb``; return the widths measured."""
        # partitions hold their sets whole: over max_feature_memory_gb fails here (one probe
        # image per set); the widths measured are reused by the jobs' budget check
        cfg = request.config
        return {"partition_widths": check_partition_memory(
            cfg, request.stimuli, driver_device(cfg, request.device))}

    def units(self, ctx: RunContext) -> list[Unit]:
        """One unit when the config has partitions."""
        return [Unit("partitions", "partitions")] if ctx.config.partitions else []

    def plan(self, ctx: RunContext, unit: Unit) -> Plan:
        """One job per (partition, target)."""
        return Plan(plan_partition_jobs(ctx.config, ctx.stimuli.content_hash, ctx.targets))

    def prepare(self, ctx: RunContext, plan: Plan, todo: list[PartitionJob]) -> _Prepared:
        """The sets of the jobs within the memory budget, read (or extracted) once; the
        budget errors of the others (``max_feature_memory_gb``: their sets are not read)."""
        cfg = ctx.config
        device = driver_device(cfg, ctx.device)
        refused = _refused(cfg, todo, ctx.stimuli, device,
                           ctx.inputs.get("partition_widths") or {})
        values, errors = _set_features(cfg, _needed_sets([j for j in todo
                                                          if j.key not in refused]),
                                       ctx.stimuli, ctx.cache, device, ctx.progress)
        _log_extracted(cfg, ctx.cache, values)
        return _Prepared(device, refused, values, errors)

    def execute(self, ctx: RunContext, job: PartitionJob, shared: _Prepared) -> list:
        """The ``partitions`` rows of one job (its budget error, or a missing set, raised)."""
        if job.key in shared.refused:  # over max_feature_memory_gb: its sets were not read
            raise shared.refused[job.key]
        keys = {label: (m.display, layer) for label, (m, layer) in job.sets.items()}
        bad = [(label, k) for label, k in keys.items() if k not in shared.values]
        if bad:
            label, k = bad[0]
            raise InputError(f"partitions ({job.spec.name}).sets.{label}",
                             f"features of layer {k[1]!r} of model {k[0]!r}",
                             shared.errors.get(k, "none"), "fix the model or layer")
        return partition_records(job, {label: shared.values[k] for label, k in keys.items()},
                                 ctx.targets[job.target.display], seed=ctx.config.seed,
                                 device=shared.device)

    def write(self, ctx: RunContext, job: PartitionJob, rows: list) -> None:
        """``record_partition_job``: the rows and the finished mark together."""
        ctx.store.record_partition_job(job.key, ctx.run_id, rows)

    def citations(self, config) -> list[tuple[str, str]]:
        """The partition methods of the config."""
        return [(f"partition: {p.method}", PARTITION_METHODS[p.method].citation)
                for p in config.partitions]


ANALYSES.add("partitions", PartitionsKind(), description="variance partitioning and banded "
             "ridge over several feature sets (the config's partitions:)")


@dataclass(frozen=True)
class _Prepared:
    device: object
    refused: dict[str, InputError]
    values: dict
    errors: dict
