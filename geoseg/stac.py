"""Scenes listed by STAC: an ItemCollection, a static Catalog or Collection, or a STAC API search.

Each STAC Item is one scene: one of its assets (a GeoTIFF, local or remote)
is mapped, and its outputs are named after the item's id, since asset file
names repeat across items (``visual.tif``). Relative asset hrefs are resolved
against the item's own location, or the ItemCollection's where an item has none.

:func:`stac_search` searches a STAC API (``/search``, through ``pystac-client``,
following its ``next`` links) and returns, beside the scenes, a record of the
search and of the items it found for the job's manifest. A token in the API
URL's query string is sent with every request of the search and
:data:`HEADERS_ENV` adds request headers (``Authorization``); neither is logged
or recorded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .remote import display_name, is_remote, redact

__all__ = [
    "DEFAULT_ASSETS",
    "DEFAULT_MAX_ITEMS",
    "HEADERS_ENV",
    "SEARCH_KEYS",
    "StacScene",
    "StacSearch",
    "stac_scenes",
    "stac_search",
]

log = logging.getLogger(__name__)

#: The asset keys mapped when a source names none, in order of preference.
DEFAULT_ASSETS = ("visual", "image")

#: The keys of a STAC search (as ``pystac-client``'s ``Client.search`` takes them).
SEARCH_KEYS = ("collections", "bbox", "datetime", "query", "filter")

#: The most items a search maps where it names no ``max_items``.
DEFAULT_MAX_ITEMS = 1000

#: Environment variable with extra HTTP headers for STAC API requests, a JSON object:
#: ``{"Authorization": "Bearer TOKEN"}``.
HEADERS_ENV = "GEOSEG_STAC_HEADERS"

#: Item ids that make a safe output file name stem.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass(frozen=True)
class StacScene:
    """One item's asset to map: where to read it (a local path or URL) and the outputs' name (the item id)."""

    href: Path | str
    name: str


def stac_scenes(source: str, asset: str | None = None) -> list[StacScene]:
    """The scenes of a STAC ItemCollection, Catalog or Collection (local file or http(s) URL), in order.

    Parameters
    ----------
    source : str
        Absolute path or URL of the STAC JSON. A Catalog or Collection is followed
        through its ``child`` and ``item`` links.
    asset : str, optional
        The asset key to map; default ``visual`` where an item has it, else ``image``.

    Raises
    ------
    ConfigError
        The source cannot be read or is no ItemCollection, Catalog or Collection; an
        item lacks the asset (the message names the item and its asset keys); two items
        share an id; or an id cannot name a file.
    """
    import pystac

    shown = display_name(source)
    try:
        data = pystac.StacIO.default().read_json(source)
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "FeatureCollection":
            items = list(pystac.ItemCollection.from_dict(data, preserve_dict=False).items)
        elif kind in ("Catalog", "Collection"):
            catalog = pystac.read_dict(data, href=source)
            assert isinstance(catalog, pystac.Catalog)
            items = list(catalog.get_items(recursive=True))
        else:
            raise ConfigError(
                f"scenes: {shown} is no STAC ItemCollection, Catalog or Collection (its type is {kind!r})"
            )
    except ConfigError:
        raise
    except Exception as exc:
        text = str(exc).strip().splitlines()
        reason = redact(text[0] if text else type(exc).__name__, source)
        raise ConfigError(f"scenes: cannot read STAC {shown}: {reason}") from None

    scenes = _item_scenes(items, asset, source, shown)
    if not scenes:
        raise ConfigError(f"scenes: STAC {shown} lists no item")
    log.debug("%s: %d STAC items", shown, len(scenes))
    return scenes


@dataclass(frozen=True)
class StacSearch:
    """The outcome of :func:`stac_search`: the scenes, and the search as the job's manifest records it.

    `record` holds the API URL without its query string, the search parameters,
    when it ran, whether more items matched than `max_items`, and each item's
    id, collection, ``updated`` property and asset href (without query string).
    """

    scenes: list[StacScene]
    record: dict[str, Any]


def stac_search(
    url: str,
    parameters: dict[str, Any],
    asset: str | None = None,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> StacSearch:
    """Search the STAC API at `url`; each item found is one scene named after its id.

    Parameters
    ----------
    url : str
        The API's landing page (``https://example.org/stac/v1``), which must declare the
        ``item-search`` conformance class (in ``conformsTo`` or at its ``conformance``
        link). A query string (``?token=...``) is sent with every request of the search.
    parameters : dict
        Search parameters, keys of :data:`SEARCH_KEYS` (``collections``, ``bbox``,
        ``datetime``, ``query``, ``filter``), as the STAC API item search takes them.
    asset : str, optional
        As for :func:`stac_scenes`.
    max_items : int
        The most items mapped; a search that matches more logs a warning and maps
        the first `max_items` in the API's order.

    Raises
    ------
    ConfigError
        `url` is no http(s) URL, cannot be read, offers no item search or answers the
        search with an error; :data:`HEADERS_ENV` is no JSON object of strings; the search
        finds no item; or an item is wrong as for :func:`stac_scenes`.
    """
    from urllib.parse import parse_qsl, urlsplit, urlunsplit

    from pystac_client import Client
    from pystac_client.errors import ClientTypeError

    shown = display_name(url)
    unknown = set(parameters) - set(SEARCH_KEYS)
    if unknown:
        raise ValueError(f"unknown STAC search keys {sorted(unknown)}")
    if not url.lower().startswith(("http://", "https://")):
        raise ConfigError(f"scenes: a STAC search needs the http(s) URL of a STAC API, not {shown}")
    headers = _headers()
    parts = urlsplit(url)
    landing = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    secrets = [v for v in (*query.values(), *headers.values()) if v]
    try:
        with warnings.catch_warnings(), _redacted(secrets):  # pystac-client warns of what is checked here
            warnings.simplefilter("ignore")
            client = Client.open(landing, headers=headers or None, parameters=query or None, timeout=60)
            if not client.has_conforms_to():
                link = client.get_single_link("conformance")
                if link is not None:
                    declared = client._stac_io.read_json(link.get_absolute_href() or link.href)  # type: ignore[union-attr]
                    client.set_conforms_to(list(declared.get("conformsTo", [])))
            if not client.conforms_to("ITEM_SEARCH"):
                raise _not_searchable(shown, "it declares no item-search conformance class")
            methods = {link.extra_fields.get("method") or "GET" for link in client.get_links("search")}
            method = "POST" if "POST" in methods or not methods else "GET"
            search = client.search(method=method, max_items=max_items + 1, **parameters)
            items = list(search.items())
    except ConfigError:
        raise
    except ClientTypeError as exc:
        found = re.search(r"found type=(\w+)", str(exc))
        raise _not_searchable(shown, f"it is a {found.group(1) if found else 'other JSON'}") from None
    except Exception as exc:
        raise ConfigError(f"scenes: cannot search STAC API {shown}: {_reason(exc, url)}") from None
    more = len(items) > max_items
    items = items[:max_items]
    if more:
        log.warning(
            "%s: the STAC search matched more than max_items=%d items; only the first %d are mapped "
            "(raise max_items or narrow the search)",
            shown,
            max_items,
            max_items,
        )
    scenes = _item_scenes(items, asset, landing, shown)
    if not scenes:
        raise ConfigError(f"scenes: the STAC search of {shown} found no item ({_describe(parameters)})")
    log.info("%s: the STAC search found %d items", shown, len(scenes))
    record = {
        "stac": shown,
        "search": parameters | {"max_items": max_items},
        "method": method,
        "asset": asset,
        "searched": datetime.now(UTC).isoformat(timespec="seconds"),
        "more": more,
        "items": [
            {
                "id": item.id,
                "collection": item.collection_id,
                "updated": item.properties.get("updated"),
                "href": display_name(scene.href),
            }
            for item, scene in zip(items, scenes, strict=True)
        ],
    }
    return StacSearch(scenes, record)


#: Loggers that write request URLs (with their query) and headers while a search runs.
_CHATTY = ("urllib3.connectionpool", "urllib3.util.retry", "pystac_client.stac_api_io")


class _Redact(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if any(s in text for s in self.secrets):
            for secret in self.secrets:
                text = text.replace(secret, "***")
            record.msg, record.args = text, None
        return True


@contextlib.contextmanager
def _redacted(secrets: list[str]) -> Iterator[None]:
    """Mask `secrets` (a token, header values) in what the HTTP libraries log while the block runs."""
    if not secrets:
        yield
        return
    masks = [(logging.getLogger(name), _Redact(secrets)) for name in _CHATTY]
    for logger, mask in masks:
        logger.addFilter(mask)
    try:
        yield
    finally:
        for logger, mask in masks:
            logger.removeFilter(mask)


def _not_searchable(shown: str, why: str) -> ConfigError:
    return ConfigError(
        f"scenes: {shown} is no STAC API with item search ({why}); "
        "a static catalog or ItemCollection takes no collections, bbox, datetime, query, filter or max_items"
    )


def _headers() -> dict[str, str]:
    """The extra headers of STAC API requests, from :data:`HEADERS_ENV` (its values are never shown)."""
    text = os.environ.get(HEADERS_ENV, "").strip()
    if not text:
        return {}
    try:
        headers = json.loads(text)
    except ValueError:
        headers = None
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ConfigError(
            f'{HEADERS_ENV} must be a JSON object of header names and values, like {{"Authorization": "Bearer TOKEN"}}'
        )
    return headers


def _reason(exc: BaseException, url: str) -> str:
    """The first line of why a STAC API request failed, without the URL's query string."""
    text = str(exc).strip().splitlines()
    reason = text[0].strip() if text else type(exc).__name__
    status = getattr(exc, "status_code", None)
    if status is not None:
        reason = f"HTTP {status}" + (f": {reason}" if reason else "")
    elif "Max retries exceeded" in reason or "Failed to establish" in reason:
        errno = re.search(r"\[Errno -?\d+\] ([^'\"()]+)", reason)
        reason = "cannot connect" + (f": {errno.group(1).strip()}" if errno else "")
    return redact(reason[:300], url)


def _describe(parameters: dict[str, Any]) -> str:
    return ", ".join(f"{k} {json.dumps(v)}" for k, v in parameters.items()) or "no parameters"


def _item_scenes(items: list[Any], asset: str | None, base: str, shown: str) -> list[StacScene]:
    """Each item's asset as a scene, in order; relative hrefs resolve against the item's or else `base`."""
    from pystac.utils import make_absolute_href

    scenes: list[StacScene] = []
    seen: set[str] = set()
    for item in items:
        if not _SAFE_ID.match(item.id):
            raise ConfigError(f"scenes: STAC item id {item.id!r} in {shown} cannot name output files")
        if item.id in seen:
            raise ConfigError(f"scenes: two STAC items in {shown} have the id {item.id!r}; their outputs would collide")
        seen.add(item.id)
        key = _asset_key(item, asset, shown)
        href = item.assets[key].get_absolute_href() or make_absolute_href(item.assets[key].href, base)
        scenes.append(StacScene(_local_or_remote(href), item.id))
    return scenes


def _asset_key(item: Any, asset: str | None, shown: str) -> str:
    keys = list(item.assets)
    if asset is not None:
        if asset in item.assets:
            return asset
        wanted = repr(asset)
    else:
        for key in DEFAULT_ASSETS:
            if key in item.assets:
                return key
        wanted = "'visual' or 'image' (name one with asset:)"
    has = ", ".join(keys) if keys else "none"
    raise ConfigError(f"scenes: STAC item {item.id!r} in {shown} has no asset {wanted}; its assets: {has}")


def _local_or_remote(href: str) -> Path | str:
    """A URL or GDAL path as given; a local href (``file://`` too) as a Path."""
    if href.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        return Path(unquote(urlsplit(href).path))
    return href if is_remote(href) else Path(os.path.abspath(href))
