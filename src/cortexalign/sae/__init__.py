"""Sparse autoencoders on model layers, matched to voxels (SAE-BrainMap, arXiv 2506.11123).

Stages: ``modules`` (architectures), ``objectives`` (losses, metrics), ``stream`` (chunk sources),
``train`` (streaming trainer, checkpoints), ``match`` (unit-voxel similarity, dictionaries,
permutation test), ``analysis`` (hierarchy, ROI consistency, ROI RSA), ``pipeline`` (end to end),
``outputs`` (tables, maps), ``runner`` (from a config file, into the results store), ``cli``.
"""

from cortexalign.sae.analysis import (
    ROI_CATEGORIES,
    best_layer,
    category_selectivity,
    rank_roi_units,
    roi_consistency,
    roi_rsa,
    top_images,
)
from cortexalign.sae.config import SAEConfig
from cortexalign.sae.match import (
    SIMILARITIES,
    MatchResult,
    VoxelDictionary,
    image_unit_activations,
    match_units_to_voxels,
    one_to_one_dictionary,
    permutation_test_best_match,
    similarity,
    voxel_dictionary,
)
from cortexalign.sae.modules import (
    SAE_ARCHITECTURES,
    SparseAutoencoder,
    build_sae,
    resolved_objective,
)
from cortexalign.sae.objectives import OBJECTIVES, MetricAccumulator, SAEMetrics
from cortexalign.sae.pipeline import (
    BrainMapConfig,
    BrainMapResult,
    layer_tokens_from_model,
    load_brainmap_config,
    run_sae_brainmap,
)
from cortexalign.sae.runner import (
    VOXEL_SOURCES,
    BrainMapRun,
    brainmap_scores,
    load_brainmap_stimuli,
    load_brainmap_voxels,
    read_labels,
    run_brainmap,
)
from cortexalign.sae.stream import array_chunks, cache_token_chunks, token_chunks
from cortexalign.sae.train import TrainedSAE, evaluate_sae, load_sae, save_sae, train_sae

__all__ = ["SAEConfig", "resolved_objective", "SAE_ARCHITECTURES", "SparseAutoencoder", "build_sae", "OBJECTIVES",
           "MetricAccumulator", "SAEMetrics", "array_chunks", "token_chunks", "cache_token_chunks",
           "TrainedSAE", "train_sae", "evaluate_sae", "save_sae", "load_sae", "SIMILARITIES",
           "MatchResult", "VoxelDictionary", "image_unit_activations", "similarity",
           "match_units_to_voxels", "voxel_dictionary", "one_to_one_dictionary",
           "permutation_test_best_match", "ROI_CATEGORIES", "best_layer", "rank_roi_units",
           "top_images", "category_selectivity", "roi_consistency", "roi_rsa", "BrainMapConfig",
           "BrainMapResult", "run_sae_brainmap", "layer_tokens_from_model", "load_brainmap_config",
           "VOXEL_SOURCES", "BrainMapRun", "run_brainmap", "brainmap_scores", "load_brainmap_voxels",
           "load_brainmap_stimuli", "read_labels"]
