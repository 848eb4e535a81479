"""A local HTTP server for the fetch tests: the standard library's threaded ``http.server`` on
127.0.0.1, serving files at the paths of their official URLs (so ``--mirror`` points at it).

It answers HEAD and GET, honours ``Range: bytes=N-`` (206 + Content-Range), sends S3-style ETags
(the MD5 of the content) and, for paths marked ``hub``, the Hugging Face hub's ``X-Linked-Etag``
(the SHA-256). Per-path faults: ``cut`` (close the connection after that many body bytes, on the
first ``cut_times`` GETs), ``html`` (a 200 text/html error page), ``status`` (an HTTP error),
``corrupt`` (flipped bytes with the ETag of the original). Every request is logged.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Served:
    body: bytes
    cut: int | None = None
    cut_times: int = 1
    html: bool = False
    status: int | None = None
    corrupt: bool = False
    hub: bool = False
    delay_s: float = 0.0
    no_range: bool = False


@dataclass
class Request:
    method: str
    path: str
    range: str | None


@dataclass
class FileServer:
    files: dict[str, Served] = field(default_factory=dict)
    log: list[Request] = field(default_factory=list)

    def add(self, path: str, body: bytes, **faults) -> Served:
        self.files["/" + path.lstrip("/")] = Served(body, **faults)
        return self.files["/" + path.lstrip("/")]

    def gets(self, path: str) -> list[Request]:
        path = "/" + path.lstrip("/")
        return [r for r in self.log if r.method == "GET" and r.path == path]

    def start(self) -> str:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_HEAD(self):  # noqa: N802 (http.server's naming)
                self._answer(head=True)

            def do_GET(self):  # noqa: N802
                self._answer(head=False)

            def _answer(self, head: bool) -> None:
                path = self.path.split("?", 1)[0]
                server.log.append(Request(self.command, path, self.headers.get("Range")))
                served = server.files.get(path)
                if served is None or served.status:
                    self._error(served.status if served else 404)
                    return
                if served.html:
                    page = b"<!DOCTYPE html><html><body>Quota exceeded</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    if not head:
                        self.wfile.write(page)
                    return
                body = served.body
                if served.corrupt:
                    body = bytes(b ^ 0xFF for b in body[:16]) + body[16:]
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and not served.no_range:
                    start = int(rng[6:].split("-")[0])
                    if start >= len(body):
                        self._error(416)
                        return
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", f'"{hashlib.md5(served.body).hexdigest()}"')
                if served.hub:  # what the Hugging Face hub sends for an LFS file
                    self.send_header("X-Linked-Etag",
                                     f'"{hashlib.sha256(served.body).hexdigest()}"')
                    self.send_header("X-Linked-Size", str(len(served.body)))
                    self.send_header("X-Repo-Commit", "0123456789abcdef" * 2 + "01234567")
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                if head:
                    return
                n_gets = len([r for r in server.log if r.method == "GET" and r.path == path])
                payload = body[start:]
                if served.cut is not None and n_gets <= served.cut_times:
                    self.wfile.write(payload[:served.cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if served.delay_s:
                    import time

                    half = len(payload) // 2
                    self.wfile.write(payload[:half])
                    self.wfile.flush()
                    time.sleep(served.delay_s)
                    payload = payload[half:]
                self.wfile.write(payload)

            def _error(self, code: int) -> None:
                page = f"<html><body>error {code}</body></html>".encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(page)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
