"""Land-cover polygons in a GeoPackage, written batch by batch, with a ``classes`` table and an embedded QGIS style."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
import pyogrio

from .._files import staged, writing
from ..classes import ClassTable
from ..errors import GeosegIOError

__all__ = ["GeoPackageWriter", "embed_qgis_style"]

log = logging.getLogger(__name__)


def _vector_qml(classes: ClassTable, *, field: str = "class_id") -> str:
    """QGIS style: categories on `field` with the class colours and names (fill, thin darker outline)."""
    cats, symbols = [], []
    for i, c in enumerate(classes):
        rgba = ",".join(map(str, (*c.color, 255)))
        edge = ",".join(map(str, (*(int(v * 0.6) for v in c.color), 255)))
        cats.append(
            f'      <category value="{c.id}" symbol="{i}" label={quoteattr(c.name)} render="true" type="integer"/>\n'
        )
        props = {
            "color": rgba,
            "outline_color": edge,
            "outline_style": "solid",
            "outline_width": "0.1",
            "outline_width_unit": "MM",
            "style": "solid",
            "joinstyle": "bevel",
        }
        options = "".join(f'<Option type="QString" name="{k}" value="{v}"/>' for k, v in props.items())
        legacy = "".join(f'<prop k="{k}" v="{v}"/>' for k, v in props.items())
        symbols.append(
            f'      <symbol type="fill" name="{i}" alpha="1" clip_to_extent="1" force_rhr="0">\n'
            f'        <layer class="SimpleFill" enabled="1" pass="0" locked="0">\n'
            f'          <Option type="Map">{options}</Option>\n'
            f"          {legacy}\n"
            f"        </layer>\n"
            f"      </symbol>\n"
        )
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.22.0" styleCategories="Symbology">\n'
        f'  <renderer-v2 type="categorizedSymbol" attr="{field}" forceraster="0" symbollevels="0" '
        'enableorderby="0" referencescale="-1">\n'
        f"    <categories>\n{''.join(cats)}    </categories>\n"
        f"    <symbols>\n{''.join(symbols)}    </symbols>\n"
        "  </renderer-v2>\n"
        "  <layerGeometryType>2</layerGeometryType>\n"
        "</qgis>\n"
    )


_LAYER_STYLES = """CREATE TABLE IF NOT EXISTS "layer_styles" ("id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
 "f_table_catalog" TEXT(256), "f_table_schema" TEXT(256), "f_table_name" TEXT(256),
 "f_geometry_column" TEXT(256), "styleName" TEXT(30), "styleQML" TEXT, "styleSLD" TEXT,
 "useAsDefault" BOOLEAN, "description" TEXT, "owner" TEXT(30), "ui" TEXT(30),
 "update_time" DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))"""


def embed_qgis_style(path: str | os.PathLike[str], layer: str, classes: ClassTable) -> None:
    """Store a default QGIS style for `layer` in the GeoPackage's ``layer_styles`` table.

    QGIS applies it when the layer is opened. Written with sqlite3 after GDAL
    has closed the file; ``f_table_schema`` must be '', ``f_geometry_column``
    the layer's real geometry column, and the table registered in
    ``gpkg_contents``, or QGIS 3.22 ignores it.
    """
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        row = db.execute("SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (layer,)).fetchone()
        if row is None:
            raise GeosegIOError(f"{path} has no geometry layer {layer!r}")
        db.execute(_LAYER_STYLES)
        db.execute("DELETE FROM layer_styles WHERE f_table_name = ?", (layer,))
        db.execute(
            "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, f_geometry_column, styleName,"
            " styleQML, styleSLD, useAsDefault, description, owner, ui) VALUES ('', '', ?, ?, ?, ?, '', 1, ?, '', '')",
            (layer, row[0], f"{layer} (geoseg)", _vector_qml(classes), "land-cover classes, ISPRS colours"),
        )
        # GDAL 3.6 (so QGIS 3.22) reads layer_styles only when gpkg_contents lists it as an attributes table.
        db.execute(
            "INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, description, last_change)"
            " VALUES ('layer_styles', 'attributes', 'layer_styles', '', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
        )


class GeoPackageWriter:
    """Write polygons to a GeoPackage layer batch by batch, atomically.

    Use as a context manager and call :meth:`write` with each batch (a
    GeoDataFrame of the same columns). On a clean exit the file gets, with
    `classes`, a ``classes`` table (id, name, colour) and an embedded default
    QGIS style, with `runs` a row in a ``runs`` table (values as text, dicts
    and lists as JSON); then it moves into place. On an error nothing is left
    at `path`.

    Notes
    -----
    Memory holds one batch: each is appended and the spatial index is
    maintained as features arrive.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        crs: str,
        layer: str = "landcover",
        classes: ClassTable | None = None,
        runs: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.crs = crs
        self.layer, self.classes, self.runs = layer, classes, runs
        self.features = 0
        self._created = False
        self._stack = contextlib.ExitStack()
        self._tmp = self.path

    def __enter__(self) -> GeoPackageWriter:
        self._tmp = self._stack.enter_context(staged(self.path))
        return self

    def write(self, wkb: np.ndarray, fields: dict[str, np.ndarray]) -> None:
        """Append WKB polygons and their attribute columns (the first batch, even empty, creates the layer)."""
        if self._created and len(wkb) == 0:
            return
        # GeoPackage 1.2: newer GDALs write 1.4, which GDAL 3.6 / QGIS 3.22 flag as partly unsupported.
        with writing(self.path):
            self._append(wkb, fields)
        self._created = True
        self.features += len(wkb)

    def _append(self, wkb: np.ndarray, fields: dict[str, np.ndarray]) -> None:
        pyogrio.raw.write(
            self._tmp,
            wkb,
            list(fields.values()),
            list(fields),
            layer=self.layer,
            driver="GPKG",
            geometry_type="Polygon",
            crs=self.crs,
            append=self._created,
            dataset_options=None if self._created else {"VERSION": "1.2"},
            layer_options=None if self._created else {"SPATIAL_INDEX": "YES"},
        )

    def _finish(self) -> None:
        if not self._created:
            raise ValueError("GeoPackageWriter closed before any batch was written")
        with writing(self.path):
            self._finish_tables()
            # A write that failed without an error would leave fewer features than were sent.
            found = pyogrio.read_info(self._tmp, layer=self.layer)["features"]
        if found != self.features:
            raise GeosegIOError(f"cannot write {self.path}: it holds {found} of the {self.features} polygons written")

    def _finish_tables(self) -> None:
        if self.classes is not None:
            self._table(
                "classes",
                {
                    "class_id": np.array([c.id for c in self.classes], dtype=np.int32),
                    "class_name": np.array(self.classes.names, dtype=object),
                    "color": np.array([c.hex for c in self.classes], dtype=object),
                },
            )
            embed_qgis_style(self._tmp, self.layer, self.classes)
        if self.runs is not None:
            row = {k: json.dumps(v) if isinstance(v, dict | list) else str(v) for k, v in self.runs.items()}
            self._table("runs", {k: np.array([v], dtype=object) for k, v in row.items()})

    def _table(self, name: str, columns: dict[str, np.ndarray]) -> None:
        """An attribute table (no geometry) in the same file."""
        pyogrio.raw.write(self._tmp, None, list(columns.values()), list(columns), layer=name, driver="GPKG")

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: Any) -> bool:
        if et is None:
            try:
                self._finish()
            except BaseException:
                if not self._stack.__exit__(*sys.exc_info()):
                    raise
                return False
        return bool(self._stack.__exit__(et, ev, tb))
