"""The vector stage of a run: a class raster, cell by cell, into a GeoPackage.

The raster is read on a fixed grid of cells (:data:`VECTOR_CELL`) from a
run's work store or a class GeoTIFF (:class:`ClassSource`). Worker processes
polygonise, clean and finish each cell (:class:`CellTask`); the calling
process merges the pieces on cell edges row by row and appends features to the
GeoPackage as they complete (:func:`vectorize_cells`). Workers receive paths
and small settings objects, never open datasets.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .._failpoints import failpoint
from .._parallel import Pool, ProgressCallback, Timed, imap
from ..classes import NODATA, ClassTable
from ..errors import SceneError
from ..raster import SceneInfo, read_window
from ..store import WorkStore
from ..tiling import BlockPlan, Rect, TileGrid
from .cleaning import Cleaning, apply_sieve, clean_block, sieve
from .georef import Georef, area_method
from .polygons import Features, polygonize_block
from .seams import SeamMerger, split_block

if TYPE_CHECKING:
    from ..export import GeoPackageWriter

__all__ = [
    "VECTOR_CELL",
    "CellTask",
    "ClassSource",
    "VectorSummary",
    "vectorize_cells",
]

log = logging.getLogger(__name__)


#: Features gathered before one append to the GeoPackage (one append costs a file open and close).
_WRITE_BATCH = 10_000

#: The fixed grid (pixels, anchored at the scene origin) on which polygons are built, simplified
#: and cleaned, then merged exactly across cell edges. It never changes with the chunk size,
#: workers or scheduler, so neither do the polygons.
VECTOR_CELL = 2048


@dataclass(frozen=True)
class ClassSource:
    """Where a vectorisation reads classes: a run's work store, or a class GeoTIFF."""

    path: str
    kind: Literal["store", "raster"]
    num_classes: int

    def classes(self, core: Rect) -> np.ndarray:
        if self.kind == "store":
            return WorkStore(self.path).read(core, "classes")
        data, valid = read_window(self.path, core.row0, core.col0, core.height, core.width, (1,))
        cls = np.where(valid, data[0], NODATA).astype(np.uint8)
        bad = (cls != NODATA) & (cls >= self.num_classes)
        if bad.any():
            raise SceneError(
                f"{Path(self.path).name} holds value {int(cls[bad].max())}, which is no class id "
                f"(0..{self.num_classes - 1}) and not nodata ({NODATA})"
            )
        return cls

    def confidence(self, core: Rect) -> np.ndarray | None:
        return WorkStore(self.path).read(core, "confidence") if self.kind == "store" else None

    def keep_cleaned(self, core: Rect, classes: np.ndarray) -> None:
        """Store a cell's sieved classes (they become the class raster)."""
        if self.kind == "store":
            WorkStore(self.path).write(core, classes, "cleaned")


@dataclass(frozen=True)
class CellTask:
    """Polygonise one vector cell: ``task((index, lut))``; picklable, for worker processes.

    ``regions_only`` gives just the region statistics and adjacency (the
    sieve's input). Otherwise the cell is relabelled with its `lut` from
    :func:`~geoseg.vectorize.sieve` (if any), polygonised, and cleaned
    (:func:`~geoseg.vectorize.clean_block`); the result is the pieces on the
    cell's edges, left for the seam merge, the polygons inside it,
    finished as features (moved to the CRS, measured, encoded), and the
    pixel count and ground area of every class in the (cleaned) cell, from
    the raster itself (:meth:`~geoseg.vectorize.Georef.class_totals`).
    """

    source: ClassSource
    cells: BlockPlan
    georef: Georef | None = None
    simplify_pixels: float = 0.0
    min_pixels: float = 0.0
    regions_only: bool = False

    def __call__(self, item: tuple[tuple[int, int], np.ndarray | None]) -> Timed:
        index, lut = item
        t0 = time.perf_counter()
        core = self.cells.block(*index).core
        cls = self.source.classes(core)
        if self.regions_only:
            regions = polygonize_block(cls, None, core, index, geometry=False, adjacency=True)
            return Timed(regions, {"regions": time.perf_counter() - t0})
        failpoint("vectorize")
        if lut is not None:
            cls = apply_sieve(cls, lut)
            self.source.keep_cleaned(core, cls)
        polys = polygonize_block(cls, self.source.confidence(core), core, index)
        polys = clean_block(polys, self.simplify_pixels, self.min_pixels)
        assert self.georef is not None
        totals = self.georef.class_totals(cls, core, self.source.num_classes)
        pieces, inside = split_block(polys)
        return Timed((pieces, self.georef.finish(inside), totals), {"vectorize": time.perf_counter() - t0})


@dataclass
class VectorSummary:
    """What :func:`vectorize_cells` wrote and measured.

    ``class_pixels`` and ``class_areas`` (m²) are the class raster's own, the
    cleaned map when there is a mapping unit: what the class COG holds, and
    what the exact polygons' ``area_m2`` add up to. ``polygon_areas`` sums
    the written polygons' ``area_m2`` per class: after simplification, within
    :data:`~geoseg.vectorize.MAX_AREA_CHANGE` of ``class_areas``.
    """

    polygons: int
    class_pixels: np.ndarray
    class_areas: np.ndarray
    area_method: str
    task_seconds: Counter[str]
    polygon_areas: np.ndarray


def vectorize_cells(
    source: ClassSource,
    info: SceneInfo,
    cleaning: Cleaning,
    pool: Pool,
    out: GeoPackageWriter,
    classes: ClassTable,
    *,
    confidence: bool = False,
    progress: ProgressCallback | None = None,
) -> VectorSummary:
    """Polygonise a class raster cell by cell into `out`, merging across cell edges as rows complete.

    Cells are polygonised, cleaned and, inside, finished in `pool`, a few
    cells ahead of the merge. Polygons inside a cell are appended to the
    GeoPackage as they arrive (in batches); pieces on cell edges wait for
    their row of cells, and the regions a row completes are appended then.
    Class pixel counts and areas are summed from the cells' rasters, not the
    polygons (see :class:`VectorSummary`).

    Notes
    -----
    Memory holds a few cells' results (two per worker), up to
    ``_WRITE_BATCH`` features waiting for their append, one row of cells'
    edge pieces and the regions still open across it; not the scene. The sieve (``cleaning.min_pixels``)
    first gathers a few numbers per region of the whole scene (its region
    graph), but no geometry.
    """
    cells = BlockPlan(TileGrid(info.height, info.width, tile=VECTOR_CELL, overlap=0), 1)
    ny, nx = cells.shape
    indices = [b.index for b in cells.blocks()]
    window = 2 * pool.workers
    seconds: Counter[str] = Counter()

    def reporter(stage: str) -> Callable[[int], None] | None:
        return (lambda done: progress(stage, done, len(indices))) if progress else None

    def timed(results: Iterator[Timed]) -> Iterator[Any]:
        for r in results:
            seconds.update(r.seconds)
            yield r.value

    cx, cy = info.transform @ (info.width / 2, info.height / 2)
    georef = Georef(info.transform, info.crs_wkt, area_method(info.crs, cx, cy))
    luts: dict[tuple[int, int], np.ndarray] = {}
    if cleaning.min_pixels > 0:
        task = CellTask(source, cells, regions_only=True)
        regions = timed(imap(pool, task, [(i, None) for i in indices], window=window, report=reporter("clean")))
        luts = sieve(dict(zip(indices, regions, strict=True)), cleaning.min_pixels)
    task = CellTask(source, cells, georef, cleaning.simplify_pixels, cleaning.min_pixels)
    items = [(i, luts.pop(i, None)) for i in indices]
    results = timed(imap(pool, task, items, window=window, report=reporter("vectorize")))

    names = np.array(classes.names, dtype=object)
    pixels = np.zeros(len(classes), np.int64)
    areas = np.zeros(len(classes))
    polygon_areas = np.zeros(len(classes))

    buffered: list[Features] = []

    def write(batch: list[Features]) -> None:
        f = Features.concat(batch).canonical()
        fields = {
            "class_id": f.classes.astype(np.int32),
            "class_name": names[f.classes.astype(np.intp)],
            "area_m2": f.area_m2,
            "perimeter_m": f.perimeter_m,
        }
        if confidence:
            fields["mean_confidence"] = np.round(f.mean_confidence, 4)
        out.write(f.wkb, fields)
        np.add.at(polygon_areas, f.classes.astype(np.intp), f.area_m2)

    def add(features: Features, *, flush: bool = False) -> None:
        buffered.append(features)
        if flush or sum(map(len, buffered)) >= _WRITE_BATCH:
            write(buffered)
            buffered.clear()

    merger = SeamMerger()
    for by in range(ny):
        row = []
        for _ in range(nx):
            pieces, inside, (cell_pixels, cell_areas) = next(results)
            add(inside)  # final: written now, only the edge pieces wait for the row
            row.append(pieces)
            pixels += cell_pixels
            areas += cell_areas
        # Cleaning shaves no region below the mapping unit (clean_block), so one a row completes is final.
        add(georef.finish(merger.add_row(row, last=by == ny - 1)), flush=by == ny - 1)
    log.debug("merged %d regions cut by cell edges", merger.merged)
    return VectorSummary(out.features, pixels, areas, georef.method, seconds, polygon_areas)
