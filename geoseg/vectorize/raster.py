"""``geoseg vectorize``: an existing class raster into a styled land-cover GeoPackage.

The same cell-parallel vectorisation as a run's vector stage
(:func:`~geoseg.vectorize.cells.vectorize_cells`), reading its cells straight
from a class GeoTIFF in worker processes of its own.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .. import __version__
from .._files import check_outdir
from .._parallel import BlockPool, ProgressCallback
from ..classes import ISPRS, ClassTable
from ..errors import OutputExistsError, SceneError
from ..raster import open_scene
from .cells import ClassSource, vectorize_cells
from .cleaning import Cleaning

__all__ = [
    "VectorizeResult",
    "vectorize_raster",
]


@dataclass
class VectorizeResult:
    """What :func:`vectorize_raster` wrote and measured.

    ``class_areas`` (m²) are the cleaned class raster's (pixel count times
    pixel area on the ground); ``polygon_areas`` sum the polygons' ``area_m2``,
    within 0.5 % of them per class after simplification.
    """

    path: Path
    n_polygons: int
    class_areas: dict[str, float]
    timings: dict[str, float]
    cleaning: Cleaning
    polygon_areas: dict[str, float] = field(default_factory=dict)


def vectorize_raster(
    classes_path: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    min_area: float | None = None,
    simplify: float | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    classes: ClassTable = ISPRS,
    progress: ProgressCallback | None = None,
) -> VectorizeResult:
    """Polygonise an existing class raster (uint8 class ids, 255 = nodata) into a styled GeoPackage.

    The same cell-parallel vectorisation, exact seam merge and cleaning as
    :func:`~geoseg.pipeline.run`, for re-cleaning a map or vectorising one
    made elsewhere. Cells are read straight from the raster and polygonised
    in `workers` processes (default: one per core). `out` defaults to
    ``<stem>.landcover.gpkg`` beside the raster (a ``.classes`` suffix of the
    stem is dropped).

    Raises
    ------
    SceneError
        The raster is not a single-band uint8 class raster of `classes`, or
        it holds no classified pixel (nothing is written then).
    OutputExistsError
        `out` exists and `overwrite` is False.
    """
    from ..export import GeoPackageWriter

    t_start = time.perf_counter()
    info = open_scene(classes_path)
    src = Path(info.path)
    if info.count != 1 or info.dtype != "uint8":
        raise SceneError(
            f"{src.name} has {info.count} band(s) of {info.dtype}; a class raster has one uint8 band of class ids"
        )
    stem = src.name.split(".")[0] if src.name.count(".") else src.stem
    out_path = Path(out) if out else src.with_name(f"{stem}.landcover.gpkg")
    check_outdir(out_path.parent.resolve())
    if out_path.exists() and not overwrite:
        raise OutputExistsError(f"{out_path} already exists; pass --overwrite to replace it")
    cleaning = Cleaning.resolve(min_area, simplify, info.mean_pixel_m)
    row = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "geoseg_version": __version__,
        "scene": info.path,
        "parameters": {"min_area_m2": cleaning.min_area_m2, "simplify_m": cleaning.simplify_m},
    }
    source = ClassSource(info.path, "raster", len(classes))
    with (
        BlockPool(workers or os.cpu_count() or 1) as pool,
        GeoPackageWriter(out_path, crs=info.crs_wkt, classes=classes, runs=row) as gpkg,
    ):
        summary = vectorize_cells(source, info, cleaning, pool, gpkg, classes, progress=progress)
        if summary.class_pixels.sum() == 0:  # an empty layer would look like a finished map
            raise SceneError(f"{src.name} has no classified pixels (all nodata); nothing to vectorize")
    timings: dict[str, float] = {k: round(v, 3) for k, v in summary.task_seconds.items()}
    timings["total"] = time.perf_counter() - t_start
    areas = {c.name: float(summary.class_areas[c.id]) for c in classes}
    polygon_areas = {c.name: float(summary.polygon_areas[c.id]) for c in classes}
    return VectorizeResult(out_path, summary.polygons, areas, timings, cleaning, polygon_areas)
