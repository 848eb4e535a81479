"""Features: one extraction path for every feature kind, and the content-addressed zarr cache.

``extract`` runs a kind of ``FEATURE_KINDS`` (pooled activations, a spiking model's time-averaged
outputs, attention or conv maps) through the one batch loop; ``plan_extraction`` decides from a
memory budget whether the values are held in memory or streamed into the ``FeatureCache``.
``extract_features`` is ``extract`` for pooled activations; ``extract_kinds`` extracts the
attention and conv maps of one model from the same forward passes.
"""

from cortexalign.features._batching import CPU_BATCH_SIZE, BatchShrink
from cortexalign.features._cache import EXTRACTION_VERSION, CacheSummary, FeatureCache, feature_key
from cortexalign.features._cache_remote import RemoteFeatureCache  # registers URL roots
from cortexalign.features._cache_view import CachedArray, CacheIntegrityError
from cortexalign.features._cache_writer import ARRAY_NAME, META_FILE, CacheWriter, sha256_of
from cortexalign.features._export import (
    FEATURE_FORMATS,
    check_destination,
    check_new_file,
    link_new,
    load_features,
    save_features,
)
from cortexalign.features._extract import (
    DTYPES,
    PRECISIONS,
    ExtractionPlan,
    Features,
    extract,
    extract_features,
    feature_keys,
    plan_extraction,
)
from cortexalign.features._kinds import (
    FEATURE_KINDS,
    SHARED_FORWARD,
    FeatureKind,
    kind_layers,
    kind_options,
    resolve_kind,
    shared_batch,
)
from cortexalign.features._pooling import POOLINGS, pool
from cortexalign.features._shared import extract_kinds

__all__ = ["extract", "extract_features", "Features", "feature_keys", "plan_extraction",
           "ExtractionPlan", "POOLINGS", "pool", "PRECISIONS", "DTYPES", "FeatureCache",
           "CacheSummary", "feature_key", "EXTRACTION_VERSION"]
__all__ += ["FEATURE_KINDS", "FeatureKind", "kind_layers", "kind_options", "resolve_kind",
            "SHARED_FORWARD", "shared_batch", "extract_kinds"]
__all__ += ["CachedArray", "CacheIntegrityError", "CacheWriter", "RemoteFeatureCache"]
__all__ += ["save_features", "load_features", "FEATURE_FORMATS", "check_destination", "check_new_file",
            "link_new"]
__all__ += ["ARRAY_NAME", "META_FILE", "sha256_of", "BatchShrink", "CPU_BATCH_SIZE"]
