"""Class raster -> land-cover polygons, block by block, merged exactly across block edges.

Each block's class array is split into 4-connected regions of one class
(``scipy.ndimage.label``), and each region becomes one polygon
(``rasterio.features.shapes``) in *global pixel coordinates*: vertex
coordinates are whole numbers, so the edges of polygons on either side of a
block seam coincide exactly. A region cut by a seam is found by comparing the
region labels on both sides of the seam pixel by pixel, and its pieces are
dissolved with a coverage union (exact for edge-matched pieces). The result is
the same set of polygons as polygonising the whole raster at once.

Geometries move into the scene's CRS only at the end, with its affine
transform; areas and perimeters are measured in metres (see :func:`measure`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import rasterio.features
import shapely
from affine import Affine
from pyproj import CRS, Geod, Proj, Transformer
from scipy import ndimage

from .classes import NODATA
from .tiling import Rect

__all__ = [
    "BlockPolygons",
    "Polygons",
    "measure",
    "merge_blocks",
    "polygonize_block",
    "remove_small",
    "simplify",
    "to_crs",
]

log = logging.getLogger(__name__)

_FOUR = ndimage.generate_binary_structure(2, 1)


@dataclass
class BlockPolygons:
    """The polygons of one block, with what the seam merge needs.

    ``geoms[i]``, ``classes[i]``, ``pixels[i]`` and ``conf_sum[i]`` describe
    local region ``i + 1``; ``edges`` holds the region label (0 = no data) of
    every pixel along the core's top, bottom, left and right edges.
    """

    index: tuple[int, int]
    core: Rect
    geoms: np.ndarray
    classes: np.ndarray
    pixels: np.ndarray
    conf_sum: np.ndarray
    edges: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.geoms)


@dataclass
class Polygons:
    """Land-cover polygons with per-polygon class, pixel count and summed confidence."""

    geoms: np.ndarray
    classes: np.ndarray
    pixels: np.ndarray
    conf_sum: np.ndarray

    def __len__(self) -> int:
        return len(self.geoms)

    @property
    def mean_confidence(self) -> np.ndarray:
        """Mean blended probability of the winning class, 0-1."""
        return self.conf_sum / np.maximum(self.pixels, 1) / 255.0

    def take(self, idx: np.ndarray) -> Polygons:
        return Polygons(self.geoms[idx], self.classes[idx], self.pixels[idx], self.conf_sum[idx])


def label_regions(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4-connected regions of equal class; nodata is label 0.

    Returns
    -------
    labels : ndarray of int32
    region_class : ndarray of uint8
        Class of region ``i + 1``.
    """
    labels = np.zeros(classes.shape, dtype=np.int32)
    region_class: list[np.ndarray] = []
    offset = 0
    for c in np.unique(classes):
        if c == NODATA:
            continue
        lab, n = ndimage.label(classes == c, structure=_FOUR)
        mask = lab > 0
        labels[mask] = lab[mask] + offset
        region_class.append(np.full(n, c, dtype=np.uint8))
        offset += n
    return labels, (np.concatenate(region_class) if region_class else np.zeros(0, np.uint8))


def _polygon(geojson: dict) -> shapely.Polygon:
    rings = geojson["coordinates"]
    return shapely.Polygon(rings[0], rings[1:])


def polygonize_block(classes: np.ndarray, confidence: np.ndarray, core: Rect,
                     index: tuple[int, int] = (0, 0)) -> BlockPolygons:
    """Polygons of one block's class array (`core` places it in the scene).

    Examples
    --------
    >>> cls = np.array([[0, 0, 1], [0, 1, 1]], dtype=np.uint8)
    >>> bp = polygonize_block(cls, np.full_like(cls, 255), Rect(10, 20, 12, 23))
    >>> len(bp), bp.pixels.tolist(), bp.geoms[0].bounds
    (2, [3, 3], (20.0, 10.0, 22.0, 12.0))
    """
    labels, region_class = label_regions(classes)
    n = len(region_class)
    geoms = np.empty(n, dtype=object)
    if n:
        transform = Affine.translation(core.col0, core.row0)
        for geom, value in rasterio.features.shapes(labels, mask=labels > 0, connectivity=4, transform=transform):
            geoms[int(value) - 1] = _polygon(geom)
    flat = labels.ravel()
    pixels = np.bincount(flat, minlength=n + 1)[1:].astype(np.int64)
    conf_sum = np.bincount(flat, weights=confidence.ravel(), minlength=n + 1)[1:].astype(np.int64)
    edges = {
        "top": labels[0].copy(),
        "bottom": labels[-1].copy(),
        "left": labels[:, 0].copy(),
        "right": labels[:, -1].copy(),
    }
    return BlockPolygons(index, core, geoms, region_class, pixels, conf_sum, edges)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = np.arange(n, dtype=np.int64)

    def find(self, i: int) -> int:
        p = self.parent
        root = i
        while p[root] != root:
            root = p[root]
        while p[i] != root:
            p[i], i = root, p[i]
        return int(root)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def merge_blocks(parts: dict[tuple[int, int], BlockPolygons]) -> Polygons:
    """Join the blocks' polygons, dissolving regions that continue across block edges."""
    keys = sorted(parts)
    offsets: dict[tuple[int, int], int] = {}
    total = 0
    for k in keys:
        offsets[k] = total
        total += len(parts[k])
    geoms = np.concatenate([parts[k].geoms for k in keys]) if keys else np.empty(0, object)
    classes = np.concatenate([parts[k].classes for k in keys]) if keys else np.zeros(0, np.uint8)
    pixels = np.concatenate([parts[k].pixels for k in keys]) if keys else np.zeros(0, np.int64)
    conf = np.concatenate([parts[k].conf_sum for k in keys]) if keys else np.zeros(0, np.int64)
    uf = _UnionFind(total)
    for (by, bx) in keys:
        a = parts[(by, bx)]
        for other, mine, theirs in (((by, bx + 1), "right", "left"), ((by + 1, bx), "bottom", "top")):
            b = parts.get(other)
            if b is None:
                continue
            la, lb = a.edges[mine], b.edges[theirs]
            both = (la > 0) & (lb > 0)
            ga = la[both].astype(np.int64) - 1 + offsets[(by, bx)]
            gb = lb[both].astype(np.int64) - 1 + offsets[other]
            same = classes[ga] == classes[gb]
            for i, j in set(zip(ga[same].tolist(), gb[same].tolist(), strict=True)):
                uf.union(i, j)
    roots = np.array([uf.find(i) for i in range(total)], dtype=np.int64)
    order = np.argsort(roots, kind="stable")
    uniq, starts = np.unique(roots[order], return_index=True)
    out_geoms = np.empty(len(uniq), dtype=object)
    out_classes = classes[uniq]
    out_pixels = np.add.reduceat(pixels[order], starts) if total else pixels
    out_conf = np.add.reduceat(conf[order], starts) if total else conf
    bounds = [*starts.tolist(), total]
    merged = 0
    for g, (s, e) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        if e - s == 1:
            out_geoms[g] = geoms[order[s]]
        else:
            merged += 1
            out_geoms[g] = _dissolve(geoms[order[s:e]])
    log.debug("merged %d regions cut by block edges from %d pieces", merged, total)
    return Polygons(out_geoms, out_classes, out_pixels, out_conf)


def _dissolve(pieces: np.ndarray) -> shapely.Geometry:
    """Union of pixel polygons that share edges (one connected region), exactly.

    All vertices are whole pixel coordinates, so the overlay is exact. Pieces
    meet along a seam with different vertices on each side; the union leaves
    vertices on straight runs, which are dropped again.
    """
    geom = shapely.union_all(pieces)
    if isinstance(geom, shapely.Polygon):
        return _drop_collinear(geom)
    return geom


def _ring_corners(coords: np.ndarray) -> np.ndarray:
    """A closed ring without the vertices that lie on a straight run (keeps the point set)."""
    pts = coords[:-1]
    prev = pts - np.roll(pts, 1, axis=0)
    nxt = np.roll(pts, -1, axis=0) - pts
    turn = prev[:, 0] * nxt[:, 1] - prev[:, 1] * nxt[:, 0] != 0
    kept = pts[turn]
    return np.vstack([kept, kept[:1]])


def _drop_collinear(poly: shapely.Polygon) -> shapely.Polygon:
    shell = _ring_corners(np.asarray(poly.exterior.coords))
    holes = [_ring_corners(np.asarray(r.coords)) for r in poly.interiors]
    return shapely.Polygon(shell, holes)


def to_crs(geoms: np.ndarray, transform: Affine) -> np.ndarray:
    """Pixel-coordinate geometries (x = column, y = row) into the CRS of `transform`."""
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f

    def apply(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        return np.column_stack([a * x + b * y + c, d * x + e * y + f])

    return shapely.transform(geoms, apply)


def _geod(crs: CRS) -> Geod:
    ell = crs.ellipsoid
    if ell is None:
        return Geod(ellps="WGS84")
    return Geod(a=ell.semi_major_metre, b=ell.semi_minor_metre)


def areal_distortion(crs: CRS, x: float, y: float) -> float:
    """How far the projection's areal scale at ``(x, y)`` is from 1 (0 = exact)."""
    if crs.is_geographic:
        return math.inf
    try:
        lon, lat = Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True).transform(x, y)
        return abs(Proj(crs).get_factors(lon, lat).areal_scale - 1.0)
    except Exception:
        return 0.0


def measure(geoms: np.ndarray, crs: CRS, *, method: str = "auto") -> tuple[np.ndarray, np.ndarray, str]:
    """Area (m²) and perimeter (m) of CRS geometries.

    Parameters
    ----------
    method : {'auto', 'planar', 'geodesic'}
        ``planar`` measures in the projection plane (the convention for
        projected CRSs: equal to pixel count times pixel area); ``geodesic``
        on the CRS's ellipsoid. ``auto`` is planar for projected CRSs whose
        areal scale at the data's centre is within 0.5 % of 1 (UTM, national
        grids) and geodesic otherwise (geographic CRSs, Web Mercator...).

    Returns
    -------
    area_m2, perimeter_m : ndarray of float64
    method : str
        The method used.
    """
    if len(geoms) == 0:
        return np.zeros(0), np.zeros(0), "planar"
    if method == "auto":
        x0, y0, x1, y1 = shapely.total_bounds(geoms)
        method = "planar" if areal_distortion(crs, (x0 + x1) / 2, (y0 + y1) / 2) <= 0.005 else "geodesic"
    if method == "planar":
        unit = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
        return shapely.area(geoms) * unit * unit, shapely.length(geoms) * unit, "planar"
    geod = _geod(crs)
    if not crs.is_geographic:
        tr = Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
        geoms = shapely.transform(geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    else:
        # Geographic CRS axis order is handled by always_xy=True data (x=lon, y=lat).
        pass
    area = np.empty(len(geoms))
    perim = np.empty(len(geoms))
    for i, g in enumerate(geoms):
        a, p = geod.geometry_area_perimeter(g)
        area[i], perim[i] = abs(a), p
    return area, perim, "geodesic"


def simplify(polys: Polygons, tolerance: float) -> Polygons:
    """Simplify all polygons together, keeping shared edges shared (no gaps or overlaps)."""
    if tolerance <= 0 or len(polys) == 0:
        return polys
    geoms = shapely.coverage_simplify(polys.geoms, tolerance, simplify_boundary=True)
    return Polygons(geoms, polys.classes, polys.pixels, polys.conf_sum)


def remove_small(polys: Polygons, min_pixels: float) -> Polygons:
    """Merge regions of fewer than `min_pixels` pixels into the neighbour sharing the longest edge.

    Regions are absorbed smallest first; a region with no neighbour (an
    island in nodata) is kept. The result is still a gap-free partition.
    """
    if min_pixels <= 0 or len(polys) == 0:
        return polys
    geoms = polys.geoms.copy()
    pixels = polys.pixels.copy()
    conf = polys.conf_sum.copy()
    small = np.flatnonzero(pixels < min_pixels)
    if len(small) == 0:
        return polys
    tree = shapely.STRtree(polys.geoms)
    uf = _UnionFind(len(geoms))
    alive = np.ones(len(geoms), dtype=bool)
    for i in small[np.argsort(pixels[small], kind="stable")]:
        i = int(i)
        if not alive[i] or pixels[i] >= min_pixels:
            continue
        cands = {uf.find(int(c)) for c in tree.query(geoms[i], predicate="intersects")} - {i}
        if not cands:
            continue
        cand = np.array(sorted(cands))
        shared = shapely.length(shapely.intersection(shapely.boundary(geoms[i]), shapely.boundary(geoms[cand])))
        if shared.max() <= 0:
            continue
        j = int(cand[int(np.argmax(shared))])
        geoms[j] = _dissolve(np.array([geoms[j], geoms[i]], dtype=object))
        pixels[j] += pixels[i]
        conf[j] += conf[i]
        alive[i] = False
        uf.parent[i] = j
    keep = np.flatnonzero(alive)
    return Polygons(geoms[keep], polys.classes[keep], pixels[keep], conf[keep])
