"""Sparse autoencoders on model layers, matched to voxels (SAE-BrainMap, arXiv 2506.11123)."""

from cortexalign.sae.config import SAEConfig
from cortexalign.sae.modules import SAE_ARCHITECTURES, SparseAutoencoder, build_sae
from cortexalign.sae.objectives import OBJECTIVES, MetricAccumulator, SAEMetrics
from cortexalign.sae.stream import array_chunks, cache_token_chunks, token_chunks
from cortexalign.sae.train import TrainedSAE, evaluate_sae, load_sae, save_sae, train_sae

__all__ = ["SAEConfig", "SAE_ARCHITECTURES", "SparseAutoencoder", "build_sae", "OBJECTIVES",
           "MetricAccumulator", "SAEMetrics", "array_chunks", "token_chunks", "cache_token_chunks",
           "TrainedSAE", "train_sae", "evaluate_sae", "save_sae", "load_sae"]
