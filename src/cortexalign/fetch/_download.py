"""The downloader: resumable, checksummed, atomic, parallel within a polite limit.

Each file is streamed to ``<root>/.partial/<path>.part`` under a lock file beside it, so two
fetches of one file (two commands, two threads) download it once: the second waits for the lock
and finds the file done. A broken connection resumes from the partial file with an HTTP range
request (``retries`` times, then the same command resumes it later). Only after its size and
checksum are verified is the file renamed to ``<root>/<path>``: a file at its final path is
always complete and checked, and a corrupted download is deleted, never made visible.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

from filelock import FileLock

from cortexalign.errors import InputError
from cortexalign.fetch._catalogue import RemoteFile
from cortexalign.fetch._env import apply_mirror, offline_reason
from cortexalign.fetch._http import (
    FetchError,
    OfflineError,
    ServerInfo,
    head,
    looks_like_html,
    open_url,
)

__all__ = ["Fetcher", "FetchedFile", "MAX_JOBS", "PARTIAL_DIR"]

MAX_JOBS = 8          # parallel downloads at most (servers throttle or ban more)
PARTIAL_DIR = ".partial"
_CHUNK = 1 << 20
_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART = re.compile(r"^([0-9a-f]{32})-(\d+)$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# part sizes S3 clients use for multipart uploads (aws cli and boto3: 8 MiB; others 5-100 MiB)
_PART_SIZES = tuple(m << 20 for m in (8, 16, 5, 10, 15, 32, 50, 64, 100))


class _Interrupted(Exception):
    """The connection broke mid-file; what arrived is kept in the partial file."""

    def __init__(self, received: int, cause: BaseException | None = None):
        super().__init__(received)
        self.received = received
        self.timed_out = isinstance(cause, TimeoutError) or "timed out" in str(cause or "")


@dataclass(frozen=True)
class FetchedFile:
    """One file of a fetch: where it is, what happened, and how it was checked."""

    file: RemoteFile
    path: Path
    status: str          # "present" (already there), "downloaded", or "resumed" (from a
    #                      partial file, or after a broken connection)
    transferred: int     # bytes received in this fetch
    checked: str         # "md5", "sha256", "git-sha1", "S3 ETag", "hub sha256", "size", ...


class Fetcher:
    """Downloads ``RemoteFile`` s into ``root`` (see the module docstring).

    Parameters
    ----------
    root : the entry's folder.
    command : the ``cortexalign fetch ...`` command that gets these files (offline errors name
        it).
    mirrors : host -> base URL (``parse_mirrors``).
    jobs : files downloaded at once (1..8).
    timeout : seconds a connection may stay silent.
    retries : resumptions after a broken connection before giving up.
    progress : a ``rich.progress.Progress`` to draw bars on, or ``None``.
    """

    def __init__(self, root: str | Path, command: str, *, mirrors: dict[str, str] | None = None,
                 jobs: int = 4, timeout: float = 30.0, retries: int = 2, progress=None):
        if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= MAX_JOBS:
            raise InputError("jobs", f"an integer from 1 to {MAX_JOBS} (parallel downloads)",
                             repr(jobs), f"pass --jobs 4 (more than {MAX_JOBS} gets throttled)")
        self.root = Path(root)
        self.command = command
        self.mirrors = dict(mirrors or {})
        self.jobs, self.timeout, self.retries = jobs, float(timeout), int(retries)
        self.progress = progress
        self._done: dict[str, FetchedFile] = {}

    # -- what is there --------------------------------------------------------------------
    def local_path(self, rf: RemoteFile) -> Path:
        """Where ``rf`` is once fetched."""
        return self.root / rf.path

    def url(self, rf: RemoteFile) -> str:
        """The URL ``rf`` is fetched from (the mirror's when one serves its host)."""
        return apply_mirror(rf.url, self.mirrors)

    def missing(self, files: list[RemoteFile]) -> list[RemoteFile]:
        """The files of ``files`` not yet at their final path."""
        return [rf for rf in files if not self.local_path(rf).is_file()]

    def require_online(self, files: list[RemoteFile]) -> None:
        """Raise ``OfflineError`` at once, naming the fetch command, when ``files`` need a
        download and the network may not be used."""
        if not files:
            return
        reason = offline_reason(self.url(files[0]))
        if reason is not None:
            n = len(files)
            raise OfflineError(self.url(files[0]), f"{n} file{'s' * (n > 1)} to download but "
                               f"offline ({reason})", f"run `{self.command}` where the network "
                               "is reachable (or with --mirror), then rerun", command=self.command)

    def sizes(self, files: list[RemoteFile]) -> dict[str, int | None]:
        """path -> size in bytes: the published size, else the server's (HEAD, in parallel),
        else the hint; ``None`` when unknown. Offline, no request is made."""
        out = {rf.path: rf.size for rf in files}
        ask = [rf for rf in files if rf.size is None]
        if ask and offline_reason(self.url(ask[0])) is None:
            def size_of(rf: RemoteFile) -> int | None:
                try:
                    return head(self.url(rf), self.timeout).size
                except FetchError:
                    return None
            with ThreadPoolExecutor(self.jobs) as pool:
                for rf, size in zip(ask, pool.map(size_of, ask), strict=True):
                    out[rf.path] = size
        return {p: (s if s is not None else next(rf.size_hint for rf in files if rf.path == p))
                for p, s in out.items()}

    # -- fetching -------------------------------------------------------------------------
    def fetch(self, files: list[RemoteFile]) -> list[FetchedFile]:
        """Fetch every file not yet present, ``jobs`` at a time; the files in order.

        Raises ``OfflineError`` before any request when offline, ``FetchError`` naming the URL
        when a download fails (the others finish first; their files stay).
        """
        files = list({rf.path: rf for rf in files}.values())
        self.require_online(self.missing(files))
        results: dict[str, FetchedFile] = {}
        errors: list[FetchError] = []
        overall = (self.progress.add_task(f"{len(files)} files", total=len(files))
                   if self.progress is not None and len(files) > 1 else None)
        with ThreadPoolExecutor(min(self.jobs, max(1, len(files)))) as pool:
            futures = {pool.submit(self.fetch_one, rf): rf for rf in files}
            for fut in as_completed(futures):
                try:
                    results[futures[fut].path] = fut.result()
                except FetchError as err:
                    errors.append(err)
                if overall is not None:
                    self.progress.advance(overall)
        if errors:
            more = f" ({len(errors) - 1} more failed the same way or otherwise)" \
                if len(errors) > 1 else ""
            raise FetchError(errors[0].url, errors[0].what + more, errors[0].fix)
        return [results[rf.path] for rf in files]

    def fetch_one(self, rf: RemoteFile) -> FetchedFile:
        """Fetch ``rf`` (see the module docstring); present files are returned untouched."""
        final = self.local_path(rf)
        if rf.path in self._done:  # fetched earlier by this fetcher (an index table of a plan)
            return self._done[rf.path]
        if final.is_file():
            return FetchedFile(rf, final, "present", 0, "verified when fetched")
        part = self.root / PARTIAL_DIR / (rf.path + ".part")
        part.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(part.with_suffix(".lock"))):
            if final.is_file():  # another fetch finished it while this one waited
                return FetchedFile(rf, final, "present", 0, "verified when fetched")
            url = self.url(rf)
            self.require_online([rf])
            hub_sha256 = self._hub_sha256(rf, url)
            resumed_from = part.stat().st_size if part.exists() else 0
            received = cuts = 0
            for attempt in range(self.retries + 1):
                try:
                    info, n = self._transfer(rf, url, part)
                    received += n
                    break
                except _Interrupted as cut:
                    received += cut.received
                    cuts += 1
                    if attempt == self.retries:
                        have = part.stat().st_size if part.exists() else 0
                        how = "stopped sending (timeout)" if cut.timed_out else "broke"
                        raise FetchError(url, f"the connection {how} {self.retries + 1} times "
                                         f"({have} bytes kept in {part})", "rerun the same "
                                         "command: it resumes from the partial file (or raise "
                                         "--timeout, or use --mirror)") from None
            checked = self._verify(rf, url, part, info, hub_sha256)
            self._publish(rf, part, final)
        done = FetchedFile(rf, final, "resumed" if resumed_from or cuts else "downloaded",
                           received, checked)
        self._done[rf.path] = done
        return done

    def _hub_sha256(self, rf: RemoteFile, url: str) -> str | None:
        if rf.server_digest != "hf-sha256":
            return None
        info = head(url, self.timeout, follow=False)
        digest = (info.linked_etag or info.etag or "").lower()
        return digest if _SHA256_HEX.match(digest) else None

    def _transfer(self, rf: RemoteFile, url: str, part: Path) -> tuple[ServerInfo, int]:
        start = part.stat().st_size if part.exists() else 0
        resp, info = open_url(url, start, self.timeout)
        if resp is None:  # HTTP 416: the partial file already holds every byte
            return head(url, self.timeout), 0
        received = 0
        with resp, self._bar(rf, info.size, start) as bar:
            if start and resp.status != 206:  # the server ignored the range: start over
                start = 0
            try:
                first = resp.read(_CHUNK)
            except (HTTPException, OSError) as err:
                raise _Interrupted(0, err) from err
            if looks_like_html(first if not start else b"", info.content_type, rf.path):
                raise FetchError(url, f"the server sent a web page ({info.content_type or 'HTML'})"
                                 " instead of the file (an error, login or quota page)",
                                 "open the URL in a browser to read the page; check the URL "
                                 "or --mirror, or retry later")
            with open(part, "ab" if start else "wb") as out:
                chunk = first
                while chunk:
                    try:
                        out.write(chunk)
                    except OSError as err:  # disk full, quota, permissions: not the network
                        raise FetchError(url, f"cannot write {part} ({err.strerror or err})",
                                         "free disk space, or fetch elsewhere with --to DIR or "
                                         "CORTEXALIGN_HOME (the partial file resumes)") from err
                    received += len(chunk)
                    if bar is not None:
                        self.progress.advance(bar, len(chunk))
                    try:
                        chunk = resp.read(_CHUNK)
                    except (HTTPException, OSError) as err:
                        raise _Interrupted(received, err) from err
        if info.size is not None and part.stat().st_size < info.size:
            raise _Interrupted(received)
        return info, received

    @contextmanager
    def _bar(self, rf: RemoteFile, total: int | None, start: int) -> Iterator[int | None]:
        if self.progress is None:
            yield None
            return
        task = self.progress.add_task(Path(rf.path).name, total=total, completed=start)
        try:
            yield task
        finally:
            self.progress.remove_task(task)

    def _verify(self, rf: RemoteFile, url: str, part: Path, info: ServerInfo,
                hub_sha256: str | None) -> str:
        size = part.stat().st_size
        want_size = rf.size if rf.size is not None else info.size
        if want_size is not None and size != want_size:
            self._reject(part, url, f"{want_size} bytes", f"{size} bytes")
        etag = (info.etag or "").lower() if rf.server_digest == "s3-etag" else ""
        wanted = {"sha256": rf.sha256 or hub_sha256, "md5": rf.md5 or
                  (etag if _MD5_HEX.match(etag) else None), "git_sha1": rf.git_sha1}
        digests = _digests(part, size, [k for k, v in wanted.items() if v])
        for kind, expected in wanted.items():
            if expected and digests[kind] != expected.lower():
                self._reject(part, url, f"{kind.replace('_', '-')} {expected}",
                             f"{kind.replace('_', '-')} {digests[kind]}")
        labels = {"sha256": "hub sha256" if hub_sha256 and not rf.sha256 else "sha256",
                  "md5": "S3 ETag md5" if etag and not rf.md5 else "md5", "git_sha1": "git-sha1"}
        checked = [labels[k] for k, v in wanted.items() if v]
        if rf.server_digest == "s3-etag" and _MULTIPART.match(etag):
            if _multipart_matches(part, size, etag):
                checked.append("S3 multipart ETag")
        return ", ".join(checked) or ("size" if want_size is not None else "none published")

    @staticmethod
    def _reject(part: Path, url: str, expected: str, received: str) -> None:
        part.unlink(missing_ok=True)
        raise FetchError(url, f"the download does not match: expected {expected}, received "
                         f"{received}; it was deleted and nothing was made visible",
                         "rerun to download it again; if it fails again, the server (or "
                         "mirror) holds a different file than the one published")

    @staticmethod
    def _publish(rf: RemoteFile, part: Path, final: Path) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        if rf.unpack == "zip":
            tmp = final.with_name(final.name + ".unpacking")
            with zipfile.ZipFile(part) as zf:
                member = next((n for n in zf.namelist()
                               if Path(n).name == (rf.unpack_member or final.name)), None)
                if member is None:
                    raise FetchError(rf.url, f"the archive holds no {rf.unpack_member!r} "
                                     f"({zf.namelist()[:5]})", "report it: the source changed")
                with zf.open(member) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
            os.replace(tmp, final)
            part.unlink()
            return
        with open(part, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(part, final)


def _digests(path: Path, size: int, kinds: list[str]) -> dict[str, str]:
    """The hex digests ``kinds`` (sha256, md5, git_sha1) of ``path`` in one pass."""
    hashers = {k: (hashlib.sha1() if k == "git_sha1" else hashlib.new(k)) for k in kinds}
    if "git_sha1" in hashers:  # a git blob id hashes "blob <size>\0" then the content
        hashers["git_sha1"].update(f"blob {size}\0".encode())
    if hashers:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK * 8):
                for h in hashers.values():
                    h.update(chunk)
    return {k: h.hexdigest() for k, h in hashers.items()}


def _multipart_matches(path: Path, size: int, etag: str) -> bool:
    """Whether ``path`` gives S3's multipart ETag ``etag`` for a common part size (the part
    size is not published: sizes whose part count differs are skipped; no match means the part
    size is unknown, not that the file is wrong)."""
    m = _MULTIPART.match(etag)
    n_parts = int(m.group(2))
    for part_size in _PART_SIZES:
        if -(-size // part_size) != n_parts:
            continue
        joined = hashlib.md5()
        with open(path, "rb") as f:
            while block := f.read(part_size):
                joined.update(hashlib.md5(block).digest())
        if joined.hexdigest() == m.group(1):
            return True
    return False
