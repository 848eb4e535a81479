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
    PAIRED_METHODS,
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
__all__ += ["Discriminability", "discriminability"]
