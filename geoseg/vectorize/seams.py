"""Join the polygons of neighbouring blocks exactly where regions continue across block edges.

A region cut by a block edge is found by comparing the region labels on both
sides of the edge pixel by pixel (:class:`SeamMerger`, one row of blocks at a
time); its pieces, whose vertices are whole pixel coordinates, are dissolved
with a coverage union (exact for edge-matched pieces). The result is the same
set of polygons as polygonising the whole raster at once.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely

from .polygons import BlockPolygons, Polygons

__all__ = [
    "SeamMerger",
    "UnionFind",
    "dissolve_pieces",
    "link_blocks",
    "merge_blocks",
    "split_block",
]

log = logging.getLogger(__name__)


class UnionFind:
    """Disjoint sets over ids ``0..n-1``, or (``n=None``) over ids added one by one; roots are the smallest ids.

    Examples
    --------
    >>> uf = UnionFind(5)
    >>> uf.union(3, 1)
    >>> uf.union(4, 3)
    >>> [uf.find(i) for i in range(5)]
    [0, 1, 2, 1, 1]
    """

    def __init__(self, n: int | None = None) -> None:
        self.parent: Any = np.arange(n, dtype=np.int64) if n is not None else {}

    def add(self, i: int) -> None:
        self.parent[i] = i

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


def _seam_pairs(
    la: np.ndarray, ca: np.ndarray, lb: np.ndarray, cb: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Regions facing each other across a seam, one row per pixel edge.

    `la`/`lb` are the edge labels on either side (1-based, 0 = nodata) and
    `ca`/`cb` the classes of their blocks' regions. Returns the 0-based local
    region numbers on each side and whether they have the same class (and so
    are one region).
    """
    both = (la > 0) & (lb > 0)
    ia = la[both].astype(np.int64) - 1
    ib = lb[both].astype(np.int64) - 1
    return ia, ib, ca[ia] == cb[ib]


def link_blocks(
    parts: dict[tuple[int, int], BlockPolygons],
) -> tuple[list[tuple[int, int]], dict[tuple[int, int], int], np.ndarray, list[np.ndarray]]:
    """Join regions continuing across block edges.

    Returns the block order, each block's offset into the global region
    numbering, every region's root id, and the ``(i, j)`` global pairs of
    different regions that touch across a seam (one row per pixel edge).
    """
    keys = sorted(parts)
    offsets: dict[tuple[int, int], int] = {}
    total = 0
    for k in keys:
        offsets[k] = total
        total += len(parts[k])
    uf = UnionFind(total)
    across: list[np.ndarray] = []
    for by, bx in keys:
        a = parts[(by, bx)]
        for other, mine, theirs in (((by, bx + 1), "right", "left"), ((by + 1, bx), "bottom", "top")):
            b = parts.get(other)
            if b is None:
                continue
            ia, ib, same = _seam_pairs(a.edges[mine], a.classes, b.edges[theirs], b.classes)
            ga, gb = ia + offsets[(by, bx)], ib + offsets[other]
            for i, j in set(zip(ga[same].tolist(), gb[same].tolist(), strict=True)):
                uf.union(i, j)
            across.append(np.column_stack([ga[~same], gb[~same]]))
    roots = np.array([uf.find(i) for i in range(total)], dtype=np.int64)
    return keys, offsets, roots, across


class SeamMerger:
    """Merge block polygons one row of blocks at a time, releasing each region once it is complete.

    Feed :meth:`add_row` the blocks of every block row, top to bottom. Polygons
    that touch no block edge pass straight through; pieces on an edge wait
    until their region can grow no further (no piece of it lies on the bottom
    edge of the newest row), and are then dissolved into one polygon. Memory
    holds one row of blocks plus the regions still open across its bottom
    edge, not the scene.
    """

    def __init__(self) -> None:
        self._pieces: dict[int, tuple[shapely.Geometry, int, int, int, int]] = {}
        self._uf = UnionFind()
        self._bottom: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}
        self._next = 0
        self._xs: set[int] = set()
        self._ys: set[int] = set()
        self.merged = 0

    def add_row(self, parts: Sequence[BlockPolygons], *, last: bool) -> Polygons:
        """The polygons completed by this row of blocks (in canonical order)."""
        parts = sorted(parts, key=lambda p: p.index[1])
        offset = {}
        for p in parts:
            offset[p.index[1]] = self._next
            self._next += len(p)
            self._xs.update((p.core.col0, p.core.col1))
            self._ys.update((p.core.row0, p.core.row1))
        done: list[Polygons] = []
        for p in parts:
            touching = p.touching
            polys = p.polygons()
            done.append(polys.take(np.flatnonzero(~touching)))
            base = offset[p.index[1]]
            for i in np.flatnonzero(touching).tolist():
                gid = base + i
                self._pieces[gid] = polys.row(i)
                self._uf.add(gid)
        links: list[tuple[np.ndarray, np.ndarray]] = []
        for a, b in itertools.pairwise(parts):
            if b.index[1] == a.index[1] + 1:
                ia, ib, same = _seam_pairs(a.edges["right"], a.classes, b.edges["left"], b.classes)
                links.append((ia[same] + offset[a.index[1]], ib[same] + offset[b.index[1]]))
        for p in parts:
            above = self._bottom.get(p.index[1])
            if above is not None:
                labels, classes, base = above
                ia, ib, same = _seam_pairs(labels, classes, p.edges["top"], p.classes)
                links.append((ia[same] + base, ib[same] + offset[p.index[1]]))
        for ga, gb in links:
            for i, j in set(zip(ga.tolist(), gb.tolist(), strict=True)):
                self._uf.union(i, j)
        self._bottom = {p.index[1]: (p.edges["bottom"], p.classes, offset[p.index[1]]) for p in parts}
        still_open: set[int] = set()
        if not last:
            for labels, _, base in self._bottom.values():
                still_open.update(self._uf.find(base + int(i) - 1) for i in np.unique(labels[labels > 0]))
        groups: dict[int, list[int]] = {}
        for gid in self._pieces:
            root = self._uf.find(gid)
            if root not in still_open:
                groups.setdefault(root, []).append(gid)
        rows = []
        for ids in groups.values():
            pieces = [self._pieces.pop(g) for g in ids]
            geom = pieces[0][0]
            if len(pieces) > 1:
                self.merged += 1
                geom = dissolve_pieces(
                    np.array([q[0] for q in pieces], dtype=object),
                    np.array(sorted(self._xs)),
                    np.array(sorted(self._ys)),
                )
            rows.append(
                (geom, pieces[0][1], sum(q[2] for q in pieces), sum(q[3] for q in pieces), min(q[4] for q in pieces))
            )
        for gid in [g for g in self._uf.parent if g not in self._pieces]:
            del self._uf.parent[gid]  # forget finished pieces (their roots are finished too)
        done.append(Polygons.from_rows(rows))
        return Polygons.concat(done).canonical()


def merge_blocks(parts: dict[tuple[int, int], BlockPolygons]) -> Polygons:
    """Join all blocks' polygons, dissolving regions that continue across block edges (canonical order)."""
    merger = SeamMerger()
    rows = sorted({by for by, _ in parts})
    out = [merger.add_row([p for k, p in parts.items() if k[0] == by], last=by == rows[-1]) for by in rows]
    log.debug("merged %d regions cut by block edges", merger.merged)
    return Polygons.concat(out).canonical()


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


def _densify_on_lines(ring: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """A closed ring with a vertex at every pixel corner of its segments on the lines ``x in xs`` or ``y in ys``."""
    p, q = ring[:-1], ring[1:]
    on = ((p[:, 0] == q[:, 0]) & np.isin(p[:, 0], xs)) | ((p[:, 1] == q[:, 1]) & np.isin(p[:, 1], ys))
    steps = np.where(on, np.abs(q - p).sum(axis=1), 1).astype(np.int64)
    unit = (q - p) / steps[:, None]  # exact: +-1 or 0 on the lines, the whole segment elsewhere
    seg = np.repeat(np.arange(len(p)), steps)
    k = np.arange(len(seg)) - np.repeat(np.cumsum(steps) - steps, steps)
    pts = p[seg] + unit[seg] * k[:, None]
    return np.vstack([pts, pts[:1]])


def dissolve_pieces(pieces: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> shapely.Geometry:
    """One polygon from the pieces of a region cut along the grid lines ``x in xs`` and ``y in ys``, exactly.

    The pieces are pixel polygons (whole-number vertices in one pixel grid)
    that together make one region, cut at block edges or at the edges between
    scenes on a shared grid; they meet only along those lines. The result is
    their union, without the vertices the cuts left on straight runs.

    A piece's holes lie inside its block and never touch a block edge, so only
    the outer rings need joining; the holes are carried over as they are.
    With a vertex at every pixel corner along the seams, the outer rings form
    an edge-matched coverage and join with a coverage union, far cheaper than
    a general overlay (which stays the fallback).

    Parameters
    ----------
    pieces : ndarray of shapely.Polygon
        The pieces of one region.
    xs, ys : ndarray of float
        The columns of the vertical and the rows of the horizontal lines the
        region was cut along.

    Examples
    --------
    >>> pieces = np.array([shapely.box(0, 0, 2, 2), shapely.box(2, 0, 5, 2)], dtype=object)
    >>> dissolve_pieces(pieces, np.array([2.0]), np.array([])).wkt
    'POLYGON ((0 0, 0 2, 5 2, 5 0, 0 0))'
    """
    shells = shapely.polygons(
        [shapely.linearrings(_densify_on_lines(np.asarray(p.exterior.coords), xs, ys)) for p in pieces]
    )
    merged = shapely.coverage_union_all(shells)
    if isinstance(merged, shapely.Polygon) and math.isclose(merged.area, shapely.area(shells).sum(), rel_tol=1e-12):
        piece_holes = [r for p in pieces for r in p.interiors]
        holes = [np.asarray(r.coords) for r in piece_holes]
        rings = [_ring_corners(np.asarray(r.coords)) for r in merged.interiors]
        geom = shapely.Polygon(_ring_corners(np.asarray(merged.exterior.coords)), rings + holes)
        # The pieces' holes lie strictly inside them and keep their relations to the pieces' rings; only
        # holes the union itself made can meet them. Check just those rings together, not the whole polygon.
        if not rings or not holes:
            return geom
        touching = shapely.STRtree(piece_holes).query(list(merged.interiors), predicate="intersects")[1]
        if len(touching) == 0:
            return geom
        probe = shapely.Polygon(geom.exterior, rings + [holes[int(i)] for i in np.unique(touching)])
        if probe.is_valid:
            return geom
    return _dissolve(pieces)


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


def _renumber_edges(edges: dict[str, np.ndarray], dest: np.ndarray) -> dict[str, np.ndarray]:
    """Edge labels after polygon ``i`` became polygon ``dest[i]`` (0-based; labels are 1-based, 0 = none).

    Through a lookup table with 0 kept at 0: a cell without polygons (all
    nodata) has only 0 labels and an empty `dest`, which must not be indexed.
    """
    lut = np.zeros(len(dest) + 1, np.int32)
    lut[1:] = np.asarray(dest, np.int64) + 1
    return {k: lut[v] for k, v in edges.items()}


def split_block(bp: BlockPolygons) -> tuple[BlockPolygons, Polygons]:
    """A block's pieces on its edges (for :class:`SeamMerger`) and its finished polygons inside."""
    touching = bp.touching
    idx = np.flatnonzero(touching)
    pieces = BlockPolygons(
        bp.index,
        bp.core,
        None if bp.geoms is None else bp.geoms[idx],
        bp.classes[idx],
        bp.pixels[idx],
        bp.conf_sum[idx],
        _renumber_edges(bp.edges, np.cumsum(touching) - 1),
        bp.anchor[idx],
    )
    return pieces, bp.polygons().take(np.flatnonzero(~touching))
