"""Alignment measures: RDMs and their comparison (RSA), CKA, and the metric registry.

Public API: ``compute_rdm``, ``compute_rdms``, ``compare_rdms``, ``cka``, ``score``,
``list_metrics``, the registries ``METRICS``, ``RDM_METHODS``, ``RDM_COMPARISONS``, ``CKA_KINDS``,
and ``Score``. Noise ceilings and bootstrap intervals live in ``cortexalign.stats``.
"""

# the registering modules fill METRICS when imported
from cortexalign.metrics import _cka_metric, _encoding, _map_metric, _rsa_metric  # noqa: F401
from cortexalign.metrics._api import list_metrics, score
from cortexalign.metrics._banded import BandedRidgeScore, banded_ridge, solve_banded_ridge_cv
from cortexalign.metrics._cka import CKA_KINDS, cka
from cortexalign.metrics._cka_metric import cka_from_gram
from cortexalign.metrics._compare import RDM_COMPARISONS, compare_rdms
from cortexalign.metrics._layer_plot import plot_layer_similarity
from cortexalign.metrics._layer_similarity import (
    LAYER_SIMILARITIES,
    layer_similarity,
)
from cortexalign.metrics._maps import MAP_MEASURES, MAP_SCALINGS, compare_maps, map_score
from cortexalign.metrics._partition import VariancePartition, variance_partitioning
from cortexalign.metrics._rdm import RDM_METHODS, ConstantFeaturesWarning, compute_rdm, compute_rdms
from cortexalign.metrics._registry import METRICS
from cortexalign.metrics._rsa_metric import rsa_from_rdm
from cortexalign.metrics._score import Score
from cortexalign.metrics._streaming import streaming_cka, streaming_gram, streaming_rdm

__all__ = ["METRICS", "Score", "score", "list_metrics", "compute_rdm", "compute_rdms",
           "compare_rdms", "cka", "RDM_METHODS", "ConstantFeaturesWarning", "RDM_COMPARISONS", "CKA_KINDS"]
__all__ += ["MAP_MEASURES", "MAP_SCALINGS", "compare_maps", "map_score"]
__all__ += ["streaming_rdm", "streaming_cka", "streaming_gram", "rsa_from_rdm", "cka_from_gram"]
__all__ += ["variance_partitioning", "VariancePartition"]
__all__ += ["banded_ridge", "BandedRidgeScore", "solve_banded_ridge_cv"]
__all__ += ["layer_similarity", "plot_layer_similarity", "LAYER_SIMILARITIES"]
