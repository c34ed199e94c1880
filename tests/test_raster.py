import numpy as np
import pytest
from affine import Affine

from geoseg.errors import GeosegIOError, SceneError, SceneNotFoundError
from geoseg.raster import open_scene, read_window, reflect_index, select_bands
from tests.conftest import smooth_image


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
    rgba = open_scene(make_tif(smooth_image(10, 10, bands=4)))  # GDAL flags band 4 of 4-band Byte as alpha
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
