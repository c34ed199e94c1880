"""A small STAC API on 127.0.0.1: a landing page, ``/conformance`` and ``/search`` (GET and POST) over in-memory items.

The search filters by ``collections``, ``bbox`` (intersection with the item's
bbox) and ``datetime`` (an instant or an ``a/b`` interval, ``..`` open), pages
``page_size`` items at a time through ``next`` links (GET: a ``page`` query
parameter; POST: a ``page`` key in the link's body), and with `token` set answers
401 to any request whose query string lacks ``token=<token>``. Every request is
kept in `requests` as (method, path with query, JSON body or None), and its
``Authorization`` header in `authorizations`.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

CORE = "https://api.stacspec.org/v1.0.0/core"
ITEM_SEARCH = "https://api.stacspec.org/v1.0.0/item-search"


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _matches(item: dict[str, Any], search: dict[str, Any]) -> bool:
    collections = search.get("collections")
    if isinstance(collections, str):
        collections = collections.split(",")
    if collections and item.get("collection") not in collections:
        return False
    bbox = search.get("bbox")
    if isinstance(bbox, str):
        bbox = [float(v) for v in bbox.split(",")]
    if bbox:
        w, s, e, n = item["bbox"]
        if w > bbox[2] or e < bbox[0] or s > bbox[3] or n < bbox[1]:
            return False
    when = search.get("datetime")
    if when:
        t = _time(item["properties"]["datetime"])
        start, _, end = when.partition("/") if "/" in when else (when, "", when)
        if start not in ("", "..") and t < _time(start):
            return False
        if end not in ("", "..") and t > _time(end):
            return False
    return True


class StacApi:
    """Serve `items` (STAC Item dicts) as a STAC API at ``http://127.0.0.1:PORT/``.

    `methods` are the search methods the landing page advertises; with
    `conforms_on_landing` False the conformance classes are only at ``/conformance``.
    """

    def __init__(
        self,
        items: list[dict[str, Any]],
        *,
        page_size: int = 2,
        token: str | None = None,
        methods: tuple[str, ...] = ("GET", "POST"),
        conforms_on_landing: bool = True,
    ) -> None:
        self.items = items
        self.page_size = page_size
        self.token = token
        self.requests: list[tuple[str, str, dict[str, Any] | None]] = []
        self.authorizations: list[str | None] = []
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _answer(self, method: str) -> None:
                body = None
                if method == "POST":
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                with api._lock:
                    api.requests.append((method, self.path, body))
                    api.authorizations.append(self.headers.get("Authorization"))
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if api.token is not None and query.get("token") != api.token:
                    return self._send(401, {"code": "Unauthorized", "description": "token required"})
                if parts.path == "/" and method == "GET":
                    return self._send(200, api.landing(conforms_on_landing, methods))
                if parts.path == "/conformance" and method == "GET":
                    return self._send(200, {"conformsTo": [CORE, ITEM_SEARCH]})
                if parts.path == "/search":
                    search = body if body is not None else {k: v for k, v in query.items() if k != "token"}
                    return self._send(200, api.page(method, search))
                return self._send(404, {"code": "NotFound", "description": f"no {parts.path}"})

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def landing(self, conforms: bool, methods: tuple[str, ...]) -> dict[str, Any]:
        links = [
            {"rel": "self", "href": self.url, "type": "application/json"},
            {"rel": "root", "href": self.url, "type": "application/json"},
            {"rel": "conformance", "href": self.url + "conformance", "type": "application/json"},
        ]
        links += [
            {"rel": "search", "href": self.url + "search", "type": "application/geo+json", "method": m} for m in methods
        ]
        page = {"type": "Catalog", "id": "test-api", "description": "loopback", "stac_version": "1.0.0", "links": links}
        if conforms:
            page["conformsTo"] = [CORE, ITEM_SEARCH]
        return page

    def page(self, method: str, search: dict[str, Any]) -> dict[str, Any]:
        """One page of the search's matches, with a ``next`` link while more follow."""
        hits = [i for i in self.items if _matches(i, search)]
        size = min(int(search.get("limit") or self.page_size), self.page_size)
        n = int(search.get("page") or 0)
        links: list[dict[str, Any]] = []
        if (n + 1) * size < len(hits):
            following = {k: v for k, v in search.items() if k != "page"} | {"page": n + 1}
            if method == "POST":
                links.append({"rel": "next", "href": self.url + "search", "method": "POST", "body": following})
            else:
                links.append({"rel": "next", "href": self.url + "search?" + urlencode(following)})
        return {
            "type": "FeatureCollection",
            "features": hits[n * size : (n + 1) * size],
            "links": links,
            "numberMatched": len(hits),
        }

    def searches(self) -> list[tuple[str, str, dict[str, Any] | None]]:
        with self._lock:
            return [r for r in self.requests if urlsplit(r[1]).path == "/search"]

    def __enter__(self) -> StacApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
