"""Getting a checkpoint from a URL: parsing, downloading with progress, and checksums.

``http(s)://`` and ``file://`` URLs are streamed to a file while their
SHA-256 is computed; a URL may carry the expected checksum as a
``#sha256=<hex>`` fragment. Network failures become one-line
:class:`~geoseg.errors.GeosegIOError` messages that say what went wrong.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError, GeosegIOError

__all__ = ["ProgressCallback", "_check_sha256", "_download", "_is_url", "_split_url", "_url_filename"]

#: ``progress(bytes_done, bytes_total_or_None)``, called while a URL downloads.
ProgressCallback = Callable[[int, int | None], None]

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_URL_SCHEMES = ("http", "https", "file")
_CHUNK = 1 << 20
_TIMEOUT = 60.0


def _is_url(text: str) -> bool:
    return urllib.parse.urlsplit(text).scheme.lower() in _URL_SCHEMES and "://" in text


def _split_url(url: str) -> tuple[str, str | None]:
    """``url#sha256=HEX`` -> (url without fragment, HEX or None)."""
    parts = urllib.parse.urlsplit(url)
    fragment = dict(urllib.parse.parse_qsl(parts.fragment))
    sha = fragment.get("sha256")
    return urllib.parse.urlunsplit(parts._replace(fragment="")), (_check_sha256(sha, "#sha256=") if sha else None)


def _url_filename(url: str) -> str:
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    return name or "model.pt"


def _check_sha256(value: str, what: str = "--sha256") -> str:
    if not _SHA256.match(value.strip()):
        raise ConfigError(f"{what} takes a SHA-256 of 64 hexadecimal digits, got {value!r}")
    return value.strip().lower()


def _network_error(url: str, exc: BaseException) -> GeosegIOError:
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):
        reason = f"HTTP {exc.code} {exc.reason}"
        exc.close()
    elif isinstance(exc, urllib.error.URLError):
        reason = str(exc.reason)
    elif isinstance(exc, TimeoutError):
        reason = f"no answer within {_TIMEOUT:.0f} s"
    else:
        reason = str(exc) or type(exc).__name__
    reason = " ".join(reason.split())
    return GeosegIOError(f"cannot download {url}: {reason}; check the URL and the network connection")


def _download(url: str, dest: Path, progress: ProgressCallback | None) -> str:
    """Stream `url` into `dest`; returns the SHA-256 of what arrived."""
    import http.client
    import urllib.request

    from .. import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"geoseg/{__version__}"})
    try:
        response = urllib.request.urlopen(request, timeout=_TIMEOUT)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise _network_error(url, exc) from exc
    h = hashlib.sha256()
    done = 0
    with response, open(dest, "wb") as f:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if progress is not None:
            progress(0, total)
        while True:
            try:
                chunk = response.read(_CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                raise _network_error(url, exc) from exc
            if not chunk:
                break
            f.write(chunk)
            h.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    if total is not None and done != total:
        raise GeosegIOError(f"cannot download {url}: the connection closed after {done} of {total} bytes; try again")
    return h.hexdigest()
