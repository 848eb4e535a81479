"""Experiments: the config schema, the job graph and the runner."""

from cortexalign.bench._config import (
    ConfigError,
    ExperimentConfig,
    MetricSpec,
    ModelSpec,
    NeuralSpec,
    StimuliSpec,
    load_config,
    quickstart_config_path,
)

__all__ = ["ConfigError", "ExperimentConfig", "MetricSpec", "ModelSpec", "NeuralSpec",
           "StimuliSpec", "load_config", "quickstart_config_path"]
