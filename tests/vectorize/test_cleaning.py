"""Default cleaning (16-pixel mapping unit, one-pixel coverage simplification) keeps a valid partition.

The class raster here is the synthetic scene's exact ground truth: a realistic
land-cover map with roads, roofs, trees and cars, and a nodata collar.
"""

from __future__ import annotations

import numpy as np
import pyogrio
import pytest
import rasterio
import rasterio.features
import shapely
from click.testing import CliRunner

from geoseg.classes import ISPRS, NODATA
from geoseg.cli import main
from geoseg.synthetic import SceneSpec, write_scene
from geoseg.vectorize import Cleaning, vectorize_raster
from tests.conftest import write_tif

PIXEL = 0.1


@pytest.fixture(scope="module")
def label_4096(tmp_path_factory):
    d = tmp_path_factory.mktemp("clean")
    write_scene(SceneSpec(width=4096, height=4096, pixel_size=PIXEL, seed=21, nodata=0), d / "img.tif", d / "lab.tif")
    with rasterio.open(d / "lab.tif") as ds:
        labels = ds.read(1)
    return d / "lab.tif", labels


@pytest.fixture(scope="module")
def cleaned(label_4096, tmp_path_factory):
    path, _ = label_4096
    out = tmp_path_factory.mktemp("out") / "lab.landcover.gpkg"
    res = vectorize_raster(path, out, workers=2)
    return res, pyogrio.read_dataframe(out, layer="landcover")


def test_default_cleaning_gives_a_clean_partition(label_4096, cleaned):
    _, labels = label_4096
    res, df = cleaned
    geoms = df.geometry.values
    pixel_area = PIXEL * PIXEL
    assert res.cleaning.min_area_m2 == pytest.approx(16 * pixel_area) and res.cleaning.simplify_m == pytest.approx(
        PIXEL
    )
    assert (labels == NODATA).mean() > 0.01  # the scene has a nodata region to keep out of
    assert shapely.is_valid(geoms).all()
    assert set(df.geom_type) == {"Polygon"}
    union = shapely.union_all(geoms).area
    assert shapely.area(geoms).sum() == pytest.approx(union, rel=1e-4)  # no overlaps (0.01 %)
    assert union == pytest.approx((labels != NODATA).sum() * pixel_area, rel=5e-3)  # no gaps (0.5 %)
    for cid in range(6):
        want = (labels == cid).sum() * pixel_area
        if want > 0:
            assert df.area_m2[df.class_id == cid].sum() == pytest.approx(want, rel=5e-3), cid
    assert (df.area_m2 >= res.cleaning.min_area_m2 - 1e-9).all()  # nothing below the mapping unit
    assert df.area_m2.sum() == pytest.approx(sum(res.class_areas.values()))


def test_reported_areas_are_the_cleaned_raster_s_and_polygons_stay_within_half_a_percent(label_4096, cleaned):
    """Class areas come from the sieved raster (what the class COG holds), not from the simplified polygons."""
    from geoseg.tiling import Rect
    from geoseg.vectorize import apply_sieve, polygonize_block, sieve

    _, labels = label_4096
    res, df = cleaned
    core = Rect(0, 0, *labels.shape)
    regions = polygonize_block(labels, None, core, geometry=False, adjacency=True)
    raster = apply_sieve(labels, sieve({(0, 0): regions}, res.cleaning.min_pixels)[(0, 0)])
    for cid, name in enumerate(ISPRS.names):
        want = (raster == cid).sum() * PIXEL * PIXEL
        assert res.class_areas[name] == pytest.approx(want, rel=1e-12), name
        polygons = df.area_m2[df.class_id == cid].sum()
        assert res.polygon_areas[name] == pytest.approx(polygons, rel=1e-9), name
        assert polygons == pytest.approx(want, rel=5e-3), name


def test_cleaning_reduces_polygons_and_vertices(label_4096, cleaned, tmp_path):
    path, labels = label_4096
    res, df = cleaned
    exact = vectorize_raster(path, tmp_path / "exact.gpkg", min_area=0, simplify=0)
    exact_df = pyogrio.read_dataframe(exact.path, layer="landcover")
    assert len(exact_df) == sum(1 for _, v in rasterio.features.shapes(labels, connectivity=4) if v != NODATA)
    assert (exact_df.area_m2 < 16 * PIXEL * PIXEL).any()  # there was something to clean
    assert res.n_polygons < exact.n_polygons
    assert (
        shapely.get_num_coordinates(df.geometry.values).sum()
        < 0.7 * shapely.get_num_coordinates(exact_df.geometry.values).sum()
    )


def test_cleaning_does_not_depend_on_workers(label_4096, cleaned, tmp_path):
    """Cells are fixed on the scene grid: one process or two, the same polygons in the same order."""
    path, _ = label_4096
    _, df = cleaned
    other = vectorize_raster(path, tmp_path / "b.gpkg", workers=1)
    df2 = pyogrio.read_dataframe(other.path, layer="landcover")
    assert len(df2) == len(df)
    assert shapely.equals_exact(df2.geometry.values, df.geometry.values, tolerance=0).all()
    np.testing.assert_array_equal(df2.class_id, df.class_id)
    np.testing.assert_array_equal(df2.area_m2, df.area_m2)


def test_cleaning_defaults_scale_with_pixel_size():
    c = Cleaning.resolve(None, None, 0.5)
    assert (c.min_area_m2, c.simplify_m, c.min_pixels) == (4.0, 0.5, 16.0)
    assert Cleaning.resolve(0, 0, 0.5).min_pixels == 0


def test_vectorize_cli_refuses_what_is_not_a_class_raster(tmp_path):
    rgb = write_tif(tmp_path / "rgb.tif", np.zeros((3, 20, 20), np.uint8))
    result = CliRunner().invoke(main, ["vectorize", str(rgb)])
    assert result.exit_code == 1 and "a class raster has one uint8 band" in result.output
    odd = write_tif(tmp_path / "odd.tif", np.full((20, 20), 9, np.uint8))
    result = CliRunner().invoke(main, ["vectorize", str(odd)])
    assert result.exit_code == 1 and "holds value 9, which is no class id" in result.output
    assert not list(tmp_path.glob("*.gpkg")) and not list(tmp_path.glob(".*zarr"))
