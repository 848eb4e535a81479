"""Fetch real data and weights: one catalogue, one cache, checksummed, resumable, offline-safe.

``cortexalign fetch NAME [KEY=VALUE ...]`` (or ``fetch(name, filters)``) downloads a catalogue
entry from its official source into ``$CORTEXALIGN_HOME/<name>`` (default
``~/.cache/cortexalign``), in the source's own layout; ``--list`` shows every entry with its
weight and terms, ``--dry-run`` what would be fetched. Files are verified (publisher checksum or
server digest, and size) before they appear at their final path. Offline
(``CORTEXALIGN_OFFLINE=1``, ``HF_HUB_OFFLINE=1`` or no route to the host) anything that needs a
download fails at once with the command that would fetch it.

Entries: ``allen-ophys``, ``allen-ecephys``, ``allen-natural-scenes``, ``nsd`` (data);
``sam-vit-b/l/h``, ``sam2-hiera-t/s/b-plus/l``, ``mobile-sam``, ``efficient-sam-vit-t/s``,
``edge-sam``, ``edge-sam-3x``, ``clip-vit-b16``, ``open-clip-vit-b16`` (weights);
``timm:<name>`` (timm weights in the Hugging Face cache). A config names an entry as a source (``source: allen-ophys``) and a run
fetches what is missing first (``fetch_config_sources``; importing ``cortexalign.fetch.sources``
registers the entries as datasets).

This package imports only the standard library and cortexalign's errors and registry at import
time, so any layer may use it.
"""

from cortexalign.fetch import _allen, _nsd, _timm, _weights  # noqa: F401  (register entries)
from cortexalign.fetch._api import (
    FetchPlan,
    FetchResult,
    fetch,
    fetch_command,
    get_source,
    is_weights_entry,
    list_sources,
    plan,
    weights_file,
    weights_path,
)
from cortexalign.fetch._catalogue import SOURCES, RemoteFile, Source
from cortexalign.fetch._config import fetch_config_sources, prefetch_config_file
from cortexalign.fetch._download import MAX_JOBS, FetchedFile, Fetcher
from cortexalign.fetch._env import cortexalign_home, offline_reason, source_dir
from cortexalign.fetch._filters import parse_filters
from cortexalign.fetch._http import FetchError, OfflineError
from cortexalign.fetch._weights import MODEL_CHECKPOINTS, WEIGHT_FILES, checkpoint_entry

__all__ = ["SOURCES", "Source", "RemoteFile", "FetchPlan", "FetchResult", "FetchedFile",
           "Fetcher", "FetchError", "OfflineError", "MAX_JOBS", "fetch", "plan",
           "fetch_command", "get_source", "list_sources", "cortexalign_home", "source_dir",
           "offline_reason", "MODEL_CHECKPOINTS", "WEIGHT_FILES", "checkpoint_entry",
           "fetched_checkpoint", "weights_path", "parse_filters", "fetch_config_sources",
           "prefetch_config_file", "weights_file", "is_weights_entry"]


def fetched_checkpoint(model_name: str):
    """The fetched official checkpoint of registered model ``model_name`` (a ``Path``), or
    ``None`` when the model has no catalogue entry or it has not been fetched."""
    entry = checkpoint_entry(model_name)
    if entry is None:
        return None
    path = source_dir(entry) / WEIGHT_FILES[entry].path
    return path if path.is_file() else None
