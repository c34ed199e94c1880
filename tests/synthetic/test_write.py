"""Tests for geoseg.synthetic.write: scenes written as GeoTIFFs equal the rendered windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geoseg.synthetic import SceneSpec, render_window, write_scene


@pytest.mark.parametrize(
    "spec",
    [
        SceneSpec(700, 600, pixel_size=0.25, crs="EPSG:25832", origin=(350000.0, 5600000.0), seed=4),
        SceneSpec(700, 600, pixel_size=0.1, seed=8, bands="rgbn", dtype="uint16", nodata=0),
    ],
    ids=["rgb-uint8", "rgbn-uint16-nodata"],
)
def test_write_scene_geotiffs(tmp_path: Path, spec: SceneSpec) -> None:
    rasterio = pytest.importorskip("rasterio")
    image_path, label_path = tmp_path / "scene.tif", tmp_path / "scene_label.tif"
    write_scene(spec, image_path, label_path, block=300)
    image, label = render_window(spec, 0, 0, spec.height, spec.width)
    with rasterio.open(image_path) as ds:
        assert ds.crs == rasterio.crs.CRS.from_user_input(spec.crs)
        assert ds.transform == spec.transform
        assert (ds.width, ds.height, ds.count) == (spec.width, spec.height, spec.count)
        assert ds.dtypes == (spec.dtype,) * spec.count
        assert ds.nodata == spec.nodata
        assert ds.profile["tiled"] and ds.block_shapes[0] in ((256, 256), (512, 512))
        assert np.array_equal(ds.read(), image)
    with rasterio.open(label_path) as ds:
        assert ds.crs == rasterio.crs.CRS.from_user_input(spec.crs)
        assert ds.transform == spec.transform
        assert ds.count == 1 and ds.dtypes == ("uint8",) and ds.nodata == 255
        assert ds.profile["tiled"]
        assert ds.colormap(1)[1][:3] == (0, 0, 255)
        assert np.array_equal(ds.read(1), label)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif", "scene_label.tif"]


def test_write_scene_without_label(tmp_path: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    spec = SceneSpec(300, 200, seed=1, bands="irrg")
    write_scene(spec, tmp_path / "only.tif")
    with rasterio.open(tmp_path / "only.tif") as ds:
        assert ds.descriptions == ("nir", "red", "green")
        assert np.array_equal(ds.read(), render_window(spec, 0, 0, 200, 300)[0])
    assert [p.name for p in tmp_path.iterdir()] == ["only.tif"]
