"""Class areas agree between deliverables: the report's are the class raster's, the polygons' stay within 0.5 %.

``run.json``'s ``classes[].area_m2``, ``RunResult.class_areas`` and
``VectorizeResult.class_areas`` are the (cleaned) class raster's pixel counts
times the ground pixel area, measured as the polygons' ``area_m2`` is (planar,
or per row / per pixel where the pixel area varies): exact polygons add up to
them. Simplification may move a class's polygon area by at most 0.5 %.
"""

from __future__ import annotations

import json

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from affine import Affine
from pyproj import CRS, Geod, Transformer
from scipy import ndimage

from geoseg.classes import ISPRS, NODATA
from geoseg.tiling import Rect
from geoseg.vectorize import (
    MAX_AREA_CHANGE,
    apply_sieve,
    clean_block,
    pixel_areas,
    polygonize_block,
    sieve,
    simplify,
)
from tests.conftest import smooth_image, write_tif

UTM = Affine(0.5, 0, 500000.0, 0, -0.5, 5800000.0)
GEOGRAPHIC = Affine(2e-6, 0, 138.6, 0, -2e-6, -34.9)  # EPSG:4326, about 0.18 x 0.22 m at 34.9 S
MERCATOR = Affine(0.3, 0, -11700000.0, 0, -0.3, 4800000.0)  # EPSG:3857 at 39.6 N: 0.23 m on the ground
MERCATOR_ROTATED = Affine(0.25, 0.1, -11700000.0, 0.1, -0.25, 4800000.0)  # pixel area varies along rows too


def busy_map(n: int, zoom: int, speckle: float, seed: int = 0) -> np.ndarray:
    """A busy class map: small blobs (about `zoom` px across) with noise and speckle; ~80 px per region."""
    rng = np.random.default_rng(seed)
    field = ndimage.zoom(rng.random((n // zoom + 2, n // zoom + 2)), zoom, order=1)[:n, :n]
    field += rng.normal(0, 0.05, (n, n))
    cls = np.digitize(field, np.quantile(field, [0.3, 0.5, 0.65, 0.8, 0.9])).astype(np.uint8)
    spots = rng.random((n, n)) < speckle
    cls[spots] = rng.integers(0, 6, spots.sum())
    return cls


def sieved(cls: np.ndarray, min_pixels: float) -> np.ndarray:
    """The cleaned class raster (the sieve does not depend on blocks: one block here)."""
    core = Rect(0, 0, *cls.shape)
    lut = sieve({(0, 0): polygonize_block(cls, None, core, geometry=False, adjacency=True)}, min_pixels)
    return apply_sieve(cls, lut[(0, 0)])


def per_class(classes: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.bincount(classes.astype(np.intp), weights=values, minlength=6)[:6]


# -- simplification's bound, in pixel units ----------------------------------------------------


@pytest.mark.parametrize("zoom,speckle", [(3, 0.0), (4, 0.05), (8, 0.02)])
def test_cleaning_moves_no_class_area_beyond_the_bound(zoom, speckle):
    cls = sieved(busy_map(768, zoom, speckle, seed=zoom), 16)
    bp = polygonize_block(cls, None, Rect(0, 0, *cls.shape))
    pixels = per_class(bp.classes, bp.pixels.astype(float))
    # plain coverage simplification moves some class's area beyond the bound: the bound is what holds it
    old = simplify(bp.polygons(), 1.0)
    assert (np.abs(per_class(old.classes, shapely.area(old.geoms)) / pixels - 1) > MAX_AREA_CHANGE).any()

    out = clean_block(bp, 1.0, 16)
    area = shapely.area(out.geoms)
    assert (np.abs(per_class(out.classes, area) - pixels) <= MAX_AREA_CHANGE * pixels).all()
    assert len(out) == len(bp) and (area >= 16).all()  # nothing shaved below the mapping unit, nothing absorbed
    assert shapely.is_valid(out.geoms).all()
    assert shapely.union_all(out.geoms).area == pytest.approx(cls.size, rel=1e-9)  # no gaps
    assert area.sum() == pytest.approx(cls.size, rel=1e-9)  # no overlaps
    coords = shapely.get_num_coordinates
    assert coords(out.geoms).sum() < 0.85 * coords(bp.geoms).sum()  # still simplified


def test_regions_split_by_cells_are_not_shaved_below_the_mapping_unit():
    """A 20-pixel region split 10 + 10 by a cell edge: both pieces stay exact, the joined region is 20."""
    cls = np.zeros((40, 40), np.uint8)
    cls[18:22, 15:20] = 3
    cls[18:22, 20:25] = 3  # 4 x 10 pixels across the edge at column 20
    cls[5:9, 5:12] = 4  # 28 pixels inside the left cell
    from geoseg.vectorize import merge_blocks

    parts = {}
    for bx, (c0, c1) in enumerate(((0, 20), (20, 40))):
        r = Rect(0, c0, 40, c1)
        parts[(0, bx)] = clean_block(polygonize_block(cls[r.slices()], None, r, (0, bx)), 1.0, 16)
    polys = merge_blocks(parts)
    area = shapely.area(polys.geoms)
    assert area[polys.classes == 3].tolist() == [40.0] and area[polys.classes == 4].tolist() == [28.0]


# -- ground areas: the raster's, measured as the polygons are ----------------------------------


def geodesic_area(transform: Affine, crs: int, core: Rect) -> float:
    """The geodesic area of the block `core` as one polygon (as measure() measures: pyproj's Geod)."""
    corners = [(core.col0, core.row0), (core.col1, core.row0), (core.col1, core.row1), (core.col0, core.row1)]
    x, y = zip(*(transform @ c for c in corners), strict=True)
    lon, lat = Transformer.from_crs(crs, 4326, always_xy=True).transform(x, y)
    return abs(Geod(ellps="WGS84").polygon_area_perimeter(lon, lat)[0])


def test_pixel_areas_planar_per_row_and_per_pixel():
    core = Rect(100, 200, 140, 230)
    assert pixel_areas(UTM, CRS.from_epsg(32633), core, method="planar").tolist() == [[0.25]]
    rows = pixel_areas(GEOGRAPHIC, CRS.from_epsg(4326), core, method="geodesic")
    assert rows.shape == (40, 1)
    assert rows[0, 0] > rows[-1, 0]  # south of the equator pixels shrink southwards
    assert rows.sum() * core.width == pytest.approx(geodesic_area(GEOGRAPHIC, 4326, core), rel=1e-8)
    for r in (100, 139):  # each row: one strip's geodesic area (a single pixel is too small for Geod's precision)
        strip = Rect(r, 0, r + 1, 2048)
        assert rows[r - 100, 0] * 2048 == pytest.approx(geodesic_area(GEOGRAPHIC, 4326, strip), rel=1e-7)
    # a rotated grid's pixel area changes along a row (here by 4e-5 over 2048 columns): one value per pixel
    wide = Rect(100, 0, 140, 2048)
    rotated = pixel_areas(MERCATOR_ROTATED, CRS.from_epsg(3857), wide, method="geodesic")
    assert rotated.shape == (40, 2048) and rotated[0, 0] != pytest.approx(rotated[0, -1], rel=1e-5)
    assert rotated.sum() == pytest.approx(geodesic_area(MERCATOR_ROTATED, 3857, wide), rel=1e-8)
    for c in (0, 2040):
        part = Rect(100, c, 140, c + 8)
        assert rotated[:, c : c + 8].sum() == pytest.approx(geodesic_area(MERCATOR_ROTATED, 3857, part), rel=1e-6)


@pytest.fixture
def small_cells(monkeypatch):
    import geoseg.vectorize.cells

    monkeypatch.setattr(geoseg.vectorize.cells, "VECTOR_CELL", 192)


@pytest.mark.parametrize(
    "crs,transform",
    [("EPSG:32633", UTM), ("EPSG:4326", GEOGRAPHIC), ("EPSG:3857", MERCATOR), ("EPSG:3857", MERCATOR_ROTATED)],
    ids=["utm", "geographic", "mercator", "mercator-rotated"],
)
def test_vectorize_raster_reports_the_raster_s_areas(small_cells, tmp_path, crs, transform):
    """Exact polygons add up to the reported (raster) areas; cleaned ones stay within 0.5 % of them."""
    from geoseg.vectorize import vectorize_raster

    cls = busy_map(448, 4, 0.05, seed=1)  # 3 x 3 cells
    cls[:100, :150] = NODATA
    path = write_tif(tmp_path / "busy.classes.tif", cls, crs=crs, transform=transform, nodata=NODATA)
    exact = vectorize_raster(path, tmp_path / "exact.gpkg", min_area=0, simplify=0, workers=1)
    df = pyogrio.read_dataframe(exact.path, layer="landcover")
    exact_sums = per_class(df.class_id.to_numpy(), df.area_m2.to_numpy())
    want = np.array([exact.class_areas[n] for n in ISPRS.names])
    # Geod's area of a small polygon (here ~1 m²) is good to ~1e-5 m², so rotated grids agree to ~2e-6
    np.testing.assert_allclose(exact_sums, want, rtol=1e-5)
    if crs == "EPSG:32633":
        np.testing.assert_allclose(want, np.bincount(cls.ravel(), minlength=256)[:6] * 0.25, rtol=1e-12)

    res = vectorize_raster(
        path, tmp_path / "clean.gpkg", workers=1
    )  # default cleaning: 16-pixel unit, 1-pixel simplification
    df = pyogrio.read_dataframe(res.path, layer="landcover")
    raster = np.array([res.class_areas[n] for n in ISPRS.names])
    polygons = per_class(df.class_id.to_numpy(), df.area_m2.to_numpy())
    np.testing.assert_allclose(polygons, [res.polygon_areas[n] for n in ISPRS.names], rtol=1e-9)
    assert (np.abs(polygons / raster - 1) <= 0.005).all(), polygons / raster - 1
    # the raster's areas are the sieved map's: its pixels, weighted as the exact polygons weigh them
    cleaned = sieved(cls, res.cleaning.min_pixels)
    if crs == "EPSG:32633":
        np.testing.assert_allclose(raster, np.bincount(cleaned.ravel(), minlength=256)[:6] * 0.25, rtol=1e-12)
    else:
        weights = np.broadcast_to(
            pixel_areas(transform, CRS.from_user_input(crs), Rect(0, 0, *cls.shape), method="geodesic"), cls.shape
        )
        valid = cleaned != NODATA
        np.testing.assert_allclose(raster, per_class(cleaned[valid], weights[valid]), rtol=1e-7)


def test_run_report_areas_are_the_class_cog_s(tmp_path, fcn_model):
    """run.json, RunResult and the class COG agree exactly; the polygons within 0.5 % (EPSG:4326 scene)."""
    from geoseg.config import RunConfig
    from geoseg.pipeline import run

    path = write_tif(tmp_path / "geo.tif", smooth_image(300, 300, seed=4), crs="EPSG:4326", transform=GEOGRAPHIC)
    res = run(RunConfig(scene=path, model=fcn_model, outdir=tmp_path, tile=128, overlap=32))
    report = json.loads(res.outputs["report"].read_text())
    with rasterio.open(res.outputs["classes"]) as ds:
        cog = ds.read(1)
    weights = np.broadcast_to(
        pixel_areas(GEOGRAPHIC, CRS.from_epsg(4326), Rect(0, 0, 300, 300), method="geodesic"), cog.shape
    )
    df = pyogrio.read_dataframe(res.outputs["landcover"], layer="landcover")
    for c in report["classes"]:
        mask = cog == c["id"]
        assert c["pixels"] == res.class_pixels[c["name"]] == mask.sum()
        assert c["area_m2"] == pytest.approx(weights[mask].sum(), abs=1e-3)
        assert res.class_areas[c["name"]] == pytest.approx(weights[mask].sum(), rel=1e-9)
        if mask.sum() > 1000:
            assert df.area_m2[df.class_id == c["id"]].sum() == pytest.approx(c["area_m2"], rel=0.005)
