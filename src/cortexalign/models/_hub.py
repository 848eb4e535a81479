"""Hub weights without the hub's retries: find a timm model's weights in the local Hugging Face
cache, and fail at once, with the fix, when they are not there and the hub cannot be reached.

``huggingface_hub`` retries a failed request five times with back-off, for each of the two file
names timm tries: about 90 s on a machine without network before the error. One socket probe
(``HUB_PROBE_TIMEOUT_S``) decides instead.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from cortexalign.errors import InputError
from cortexalign.fetch import offline_reason

__all__ = ["cached_hub_file", "hub_reachable", "timm_hub_overlay", "HUB_PROBE_TIMEOUT_S"]

HUB_PROBE_TIMEOUT_S = 3.0
#: only safetensors: a cached pickle is never loaded (timm would torch.load it)
_WEIGHT_FILES = ("model.safetensors",)


def hub_reachable(timeout_s: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the Hugging Face endpoint (``HF_ENDPOINT``) opens in time;
    False at once under ``HF_HUB_OFFLINE=1`` or ``CORTEXALIGN_OFFLINE=1``."""
    if offline_reason() is not None:
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def cached_hub_file(repo_id: str) -> str | None:
    """The path of a weights file of ``repo_id`` in the local Hugging Face cache, or None."""
    from huggingface_hub import try_to_load_from_cache

    for filename in _WEIGHT_FILES:
        path = try_to_load_from_cache(repo_id, filename)
        if isinstance(path, str) and os.path.isfile(path):
            return path
    return None


def timm_hub_overlay(arch: str) -> dict[str, str]:
    """How timm should load ``arch``'s pretrained weights without waiting on the hub.

    Returns ``{}`` when the hub is reachable (timm downloads as usual), ``{"file": PATH}`` when
    it is not but the weights are in the local cache (pass it as ``pretrained_cfg_overlay``).

    Raises
    ------
    InputError
        At once, when the weights are neither cached nor downloadable; the fix names the
        local-weights and untrained routes.
    """
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if repo is None:  # no hub entry: timm's own URL download decides (torch.hub cache)
        return {}
    cached = cached_hub_file(repo)
    if hub_reachable():
        return {}
    if cached is not None:
        return {"file": cached}
    raise InputError("pretrained", f"timm hub weights for {arch!r} (Hugging Face {repo!r}), "
                     "cached or downloadable", "no cached copy and no connection to the hub",
                     f"run `cortexalign fetch timm:{arch}` where the network is reachable (it "
                     "fills the hub cache timm reads), or pass weights=PATH (a local "
                     ".safetensors or torch state_dict file), or untrained=True for the "
                     "untrained control")
