"""The job graph: a config expands into score jobs with stable keys.

A score job is one (model, layer, neural target, metric). Its key hashes everything that
determines the result — the model spec, the layer, the stimulus set's content hash, the target,
the metric with its options, the bootstrap count and seed — so a rerun of the same config finds
finished jobs in the results store and skips them, and a changed config recomputes only the
jobs whose key changed. Extraction is keyed separately by the feature cache. A target split
into groups (``split_by``) is one job whose rows cover every group, so a correction across
the groups (FDR) is computed and stored with them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from cortexalign.bench._config import ExperimentConfig, MetricSpec, ModelSpec, NeuralSpec

__all__ = ["ScoreJob", "plan_model_jobs", "job_key", "JOB_VERSION", "model_payload",
           "target_payload"]

JOB_VERSION = 1


@dataclass(frozen=True)
class ScoreJob:
    """One score to compute: model x layer x target x metric."""

    key: str
    model: ModelSpec
    layer: str
    layer_index: int
    n_layers: int
    target: NeuralSpec
    metric: MetricSpec

    @property
    def label(self) -> str:
        return f"{self.model.display} / {self.layer} / {self.target.display} / {self.metric.name}"


def model_payload(model: ModelSpec) -> dict:
    """What of a model spec determines its features (not its label or layer list)."""
    # fields added later enter the payload only when set, so older configs keep their keys
    new_model_fields = ({"features"} if model.features == "activations" else set()) | (
        set() if model.feature_options else {"feature_options"}) | (
        set() if model.preprocess else {"preprocess"})
    return model.model_dump(mode="json", exclude={"label", "layers"} | new_model_fields)


def target_payload(target: NeuralSpec) -> str | dict:
    """What of a neural spec determines its data (its source alone when nothing else is set)."""
    new_target = target.model_dump(mode="json", exclude={"label"}, exclude_defaults=True)
    return target.source if set(new_target) == {"source"} else new_target


def job_key(config: ExperimentConfig, model: ModelSpec, layer: str, target: NeuralSpec,
            metric: MetricSpec, stimuli_hash: str) -> str:
    """A stable sha256 key for one score job (see module docstring)."""
    payload = {
        "v": JOB_VERSION,
        "model": model_payload(model),
        "layer": layer,
        "stimuli": stimuli_hash,
        "target": target_payload(target),
        "metric": metric.model_dump(mode="json"),
        "n_bootstrap": config.n_bootstrap,
        "seed": config.seed,
    }
    if config.n_permutations:
        payload["n_permutations"] = config.n_permutations
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def plan_model_jobs(config: ExperimentConfig, model: ModelSpec, layers: list[str],
                    stimuli_hash: str) -> list[ScoreJob]:
    """Every score job of one model, in layer order."""
    return [ScoreJob(job_key(config, model, layer, target, metric, stimuli_hash), model, layer, i,
                     len(layers), target, metric)
            for i, layer in enumerate(layers)
            for target in config.neural
            for metric in config.metrics]
