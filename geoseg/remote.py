"""Scenes that are not local files: ``http(s)://`` URLs, ``s3://bucket/key`` and GDAL ``/vsi…`` paths.

GDAL reads them through its virtual file systems (``/vsicurl/``, ``/vsis3/``),
fetching only the byte ranges a window needs, so a Cloud-Optimized GeoTIFF is
read tile by tile as the local file would be. Every function here takes the
scene string as the user gave it or its GDAL path; the string (never a
handle) is what workers receive, and they reopen it for each read.

Secrets never leave this module in readable form: :func:`display_name` drops
a URL's query string (presigned URLs carry their signature there), its
fragment and any ``user:password@``; reports and log lines use it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import glob
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import parse_qs, urlsplit, urlunsplit

__all__ = [
    "RemoteStat",
    "display_name",
    "gdal_path",
    "is_remote",
    "remote_checksum",
    "remote_env",
    "remote_stat",
    "scene_name",
]

log = logging.getLogger(__name__)

_URL = re.compile(r"^(https?|s3)://", re.IGNORECASE)

#: GDAL settings for reading remote scenes, each applied only where neither the
#: environment nor an enclosing ``rasterio.Env`` sets it. Not set on purpose:
#: ``CPL_VSIL_CURL_ALLOWED_EXTENSIONS``, which would refuse URLs without a ``.tif``.
REMOTE_DEFAULTS: dict[str, str] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no directory listing to look for sidecar files
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",  # adjacent COG tiles in one request
    "GDAL_HTTP_MULTIPLEX": "YES",  # HTTP/2 multiplexing where the server offers it
    "VSI_CACHE": "TRUE",  # keep the header and recently read tiles of each handle
    "GDAL_HTTP_MAX_RETRY": "3",  # transient 429/5xx answers are retried
    "GDAL_HTTP_RETRY_DELAY": "1",
}


def is_remote(scene: str | os.PathLike[str]) -> bool:
    """Whether `scene` is a URL or a GDAL virtual path rather than a local file.

    Examples
    --------
    >>> is_remote("https://example.org/scene.tif"), is_remote("s3://b/k.tif"), is_remote("/vsis3/b/k.tif")
    (True, True, True)
    >>> is_remote("data/scene.tif")
    False
    """
    text = os.fspath(scene)
    return bool(_URL.match(text)) or text.startswith("/vsi")


def gdal_path(scene: str | os.PathLike[str]) -> str:
    """The path GDAL opens for `scene`: ``/vsicurl/URL`` for http(s), ``/vsis3/bucket/key`` for s3.

    GDAL paths (``/vsi…``) and local paths are returned as they are.

    Examples
    --------
    >>> gdal_path("https://example.org/a/scene.tif?token=x")
    '/vsicurl/https://example.org/a/scene.tif?token=x'
    >>> gdal_path("s3://bucket/tiles/scene.tif")
    '/vsis3/bucket/tiles/scene.tif'
    """
    text = os.fspath(scene)
    scheme = text.split("://", 1)[0].lower() if _URL.match(text) else ""
    if scheme in ("http", "https"):
        return f"/vsicurl/{text}"
    if scheme == "s3":
        return f"/vsis3/{text.split('://', 1)[1]}"
    return text


def _strip_url(url: str) -> str:
    """`url` without query, fragment and ``user:password@``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def display_name(scene: str | os.PathLike[str]) -> str:
    """`scene` as reports and logs show it: URLs lose their query, fragment and credentials.

    GDAL paths of URLs are shown as the URL (``/vsis3/b/k`` as ``s3://b/k``);
    local paths are returned unchanged.

    Examples
    --------
    >>> display_name("/vsicurl/https://user:pw@example.org/scene.tif?X-Amz-Signature=abc")
    'https://example.org/scene.tif'
    >>> display_name("/vsis3/bucket/scene.tif")
    's3://bucket/scene.tif'
    """
    text = os.fspath(scene)
    if text.startswith("/vsicurl?"):  # /vsicurl?opt=val&url=...: the URL is one of the options
        urls = parse_qs(text[len("/vsicurl?") :]).get("url")
        return _strip_url(urls[0]) if urls else "/vsicurl/"
    if text.startswith("/vsicurl/"):
        return _strip_url(text[len("/vsicurl/") :])
    if text.startswith("/vsis3/"):
        return "s3://" + text[len("/vsis3/") :].split("?", 1)[0]
    if _URL.match(text):
        return _strip_url(text)
    if text.startswith("/vsi"):
        return text.split("?", 1)[0]
    return text


def scene_name(scene: str | os.PathLike[str]) -> str:
    """The scene's file name: the last part of its path, for a URL without its query string.

    Examples
    --------
    >>> scene_name("https://example.org/tiles/scene.tif?token=x")
    'scene.tif'
    >>> scene_name("/data/scene.tif")
    'scene.tif'
    """
    text = display_name(scene)
    path = urlsplit(text).path if _URL.match(text) else text
    return PurePosixPath(path).name if is_remote(scene) else os.path.basename(path)


@contextlib.contextmanager
def remote_env() -> Iterator[None]:
    """A ``rasterio.Env`` with :data:`REMOTE_DEFAULTS` for the settings the user has not made.

    The environment (``AWS_*``, ``GDAL_HTTP_*``, ...) and an enclosing
    ``rasterio.Env`` win: GDAL reads credentials and endpoints from them as
    usual, and nothing here reads or logs their values.
    """
    import rasterio
    from rasterio.env import getenv, hasenv

    active = getenv() if hasenv() else {}
    unset = {k: v for k, v in REMOTE_DEFAULTS.items() if k not in os.environ and k not in active}
    with rasterio.Env(**unset):
        yield


@dataclass(frozen=True)
class RemoteStat:
    """What a HEAD-like request tells about an object: its size, ETag and Last-Modified (if sent)."""

    size: int
    etag: str | None
    last_modified: str | None


@functools.cache
def _gdal() -> ctypes.CDLL | None:
    """The GDAL library rasterio runs on (so its settings apply), or None where it cannot be found."""
    import rasterio

    here = os.path.dirname(rasterio.__file__)
    found = sorted(glob.glob(os.path.join(here, os.pardir, "rasterio.libs", "libgdal*")))  # Linux wheels
    found += sorted(glob.glob(os.path.join(here, ".dylibs", "libgdal*")))  # macOS wheels
    name = found[0] if found else ctypes.util.find_library("gdal")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.VSIFOpenL.restype = ctypes.c_void_p
    lib.VSIFOpenL.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.VSIFSeekL.restype = ctypes.c_int
    lib.VSIFSeekL.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int]
    lib.VSIFTellL.restype = ctypes.c_uint64
    lib.VSIFTellL.argtypes = [ctypes.c_void_p]
    lib.VSIFCloseL.restype = ctypes.c_int
    lib.VSIFCloseL.argtypes = [ctypes.c_void_p]
    lib.VSIGetFileMetadata.restype = ctypes.POINTER(ctypes.c_char_p)
    lib.VSIGetFileMetadata.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
    lib.CSLDestroy.restype = None
    lib.CSLDestroy.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
    return lib


def remote_stat(path: str) -> RemoteStat | None:
    """Size, ETag and Last-Modified of the object at GDAL path `path`; None if it does not exist.

    GDAL makes the request (a HEAD, or its cached answer), with the same
    credentials, endpoint and HTTP settings it reads the scene with.

    Raises
    ------
    OSError
        GDAL's library cannot be loaded to ask.
    """
    lib = _gdal()
    if lib is None:
        raise OSError("GDAL's library was not found beside rasterio")
    raw = path.encode()
    with remote_env():
        fp = lib.VSIFOpenL(raw, b"rb")
        if not fp:
            return None
        try:
            lib.VSIFSeekL(fp, 0, 2)  # SEEK_END: the size GDAL learnt from the server
            size = int(lib.VSIFTellL(fp))
        finally:
            lib.VSIFCloseL(fp)
        headers: dict[str, str] = {}
        md = lib.VSIGetFileMetadata(raw, b"HEADERS", None)
        if md:
            try:
                i = 0
                while md[i]:
                    key, _, value = md[i].decode("utf-8", "replace").partition("=")
                    headers[key.lower()] = value
                    i += 1
            finally:
                lib.CSLDestroy(md)
    etag = headers.get("etag", "").strip() or None
    return RemoteStat(size, etag, headers.get("last-modified") or None)


def remote_checksum(path: str) -> str:
    """A remote object's identity, from one HEAD-like request instead of reading it whole.

    ``etag:<ETag>:size:<bytes>`` where the server sends an ETag (S3 and most
    HTTP servers: it changes whenever the object does), else
    ``size:<bytes>:mtime:<Last-Modified>``, else ``size:<bytes>``, each
    fallback with a warning that a replaced object of the same size may go
    unnoticed. Local files are hashed instead (:func:`geoseg.raster.file_checksum`).

    Raises
    ------
    SceneNotFoundError
        The object does not exist (any more).
    """
    from .errors import SceneNotFoundError

    try:
        st = remote_stat(path)
    except OSError as exc:
        log.warning("cannot ask for %s's ETag (%s); it is identified by its name alone", display_name(path), exc)
        return f"name:{display_name(path)}"
    if st is None:
        raise SceneNotFoundError(not_found_message(path))
    if st.etag:
        return f"etag:{st.etag.strip(chr(34))}:size:{st.size}"
    if st.last_modified:
        log.warning("%s has no ETag; it is identified by its size and modification time", display_name(path))
        return f"size:{st.size}:mtime:{st.last_modified}"
    log.warning("%s has no ETag and no modification time; it is identified by its size alone", display_name(path))
    return f"size:{st.size}"


def not_found_message(path: str) -> str:
    """The one-line error for a remote scene that does not exist, naming what to check."""
    shown = display_name(path)
    if shown.startswith("s3://") or path.startswith("/vsis3"):
        check = "the bucket and key, and AWS_* settings (credentials, AWS_S3_ENDPOINT, AWS_REGION)"
    else:
        check = "the URL, and GDAL_HTTP_* settings (e.g. GDAL_HTTP_HEADERS, GDAL_HTTP_USERPWD)"
    return f"scene not found: {shown}; check {check}"


def redact(text: str, path: str) -> str:
    """`text` (a GDAL message, say) with every spelling of `path`'s URL replaced by its display name."""
    shown = display_name(path)
    for secret in {path, gdal_path(path), path.removeprefix("/vsicurl/")}:
        if secret and secret != shown:
            text = text.replace(secret, shown)
    return re.sub(r"\?[^\s'\"]*", "", text) if "?" in path else text
