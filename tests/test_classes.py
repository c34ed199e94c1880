import numpy as np
import pytest
import rasterio

from geoseg.classes import ISPRS, NODATA, ClassTable


def test_isprs_table():
    assert ISPRS.names == ("impervious surfaces", "building", "low vegetation", "tree", "car", "clutter")
    assert ISPRS[1].hex == "#0000FF"
    assert ISPRS.colormap()[NODATA] == (0, 0, 0, 0)
    assert ClassTable.from_dict(ISPRS.to_dict()) == ISPRS


def test_rgb_codec_round_trip_with_ignore():
    ids = np.array([[0, 1, 2], [3, 4, 5], [NODATA, 2, 0]], np.uint8)
    rgb = ISPRS.encode_rgb(ids)
    assert rgb[0, 1].tolist() == [0, 0, 255]
    assert rgb[2, 0].tolist() == [0, 0, 0]
    np.testing.assert_array_equal(ISPRS.decode_rgb(rgb), ids)
    odd = rgb.copy()
    odd[0, 0] = (12, 34, 56)  # not a class colour
    assert ISPRS.decode_rgb(odd)[0, 0] == NODATA


@pytest.mark.parametrize("name", ["potsdam_2_10_0_0_512_512", "vaihingen_area1_0_0_512_512"])
def test_codec_on_real_isprs_labels(shared_data, name):
    """The derived ISPRS-RGB label decodes to the derived index label (255 = eroded boundary)."""
    derived = shared_data / "labeled" / "derived"
    with rasterio.open(derived / f"{name}_label_isprs_rgb.png") as ds:
        rgb = np.moveaxis(ds.read([1, 2, 3]), 0, -1)
    with rasterio.open(derived / f"{name}_label_idx0-5_ignore255.png") as ds:
        idx = ds.read(1)
    decoded = ISPRS.decode_rgb(rgb)
    np.testing.assert_array_equal(decoded, idx)
    np.testing.assert_array_equal(ISPRS.encode_rgb(idx), rgb)
    assert 0.05 < (decoded == NODATA).mean() < 0.15  # eroded boundaries are ignore
    assert (decoded == 5).sum() == 0  # clutter is absent from both crops


def test_invalid_tables_are_refused():
    from geoseg.classes import LandCoverClass

    with pytest.raises(ValueError, match=r"0\.\.1"):
        ClassTable((LandCoverClass(0, "a", (1, 2, 3)), LandCoverClass(2, "b", (3, 4, 5))))
    with pytest.raises(ValueError, match="distinct"):
        ClassTable((LandCoverClass(0, "a", (1, 2, 3)), LandCoverClass(1, "b", (1, 2, 3))))
