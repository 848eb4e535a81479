"""Statistics on top of the metrics: noise ceilings and bootstrap intervals over stimuli."""

from cortexalign.stats._bootstrap import (
    BOOTSTRAP_COMPARISONS,
    bootstrap_indices,
    bootstrap_rdm_comparison,
    bootstrap_statistic,
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

__all__ = ["BOOTSTRAP_COMPARISONS", "bootstrap_indices", "bootstrap_rdm_comparison",
           "bootstrap_statistic", "pair_weights", "percentile_interval", "RDM_POOLING",
           "group_weights", "noise_ceiling_vectors", "rdm_noise_ceiling", "spearman_brown",
           "split_half_ceiling"]
