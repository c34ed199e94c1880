"""Pixel regions of one block as polygons: labelling, polygonising, and the tables that carry them.

Each block's 4-connected regions of one class become one polygon each
(``rasterio.features.shapes``) in *global pixel coordinates*: vertex
coordinates are whole numbers, so the edges of polygons on either side of a
block edge coincide exactly (see :mod:`geoseg.vectorize.seams`). A
:class:`BlockPolygons` holds a block's polygons with what the seam merge and
the sieve need (edge labels, first pixels, adjacency); :class:`Polygons` and
:class:`Features` are column tables of polygons before and after they move
into the scene's CRS.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

import cc3d
import numpy as np
import rasterio.features
import shapely
from affine import Affine

from ..classes import NODATA
from ..tiling import Rect

__all__ = [
    "BlockPolygons",
    "Features",
    "Polygons",
    "label_regions",
    "polygonize_block",
    "region_adjacency",
]


@dataclass
class BlockPolygons:
    """The polygons of one block, with what the seam merge needs.

    ``geoms[i]``, ``classes[i]``, ``pixels[i]``, ``conf_sum[i]`` and
    ``anchor[i]`` (its first pixel in raster order, ``row << 32 | col`` in
    scene coordinates) describe local region ``i + 1``; ``edges`` holds the region label (0 = no data) of
    every pixel along the core's top, bottom, left and right edges.
    """

    index: tuple[int, int]
    core: Rect
    geoms: np.ndarray | None
    classes: np.ndarray
    pixels: np.ndarray
    conf_sum: np.ndarray
    edges: dict[str, np.ndarray]
    anchor: np.ndarray
    adjacency: np.ndarray | None = None
    #: Coordinates, ring offsets and polygon offsets of ``geoms`` when known: between processes
    #: the polygons travel as these arrays and are rebuilt in one call.
    ragged: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.classes)

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        geoms = self.geoms
        if self.ragged is None and geoms is not None and len(geoms) and (shapely.get_type_id(geoms) == 3).all():
            _, xy, (ring_off, poly_off) = shapely.to_ragged_array(geoms)
            state["ragged"] = (xy, ring_off, poly_off)
        if state["ragged"] is not None:
            state["geoms"] = None
        return state

    @property
    def touching(self) -> np.ndarray:
        """Which polygons have a pixel on the block's edge (and may continue in a neighbour)."""
        on_edge = np.zeros(len(self) + 1, dtype=bool)
        for labels in self.edges.values():
            on_edge[labels] = True
        return on_edge[1:]

    def polygons(self) -> Polygons:
        assert self.geoms is not None
        return Polygons(self.geoms, self.classes, self.pixels, self.conf_sum, self.anchor)

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        if self.geoms is None and self.ragged is not None:
            xy, ring_off, poly_off = self.ragged
            self.geoms = (
                shapely.from_ragged_array(shapely.GeometryType.POLYGON, xy, (ring_off, poly_off))
                if len(poly_off) > 1
                else np.empty(0, dtype=object)
            )


class _Columns:
    """Equal-length array columns (the dataclass fields of a subclass), one row per polygon."""

    conf_sum: np.ndarray
    pixels: np.ndarray
    anchor: np.ndarray

    def __len__(self) -> int:
        return len(getattr(self, dataclasses.fields(self)[0].name))  # type: ignore[arg-type]

    @property
    def mean_confidence(self) -> np.ndarray:
        """Mean blended probability of the winning class, 0-1."""
        return self.conf_sum / np.maximum(self.pixels, 1) / 255.0

    def take(self, idx: np.ndarray) -> Self:
        return type(self)(*(getattr(self, f.name)[idx] for f in dataclasses.fields(self)))  # type: ignore[arg-type]

    @classmethod
    def concat(cls, parts: Sequence[Self]) -> Self:
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        return cls(*(np.concatenate([getattr(p, n) for p in parts]) for n in names))

    def canonical(self) -> Self:
        """Sorted by anchor (first pixel in raster order): an order that does not depend on blocks."""
        return self.take(np.argsort(self.anchor, kind="stable"))


@dataclass
class Polygons(_Columns):
    """Land-cover polygons with per-polygon class, pixel count, summed confidence and anchor.

    ``anchor`` is each region's first pixel in raster order (``row << 32 | col``):
    polygons are kept sorted by it, an order that does not depend on blocks.
    """

    geoms: np.ndarray
    classes: np.ndarray
    pixels: np.ndarray
    conf_sum: np.ndarray
    anchor: np.ndarray

    def row(self, i: int) -> tuple[shapely.Geometry, int, int, int, int]:
        return self.geoms[i], int(self.classes[i]), int(self.pixels[i]), int(self.conf_sum[i]), int(self.anchor[i])

    @classmethod
    def empty(cls) -> Polygons:
        return cls(np.empty(0, object), np.zeros(0, np.uint8), *(np.zeros(0, np.int64) for _ in range(3)))

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[shapely.Geometry, int, int, int, int]]) -> Polygons:
        """From ``(geometry, class, pixels, conf_sum, anchor)`` tuples."""
        if not rows:
            return cls.empty()
        geoms, classes, pixels, conf, anchor = zip(*rows, strict=True)
        return cls(
            np.array(geoms, dtype=object),
            np.array(classes, dtype=np.uint8),
            np.array(pixels, dtype=np.int64),
            np.array(conf, dtype=np.int64),
            np.array(anchor, dtype=np.int64),
        )


def label_regions(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4-connected regions of equal class, numbered in raster order of their first pixel; nodata is label 0.

    Returns
    -------
    labels : ndarray of int32
    region_class : ndarray of uint8
        Class of region ``i + 1``.
    """
    labels, first = _regions(classes)
    return labels, classes.ravel()[first]


def _regions(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Region labels (as :func:`label_regions`) and the flat index of each region's first pixel.

    All classes are labelled in one pass (``cc3d``), ~10x faster than
    labelling each class's mask in turn.
    """
    keyed = classes.astype(np.uint8, copy=False) + np.uint8(1)  # nodata (255) wraps round to 0, cc3d's background
    labels = cc3d.connected_components(keyed, connectivity=4, out_dtype=np.uint32).view(np.int32)
    # A region's first pixel in raster order differs from its left and upper neighbours (they come
    # earlier), so only such pixels are searched.
    start = labels > 0
    start[:, 1:] &= labels[:, 1:] != labels[:, :-1]
    start[1:] &= labels[1:] != labels[:-1]
    where = np.flatnonzero(start)
    values, pos = np.unique(labels.ravel()[where], return_index=True)
    first = where[pos]  # first[i]: region values[i] == i + 1
    if len(first) and (first[:-1] > first[1:]).any():  # numbered in another order: renumber
        order = np.argsort(first)
        lut = np.zeros(int(values[-1]) + 1, np.int32)
        lut[values[order]] = np.arange(1, len(values) + 1, dtype=np.int32)
        labels, first = lut[labels], first[order]
    return labels, first


def _shapes(
    raster: np.ndarray, mask: np.ndarray, core: Rect
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``rasterio.features.shapes`` built into shapely polygons in one vectorised call.

    Returns the polygons (global pixel coordinates), their raster values, and
    the ragged layout: coordinates ``(n, 2)``, ring offsets, polygon offsets.
    """
    transform = Affine.translation(core.col0, core.row0)
    values: list[float] = []
    ring_sizes: list[int] = []
    poly_rings: list[int] = []
    coords: list[tuple[float, float]] = []
    for geom, value in rasterio.features.shapes(raster, mask=mask, connectivity=4, transform=transform):
        rings = geom["coordinates"]
        values.append(value)
        poly_rings.append(len(rings))
        for ring in rings:
            ring_sizes.append(len(ring))
            coords.extend(ring)
    xy = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    ring_off = np.concatenate([[0], np.cumsum(ring_sizes)]).astype(np.int64)
    poly_off = np.concatenate([[0], np.cumsum(poly_rings)]).astype(np.int64)
    geoms = (
        shapely.from_ragged_array(shapely.GeometryType.POLYGON, xy, (ring_off, poly_off))
        if values
        else np.empty(0, dtype=object)
    )
    return geoms, np.asarray(values), xy, ring_off, poly_off


def _edges_from_rings(xy: np.ndarray, ring_off: np.ndarray, poly_off: np.ndarray, core: Rect) -> dict[str, np.ndarray]:
    """Polygon number (1-based, 0 = none) of every pixel along the core's edges, from the outer rings.

    A hole never reaches a block edge, so the outer rings' segments lying on
    the edge lines say which polygon each edge pixel belongs to.
    """
    h, w = core.height, core.width
    edges = {
        "top": np.zeros(w, np.int32),
        "bottom": np.zeros(w, np.int32),
        "left": np.zeros(h, np.int32),
        "right": np.zeros(h, np.int32),
    }
    n_rings = len(ring_off) - 1
    if n_rings == 0:
        return edges
    ring_of = np.repeat(np.arange(n_rings), np.diff(ring_off))
    poly_of_ring = np.repeat(np.arange(len(poly_off) - 1), np.diff(poly_off))
    outer = np.zeros(n_rings, dtype=bool)
    outer[poly_off[:-1]] = True
    same = (ring_of[:-1] == ring_of[1:]) & outer[ring_of[:-1]]
    x0, y0, x1, y1 = xy[:-1, 0], xy[:-1, 1], xy[1:, 0], xy[1:, 1]
    pid = poly_of_ring[ring_of[:-1]] + 1
    for name, on_line, lo, hi, origin in (
        ("left", same & (x0 == core.col0) & (x1 == core.col0), y0, y1, core.row0),
        ("right", same & (x0 == core.col1) & (x1 == core.col1), y0, y1, core.row0),
        ("top", same & (y0 == core.row0) & (y1 == core.row0), x0, x1, core.col0),
        ("bottom", same & (y0 == core.row1) & (y1 == core.row1), x0, x1, core.col0),
    ):
        for i in np.flatnonzero(on_line):
            a, b = sorted((int(lo[i]) - origin, int(hi[i]) - origin))
            edges[name][a:b] = pid[i]
    return edges


def _anchors_from_rings(xy: np.ndarray, ring_off: np.ndarray, poly_off: np.ndarray) -> np.ndarray:
    """Each polygon's first pixel in raster order (``row << 32 | col``): its top-most, then left-most vertex."""
    if len(poly_off) < 2:
        return np.zeros(0, np.int64)
    starts = ring_off[poly_off[:-1]]
    ymin = np.minimum.reduceat(xy[:, 1], starts)
    per_coord = np.repeat(ymin, np.diff(np.append(starts, len(xy))))
    xmin = np.minimum.reduceat(np.where(xy[:, 1] == per_coord, xy[:, 0], np.inf), starts)
    return ymin.astype(np.int64) << 32 | xmin.astype(np.int64)


def polygonize_block(
    classes: np.ndarray,
    confidence: np.ndarray | None,
    core: Rect,
    index: tuple[int, int] = (0, 0),
    *,
    geometry: bool = True,
    adjacency: bool = False,
) -> BlockPolygons:
    """Polygons of one block's class array (`core` places it in the scene).

    With ``geometry=False`` only the regions' statistics and edge labels are
    computed; ``adjacency=True`` adds the shared edge length (in pixel edges)
    of every pair of touching regions, for :func:`~geoseg.vectorize.cleaning.sieve`. Without confidence
    or adjacency, regions are taken straight from the polygons (no labelling
    pass).

    Examples
    --------
    >>> cls = np.array([[0, 0, 1], [0, 1, 1]], dtype=np.uint8)
    >>> bp = polygonize_block(cls, np.full_like(cls, 255), Rect(10, 20, 12, 23))
    >>> len(bp), bp.pixels.tolist(), bp.geoms[0].bounds
    (2, [3, 3], (20.0, 10.0, 22.0, 12.0))
    """
    if geometry and confidence is None and not adjacency:
        geoms, values, xy, ring_off, poly_off = _shapes(classes, classes != NODATA, core)
        return BlockPolygons(
            index,
            core,
            geoms,
            values.astype(np.uint8),
            np.rint(shapely.area(geoms)).astype(np.int64),
            np.zeros(len(geoms), np.int64),
            _edges_from_rings(xy, ring_off, poly_off, core),
            _anchors_from_rings(xy, ring_off, poly_off),
            ragged=(xy, ring_off, poly_off),
        )
    labels, first = _regions(classes)
    region_class = classes.ravel()[first]
    n = len(region_class)
    region_geoms: np.ndarray | None = None
    if geometry:
        region_geoms = np.empty(n, dtype=object)
        if n:
            shapes_, label_values, *_ = _shapes(labels, labels > 0, core)
            region_geoms[label_values.astype(np.int64) - 1] = shapes_
    flat = labels.ravel()
    pixels = np.bincount(flat, minlength=n + 1)[1:].astype(np.int64)
    conf_sum = (
        np.bincount(flat, weights=confidence.ravel(), minlength=n + 1)[1:].astype(np.int64)
        if confidence is not None
        else np.zeros(n, np.int64)
    )
    edges = {
        "top": labels[0].copy(),
        "bottom": labels[-1].copy(),
        "left": labels[:, 0].copy(),
        "right": labels[:, -1].copy(),
    }
    rows, cols = np.divmod(first, classes.shape[1])
    anchor = (rows + core.row0) << 32 | (cols + core.col0)
    adj = region_adjacency(labels) if adjacency else None
    return BlockPolygons(index, core, region_geoms, region_class, pixels, conf_sum, edges, anchor, adj)


def region_adjacency(labels: np.ndarray) -> np.ndarray:
    """``(m, 3)`` int64 rows ``(a, b, edges)``: regions a < b touch along `edges` pixel edges."""
    pairs = []
    for x, y in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        m = (x != y) & (x > 0) & (y > 0)
        a, b = x[m].astype(np.int64), y[m].astype(np.int64)
        pairs.append(np.minimum(a, b) << 32 | np.maximum(a, b))
    keys, counts = np.unique(np.concatenate(pairs), return_counts=True)
    return np.column_stack([keys >> 32, keys & 0xFFFFFFFF, counts]).astype(np.int64)


@dataclass
class Features(_Columns):
    """Finished polygons, ready to write: WKB in the scene's CRS, attributes, measures in metres."""

    wkb: np.ndarray
    classes: np.ndarray
    pixels: np.ndarray
    conf_sum: np.ndarray
    anchor: np.ndarray
    area_m2: np.ndarray
    perimeter_m: np.ndarray
