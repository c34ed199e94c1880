"""Every sample GeoTIFF in ../shared/data/geotiff runs end to end and keeps its grid.

Covers striped and tiled layouts, JPEG/LZW/deflate, uint8 and uint16, 1, 3 and
4 bands, nodata values, alpha bands and internal masks, and CRSs from UTM
north/south, national grids, Web/World Mercator and EPSG:4326.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from pyproj import CRS

from geoseg.classes import NODATA
from geoseg.config import RunConfig
from geoseg.pipeline import run
from tests.conftest import SHARED_DATA

GEOTIFFS = sorted((SHARED_DATA / "geotiff").glob("*.tif")) if SHARED_DATA.is_dir() else []
SCENES = [pytest.param(p, id=p.stem) for p in GEOTIFFS] or [
    pytest.param(
        None, id="no-sample-data", marks=pytest.mark.skip(reason=f"sample GeoTIFFs not found in {SHARED_DATA}")
    )
]


@pytest.fixture(scope="module")
def pan_model(tmp_path_factory) -> Path:
    from geoseg.predict.checkpoint import init_checkpoint

    path = tmp_path_factory.mktemp("models") / "fcn18_pan.pt"
    init_checkpoint(path, arch="fcn", encoder="resnet18", in_channels=1, seed=1)
    return path


@pytest.mark.realdata
@pytest.mark.parametrize("path", SCENES)
def test_sample_geotiff_end_to_end(path, shared_data, fcn_model, pan_model, tmp_path):
    with rasterio.open(path) as src:
        count, alpha = src.count, [i + 1 for i, ci in enumerate(src.colorinterp) if ci.name == "alpha"]
        crs, transform, shape = src.crs, src.transform, src.shape
        valid = src.dataset_mask() > 0
    model = pan_model if count == 1 else fcn_model
    bands = None if count == 1 or count - len(alpha) == 3 else (1, 2, 3)
    res = run(RunConfig(scene=path, model=model, outdir=tmp_path, bands=bands, tile=256, overlap=32, chunk=1024))
    with rasterio.open(res.outputs["classes"]) as out:
        assert out.crs == crs and out.transform == transform and out.shape == shape
        classes = out.read(1)
    np.testing.assert_array_equal(classes == NODATA, ~valid)
    df = pyogrio.read_dataframe(res.outputs["landcover"], layer="landcover")
    assert len(df) == res.n_polygons > 0
    assert CRS.from_user_input(df.crs) == CRS.from_user_input(crs)
    assert shapely.is_valid(df.geometry.values).all()
    assert (df.area_m2 > 0).all()


@pytest.mark.realdata
def test_epsg4326_scene_area_against_equal_area_projection(shared_data, fcn_model, tmp_path):
    path = shared_data / "geotiff" / "oem_adelaide_2.tif"
    res = run(RunConfig(scene=path, model=fcn_model, outdir=tmp_path, tile=256, overlap=32))
    df = pyogrio.read_dataframe(res.outputs["landcover"], layer="landcover")
    assert res.report.area_method == "geodesic"
    cx, cy = shapely.centroid(shapely.union_all(df.geometry.values)).coords[0]
    equal_area = df.geometry.to_crs(f"+proj=laea +lat_0={cy} +lon_0={cx} +datum=WGS84").area
    np.testing.assert_allclose(df.area_m2, equal_area, rtol=1e-4)
    with rasterio.open(path) as src:
        total = src.width * src.height * res.report.scene.pixel_size_m[0] * res.report.scene.pixel_size_m[1]
    assert df.area_m2.sum() == pytest.approx(total, rel=1e-3)


@pytest.mark.realdata
def test_min_area_is_in_ground_square_metres_in_web_mercator(shared_data, fcn_model, tmp_path):
    """EPSG:3857 at 37.7 N: --min-area 20 leaves no polygon far below 20 m² by its own (geodesic) area_m2.

    Turned into pixels with the map-unit size (0.597 m), 20 m² was 56 pixels, 12.6 m² on the ground.
    """
    path = shared_data / "geotiff" / "rasterio_cogeo.tif"
    res = run(RunConfig(scene=path, model=fcn_model, outdir=tmp_path, tile=256, overlap=32, min_area=20.0))
    df = pyogrio.read_dataframe(res.outputs["landcover"], layer="landcover")
    assert res.report.area_method == "geodesic" and len(df) > 10
    px, py = res.report.scene.pixel_size_m
    assert px * py == pytest.approx(0.2231, rel=1e-3)  # not 0.597² = 0.357
    assert df.area_m2.min() > 20 * 0.9  # simplification may trim a small polygon by a few per cent
