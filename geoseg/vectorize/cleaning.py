"""Clean a land-cover map: the minimum mapping unit (sieve) and area-bounded coverage simplification.

The sieve decides on the scene's region graph (sizes, seam links, shared
edge lengths), by each region's first pixel, so it does not depend on the
blocks; relabelling each block with its lookup table gives the cleaned class
raster. Simplification runs per block with the block's outline held fixed and
moves no class's area by more than :data:`MAX_AREA_CHANGE`. :class:`Cleaning`
holds the settings in metres and in pixels.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
from dataclasses import dataclass

import numpy as np
import shapely

from ..classes import NODATA
from .polygons import BlockPolygons, Polygons, label_regions
from .seams import UnionFind, link_blocks

__all__ = [
    "MAX_AREA_CHANGE",
    "MAX_POLYGON_CHANGE",
    "Cleaning",
    "apply_sieve",
    "clean_block",
    "sieve",
    "simplify",
    "simplify_bounded",
]

log = logging.getLogger(__name__)


def sieve(parts: dict[tuple[int, int], BlockPolygons], min_pixels: float) -> dict[tuple[int, int], np.ndarray]:
    """Minimum mapping unit: the new class of every region, as a lookup table per block.

    Regions (joined across block edges) smaller than `min_pixels` are absorbed,
    smallest first, by the neighbour they share the longest edge with (ties:
    the larger neighbour, then the lower id); a region absorbing one also joins
    the absorbed region's other neighbours of its class, since they now touch.
    Regions with no neighbour (islands in nodata) stay. Relabelling each
    block with :func:`apply_sieve` gives the cleaned class raster, which
    has no region below `min_pixels` other than such islands.

    `parts` must come from :func:`~geoseg.vectorize.polygons.polygonize_block` with ``adjacency=True``.
    """
    keys, offsets, roots, across = link_blocks(parts)
    uniq, region = np.unique(roots, return_inverse=True)
    n = len(uniq)
    classes = np.concatenate([parts[k].classes for k in keys]) if keys else np.zeros(0, np.uint8)
    pixels = np.concatenate([parts[k].pixels for k in keys]) if keys else np.zeros(0, np.int64)
    size = np.bincount(region, weights=pixels, minlength=n).astype(np.int64)
    cls = classes[uniq].astype(np.int64)
    # Decisions use each region's first pixel, never its id, so they do not depend on the block layout.
    anchors = np.concatenate([parts[k].anchor for k in keys]) if keys else np.zeros(0, np.int64)
    anchor = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(anchor, region, anchors)
    rows = [
        np.column_stack([region[across_pairs[:, 0]], region[across_pairs[:, 1]], np.ones(len(across_pairs), np.int64)])
        for across_pairs in across
        if len(across_pairs)
    ]
    for k in keys:
        adj = parts[k].adjacency
        if adj is None:
            raise ValueError("sieve needs polygonize_block(..., adjacency=True)")
        if len(adj):
            off = offsets[k] - 1
            rows.append(np.column_stack([region[adj[:, 0] + off], region[adj[:, 1] + off], adj[:, 2]]))
    nbrs: dict[int, dict[int, int]] = {}
    small = set(np.flatnonzero(size < min_pixels).tolist())
    if rows and small:
        allrows = np.concatenate(rows)
        a, b = np.minimum(allrows[:, 0], allrows[:, 1]), np.maximum(allrows[:, 0], allrows[:, 1])
        keep = a != b
        key = a[keep] << 32 | b[keep]
        ukey, inv = np.unique(key, return_inverse=True)
        weight = np.bincount(inv, weights=allrows[keep, 2]).astype(np.int64)
        for kk, w in zip(ukey.tolist(), weight.tolist(), strict=True):
            i, j = kk >> 32, kk & 0xFFFFFFFF
            nbrs.setdefault(i, {})[j] = w
            nbrs.setdefault(j, {})[i] = w
    uf = UnionFind(n)

    def absorb(target: int, r: int) -> None:
        uf.parent[r] = target
        size[target] += size[r]
        tn = nbrs.setdefault(target, {})
        for s, w in nbrs.pop(r, {}).items():
            ns = nbrs[s]
            del ns[r]
            if s == target:
                continue
            tn[s] = tn.get(s, 0) + w
            ns[target] = ns.get(target, 0) + w
        tn.pop(r, None)

    heap = [(int(size[r]), int(anchor[r]), r) for r in small]
    heapq.heapify(heap)
    while heap:
        sz, _, r = heapq.heappop(heap)
        if uf.parent[r] != r or sz != size[r] or size[r] >= min_pixels:
            continue
        near = nbrs.get(r)
        if not near:
            continue
        t = max(near, key=lambda s: (near[s], size[s], -anchor[s]))
        touching = [s for s in near if s != t and cls[s] == cls[t]]
        absorb(t, r)
        for s in touching:
            if uf.parent[s] == s and s in nbrs.get(t, {}):
                absorb(t, s)
        if size[t] < min_pixels:
            heapq.heappush(heap, (int(size[t]), int(anchor[t]), t))
    final = np.array([cls[uf.find(r)] for r in range(n)], dtype=np.uint8)
    luts = {}
    for k in keys:
        lut = np.full(len(parts[k]) + 1, NODATA, dtype=np.uint8)
        lut[1:] = final[region[offsets[k] : offsets[k] + len(parts[k])]]
        luts[k] = lut
    return luts


def apply_sieve(classes: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """A block's cleaned classes: its regions relabelled with its lookup table from :func:`sieve`."""
    return lut[label_regions(classes)[0]]


#: How far simplification may move a class's area within one cell, as a share of the class's pixels
#: there. The cells' changes add up, so a class's area in the whole scene moves no further: 0.4 %
#: in pixel units keeps the promised 0.5 % on the ground with room for the scale's variation
#: across a cell in geodesic measures.
MAX_AREA_CHANGE = 0.004

#: How much of its own area simplification may take from (or add to) one polygon. Polygons under
#: ``min_pixels / (1 - MAX_POLYGON_CHANGE)`` pixels are not simplified at all, so no region at or
#: above the mapping unit is shaved below it (see :func:`simplify_bounded`).
MAX_POLYGON_CHANGE = 0.25

_BOUND_ROUNDS = 4


def simplify(polys: Polygons, tolerance: float, *, frozen: np.ndarray | None = None) -> Polygons:
    """Simplify all polygons together, keeping shared edges shared (no gaps or overlaps).

    `tolerance` is in the polygons' units (pixels before :func:`~geoseg.vectorize.georef.to_crs`).
    Polygons flagged in `frozen` keep their exact outline, and so do their
    neighbours' edges along them: they are left out of the coverage, where
    their outlines become edges along a gap, which stay exact like edges
    along nodata.
    """
    if tolerance <= 0 or len(polys) == 0:
        return polys
    # Edges along nodata and the scene border stay exact, so no polygon reaches into nodata. The result
    # depends on ring start points, so rings start at their canonical vertex first (normal form).
    geoms = shapely.normalize(polys.geoms)
    move = np.ones(len(polys), bool) if frozen is None else ~frozen
    if move.any():
        geoms[move] = shapely.coverage_simplify(geoms[move], tolerance, simplify_boundary=False)
    return Polygons(geoms, polys.classes, polys.pixels, polys.conf_sum, polys.anchor)


def simplify_bounded(
    polys: Polygons,
    tolerance: float,
    min_pixels: float = 0.0,
    *,
    max_area_change: float = MAX_AREA_CHANGE,
) -> Polygons:
    """:func:`simplify` exact pixel polygons without moving any class's area by more than `max_area_change`.

    Simplification cuts the corners of small convex regions, so a class made
    of many small regions loses area to its neighbours (1-3 % per class on a
    busy map). Here, polygons smaller than ``min_pixels / (1 -
    MAX_POLYGON_CHANGE)`` pixels are not simplified; then, until both hold,
    (a) a polygon whose area moved by more than ``MAX_POLYGON_CHANGE`` of its
    pixels and (b) for a class whose area moved by more than
    `max_area_change` of its pixels, the polygons that moved it most, are
    kept exact and the rest simplified again. After a few rounds the
    polygons stay exact. Every class's area (in pixels) then differs from its
    pixel count by at most `max_area_change`, and every polygon of at least
    `min_pixels` pixels keeps an area of at least `min_pixels` (as does every
    region joined from such pieces across block edges).

    `polys` must be exact pixel polygons (``area == pixels``), in pixel units.

    Examples
    --------
    >>> from geoseg.tiling import Rect
    >>> from geoseg.vectorize import polygonize_block
    >>> yy, xx = np.mgrid[:24, :24]
    >>> disk = ((yy - 11.5) ** 2 + (xx - 11.5) ** 2 < 49).astype(np.uint8)
    >>> polys = polygonize_block(disk, None, Rect(0, 0, 24, 24)).polygons()
    >>> polys.pixels.tolist(), shapely.get_num_coordinates(polys.geoms).tolist()
    ([156, 420], [37, 42])
    >>> out = simplify_bounded(polys, 1.0)
    >>> shapely.area(out.geoms).tolist(), shapely.get_num_coordinates(out.geoms).tolist()
    ([156.0, 420.0], [13, 18])
    >>> shapely.get_num_coordinates(simplify_bounded(polys, 1.0, 200).geoms).tolist()  # 156 < 200 / 0.75: exact
    [37, 42]
    """
    if tolerance <= 0 or len(polys) == 0:
        return polys
    pixels = polys.pixels.astype(np.float64)
    classes = polys.classes.astype(np.intp)
    class_pixels = np.bincount(classes, weights=pixels, minlength=256)
    frozen = pixels < min_pixels / (1.0 - MAX_POLYGON_CHANGE) + 1.0
    for _ in range(_BOUND_ROUNDS):
        out = simplify(polys, tolerance, frozen=frozen)
        delta = shapely.area(out.geoms) - pixels
        shaved = ~frozen & (np.abs(delta) > MAX_POLYGON_CHANGE * pixels)
        moved = np.bincount(classes, weights=delta, minlength=256)
        over = np.flatnonzero(np.abs(moved) > max_area_change * class_pixels)
        if not shaved.any() and not len(over):
            return out
        frozen |= shaved
        for c in over.tolist():
            # The polygons that moved the class's area in its direction, largest first, until they
            # account for the excess and half the allowance (their neighbours' edges go back too).
            sign = np.sign(moved[c])
            cand = np.flatnonzero(~frozen & (classes == c) & (delta * sign > 0))
            cand = cand[np.argsort(-np.abs(delta[cand]), kind="stable")]
            need = abs(moved[c]) - 0.5 * max_area_change * class_pixels[c]
            k = int(np.searchsorted(np.cumsum(np.abs(delta[cand])), need)) + 1
            frozen[cand[:k]] = True
    log.debug("simplification kept exact in a block of %d polygons: class areas would move too far", len(polys))
    return simplify(polys, tolerance, frozen=np.ones(len(polys), bool))


def clean_block(bp: BlockPolygons, simplify_pixels: float, min_pixels: float) -> BlockPolygons:
    """Simplify one block's polygons as a coverage, within the area bounds of :func:`simplify_bounded`.

    The block's outline (its edges, the scene border and nodata) is held
    fixed, so neighbouring blocks still meet exactly; a boundary crossing a
    block edge keeps its vertex there. `min_pixels` is the mapping unit the
    block was sieved to: no polygon (or region joined across block edges) at
    or above it is shaved below it, so none needs absorbing afterwards, and
    no class's area moves by more than :data:`MAX_AREA_CHANGE`.
    """
    if len(bp) == 0 or simplify_pixels <= 0:
        return bp
    polys = simplify_bounded(bp.polygons(), simplify_pixels, min_pixels)
    return dataclasses.replace(bp, geoms=polys.geoms, adjacency=None, ragged=None)


@dataclass(frozen=True)
class Cleaning:
    """Polygon cleaning in effect: minimum mapping unit and simplification tolerance."""

    min_area_m2: float
    simplify_m: float
    pixel_m: float

    #: Defaults, in pixels of the scene: regions under 16 pixels merge into a neighbour,
    #: boundaries simplify by one pixel (staircases become straight edges).
    DEFAULT_MIN_PIXELS = 16
    DEFAULT_SIMPLIFY_PIXELS = 1.0

    @classmethod
    def resolve(cls, min_area: float | None, simplify_m: float | None, pixel_m: float) -> Cleaning:
        """Settings in metres; None means the default for the scene's pixel size."""
        if min_area is None:
            min_area = cls.DEFAULT_MIN_PIXELS * pixel_m * pixel_m
        if simplify_m is None:
            simplify_m = cls.DEFAULT_SIMPLIFY_PIXELS * pixel_m
        return cls(float(min_area), float(simplify_m), pixel_m)

    @property
    def min_pixels(self) -> float:
        return self.min_area_m2 / (self.pixel_m * self.pixel_m)

    @property
    def simplify_pixels(self) -> float:
        return self.simplify_m / self.pixel_m
