"""HTTP for the downloader: requests with ranges, and errors that name the URL and the fix.

Only the standard library (``urllib``): redirects are followed (GitHub raw, the Hugging Face
CDN) and keep the ``Range`` header. A server that refuses (4xx/5xx), times out, or answers with
a web page where a data file was expected raises ``FetchError`` naming the URL and what to do.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from email.message import Message
from http.client import HTTPResponse
from urllib.error import HTTPError, URLError
from urllib.request import HTTPRedirectHandler, Request, build_opener, urlopen

from cortexalign.errors import CortexAlignError

__all__ = ["FetchError", "OfflineError", "open_url", "head", "looks_like_html", "ServerInfo",
           "USER_AGENT"]

USER_AGENT = "cortexalign-fetch/0.1 (+https://github.com/cortexalign)"


class FetchError(CortexAlignError):
    """A download failed; the message names the URL, what happened and the fix."""

    def __init__(self, url: str, what: str, fix: str):
        self.url, self.what, self.fix = url, what, fix
        super().__init__(f"{url}: {what}. Fix: {fix}")


class OfflineError(FetchError):
    """A download was needed while offline; the message holds the command that fetches it
    (also in ``command``)."""

    def __init__(self, url: str, what: str, fix: str, command: str = ""):
        self.command = command
        super().__init__(url, what, fix)


@dataclass(frozen=True)
class ServerInfo:
    """What a response said about the file: its full size and the digests it carries."""

    size: int | None
    etag: str | None
    linked_etag: str | None
    content_type: str


def _info(headers: Message, status: int) -> ServerInfo:
    size = None
    content_range = headers.get("Content-Range", "")
    if status == 206 and "/" in content_range:
        total = content_range.rsplit("/", 1)[1]
        size = int(total) if total.isdigit() else None
    elif headers.get("Content-Length", "").isdigit():
        size = int(headers["Content-Length"])
    return ServerInfo(size, _unquote(headers.get("ETag")), _unquote(headers.get("X-Linked-Etag")),
                      headers.get("Content-Type", ""))


def _unquote(value: str | None) -> str | None:
    return value.strip().removeprefix("W/").strip('"') if value else None


def _refused(url: str, err: HTTPError) -> FetchError:
    fixes = {
        401: "the server wants a login: this source needs credentials or an agreement page; "
             "download it in a browser and pass the folder, or use --mirror",
        403: "the server refused access: check the URL (a renamed file or a bucket that now "
             "needs requester-pays), or use --mirror with an institutional copy",
        404: "the file is not at this URL: the source may have moved it; with --mirror, check "
             "the mirror holds the official layout",
        429: "the server is rate limiting: wait a few minutes and rerun (partial files resume), "
             "or lower --jobs",
    }
    fix = fixes.get(err.code, "the server failed; rerun later (partial files resume) or use "
                              "--mirror" if err.code >= 500 else "check the URL or use --mirror")
    return FetchError(url, f"the server answered HTTP {err.code} {err.reason}", fix)


def _unreachable(url: str, err: BaseException) -> FetchError:
    if isinstance(err, (TimeoutError, socket.timeout)) or "timed out" in str(err):
        return FetchError(url, "the server did not answer in time (timeout)",
                          "rerun later (partial files resume), raise --timeout, or use --mirror")
    return FetchError(url, f"cannot connect ({getattr(err, 'reason', err)})",
                      "check the network (a proxy? HTTPS_PROXY is honoured), use --mirror, or "
                      "set CORTEXALIGN_OFFLINE=1 to work from files already fetched")


def open_url(url: str, start: int = 0, timeout: float = 30.0
             ) -> tuple[HTTPResponse | None, ServerInfo]:
    """GET ``url`` from byte ``start`` (a ``Range`` request when ``start > 0``); the response is
    ``None`` when the server says the range starts past the end (HTTP 416: nothing is left)."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        resp = urlopen(Request(url, headers=headers), timeout=timeout)  # noqa: S310 (http/https)
    except HTTPError as err:
        if err.code == 416:  # range past the end: the partial file already holds everything
            return None, ServerInfo(None, None, None, "")
        raise _refused(url, err) from None
    except (URLError, OSError) as err:
        raise _unreachable(url, err) from None
    return resp, _info(resp.headers, resp.status)


class _NoRedirect(HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102
        return None


def head(url: str, timeout: float = 30.0, follow: bool = True) -> ServerInfo:
    """HEAD ``url``: the size and digests the server states (``follow=False`` reads the first
    answer, where the Hugging Face hub puts ``X-Linked-Etag``)."""
    req = Request(url, method="HEAD", headers={"User-Agent": USER_AGENT,
                                               "Accept-Encoding": "identity"})
    opener = build_opener() if follow else build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=timeout) as resp:
            return _info(resp.headers, resp.status)
    except HTTPError as err:
        if not follow and 300 <= err.code < 400:  # the redirect itself carries the headers
            return _info(err.headers, err.code)
        raise _refused(url, err) from None
    except (URLError, OSError) as err:
        raise _unreachable(url, err) from None


def looks_like_html(first_bytes: bytes, content_type: str, path: str) -> bool:
    """Whether a response that should be ``path`` is a web page (an error, login or quota page)."""
    if path.lower().endswith((".html", ".htm")):
        return False
    if "text/html" in content_type.lower():
        return True
    head_text = first_bytes[:512].lstrip().lower()
    return head_text.startswith((b"<!doctype html", b"<html"))
