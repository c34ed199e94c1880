"""Write the outputs of a run: class COG (+ sidecars), GeoPackage, run report.

Every file is written under a hidden temporary name in its final folder and
renamed into place only when complete (:func:`staged`), so an output path
holds either the previous file, nothing, or the complete new file.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import geopandas as gpd
import numpy as np
import pyogrio
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from .classes import NODATA, ClassTable
from .errors import GeosegIOError
from .raster import SceneInfo
from .store import WorkStore
from .tiling import BlockPlan

__all__ = ["staged", "write_class_cog", "write_geopackage", "write_json"]

log = logging.getLogger(__name__)


@contextmanager
def staged(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it to `path` if the block succeeds.

    On any exception the temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.part-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        _cleanup(tmp)
        if isinstance(exc, GeosegIOError):
            raise
        raise GeosegIOError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        _cleanup(tmp)
        raise


def _cleanup(tmp: Path) -> None:
    for p in (tmp, Path(f"{tmp}.aux.xml"), Path(f"{tmp}.ovr")):
        p.unlink(missing_ok=True)


def write_json(data: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write `data` as indented JSON, atomically."""
    with staged(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return Path(path)


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
    with staged(path) as tmp:
        scratch = tmp.with_name(tmp.name + ".scratch.tif")
        try:
            with rasterio.Env(GDAL_PAM_ENABLED="NO"):
                with rasterio.open(scratch, "w", **profile) as dst:
                    if is_class:
                        dst.write_colormap(1, classes.colormap())
                    for block in plan.blocks():
                        r = block.core
                        dst.write(store.read(r, array)[None], window=Window(r.col0, r.row0, r.width, r.height))
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
    if is_class:
        Path(f"{path}.aux.xml").write_text(_pam_xml(classes))
        path.with_suffix(".qml").write_text(_raster_qml(classes))
    return path


def write_geopackage(frame: gpd.GeoDataFrame, path: str | os.PathLike[str], *, layer: str = "landcover") -> Path:
    """Write polygons to a GeoPackage layer with a spatial index, atomically."""
    with staged(path) as tmp:
        # GeoPackage 1.2: newer GDALs write 1.4, which GDAL 3.6 / QGIS 3.22 flag as partly unsupported.
        pyogrio.write_dataframe(
            frame, tmp, layer=layer, driver="GPKG", spatial_index=True, dataset_options={"VERSION": "1.2"}
        )
    return Path(path)


def class_frame(
    geoms: np.ndarray, class_ids: np.ndarray, classes: ClassTable, crs_wkt: str, **columns: np.ndarray
) -> gpd.GeoDataFrame:
    """The ``landcover`` attribute table: class id and name first, then `columns`."""
    names = np.array(classes.names, dtype=object)
    data: dict[str, Any] = {
        "class_id": class_ids.astype(np.int32),
        "class_name": names[class_ids.astype(np.intp)] if len(class_ids) else np.array([], dtype=object),
    }
    data.update(columns)
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(geoms, crs=crs_wkt), crs=crs_wkt)
