"""Where fetched files live, which host serves them, and whether the network may be used.

One cache directory holds everything ``cortexalign fetch`` downloads (``CORTEXALIGN_HOME``, by
default ``$XDG_CACHE_HOME/cortexalign`` or ``~/.cache/cortexalign``), one folder per catalogue
entry. timm weights are the exception: they go to the Hugging Face hub cache timm itself reads,
so there is never a second copy.

Offline is decided before any request: ``CORTEXALIGN_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` say so
outright; otherwise one TCP connection to the host (a short timeout) tells whether it can be
reached. Anything that needs a download then fails at once with the ``cortexalign fetch``
command that would get it (no retries, no waiting on a resolver).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

from cortexalign.errors import InputError

__all__ = ["cortexalign_home", "source_dir", "offline_reason", "host_reachable", "apply_mirror",
           "parse_mirrors", "MIRROR_ENV", "OFFLINE_ENVS", "HOME_ENV"]

HOME_ENV = "CORTEXALIGN_HOME"
MIRROR_ENV = "CORTEXALIGN_MIRROR"
OFFLINE_ENVS = ("CORTEXALIGN_OFFLINE", "HF_HUB_OFFLINE")
_TRUE = {"1", "true", "yes", "on"}
_PROBE_TIMEOUT_S = 1.5
_reachable: dict[str, bool] = {}


def cortexalign_home() -> Path:
    """The cache root: ``$CORTEXALIGN_HOME``, else ``$XDG_CACHE_HOME/cortexalign``, else
    ``~/.cache/cortexalign``."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "cortexalign"


def source_dir(name: str, to: str | Path | None = None) -> Path:
    """The folder of catalogue entry ``name``: ``to`` when given, else ``<home>/<name>``."""
    return Path(to).expanduser() if to is not None else cortexalign_home() / name


def offline_reason(url: str | None = None) -> str | None:
    """Why downloads are impossible now (an environment variable, or ``url``'s host cannot be
    reached), or ``None`` when they may go ahead. A ``file://`` URL (a mirror on a shared disk)
    is always reachable."""
    if url is not None and url.startswith("file:"):
        return None
    for var in OFFLINE_ENVS:
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return f"{var}={os.environ[var]} is set"
    if url is not None:
        host = urlsplit(url).hostname or ""
        if host and not host_reachable(url):
            return f"{host} cannot be reached (no network?)"
    return None


def host_reachable(url: str) -> bool:
    """Whether a TCP connection to ``url``'s host and port opens within 1.5 s (cached per host)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    key = f"{host}:{port}"
    if key not in _reachable:
        try:
            with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S):
                _reachable[key] = True
        except OSError:
            _reachable[key] = False
    return _reachable[key]


def parse_mirrors(spec: str | list[str] | None) -> dict[str, str]:
    """Mirror mapping from ``--mirror`` values or ``$CORTEXALIGN_MIRROR``.

    Each item is ``URL`` (replaces every official host) or ``HOST=URL`` (replaces that host
    only); items are separated by commas or given as a list. Returns host (``"*"`` for all) ->
    base URL without a trailing slash.
    """
    if spec is None:
        spec = os.environ.get(MIRROR_ENV, "")
    items = spec if isinstance(spec, list) else [spec]
    out: dict[str, str] = {}
    for item in (part.strip() for raw in items for part in str(raw).split(",")):
        if not item:
            continue
        host, sep, base = item.partition("=")
        if not sep:
            host, base = "*", item
        if urlsplit(base).scheme not in ("http", "https", "file"):
            raise InputError("mirror", "URL or HOST=URL with an http(s) URL",
                             repr(item), "e.g. --mirror https://mirror.example.org/cortexalign "
                             "or --mirror dl.fbaipublicfiles.com=http://10.0.0.5/fb")
        out[host.strip()] = base.rstrip("/")
    return out


def apply_mirror(url: str, mirrors: dict[str, str]) -> str:
    """``url`` with its scheme and host replaced by the mirror for that host (path kept)."""
    if not mirrors:
        return url
    parts = urlsplit(url)
    base = mirrors.get(parts.hostname or "", mirrors.get("*"))
    if base is None:
        return url
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    return base + tail
