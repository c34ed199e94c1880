"""Scenes listed by STAC: an ItemCollection, or a static Catalog or Collection and the items it links to.

Each STAC Item is one scene: one of its assets (a GeoTIFF, local or remote)
is mapped, and its outputs are named after the item's id, since asset file
names repeat across items (``visual.tif``). Relative asset hrefs are resolved
against the item's own location, or the ItemCollection's where an item has none.

STAC API searches (``/search``) are not read; list the items in an
ItemCollection file (``pystac-client``'s ``search.item_collection().save_object(...)``
writes one) or point at a static catalog.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .remote import display_name, is_remote, redact

__all__ = ["DEFAULT_ASSETS", "StacScene", "stac_scenes"]

log = logging.getLogger(__name__)

#: The asset keys mapped when a source names none, in order of preference.
DEFAULT_ASSETS = ("visual", "image")

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
    from pystac.utils import make_absolute_href

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

    scenes: list[StacScene] = []
    seen: set[str] = set()
    for item in items:
        if not _SAFE_ID.match(item.id):
            raise ConfigError(f"scenes: STAC item id {item.id!r} in {shown} cannot name output files")
        if item.id in seen:
            raise ConfigError(f"scenes: two STAC items in {shown} have the id {item.id!r}; their outputs would collide")
        seen.add(item.id)
        key = _asset_key(item, asset, shown)
        href = item.assets[key].get_absolute_href() or make_absolute_href(item.assets[key].href, source)
        scenes.append(StacScene(_local_or_remote(href), item.id))
    if not scenes:
        raise ConfigError(f"scenes: STAC {shown} lists no item")
    log.debug("%s: %d STAC items", shown, len(scenes))
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
