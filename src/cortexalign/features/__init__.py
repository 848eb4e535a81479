"""Features: batched extraction with pooling, and the content-addressed zarr feature cache."""

from cortexalign.features._cache import EXTRACTION_VERSION, CacheSummary, FeatureCache, feature_key
from cortexalign.features._cache_view import CachedArray, CacheIntegrityError
from cortexalign.features._cache_writer import CacheWriter
from cortexalign.features._export import FEATURE_FORMATS, load_features, save_features
from cortexalign.features._extract import (
    DTYPES,
    PRECISIONS,
    Features,
    extract_features,
    extract_to_cache,
    feature_keys,
)
from cortexalign.features._pooling import POOLINGS, pool

__all__ = ["extract_features", "Features", "feature_keys", "POOLINGS", "pool", "PRECISIONS",
           "DTYPES", "FeatureCache", "CacheSummary", "feature_key", "EXTRACTION_VERSION"]
__all__ += ["CachedArray", "CacheIntegrityError", "CacheWriter", "extract_to_cache"]
__all__ += ["save_features", "load_features", "FEATURE_FORMATS"]
