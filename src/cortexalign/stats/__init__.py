"""Statistics on top of the metrics: noise ceilings and bootstrap intervals over stimuli."""

from cortexalign.stats._bootstrap import (
    BOOTSTRAP_COMPARISONS,
    bootstrap_indices,
    bootstrap_rdm_comparison,
    bootstrap_statistic,
    check_ci_level,
    pair_weights,
    percentile_interval,
)
from cortexalign.stats._budget import MAX_RESAMPLES, check_resamples, resample_cost
from cortexalign.stats._ceiling import (
    RDM_POOLING,
    group_weights,
    noise_ceiling_vectors,
    rdm_noise_ceiling,
    spearman_brown,
    split_half_ceiling,
)
from cortexalign.stats._multiple import CORRECTIONS, adjust_p_values, reject
from cortexalign.stats._permutation import (
    ALTERNATIVES,
    EXACT_MAX,
    PAIRED_METHODS,
    all_permutations,
    all_sign_patterns,
    enumerated_p_value,
    exact_p_value,
    paired_comparison,
    permutation_test,
    rdm_permutation_test,
)
from cortexalign.stats._rankings import Discriminability, discriminability

__all__ = ["BOOTSTRAP_COMPARISONS", "bootstrap_indices", "bootstrap_rdm_comparison",
           "bootstrap_statistic", "check_ci_level", "pair_weights", "percentile_interval", "RDM_POOLING",
           "group_weights", "noise_ceiling_vectors", "rdm_noise_ceiling", "spearman_brown",
           "split_half_ceiling"]
__all__ += ["ALTERNATIVES", "CORRECTIONS", "adjust_p_values", "reject", "PAIRED_METHODS", "exact_p_value", "paired_comparison", "permutation_test", "rdm_permutation_test"]  # noqa: E501
__all__ += ["EXACT_MAX", "all_permutations", "all_sign_patterns", "enumerated_p_value"]
__all__ += ["MAX_RESAMPLES", "check_resamples", "resample_cost"]
__all__ += ["Discriminability", "discriminability"]
