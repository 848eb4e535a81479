"""The catalogue of data sets and weights: what each entry is, where it comes from, its terms.

An entry (``Source``) names its official source, its terms, its weight, how cortexalign reads it,
and a ``plan`` function that turns filters (``area=VISp``, ``subject=1``) into the list of
``RemoteFile`` s to fetch, each with the checksum its publisher gives where there is one.
Entries register in ``SOURCES`` (``cortexalign fetch --list``), looked up by name with
did-you-mean; ``timm:<name>`` is a prefix entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from cortexalign.registry import Registry

__all__ = ["RemoteFile", "Source", "SOURCES", "register_source", "DIGESTS"]

#: checksum kinds a RemoteFile may carry, strongest first
DIGESTS = ("sha256", "md5", "git_sha1")


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch.

    Attributes
    ----------
    path : where it goes, relative to the entry's folder (the source's own layout, e.g.
        ``ophys_experiment_data/501271265.nwb``).
    url : its official URL (``--mirror`` replaces the host).
    size : exact size in bytes when the publisher states it (else the server's
        ``Content-Length`` is checked).
    sha256, md5 : the digest the publisher states.
    git_sha1 : the git blob id of the file in the official repository (``git ls-tree``), for
        weights committed to a repository.
    server_digest : a digest the server sends with the file: ``"s3-etag"`` (S3's ETag, the MD5
        of a single-part upload) or ``"hf-sha256"`` (the Hugging Face hub's ``X-Linked-Etag``,
        the SHA-256 of an LFS file).
    unpack : ``"zip"``: the download is a zip holding one file ``unpack_member``, which is what
        becomes visible at ``path`` (the archive itself is removed once unpacked).
    size_hint : the approximate size shown by ``--list`` / ``--dry-run`` when ``size`` is unknown.
    """

    path: str
    url: str
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    git_sha1: str | None = None
    server_digest: Literal["s3-etag", "hf-sha256"] | None = None
    unpack: Literal["zip"] | None = None
    unpack_member: str | None = None
    size_hint: int | None = None

    def checksum(self) -> str:
        """How the file is checked, for listings (``"md5"``, ``"S3 ETag"``, ``"size"``)."""
        for kind in DIGESTS:
            if getattr(self, kind):
                return kind.replace("_", "-")
        return {"s3-etag": "S3 ETag", "hf-sha256": "hub sha256"}.get(self.server_digest or "",
                                                                    "size")


@dataclass(frozen=True)
class Source:
    """One catalogue entry.

    Attributes
    ----------
    name : the name ``cortexalign fetch NAME`` takes (``"allen-ophys"``).
    title : one line saying what it is.
    kind : ``"data"`` or ``"weights"``.
    homepage : the official page.
    terms : its licence or terms of use, one line.
    terms_url : where the full terms are.
    weight : how much it weighs, as text (``"375 MB"``, ``"0.1-1 GB per experiment"``).
    loader : how cortexalign reads it (a registered dataset, model or function).
    plan : ``plan(fetcher, filters) -> [RemoteFile]``; may fetch small index tables through
        ``fetcher`` to choose the files.
    filters : filter name -> what it selects (for ``--list`` and errors).
    defaults : filter values used when a filter is not given.
    agreement : text the user must accept with ``--agree-terms`` before anything downloads
        (``None``: no agreement needed).
    doc : the page under ``docs/sources/``.
    """

    name: str
    title: str
    kind: Literal["data", "weights"]
    homepage: str
    terms: str
    terms_url: str
    weight: str
    loader: str
    plan: Callable[[Any, dict[str, Any]], list[RemoteFile]]  # (Fetcher, filters)
    filters: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    agreement: str | None = None
    doc: str = ""


SOURCES: Registry = Registry("catalogue entry")


def register_source(source: Source) -> Source:
    """Add ``source`` to ``SOURCES`` (a duplicate name is a programming error)."""
    SOURCES.add(source.name, source, description=source.title)
    return source
