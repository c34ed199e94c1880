"""The class raster as a Cloud-Optimized GeoTIFF: colour table, category names, QGIS style, read-back check."""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from .._failpoints import failpoint
from .._files import staged, write_error, write_text, writing
from ..classes import NODATA, ClassTable
from ..raster import SceneInfo
from ..store import WorkStore
from ..tiling import BlockPlan

__all__ = ["class_sidecars", "write_class_cog"]

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
