"""Features: batched extraction with pooling, and the content-addressed zarr feature cache."""

from cortexalign.features._batching import BatchShrink
from cortexalign.features._cache import EXTRACTION_VERSION, CacheSummary, FeatureCache, feature_key
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
    Features,
    extract_features,
    extract_to_cache,
    feature_keys,
)
from cortexalign.features._maps import (
    MAP_FEATURES,
    MapFeature,
    extract_map_features,
    extract_maps,
    extract_maps_to_cache,
    map_entries,
    map_layers,
    map_options,
)
from cortexalign.features._pooling import POOLINGS, pool

__all__ = ["extract_features", "Features", "feature_keys", "POOLINGS", "pool", "PRECISIONS",
           "DTYPES", "FeatureCache", "CacheSummary", "feature_key", "EXTRACTION_VERSION"]
__all__ += ["CachedArray", "CacheIntegrityError", "CacheWriter", "extract_to_cache"]
__all__ += ["save_features", "load_features", "FEATURE_FORMATS", "check_destination", "check_new_file",
            "link_new"]
__all__ += ["MAP_FEATURES", "MapFeature", "map_layers", "map_entries", "extract_maps",
            "extract_map_features", "extract_maps_to_cache", "map_options"]
__all__ += ["ARRAY_NAME", "META_FILE", "sha256_of", "BatchShrink"]
