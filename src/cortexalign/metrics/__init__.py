"""Alignment measures: RDMs and their comparison (RSA), CKA, and the metric registry.

Differentiable objectives with the metrics' definitions (for training): ``rsa_objective``,
``cka_objective``, ``ridge_objective``, ``soft_rank``.

Public API: ``compute_rdm``, ``compute_rdms``, ``compare_rdms``, ``cka``, ``score``,
``list_metrics``, the registries ``METRICS``, ``RDM_METHODS``, ``RDM_COMPARISONS``, ``CKA_KINDS``,
and ``Score``. Noise ceilings and bootstrap intervals live in ``cortexalign.stats``.
"""

# the registering modules fill METRICS when imported
from cortexalign.metrics import (  # noqa: F401
    _cka_metric,
    _encoding,
    _extra_measures,
    _map_metric,
    _rsa_metric,
)
from cortexalign.metrics._api import check_options, list_metrics, score
from cortexalign.metrics._banded import BandedRidgeScore, banded_ridge, solve_banded_ridge_cv
from cortexalign.metrics._cka import CKA_KINDS, cka
from cortexalign.metrics._cka_boot import resampled_cka_pairs
from cortexalign.metrics._cka_metric import cka_from_gram
from cortexalign.metrics._encoding import ENCODERS, EncodingFit, encoding_fit, encoding_scores
from cortexalign.metrics._estimators import PLSEncoder, RidgeEncoder
from cortexalign.metrics._layer_bootstrap import check_bootstrap
from cortexalign.metrics._layer_plot import plot_layer_similarity, similarity_label
from cortexalign.metrics._layer_similarity import (
    LAYER_SIMILARITIES,
    check_layer_metric,
    layer_similarity,
)
from cortexalign.metrics._map_metric import resampled_map_scores
from cortexalign.metrics._maps import MAP_MEASURES, MAP_SCALINGS, compare_maps, map_score
from cortexalign.metrics._objectives import (
    OBJECTIVES,
    cka_objective,
    ridge_objective,
    rsa_objective,
)
from cortexalign.metrics._partition import (
    PARTITION_RESERVED,
    VariancePartition,
    variance_partitioning,
)
from cortexalign.metrics._registry import METRICS
from cortexalign.metrics._rsa_metric import rsa_from_rdm
from cortexalign.metrics._rsa_permutation import (
    PERMUTATION_TESTS,
    rsa_permutation_p,
    rsa_permutation_p_from_rdm,
)
from cortexalign.metrics._score import Score
from cortexalign.metrics._searchlight import (
    SEARCHLIGHT_MAPS,
    SEARCHLIGHT_RDM_METHODS,
    SearchlightResult,
    Searchlights,
    searchlight_centers,
    searchlight_rdms,
    searchlight_rsa,
)
from cortexalign.metrics._streaming import streaming_cka, streaming_gram, streaming_rdm
from cortexalign.metrics._time_resolved import plot_time_resolved, time_resolved_score
from cortexalign.rdm import (
    RDM_COMPARISONS,
    RDM_METHODS,
    ConstantFeaturesWarning,
    compare_rdms,
    compute_rdm,
    compute_rdms,
    soft_rank,
)

__all__ = ["METRICS", "Score", "score", "list_metrics", "compute_rdm", "compute_rdms",
           "compare_rdms", "cka", "RDM_METHODS", "RDM_COMPARISONS", "CKA_KINDS",
           "ConstantFeaturesWarning"]
__all__ += ["MAP_MEASURES", "MAP_SCALINGS", "compare_maps", "map_score", "resampled_map_scores"]
__all__ += ["streaming_rdm", "streaming_cka", "streaming_gram", "rsa_from_rdm", "cka_from_gram"]
__all__ += ["resampled_cka_pairs", "ENCODERS", "EncodingFit", "encoding_fit", "encoding_scores"]
__all__ += ["variance_partitioning", "VariancePartition"]
__all__ += ["banded_ridge", "BandedRidgeScore", "solve_banded_ridge_cv"]
__all__ += ["OBJECTIVES", "rsa_objective", "cka_objective", "ridge_objective", "soft_rank"]
__all__ += ["layer_similarity", "plot_layer_similarity", "LAYER_SIMILARITIES"]
__all__ += ["Searchlights", "SearchlightResult", "searchlight_centers", "searchlight_rdms",
            "searchlight_rsa", "SEARCHLIGHT_RDM_METHODS", "SEARCHLIGHT_MAPS"]
__all__ += ["PERMUTATION_TESTS", "rsa_permutation_p", "rsa_permutation_p_from_rdm"]
__all__ += ["PARTITION_RESERVED", "check_options"]
__all__ += ["check_bootstrap", "check_layer_metric"]
__all__ += ["RidgeEncoder", "PLSEncoder"]
__all__ += ["time_resolved_score", "plot_time_resolved"]
__all__ += ["similarity_label"]
