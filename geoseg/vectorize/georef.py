"""Pixel polygons into the scene's CRS, measured in metres: areas, perimeters and pixel areas.

Geometries move into the scene's CRS only at the end, with its affine
transform (:func:`to_crs`). :func:`measure` measures them in the projection
plane where its areal scale is within 0.5 % of 1 and on the CRS's ellipsoid
elsewhere (:func:`area_method`); :func:`pixel_areas` measures the class
raster's pixels the same way, so exact polygons add up to the raster's areas.
:class:`Georef` applies both to a block's polygons.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS, Geod, Proj, Transformer

from ..tiling import Rect
from .polygons import Features, Polygons

__all__ = [
    "Georef",
    "area_method",
    "areal_distortion",
    "measure",
    "pixel_areas",
    "to_crs",
]


def to_crs(geoms: np.ndarray, transform: Affine) -> np.ndarray:
    """Pixel-coordinate geometries (x = column, y = row) into the CRS of `transform`, oriented consistently."""
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f

    def apply(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        return np.column_stack([a * x + b * y + c, d * x + e * y + f])

    # One orientation for every polygon (exterior counter-clockwise, holes clockwise): geodesic
    # areas sum signed rings, and merged polygons mix rings from GEOS and from GDAL.
    return shapely.orient_polygons(shapely.transform(geoms, apply))


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


def area_method(crs: CRS, x: float, y: float) -> str:
    """How :func:`measure` measures near ``(x, y)``: ``'planar'`` where the projection's areal
    scale is within 0.5 % of 1, else ``'geodesic'``."""
    return "planar" if areal_distortion(crs, x, y) <= 0.005 else "geodesic"


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
        method = area_method(crs, (x0 + x1) / 2, (y0 + y1) / 2)
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


def pixel_areas(transform: Affine, crs: CRS, core: Rect, *, method: str) -> np.ndarray:
    """Ground area (m²) of the pixels of `core`, measured as :func:`measure` measures polygons.

    Returns an array that broadcasts to ``(core.height, core.width)``: one
    value for ``method='planar'`` (the pixel's area in the plane, so pixel
    count times it equals the exact polygons' area); for ``'geodesic'``, one
    value per row where pixels of a row have equal areas (north-up grids in a
    geographic CRS, Mercator and other cylindrical projections), else one
    value per pixel. Geodesic pixel areas are the pixels' corners'
    quadrilaterals in an equal-area projection of the CRS's ellipsoid: they
    agree with :func:`measure`'s geodesic areas of the exact polygons to
    about 1e-6.

    Examples
    --------
    >>> pixel_areas(Affine(0.5, 0, 0, 0, -0.5, 0), CRS.from_epsg(32633), Rect(0, 0, 4, 4), method="planar")
    array([[0.25]])
    >>> a = pixel_areas(Affine(1e-5, 0, 10, 0, -1e-5, 60), CRS.from_epsg(4326), Rect(0, 0, 3, 5), method="geodesic")
    >>> a.shape, bool(a[0, 0] < a[2, 0])  # one value per row; pixels grow toward the equator
    ((3, 1), True)
    """
    if method == "planar":
        unit = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
        return np.full((1, 1), abs(transform.determinant) * unit * unit)
    rows = np.arange(core.row0, core.row1 + 1, dtype=np.float64)
    cx, cy = transform @ ((core.col0 + core.col1) / 2, (core.row0 + core.row1) / 2)
    to_plane = _equal_area(crs.to_wkt(), *_lonlat(crs, cx, cy))

    def quads(cols: np.ndarray) -> np.ndarray:
        """Areas of the pixels between the corner columns `cols`, all rows."""
        c, r = np.meshgrid(cols, rows)
        t = transform
        x, y = to_plane.transform(t.a * c + t.b * r + t.c, t.d * c + t.e * r + t.f)
        x, y = np.asarray(x), np.asarray(y)
        dx1, dy1 = x[1:, 1:] - x[:-1, :-1], y[1:, 1:] - y[:-1, :-1]  # diagonals of each quadrilateral
        dx2, dy2 = x[1:, :-1] - x[:-1, 1:], y[1:, :-1] - y[:-1, 1:]
        return np.abs(dx1 * dy2 - dy1 * dx2) / 2

    first = quads(np.array([core.col0, core.col0 + 1], np.float64))
    last = quads(np.array([core.col1 - 1, core.col1], np.float64))
    if np.allclose(first, last, rtol=1e-6, atol=0):
        return first
    return quads(np.arange(core.col0, core.col1 + 1, dtype=np.float64))


def _lonlat(crs: CRS, x: float, y: float) -> tuple[float, float]:
    if crs.is_geographic:
        return x, y
    lon, lat = Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True).transform(x, y)
    return lon, lat


@functools.lru_cache(maxsize=8)
def _equal_area(wkt: str, lon: float, lat: float) -> Transformer:
    """CRS coordinates -> Lambert's cylindrical equal-area projection of the CRS's ellipsoid, centred at `lon`."""
    crs = _crs(wkt)
    ell = crs.ellipsoid
    a, b = (ell.semi_major_metre, ell.semi_minor_metre) if ell is not None else (6378137.0, 6356752.314245179)
    cea = CRS.from_proj4(f"+proj=cea +lon_0={lon!r} +a={a!r} +b={b!r} +units=m +no_defs")
    return Transformer.from_crs(crs, cea, always_xy=True)


@dataclass(frozen=True)
class Georef:
    """How pixel polygons become features: the scene's transform and CRS, and the area method."""

    transform: Affine
    crs_wkt: str
    method: str

    def finish(self, polys: Polygons) -> Features:
        geoms = to_crs(polys.geoms, self.transform)
        area, perimeter, _ = measure(geoms, _crs(self.crs_wkt), method=self.method)
        wkb = shapely.to_wkb(geoms) if len(geoms) else np.empty(0, dtype=object)
        return Features(wkb, polys.classes, polys.pixels, polys.conf_sum, polys.anchor, area, perimeter)

    def class_totals(self, classes: np.ndarray, core: Rect, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixel count and ground area (m², as :meth:`finish` measures) of classes ``0..n-1`` in a block.

        The class raster's own areas: pixel count times pixel area, per row or
        per pixel where the pixel area varies (see :func:`pixel_areas`).
        """
        flat = classes.ravel()
        counts = np.bincount(flat, minlength=256)[:n].astype(np.int64)
        area = pixel_areas(self.transform, _crs(self.crs_wkt), core, method=self.method)
        if area.size == 1:
            return counts, counts * float(area.ravel()[0])
        if area.shape[1] == 1:  # per row: a (rows x classes) count table times the row areas
            per_row = np.bincount(
                (np.arange(core.height, dtype=np.int64)[:, None] * 256 + classes).ravel(),
                minlength=core.height * 256,
            ).reshape(core.height, 256)[:, :n]
            return counts, area[:, 0] @ per_row
        return counts, np.bincount(flat, weights=np.broadcast_to(area, classes.shape).ravel(), minlength=256)[:n]


@functools.lru_cache(maxsize=8)
def _crs(wkt: str) -> CRS:
    return CRS.from_wkt(wkt)
