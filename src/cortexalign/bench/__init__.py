"""Experiments: the config schema, the job graph and the runner."""

from cortexalign.bench._config import (
    ConfigError,
    ExperimentConfig,
    MetricSpec,
    ModelSpec,
    NeuralSpec,
    StimuliSpec,
)
from cortexalign.bench._config_load import load_config, quickstart_config_path

__all__ = ["ConfigError", "ExperimentConfig", "MetricSpec", "ModelSpec", "NeuralSpec",
           "StimuliSpec", "load_config", "quickstart_config_path"]
from cortexalign.bench._config import NeuralSelect  # noqa: E402
from cortexalign.bench._run import EXPERIMENT_KINDS, RunSummary, run_analyses, run_experiment  # noqa: E402
from cortexalign.bench._stats import (  # noqa: E402
    grid_fdr,
    paired_model_comparison,
    record_statistics,
    run_statistics,
)
from cortexalign.bench._status import RunStatus, export_frame, results_path, run_status  # noqa: E402

__all__ += ["NeuralSelect", "grid_fdr", "paired_model_comparison", "run_experiment", "RunSummary",
            "run_analyses", "EXPERIMENT_KINDS",
            "RunStatus", "run_status", "results_path", "export_frame", "run_statistics",
            "record_statistics"]
from cortexalign.bench._second_order import GridDiscriminability, grid_discriminability  # noqa: E402
from cortexalign.bench._second_order_spec import DiscriminabilitySpec, PatternSpec  # noqa: E402

__all__ += ["GridDiscriminability", "grid_discriminability", "DiscriminabilitySpec", "PatternSpec"]
from cortexalign.bench._layer_table import LAYER_TABLE_COLUMNS, grid_best_layers  # noqa: E402

__all__ += ["grid_best_layers", "LAYER_TABLE_COLUMNS"]
from cortexalign.bench._config_docs import ConfigKey, config_keys, config_template  # noqa: E402
from cortexalign.bench._validate import validate_request  # noqa: E402

__all__ += ["ConfigKey", "config_keys", "config_template", "validate_request"]
from cortexalign.bench._doctor import Diagnosis, Finding, diagnose  # noqa: E402

__all__ += ["Diagnosis", "Finding", "diagnose"]
from cortexalign.bench._analysis import (  # noqa: E402
    ANALYSES,
    AnalysisKind,
    Plan,
    Unit,
    analysis_kind,
    run_unit,
)
from cortexalign.bench._context import RunContext, RunRequest  # noqa: E402

__all__ += ["ANALYSES", "AnalysisKind", "Plan", "Unit", "analysis_kind", "run_unit", "RunContext",
            "RunRequest"]
from cortexalign.bench._estimate import (  # noqa: E402
    ArchSizes,
    RunEstimate,
    architecture_sizes,
    estimate_config,
    estimate_table,
)

__all__ += ["ArchSizes", "RunEstimate", "architecture_sizes", "estimate_config", "estimate_table"]
from cortexalign.bench._cards import (  # noqa: E402
    model_card,
    segmenter_name,
    store_card,
)
from cortexalign.bench._cards_spec import SegmentationSpec  # noqa: E402

__all__ += ["SegmentationSpec", "model_card", "segmenter_name", "store_card"]
