import math
import shutil

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from click.testing import CliRunner
from pyproj import CRS, Geod, Proj, Transformer
from rasterio.control import GroundControlPoint
from rasterio.errors import NotGeoreferencedWarning
from rasterio.vrt import WarpedVRT

from geoseg.cli import main
from geoseg.errors import GeosegIOError, SceneError, SceneNotFoundError
from geoseg.raster import open_raster, open_scene, read_window, reflect_index, select_bands
from tests.conftest import SHARED_DATA, smooth_image


def test_reflect_index_matches_numpy_reflect_pad():
    for size in (1, 2, 5, 17):
        arr = np.arange(size)
        padded = np.pad(arr, (40, 40), mode="reflect") if size > 1 else np.zeros(size + 80, int)
        np.testing.assert_array_equal(arr[reflect_index(np.arange(-40, size + 40), size)], padded)


@pytest.mark.parametrize(
    ("r", "c", "h", "w"), [(-32, -32, 128, 128), (50, 60, 40, 30), (90, 70, 64, 64), (-5, 10, 200, 10)]
)
def test_read_window_mirrors_outside_the_scene(make_tif, r, c, h, w):
    img = smooth_image(100, 80, seed=3)
    path = make_tif(img, tiled=True, blockxsize=32, blockysize=32)
    data, valid = read_window(str(path), r, c, h, w, (3, 1))
    rows, cols = reflect_index(np.arange(r, r + h), 100), reflect_index(np.arange(c, c + w), 80)
    np.testing.assert_array_equal(data, img[[2, 0]][:, rows[:, None], cols[None, :]])
    assert valid.all()


def test_read_window_masks_and_fills_nodata(make_tif):
    img = smooth_image(60, 60, seed=1)
    img[:, :10, :] = 0
    path = make_tif(img, nodata=0)
    data, valid = read_window(str(path), 0, 0, 60, 60, (1, 2, 3), fill=(123.6, 116.2, 103.5))
    assert not valid[:10].any() and valid[10:].all()
    assert (data[0, :10] == 124).all() and (data[2, :10] == 104).all()


def test_open_scene_describes_masks(make_tif):
    img = smooth_image(50, 40, bands=4)
    img[3] = 255
    img[3, :10] = 0  # a real mask: 0 and 255 only (a band with more values is data, see test_bands)
    info = open_scene(make_tif(img, photometric="RGB", alpha="YES"))
    assert info.alpha_bands == (4,) and info.mask_kind == "alpha" and info.data_bands == (1, 2, 3)
    info = open_scene(make_tif(img[:3], nodata=0))
    assert info.mask_kind == "nodata" and info.pixel_size_m == (0.5, 0.5)


def test_pixel_size_of_geographic_scene_is_in_metres(make_tif):
    t = Affine(1e-5, 0, 10.0, 0, -1e-5, 50.0)
    info = open_scene(make_tif(smooth_image(20, 20), crs="EPSG:4326", transform=t))
    assert info.pixel_size_m[0] == pytest.approx(0.716, rel=0.01)  # 1e-5 deg of longitude at 50 N
    assert info.pixel_size_m[1] == pytest.approx(1.113, rel=0.01)


def test_band_selection_messages(make_tif):
    info = open_scene(make_tif(smooth_image(10, 10, bands=4), photometric="MINISBLACK"))
    with pytest.raises(
        SceneError,
        match=r"has 4 band\(s\) but the model expects 3 \(bands: red,green,blue\); "
        r"pass --bands 1,2,3",
    ):
        select_bands(info, None, 3, ("red", "green", "blue"))
    img = smooth_image(10, 10, bands=4)
    img[3] = np.where(np.arange(10) < 3, 0, 255)
    rgba = open_scene(make_tif(img))  # GDAL flags band 4 of 4-band Byte as alpha
    with pytest.raises(SceneError, match=r"3 band\(s\) \+ alpha .* if band 4 is data, not alpha, pass --bands 1,2,3,4"):
        select_bands(rgba, None, 4)
    with pytest.raises(SceneError, match="use a model for 3-band imagery"):
        select_bands(open_scene(make_tif(smooth_image(10, 10))), None, 5)
    assert select_bands(info, (4, 1, 2), 3) == (4, 1, 2)
    with pytest.raises(SceneError, match=r"bands 1\.\.4"):
        select_bands(info, (1, 2, 5), 3)


def test_open_errors(tmp_path, make_tif):
    with pytest.raises(SceneNotFoundError):
        open_scene(tmp_path / "missing.tif")
    (tmp_path / "notes.tif").write_text("not a raster")
    with pytest.raises(GeosegIOError, match="not a readable raster"):
        open_scene(tmp_path / "notes.tif")
    with pytest.raises(SceneError, match="no coordinate reference system"):
        open_scene(make_tif(smooth_image(10, 10), crs=None))


# -- ground pixel size ---------------------------------------------------------------------------
def geodesic_pixel(crs: str, transform: Affine, width: int, height: int) -> tuple[float, float]:
    """Pixel size measured independently: 100-pixel geodesic lines through the centre, divided by 100."""
    c = CRS.from_user_input(crs)
    to_ll = Transformer.from_crs(c, c.geodetic_crs, always_xy=True)
    geod = Geod(a=c.ellipsoid.semi_major_metre, b=c.ellipsoid.semi_minor_metre)
    cx, cy = width / 2, height / 2
    ends = [transform @ p for p in ((cx - 50, cy), (cx + 50, cy), (cx, cy - 50), (cx, cy + 50))]
    (lon, lat) = to_ll.transform([e[0] for e in ends], [e[1] for e in ends])
    dist = geod.inv(lon[::2], lat[::2], lon[1::2], lat[1::2])[2]
    return dist[0] / 100, dist[1] / 100


@pytest.mark.parametrize("epsg", [3857, 3395])
def test_pixel_size_in_mercator_is_on_the_ground(make_tif, epsg):
    # 0.6 map units at 37.7 N, 122.4 W (San Francisco)
    x, y = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True).transform(-122.4, 37.7)
    t = Affine(0.6, 0, x - 60, 0, -0.6, y + 60)
    info = open_scene(make_tif(smooth_image(200, 200), crs=f"EPSG:{epsg}", transform=t))
    px, py = info.pixel_size_m
    np.testing.assert_allclose((px, py), geodesic_pixel(f"EPSG:{epsg}", t, 200, 200), rtol=1e-6)
    cos = math.cos(math.radians(37.7))
    assert px == pytest.approx(0.6 * cos, rel=2e-3) and py == pytest.approx(0.6 * cos, rel=6e-3)
    if epsg == 3395:  # ellipsoidal Mercator: PROJ's scale factor is the ground scale
        k = Proj(f"EPSG:{epsg}").get_factors(-122.4, 37.7).parallel_scale
        assert px == pytest.approx(0.6 / k, rel=1e-6)
    # min-area 20 m2 is 20 / area-of-a-pixel pixels, not 20 / 0.36
    assert 20 / (px * py) == pytest.approx(20 / 0.36 / cos**2, rel=1e-2)


def test_pixel_size_where_areas_are_planar_stays_in_map_units(make_tif):
    # UTM: area_m2 is planar there (vectorize.area_method), so the pixel size keeps that convention
    info = open_scene(make_tif(smooth_image(20, 20), crs="EPSG:32633"))
    assert info.pixel_size_m == (0.5, 0.5)
    ft = Affine(2.0, 0, 6_561_666, 0, -2.0, 2_100_000)  # NAD83 / California zone 3 (US survey feet)
    info = open_scene(make_tif(smooth_image(20, 20), crs="EPSG:2227", transform=ft))
    assert info.pixel_size_m[0] == pytest.approx(2 * 1200 / 3937, rel=1e-9)


def test_pixel_size_matches_real_web_mercator_scene(shared_data):
    path = shared_data / "geotiff" / "rasterio_cogeo.tif"
    info = open_scene(path)
    assert info.crs_name == "EPSG:3857"
    with rasterio.open(path) as ds:
        expected = geodesic_pixel("EPSG:3857", ds.transform, ds.width, ds.height)
        map_px = ds.transform.a
    np.testing.assert_allclose(info.pixel_size_m, expected, rtol=1e-6)
    assert info.pixel_size_m[0] < 0.8 * map_px  # 0.473 m on the ground, 0.597 map units


# -- georeferencing ------------------------------------------------------------------------------
def test_gcp_scene_is_explained_and_the_advised_rectification_works(tmp_path):
    path = tmp_path / "gcps.tif"
    gcps = [
        GroundControlPoint(row, col, 500000 + 0.5 * col, 5800000 - 0.5 * row)
        for row, col in ((0, 0), (0, 60), (60, 0), (60, 60))
    ]
    with open_raster_for_write(path, smooth_image(60, 60)) as ds:
        ds.gcps = (gcps, "EPSG:32633")
    with pytest.raises(SceneError) as err:
        open_scene(path)
    msg = str(err.value)
    assert "gcps.tif is georeferenced by 4 ground control points (GCPs)" in msg
    assert "`gdalwarp -r bilinear -co TILED=YES -co COMPRESS=DEFLATE gcps.tif gcps_rectified.tif`" in msg
    assert "\n" not in msg
    # what gdalwarp does by default (GCP polynomial transformer), done through GDAL's warper here
    with rasterio.open(path) as src, WarpedVRT(src, src_crs=src.gcps[1], crs=src.gcps[1]) as vrt:
        rasterio.shutil.copy(vrt, tmp_path / "gcps_rectified.tif", driver="GTiff")
    info = open_scene(tmp_path / "gcps_rectified.tif")
    assert info.crs_name == "EPSG:32633" and info.pixel_size_m == pytest.approx((0.5, 0.5))


def open_raster_for_write(path, data):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(
            path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype="uint8"
        )


@pytest.mark.filterwarnings("error::rasterio.errors.NotGeoreferencedWarning")
def test_png_is_refused_in_one_line_without_warnings(tmp_path, fcn_model):
    png = SHARED_DATA / "labeled" / "isprs_potsdam" / "potsdam_2_10_0_0_512_512_img.png"
    if not png.exists():
        pytest.skip(f"sample PNG {png} is absent")
    scene = shutil.copy(png, tmp_path / "tile.png")
    for args in (["info", scene], ["run", scene, "--model", fcn_model, "-o", tmp_path / "out"]):
        res = CliRunner().invoke(main, [str(a) for a in args])
        assert res.exit_code == 1, res.output
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and "Warning" not in res.output, res.output
        assert "tile.png is not georeferenced (no coordinate reference system, no geotransform" in res.output
        assert "gdal_translate -a_srs EPSG:XXXX -a_ullr ULX ULY LRX LRY tile.png tile_georef.tif" in res.output
    with open_raster(scene) as ds:  # what evaluate/train can use for plain images
        assert ds.count == 3
