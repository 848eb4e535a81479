"""``timm:<name>``: timm's pretrained weights, fetched into the Hugging Face cache timm reads.

The file is the one ``timm.create_model(name, pretrained=True)`` would download (the model's
``hf_hub_id`` and ``model.safetensors``, else ``pytorch_model.bin`` or the cfg's own file name),
fetched with ``huggingface_hub.hf_hub_download``, so it lands in the hub cache (``HF_HOME``) and
timm finds it there offline: no second cache. A mirror of ``huggingface.co`` is passed as the
hub endpoint. The blob is checked against the SHA-256 the hub names it by (LFS files).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from cortexalign.errors import InputError, UnknownNameError
from cortexalign.fetch._catalogue import SOURCES, Source
from cortexalign.fetch._env import offline_reason
from cortexalign.fetch._http import FetchError, OfflineError

__all__ = ["TimmWeights", "timm_weights", "fetch_timm", "timm_cached"]

_HUB = "https://huggingface.co"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CANDIDATES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class TimmWeights:
    """Where timm gets ``name``'s weights: a hub repository and the file names it tries."""

    name: str
    repo_id: str
    filenames: tuple[str, ...]
    revision: str | None


def timm_weights(name: str) -> TimmWeights:
    """The hub repository and files of timm model ``name`` (``vit_base_patch16_224`` or with a
    tag, ``vit_base_patch16_clip_224.openai``)."""
    import timm
    from timm.models import get_pretrained_cfg

    arch = name.split(".", 1)[0]
    if not timm.is_model(arch):
        raise UnknownNameError("timm model", name, timm.list_models(),
                               fix="use a name from timm.list_models(pretrained=True)")
    cfg = get_pretrained_cfg(name)  # a bare architecture resolves to its default tag
    if cfg is None or not getattr(cfg, "hf_hub_id", None):
        raise InputError("name", "a timm model whose weights are on the Hugging Face hub",
                         f"{name!r} (no hub weights in timm's pretrained config)",
                         "pick a tag with hub weights: timm.list_pretrained('" + arch + "*')")
    repo, _, revision = str(cfg.hf_hub_id).partition("@")
    files = ((cfg.hf_hub_filename,) if getattr(cfg, "hf_hub_filename", None) else ()) + _CANDIDATES
    return TimmWeights(name, repo, tuple(dict.fromkeys(files)), revision or None)


def timm_cached(weights: TimmWeights) -> Path | None:
    """The weights file already in the hub cache, if any."""
    from huggingface_hub import try_to_load_from_cache

    for filename in weights.filenames:
        hit = try_to_load_from_cache(weights.repo_id, filename, revision=weights.revision)
        if isinstance(hit, str):
            return Path(hit)
    return None


def fetch_timm(name: str, mirrors: dict[str, str] | None = None, dry_run: bool = False
               ) -> tuple[TimmWeights, Path | None, str]:
    """Fetch ``timm:<name>`` into the hub cache: ``(weights, path, checked)``; ``path`` is
    ``None`` on a dry run of missing weights. Offline, fails at once with the command."""
    weights = timm_weights(name)
    cached = timm_cached(weights)
    if cached is not None or dry_run:
        return weights, cached, "present" if cached is not None else "to fetch"
    endpoint = (mirrors or {}).get("huggingface.co", (mirrors or {}).get("*", _HUB))
    url = f"{endpoint}/{weights.repo_id}"
    reason = offline_reason(url)
    if reason is not None:
        raise OfflineError(url, f"timm weights {name!r} are not in the hub cache and offline "
                           f"({reason})", f"run `cortexalign fetch timm:{name}` where the network "
                           "is reachable (or with --mirror), or pass weights=PATH",
                           command=f"cortexalign fetch timm:{name}")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    last: Exception | None = None
    for filename in weights.filenames:
        try:
            path = Path(hf_hub_download(weights.repo_id, filename, revision=weights.revision,
                                        endpoint=endpoint))
        except EntryNotFoundError as err:
            last = err
            continue
        except Exception as err:  # hub, network and HTTP errors of all kinds
            raise FetchError(f"{url}/resolve/main/{filename}", f"the hub download failed "
                             f"({type(err).__name__}: {str(err)[:200]})",
                             "check the network or --mirror; rerun to resume") from err
        return weights, path, _check_blob(path)
    raise FetchError(url, f"none of {list(weights.filenames)} is in the repository ({last})",
                     "report it: timm's config names a file the hub does not have")


def _check_blob(path: Path) -> str:
    """The hub stores an LFS file under its SHA-256: recompute it (the cache keeps the blob)."""
    blob = path.resolve()
    if not _SHA256.match(blob.name):
        return "size (hub)"
    h = hashlib.sha256()
    with open(blob, "rb") as f:
        while chunk := f.read(1 << 23):
            h.update(chunk)
    if h.hexdigest() != blob.name:
        blob.unlink()
        path.unlink(missing_ok=True)
        raise FetchError(str(path), f"the cached file's sha256 {h.hexdigest()} is not the hub's "
                         f"{blob.name}; it was deleted", "rerun to download it again")
    return "hub sha256"


def _no_plan(fetcher, filters):
    raise AssertionError("timm:<name> is fetched through the hub cache (fetch_timm), not planned")


SOURCES.register_prefix("timm", description="timm pretrained weights by name")(Source(
    "timm:<name>", "timm pretrained weights by name, into the Hugging Face cache timm reads",
    "weights", "https://huggingface.co/timm", "per model (its model card)",
    "https://huggingface.co/timm", "per model",
    "load_model('timm:<name>') finds them in the hub cache", _no_plan,
    doc="docs/sources/timm.md"))
