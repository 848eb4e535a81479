"""The RDM kernel: representational dissimilarity matrices, their comparison, ranks, upper
triangles, differentiable (soft) ranks and the input checks they share.

This small package sits below ``metrics``, ``stats`` and ``neural`` (it imports none of them), so
that noise ceilings, bootstrap intervals and searchlights build on the same primitives as RSA
without importing the metrics. ``cortexalign.metrics`` re-exports the user-facing names
(``compute_rdm``, ``compare_rdms``, ``RDM_METHODS``, ``RDM_COMPARISONS``).
"""

from cortexalign.rdm._compare import (
    RANK_COMPARISONS,
    RDM_COMPARISONS,
    compare_cosine,
    compare_kendall_tau_a,
    compare_pearson,
    compare_rdms,
    compare_rho_a,
    compare_spearman,
    compare_vectors,
    rdm_vectors,
)
from cortexalign.rdm._compute import (
    RDM_METHODS,
    ConstantFeaturesWarning,
    compute_rdm,
    compute_rdms,
    device_of,
    mirror_rdm,
    mirror_upper,
    mm_nt,
    rdm_correlation,
    rdm_cosine,
    rdm_crossnobis,
    rdm_euclidean,
    rdm_tensor,
    row_blocks,
    unit_rows,
    upper_tri,
)
from cortexalign.rdm._numpy_rdm import RAW_GRAM_KEEP
from cortexalign.rdm._ranks import average_ranks, centred_weighted_ranks, row_dots, weighted_ranks
from cortexalign.rdm._softrank import isotonic_decreasing_blocks, soft_rank
from cortexalign.rdm._validate import (
    MIN_STIMULI,
    as_array,
    as_tensor,
    check_features,
    check_finite,
    check_n_stimuli,
    check_varies,
    stimulus_matrix,
)
from cortexalign.rdm._whitened import (
    compare_corr_cov,
    compare_cosine_cov,
    n_stimuli_of,
    pair_row_sums,
    resampled_cosine_cov,
    whitened_gram,
    whitened_norms,
)

__all__ = ["RDM_METHODS", "ConstantFeaturesWarning", "compute_rdm", "compute_rdms", "rdm_tensor", "upper_tri", "mm_nt",
           "rdm_correlation", "rdm_cosine", "rdm_euclidean", "rdm_crossnobis", "row_blocks",
           "mirror_upper", "mirror_rdm", "unit_rows", "device_of"]
__all__ += ["RDM_COMPARISONS", "compare_rdms", "compare_vectors", "rdm_vectors", "average_ranks",
            "weighted_ranks", "centred_weighted_ranks", "row_dots", "RANK_COMPARISONS", "n_stimuli_of", "pair_row_sums", "whitened_gram", "whitened_norms",
            "resampled_cosine_cov", "compare_pearson", "compare_cosine", "compare_spearman",
            "compare_kendall_tau_a", "compare_rho_a", "compare_cosine_cov", "compare_corr_cov"]
__all__ += ["soft_rank", "isotonic_decreasing_blocks", "RAW_GRAM_KEEP"]
__all__ += ["MIN_STIMULI", "as_array", "as_tensor", "check_finite", "check_features", "check_n_stimuli", "check_varies", "stimulus_matrix"]
