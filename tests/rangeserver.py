"""A threaded HTTP server on 127.0.0.1 that serves files with Range requests and counts the bytes it sends."""

from __future__ import annotations

import email.utils
import hashlib
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class RangeServer:
    """Serve the files of `root` at ``http://127.0.0.1:PORT/NAME`` (query strings ignored).

    Supports ``HEAD`` and single-range ``GET`` (206 with ``Content-Range``),
    sends an ``ETag`` and ``Last-Modified``, and counts the body bytes sent
    (`bytes_sent`) and the requests (`requests`, as (method, path, range)).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.bytes_sent = 0
        self.requests: list[tuple[str, str, str | None]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _target(self) -> Path | None:
                name = urlsplit(self.path).path.lstrip("/")
                f = server.root / name
                return f if name and f.is_file() else None

            def _headers(self, f: Path) -> None:
                st = f.stat()
                etag = hashlib.md5(f"{st.st_size}-{st.st_mtime_ns}".encode()).hexdigest()
                self.send_header("ETag", f'"{etag}"')
                self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))
                self.send_header("Accept-Ranges", "bytes")

            def _missing(self) -> None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_HEAD(self) -> None:
                server._note("HEAD", self.path, None)
                f = self._target()
                if f is None:
                    return self._missing()
                self.send_response(200)
                self._headers(f)
                self.send_header("Content-Length", str(f.stat().st_size))
                self.end_headers()

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                server._note("GET", self.path, rng)
                f = self._target()
                if f is None:
                    return self._missing()
                size = f.stat().st_size
                start, end = 0, size - 1
                m = _RANGE.match(rng.strip()) if rng else None
                if m and (m.group(1) or m.group(2)):
                    if m.group(1):
                        start = int(m.group(1))
                        end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                    else:  # a suffix range: the last N bytes
                        start = max(0, size - int(m.group(2)))
                    if start >= size:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                else:
                    self.send_response(200)
                self._headers(f)
                self.send_header("Content-Length", str(end - start + 1))
                self.end_headers()
                with f.open("rb") as fh:
                    fh.seek(start)
                    body = fh.read(end - start + 1)
                self.wfile.write(body)
                server._count(len(body))

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def _note(self, method: str, path: str, rng: str | None) -> None:
        with self._lock:
            self.requests.append((method, path, rng))

    def _count(self, n: int) -> None:
        with self._lock:
            self.bytes_sent += n

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def reset(self) -> None:
        with self._lock:
            self.bytes_sent = 0
            self.requests.clear()

    def __enter__(self) -> RangeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def file_size(path: str | os.PathLike[str]) -> int:
    return os.stat(path).st_size
