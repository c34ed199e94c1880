"""Write the outputs of a run: class COG (+ sidecars), GeoPackage, run report.

Every file is written under a hidden temporary name in its final folder and
renamed into place only when complete (:func:`staged`), so an output path
holds either the previous file, nothing, or the complete new file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import sys
import zlib
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
import pyogrio
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from ._failpoints import failpoint
from ._files import remove_stale_parts, staged, write_error, write_json, write_text, writing
from .classes import NODATA, ClassTable
from .errors import GeosegIOError
from .raster import SceneInfo, valid_mask
from .store import WorkStore
from .tiling import BlockPlan

__all__ = [
    "GeoPackageWriter",
    "class_sidecars",
    "remove_stale_parts",
    "staged",
    "write_class_cog",
    "write_json",
    "write_text",
]

log = logging.getLogger(__name__)


def _pam_xml(classes: ClassTable) -> str:
    cats = "".join(f"      <Category>{c.name}</Category>\n" for c in classes)
    return (
        '<PAMDataset>\n  <PAMRasterBand band="1">\n    <CategoryNames>\n'
        f"{cats}    </CategoryNames>\n  </PAMRasterBand>\n</PAMDataset>\n"
    )


def _raster_qml(classes: ClassTable) -> str:
    entries = "".join(
        f'        <paletteEntry value="{c.id}" color="{c.hex.lower()}" alpha="255" label={quoteattr(c.name)}/>\n'
        for c in classes
    )
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.22.0" styleCategories="Symbology">\n  <pipe>\n'
        '    <rasterrenderer type="paletted" opacity="1" alphaBand="-1" band="1" nodataColor="">\n'
        "      <rasterTransparency/>\n      <colorPalette>\n"
        f"{entries}      </colorPalette>\n    </rasterrenderer>\n  </pipe>\n</qgis>\n"
    )


def write_class_cog(
    store: WorkStore,
    plan: BlockPlan,
    info: SceneInfo,
    path: str | os.PathLike[str],
    classes: ClassTable,
    *,
    array: str = "classes",
) -> Path:
    """Write one store array as a Cloud-Optimized GeoTIFF on the scene's grid.

    The class raster gets the class colour table, 255 as nodata, category
    names (``.aux.xml``) and a QGIS paletted style (``.qml``); overviews are
    resampled with ``mode`` so small classes survive zooming out. The
    confidence raster (``array='confidence'``) gets ``average`` overviews.

    Notes
    -----
    Memory: one block at a time is read from the store.
    """
    path = Path(path)
    is_class = array != "confidence"
    store.check_complete(plan)
    profile = {
        "driver": "GTiff",
        "width": info.width,
        "height": info.height,
        "count": 1,
        "dtype": "uint8",
        "crs": info.crs_wkt,
        "transform": info.transform,
        "nodata": NODATA if is_class else None,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "zlevel": 1,
        "bigtiff": "if_safer",
    }
    with staged(path) as tmp, writing(path):
        scratch = tmp.with_name(tmp.name + ".scratch.tif")
        crcs = []
        try:
            with rasterio.Env(GDAL_PAM_ENABLED="NO"):
                with rasterio.open(scratch, "w", **profile) as dst:
                    if is_class:
                        dst.write_colormap(1, classes.colormap())
                    for block in plan.blocks():
                        r = block.core
                        data = store.read(r, array)
                        crcs.append(_crc(data))
                        dst.write(data[None], window=Window(r.col0, r.row0, r.width, r.height))
                failpoint("export")
                rasterio.shutil.copy(
                    scratch,
                    tmp,
                    driver="COG",
                    compress="DEFLATE",
                    blocksize=512,
                    bigtiff="IF_SAFER",
                    overview_resampling="MODE" if is_class else "AVERAGE",
                    num_threads="ALL_CPUS",
                )
        finally:
            scratch.unlink(missing_ok=True)
        _verify_raster(tmp, plan, crcs, path)
    if is_class:
        write_text(f"{path}.aux.xml", _pam_xml(classes))
        write_text(path.with_suffix(".qml"), _raster_qml(classes))
    return path


def class_sidecars(path: str | os.PathLike[str]) -> list[Path]:
    """The files written beside a class COG: category names for GDAL, a paletted style for QGIS."""
    path = Path(path)
    return [Path(f"{path}.aux.xml"), path.with_suffix(".qml")]


def _crc(data: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(data).tobytes())


def _verify_raster(written: Path, plan: BlockPlan, crcs: list[int], path: Path) -> None:
    """Re-read a written raster: every block equal to what was written, every overview readable.

    GDAL reports some write failures (a disk filling up while it flushes)
    only on its error stream and still closes the file as if it were
    complete; a short file read later gives "Read failed" or, worse, sparse
    blocks that read as nodata. Checked before the file is renamed into place.
    """
    problem = None
    try:
        with rasterio.open(written) as ds:
            for block, crc in zip(plan.blocks(), crcs, strict=True):
                r = block.core
                if _crc(ds.read(1, window=Window(r.col0, r.row0, r.width, r.height))) != crc:
                    problem = f"block at rows {r.row0}..{r.row1 - 1} reads back different"
                    break
            levels = len(ds.overviews(1))
        for level in range(levels):  # overview tiles lie before the full-resolution ones in a COG
            with rasterio.open(written, overview_level=level) as ov:
                ov.read(1, window=Window(0, 0, min(512, ov.width), min(512, ov.height)))
                ov.read(1, window=Window(max(0, ov.width - 1), max(0, ov.height - 1), 1, 1))
    except rasterio.errors.RasterioIOError as exc:
        problem = f"it reads back with an error ({str(exc).strip().splitlines()[0][:120]})"
    if problem:
        raise write_error(path, OSError(f"the file written is incomplete: {problem}"))


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


def _stretch(band: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Linear 2-98 % stretch to uint8 (any input dtype)."""
    vals = band[valid]
    if vals.size == 0:
        return np.zeros(band.shape, np.uint8)
    lo, hi = np.percentile(vals, [2, 98])
    scaled = (band.astype(np.float64) - lo) / max(hi - lo, 1e-9)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def write_preview(
    info: SceneInfo,
    classes_tif: str | os.PathLike[str],
    path: str | os.PathLike[str],
    classes: ClassTable,
    *,
    max_side: int = 800,
    alpha: float = 0.55,
) -> Path:
    """A PNG quicklook: the scene, the scene under the class colours, and a legend with each class's share.

    Both rasters are read at reduced resolution (the class COG through its
    ``mode`` overviews), so memory stays small for any scene size.
    """
    from PIL import Image, ImageDraw, ImageFont
    from rasterio.enums import Resampling

    scale = max(info.width, info.height) / max_side
    h, w = (
        (info.height, info.width)
        if scale <= 1
        else (max(1, round(info.height / scale)), max(1, round(info.width / scale)))
    )
    order = {ci: i + 1 for i, ci in enumerate(info.colorinterp)}
    rgb = [order[c] for c in ("red", "green", "blue") if c in order]
    if len(rgb) < 3:
        rgb = list(info.data_bands[:3]) if len(info.data_bands) >= 3 else [info.data_bands[0]] * 3
    with rasterio.open(info.path) as src:
        img = src.read(rgb, out_shape=(3, h, w), resampling=Resampling.average)
        valid = valid_mask(src, info.path, None, out_shape=(h, w)) > 0  # an alpha band holding data is no mask
    with rasterio.open(classes_tif) as src:
        cls = src.read(1, out_shape=(h, w), resampling=Resampling.nearest)
    base = np.stack([_stretch(b, valid) for b in img], axis=-1)
    base[~valid] = (128, 128, 128)
    lut = np.zeros((256, 3), np.uint8)
    for c in classes:
        lut[c.id] = c.color
    colour = lut[cls]
    known = cls != NODATA
    over = base.copy()
    over[known] = (alpha * colour[known] + (1 - alpha) * base[known]).astype(np.uint8)

    font = ImageFont.load_default(size=15)
    gap, legend_h = 10, 30 + 24 * ((len(classes) + 2) // 3)
    canvas = Image.new("RGB", (2 * w + 3 * gap, h + 2 * gap + legend_h), "white")
    canvas.paste(Image.fromarray(base), (gap, gap))
    canvas.paste(Image.fromarray(over), (2 * gap + w, gap))
    draw = ImageDraw.Draw(canvas)
    counts = np.bincount(cls[known].ravel(), minlength=len(classes))[: len(classes)]
    total = max(int(counts.sum()), 1)
    draw.text(
        (gap, h + gap + 6),
        f"{Path(info.path).name} · {info.width} x {info.height} px · {info.crs_name}",
        fill="black",
        font=font,
    )
    col_w = (2 * w + gap) // 3
    for i, c in enumerate(classes):
        x = gap + (i % 3) * col_w
        y = h + gap + 30 + 24 * (i // 3)
        draw.rectangle((x, y, x + 18, y + 16), fill=c.color, outline="black")
        draw.text((x + 26, y), f"{c.name} {100 * counts[c.id] / total:.1f} %", fill="black", font=font)
    with staged(path) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(path)
