"""One land-cover layer for a region, from the layers of its scenes.

Every scene's polygons go into one GeoPackage layer with a ``scene`` attribute
and the same embedded QGIS style as a single run. Where neighbouring scenes
share a CRS and a pixel grid (same pixel size, origins a whole number of pixels
apart), a region that continues across the edge between two scenes was cut
there into one polygon per scene; those pieces are merged into one polygon, as
if the mosaic had been mapped at once. The merge is exact: the pieces are
brought onto the shared pixel grid, where their edges along the scene border
coincide, and joined with a coverage union (:func:`~geoseg.vectorize.dissolve_pieces`).

Only polygons that touch their scene's border are held in memory; the others
are copied through scene by scene. Scenes in another CRS than the first one are
reprojected into it (their polygons are not merged with other grids').
Overlapping scenes are not clipped: their polygons overlap where the scenes do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import shapely
from affine import Affine
from pyproj import CRS, Transformer

from .classes import ClassTable
from .errors import GeosegIOError
from .vectorize import UnionFind, dissolve_pieces, measure, to_crs

__all__ = ["MergeResult", "merge_layers"]

log = logging.getLogger(__name__)

_FIELDS = ("class_id", "class_name", "area_m2", "perimeter_m", "mean_confidence")
_EPS = 1e-6


@dataclass
class MergeResult:
    """The regional layer written by :func:`merge_layers`."""

    path: Path
    features: int
    #: polygons cut by scene edges that were merged into others
    joined: int
    scenes: int


@dataclass
class _Scene:
    name: str
    layer: Path
    crs: CRS
    transform: Affine
    width: int
    height: int

    @classmethod
    def open(cls, name: str, layer: Path, report: Path) -> _Scene:
        from .export.report import read_report

        record = read_report(report)
        if record is None:
            raise GeosegIOError(f"cannot read the outputs of scene {name}: {report} is missing or not a run report")
        try:
            crs = CRS.from_user_input(pyogrio.read_info(layer, layer="landcover")["crs"])
        except (OSError, ValueError, KeyError, pyogrio.errors.DataSourceError) as exc:
            raise GeosegIOError(f"cannot read the outputs of scene {name}: {exc}") from None
        scene = record.scene
        return cls(name, Path(layer), crs, Affine(*scene.transform), scene.width, scene.height)

    def grid_key(self) -> tuple[Any, ...] | None:
        t = self.transform
        if t.b or t.d:
            return None  # rotated grids are not merged
        return (self.crs.to_wkt(), t.a, t.e)

    def offset(self, ref: Affine) -> tuple[int, int] | None:
        """This scene's origin in pixels of `ref`, or None if it is not on that grid."""
        col, row = (self.transform.c - ref.c) / ref.a, (self.transform.f - ref.f) / ref.e
        if abs(col - round(col)) > _EPS or abs(row - round(row)) > _EPS:
            return None
        return round(col), round(row)


@dataclass
class _Held:
    """Polygons along scene borders, in pixel coordinates of their group's grid, awaiting their neighbours."""

    geoms: list[shapely.Geometry] = field(default_factory=list)
    wkb: list[bytes] = field(default_factory=list)  # as read, for the polygons that are not joined
    rows: list[tuple[Any, ...]] = field(default_factory=list)  # class_id, class_name, area, perimeter, conf, scene


def merge_layers(
    layers: Sequence[str | os.PathLike[str]],
    reports: Sequence[str | os.PathLike[str]],
    target: str | os.PathLike[str],
    *,
    names: Sequence[str] | None = None,
    run_info: dict[str, Any] | None = None,
) -> MergeResult:
    """Write one regional GeoPackage from per-scene land-cover layers.

    Parameters
    ----------
    layers, reports : sequences of paths
        Each scene's ``<stem>.landcover.gpkg`` and ``<stem>.run.json`` (its grid).
    target : path
        The regional GeoPackage, written under a temporary name and renamed.
    names : sequence of str, optional
        The ``scene`` attribute of each scene's polygons [default: layer file stems].
    run_info : dict, optional
        Extra values for the ``runs`` table.
    """
    from .export import GeoPackageWriter

    names = list(names) if names is not None else [Path(p).name.split(".")[0] for p in layers]
    scenes = [_Scene.open(n, Path(p), Path(r)) for n, p, r in zip(names, layers, reports, strict=True)]
    if not scenes:
        raise ValueError("merge_layers needs at least one scene")
    target_crs = scenes[0].crs
    classes = _classes(scenes[0].layer)

    # Scenes on one grid form a group; the first scene's grid is the group's pixel frame.
    groups: dict[int, list[tuple[_Scene, tuple[int, int]]]] = {}
    frames: dict[int, tuple[Any, Affine]] = {}  # group -> (grid key, pixel frame)
    for i, s in enumerate(scenes):
        key = s.grid_key()
        for gid, (k, ref) in frames.items():
            off = s.offset(ref) if key is not None and key == k else None
            if off is not None:
                groups[gid].append((s, off))
                break
        else:
            frames[i] = (key, s.transform)
            groups[i] = [(s, (0, 0))]
    group_of = {id(s): gid for gid, members in groups.items() for s, _ in members}

    held: dict[int, _Held] = {gid: _Held() for gid, m in groups.items() if len(m) > 1}
    offsets = {id(s): off for members in groups.values() for s, off in members}
    run_row = {"regional_layer": Path(target).name, "scenes": [s.name for s in scenes], **(run_info or {})}
    with GeoPackageWriter(target, crs=target_crs.to_wkt(), classes=classes, runs=run_row) as gpkg:
        for s in scenes:
            _, _, wkb, cols = pyogrio.raw.read(s.layer, layer="landcover", columns=list(_FIELDS))
            geoms = shapely.from_wkb(wkb)
            gid = group_of[id(s)]
            border = np.zeros(len(geoms), bool)
            if gid in held and len(geoms):
                # bounds in the group's pixels (an unrotated grid: columns and rows follow x and y)
                ref = frames[gid][1]
                xmin, ymin, xmax, ymax = shapely.bounds(geoms).T
                c0, c1 = np.sort([(xmin - ref.c) / ref.a, (xmax - ref.c) / ref.a], axis=0)
                r0, r1 = np.sort([(ymin - ref.f) / ref.e, (ymax - ref.f) / ref.e], axis=0)
                col0, row0 = offsets[id(s)]
                border = (
                    (c0 <= col0 + _EPS)
                    | (r0 <= row0 + _EPS)
                    | (c1 >= col0 + s.width - _EPS)
                    | (r1 >= row0 + s.height - _EPS)
                )
                h = held[gid]
                h.geoms.extend(_to_pixels(geoms[border], ref))
                h.wkb.extend(wkb[border])
                h.rows.extend((*(c[j] for c in cols), s.name) for j in np.flatnonzero(border))
            keep = ~border
            out = wkb[keep] if s.crs == target_crs else shapely.to_wkb(_reproject(geoms[keep], s.crs, target_crs))
            gpkg.write(out, _columns([c[keep] for c in cols], s.name, int(keep.sum())))
        joined = 0
        for gid, h in held.items():
            members = groups[gid]
            ref = frames[gid][1]
            wkb, fields, n_joined = _join(h, members, ref, target_crs)
            joined += n_joined
            gpkg.write(wkb, fields)
        features = gpkg.features
    log.info("%s: %d polygons from %d scenes, %d joined across scene edges", target, features, len(scenes), joined)
    return MergeResult(Path(target), features, joined, len(scenes))


def _classes(layer: Path) -> ClassTable:
    _, _, _, (ids, cnames, colors) = pyogrio.raw.read(layer, layer="classes")
    return ClassTable.from_dict(
        [{"id": int(i), "name": str(n), "color": str(c)} for i, n, c in zip(ids, cnames, colors, strict=True)]
    )


def _columns(cols: Sequence[np.ndarray], scene: str | np.ndarray, n: int) -> dict[str, np.ndarray]:
    out = {name: np.asarray(c) for name, c in zip(_FIELDS, cols, strict=True)}
    out["class_id"] = out["class_id"].astype(np.int32)
    out["class_name"] = out["class_name"].astype(object)
    out["scene"] = np.full(n, scene, dtype=object) if isinstance(scene, str) else scene
    return out


def _to_pixels(geoms: np.ndarray, ref: Affine) -> np.ndarray:
    """CRS geometries into (column, row) of `ref`, with near-integer coordinates snapped to the pixel lines."""
    inv = ~ref

    def apply(xy: np.ndarray) -> np.ndarray:
        c = inv.a * xy[:, 0] + inv.b * xy[:, 1] + inv.c
        r = inv.d * xy[:, 0] + inv.e * xy[:, 1] + inv.f
        out = np.column_stack([c, r])
        snapped = np.round(out)
        return np.where(np.abs(out - snapped) < _EPS, snapped, out)

    return shapely.transform(geoms, apply)


def _reproject(geoms: np.ndarray, src: CRS, dst: CRS) -> np.ndarray:
    tr = Transformer.from_crs(src, dst, always_xy=True)
    return shapely.transform(geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def _join(
    h: _Held, members: list[tuple[_Scene, tuple[int, int]]], ref: Affine, target_crs: CRS
) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """Merge the held border polygons of one grid that continue into a neighbouring scene."""
    geoms = np.array(h.geoms, dtype=object)
    n = len(geoms)
    cls = np.array([r[0] for r in h.rows])
    scene = np.array([r[5] for r in h.rows], dtype=object)
    uf = UnionFind(n)
    if n:
        a, b = shapely.STRtree(geoms).query(geoms, predicate="intersects")
        pick = (a < b) & (cls[a] == cls[b]) & (scene[a] != scene[b])
        a, b = a[pick], b[pick]
        shared = shapely.intersection(geoms[a], geoms[b])
        edge = (shapely.area(shared) <= _EPS) & (shapely.length(shared) > 0)
        for i, j in zip(a[edge], b[edge], strict=True):
            uf.union(int(i), int(j))
    roots = np.array([uf.find(i) for i in range(n)], dtype=np.int64)
    xs = np.unique([v for s, (c0, _) in members for v in (c0, c0 + s.width)]).astype(float)
    ys = np.unique([v for s, (_, r0) in members for v in (r0, r0 + s.height)]).astype(float)
    order = list(dict.fromkeys(roots.tolist()))  # components in the order their first piece arrived
    crs = members[0][0].crs
    out: list[Any] = []
    rows: list[tuple[Any, ...]] = []
    for root in order:
        idx = np.flatnonzero(roots == root)
        first = h.rows[idx[0]]
        if len(idx) == 1:  # nothing to join: the polygon and its measures stay as its scene wrote them
            out.append(shapely.from_wkb(h.wkb[idx[0]]))
            rows.append(first)
            continue
        merged = to_crs(np.array([dissolve_pieces(geoms[idx], xs, ys)], dtype=object), ref)
        area, perimeter, _ = measure(merged, crs)
        piece_area = np.array([h.rows[i][2] for i in idx], dtype=float)
        conf = np.array([h.rows[i][4] for i in idx], dtype=float)
        mean_conf = float((piece_area * conf).sum() / piece_area.sum()) if piece_area.sum() > 0 else float(conf.mean())
        names = "; ".join(dict.fromkeys(str(h.rows[i][5]) for i in idx))
        out.append(merged[0])
        rows.append((first[0], first[1], float(area[0]), float(perimeter[0]), mean_conf, names))
    result = np.array(out, dtype=object)
    if crs != target_crs:
        result = _reproject(result, crs, target_crs)
    cols = [np.array([r[k] for r in rows]) for k in range(5)]
    names_col = np.array([r[5] for r in rows], dtype=object)
    return shapely.to_wkb(result), _columns(cols, names_col, len(rows)), n - len(order)
