"""Second-order analyses built on the measures: alignment patterns across regions (Höfling et
al. 2026) and how well a benchmark separates models.

Public API: ``alignment_patterns``, ``brain_alignment_patterns``, ``region_rdms``,
``simulate_regions``, ``copy_region``, ``PATTERN_SIMILARITIES``, ``PATTERN_NULLS`` and the result
types; ``layer_choice`` (the layer of a model chosen on the same data or cross-validated, for any
registered metric); ``bootstrap_model_scores`` and ``benchmark_discriminability`` (rankings of
models under resampling of stimuli and subjects).
"""

from cortexalign.analyses._layer_choice import (
    LAYER_RULES,
    LayerChoice,
    layer_choice,
    stimulus_folds,
    subset_target,
)
from cortexalign.analyses._model_boot import (
    ModelScoreSamples,
    benchmark_discriminability,
    bootstrap_model_scores,
)
from cortexalign.analyses._pattern_scores import alignment_patterns, model_rdms
from cortexalign.analyses._patterns import (
    PATTERN_NULLS,
    PATTERN_SIMILARITIES,
    BrainPatterns,
    PatternAnalysis,
    PatternScore,
    brain_alignment_patterns,
)
from cortexalign.analyses._records import discriminability_records, pattern_records
from cortexalign.analyses._regions import (
    RegionRDMs,
    as_region_rdms,
    copy_region,
    region_rdms,
    save_regions,
    simulate_regions,
)

__all__ = ["alignment_patterns", "brain_alignment_patterns", "model_rdms", "PATTERN_NULLS",
           "PATTERN_SIMILARITIES", "BrainPatterns", "PatternAnalysis", "PatternScore",
           "RegionRDMs", "as_region_rdms", "copy_region", "region_rdms", "simulate_regions"]
__all__ += ["LAYER_RULES", "LayerChoice", "layer_choice", "stimulus_folds", "subset_target",
            "ModelScoreSamples", "benchmark_discriminability", "bootstrap_model_scores"]
__all__ += ["discriminability_records", "pattern_records"]
__all__ += ["save_regions"]
